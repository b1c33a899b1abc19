"""The acts around an audit, checked against the run they concern: signing off, waiving a known failure,
sealing a plan before anything is sent (pre-registration), and gating a pipeline on a verdict."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from auditor import pipeline
from auditor.archive import acts, ledger
from auditor.archive.store import RunDir
from auditor.clock import new_id, now
from auditor.errors import ArchiveError, UnknownName, UsageError
from auditor.records import Suite, Target
from auditor.report.verdicts import Verdict
from auditor.run.adaptive import adaptive_tasks
from auditor.run.plan import plan
from auditor.suite.load import load_suite

SIGNED = {"approve": "approve", "conditions": "approve with conditions", "reject": "reject"}
GATE_CODES = {"approve": 0, "approve with conditions": 10, "reject": 20, "insufficient evidence": 30}


def today() -> date:
    return datetime.now(timezone.utc).date()


def parse_date(text: str, what: str) -> date:
    """A YYYY-MM-DD date given on the command line."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} '{text}' is not a date; write it as YYYY-MM-DD") from None


def _future(text: str | None, what: str, on: date) -> str | None:
    if text is None:
        return None
    day = parse_date(text, what)
    if day < on:
        raise UsageError(f"{what} {text} is in the past (today is {on.isoformat()}); give a later date")
    return day.isoformat()


def _context_verdicts(verdicts: tuple[Verdict, ...], suite: Suite, context: str, target: str | None) -> list[Verdict]:
    if context not in {p.id for p in suite.policies}:
        raise UnknownName("context", context, [p.id for p in suite.policies])
    chosen = [v for v in verdicts if v.policy.id == context]
    if target is not None:
        if target not in {v.target for v in chosen}:
            raise UnknownName("target", target, sorted({v.target for v in chosen}))
        chosen = [v for v in chosen if v.target == target]
    return chosen


def sign(
    archive: Path,
    run: RunDir,
    context: str,
    decision: str,
    who: tuple[str, str],
    target: str | None = None,
    conditions: tuple[str, ...] = (),
    note: str = "",
    expires: str | None = None,
) -> acts.Signoff:
    """Record a sign-off on a graded, verified run for one context (one target, or all); one that contradicts the
    computed verdict is an override and needs a note saying why."""
    on = today()
    report = pipeline.report(archive, run, as_of=on)
    verdicts = _context_verdicts(report.verdicts, report.suite, context, target)
    until = _future(expires, "--expires", on)
    computed = "; ".join(f"{v.target}: {v.decision}" for v in verdicts)
    override = any(v.decision != SIGNED[decision] for v in verdicts)
    if override and not note.strip():
        raise UsageError(f"signing '{decision}' overrides the computed verdict ({computed}): give --note saying why")
    if decision == "conditions" and not conditions:
        conditions = tuple(dict.fromkeys(c for v in verdicts for c in v.conditions))
    signoff = acts.Signoff(
        acts.next_id(run, "signoff"), run.run_id, context, decision, who[0], who[1], now(), computed, override,
        target, conditions, note, until,
    )  # fmt: skip
    acts.record(run, signoff)
    return signoff


def waive(
    run: RunDir,
    challenge: str,
    owner: str,
    reason: str,
    expires: str,
    target: str | None = None,
    context: str | None = None,
) -> acts.Waiver:
    """Record a waiver on a run: its challenge, target and context must exist there, its expiry lie ahead."""
    manifest = run.manifest()
    suite = load_suite(run.path / "suite.json", manifest.suite.sha256)
    measured = [c.id for c in suite.challenges if c.measured]
    if challenge not in measured:
        raise UnknownName("challenge", challenge, measured)
    if target is not None and target not in manifest.target_names():
        raise UnknownName("target", target, manifest.target_names())
    if context is not None and context not in {p.id for p in suite.policies}:
        raise UnknownName("context", context, [p.id for p in suite.policies])
    if not reason.strip() or not owner.strip():
        raise UsageError("a waiver needs an --owner and a --reason")
    until = _future(expires, "--expires", today())
    assert until is not None
    waiver = acts.Waiver(acts.next_id(run, "waiver"), run.run_id, challenge, owner, reason, until, now(), target,
                         context)  # fmt: skip
    acts.record(run, waiver)
    return waiver


