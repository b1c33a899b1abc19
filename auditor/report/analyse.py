"""Turns a graded run into one typed report object: figures, intervals, verdicts and evidence."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any

from auditor.archive import acts
from auditor.archive.manifest import Manifest
from auditor.archive.store import RunDir, connect, outcome_counts, read_rows
from auditor.records import Challenge, Policy, Suite, Target
from auditor.report import validity
from auditor.report.compare import (
    AttackRow,
    Balance,
    BiasRow,
    CategoryRow,
    Drift,
    Pairing,
    attack_rows,
    balances,
    bias_rows,
    category_rows,
    drift,
    pairings,
)
from auditor.report.governance import Governance, governance
from auditor.report.recommend import Recommendation, recommend
from auditor.report.verdicts import Cell, Verdict, decide_with_waivers, evaluate, grader_notes
from auditor.stats import bootstrap_clustered, percentile

EXAMPLES_PER_CELL = 2


@dataclass(frozen=True)
class Example:
    """A failing transcript shown as evidence."""

    target: str
    probe_id: str
    variables: str
    sample: int
    messages: tuple[tuple[str, str], ...]
    content: str
    evidence: str
    attack: str = "direct"
    withheld: bool = False  # a reply to a harmful request: shown in full only in the evidence appendix
    number: int = 0


@dataclass(frozen=True)
class Finding:
    """A measured challenge with its cells per target and failing examples."""

    challenge: Challenge
    cells: tuple[Cell, ...]
    means: str
    examples: tuple[Example, ...]
    graders: tuple[str, ...]


@dataclass(frozen=True)
class TargetSummary:
    """A target as audited: declared facts and what the endpoint actually reported."""

    name: str
    model: str
    base_url: str
    system_prompt: str | None
    facts: tuple[tuple[str, Any], ...]
    returned_models: tuple[str, ...]
    fingerprints: tuple[str, ...]
    responses: int
    errors: int
    latency_p50: float | None
    latency_p95: float | None
    prompt_tokens: int
    completion_tokens: int
    temperatures: tuple[float, ...]
    seeds: str
    first_at: str
    last_at: str


@dataclass(frozen=True)
class Report:
    """Everything a rendered report shows, computed once."""

    suite: Suite
    run_id: str
    status: str
    started_at: str
    finished_at: str
    tool_version: str
    targets: tuple[TargetSummary, ...]
    findings: tuple[Finding, ...]
    attestations: tuple[Challenge, ...]
    verdicts: tuple[Verdict, ...]
    totals: dict[str, int]
    disclosures: tuple[str, ...]
    seal: str
    baseline: str | None
    drift: tuple[Drift, ...]

    def controls(self) -> list[tuple[str, list[Challenge], list[Cell]]]:
        """Each control id the suite names, the challenges that evidence it, and their cells (all targets)."""
        by_control: dict[str, list[Challenge]] = defaultdict(list)
        for c in self.suite.challenges:
            for control in c.controls:
                by_control[control].append(c)
        cells = {(cell.challenge_id, cell.target): cell for f in self.findings for cell in f.cells}
        return [
            (control, chs, [cells[(c.id, t.name)] for c in chs for t in self.targets if (c.id, t.name) in cells])
            for control, chs in sorted(by_control.items())
        ]

    pairings: tuple[Pairing, ...]
    balances: tuple[Balance, ...]
    attacks: tuple[AttackRow, ...]
    categories: tuple[CategoryRow, ...]
    graders: tuple[validity.GraderUse, ...] = ()
    reviewers: tuple[str, ...] = ()
    reviewed: int = 0
    bias: tuple[BiasRow, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()
    governance: Governance | None = None


def build_report(
    run: RunDir, suite: Suite, archive_root: Any, baseline: RunDir | None = None, as_of: date | None = None
) -> Report:
    """Compute the report object for a graded run from the archive's DuckDB views (and its change since an
    earlier `baseline` run, trial by trial, when one is given), with the waivers live on `as_of` (today, UTC,
    by default) applied to its verdicts."""
    on = as_of or datetime.now(timezone.utc).date()
    waivers = acts.waivers(run)
    manifest = run.manifest()
    con = connect(archive_root)
    rid = [run.run_id]
    target_names = manifest.target_names()
    judge = manifest.graded_with.judge if manifest.graded_with else manifest.judge
    graded = read_rows(
        con,
        "SELECT target, challenge_id, probe_id, attack, category, item_id, outcome FROM grades WHERE run_id = ? "
        "ORDER BY target, challenge_id, probe_id, item_id",
        rid,
    )
    reviewed = validity.reviews(con, run.run_id)
    probe_graders = validity.probe_graders(suite, judge)
    uses = validity.grader_uses(
        suite, judge, validity.by_grader(probe_graders, graded), validity.stored_calibrations(con), reviewed.labels
    )
    cells = _cells(graded, manifest.seed, reviewed.labels, probe_graders, uses)
    intents = {p.id: p.intent for _, p in suite.probes() if p.intent}
    harmful = {p for p, intent in intents.items() if intent == "harmful"} if intents else None
    findings = _findings(con, run.run_id, suite, cells, target_names)
    verdicts = [
        replace(
            _verdict(suite, policy, t, findings, graded, manifest.seed, waivers, on),
            notes=grader_notes(suite, policy, uses, probe_graders),
        )
        for t in target_names
        for policy in suite.policies
    ]
    totals = read_rows(
        con,
        f"SELECT count(*) AS graded, {outcome_counts()} FROM grades WHERE run_id = ?",
        rid,
    )[0]
    return Report(
        suite=suite,
        run_id=run.run_id,
        status=manifest.status,
        started_at=manifest.started_at,
        finished_at=manifest.finished_at or "",
        tool_version=manifest.tool_versions.get("auditor", ""),
        targets=tuple(_target_summary(con, run.run_id, t) for t in manifest.targets),
        findings=tuple(findings),
        attestations=tuple(c for c in suite.challenges if not c.measured),
        verdicts=tuple(verdicts),
        totals={k: int(v) for k, v in totals.items()},
        seal=run.head(),
        baseline=baseline.run_id if baseline else None,
        drift=tuple(drift(con, baseline.run_id, run.run_id)) if baseline else (),
        disclosures=_disclosures(con, run.run_id, manifest)
        + tuple(
            f"The adaptive attack '{a.id}' ({a.type}) is declared but was not run: no attacker model was given "
            "(auditor run --attacker NAME)."
            for a in suite.attacks
            if a.adaptive and not manifest.attacker
        ),
        pairings=tuple(pairings(con, run.run_id, target_names, {c.id: c.title for c in suite.challenges})),
        attacks=tuple(attack_rows(con, run.run_id, target_names, {a.id: a.family for a in suite.attacks}, harmful)),
        categories=tuple(category_rows(con, run.run_id, target_names)),
        balances=tuple(
            balances(con, run.run_id, target_names, {p.id: p.intent for _, p in suite.probes() if p.intent})
        ),
        graders=tuple(validity.summarise(list(uses.values()))),
        bias=tuple(
            bias_rows(con, run.run_id, target_names, {p.id: p.stereotype for _, p in suite.probes() if p.stereotype})
        ),
        reviewers=reviewed.reviewers,
        reviewed=len(reviewed.labels),
        recommendations=tuple(
            recommend(policy, verdicts, cells, {c.id: c.severity for c in suite.challenges})
            for policy in suite.policies
        ),
        governance=governance(run, verdicts, on),
    )


def _findings(con: Any, run_id: str, suite: Suite, cells: dict[tuple[str, str], Cell], targets: list[str]) -> list[
    Finding
]:  # fmt: skip
    """Each measured challenge with its cells per target, the graders behind them and failing examples (replies to
    harmful requests marked as withheld, to be shown in full only in the evidence appendix)."""
    failing = read_rows(
        con,
        "SELECT g.target, g.challenge_id, g.probe_id, g.attack, g.sample, g.evidence, r.variables, r.messages, "
        "r.content FROM grades g JOIN responses r USING (run_id, item_id) WHERE g.run_id = ? AND g.outcome = 'fail' "
        "ORDER BY g.challenge_id, g.target, g.probe_id, g.variant, g.sample",
        [run_id],
    )
    examples: dict[tuple[str, str], list[Example]] = defaultdict(list)
    harmful = {p.id for _, p in suite.probes() if p.intent == "harmful"}
    for f in failing:
        key = (f["challenge_id"], f["target"])
        if len(examples[key]) < EXAMPLES_PER_CELL:
            examples[key].append(
                Example(
                    target=f["target"],
                    probe_id=f["probe_id"],
                    variables="" if f["variables"] in (None, "{}") else f["variables"],
                    sample=f["sample"],
                    messages=tuple((m["role"], m["content"]) for m in f["messages"]),
                    content=f["content"] or "",
                    evidence=f["evidence"] or "",
                    attack=f["attack"] or "direct",
                    withheld=f["probe_id"] in harmful,
                    number=sum(map(len, examples.values())) + 1,
                )
            )
    graders: dict[str, list[str]] = defaultdict(list)
    for g in read_rows(
        con,
        "SELECT DISTINCT challenge_id, grader, judge FROM grades WHERE run_id = ? AND grader <> 'none' ORDER BY ALL",
        [run_id],
    ):
        graders[g["challenge_id"]].append(f"{g['grader']} by {g['judge']}" if g["judge"] else g["grader"])
    findings = []
    for ch in suite.challenges:
        if not ch.measured:
            continue
        row = tuple(cells.get((ch.id, t), Cell(ch.id, t, 0, 0, 0)) for t in targets)
        meanings = list(dict.fromkeys(p.pass_if.means for p in ch.probes if p.pass_if.means))
        means = "; ".join(meanings[:3]) + (f"; and {len(meanings) - 3} more" if len(meanings) > 3 else "")
        shown = tuple(e for t in targets for e in examples.get((ch.id, t), []))
        findings.append(Finding(ch, row, means, shown, tuple(graders.get(ch.id, []))))
    return findings


def _verdict(
    suite: Suite,
    policy: Policy,
    target: str,
    findings: list[Finding],
    graded: list[dict[str, Any]],
    seed: int,
    waivers: list[acts.Waiver],
    on: date,
) -> Verdict:
    """One target in one deployment context: every rule evaluated on its cells (challenges, or the attacks,
    families, categories or probes within them), waivers live on `on` applied, then the decision."""
    families = {a.id: a.family for a in suite.attacks} | {"direct": "direct"}
    outcomes = []
    for rule in policy.rules:
        chosen = [f for f in findings if rule.selects(f.challenge)]
        if rule.per == "challenge":
            selected = [(f.challenge.id, c) for f in chosen for c in f.cells if c.target == target]
        else:
            selected = _group_cells(graded, target, {f.challenge.id for f in chosen}, rule.per, families, seed)
        outcomes.append(evaluate(rule, selected))
    return decide_with_waivers(target, policy, outcomes, waivers, on)


def _cells(
    graded: list[dict[str, Any]],
    seed: int,
    labels: dict[str, str],
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
    for r in graded:
        key = (r["challenge_id"], r["target"])
        outcome = r["outcome"]
        graded_fail[key] += outcome == "fail"
        if outcome in ("pass", "fail") and r["item_id"] in labels:
            human = labels[r["item_id"]]
            reviewed[key][0] += 1
            reviewed[key][1] += human == "pass"
            reviewed[key][2] += human != outcome
            outcome = human
        if outcome in ("pass", "fail") and r["probe_id"] in graders:
            keys[key].add(graders[r["probe_id"]][0])
        counts = per_probe[key][r["probe_id"]]
        counts[("pass", "fail", "error").index(outcome) if outcome in ("pass", "fail", "error") else 3] += 1
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


def _group_cells(
    graded: list[dict[str, Any]], target: str, challenges: set[str], per: str, families: dict[str, str], seed: int
) -> list[tuple[str, Cell]]:
    """Cells per attack, attack family, behaviour category or probe over a target's trials of the selected
    challenges (raw rates, clustered by probe), for rules that let the worst group decide."""
    import numpy as np

    def group(r: dict[str, Any]) -> str:
        if per == "attack":
            return str(r["attack"])
        if per == "family":
            return families.get(r["attack"], str(r["attack"]))
        if per == "category":
            return str(r["category"] or "uncategorised")
        return str(r["probe_id"])

    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for r in graded:
        if r["target"] == target and r["challenge_id"] in challenges:
            outcome = r["outcome"]
            slot = ("pass", "fail", "error").index(outcome) if outcome in ("pass", "fail", "error") else 3
            counts[group(r)][r["probe_id"]][slot] += 1
    out = []
    for n, (name, probes) in enumerate(sorted(counts.items())):
        clusters = [(p[0], p[0] + p[1]) for _, p in sorted(probes.items()) if p[0] + p[1]]
        boot = bootstrap_clustered(clusters, np.random.default_rng([seed, n, 2])) if len(clusters) > 1 else None
        totals = [sum(p[i] for p in probes.values()) for i in range(4)]
        out.append((f"{per} {name}", Cell(name, target, totals[0], totals[1], totals[2], totals[3], boot)))
    return out


def _disclosures(con: Any, run_id: str, manifest: Manifest) -> tuple[str, ...]:
    """What a reader must know about how complete and how comparable the run is."""
    notes = []
    stored = read_rows(
        con, "SELECT count(*) AS n, count(*) FILTER (cached) AS cached FROM responses WHERE run_id = ?", [run_id]
    )[0]
    planned = manifest.planned_items
    if manifest.status == "capped":
        notes.append(
            f"The run stopped before its cost cap of ${manifest.max_cost_usd or 0:.2f} "
            f"(spent ${manifest.spent_usd or 0:.4f}): {stored['n']} of {planned} planned requests have replies, "
            "and the figures cover only those."
        )
    elif manifest.status != "complete" or stored["n"] < planned:
        notes.append(f"The run is {manifest.status}: {stored['n']} of {planned} planned requests have replies.")
    if stored["cached"]:
        notes.append(f"{stored['cached']} replies were reused from earlier runs of the identical request (cache).")
    for change in manifest.identity_changes:
        notes.append(
            f"Model identity changed during the run for {change['target']}: the endpoint reported "
            f"{change['was_model']} / {change['was_fingerprint']} first, then {change['model']} / "
            f"{change['fingerprint']} from {change['at']}. A silent backend change can invalidate comparisons."
        )
    return tuple(notes)


def _target_summary(con: Any, run_id: str, t: Target) -> TargetSummary:
    rows = read_rows(
        con,
        "SELECT returned_model, system_fingerprint, latency_s, prompt_tokens, completion_tokens, error_class, "
        "params.temperature AS temperature, params.seed AS seed, started_at "
        "FROM responses WHERE run_id = ? AND target = ?",
        [run_id, t.name],
    )
    ok = [r for r in rows if not r["error_class"]]
    latencies = [r["latency_s"] for r in ok]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    seeds = sorted({r["seed"] for r in rows if r["seed"] is not None})
    times = sorted(r["started_at"] for r in rows)
    return TargetSummary(
        name=t.name,
        model=t.model,
        base_url=t.base_url,
        system_prompt=t.system_prompt,
        facts=tuple(sorted(t.facts)),
        returned_models=tuple(sorted({r["returned_model"] for r in ok if r["returned_model"]})),
        fingerprints=tuple(sorted({r["system_fingerprint"] for r in ok if r["system_fingerprint"]})),
        responses=len(rows),
        errors=len(rows) - len(ok),
        latency_p50=p50,
        latency_p95=p95,
        prompt_tokens=sum(r["prompt_tokens"] or 0 for r in ok),
        completion_tokens=sum(r["completion_tokens"] or 0 for r in ok),
        temperatures=tuple(sorted({float(r["temperature"]) for r in rows if r["temperature"] is not None})),
        seeds=f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else (str(seeds[0]) if seeds else "none"),
        first_at=times[0] if times else "",
        last_at=times[-1] if times else "",
    )
