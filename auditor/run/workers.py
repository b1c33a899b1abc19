"""One run across several processes or machines: disjoint shards by item hash, each sent by its own worker
process (or Ray task) with its own event loop into the shared run folder.

An item belongs to shard K of N when the first 32 bits of its id (a content hash) are K - 1 modulo N, so any
process that plans the suite agrees on the shards without talking to the others. Every target's limits are
divided between the shards (concurrency, requests and tokens per minute), so the totals hold however many run
at once; a spending cap is divided likewise by the launcher. Workers store their parts under their own names
(part-sKofN-NNNNNN.parquet), append to the run's ledger under its lock, and report tallies, model identities and
warnings to the launcher, which aggregates them; what a worker stored before it died is kept, and a resume sends
only what no shard stored.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from auditor import errors
from auditor.archive.store import ResponseWriter, RunDir
from auditor.errors import AuditorError, UsageError
from auditor.records import Target, WorkItem
from auditor.run.endpoint import Endpoint, check_keys
from auditor.run.execute import Executor
from auditor.run.plan import plan
from auditor.run.throttle import Budget
from auditor.suite.load import load_suite

MAX_WORKERS = 8  # the default's cap: more processes than this rarely pay on one machine
ITEMS_PER_WORKER = 500  # by default a worker is added per this many pending requests, so small runs stay in one
TICK_S = 0.5  # how often a worker reports its tallies
_SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*")
_TAG = re.compile(r"part-s(\d+)of(\d+)-")


@dataclass(frozen=True)
class Shard:
    """Shard `index + 1` of `count`: the items whose id's first 32 bits are `index` modulo `count`."""

    index: int = 0
    count: int = 1

    def holds(self, item_id: str) -> bool:
        return self.count == 1 or int(item_id[:8], 16) % self.count == self.index

    def split(self, part: int, parts: int) -> Shard:
        """Part `part` of `parts` of this shard, itself a shard of the whole run (of count * parts)."""
        return Shard(self.index + part * self.count, self.count * parts)

    @property
    def tag(self) -> str:
        """What this shard's part files are named by (never starting with c, the mark of compacted files)."""
        return f"s{self.index + 1}of{self.count}"

    def owns(self, name: str) -> bool:
        """Whether a stored file's name (e.g. responses/part-s3of4-000001.parquet) is written by this shard."""
        m = _TAG.search(name)
        return m is not None and int(m[2]) % self.count == 0 and (int(m[1]) - 1) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


def parse_shard(text: str) -> Shard:
    """A shard given as K/N (1 <= K <= N): one line naming what is wrong otherwise."""
    m = _SHARD.fullmatch(text)
    if m is None or not 1 <= int(m[1]) <= int(m[2]):
        raise UsageError(f"--shard takes K/N with 1 <= K <= N (shard K of N), e.g. 2/4; got '{errors.clip(text, 40)}'")
    return Shard(int(m[1]) - 1, int(m[2]))


def share(target: Target, shard: Shard) -> Target:
    """The target with the limits one shard may use: its concurrency split as evenly as whole numbers allow (at
    least 1), its requests and tokens per minute divided by the number of shards."""
    if shard.count == 1:
        return target
    limits = target.limits
    base, extra = divmod(limits.concurrency, shard.count)
    rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
    return replace(
        target,
        limits=replace(
            limits,
            concurrency=max(1, base + (shard.index < extra)),
            requests_per_minute=rpm / shard.count if rpm else None,
            tokens_per_minute=tpm / shard.count if tpm else None,
        ),
    )


