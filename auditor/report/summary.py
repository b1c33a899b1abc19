"""The machine-readable summary of a report, printed by `auditor run --json`."""

from __future__ import annotations

import json
from typing import Any

from auditor.report.analyse import Report
from auditor.report.compare import Drift


def summary_json(report: Report) -> dict[str, Any]:
    """A machine-readable summary of a report (for `--json`)."""
    return {
        "run_id": report.run_id,
        "status": report.status,
        "suite": {"id": report.suite.id, "version": report.suite.version, "sha256": report.suite.sha256},
        "totals": report.totals,
        "verdicts": [
            {
                "target": v.target,
                "context": v.policy.id,
                "decision": v.decision,
                "conditions": list(v.conditions),
                "notes": list(v.notes),
                "reasons": [r for o in v.outcomes for r in o.reasons],
            }
            for v in report.verdicts
        ],
        "recommendations": [
            {
                "context": r.policy.id,
                "ranked": [v.target for v in r.ranked],
                "use": list(r.use),
                "avoid": list(r.avoid),
                "sentences": list(r.sentences),
                "risks": [k.text for k in r.risks],
                "what_would_change": list(r.changes),
            }
            for r in report.recommendations
        ],
        "comparisons": [
            {
                "challenge": p.challenge_id,
                "a": p.a,
                "b": p.b,
                "n": p.result.n,
                "difference": p.result.difference,
                "ci95": [p.result.low, p.result.high],
                "p_value": p.result.p_value,
                "statement": p.text,
            }
            for p in report.pairings
        ],
        "attacks": [
            {
                "target": a.target,
                "attack": a.attack,
                "family": a.family,
                "attempts": a.attempts,
                "errors": a.errors,
                "successes": a.successes,
                "asr_decided": a.rates[0],
                "asr_all": a.rates[1],
                "baseline": a.baseline,
                "lift": a.lift,
            }
            for a in report.attacks
        ],
        "balance": [
            {
                "target": b.target,
                "harmful_n": b.harmful_n,
                "harmful_compliance": b.compliance[0],
                "benign_n": b.benign_n,
                "over_refusal": b.over_refusal[0],
            }
            for b in report.balances
        ],
        "bias": [
            {
                "target": b.target,
                "errors": b.errors,
                "stereotyped": b.stereotyped,
                "score": b.score[0],
                "ci95": list(b.score[1]),
            }
            for b in report.bias
        ],
        "cells": [
            {
                "challenge": c.challenge_id,
                "target": c.target,
                "passed": c.passed,
                "failed": c.failed,
                "errored": c.errored,
                "unparseable": c.unparseable,
                "rate": c.rate,
                "ci95": list(c.interval),
                "corrected": (
                    {"rate": c.corrected.rate, "ci95": [c.corrected.low, c.corrected.high], "basis": c.calibration}
                    if c.corrected
                    else None
                ),
                "overrides": c.overrides,
            }
            for f in report.findings
            for c in f.cells
        ],
    }


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def drift_json(found: list[Drift]) -> str:
    """Run-to-run changes (`auditor compare --format json`)."""
    return json.dumps(
        [
            {
                "target": d.target,
                "challenge": d.challenge_id,
                "n": d.result.n,
                "before": d.result.b_rate,
                "now": d.result.a_rate,
                "difference": d.result.difference,
                "ci95": [d.result.low, d.result.high],
                "p_value": d.result.p_value,
                "statement": d.text,
            }
            for d in found
        ],
        indent=2,
    )
