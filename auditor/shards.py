"""A run split across machines: `auditor run SUITE --shard K/N --run RUN` on each of N machines sharing one archive
(a folder, or a bucket: s3://...), then `auditor finalize RUN` once they are all done.

Each shard writes only into a folder of its own, ARCHIVE/shards/sKofN/RUN: a sealed run folder (manifest with the
status `sharded`, suite copy, parts, ledger) that no other machine writes, so shards need no lock between machines
and, over a bucket, every folder has the one writer its upload protocol requires. A shard started again (after a
crash, or to finish what a spending cap stopped) resumes its own folder. `finalize` checks that the shards agree
(suite, targets, seed, number of shards), that each verifies, and that every planned item is stored exactly once
among them, naming the shards with items missing and any item stored twice; then it builds ARCHIVE/runs/RUN aside
from their parts (each recorded in the run's own ledger as it is copied), compacts and seals it complete, and moves
it into place in one rename. Grading follows as after any run. The shard folders stay: each is the sealed record of
what one machine sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from auditor import pipeline
from auditor.archive import cache, compact
from auditor.archive.manifest import SHARDED, Manifest
from auditor.archive.store import Archive, ResponseWriter, RunDir
from auditor.clock import new_id, now
from auditor.errors import ArchiveError, AuditorError, UsageError
from auditor.records import Target
from auditor.report.governance import PREREGISTRATION
from auditor.run.execute import Executor
from auditor.run.launch import Workers
from auditor.run.plan import plan
from auditor.run.throttle import Budget
from auditor.run.workers import Job, Shard, report, send_shard, share
from auditor.suite.load import load_suite

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SHARDS = "shards"  # ARCHIVE/shards/sKofN/RUN: what shard K of N stored of RUN
_FOLDER = re.compile(r"s(\d+)of(\d+)")


def shard_dir(root: Path, run_id: str, shard: Shard) -> RunDir:
    """The folder shard `shard` of run `run_id` writes into (named by the run, so its rows carry the run's id)."""
    return RunDir(root / SHARDS / shard.tag / run_id)


def _stored(root: Path, run_id: str | None = None) -> list[tuple[str, Shard, RunDir]]:
    """(run id, shard, folder) of every shard folder in the archive, or of the run `run_id`'s."""
    import glob

    pattern = "*" if run_id is None else glob.escape(run_id)
    found = []
    for path in sorted((root / SHARDS).glob(f"s*of*/{pattern}/manifest.json")):
        m = _FOLDER.fullmatch(path.parent.parent.name)
        if m and 1 <= int(m[1]) <= int(m[2]):
            found.append((path.parent.name, Shard(int(m[1]) - 1, int(m[2])), RunDir(path.parent)))
    return found


def shard_dirs(root: Path, run_id: str) -> dict[Shard, RunDir]:
    """Every shard folder of the run in the archive, by shard."""
    return {shard: folder for _, shard, folder in _stored(root, run_id)}


def stored_shards(root: Path, run_id: str | None = None) -> list[tuple[str, RunDir]]:
    """Every shard folder in the archive (or only the run `run_id`'s), named as `RUN shard K/N`."""
    return [(f"{run} shard {shard}", folder) for run, shard, folder in _stored(root, run_id)]


def pending(root: Path) -> list[str]:
    """A line for each run in the archive sent in shards and not finalized yet: which shards are stored, with how
    many of the run's planned items."""
    import pyarrow.parquet as pq

    runs: dict[str, dict[Shard, RunDir]] = {}
    for run_id, shard, folder in _stored(root):
        if not (root / "runs" / run_id).is_dir():
            runs.setdefault(run_id, {})[shard] = folder
    lines = []
    for run_id, found in sorted(runs.items()):
        stored = sum(pq.ParquetFile(p).metadata.num_rows for d in found.values() for p in d.response_parts())
        planned = max(d.manifest().planned_items for d in found.values())
        names = ", ".join(str(s) for s in sorted(found, key=lambda s: (s.count, s.index)))
        lines.append(
            f"{run_id}: sent in shards, not finalized: shard {names} stored, {stored} of {planned} planned items; "
            f"once every shard is: auditor finalize {run_id}"
        )
    return lines


def _refuse_finalized(root: Path, run_id: str, doing: str = "nothing is added to it by --shard") -> None:
    """Refuse to add to (or finalize again) a run the archive holds as a run already."""
    run = RunDir(root / "runs" / run_id)
    if not run.manifest_path.is_file():
        return
    m = run.manifest()
    if m.status == SHARDED:  # an earlier version's shards, written into the run's own folder
        raise UsageError(
            f"run {run_id} was sent in shards into one folder by an earlier auditor version: "
            f"auditor run --resume {run_id} completes it"
        )
    done = "already finalized" if m.shards else "a run not sent in shards"
    raise UsageError(f"run {run_id} is {done} (status {m.status}): {doing}")


def join_run(
    suite_path: Path, targets: list[Target], options: pipeline.RunOptions, run_id: str, shard: Shard
) -> RunDir:
    """The folder of shard `shard` of run `run_id`: created if this shard has not started before, else resumed;
    checked to hold the same suite, targets and number of shards as every other shard of the run in the archive."""
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(f"--run takes a run id of letters, digits, '.', '_' and '-' (at most 100); got '{run_id}'")
    if options.attacker is not None:
        raise UsageError("adaptive attacks (--attacker) run in one process, not in shards: run without --shard")
    root = Archive(options.archive).root
    _refuse_finalized(root, run_id)
    for other, folder in shard_dirs(root, run_id).items():
        _check_joinable(folder, suite_path, targets, (shard.count, options.seed), other)
    run = shard_dir(root, run_id, shard)
    if not run.manifest_path.is_file():
        staging = root / ".staging" / secrets.token_hex(8)
        try:
            staged = pipeline.start_run(suite_path, targets, options, RunDir(staging / run_id), shards=shard.count)
            run.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(run.path, ignore_errors=True)  # a folder a crash left without its manifest
            os.rename(staged.path, run.path)
        finally:
            _tidy(staging)
    return run


def _tidy(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()  # when nothing else is staged


def _check_joinable(
    folder: RunDir, suite_path: Path, targets: list[Target], split: tuple[int, int], shard: Shard
) -> None:
    """Refuse to add a shard split (number of shards, seed) unlike the stored shard `shard` of the same run."""
    m = folder.manifest()
    run_id = m.run_id
    count, seed = split
    if m.shards != count:
        raise UsageError(
            f"run {run_id} is split in {m.shards} shards (shard {shard} is stored), not {count}: "
            f"give --shard K/{m.shards}"
        )
    if m.seed != seed:
        raise UsageError(f"run {run_id} is sent with --seed {m.seed} (shard {shard} is stored), not {seed}")
    suite = load_suite(suite_path)
    if suite.sha256 != m.suite.sha256:
        raise UsageError(
            f"run {run_id} exists with another suite ({m.suite.id} {m.suite.version}, sha256 "
            f"{m.suite.sha256[:12]}, not {suite.sha256[:12]}): give every shard the same suite file"
        )
    if [_plain(t) for t in m.targets] != [_plain(t) for t in targets]:
        raise UsageError(
            f"run {run_id} exists with other targets ({', '.join(m.target_names())}, as its manifest records "
            "them): give every shard the same targets"
        )


def _plain(t: Target) -> dict[str, Any]:
    return {k: v for k, v in t.public().items() if k != "limits"}


def run_shard(
    run: RunDir, shard: Shard, workers: int | None, options: pipeline.ExecOptions, root: Path
) -> dict[str, Any]:
    """Send the items of `shard` its folder `run` holds no reply for yet, with `workers` processes (each a
    sub-shard), within the shard's share of every target's limits and of the spending cap."""
    _refuse_finalized(root, run.run_id)
    run.check_before_writing()
    manifest = run.manifest()
    targets = list(manifest.targets)
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    done = run.done_items()
    todo = [i for i in plan(suite, targets) if shard.holds(i.item_id) and i.item_id not in done]
    writer = ResponseWriter(run, tag=shard.tag)
    reused = cache.reuse(run, todo, writer, root) if options.use_cache else set()
    todo = [item for item in todo if item.item_id not in reused]
    cap = options.max_cost
    budget = Budget(cap / shard.count, _spent(run, targets)) if cap is not None else None
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


def _spent(run: RunDir, targets: list[Target]) -> float:
    """What the shard's stored requests (not its cache hits) cost at the targets' declared prices."""
    prices = {t.name: t for t in targets}
    rows = run.read_parts(["target", "prompt_tokens", "completion_tokens", "cached"])
    return sum(
        prices[r["target"]].price(r["prompt_tokens"] or 0, r["completion_tokens"] or 0)
        for r in rows
        if not r["cached"] and r["target"] in prices
    )


def finalize(root: Path, run_id: str) -> RunDir:
    """Build the run `run_id` from its shards once every planned item is stored exactly once among them, and seal
    it complete. Refuses (changing nothing) when shards disagree or fail verification, or items are missing (naming
    the shards to run again) or stored twice."""
    run = RunDir(root / "runs" / run_id)
    _refuse_finalized(root, run_id, "nothing changed")
    found = shard_dirs(root, run_id)
    if not found:
        raise UsageError(
            f"no shard of run {run_id} is stored in {root}: send them first "
            f"(auditor run SUITE --targets FILE --shard K/N --run {run_id})"
        )
    counts = sorted({s.count for s in found})
    if len(counts) > 1:
        split = ", ".join(f"{s}" for s in found)
        raise ArchiveError(f"the shards of run {run_id} were split in different numbers ({split}); nothing changed")
    manifests = {s: _checked(folder, s) for s, folder in found.items()}
    first = manifests[min(found, key=lambda s: s.index)]
    for s, m in manifests.items():
        if (m.suite.sha256, [_plain(t) for t in m.targets], m.seed) != (
            first.suite.sha256,
            [_plain(t) for t in first.targets],
            first.seed,
        ):
            raise ArchiveError(
                f"shard {s} of run {run_id} was sent with another suite, targets or seed than the others; "
                "nothing changed"
            )
    suite = load_suite(found[min(found, key=lambda s: s.index)].path / "suite.json", first.suite.sha256)
    planned = [item.item_id for item in plan(suite, list(first.targets))]
    stored = Counter(r["item_id"] for folder in found.values() for r in folder.read_parts(["item_id"]))
    _check_once(run_id, counts[0], planned, stored)
    staging = root / ".staging" / secrets.token_hex(8)
    try:
        built = _build(RunDir(staging / run_id), found, first, counts[0])
        run.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(built.path, run.path)
        except OSError:
            raise UsageError(f"run {run_id} was finalized meanwhile by another command; nothing changed") from None
    finally:
        _tidy(staging)
    return run


def _checked(folder: RunDir, shard: Shard) -> Manifest:
    folder.require_intact(f"shard {shard} is not finalized; send it again into a fresh run, or restore it")
    return folder.manifest()


def _build(run: RunDir, found: dict[Shard, RunDir], first: Manifest, count: int) -> RunDir:
    """The finalized run, in `run` (a fresh folder): the suite, every shard's parts (each sealed as it is
    copied), compacted, then the manifest sealing it complete."""
    (run.path / "responses").mkdir(parents=True)
    source = found[min(found, key=lambda s: s.index)].path
    for name in ("suite.json", PREREGISTRATION):
        if (source / name).is_file():
            shutil.copyfile(source / name, run.path / name)
            run.seal(run.path / name)
    for folder in found.values():
        for part in folder.response_parts():
            copied = run.path / "responses" / part.name
            shutil.copyfile(part, copied)
            run.seal(copied)
    compact.compact(run.path)
    columns = ["target", "returned_model", "system_fingerprint", "started_at", "error_class", "cached"]
    changes = identity_changes(run.read_parts(columns))
    started = min(folder.manifest().started_at for folder in found.values())
    done = first.but(status="complete", started_at=started, finished_at=now(), identity_changes=changes, shards=count)
    run.write_manifest(done)
    return run


def _check_once(run_id: str, count: int, planned: list[str], stored: Counter[str]) -> None:
    doubled = sorted(i for i, n in stored.items() if n > 1)
    unknown = sorted(set(stored) - set(planned))
    if doubled or unknown:
        which = f"{len(doubled)} items stored more than once" if doubled else f"{len(unknown)} items not planned"
        example = (doubled or unknown)[0]
        shard = Shard(int(example[:8], 16) % count, count)
        raise ArchiveError(
            f"run {run_id} cannot be finalized: {which} (e.g. item {example} of shard {shard}); was one shard "
            "run twice at the same time? Nothing was changed"
        )
    missing = Counter(int(i[:8], 16) % count for i in planned if i not in stored)
    if missing:
        shards = ", ".join(f"{k + 1}/{count} ({n} missing)" for k, n in sorted(missing.items()))
        raise ArchiveError(
            f"run {run_id} is not complete: {sum(missing.values())} of {len(planned)} planned items are "
            f"missing, in shard{'s' if len(missing) > 1 else ''} {shards}; run "
            f"{'them' if len(missing) > 1 else 'it'} again (auditor run SUITE --targets FILE --shard K/{count} "
            f"--run {run_id}), then finalize"
        )


@dataclass(frozen=True)
class RayShard:
    """What one Ray task sends through an archive on object storage (at `url`): shard `shard` of run `run_id`,
    into a working copy of its own on whichever node it runs, the suite and targets travelling with it."""

    url: str
    run_id: str
    shard: Shard
    suite: bytes
    targets: tuple[Target, ...]
    options: pipeline.RunOptions
    urls: tuple[tuple[str, str], ...]  # where each target is reached (the driver may serve embedded models)
    max_cost: float | None


def send_on_ray(
    url: str, archive: Path, suite_path: Path, targets: list[Target], options: pipeline.RunOptions, how: RayOptions
) -> RunDir:
    """Send a new run as `how.count` shards (None: as many as worker processes would be), each a Ray task on the
    cluster at `how.address` writing its shard folder through the bucket at `url`; then pull the folders into the
    working copy `archive` and finalize the run there. A task that fails leaves the others' shards stored: the
    error names the run, and each missing shard can be sent again with --shard."""
    from auditor.archive import remote
    from auditor.run.launch import RayTasks, gather
    from auditor.run.workers import worker_count

    run_id = new_id()
    suite = load_suite(suite_path, max_items=options.max_items)
    items = list(plan(suite, targets))
    with pipeline.endpoints(targets) as eps:
        executor = Executor(eps, lambda item, c: None, on_warning=how.warn)
        n = max(1, worker_count(how.count, items, eps))
        for item in items:
            executor.tallies[item.target].total += 1
        urls = tuple((name, ep.url) for name, ep in eps.items())
        cap = how.max_cost / n if how.max_cost is not None else None
        body = suite_path.read_bytes()
        jobs = [RayShard(url, run_id, Shard(k, n), body, tuple(targets), options, urls, cap) for k in range(n)]

        async def follow() -> int:
            return await gather(RayTasks(jobs, how.address, main=ray_shard_main), n, executor)

        try:
            asyncio.run(pipeline._execute_with_progress(executor, items, how.progress, None, follow))
        except AuditorError as exc:
            kept = AuditorError(
                f"{exc}; the shards' replies are kept in {url}/shards: send what is missing with auditor run SUITE "
                f"--targets FILE --shard K/{n} --run {run_id}, then auditor finalize {run_id}"
            )
            kept.exit_code = exc.exit_code
            raise kept from None
    remote.refresh(archive)
    return finalize(archive, run_id)


@dataclass(frozen=True)
class RayOptions:
    """How `send_on_ray` sends: the cluster, the number of tasks, the spending cap, progress and warnings."""

    address: str
    count: int | None = None
    max_cost: float | None = None
    progress: Any = None
    warn: Any = None


def ray_shard_main(job: RayShard, k: int, queue: Any) -> None:
    """Task `k`: send shard `job.shard` into its folder in a working copy of the bucket, reporting through
    `queue` as worker processes report to their launcher."""

    def post(message: tuple[Any, ...]) -> None:
        queue.put((k, message))

    report(lambda: _send_ray_shard(job, post), post, job.shard)


def _send_ray_shard(job: RayShard, post: Any) -> dict[str, Any]:
    import tempfile

    from auditor.archive.remote import working_copy

    with tempfile.TemporaryDirectory() as tmp, working_copy(job.url) as folder:
        suite_path = Path(tmp) / "suite.json"
        suite_path.write_bytes(job.suite)
        options = replace(job.options, archive=folder)
        run = join_run(suite_path, list(job.targets), options, job.run_id, job.shard)
        run.check_before_writing()
        return send_shard(Job(str(run.path), job.shard, job.urls, job.max_cost), post, lambda: False)


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
