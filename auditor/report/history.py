"""The archive as a record over time: per suite, target and challenge, the pass rate of every graded run with the
verdicts and sign-offs of each run, and where consecutive graded runs differ significantly, trial by trial.

The figures are the report's own (a report is built per run by a function the caller passes in: the orchestration
module builds reports, and this stage sits upstream of it); a run without a report (never graded, failing
verification, unreadable) is listed with the reason instead of figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from auditor.archive import acts
from auditor.archive.acts import Signoff
from auditor.archive.manifest import Manifest
from auditor.archive.store import Archive, RunDir, connect
from auditor.errors import AuditorError, UnknownName, UsageError
from auditor.report.analyse import Report
from auditor.report.compare import Drift, drift

BuildReport = Callable[[RunDir], Report]

ALPHA = 0.05  # a change between runs is flagged when McNemar's exact test on the paired trials is below this
# what became of a run when its report was built
GRADED, NOT_GRADED, TAMPERED, UNREPORTABLE, UNREADABLE = (
    "graded",
    "not graded",
    "fails verification",
    "cannot be reported",
    "unreadable",
)


@dataclass(frozen=True)
class Rate:
    """One challenge for one target in one run: the report's counts, pass rate and 95% interval."""

    target: str
    challenge_id: str
    passed: int
    failed: int
    undecided: int  # errored and unparseable trials, counted neither way
    rate: float | None
    low: float
    high: float
    corrected: float | None = None  # the pass rate corrected for measured grader error, where the report has one


@dataclass(frozen=True)
class Change:
    """One target on one challenge from the previous graded run of the suite to this one, on the paired trials."""

    target: str
    challenge_id: str
    run_id: str
    since: str
    n: int
    before: float | None
    now: float | None
    difference: float | None
    low: float
    high: float
    p_value: float
    text: str

    @property
    def significant(self) -> bool:
        return self.difference is not None and self.difference != 0 and self.p_value < ALPHA

    @property
    def direction(self) -> str:
        """up, down or same (the sign of the difference in pass rate)."""
        if not self.difference:
            return "same"
        return "up" if self.difference > 0 else "down"


@dataclass(frozen=True)
class ContextVerdict:
    """The decision for one target in one deployment context of a run."""

    target: str
    context: str
    title: str
    decision: str


@dataclass(frozen=True)
class RunEntry:
    """One run as the history and the index show it: what it is, and its figures or why it has none."""

    run_id: str
    label: str
    started_at: str
    status: str
    suite_id: str
    suite_version: str
    suite_title: str
    targets: tuple[str, ...]
    state: str  # graded, or why there is no report: not graded, fails verification, cannot be reported, unreadable
    reason: str  # the error that kept the report from being built, word for word
    challenges: tuple[tuple[str, str], ...] = ()  # (id, title) of the measured challenges
    contexts: tuple[tuple[str, str], ...] = ()  # (id, title) of the deployment contexts
    rates: tuple[Rate, ...] = ()
    verdicts: tuple[ContextVerdict, ...] = ()
    signoffs: tuple[Signoff, ...] = ()

    @property
    def reported(self) -> bool:
        return self.state == GRADED

    @property
    def when(self) -> str:
        """The start as date and minute, e.g. 2026-11-27 22:31 (UTC)."""
        return self.started_at[:16].replace("T", " ")


@dataclass(frozen=True)
class Row:
    """One run in one target's history, aligned with its suite's columns: a rate and a change per challenge (None
    where there is none), a decision per context, and the sign-offs that concern the target."""

    run: RunEntry
    number: int  # 1, 2 ... over the target's graded runs; 0 for a run without figures
    rates: tuple[Rate | None, ...]
    changes: tuple[Change | None, ...]
    decisions: tuple[str | None, ...]
    signoffs: tuple[Signoff, ...]


@dataclass(frozen=True)
class TargetHistory:
    """Every run of a suite against one target, oldest first, and each comparison of consecutive graded runs."""

    target: str
    rows: tuple[Row, ...]
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class SuiteHistory:
    """One suite (by id, across its versions) over time: the columns, then a history per target."""

    suite_id: str
    title: str
    challenges: tuple[tuple[str, str], ...]
    contexts: tuple[tuple[str, str], ...]
    targets: tuple[TargetHistory, ...]
    notes: tuple[str, ...] = ()  # comparisons that could not be made, and why


@dataclass(frozen=True)
class History:
    """The chosen runs of an archive (newest first) and the history of every suite among them."""

    runs: tuple[RunEntry, ...]
    suites: tuple[SuiteHistory, ...]


