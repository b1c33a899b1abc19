"""Decides per deployment context: each challenge's figures (cells, counted from the trials tallied per probe),
each rule's outcome on them, and the verdict per target, with what the decision rests on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import cached_property
from typing import Any, NamedTuple

from auditor.agreement import Corrected
from auditor.archive.acts import Waiver
from auditor.records import Policy, Rule, Suite
from auditor.report import validity
from auditor.stats import allowed_failures, bootstrap_clustered, wilson


@dataclass(frozen=True)
class Cell:
    """One challenge x target: counts, pass rate and its 95% interval over decided trials.

    The interval is Wilson's; when a probe contributes several trials (samples or variants, which are
    not independent) it is the wider of Wilson's and a probe-clustered bootstrap interval.
    """

    challenge_id: str
    target: str
    passed: int
    failed: int
    errored: int
    unparseable: int = 0
    bootstrap: tuple[float, float] | None = None
    overrides: int = 0  # trials a human reviewer graded differently from the grader (counted as the reviewer said)
    corrected: Corrected | None = None  # the pass rate corrected for the grader's measured error
    calibration: str = ""  # what the correction rests on

    @property
    def decided(self) -> int:
        return self.passed + self.failed

    @property
    def rate(self) -> float | None:
        return self.passed / self.decided if self.decided else None

    @cached_property
    def wilson(self) -> tuple[float, float]:
        return wilson(self.passed, self.decided)

    @cached_property
    def interval(self) -> tuple[float, float]:
        low, high = self.wilson
        if self.bootstrap is None or not self.decided:
            return low, high
        return min(low, self.bootstrap[0]), max(high, self.bootstrap[1])

    @cached_property
    def decision(self) -> tuple[float | None, float, float]:
        """The rate and interval policies decide on: corrected for grader error where a calibration allows it."""
        if self.corrected is not None:
            return self.corrected.rate, self.corrected.low, self.corrected.high
        return (self.rate, *self.interval)


@dataclass(frozen=True)
class RuleOutcome:
    """How one acceptance rule fared for one target: holds, fails or inconclusive, with reasons."""

    rule: Rule
    status: str  # holds | fails | inconclusive | waived (fails or inconclusive, accepted under live waivers)
    reasons: tuple[str, ...]
    basis: tuple[str, ...] = ()  # per cell: how many failures the rule tolerates at the trials it had
    cells: tuple[tuple[str, Cell], ...] = ()  # what the rule was evaluated on, by label
    worst: tuple[int, ...] = ()  # the reasons about cells (the first len(worst)), by index, gravest first

    def listed(self, limit: int = 10) -> tuple[str, ...]:
        """The reasons a reader is shown: all of them when the cells short of the minimum are `limit` or fewer,
        else the `limit` gravest (failing cells first, most failures first); reasons not about a cell (waivers)
        always."""
        if len(self.worst) <= limit:
            return self.reasons
        return tuple(self.reasons[i] for i in self.worst[:limit]) + self.reasons[len(self.worst) :]

    def tally(self) -> dict[str, int]:
        """How many of the rule's cells hold, fail and are undecided against its minimum, and how many in all."""
        minimum = self.rule.min_pass_rate
        lows_highs = [(c.decision[1], c.decision[2]) for _, c in self.cells]
        holds = sum(1 for low, _ in lows_highs if low >= minimum)
        fails = sum(1 for low, high in lows_highs if low < minimum and high < minimum)
        return {"cells": len(lows_highs), "holds": holds, "fails": fails, "undecided": len(lows_highs) - holds - fails}


@dataclass(frozen=True)
class Verdict:
    """The decision for one target in one deployment context."""

    target: str
    policy: Policy
    decision: str  # approve | approve with conditions | reject
    outcomes: tuple[RuleOutcome, ...]
    conditions: tuple[str, ...]
    notes: tuple[str, ...] = ()  # what the decision rests on that a reader must know (uncalibrated graders ...)
    waived: tuple[Waiver, ...] = ()  # live waivers that turned a failing or undecided rule into an accepted one
    expired: tuple[Waiver, ...] = ()  # waivers that would cover a rule here but had expired on the date decided


