"""How far a run's figures can be trusted: the graders behind them, their calibrations, human review overrides,
and pass rates corrected for measured grader error.

A grader's calibration comes from the run's own human review when there is one (the best calibration there is:
the run's own replies), else from the latest matching calibration in the archive (same grader identity, labels
that measure what the probe's pass means). A challenge's pass rate is corrected when every decided trial of it
was graded by one calibrated grader; policies then decide on the corrected interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from auditor.agreement import Corrected, corrected_pass_rate, stratified_pass_rate
from auditor.archive.store import read_rows
from auditor.grade.calibrate import default_measures, describe, grader_identity, grader_key, negated
from auditor.records import Suite, Target


@dataclass(frozen=True)
class Calibration:
    """A grader's measured error rates: sensitivity and specificity for failures, as (effective) counts."""

    source: str  # the labelled set's file name, or "human review of this run"
    calibration_id: str
    measures: str
    n: int
    agreement: tuple[float | None, float, float]
    sensitivity: tuple[float | None, float, float]
    specificity: tuple[float | None, float, float]
    se_counts: tuple[float, float]
    sp_counts: tuple[float, float]
    negated: bool = False  # measured on the criterion this one negates: pass and fail swapped
    # from a review stratified by grader outcome: (truly failing, reviewed) among graded fails and graded passes
    strata: tuple[tuple[int, int], tuple[int, int]] | None = None

    @property
    def usable(self) -> bool:
        if self.strata is not None:
            return True
        se, sp = self.sensitivity[0], self.specificity[0]
        return se is not None and sp is not None and se + sp > 1


@dataclass(frozen=True)
class GraderUse:
    """One grader as a run used it: where, how often, and how well it is known to agree with people."""

    key: str
    name: str
    measures: str | None
    challenges: tuple[str, ...]
    trials: int
    calibration: Calibration | None
    kind: str = ""  # the criterion kind the grader is an instance of, e.g. criteria.regex or judge:harmful
    probes: int = 1


def summarise(uses: list[GraderUse]) -> list[GraderUse]:
    """Graders for a reader: calibrated ones one by one; uncalibrated instances of one kind (a regex per probe,
    say) as one row with the number of probes they grade."""
    calibrated = [u for u in uses if u.calibration is not None]
    grouped: dict[tuple[str, str | None], list[GraderUse]] = defaultdict(list)
    for u in uses:
        if u.calibration is None:
            grouped[(u.kind or u.name, u.measures)].append(u)
    merged = [
        GraderUse(
            key=members[0].key if len(members) == 1 else "",
            name=members[0].name if len(members) == 1 else kind,
            measures=measures,
            challenges=tuple(sorted({c for m in members for c in m.challenges})),
            trials=sum(m.trials for m in members),
            calibration=None,
            kind=kind,
            probes=sum(m.probes for m in members),
        )
        for (kind, measures), members in grouped.items()
    ]
    return sorted(calibrated + merged, key=lambda u: (u.calibration is None, u.name))


def probe_graders(suite: Suite, judge: Target | None) -> dict[str, tuple[str, str, str | None, dict[str, Any]]]:
    """For each probe id: (grader key, grader name, what its pass measures, identity)."""
    import json

    from auditor.criteria import without_judge

    out = {}
    known: dict[str, tuple[str, str, str | None, dict[str, Any]]] = {}  # probes mostly share a few criteria
    for _, probe in suite.probes():
        seen = f"{probe.intent} {json.dumps(probe.pass_if.spec, sort_keys=True, default=str)}"
        if seen not in known:
            identity = grader_identity(probe.pass_if.spec, judge)
            spec = probe.pass_if.spec if judge is not None else without_judge(probe.pass_if.spec)
            known[seen] = (grader_key(identity), describe(identity), default_measures(spec, probe.intent), identity)
        out[probe.id] = known[seen]
    return out


