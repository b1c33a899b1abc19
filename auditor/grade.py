"""Grades stored responses against the suite's pass criteria; never calls a model."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from auditor import criteria
from auditor.records import Criterion, Suite
from auditor.store import RunDir

_COLUMNS = ["item_id", "target", "challenge_id", "probe_id", "variant", "sample", "content", "error_class", "error_message"]


def grade_rows(run_id: str, responses: list[dict[str, Any]], suite: Suite) -> list[dict[str, Any]]:
    """One grade row per response: pass or fail by the probe's criterion, or error if the request failed."""
    checks: dict[tuple[str, str], tuple[Criterion, criteria.Check]] = {
        (c.id, p.id): (p.pass_if, criteria.build(p.pass_if.spec)) for c, p in suite.probes()
    }
    rows = []
    for r in sorted(responses, key=lambda r: (r["target"], r["challenge_id"], r["probe_id"], r["variant"], r["sample"])):
        found = checks.get((r["challenge_id"], r["probe_id"]))
        criterion = found[0] if found else None
        if r["error_class"]:
            outcome, evidence = "error", f"{r['error_class']}: {r['error_message'] or ''}".strip()
        elif found is None:
            outcome, evidence = "error", "probe is not in the grading suite"
        else:
            g = found[1](r["content"] or "")
            outcome, evidence = g.outcome, g.evidence
        rows.append(
            {
                "run_id": run_id,
                "item_id": r["item_id"],
                "target": r["target"],
                "challenge_id": r["challenge_id"],
                "probe_id": r["probe_id"],
                "variant": r["variant"],
                "sample": r["sample"],
                "criterion": criterion.kind if criterion else None,
                "means": criterion.means if criterion else None,
                "outcome": outcome,
                "grader": f"criteria.{criterion.kind}" if criterion else "none",
                "evidence": evidence[:500],
            }
        )
    return rows


def grade_run(run: RunDir, suite: Suite) -> list[dict[str, Any]]:
    """Grade every stored response of a run and replace its grades table."""
    parts = run.response_parts()
    responses = pq.ParquetDataset(parts).read(columns=_COLUMNS).to_pylist() if parts else []
    rows = grade_rows(run.run_id, responses, suite)
    run.write_grades(rows)
    return rows