@dataclass(frozen=True)
class Gate:
    """A run's verdicts in one context turned into an exit code: the worst of the targets'."""

    run_id: str
    suite_id: str
    context: str
    as_of: str
    verdicts: tuple[Verdict, ...]

    @property
    def exit_code(self) -> int:
        decisions = {v.decision for v in self.verdicts}
        for worst in ("reject", "insufficient evidence", "approve with conditions"):
            if worst in decisions:
                return GATE_CODES[worst]
        return 0


def gate(archive: Path, run: RunDir, context: str, targets: tuple[str, ...] = (), on: date | None = None) -> Gate:
    """The verdicts of a graded, verified run in one context, for the named targets (all by default)."""
    day = on or today()
    report = pipeline.report(archive, run, as_of=day)
    verdicts = _context_verdicts(report.verdicts, report.suite, context, None)
    for name in targets:
        _context_verdicts(report.verdicts, report.suite, context, name)
    chosen = [v for v in verdicts if not targets or v.target in targets]
    return Gate(run.run_id, report.suite.id, context, day.isoformat(), tuple(chosen))


# --- pre-registration: a plan sealed before anything is sent ------------------------------------------------


def _plan_record(suite: Suite, targets: list[Target], judge: Target | None, attacker: Target | None) -> dict[str, Any]:
    items = sorted(item.item_id for item in plan(suite, targets))
    if attacker is not None:
        items += sorted(task[4] for t in targets for task in adaptive_tasks(suite, t))
    return {
        "suite": {"id": suite.id, "version": suite.version, "sha256": suite.sha256},
        "policies": [
            {
                "id": p.id,
                "rules": [
                    {
                        "id": r.id,
                        "ids": list(r.ids),
                        "categories": list(r.categories),
                        "severities": list(r.severities),
                        "min_pass_rate": r.min_pass_rate,
                        "on_fail": r.on_fail,
                        "per": r.per,
                    }
                    for r in p.rules
                ],
            }
            for p in suite.policies
        ],  # fmt: skip
        "targets": [t.public() for t in targets],
        "judge": judge.public() if judge else None,
        "attacker": attacker.public() if attacker else None,
        "item_ids": items,
    }


