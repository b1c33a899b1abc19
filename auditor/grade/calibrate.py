"""Measures a grader against a labelled set: how often its pass and fail agree with people, with intervals.

A grader is a criterion spec (refusal, a regex, a judge rubric ...) together with the judge model when it asks one.
Its identity leaves out what a suite fills in per probe (`means`, and the judge's `behaviour`, `reference` and
`context` slots), so one calibration of `{"type": "refusal"}` or of `judge:harmful` by one judge model applies to
every probe graded that way. A calibration also says what its labels measure (`refusal`: pass = the reply
declines; `harm`: pass = the reply is not an instance of the harmful behaviour; or a name of the user's own), so a
refusal detector measured as a refusal detector is not mistaken for a harm detector.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditor import criteria
from auditor.agreement import Figure, grader_agreement
from auditor.records import Grade, Reply, Target
from auditor.run.plan import content_hash
from auditor.stats import wilson
from auditor.suite.labelled import LabelledItem, LabelledSet

PER_PROBE = ("means", "behaviour", "reference", "context")
FIGURES = ("agreement", "sensitivity", "specificity", "precision", "kappa")


def grader_identity(spec: dict[str, Any], judge: Target | None) -> dict[str, Any]:
    """The grader a criterion spec stands for: the spec without per-probe text, plus the judge's endpoint and model
    when the criterion (or one inside it) asks a judge."""
    from auditor.criteria import uses_judge, without_judge

    if judge is None:
        spec = without_judge(spec)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in sorted(value.items()) if k not in PER_PROBE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    identity: dict[str, Any] = {"criterion": strip(spec)}
    if judge is not None and uses_judge(spec):
        identity["judge"] = {"base_url": judge.base_url, "model": judge.model}
    return identity


def grader_key(identity: dict[str, Any]) -> str:
    return content_hash(identity)


def describe(identity: dict[str, Any]) -> str:
    """A grader in a few words: `criteria.refusal`, `judge:harmful by gpt-4o`, `not(criteria.refusal)` ..."""

    def name(spec: dict[str, Any]) -> str:
        kind = spec.get("type")
        if kind == "judge":
            return f"judge:{spec.get('rubric')}"
        if kind == "not" and isinstance(spec.get("of"), dict):
            return f"not({name(spec['of'])})"
        if kind in ("all", "any") and isinstance(spec.get("of"), list):
            return f"{kind}({', '.join(name(c) for c in spec['of'])})"
        detail = spec.get("values") or spec.get("value") or spec.get("pattern")
        if detail is None:
            return f"criteria.{kind}"
        shown = ", ".join(str(v) for v in detail) if isinstance(detail, list) else str(detail)
        return f"criteria.{kind} [{shown if len(shown) <= 24 else shown[:23] + '…'}]"

    judge = identity.get("judge")
    return name(identity["criterion"]) + (f" by {judge['model']}" if judge else "")


def negated(measures: str) -> str:
    """What `not(criterion)` measures when the criterion measures `measures`."""
    return measures[4:] if measures.startswith("not-") else f"not-{measures}"


def default_measures(spec: dict[str, Any], intent: str | None = None) -> str | None:
    """What a probe's pass means, for matching calibrations: `harm` for harmful-intent probes and harm rubrics,
    `refusal` for refusal detection, `not-refusal` for its negation (benign twins), else None (any labels)."""
    if intent == "harmful":
        return "harm"
    kind = spec.get("type")
    if kind == "refusal" or (kind == "judge" and spec.get("rubric") == "refusal"):
        return "refusal"
    if kind == "judge" and spec.get("rubric") in ("harmful", "safe_unsafe"):
        return "harm"
    if kind == "not" and isinstance(spec.get("of"), dict):
        inner = default_measures(spec["of"])
        return negated(inner) if inner else None
    return None


@dataclass(frozen=True)
class ItemGrade:
    """A labelled item, the grader's outcome on it, and why."""

    item: LabelledItem
    outcome: str
    evidence: str


@dataclass(frozen=True)
class Measured:
    """What calibration found: the grader, the set, the confusion counts and the figures with intervals."""

    grader: str
    identity: dict[str, Any]
    key: str
    labelled: LabelledSet
    grades: tuple[ItemGrade, ...]
    figures: dict[str, Figure]
    judge_models: tuple[str, ...] = ()

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(tp, fn, fp, tn) over decided items, failure being the positive class."""
        tp = fn = fp = tn = 0
        for g in self.grades:
            if g.outcome not in ("pass", "fail"):
                continue
            truth_fail, graded_fail = g.item.label == "fail", g.outcome == "fail"
            tp += truth_fail and graded_fail
            fn += truth_fail and not graded_fail
            fp += graded_fail and not truth_fail
            tn += not truth_fail and not graded_fail
        return tp, fn, fp, tn

    @property
    def undecided(self) -> int:
        return sum(g.outcome not in ("pass", "fail") for g in self.grades)


def effective(figure: Figure, x: int, n: int) -> tuple[float, float]:
    """(x, n) divided by the design effect implied by a clustered interval wider than Wilson's."""
    if not n:
        return 0.0, 0.0
    low, high = wilson(x, n)
    deff = max(1.0, ((figure.high - figure.low) / max(high - low, 1e-9)) ** 2)
    return x / deff, n / deff


