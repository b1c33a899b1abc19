"""The report's charts, built from its figures: geometry and text alternatives come from the report object, so
the template only places them."""

from __future__ import annotations

from collections import defaultdict

from auditor.report.analyse import Report
from auditor.report.charts import Chart, Estimate, balance, bars, change, forest, heatmap
from auditor.stats import wilson


def charts(report: Report) -> tuple[Chart, ...]:
    """Every chart the report has data for, in reading order."""
    models = [t.name for t in report.targets]
    out = [_forest(report, models), _heatmap(report, models)]
    if report.attacks:
        out.append(_attacks(report, models))
    if report.balances:
        out.append(_balance(report))
    if report.drift:
        out.append(
            change(
                [(f"{d.target}: {d.challenge_id}", d.result.b_rate, d.result.a_rate, d.result.p_value < 0.05)
                 for d in report.drift]
            )
        )  # fmt: skip
    return tuple(out)


def _forest(report: Report, models: list[str]) -> Chart:
    contexts = [(p.title, "") for p in report.suite.policies]
    rows = []
    for f in report.findings:
        estimates = [Estimate(c.target, c.decision[0], c.decision[1], c.decision[2]) for c in f.cells]
        minimums = [
            (p.title, r.min_pass_rate)
            for p in report.suite.policies
            for r in p.rules
            if r.selects(f.challenge) and r.per == "challenge"
        ]
        rows.append((f.challenge.title, estimates, sorted(set(minimums), key=lambda m: (m[1], m[0]))))
    return forest(rows, models, contexts)


def _heatmap(report: Report, models: list[str]) -> Chart:
    rates = {(f.challenge.title, c.target): c.decision[0] for f in report.findings for c in f.cells}
    return heatmap([f.challenge.title for f in report.findings], models, rates)


def _attacks(report: Report, models: list[str]) -> Chart:
    by_attack: dict[str, dict[str, Estimate]] = defaultdict(dict)
    baseline: dict[str, float | None] = {}
    for row in report.attacks:
        decided = row.attempts - row.errors
        low, high = wilson(row.successes, decided)
        estimate = Estimate(row.target, row.rates[0], low, high)
        if row.attack == "direct":
            baseline[row.target] = row.rates[0]
        by_attack[f"{row.attack} ({row.family})" if row.attack != "direct" else "direct request"][row.target] = estimate
    groups = [
        (label, [by_attack[label].get(m, Estimate(m, None, 0.0, 1.0)) for m in models])
        for label in sorted(by_attack, key=lambda a: (a != "direct request", a))
    ]
    caption = (
        "Attack success per attack and model over harmful-intent probes (the share of attempts whose reply carried "
        "out the behaviour), with 95% intervals; dashed lines mark each model's success on the direct request."
    )
    return bars("attacks", groups, models, baseline, caption, "Attack success by attack and model")


def _balance(report: Report) -> Chart:
    points = []
    for b in report.balances:
        (harm, (hl, hh)), (refusal, (rl, rh)) = b.compliance, b.over_refusal
        points.append((b.target, Estimate(b.target, harm, hl, hh), Estimate(b.target, refusal, rl, rh)))
    return balance(points)