def history(
    root: Path, build: BuildReport, target: str | None = None, suite: str | None = None, context: str | None = None
) -> History:
    """The history of the archive's runs, optionally of one target, one suite id and one deployment context.

    Args:
        root: The archive folder.
        build: Builds a graded run's report; raises AuditorError when it cannot (not graded, fails verification).
        target: Only runs of this target, and only its figures.
        suite: Only runs of this suite id.
        context: Only this deployment context's verdicts and sign-offs.

    Raises:
        UsageError: The archive holds no runs, or a filter names nothing in it ("did you mean").
    """
    import duckdb

    runs = Archive(root).runs()
    if not runs:
        raise UsageError(f"{root}: no runs in this archive (run `auditor run SUITE` first)")
    manifests = {run.run_id: _manifest(run) for run in runs}
    _check_filters([m for m in manifests.values() if m is not None], target, suite)

    def wanted(m: Manifest | None) -> bool:
        if m is None:  # an unreadable run belongs to no suite or target: listed only when nothing is filtered
            return suite is None and target is None
        return (suite is None or m.suite.id == suite) and (target is None or target in m.target_names())

    entries = [entry(run, build, manifests[run.run_id]) for run in runs if wanted(manifests[run.run_id])]
    if context is not None and context not in {c for e in entries for c, _ in e.contexts}:
        raise UnknownName("context", context, {c for e in entries for c, _ in e.contexts})
    try:
        con: Any = connect(root)
    except duckdb.Error as exc:  # a damaged Parquet file anywhere in the archive fails its views
        con = _said(exc)
    compared: dict[tuple[str, str], list[Drift] | str] = {}

    def compare(a: str, b: str) -> list[Drift] | str:
        if isinstance(con, str):
            return con
        if (a, b) not in compared:
            try:
                compared[(a, b)] = drift(con, a, b)
            except (AuditorError, duckdb.Error) as exc:
                compared[(a, b)] = _said(exc)
        return compared[(a, b)]

    by_suite: dict[str, list[RunEntry]] = defaultdict(list)
    for e in entries:
        if e.suite_id:
            by_suite[e.suite_id].append(e)
    suites = tuple(_suite(sid, by_suite[sid], target, context, compare) for sid in sorted(by_suite))
    return History(tuple(reversed(entries)), suites)


def _check_filters(manifests: list[Manifest], target: str | None, suite: str | None) -> None:
    """A suite or target filter must name one the archive has run (the target with that suite, when both)."""
    suites = {m.suite.id for m in manifests}
    if suite is not None and suite not in suites:
        raise UnknownName("suite", suite, suites)
    targets = {t for m in manifests if suite is None or m.suite.id == suite for t in m.target_names()}
    if target is None or target in targets:
        return
    if suite is not None and target in {t for m in manifests for t in m.target_names()}:
        raise UsageError(f"target '{target}' has no runs of suite '{suite}'; its targets: {', '.join(sorted(targets))}")
    raise UnknownName("target", target, targets)


def _manifest(run: RunDir) -> Manifest | None:
    try:
        return run.manifest()
    except AuditorError:
        return None


def entry(run: RunDir, build: BuildReport, manifest: Manifest | None = None) -> RunEntry:
    """One run with its report's figures, verdicts and sign-offs, or the reason it has no report; never raises."""
    try:
        manifest = manifest or run.manifest()
    except AuditorError as exc:
        return RunEntry(run.run_id, "", "", "unknown", "", "", "", (), UNREADABLE, str(exc))
    head = RunEntry(
        run_id=run.run_id,
        label=manifest.label or "",
        started_at=manifest.started_at,
        status=manifest.status,
        suite_id=manifest.suite.id,
        suite_version=manifest.suite.version,
        suite_title=manifest.suite.title,
        targets=tuple(manifest.target_names()),
        state=GRADED,
        reason="",
    )
    import duckdb

    try:
        report = build(run)
        signoffs = tuple(acts.signoffs(run))
    except (AuditorError, duckdb.Error) as exc:  # a damaged Parquet file anywhere in the archive fails its views
        return replace(head, state=_why(run, manifest), reason=_said(exc))
    rates = tuple(
        Rate(
            c.target,
            c.challenge_id,
            c.passed,
            c.failed,
            c.errored + c.unparseable,
            c.rate,
            *c.interval,
            corrected=c.corrected.rate if c.corrected is not None else None,
        )
        for f in report.findings
        for c in f.cells
    )
    return replace(
        head,
        suite_title=report.suite.title,
        challenges=tuple((f.challenge.id, f.challenge.title) for f in report.findings),
        contexts=tuple((p.id, p.title) for p in report.suite.policies),
        rates=rates,
        verdicts=tuple(ContextVerdict(v.target, v.policy.id, v.policy.title, v.decision) for v in report.verdicts),
        signoffs=signoffs,
    )


def _said(exc: Exception) -> str:
    """An error as one line for a reader: ours as written, DuckDB's first line saying which file it could not read."""
    if isinstance(exc, AuditorError):
        return str(exc)
    return f"the archive's tables cannot be read: {str(exc).splitlines()[0]}"


