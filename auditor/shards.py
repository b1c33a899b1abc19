"""A run split across machines: `auditor run SUITE --shard K/N --run RUN` on each of N machines sharing one archive
folder, then `auditor finalize RUN` once they are all done.

The first shard to start creates the run (built aside under ARCHIVE/.staging and renamed into place, so shards
starting together agree on one); the others join it after checking it holds the same suite and targets. Its
status stays `sharded` while shards write their parts (named apart, sealed in the shared ledger under its lock).
`finalize` checks that every planned item is stored exactly once, naming the shards with items missing and any
item stored twice, then compacts the parts and seals the run as complete; grading follows as after any run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from auditor import pipeline
from auditor.archive import cache, compact, ledger
from auditor.archive.manifest import SHARDED
from auditor.archive.store import Archive, ResponseWriter, RunDir
from auditor.clock import now
from auditor.errors import ArchiveError, UsageError
from auditor.records import Target
from auditor.run.execute import Executor
from auditor.run.launch import Workers
from auditor.run.plan import plan
from auditor.run.throttle import Budget
from auditor.run.workers import Shard, share
from auditor.suite.load import load_suite

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def join_run(suite_path: Path, targets: list[Target], options: pipeline.RunOptions, run_id: str, count: int) -> RunDir:
    """The run `run_id` split in `count` shards: created if no shard has created it yet, else checked to hold the
    same suite, targets and number of shards."""
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(f"--run takes a run id of letters, digits, '.', '_' and '-' (at most 100); got '{run_id}'")
    if options.attacker is not None:
        raise UsageError("adaptive attacks (--attacker) run in one process, not in shards: run without --shard")
    root = Archive(options.archive).root
    run = RunDir(root / "runs" / run_id)
    if not run.manifest_path.is_file():
        staging = root / ".staging" / secrets.token_hex(8)
        try:
            staged = pipeline.start_run(suite_path, targets, options, RunDir(staging / run_id), shards=count)
            run.path.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged.path, run.path)
        except OSError:
            if not run.manifest_path.is_file():  # not a shard that created it first: a real failure
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()  # when no other shard is staging a run
    _check_joinable(run, suite_path, targets, count)
    return run


def _check_joinable(run: RunDir, suite_path: Path, targets: list[Target], count: int) -> None:
    m = run.manifest()
    if m.status != SHARDED:
        done = "already finalized" if m.shards else "not a sharded run"
        raise UsageError(f"run {run.run_id} is {done} (status {m.status}): nothing is added to it by --shard")
    if m.shards != count:
        raise UsageError(f"run {run.run_id} is split in {m.shards} shards, not {count}: give --shard K/{m.shards}")
    suite = load_suite(suite_path)
    if suite.sha256 != m.suite.sha256:
        raise UsageError(
            f"run {run.run_id} exists with another suite ({m.suite.id} {m.suite.version}, sha256 "
            f"{m.suite.sha256[:12]}, not {suite.sha256[:12]}): give every shard the same suite file"
        )

    def plain(t: Target) -> dict[str, Any]:
        return {k: v for k, v in t.public().items() if k != "limits"}

    if [plain(t) for t in m.targets] != [plain(t) for t in targets]:
        raise UsageError(
            f"run {run.run_id} exists with other targets ({', '.join(m.target_names())}, as its manifest records "
            "them): give every shard the same targets"
        )


def run_shard(run: RunDir, shard: Shard, workers: int | None, options: pipeline.ExecOptions) -> dict[str, Any]:
    """Send the items of `shard` that no process has stored yet, with `workers` processes (each a sub-shard), within
    the shard's share of every target's limits and of the spending cap."""
    with ledger.locked(run.path):  # other shards record and rename under the lock: what is read here is whole
        ledger.recover(run.path, mine=shard.owns)
        problems = run.verify().problems
    run.require_intact("nothing is added to it", problems)
    manifest = run.manifest()
    targets = list(manifest.targets)
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    done = run.done_items()
    todo = [i for i in plan(suite, targets) if shard.holds(i.item_id) and i.item_id not in done]
    writer = ResponseWriter(run, tag=shard.tag)
    reused = cache.reuse(run, todo, writer) if options.use_cache else set()
    todo = [item for item in todo if item.item_id not in reused]
    cap = options.max_cost
    budget = Budget(cap / shard.count, _spent(run, shard, targets)) if cap is not None else None
    with pipeline.endpoints(targets) as eps:
        shared = {name: replace(ep, target=share(ep.target, shard)) for name, ep in eps.items()}
        executor = Executor(
            shared,
            lambda item, c: writer.add(item, c, cached=False),
            seed=manifest.seed + shard.index,
            budget=budget,
            on_warning=options.warn,
        )
        send = partial(Workers(workers, None, shard), run, executor, todo)
        try:
            stored = asyncio.run(pipeline._execute_with_progress(executor, todo, options.progress, None, send))
        finally:
            writer.flush()
    sent = writer.written - len(reused) + stored
    status = "capped" if executor.capped else "done"
    return {"sent": sent, "cached": len(reused), "already_done": len(done), "status": status}


def _spent(run: RunDir, shard: Shard, targets: list[Target]) -> float:
    """What the shard's stored requests (not its cache hits) cost at the targets' declared prices."""
    prices = {t.name: t for t in targets}
    rows = run.read_parts(["item_id", "target", "prompt_tokens", "completion_tokens", "cached"])
    return sum(
        prices[r["target"]].price(r["prompt_tokens"] or 0, r["completion_tokens"] or 0)
        for r in rows
        if not r["cached"] and r["target"] in prices and shard.holds(r["item_id"])
    )


def finalize(run: RunDir) -> None:
    """Seal a sharded run once every planned item is stored exactly once: compact its parts and mark it complete.
    Refuses (changing nothing) a run with items missing, naming the shards to run again, or stored twice."""
    with ledger.locked(run.path):  # a second finalize waits here, then finds the run complete
        manifest = run.manifest()
        if manifest.status != SHARDED:
            if manifest.shards:
                raise UsageError(f"run {run.run_id} is already finalized (status {manifest.status}); nothing changed")
            raise UsageError(
                f"run {run.run_id} was not run in shards (status {manifest.status}); "
                f"auditor run --resume {run.run_id} completes it"
            )
        run.check_before_writing()  # every shard is done: finish their interrupted writes, then verify
        suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
        planned = [item.item_id for item in plan(suite, list(manifest.targets))]
        stored = Counter(r["item_id"] for r in run.read_parts(["item_id"]))
        _check_once(run, manifest.shards or 1, planned, stored)
        compact.compact(run.path)
        columns = ["target", "returned_model", "system_fingerprint", "started_at", "error_class", "cached"]
        changes = identity_changes(run.read_parts(columns))
        run.write_manifest(manifest.but(status="complete", finished_at=now(), identity_changes=changes))


def _check_once(run: RunDir, count: int, planned: list[str], stored: Counter[str]) -> None:
    doubled = sorted(i for i, n in stored.items() if n > 1)
    unknown = sorted(set(stored) - set(planned))
    if doubled or unknown:
        which = f"{len(doubled)} items stored more than once" if doubled else f"{len(unknown)} items not planned"
        example = (doubled or unknown)[0]
        shard = Shard(int(example[:8], 16) % count, count)
        raise ArchiveError(
            f"run {run.run_id} cannot be finalized: {which} (e.g. item {example} of shard {shard}); was one shard "
            "run twice at the same time? Nothing was changed"
        )
    missing = Counter(int(i[:8], 16) % count for i in planned if i not in stored)
    if missing:
        shards = ", ".join(f"{k + 1}/{count} ({n} missing)" for k, n in sorted(missing.items()))
        raise ArchiveError(
            f"run {run.run_id} is not complete: {sum(missing.values())} of {len(planned)} planned items are "
            f"missing, in shard{'s' if len(missing) > 1 else ''} {shards}; run "
            f"{'them' if len(missing) > 1 else 'it'} again (auditor run SUITE --targets FILE --shard K/{count} "
            f"--run {run.run_id}), then finalize"
        )


def identity_changes(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The model identity changes in stored replies, as the executor records them live: per target, every model and
    fingerprint other than the first reported (in order of sending), with when it first appeared."""
    first: dict[str, tuple[Any, Any]] = {}
    changes: dict[tuple[str, Any, Any], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["started_at"] or ""):
        if r["error_class"] is not None or r["cached"]:
            continue
        name, seen = r["target"], (r["returned_model"], r["system_fingerprint"])
        was = first.setdefault(name, seen)
        if seen != was and (name, *seen) not in changes:
            changes[(name, *seen)] = {
                "target": name,
                "model": seen[0],
                "fingerprint": seen[1],
                "was_model": was[0],
                "was_fingerprint": was[1],
                "at": r["started_at"],
            }
    return tuple(changes.values())