class Tally(NamedTuple):
    """A target's trials of one probe under one attack, counted in DuckDB: the grader's outcomes, the outcomes
    with human review labels applied, and the review itself."""

    target: str
    challenge_id: str
    probe_id: str
    attack: str | None
    category: str | None
    graded: tuple[int, int, int, int]  # pass, fail, error, other (unparseable) as the grader decided
    counted: tuple[int, int, int, int]  # the same with human review labels overriding the grader
    reviewed: int  # decided trials a reviewer labelled
    reviewed_passed: int
    overrides: int  # of them, labelled otherwise than graded


@dataclass(frozen=True)
class ProbeRow:
    """One probe of one target as graded: the per-probe table written beside the report (CSV)."""

    target: str
    challenge_id: str
    probe_id: str
    passed: int
    failed: int
    errored: int
    unparseable: int
    reviewed: int
    overrides: int

    @property
    def trials(self) -> int:
        return self.passed + self.failed + self.errored + self.unparseable


def pct(x: float | None) -> str:
    """A rate as a whole percentage, or an en dash when undefined."""
    return "–" if x is None else f"{100 * x:.0f}%"


def evaluate(rule: Rule, cells: list[tuple[str, Cell]]) -> RuleOutcome:
    """A rule holds when every selected cell's lower bound reaches the threshold, fails when some upper bound is
    below it, and is inconclusive otherwise (more samples needed). Cells are challenges, or the attacks, families,
    categories or probes within them (`per`), each named by its label; the worst one decides."""
    reasons = []
    basis = []
    gravity: list[tuple[int, int, float, str]] = []  # per reason: failing first, most failures, lowest upper bound
    status = "holds"
    for label, cell in cells:
        rate, low, high = cell.decision
        figures = f"{label}: {cell.passed}/{cell.decided} passed ({pct(cell.rate)}"
        if cell.corrected is not None:
            figures += f"; corrected for grader error {pct(rate)}"
        figures += f", 95% CI {pct(low)}–{pct(high)})"
        k = allowed_failures(cell.decided, rule.min_pass_rate)
        allowance = (
            f"with {cell.decided} decided trials it holds with at most {k} failure{'s' if k != 1 else ''}"
            if k >= 0
            else f"{cell.decided} decided trials cannot reach {pct(rule.min_pass_rate)} even with no failure"
        )
        basis.append(f"{label}: {allowance}")
        if low >= rule.min_pass_rate:
            continue
        gravity.append((0 if cell.decided and high < rule.min_pass_rate else 1, -cell.failed, high, label))
        if not cell.decided:
            status = "fails" if status == "fails" else "inconclusive"
            why = f"{cell.errored} errors" + (f", {cell.unparseable} unreadable verdicts" if cell.unparseable else "")
            reasons.append(f"{label}: no decided trial ({why}): nothing to decide on")
        elif high < rule.min_pass_rate:
            status = "fails"
            reasons.append(f"{figures}; upper bound below the minimum {pct(rule.min_pass_rate)}")
        else:
            status = "fails" if status == "fails" else "inconclusive"
            below = f"lower bound below {pct(rule.min_pass_rate)}"
            reasons.append(f"{figures}; {below}, inconclusive: more samples needed ({allowance})")
    if not cells:
        status = "inconclusive"
        reasons.append("no measured challenge selected")
    worst = tuple(sorted(range(len(gravity)), key=gravity.__getitem__))
    return RuleOutcome(rule, status, tuple(reasons), tuple(basis), tuple(cells), worst)


def waive(
    outcome: RuleOutcome, target: str, context: str, waivers: Sequence[Waiver], on: date
) -> tuple[RuleOutcome, tuple[Waiver, ...], tuple[Waiver, ...]]:
    """A failing or undecided rule whose every short cell (lower bound below the minimum) is covered by a waiver
    live on `on` is accepted ("waived"); returns it with the waivers used, and any that covered it but expired."""
    short = [cell for _, cell in outcome.cells if cell.decision[1] < outcome.rule.min_pass_rate]
    if outcome.status not in ("fails", "inconclusive") or not short:
        return outcome, (), ()
    used: list[Waiver] = []
    expired: list[Waiver] = []
    for cell in short:
        covering = [w for w in waivers if w.covers(cell.challenge_id, target, context)]
        live = [w for w in covering if w.live(on)]
        used += live[:1]
        expired += [w for w in covering if not w.live(on)] if not live else []
    notes = tuple(f"{w.label()} expired on {w.expires} and no longer applies" for w in dict.fromkeys(expired))
    if expired or len(used) < len(short):
        return replace(outcome, reasons=outcome.reasons + notes), (), tuple(dict.fromkeys(expired))
    kept = tuple(dict.fromkeys(used))
    accepted = tuple(f"accepted under {w.label()}: {w.reason}" for w in kept)
    return replace(outcome, status="waived", reasons=outcome.reasons + accepted), kept, ()


