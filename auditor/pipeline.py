"""Chains the stages: load, plan, execute, store, grade, analyse, render."""

from __future__ import annotations

import asyncio
import platform
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.archive import cache, compact
from auditor.archive.manifest import SHARDED, Graded, Manifest, SuiteRef
from auditor.archive.store import Archive, ResponseWriter, RunDir
from auditor.clock import now
from auditor.errors import UsageError
from auditor.grade.judging import check_judge
from auditor.records import Attack, Probe, Suite, Target, WorkItem
from auditor.report import analyse, render
from auditor.report.governance import PREREGISTRATION
from auditor.report.settings import ReportSettings
from auditor.run import local
from auditor.run.adaptive import adaptive_tasks
from auditor.run.endpoint import Endpoint, check_keys
from auditor.run.execute import Executor, Tally
from auditor.run.plan import Latency, PlanEstimate, Search, plan
from auditor.run.throttle import Budget
from auditor.suite.load import MAX_ITEMS, load_suite, variants

OnProgress = Callable[[dict[str, Tally]], None]


@dataclass(frozen=True)
class RunOptions:
    """What `auditor run` was asked to do."""

    archive: Path
    label: str | None = None
    seed: int = 0
    judge: Target | None = None
    attacker: Target | None = None
    max_items: int = MAX_ITEMS
    preregistration: bytes | None = None  # the sealed plan the run starts from (auditor plan --seal), copied in