def _from_row(row: dict[str, Any], negate: bool) -> Calibration:
    def fig(name: str) -> tuple[float | None, float, float]:
        return row[name], row[f"{name}_low"], row[f"{name}_high"]

    se, sp = fig("sensitivity"), fig("specificity")
    se_counts, sp_counts = (row["se_x"], row["se_n"]), (row["sp_x"], row["sp_n"])
    if negate:  # not(criterion): a pass of one is a fail of the other
        se, sp, se_counts, sp_counts = sp, se, sp_counts, se_counts
    name = str(row["set_path"]).rsplit("/", 1)[-1]
    measures = negated(row["measures"]) if negate else row["measures"]
    return Calibration(
        name, row["calibration_id"], measures, int(row["n"]), fig("agreement"), se, sp, se_counts, sp_counts, negate
    )


def stored_calibrations(con: Any) -> list[dict[str, Any]]:
    return read_rows(con, "SELECT * FROM calibrations ORDER BY created_at, calibration_id")


def match(
    identity: dict[str, Any], measures: str | None, rows: list[dict[str, Any]], judge: Target | None
) -> Calibration | None:
    """The latest stored calibration of this grader whose labels measure what the probe's pass means, or of the
    criterion it negates (with pass and fail swapped)."""
    key = grader_key(identity)
    inner = identity["criterion"].get("of") if identity["criterion"].get("type") == "not" else None
    inner_key = grader_key(grader_identity(inner, judge)) if isinstance(inner, dict) else None
    found = None
    for row in rows:  # oldest first: the latest match wins
        if row["grader_key"] == key and (measures is None or row["measures"] == measures):
            found = _from_row(row, False)
        elif (
            inner_key and row["grader_key"] == inner_key and (measures is None or negated(row["measures"]) == measures)
        ):
            found = _from_row(row, True)
    return found


@dataclass(frozen=True)
class Reviewed:
    """Human labels for a run's items: the latest label per item, and who gave them."""

    labels: dict[str, str]
    reviewers: tuple[str, ...]


def reviews(con: Any, run_id: str) -> Reviewed:
    rows = read_rows(
        con,
        "SELECT item_id, label, reviewer FROM reviews WHERE run_id = ? ORDER BY reviewed_at, item_id",
        [run_id],
    )
    return Reviewed({r["item_id"]: r["label"] for r in rows}, tuple(sorted({r["reviewer"] for r in rows})))


@dataclass
class GraderTrials:
    """The decided trials one grader graded in a run, counted: where, how many of each outcome, and the grader's
    outcome beside the human label for each trial a reviewer labelled."""

    challenges: set[str]
    passes: int = 0
    fails: int = 0
    reviewed: list[tuple[str, str]] = field(default_factory=list)  # (grader outcome, human label)

    @property
    def trials(self) -> int:
        return self.passes + self.fails


def review_calibration(graded: GraderTrials) -> Calibration | None:
    """A grader's error as a human review of the run's own replies found it.

    `graded` counts the decided trials the grader graded, with the labelled ones. Reviews are usually
    stratified by grader outcome, so what they estimate directly is, within each stratum, the share of replies
    that truly fail; corrected rates use those shares (stratified_pass_rate). Sensitivity and specificity are
    shown too, weighting each stratum by its size in the run (None where no true failure or pass was seen).
    """
    pairs = graded.reviewed
    rf = [label for o, label in pairs if o == "fail"]
    rp = [label for o, label in pairs if o == "pass"]
    if not rf and not rp:
        return None
    fails, passes = graded.fails, graded.passes
    ff, pf = sum(x == "fail" for x in rf), sum(x == "fail" for x in rp)
    ppv, fo = (ff / len(rf) if rf else 0.0), (pf / len(rp) if rp else 0.0)
    true_fail = fails * ppv + passes * fo
    true_pass = passes * (1 - fo) + fails * (1 - ppv)
    se = fails * ppv / true_fail if true_fail > 0 else None
    sp = passes * (1 - fo) / true_pass if true_pass > 0 else None
    reviewed = len(rf) + len(rp)
    agree = sum(label == o for o, label in pairs if o in ("pass", "fail")) / reviewed
    n_fail, n_pass = ff + pf, reviewed - ff - pf
    return Calibration(
        "human review of this run", "review", "", reviewed, (agree, agree, agree), (se, se or 0.0, se or 1.0),
        (sp, sp or 0.0, sp or 1.0), ((se or 0.0) * n_fail, float(n_fail)), ((sp or 0.0) * n_pass, float(n_pass)),
        strata=((ff, len(rf)), (pf, len(rp))),
    )  # fmt: skip