def worker_count(requested: int | None, items: list[WorkItem], endpoints: dict[str, Endpoint]) -> int:
    """How many workers to send `items` with: as requested, else one per core (at most MAX_WORKERS) and per
    ITEMS_PER_WORKER items; never more than there are items, nor than the smallest concurrency limit of a
    target with items (each worker takes at least one slot of every target)."""
    if requested is None:
        requested = min(os.cpu_count() or 1, MAX_WORKERS, len(items) // ITEMS_PER_WORKER)
    used = {item.target for item in items}
    slots = min((ep.target.limits.concurrency for name, ep in endpoints.items() if name in used), default=1)
    return max(1, min(requested, len(items), slots))


@dataclass(frozen=True)
class Job:
    """What one worker sends: a shard of a run, to targets at these URLs, within a share of the spending cap."""

    run: str  # the run folder, absolute
    shard: Shard
    urls: tuple[tuple[str, str], ...]  # where each target is reached (the launcher may serve embedded models)
    max_cost: float | None = None
    env: tuple[tuple[str, str], ...] | None = None  # a local worker's environment and folder: the launcher's, as
    cwd: str | None = None  # it is now (keys, proxies), not as it was when the process the worker forks from began


Post = Callable[[tuple[Any, ...]], None]


class _ShardExecutor(Executor):
    """An executor whose model identities are judged by the launcher, across every shard."""

    def __init__(self, post: Post, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        self.seen: set[tuple[str, str | None, str | None]] = set()

    def observe(self, name: str, seen: tuple[str | None, str | None], at: str) -> None:
        if (name, *seen) not in self.seen:
            self.seen.add((name, *seen))
            self.post(("seen", name, seen, at))


def tallies_of(executor: Executor) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in asdict(t).items() if k != "started"} for name, t in executor.tallies.items()}


def work(job: Job, post: Post, stopped: Callable[[], bool]) -> None:
    """Send one shard into the run: its planned items with no stored reply yet. Everything the launcher needs
    arrives through `post`: tallies as they change, identities, warnings, then `done` with the outcome or `error`
    with an AuditorError's class, exit code and line. Stops early (flushing what it has) once `stopped()`."""
    report(lambda: send_shard(job, post, stopped), post, job.shard)


def report(task: Callable[[], dict[str, Any]], post: Post, shard: Shard) -> None:
    """Post what `task` returns as `done`, or the error it raised as one line (a worker never raises)."""
    try:
        post(("done", task()))
    except AuditorError as exc:
        post(("error", type(exc).__name__, exc.exit_code, str(exc)))
    except Exception as exc:  # a bug: still one line for the launcher to print
        post(("error", "AuditorError", 1, f"internal error in worker {shard}: {type(exc).__name__}: {exc}"))


def send_shard(job: Job, post: Post, stopped: Callable[[], bool]) -> dict[str, Any]:
    """The body of `work`: send the job's shard, posting tallies, and return its outcome."""
    if job.env is not None:
        os.environ.clear()
        os.environ.update(job.env)
    if job.cwd is not None:
        os.chdir(job.cwd)
    run = RunDir(Path(job.run))
    manifest = run.manifest()
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    done = run.done_items()
    todo = [i for i in plan(suite, list(manifest.targets)) if job.shard.holds(i.item_id) and i.item_id not in done]
    keys = check_keys(list(manifest.targets))
    urls = dict(job.urls)
    endpoints = {
        t.name: Endpoint(
            share(t, job.shard), urls.get(t.name, t.base_url), keys[t.name][0], tuple(keys[t.name][1].items())
        )
        for t in manifest.targets
    }
    writer = ResponseWriter(run, tag=job.shard.tag)
    budget = Budget(job.max_cost) if job.max_cost is not None else None
    executor = _ShardExecutor(
        post,
        endpoints,
        lambda item, c: writer.add(item, c, cached=False),
        seed=manifest.seed + job.shard.index,
        budget=budget,
        on_warning=lambda message: post(("warn", message)),
    )
    parent = os.getppid()

    async def send() -> bool:
        task = asyncio.ensure_future(executor.run(todo))
        while not task.done():
            await asyncio.wait({task}, timeout=TICK_S)
            post(("tally", tallies_of(executor)))
            if not task.done() and (stopped() or os.getppid() != parent):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return True
        await task
        return False

    try:
        stop = asyncio.run(send())
    finally:
        writer.flush()
    return {
        "written": writer.written,
        "spent": budget.spent if budget else 0.0,
        "capped": executor.capped,
        "stopped": stop,
    }


def process_main(job: Job, conn: Any) -> None:
    """A worker process: dies with its launcher (a killed launcher leaves no orphan writing into the run), leaves
    Ctrl-C to the launcher, which asks it to stop over `conn`, the pipe it reports through."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asked = False

    def stopped() -> bool:
        nonlocal asked
        asked = asked or conn.poll()
        return asked

    try:
        work(job, conn.send, stopped)
    finally:
        conn.close()


def ray_main(job: Job, k: int, queue: Any) -> None:
    """Worker `k` as a Ray task: reports through a Ray queue, is stopped by cancelling the task."""
    work(job, lambda message: queue.put((k, message)), lambda: False)
