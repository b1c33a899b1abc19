"""Chains the stages: load, plan, execute, store, grade, analyse, render."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.archive import cache
from auditor.archive.manifest import Graded, Manifest, SuiteRef
from auditor.archive.store import Archive, ResponseWriter, RunDir
from auditor.clock import now
from auditor.errors import ArchiveError, ConfigError, UsageError
from auditor.grade.judging import check_judge
from auditor.records import Suite, Target, WorkItem
from auditor.report import analyse, render
from auditor.report.settings import ReportSettings
from auditor.run import local
from auditor.run.adaptive import adaptive_tasks
from auditor.run.execute import Endpoint, Executor, Tally
from auditor.run.plan import plan
from auditor.run.throttle import Budget
from auditor.suite.load import MAX_ITEMS, load_suite

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


def tool_versions() -> dict[str, str]:
    versions = {"auditor": __version__, "python": platform.python_version()}
    for dist in ("openai", "duckdb", "pyarrow", "jsonschema", "jinja2", "weasyprint", "llama-cpp-python"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def check_keys(targets: list[Target]) -> dict[str, str]:
    """The API key for each target, read from its environment variable; one clear error if one is missing."""
    keys = {}
    for t in targets:
        if t.api_key_env:
            value = os.environ.get(t.api_key_env)
            if not value:
                raise ConfigError(
                    f"target '{t.name}' needs an API key in the environment variable {t.api_key_env}, which is not set"
                )
            keys[t.name] = value
        else:
            keys[t.name] = "not-needed"
    return keys


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
            result[t.name] = Endpoint(t, url, keys[t.name])
        yield result


def start_run(suite_path: Path, targets: list[Target], options: RunOptions) -> RunDir:
    """Create a run folder with its manifest and a copy of the suite; nothing is sent yet."""
    suite = load_suite(suite_path, max_items=options.max_items)
    check_judge(suite, options.judge)
    if options.judge is None:
        require_judge(suite)
    check_keys(targets + [t for t in (options.judge, options.attacker) if t])
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise UsageError(f"target names must be unique in one run: {', '.join(names)}")
    run = Archive(options.archive).new_run()
    shutil.copyfile(suite_path, run.path / "suite.json")
    run.seal(run.path / "suite.json")
    planned = sum(1 for _ in plan(suite, targets))
    if options.attacker:
        planned += sum(len(adaptive_tasks(suite, t)) for t in targets)
    run.write_manifest(
        Manifest(
            run_id=run.run_id,
            status="running",
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
    status, executor = "interrupted", None
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
            asyncio.run(_execute_with_progress(executor, todo, options.progress, then))
        status = "capped" if executor.capped else "complete"
    finally:
        writer.flush()
        changes = tuple(executor.identity_changes) if executor is not None else ()
        run.write_manifest(
            manifest.but(
                status=status,
                finished_at=now(),
                identity_changes=manifest.identity_changes + changes,
                spent_usd=round(budget.spent, 6) if budget is not None else manifest.spent_usd,
            )
        )
    sent = writer.written - len(reused)
    return {"sent": sent, "cached": len(reused), "already_done": len(done), "status": status}


def _missing(run: RunDir, manifest: Manifest, done: set[str]) -> tuple[Suite | None, list[WorkItem]]:
    """The run's suite and its planned items that have no stored response yet (nothing to plan when all do)."""
    if len(done) >= manifest.planned_items:
        return None, []
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    return suite, [item for item in plan(suite, list(manifest.targets)) if item.item_id not in done]


def _reuse(run: RunDir, todo: list[WorkItem], writer: ResponseWriter) -> set[str]:
    """Store replies the archive already holds for identical requests (never for fresh probes); return the ids
    of the items answered so."""
    reusable = [i for i in todo if not i.fresh]
    hits = cache.lookup(run.path.parents[1], reusable)
    reused = [item for item in reusable if item.request_hash in hits]
    for item in reused:
        writer.add(item, hits[item.request_hash], cached=True)
    writer.flush()
    return {item.item_id for item in reused}


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
    executor: Executor, items: list[Any], progress: OnProgress | None, then: Callable[[], Awaitable[None]] | None = None
) -> None:
    if progress is None:
        await executor.run(items)
        if then is not None:
            await then()
        return

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            progress(executor.tallies)

    ticker = asyncio.ensure_future(tick())
    try:
        await executor.run(items)
        if then is not None:
            await then()
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
    run.write_grades(rows)
    run.write_manifest(run.manifest().but(graded_with=Graded(file, source, suite.sha256, now(), judge)))
    return rows


def graded_suite(run: RunDir) -> Suite:
    """The suite a run was last graded with."""
    graded = run.manifest().graded_with
    if graded is None or not (run.path / "grades.parquet").is_file():
        raise UsageError(f"run {run.run_id} has not been graded: auditor grade {run.run_id}")
    return load_suite(run.path / graded.file, graded.sha256)


def report(archive: Path, run: RunDir, baseline: RunDir | None = None) -> analyse.Report:
    """Build the report object for a graded run (and its change since a graded `baseline`). No model is called:
    a run that was never graded is an error naming the command that grades it.

    Every run a report draws on is verified against its ledger first: a report never shows altered figures
    next to a seal.
    """
    for r in (run, baseline):
        if r is None:
            continue
        graded_suite(r)
        problems = r.verify().problems
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ArchiveError(
                f"run {r.run_id} fails verification: {problems[0]}{more}; no report is rendered from altered "
                f"evidence (auditor verify {r.run_id})"
            )
    return analyse.build_report(run, graded_suite(run), archive, baseline)


def write_report(
    archive: Path,
    run: RunDir,
    out: Path,
    formats: list[str],
    templates: Path | None = None,
    baseline: RunDir | None = None,
    settings: ReportSettings | None = None,
) -> list[Path]:
    """Analyse a graded run and render it."""
    return render.write(report(archive, run, baseline), out, formats, templates, settings)


@dataclass(frozen=True)
class Estimate:
    """What a suite will ask of one target before anything is sent."""

    target: str
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    max_cost_usd: float
    priced: bool


def estimate(suite_path: Path, targets: list[Target], max_items: int = MAX_ITEMS) -> list[Estimate]:
    """Requests, estimated prompt tokens, completion ceilings and the cost ceiling per target."""
    from auditor.run.plan import estimate_tokens

    suite = load_suite(suite_path, max_items=max_items)
    totals = {t.name: [0, 0, 0] for t in targets}
    for item in plan(suite, targets):
        prompt, ceiling = estimate_tokens(item)
        row = totals[item.target]
        row[0] += 1
        row[1] += prompt
        row[2] += ceiling
    out = []
    for t in targets:
        n, p, c = totals[t.name]
        facts = dict(t.facts)
        priced = "price_input_per_mtok" in facts or "price_output_per_mtok" in facts
        out.append(Estimate(t.name, n, p, c, t.price(p, c), priced))
    return out