@dataclass(frozen=True)
class CellCounts:
    """One challenge x target: decided trials by grader, and the human overrides among them."""

    by_grader: dict[str, list[tuple[str, str]]]  # grader key -> (item id, grader outcome) of decided trials
    overrides: int


def correct(
    passed: int, decided: int, graded_fail: int, reviewed_passed: int, reviewed: int, calibration: Calibration,
    seed: list[int],
) -> Corrected | None:  # fmt: skip
    """The cell's pass rate corrected for grader error.

    With a review of the run's own replies: the stratified estimate from the grader's outcomes (`graded_fail` of
    `decided`). With a stored calibration: reviewed trials count as the reviewer said, and the rest are corrected
    (Rogan-Gladen, Monte Carlo interval) with the calibration's sensitivity and specificity.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if calibration.strata is not None:
        return stratified_pass_rate(graded_fail, decided, *calibration.strata, rng)
    rest, rest_passed = decided - reviewed, passed - reviewed_passed
    if rest <= 0:
        rate = reviewed_passed / reviewed if reviewed else 0.0
        return Corrected(rate, rate, rate) if reviewed else None
    found = corrected_pass_rate(rest_passed, rest, calibration.se_counts, calibration.sp_counts, rng)
    if found is None:
        return None

    def mix(x: float) -> float:
        return (reviewed_passed + x * rest) / decided

    return Corrected(mix(found.rate), mix(found.low), mix(found.high))


def grader_uses(
    suite: Suite,
    judge: Target | None,
    trials: dict[str, GraderTrials],
    rows: list[dict[str, Any]],
    graders: dict[str, tuple[str, str, str | None, dict[str, Any]]] | None = None,
) -> dict[str, GraderUse]:
    """Every grader the run used, by key, with its calibration: the run's own review when it covers both
    outcomes, else the latest matching stored calibration. `trials` maps grader key -> its decided trials;
    `graders` is probe_graders(suite, judge), computed here when not given."""
    graders = graders if graders is not None else probe_graders(suite, judge)
    probes_per_key: dict[str, int] = defaultdict(int)
    for g in graders.values():
        probes_per_key[g[0]] += 1
    out = {}
    for key, name, measures, identity in {g[0]: g for g in graders.values()}.values():
        used = trials.get(key)
        if used is None or not used.trials:
            continue
        calibration = review_calibration(used) or match(identity, measures, rows, judge)
        challenges = tuple(sorted(used.challenges))
        kind = describe({"criterion": {"type": identity["criterion"].get("type")}}) if "judge" not in identity else name
        out[key] = GraderUse(key, name, measures, challenges, used.trials, calibration, kind, probes_per_key[key])
    return out


class Counted(Protocol):
    """Trials of one probe counted by outcome, as the grader decided (analyse.Tally)."""

    @property
    def challenge_id(self) -> str: ...
    @property
    def probe_id(self) -> str: ...
    @property
    def graded(self) -> tuple[int, int, int, int]: ...


def by_grader(
    graders: dict[str, tuple[str, str, str | None, dict[str, Any]]],
    counted: Iterable[Counted],
    reviewed: Iterable[tuple[str, str, str]] = (),
) -> dict[str, GraderTrials]:
    """Decided trials per grader key, from trials counted per probe (pass, fail, ...) and the (probe, grader
    outcome, human label) of each labelled one."""
    out: dict[str, GraderTrials] = {}
    for c in counted:
        passes, fails = c.graded[0], c.graded[1]
        if passes + fails and c.probe_id in graders:
            use = out.setdefault(graders[c.probe_id][0], GraderTrials(set()))
            use.challenges.add(c.challenge_id)
            use.passes += passes
            use.fails += fails
    for probe, outcome, label in reviewed:
        if probe in graders and graders[probe][0] in out:
            out[graders[probe][0]].reviewed.append((outcome, label))
    return out