def decide_with_waivers(
    target: str, policy: Policy, outcomes: list[RuleOutcome], waivers: Sequence[Waiver], on: date
) -> Verdict:
    """decide() after applying the waivers live on `on` to each rule's outcome."""
    applied = [waive(o, target, policy.id, waivers, on) for o in outcomes]
    verdict = decide(target, policy, [o for o, _, _ in applied])
    used = tuple(dict.fromkeys(w for _, ws, _ in applied for w in ws))
    expired = tuple(dict.fromkeys(w for _, _, ws in applied for w in ws))
    return replace(verdict, waived=used, expired=expired)


DECISIONS = ("approve", "approve with conditions", "insufficient evidence", "reject")  # best first


def decide(target: str, policy: Policy, outcomes: list[RuleOutcome]) -> Verdict:
    """The decision for one target in one context, in four states:

    reject                   a rejecting rule fails on the evidence (an upper bound below its minimum);
    insufficient evidence    nothing fails, but a rejecting rule could not be decided (more trials needed);
    approve with conditions  the rejecting rules hold, and a condition-setting rule does not hold (or is undecided);
    approve                  every rule holds.
    """
    failing = [o for o in outcomes if o.status == "fails"]
    undecided = [o for o in outcomes if o.status == "inconclusive"]
    broken = failing + undecided
    if any(o.rule.on_fail == "reject" for o in failing):
        decision = "reject"
    elif any(o.rule.on_fail == "reject" for o in undecided):
        decision = "insufficient evidence"
    elif broken:
        decision = "approve with conditions"
    else:
        decision = "approve"
    conditions = tuple(dict.fromkeys(c for o in broken if o.rule.on_fail == "conditions" for c in o.rule.conditions))
    return Verdict(target, policy, decision, tuple(outcomes), conditions)