def seal_plan(
    archive: Path, suite_path: Path, targets: list[Target], judge: Target | None, attacker: Target | None
) -> tuple[str, Path, str]:
    """Write the plan (suite hash, thresholds, targets without secrets, planned item ids, time) into the archive
    before anything is sent; return its id, file and seal (the SHA-256 of the file, also in the plan's ledger)."""
    suite = load_suite(suite_path)
    plan_id = new_id()
    folder = archive / "plans" / plan_id
    folder.mkdir(parents=True)
    record = {"plan_id": plan_id, "sealed_at": now(), **_plan_record(suite, targets, judge, attacker)}
    path = folder / "plan.json"
    tmp = path.with_name("plan.json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    ledger.record(folder, path, tmp)
    tmp.replace(path)
    return plan_id, path, ledger.file_hash(path)


def sealed_plan(
    archive: Path, plan_id: str, suite_path: Path, targets: list[Target], judge: Target | None,
    attacker: Target | None,
) -> bytes:  # fmt: skip
    """The sealed plan a run is about to start from, as stored, with its seal: refused unless it is intact and
    the run matches it exactly (same suite file, thresholds, targets, helpers and planned items)."""
    folder = archive / "plans" / plan_id
    path = folder / "plan.json"
    if not path.is_file():
        known = sorted(p.name for p in (archive / "plans").glob("*")) if (archive / "plans").is_dir() else []
        raise UnknownName("sealed plan", plan_id, known)
    problems = ledger.verify(folder, None, False).problems
    if problems:
        raise ArchiveError(f"sealed plan {plan_id} fails verification: {problems[0]}")
    data = path.read_bytes()
    stored = json.loads(data)
    wanted = _plan_record(load_suite(suite_path), targets, judge, attacker)
    parts = {"suite": "the suite file", "policies": "the thresholds", "targets": "the targets", "judge": "the judge",
             "attacker": "the attacker", "item_ids": "the planned requests"}  # fmt: skip
    for key, what in parts.items():
        if stored.get(key) != wanted[key]:
            raise UsageError(f"this run differs from sealed plan {plan_id} in {what}; run exactly what was sealed, "
                             "or seal a new plan (auditor plan --seal)")  # fmt: skip
    seal = hashlib.sha256(data).hexdigest()
    return json.dumps({**stored, "seal": seal}, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def gate_json(result: Gate) -> dict[str, Any]:
    """The gate's outcome for scripts: the exit code, and per target the decision, waivers and rule outcomes."""
    return {
        "run_id": result.run_id,
        "suite": result.suite_id,
        "context": result.context,
        "as_of": result.as_of,
        "exit_code": result.exit_code,
        "codes": GATE_CODES,
        "targets": [
            {
                "target": v.target,
                "decision": v.decision,
                "exit_code": GATE_CODES[v.decision],
                "conditions": list(v.conditions),
                "waivers": [w.label() for w in v.waived],
                "expired_waivers": [w.label() for w in v.expired],
                "rules": [{"rule": o.rule.id, "status": o.status, "on_fail": o.rule.on_fail,
                           "minimum": o.rule.min_pass_rate, "reasons": list(o.reasons)} for o in v.outcomes],
            }
            for v in result.verdicts
        ],
    }  # fmt: skip


def junit_xml(result: Gate) -> str:
    """JUnit XML: a test suite per target, a test case per challenge the context's rules select; a case fails
    when a rule fails on it (or cannot decide a rejecting rule), with the figures and the rule in the message."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name=f"auditor {result.suite_id} {result.context}")
    for v in result.verdicts:
        cases: dict[str, list[tuple[str, str, str]]] = {}  # challenge -> (status, rule, reason)
        for o in v.outcomes:
            for label, cell in o.cells:
                rate, low, high = cell.decision
                status = "holds" if low >= o.rule.min_pass_rate else "fails" if high < o.rule.min_pass_rate else (
                    "inconclusive")  # fmt: skip
                if o.status == "waived" and status != "holds":
                    status = "waived"
                reason = next((r for r in o.reasons if r.startswith(label + ":")), "")
                cases.setdefault(cell.challenge_id, []).append((status, o.rule.id, reason))
        failures = sum(any(s == "fails" for s, _, _ in c) for c in cases.values())
        undecided = sum(not any(s == "fails" for s, _, _ in c) and any(s == "inconclusive" for s, _, _ in c)
                        for c in cases.values())  # fmt: skip
        suite = ET.SubElement(root, "testsuite", name=f"{v.target} / {result.context}", tests=str(len(cases)),
                              failures=str(failures + undecided), errors="0", skipped="0")  # fmt: skip
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="decision", value=v.decision)
        for challenge, found in sorted(cases.items()):
            case = ET.SubElement(suite, "testcase", classname=f"auditor.{v.target}", name=challenge)
            bad = [f for f in found if f[0] in ("fails", "inconclusive")]
            if bad:
                kind = "fails" if any(s == "fails" for s, _, _ in bad) else "insufficient evidence"
                text = "\n".join(f"rule {rule}: {reason}" for _, rule, reason in bad)
                element = ET.SubElement(case, "failure", type=kind, message=f"{challenge} {kind}: {bad[0][2]}")
                element.text = text
            waived = [f for f in found if f[0] == "waived"]
            if waived:
                labels = ", ".join(w.label() for w in v.waived)
                ET.SubElement(case, "system-out").text = f"accepted under {labels}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