GradeItem = Callable[[LabelledItem], Grade]


def grade_items(lset: LabelledSet, spec: dict[str, Any], ask: criteria.Ask) -> list[ItemGrade]:
    """Grade every labelled item with the criterion; the item's prompt and context fill the judge's slots."""
    checks: dict[str, criteria.Check] = {}
    out = []
    for item in lset.items:
        item_spec = {**spec, "context": item.context} if item.context and spec.get("type") == "judge" else spec
        key = item.context if item_spec is not spec else ""
        if key not in checks:
            checks[key] = criteria.build(item_spec)
        grade = checks[key](Reply(content=item.reply, prompt=item.prompt), ask)
        out.append(ItemGrade(item, grade.outcome, grade.evidence))
    return out


def measure(
    lset: LabelledSet, spec: dict[str, Any], grades: list[ItemGrade], judge: Target | None, seed: int = 0
) -> Measured:
    """The figures of a graded labelled set, clustered by the items' groups."""
    import numpy as np

    identity = grader_identity(spec, judge)
    by_group: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for g in grades:
        if g.outcome not in ("pass", "fail"):
            continue
        cell = by_group[g.item.group or g.item.id]
        truth_fail, graded_fail = g.item.label == "fail", g.outcome == "fail"
        cell[0 if truth_fail and graded_fail else 1 if truth_fail else 2 if graded_fail else 3] += 1
    counts = [tuple(by_group[k]) for k in sorted(by_group)]
    figures = grader_agreement(counts, np.random.default_rng([seed, 7]))  # type: ignore[arg-type]
    return Measured(describe(identity), identity, grader_key(identity), lset, tuple(grades), figures)


def summary_row(cal_id: str, created_at: str, m: Measured) -> dict[str, Any]:
    """The one row a calibration adds to the `calibrations` view."""
    tp, fn, fp, tn = m.counts
    se_x, se_n = effective(m.figures["sensitivity"], tp, tp + fn)
    sp_x, sp_n = effective(m.figures["specificity"], tn, tn + fp)
    row: dict[str, Any] = {
        "calibration_id": cal_id,
        "created_at": created_at,
        "grader": m.grader,
        "grader_key": m.key,
        "identity": criteria_json(m.identity),
        "judge_models": ", ".join(m.judge_models) or None,
        "measures": m.labelled.measures,
        "set_path": m.labelled.path,
        "set_format": m.labelled.format,
        "set_sha256": m.labelled.sha256,
        "n": len(m.grades),
        "groups": m.labelled.groups,
        "undecided": m.undecided,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "se_x": se_x,
        "se_n": se_n,
        "sp_x": sp_x,
        "sp_n": sp_n,
    }
    for name in FIGURES:
        f = m.figures[name]
        row[name], row[f"{name}_low"], row[f"{name}_high"] = f.value, f.low, f.high
    return row


def criteria_json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def calibrate(
    archive_root: Any,
    lset: LabelledSet,
    spec: dict[str, Any],
    judge: Target | None,
    connect: Any,
    versions: dict[str, str],
    seed: int = 0,
) -> tuple[str, Measured]:
    """Grade a labelled set with a criterion (asking `judge` where the criterion needs one), measure agreement,
    and store the calibration in the archive; returns its id and figures."""
    from auditor.archive.store import Archive, write_calibration
    from auditor.clock import now
    from auditor.criteria import uses_judge
    from auditor.errors import UsageError
    from auditor.grade import judging

    try:
        criteria.build(spec)
    except criteria.CriterionError as exc:
        raise UsageError(f"--criterion: {exc.pointer or '/'}: {exc}") from None
    if uses_judge(spec) and judge is None:
        raise UsageError("the criterion asks a judge model: name one with --judge NAME (and --targets FILE)")
    folder = Archive(archive_root).new_calibration()
    ask: criteria.Ask = criteria.no_judge
    models: tuple[str, ...] = ()
    if judge is not None and uses_judge(spec):
        answers, models = judging.judge_labelled(folder, lset, spec, judge, connect, grade_items)
        ask = answers
    grades = grade_items(lset, spec, ask)
    measured = measure(lset, spec, grades, judge, seed)
    measured = Measured(**{**measured.__dict__, "judge_models": models})
    created = now()
    items = [
        {
            "calibration_id": folder.run_id,
            "item_id": g.item.id,
            "group": g.item.group,
            "label": g.item.label,
            "outcome": g.outcome,
            "evidence": g.evidence[:500],
        }
        for g in grades
    ]
    record = {
        "calibration_id": folder.run_id,
        "created_at": created,
        "grader": measured.grader,
        "criterion": spec,
        "identity": measured.identity,
        "judge": judge.public() if judge is not None and uses_judge(spec) else None,
        "judge_models": list(models),
        "labelled_set": {
            "path": lset.path,
            "format": lset.format,
            "sha256": lset.sha256,
            "measures": lset.measures,
            "items": len(lset.items),
            "groups": lset.groups,
        },
        "tool_versions": versions,
    }
    write_calibration(folder, summary_row(folder.run_id, created, measured), items, record)
    return folder.run_id, measured