def _why(run: RunDir, manifest: Manifest) -> str:
    """Why a run has no report, in a word: never graded, altered since it was sealed, or otherwise damaged."""
    if manifest.graded_with is None or not (run.path / "grades.parquet").is_file():
        return NOT_GRADED
    try:
        return TAMPERED if run.verify().problems else UNREPORTABLE
    except AuditorError:
        return UNREPORTABLE


def _union(lists: Sequence[Sequence[tuple[str, str]]]) -> tuple[tuple[str, str], ...]:
    """(id, title) pairs in order of first appearance, titled as the latest run titles them."""
    titles: dict[str, str] = {}
    for pairs in lists:
        for key, title in pairs:
            titles[key] = title
    order = list(dict.fromkeys(key for pairs in lists for key, _ in pairs))
    return tuple((key, titles[key]) for key in order)


def _suite(
    suite_id: str,
    entries: list[RunEntry],
    target: str | None,
    context: str | None,
    compare: Callable[[str, str], list[Drift] | str],
) -> SuiteHistory:
    """One suite's history, entries oldest first."""
    challenges = _union([e.challenges for e in entries])
    contexts = tuple(c for c in _union([e.contexts for e in entries]) if context is None or c[0] == context)
    targets = list(dict.fromkeys(t for e in entries for t in e.targets if target is None or t == target))
    notes: list[str] = []
    histories = []
    for name in targets:
        mine = [e for e in entries if name in e.targets]
        changes: dict[tuple[str, str], Change] = {}
        graded = [e for e in mine if e.reported]
        for before, now in zip(graded, graded[1:]):
            found = compare(before.run_id, now.run_id)
            if isinstance(found, str):
                notes.append(f"{now.run_id} not compared with {before.run_id}: {found}")
                continue
            for d in found:
                if d.target == name:
                    changes[(now.run_id, d.challenge_id)] = _change(d, now.run_id, before.run_id)
        rows = []
        for e in mine:
            rates = {r.challenge_id: r for r in e.rates if r.target == name}
            decisions = {v.context: v.decision for v in e.verdicts if v.target == name}
            rows.append(
                Row(
                    run=e,
                    number=graded.index(e) + 1 if e in graded else 0,
                    rates=tuple(rates.get(c) for c, _ in challenges),
                    changes=tuple(changes.get((e.run_id, c)) for c, _ in challenges),
                    decisions=tuple(decisions.get(c) for c, _ in contexts),
                    signoffs=tuple(
                        s for s in e.signoffs if s.target in (None, name) and (context is None or s.context == context)
                    ),
                )
            )
        histories.append(TargetHistory(name, tuple(rows), tuple(changes.values())))
    title = next((e.suite_title for e in reversed(entries) if e.suite_title), suite_id)
    return SuiteHistory(suite_id, title, challenges, contexts, tuple(histories), tuple(dict.fromkeys(notes)))


def _change(d: Drift, run_id: str, since: str) -> Change:
    r = d.result
    return Change(
        d.target, d.challenge_id, run_id, since, r.n, r.b_rate, r.a_rate, r.difference, r.low, r.high, r.p_value, d.text
    )


def to_json(found: History) -> dict[str, Any]:
    """Everything the history holds, for `auditor history --format json`: every run, then per suite and target
    each run's rates, changes, verdicts and sign-offs."""
    head = ("run_id", "label", "started_at", "status", "suite_id", "suite_version", "targets", "state", "reason")
    return {
        "runs": [{k: getattr(e, k) for k in head} for e in found.runs],
        "suites": [
            {
                "suite": s.suite_id,
                "title": s.title,
                "challenges": [{"id": c, "title": t} for c, t in s.challenges],
                "contexts": [{"id": c, "title": t} for c, t in s.contexts],
                "notes": list(s.notes),
                "targets": [{"target": t.target, "runs": [_row_json(s, row) for row in t.rows]} for t in s.targets],
            }
            for s in found.suites
        ],
    }


def _row_json(suite: SuiteHistory, row: Row) -> dict[str, Any]:
    rates = {
        c: {"passed": r.passed, "failed": r.failed, "undecided": r.undecided, "rate": r.rate, "ci95": [r.low, r.high]}
        | {"corrected": r.corrected}
        for (c, _), r in zip(suite.challenges, row.rates)
        if r is not None
    }
    changes = {
        c: {"since": x.since, "paired_trials": x.n, "before": x.before, "now": x.now, "difference": x.difference}
        | {"ci95": [x.low, x.high], "p_value": x.p_value, "significant": x.significant, "direction": x.direction}
        | {"statement": x.text}
        for (c, _), x in zip(suite.challenges, row.changes)
        if x is not None
    }
    return {
        **{k: getattr(row.run, k) for k in ("run_id", "started_at", "label", "suite_version", "state", "reason")},
        "rates": rates,
        "changes": changes,
        "verdicts": {c: d for (c, _), d in zip(suite.contexts, row.decisions) if d is not None},
        "signoffs": [asdict(s) for s in row.signoffs],
    }