def tool_versions() -> dict[str, str]:
    versions = {"auditor": __version__, "python": platform.python_version()}
    for dist in ("openai", "duckdb", "pyarrow", "jsonschema", "jinja2", "weasyprint", "llama-cpp-python"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


@contextmanager
def endpoints(targets: list[Target]) -> Iterator[dict[str, Endpoint]]:
    """Resolve each target to a reachable URL, serving embedded models on 127.0.0.1 meanwhile."""
    keys = check_keys(targets)
    with ExitStack() as stack:
        served: dict[str, str] = {}
        result = {}
        for t in targets:
            url = t.base_url
            if t.embedded:
                name = t.base_url.split(":", 1)[1]
                if name not in served:
                    served[name] = stack.enter_context(local.serve(name))
                url = served[name]
            key, secret_headers = keys[t.name]
            result[t.name] = Endpoint(t, url, key, tuple(sorted(secret_headers.items())))
        yield result


def start_run(
    suite_path: Path, targets: list[Target], options: RunOptions, into: RunDir | None = None, shards: int | None = None
) -> RunDir:
    """Create a run folder (a new one in the archive, or `into`) with its manifest and a copy of the suite; nothing
    is sent yet. A run split in `shards` is created with the status `sharded` (see auditor.shards)."""
    suite = load_suite(suite_path, max_items=options.max_items)
    check_judge(suite, options.judge)
    if options.judge is None:
        require_judge(suite)
    check_keys(targets + [t for t in (options.judge, options.attacker) if t])
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise UsageError(f"target names must be unique in one run: {', '.join(names)}")
    if into is not None:
        (into.path / "responses").mkdir(parents=True)
    run = into or Archive(options.archive).new_run()
    shutil.copyfile(suite_path, run.path / "suite.json")
    run.seal(run.path / "suite.json")
    if options.preregistration is not None:
        (run.path / PREREGISTRATION).write_bytes(options.preregistration)
        run.seal(run.path / PREREGISTRATION)
    planned = sum(1 for _ in plan(suite, targets))
    if options.attacker:
        planned += sum(len(adaptive_tasks(suite, t)) for t in targets)
    run.write_manifest(
        Manifest(
            run_id=run.run_id,
            status=SHARDED if shards else "running",
            suite=SuiteRef(suite.id, suite.version, suite.title, str(suite_path), suite.sha256),
            targets=tuple(targets),
            planned_items=planned,
            started_at=now(),
            seed=options.seed,
            label=options.label,
            judge=options.judge,
            attacker=options.attacker,
            tool_versions=tool_versions(),
            argv=tuple(sys.argv[1:]),
            shards=shards,
        )
    )
    return run


def require_judge(suite: Suite) -> None:
    """Refuse a suite whose judge criteria have no fallback when no judge is given, naming them."""
    from auditor.criteria import needs_judge

    probes = [p.id for _, p in suite.probes() if needs_judge(p.pass_if.spec)]
    if probes:
        shown = ", ".join(probes[:5]) + (f" and {len(probes) - 5} more" if len(probes) > 5 else "")
        raise UsageError(
            f"{len(probes)} probe{'s' if len(probes) > 1 else ''} ({shown}) grade with a judge model and have no "
            "fallback: give one with --judge NAME (a target from --targets)"
        )


@dataclass(frozen=True)
class ExecOptions:
    """How to execute a run: cache use, spending cap, progress and warning callbacks."""

    use_cache: bool = True
    max_cost: float | None = None
    progress: OnProgress | None = None
    warn: Callable[[str], None] | None = None
    fan_out: FanOut | None = None  # sends the static items instead of the executor (auditor.run.launch.Workers)


FanOut = Callable[[RunDir, Executor, list[WorkItem]], Awaitable[int]]  # returns the rows it stored


def execute_run(run: RunDir, options: ExecOptions = ExecOptions()) -> dict[str, Any]:
    """Send every planned item of the run that has no stored response yet; store each as it arrives.

    Replies already in the archive for the same request (same endpoint, model, messages, parameters and
    sample) are reused instead of sent, unless the cache is off or the probe is fresh.
    """
    run.check_before_writing()
    manifest = run.manifest()
    done = run.done_items()
    suite, todo = _missing(run, manifest, done)
    writer = ResponseWriter(run)
    reused = _reuse(run, todo, writer) if options.use_cache else set()
    todo = [item for item in todo if item.item_id not in reused]
    cap = options.max_cost if options.max_cost is not None else manifest.max_cost_usd
    spent = cache.spent(run.path.parents[1], run.run_id, list(manifest.targets)) if cap is not None else 0.0
    budget = Budget(cap, spent) if cap is not None else None
    manifest = run.write_manifest(manifest.but(status="running", max_cost_usd=cap))
    status, executor, by_workers = "interrupted", None, 0
    try:
        audited = manifest.target_names()
        helpers = [h for h in (manifest.judge, manifest.attacker) if h is not None and h.name not in audited]
        with endpoints(list(manifest.targets) + helpers) as eps:
            executor = Executor(
                eps,
                lambda item, c: writer.add(item, c, cached=False),
                seed=manifest.seed,
                budget=budget,
                on_warning=options.warn,
            )
            then = _adaptive(run, executor, suite, manifest, done, writer) if suite and manifest.attacker else None
            static = partial(options.fan_out, run, executor, todo) if options.fan_out else None
            by_workers = asyncio.run(_execute_with_progress(executor, todo, options.progress, then, static))
        status = "capped" if executor.capped else "complete"
    finally:
        writer.flush()
        if status == "complete":
            compact.compact(run.path)
        changes = tuple(executor.identity_changes) if executor is not None else ()
        run.write_manifest(
            manifest.but(
                status=status,
                finished_at=now(),
                identity_changes=manifest.identity_changes + changes,
                spent_usd=round(budget.spent, 6) if budget is not None else manifest.spent_usd,
            )
        )
    sent = writer.written - len(reused) + by_workers
    return {"sent": sent, "cached": len(reused), "already_done": len(done), "status": status}


def _missing(run: RunDir, manifest: Manifest, done: set[str]) -> tuple[Suite | None, list[WorkItem]]:
    """The run's suite and its planned items that have no stored response yet (nothing to plan when all do)."""
    if len(done) >= manifest.planned_items:
        return None, []
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    return suite, [item for item in plan(suite, list(manifest.targets)) if item.item_id not in done]


def _reuse(run: RunDir, todo: list[WorkItem], writer: ResponseWriter) -> set[str]:
    """Store replies the archive already holds for identical requests; return the ids of the items answered so."""
    return cache.reuse(run, todo, writer)


def _adaptive(
    run: RunDir, executor: Executor, suite: Suite, manifest: Manifest, done: set[str], writer: ResponseWriter
) -> Callable[[], Awaitable[None]]:
    """The adaptive searches (PAIR, TAP) of every audited target, to run after the static items. They are scored by
    the judge, else by the attacker (a classifier judge cannot score 1 to 10)."""
    from auditor.run.adaptive import Adaptive, Roles, run_searches

    attacker, judge = manifest.attacker, manifest.judge
    if attacker is None:
        raise UsageError("adaptive attacks need an attacker model (auditor run --attacker NAME)")
    scorer = judge if judge is not None and not judge.classifier else attacker

    async def searches() -> None:
        log = ResponseWriter(run, folder="adaptive")
        try:
            for target in manifest.targets:
                roles = Roles(target, attacker.name, scorer.name)
                adaptive = Adaptive(executor, roles, lambda i, c: log.add(i, c, False))
                await run_searches(adaptive, suite, done, lambda i, c: writer.add(i, c, cached=False))
        finally:
            log.flush()
            await executor.close()

    return searches


async def _execute_with_progress(
    executor: Executor,
    items: list[Any],
    progress: OnProgress | None,
    then: Callable[[], Awaitable[None]] | None = None,
    static: Callable[[], Awaitable[int]] | None = None,
) -> int:
    """Send the items (with the executor, or `static`, which returns the rows it stored itself), then `then`;
    return the rows `static` stored."""

    async def send() -> int:
        stored = 0
        if static is not None:
            stored = await static()
        else:
            await executor.run(items)
        if then is not None:
            await then()
        return stored

    if progress is None:
        return await send()

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            progress(executor.tallies)

    ticker = asyncio.ensure_future(tick())
    try:
        return await send()
    finally:
        ticker.cancel()
        progress(executor.tallies)


def grade_run(run: RunDir, suite_path: Path | None = None, judge: Target | None = None) -> list[dict[str, Any]]:
    """Grade a run's stored responses with its own suite copy, or with a given (fixed) suite file.

    A given suite is copied into the run folder, so the report always matches the grades. Judge
    criteria use `judge`, else the judge the run was started with; stored judge answers are reused.
    """
    from auditor.grade.judging import grade_with_judge

    manifest = run.manifest()
    if suite_path is not None:
        suite = load_suite(suite_path)
        shutil.copyfile(suite_path, run.path / "graded-suite.json")
        run.seal(run.path / "graded-suite.json")
        file, source = "graded-suite.json", str(suite_path)
    else:
        suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
        file, source = "suite.json", manifest.suite.path
    judge = judge or manifest.judge
    if judge is None:
        require_judge(suite)
    rows = grade_with_judge(run, suite, {t.name: t for t in manifest.targets}, judge, endpoints)
    compact.compact(run.path)  # the judge's answers, as the replies were when the run finished
    run.write_grades(rows)
    run.write_manifest(run.manifest().but(graded_with=Graded(file, source, suite.sha256, now(), judge)))
    return rows


def graded_suite(run: RunDir) -> Suite:
    """The suite a run was last graded with."""
    graded = run.manifest().graded_with
    if graded is None or not (run.path / "grades.parquet").is_file():
        raise UsageError(f"run {run.run_id} has not been graded: auditor grade {run.run_id}")
    return load_suite(run.path / graded.file, graded.sha256)


def report(archive: Path, run: RunDir, baseline: RunDir | None = None, as_of: date | None = None) -> analyse.Report:
    """Build the report object for a graded run (and its change since a graded `baseline`). No model is called:
    a run that was never graded is an error naming the command that grades it.

    Every run a report draws on is verified against its ledger first: a report never shows altered figures
    next to a seal.
    """
    suites = {}
    for r in (run, baseline):
        if r is None:
            continue
        suites[r.run_id] = graded_suite(r)
        r.require_intact(f"no report is rendered from altered evidence (auditor verify {r.run_id})")
    return analyse.build_report(run, suites[run.run_id], archive, baseline, as_of)


def write_report(
    archive: Path,
    run: RunDir,
    out: Path,
    formats: list[str],
    templates: Path | None = None,
    baseline: RunDir | None = None,
    settings: ReportSettings | None = None,
    as_of: date | None = None,
) -> list[Path]:
    """Analyse a graded run (its waivers and sign-offs as of `as_of`, today by default) and render it."""
    return render.write(report(archive, run, baseline, as_of), out, formats, templates, settings)


ASSUMED_LATENCY_S = 2.0  # per request to a remote endpoint no earlier run in the archive measured
ASSUMED_LOCAL_LATENCY_S = 3.0  # the embedded model, whose speed depends on the machine


def estimate(
    suite_path: Path,
    targets: list[Target],
    max_items: int = MAX_ITEMS,
    judge: Target | None = None,
    attacker: Target | None = None,
    archive: Path | None = None,
) -> PlanEstimate:
    """What a run of the suite would send, cost at most and take, per target and for the judge and the attacker.

    Judge calls are counted as grading makes them, adaptive searches at their loops' maximum, and time from each
    model's median latency in the archive's earlier runs against the same endpoint and model, else an assumed one.
    """
    from auditor.run.plan import estimate_run

    suite = load_suite(suite_path, max_items=max_items)
    check_judge(suite, judge)
    searches = {t.name: [_search(t, *task[:4]) for task in adaptive_tasks(suite, t)] for t in targets}
    models = targets + [h for h in (judge, attacker) if h is not None]
    return estimate_run(suite, targets, (judge, attacker), searches, _latencies(archive, models))


def _search(target: Target, challenge_id: str, probe: Probe, attack: Attack, sample: int) -> Search:
    """The most one adaptive search sends, by the loops of auditor.run.adaptive: every attacker answer parsed (in
    TAP, on topic) and at its 512-token ceiling; no reply reaching the success score; the query cap binding target
    queries only. Scoring calls answer in 8 tokens, topic checks in 4."""
    from auditor.records import Message as M
    from auditor.run import adaptive as a
    from auditor.run.plan import Calls, SearchCalls, messages_for, params_for, stand_in
    from auditor.run.plan import message_tokens as tokens

    spec = attack.spec
    if attack.type == "pair":
        rounds, streams = int(spec.get("rounds", 3)), int(spec.get("streams", 1))
        cap, depths = int(spec.get("max_queries", rounds * streams)), [r for _ in range(streams) for r in range(rounds)]
    else:
        width, depth, branching = int(spec.get("width", 2)), int(spec.get("depth", 2)), int(spec.get("branching", 2))
        cap, depths, leaves = int(spec.get("max_queries", width * depth * branching)), [], 1
        for level in range(depth):  # each kept prompt branches; the best `width` children are kept
            depths, leaves = depths + [level] * (leaves * branching), min(width, leaves * branching)
    depths = depths if cap > 0 else []  # per attacker call, the earlier rounds in its history
    queries, answer = min(cap, len(depths)), stand_in(512)
    ceiling = int(params_for(probe, target, sample).get("max_tokens") or 512)
    behaviour = messages_for(probe, target, dict(variants(probe)[0]))[-1].content
    head = tuple(m for m in messages_for(probe, target, {}) if m.role == "system")
    first = f"Write your first prompt for: {behaviour}"
    start = tokens((M("system", a.ATTACKER_SYSTEM.format(behaviour=behaviour)), M("user", first)))
    feedback = a.FEEDBACK.format(reply="x" * min(3 * ceiling, 2000), score=10)  # the attacker sees 2,000 characters
    grow = tokens((M("assistant", answer), M("user", feedback))) - 3
    score = tokens(
        (M("system", a.SCORER_SYSTEM), M("user", a.SCORER.format(behaviour=behaviour, reply=stand_in(ceiling))))
    )
    topic = tokens((M("system", a.SCORER_SYSTEM), M("user", a.ON_TOPIC.format(behaviour=behaviour, prompt=answer))))
    checks = len(depths) if attack.type == "tap" else 0
    calls = SearchCalls(
        Calls(len(depths), sum(start + d * grow for d in depths), 512 * len(depths)),
        Calls(queries, queries * tokens((*head, M("user", answer))), queries * ceiling),
        Calls(queries + checks, queries * score + checks * topic, 8 * queries + 4 * checks),
    )
    return Search(challenge_id, probe, calls, 512, ceiling)


def _latencies(archive: Path | None, models: list[Target]) -> dict[str, Latency]:
    """Per model name: the median latency of the successful, uncached requests (audited, judge and adaptive alike)
    to the same base_url and model in the archive's runs, else an assumed one."""
    import pyarrow as pa

    from auditor.archive.store import connect, read_rows

    runs = [r.manifest() for r in Archive(archive).runs()] if archive is not None else []
    who = [(m.run_id, t.name, f"{t.base_url} {t.model}") for m in runs for t in (*m.targets, m.judge, m.attacker) if t]
    found: dict[str, Latency] = {}
    if archive is not None and who:
        con = connect(archive)
        con.register("who", pa.table(dict(zip(("run_id", "target", "endpoint"), map(list, zip(*who))))))
        calls = " UNION ALL ".join(
            f"SELECT run_id, target, latency_s FROM {v} WHERE error_class IS NULL AND NOT cached AND latency_s > 0"
            for v in ("responses", "judgements", "adaptive")
        )
        sql = f"SELECT endpoint, median(latency_s) AS s, count(DISTINCT run_id) AS n FROM ({calls}) JOIN who USING "
        sql += "(run_id, target) GROUP BY endpoint"
        found = {r["endpoint"]: Latency(float(r["s"]), int(r["n"])) for r in read_rows(con, sql)}
    assumed = {True: Latency(ASSUMED_LOCAL_LATENCY_S), False: Latency(ASSUMED_LATENCY_S)}
    return {t.name: found.get(f"{t.base_url} {t.model}", assumed[t.embedded]) for t in models}