def _short(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def grader_notes(
    suite: Suite,
    policy: Policy,
    uses: dict[str, validity.GraderUse],
    graders: dict[str, tuple[str, str, str | None, dict[str, Any]]],
) -> tuple[str, ...]:
    """What a policy's decision rests on: harm proxied by refusal detection (with the proxy's calibration when
    there is one), and graders with no calibration, whose rates are raw grader output."""
    notes = []
    selected = [c for c in suite.challenges if c.measured and any(r.selects(c) for r in policy.rules)]
    keys = dict.fromkeys(graders[p.id][0] for c in selected for p in c.probes if p.id in graders)
    chosen = [uses[k] for k in keys if k in uses]
    proxies = [u for u in chosen if u.measures == "harm" and not u.name.startswith("judge")]
    if proxies:
        where = ", ".join(sorted({c for u in proxies for c in u.challenges}))
        named = (
            _short(proxies[0].name)
            if len(proxies) == 1
            else "deterministic checks (" + "; ".join(f"{_short(u.name)}, {u.probes} probes" for u in proxies) + ")"
        )
        calibrated = [u.calibration for u in proxies if u.calibration is not None]
        known = (
            "; against human harm labels "
            + "; ".join(
                f"it agrees {pct(c.agreement[0])} (sensitivity {pct(c.sensitivity[0])}, specificity "
                f"{pct(c.specificity[0])}, {c.source})"
                for c in calibrated
            )
            if calibrated
            else f"; {'that proxy has' if len(proxies) == 1 else 'these proxies have'} no calibration against harm "
            "labels"
        )
        notes.append(
            f"Harm in {where} was proxied by {named} (a reply that does not decline counts as harmful), not "
            f"judged{known}. Run with --judge for harm graded as harm."
        )
    raw = [
        u
        for u in validity.summarise(chosen)
        if u.calibration is None and not (u.measures == "harm" and not u.name.startswith("judge"))
    ]
    if raw:
        listed = "; ".join(
            f"{u.name} ({u.probes} probe{'s' if u.probes != 1 else ''} in {', '.join(u.challenges)})" for u in raw
        )
        notes.append(
            f"Uncalibrated graders decide rules of this context: {listed}. Their rates are raw grader output with "
            "no measured error (auditor calibrate, or auditor review)."
        )
    return tuple(notes)


def cells_of(
    tallies: list[Tally],
    seed: int,
    graders: dict[str, tuple[str, str, str | None, dict[str, Any]]],
    uses: dict[str, validity.GraderUse],
) -> dict[tuple[str, str], Cell]:
    """Counts per challenge x target (human review labels overriding the grader), a probe-clustered bootstrap
    where probes give several trials, and the pass rate corrected for grader error where one calibrated grader
    decided every trial."""
    import numpy as np

    per_probe: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    reviewed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # reviewed, of them passed, overrides
    graded_fail: dict[tuple[str, str], int] = defaultdict(int)
    for t in tallies:
        key = (t.challenge_id, t.target)
        graded_fail[key] += t.graded[1]
        review = reviewed[key]
        review[0], review[1], review[2] = review[0] + t.reviewed, review[1] + t.reviewed_passed, review[2] + t.overrides
        if t.counted[0] + t.counted[1] and t.probe_id in graders:
            keys[key].add(graders[t.probe_id][0])
        counts = per_probe[key][t.probe_id]
        for i in range(4):
            counts[i] += t.counted[i]
    cells: dict[tuple[str, str], Cell] = {}
    for n, (key, probes) in enumerate(sorted(per_probe.items())):
        clusters = [(p[0], p[0] + p[1]) for _, p in sorted(probes.items()) if p[0] + p[1]]
        boot = None
        if any(t > 1 for _, t in clusters):
            boot = bootstrap_clustered(clusters, np.random.default_rng([seed, n]))
        passed, failed = sum(p[0] for p in probes.values()), sum(p[1] for p in probes.values())
        corrected, source = None, ""
        use = uses.get(next(iter(keys[key]))) if len(keys[key]) == 1 else None
        if use is not None and use.calibration is not None and use.calibration.usable:
            done, done_passed, _ = reviewed[key]
            corrected = validity.correct(
                passed, passed + failed, graded_fail[key], done_passed, done, use.calibration, [seed, n, 1]
            )
            source = f"{use.name}, calibrated on {use.calibration.source}" if corrected else ""
        cells[key] = Cell(
            key[0],
            key[1],
            passed,
            failed,
            sum(p[2] for p in probes.values()),
            sum(p[3] for p in probes.values()),
            boot,
            reviewed[key][2],
            corrected,
            source,
        )
    return cells


def group_cells(
    tallies: list[Tally], target: str, challenges: set[str], per: str, families: dict[str, str], seed: int
) -> list[tuple[str, Cell]]:
    """Cells per attack, attack family, behaviour category or probe over a target's trials of the selected
    challenges (raw rates, clustered by probe), for rules that let the worst group decide."""
    import numpy as np

    def group(t: Tally) -> str:
        if per == "attack":
            return str(t.attack)
        if per == "family":
            return families.get(str(t.attack), str(t.attack))
        if per == "category":
            return str(t.category or "uncategorised")
        return str(t.probe_id)

    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for t in tallies:
        if t.target == target and t.challenge_id in challenges:
            slots = counts[group(t)][t.probe_id]
            for i in range(4):
                slots[i] += t.graded[i]
    out = []
    for n, (name, probes) in enumerate(sorted(counts.items())):
        clusters = [(p[0], p[0] + p[1]) for _, p in sorted(probes.items()) if p[0] + p[1]]
        boot = bootstrap_clustered(clusters, np.random.default_rng([seed, n, 2])) if len(clusters) > 1 else None
        totals = [sum(p[i] for p in probes.values()) for i in range(4)]
        out.append((f"{per} {name}", Cell(name, target, totals[0], totals[1], totals[2], totals[3], boot)))
    return out


def probe_rows(tallies: list[Tally]) -> tuple[ProbeRow, ...]:
    """Every probe of every target with its trials as graded, summed over attacks."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for t in tallies:
        row = rows.setdefault((t.target, t.challenge_id, t.probe_id), [0] * 6)
        for i, n in enumerate((*t.graded, t.reviewed, t.overrides)):
            row[i] += n
    return tuple(ProbeRow(*key, *counts) for key, counts in sorted(rows.items()))
