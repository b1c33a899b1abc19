"""Grades stored responses against the suite's pass criteria.

Grading calls no audited model. A judge criterion asks a judge model through `ask`; the pipeline
first grades with a recording `ask` to learn which judge requests are needed, sends only those
that are not stored yet, then grades again with the stored answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from auditor import criteria
from auditor.criteria import Ask
from auditor.records import Criterion, Grade, Reply, Suite, Target

COLUMNS = [
    "item_id", "target", "challenge_id", "probe_id", "attack", "category", "variant", "sample", "messages", "content",
    "error_class",
    "error_message", "latency_s", "prompt_tokens", "completion_tokens", "finish_reason",
]  # fmt: skip


def _reply(row: dict[str, Any], target: Target | None) -> Reply:
    prompt = next((m["content"] for m in reversed(row["messages"] or []) if m["role"] == "user"), "")
    priced = target is not None and any(k.startswith("price_") for k, _ in target.facts)
    tokens = (row["prompt_tokens"], row["completion_tokens"])
    cost = target.price(tokens[0] or 0, tokens[1] or 0) if priced and target and None not in tokens else None
    return Reply(
        content=row["content"] or "",
        prompt=prompt,
        latency_s=float(row["latency_s"] or 0.0),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=cost,
        finish_reason=row["finish_reason"],
    )


def _row(
    run_id: str, r: dict[str, Any], criterion: Criterion | None, grade: Grade, judge: str | None
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "item_id": r["item_id"],
        "target": r["target"],
        "challenge_id": r["challenge_id"],
        "probe_id": r["probe_id"],
        "attack": r["attack"],
        "category": r["category"],
        "variant": r["variant"],
        "sample": r["sample"],
        "criterion": criterion.kind if criterion else None,
        "means": criterion.means if criterion else None,
        "outcome": grade.outcome,
        "grader": grade.via or (f"criteria.{criterion.kind}" if criterion else "none"),
        "judge": judge if grade.via.startswith("judge") else None,
        "evidence": grade.evidence[:500],
    }


def grade_rows(
    run_id: str,
    responses: list[dict[str, Any]],
    suite: Suite,
    targets: dict[str, Target],
    ask: Ask = criteria.no_judge,
    judge_name: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One grade row per response: pass, fail, unparseable, or error when the request itself failed."""
    probes = {(c.id, p.id): p for c, p in suite.probes()}
    checks = {key: criteria.build(p.pass_if.spec) for key, p in probes.items()}
    ordered = sorted(
        responses, key=lambda r: (r["target"], r["challenge_id"], r["probe_id"], r["variant"], r["sample"])
    )
    group_grades = _consistency_grades(ordered, probes)
    rows = []
    for r in ordered:
        probe = probes.get((r["challenge_id"], r["probe_id"]))
        criterion = probe.pass_if if probe else None
        if r["error_class"]:
            grade = Grade("error", f"{r['error_class']}: {r['error_message'] or ''}".strip())
        elif probe is None:
            grade = Grade("error", "probe is not in the grading suite")
        elif r["item_id"] in group_grades:
            grade = group_grades[r["item_id"]]
        else:
            if on_row is not None:
                on_row(r)
            grade = checks[(r["challenge_id"], r["probe_id"])](_reply(r, targets.get(r["target"])), ask)
        rows.append(_row(run_id, r, criterion, grade, judge_name))
    return rows


def _consistency_grades(rows: list[dict[str, Any]], probes: dict[tuple[str, str], Any]) -> dict[str, Grade]:
    """Grades for probes whose criterion is `consistency`, one group of replies at a time (see
    consistency_outcomes)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    specs = {}
    for r in rows:
        probe = probes.get((r["challenge_id"], r["probe_id"]))
        if probe is None or probe.pass_if.kind != "consistency" or r["error_class"]:
            continue
        over = probe.pass_if.spec.get("over", "samples")
        key_part = {"samples": (r["variant"],), "variants": (r["sample"],), "all": ()}[over]
        key = (r["target"], r["challenge_id"], r["probe_id"], r["attack"], *key_part)
        groups[key].append(r)
        specs[key] = probe.pass_if.spec
    out: dict[str, Grade] = {}
    for key, members in groups.items():
        grades = criteria.consistency_outcomes(specs[key], [r["content"] or "" for r in members])
        out.update({r["item_id"]: g for r, g in zip(members, grades)})
    return out
