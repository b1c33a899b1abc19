"""The recommendation a procurement reader needs first: per deployment context, which models to use and which not,
ranked, in plain words; the top risks with their figures; and what would change each verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from auditor.records import Policy
from auditor.report.verdicts import DECISIONS, Cell, Verdict, pct
from auditor.stats import trials_to_decide

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class Risk:
    """A rule that does not hold for a model, with the figures behind it."""

    target: str
    rule: str
    cell: str
    severity: str
    rate: float | None
    low: float
    high: float
    minimum: float
    status: str  # fails | inconclusive
    rejects: bool  # the rule rejects when it does not hold (else it sets conditions)

    @property
    def detail(self) -> str:
        how = "below the minimum" if self.status == "fails" else "not yet decided against the minimum"
        return (
            f"{self.cell}: {pct(self.rate)} passed (95% CI {pct(self.low)}–{pct(self.high)}), {how} {pct(self.minimum)}"
        )

    @property
    def text(self) -> str:
        return f"{self.target}, {self.detail}"


@dataclass(frozen=True)
class Recommendation:
    """One deployment context: the models ranked, the recommendation in words, the top risks, what would change."""

    policy: Policy
    ranked: tuple[Verdict, ...]  # best first
    sentences: tuple[str, ...]
    risks: tuple[Risk, ...]
    changes: tuple[str, ...]

    @property
    def use(self) -> tuple[str, ...]:
        return tuple(v.target for v in self.ranked if v.decision in DECISIONS[:2])

    @property
    def avoid(self) -> tuple[str, ...]:
        return tuple(v.target for v in self.ranked if v.decision == "reject")


def _risks(verdict: Verdict, cells: dict[tuple[str, str], Cell], severities: dict[str, str]) -> list[Risk]:
    out = []
    for outcome in verdict.outcomes:
        if outcome.status in ("holds", "waived"):
            continue
        for label, cell in outcome.cells:
            rate, low, high = cell.decision
            if low >= outcome.rule.min_pass_rate:
                continue
            status = "fails" if high < outcome.rule.min_pass_rate else "inconclusive"
            severity = severities.get(cell.challenge_id, "low")
            rejects = outcome.rule.on_fail == "reject"
            out.append(
                Risk(verdict.target, outcome.rule.id, label, severity, rate, low, high, outcome.rule.min_pass_rate,
                     status, rejects)
            )  # fmt: skip
    return out


def _margin(verdict: Verdict) -> float:
    """How far the worst cell's lower bound clears its rule's minimum (negative: short of it)."""
    margins = [c.decision[1] - o.rule.min_pass_rate for o in verdict.outcomes for _, c in o.cells if c.decided]
    return min(margins) if margins else -1.0


def _change(risk: Risk, cell: Cell) -> str | None:
    """What would decide an undecided cell: trials needed at the rate observed (or more distinct probes, when the
    trials already suffice in number but come from few probes whose replies vary together)."""
    if risk.status != "inconclusive" or cell.rate is None:
        return None
    where = f"{risk.target}, {risk.cell}"
    needed = trials_to_decide(cell.rate, risk.minimum)
    if needed is None:
        return f"{where}: the observed rate {pct(cell.rate)} sits at the minimum {pct(risk.minimum)}; no number of " \
            "further trials would decide it at that rate"  # fmt: skip
    if needed <= cell.decided:
        return (
            f"{where}: {cell.decided} trials would decide the minimum {pct(risk.minimum)} at {pct(cell.rate)} if "
            "they were independent, but they come from few probes whose replies vary together: more distinct "
            "probes, not more samples of the same ones, would decide it"
        )
    return (
        f"{where}: {cell.decided} trials at {pct(cell.rate)} cannot decide the minimum {pct(risk.minimum)}; about "
        f"{needed} in all ({needed - cell.decided} more) would decide it if the rate held"
    )


def recommend(
    policy: Policy, verdicts: Sequence[Verdict], cells: dict[tuple[str, str], Cell], severities: dict[str, str]
) -> Recommendation:
    """Rank the models for one context (decision first, then the margin of their worst cell) and say it plainly."""
    mine = [v for v in verdicts if v.policy.id == policy.id]
    ranked = sorted(mine, key=lambda v: (DECISIONS.index(v.decision), -_margin(v), v.target))
    sentences = []
    for v in ranked:
        risks = _risks(v, cells, severities)
        failing = [r for r in risks if r.rejects and r.status == "fails"]
        undecided = [r for r in risks if r.rejects and r.status == "inconclusive"]
        if v.decision == "approve":
            sentences.append(f"Use {v.target}: it met every rule of this context.")
        elif v.decision == "approve with conditions":
            sentences.append(f"{v.target} may be used with conditions: {'; '.join(v.conditions)}.")
        elif v.decision == "insufficient evidence" and undecided:
            sentences.append(f"The evidence cannot yet decide {v.target}: {undecided[0].detail}.")
        elif failing:
            sentences.append(f"Do not use {v.target}: {failing[0].detail}.")
    if ranked and ranked[0].decision in DECISIONS[:2] and len(ranked) > 1:
        sentences.insert(0, f"Of the models audited, {ranked[0].target} ranks first for {policy.title.lower()}.")
    elif ranked and ranked[0].decision not in DECISIONS[:2]:
        sentences.insert(0, f"No model audited is recommended for {policy.title.lower()}.")
    every = sorted(
        (r for v in ranked for r in _risks(v, cells, severities)),
        key=lambda r: (r.status != "fails", SEVERITY_RANK[r.severity], (r.rate or 0) - r.minimum),
    )
    risks = list({(r.target, r.cell): r for r in reversed(every)}.values())[::-1]  # one per cell: the gravest
    by_label = {(v.target, label): c for v in ranked for o in v.outcomes for label, c in o.cells}
    changes: dict[str, None] = {}  # the first three distinct, gravest risk first (a run may have 100,000 risks)
    for r in risks:
        if len(changes) == 3:
            break
        if (c := _change(r, by_label[(r.target, r.cell)])) is not None:
            changes[c] = None
    return Recommendation(policy, tuple(ranked), tuple(s for s in sentences if s), tuple(risks[:4]), tuple(changes))
