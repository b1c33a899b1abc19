"""The launcher's side of worker processes and Ray tasks: start one per shard, read what they report, aggregate
their tallies into the launcher's executor (so the progress display, the identity warnings and the spending cap
work as in one process), stop them all when one fails or the user interrupts, and wait for every one to flush
before the run's manifest is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from auditor import errors
from auditor.archive.store import RunDir
from auditor.errors import AuditorError, ConfigError
from auditor.records import WorkItem
from auditor.run.execute import Executor
from auditor.run.workers import ITEMS_PER_WORKER, MAX_WORKERS, Job, Shard, process_main, ray_main, worker_count

POLL_S = 0.05


@dataclass(frozen=True)
class Workers:
    """Send a run's items with `count` worker processes (None: the default of `worker_count`), or as Ray tasks on
    the cluster at `ray` ('' for a local instance). Only the part `shard` of the run is sent (auditor run --shard);
    each worker takes a sub-shard of it. Called by the pipeline in place of `Executor.run`; returns the rows the
    workers stored."""

    count: int | None = None
    ray: str | None = None
    shard: Shard = Shard()

    async def __call__(self, run: RunDir, executor: Executor, items: list[WorkItem]) -> int:
        n = worker_count(self.count, items, executor.endpoints)
        if n <= 1 and self.ray is None or not items:
            await executor.run(items)
            return 0
        budget = executor.budget
        cap = max(0.0, budget.cap - budget.spent) / n if budget is not None else None
        urls = tuple((name, ep.url) for name, ep in executor.endpoints.items())
        jobs = [Job(str(run.path.resolve()), self.shard.split(k, n), urls, cap) for k in range(n)]
        for item in items:  # the whole to-do from the start, as in one process
            executor.tallies[item.target].total += 1
        pool: Pool = RayTasks(jobs, self.ray) if self.ray is not None else Processes(jobs)
        return await gather(pool, len(jobs), executor)

    def warm(self, planned: int | None = None) -> None:
        """When `planned` items (None: unknown) will likely be sent by worker processes, start the process they fork
        from now: it imports their modules in the background while the run is prepared (a second or so before the
        first reply)."""
        planned = planned if planned is not None else 2**31
        wanted = self.count or min(os.cpu_count() or 1, MAX_WORKERS, planned // ITEMS_PER_WORKER)
        if self.ray is None and min(wanted, planned) > 1 and _context().get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()


def _context() -> Any:
    """Where the platform has it, worker processes fork from a server process that has imported their modules once
    (the forkserver method: nothing of the launcher's threads or state is inherited), else they are spawned."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["auditor.run.workers", "openai"])
    return ctx


class Pool(Protocol):
    def messages(self) -> list[tuple[int, tuple[Any, ...]]]: ...
    def vanished(self) -> dict[int, str]: ...
    def stop(self) -> None: ...
    def close(self, timeout: float = 60.0) -> None: ...


async def gather(pool: Pool, count: int, executor: Executor) -> int:
    """Follow the `count` workers of `pool` until each has ended, their tallies, identities, warnings and spending
    added into `executor`'s; raise the first error one reported (or how one vanished). Returns the rows stored."""
    base = {name: asdict(t) for name, t in executor.tallies.items()}
    latest: dict[int, dict[str, dict[str, Any]]] = {}
    outcomes: dict[int, dict[str, Any]] = {}
    failures: dict[int, AuditorError] = {}
    warned: set[str] = set()

    def handle(k: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "tally":
            latest[k] = message[1]
        elif kind == "seen":
            executor.observe(message[1], (message[2][0], message[2][1]), message[3])
        elif kind == "warn" and message[1] not in warned:
            warned.add(message[1])
            executor.on_warning(message[1])
        elif kind == "done":
            outcomes[k] = message[1]
        elif kind == "error":
            failures[k] = _error(*message[1:])

    try:
        while len(outcomes) + len(failures) < count:
            gone = pool.vanished()  # before reading: whatever a worker posted before it exited is read below
            for k, message in pool.messages():
                handle(k, message)
            for k, how in gone.items():
                if k not in outcomes and k not in failures:
                    failures[k] = AuditorError(
                        f"worker {k + 1} of {count} stopped unexpectedly ({how}); what it stored is kept"
                    )
            if failures:
                pool.stop()
            _sum(executor, base, latest)
            await asyncio.sleep(POLL_S)
    finally:
        if len(outcomes) + len(failures) < count:
            pool.stop()  # interrupted: every worker flushes what it has and ends
        pool.close()
        for k, message in pool.messages():
            handle(k, message)
        _sum(executor, base, latest)
        if executor.budget is not None:
            executor.budget.spent += sum(float(o["spent"]) for o in outcomes.values())
            executor.budget.exhausted = executor.budget.exhausted or any(o["capped"] for o in outcomes.values())
    if failures:
        raise min(failures.items(), key=lambda kv: (type(kv[1]) is AuditorError, kv[0]))[1]
    return sum(int(o["written"]) for o in outcomes.values())


def _sum(executor: Executor, base: dict[str, dict[str, Any]], latest: dict[int, dict[str, dict[str, Any]]]) -> None:
    """The launcher's tallies: what it counted itself plus the latest count of every worker."""
    for name, tally in executor.tallies.items():
        for field, start in base[name].items():
            if field not in ("started", "total"):
                setattr(tally, field, start + sum(t[name][field] for t in latest.values() if name in t))


def _error(name: str, code: int, line: str) -> AuditorError:
    """The error a worker reported, as the same class (its line as it is) with the same exit code."""
    kind = getattr(errors, name, AuditorError)
    kind = kind if isinstance(kind, type) and issubclass(kind, AuditorError) else AuditorError
    error: AuditorError = kind.__new__(kind)
    Exception.__init__(error, line)
    error.exit_code = code
    return error


class Processes:
    """Worker processes (see `_context`), one pipe each: a killed worker can take no lock that the others or the
    launcher would wait on."""

    def __init__(self, jobs: list[Job]) -> None:
        ctx = _context()
        self.jobs = jobs
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        env, cwd = tuple(os.environ.items()), os.getcwd()
        for job in (replace(job, env=env, cwd=cwd) for job in jobs):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=process_main, args=(job, theirs), name=f"auditor-{job.shard.tag}", daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(proc)

    def messages(self) -> list[tuple[int, tuple[Any, ...]]]:
        found = []
        for k, conn in enumerate(self.pipes):
            try:
                while conn.poll():
                    found.append((k, conn.recv()))
            except (EOFError, OSError):
                continue
        return found

    def vanished(self) -> dict[int, str]:
        """Workers that have exited, and how (an exit code or signal; the launcher knows whether they reported)."""
        out = {}
        for k, proc in enumerate(self.procs):
            if proc.exitcode is not None:
                code = proc.exitcode
                out[k] = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return out

    def stop(self) -> None:
        for k, conn in enumerate(self.pipes):
            if self.procs[k].exitcode is None:
                try:
                    conn.send("stop")
                except OSError:
                    pass

    def close(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        for conn in self.pipes:
            conn.close()


class RayTasks:
    """Workers as Ray tasks running `main(job, k, queue)` (by default a worker's `ray_main`): on the cluster at
    `address`, or a local Ray instance when it is empty (or the one this process has already started)."""

    def __init__(self, jobs: Sequence[Any], address: str, main: Callable[[Any, int, Any], None] = ray_main) -> None:
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise ConfigError("--ray needs Ray: pip install 'auditor[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address or None, logging_level=logging.ERROR, log_to_driver=False)
            except Exception as exc:  # an address nothing answers at, a cluster that refuses the driver
                raise ConfigError(f"--ray {address or '(local)'}: cannot start or reach Ray: {exc}") from None
        self.queue: Any = Queue(actor_options={"num_cpus": 0})
        self.left: list[tuple[int, tuple[Any, ...]]] = []
        task = ray.remote(num_cpus=1, max_retries=0)(main)
        self.refs = [task.remote(job, k, self.queue) for k, job in enumerate(jobs)]
        self.ended: dict[int, str] = {}

    def messages(self) -> list[tuple[int, tuple[Any, ...]]]:
        found, self.left = self.left, []
        while self.queue is not None and not self.queue.empty():
            found.append(self.queue.get_nowait())
        return found

    def vanished(self) -> dict[int, str]:
        ready, _ = self.ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        for k, ref in enumerate(self.refs):
            if ref in ready and k not in self.ended:
                try:
                    self.ray.get(ref)
                    self.ended[k] = "ended"
                except Exception as exc:  # the task failed in Ray (a worker node lost, a cancelled task)
                    self.ended[k] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return dict(self.ended)

    def stop(self) -> None:
        for k, ref in enumerate(self.refs):
            if k not in self.ended:
                self.ray.cancel(ref)

    def close(self, timeout: float = 60.0) -> None:
        self.ray.wait(self.refs, num_returns=len(self.refs), timeout=timeout)
        self.left = self.messages()
        self.queue.shutdown(force=True)
        self.queue = None
        if self.started:
            self.ray.shutdown()
