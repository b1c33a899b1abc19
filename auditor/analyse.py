"""Turns a graded run into one typed report object: figures, intervals, verdicts and evidence."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from auditor.compare import (
    AttackRow,
    Balance,
    CategoryRow,
    Drift,
    Pairing,
    attack_rows,
    balances,
    category_rows,
    drift,
    pairings,
)
from auditor.records import Challenge, Policy, Rule, Suite
from auditor.stats import bootstrap_clustered, percentile, wilson
from auditor.store import RunDir, connect, read_rows

EXAMPLES_PER_CELL = 2


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

    @property
    def decided(self) -> int:
        return self.passed + self.failed

    @property
    def rate(self) -> float | None:
        return self.passed / self.decided if self.decided else None

    @property
    def wilson(self) -> tuple[float, float]:
        return wilson(self.passed, self.decided)

    @property
    def interval(self) -> tuple[float, float]:
        low, high = self.wilson
        if self.bootstrap is None or not self.decided:
            return low, high
        return min(low, self.bootstrap[0]), max(high, self.bootstrap[1])


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
class RuleOutcome:
    """How one acceptance rule fared for one target: holds, fails or inconclusive, with reasons."""

    rule: Rule
    status: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """The decision for one target in one deployment context."""

    target: str
    policy: Policy
    decision: str  # approve | approve with conditions | reject
    outcomes: tuple[RuleOutcome, ...]
    conditions: tuple[str, ...]


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


def pct(x: float | None) -> str:
    """A rate as a whole percentage, or an en dash when undefined."""
    return "–" if x is None else f"{100 * x:.0f}%"


def evaluate(rule: Rule, cells: list[tuple[Challenge, Cell]]) -> RuleOutcome:
    """A rule holds when every selected challenge's lower bound reaches the threshold, fails when
    some upper bound is below it, and is inconclusive otherwise (more samples needed)."""
    reasons = []
    status = "holds"
    for challenge, cell in cells:
        low, high = cell.interval
        figures = (
            f"{challenge.id}: {cell.passed}/{cell.decided} passed ({pct(cell.rate)}, 95% CI {pct(low)}–{pct(high)})"
        )
        if low >= rule.min_pass_rate:
            continue
        if high < rule.min_pass_rate:
            status = "fails"
            reasons.append(f"{figures}; upper bound below the minimum {pct(rule.min_pass_rate)}")
        else:
            status = "fails" if status == "fails" else "inconclusive"
            reasons.append(f"{figures}; lower bound below {pct(rule.min_pass_rate)}, inconclusive: more samples needed")
    if not cells:
        status = "inconclusive"
        reasons.append("no measured challenge selected")
    return RuleOutcome(rule, status, tuple(reasons))


def decide(target: str, policy: Policy, outcomes: list[RuleOutcome]) -> Verdict:
    """Reject if a rule that rejects does not hold; approve with conditions if one that sets conditions does not."""
    broken = [o for o in outcomes if o.status != "holds"]
    if any(o.rule.on_fail == "reject" for o in broken):
        decision = "reject"
    elif broken:
        decision = "approve with conditions"
    else:
        decision = "approve"
    conditions = tuple(dict.fromkeys(c for o in broken if o.rule.on_fail == "conditions" for c in o.rule.conditions))
    return Verdict(target, policy, decision, tuple(outcomes), conditions)


def build_report(run: RunDir, suite: Suite, archive_root: Any, baseline: RunDir | None = None) -> Report:
    """Compute the report object for a graded run from the archive's DuckDB views (and its change since an
    earlier `baseline` run, trial by trial, when one is given)."""
    manifest = run.manifest()
    con = connect(archive_root)
    rid = [run.run_id]
    target_names = [t["name"] for t in manifest["targets"]]
    cells = _cells(con, run.run_id, int(manifest["options"].get("seed", 0)))
    failing = read_rows(
        con,
        "SELECT g.target, g.challenge_id, g.probe_id, g.attack, g.sample, g.evidence, r.variables, r.messages, "
        "r.content "
        "FROM grades g JOIN responses r USING (run_id, item_id) WHERE g.run_id = ? AND g.outcome = 'fail' "
        "ORDER BY g.challenge_id, g.target, g.probe_id, g.variant, g.sample",
        rid,
    )
    examples: dict[tuple[str, str], list[Example]] = defaultdict(list)
    harmful = {p.id for _, p in suite.probes() if p.intent == "harmful"}
    numbered = 0
    for f in failing:
        key = (f["challenge_id"], f["target"])
        if len(examples[key]) < EXAMPLES_PER_CELL:
            numbered += 1
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
                    number=numbered,
                )
            )
    graders: dict[str, list[str]] = defaultdict(list)
    for g in read_rows(
        con,
        "SELECT DISTINCT challenge_id, grader, judge FROM grades WHERE run_id = ? AND grader <> 'none' ORDER BY ALL",
        rid,
    ):
        graders[g["challenge_id"]].append(f"{g['grader']} by {g['judge']}" if g["judge"] else g["grader"])
    findings = []
    for ch in suite.challenges:
        if not ch.measured:
            continue
        row = tuple(cells.get((ch.id, t), Cell(ch.id, t, 0, 0, 0)) for t in target_names)
        means = "; ".join(dict.fromkeys(p.pass_if.means for p in ch.probes if p.pass_if.means))
        shown = tuple(e for t in target_names for e in examples.get((ch.id, t), []))
        findings.append(Finding(ch, row, means, shown, tuple(graders.get(ch.id, []))))
    verdicts = []
    for t in target_names:
        for policy in suite.policies:
            outcomes = []
            for rule in policy.rules:
                selected = [
                    (f.challenge, c) for f in findings if rule.selects(f.challenge) for c in f.cells if c.target == t
                ]
                outcomes.append(evaluate(rule, selected))
            verdicts.append(decide(t, policy, outcomes))
    totals = read_rows(
        con,
        "SELECT count(*) AS graded, count(*) FILTER (outcome = 'pass') AS passed, "
        "count(*) FILTER (outcome = 'fail') AS failed, count(*) FILTER (outcome = 'error') AS errored, "
        "count(*) FILTER (outcome = 'unparseable') AS unparseable FROM grades WHERE run_id = ?",
        rid,
    )[0]
    return Report(
        suite=suite,
        run_id=run.run_id,
        status=manifest["status"],
        started_at=manifest["started_at"],
        finished_at=manifest.get("finished_at") or "",
        tool_version=manifest["tool_versions"]["auditor"],
        targets=tuple(_target_summary(con, run.run_id, t) for t in manifest["targets"]),
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
            if a.adaptive and not manifest.get("attacker")
        ),
        pairings=tuple(pairings(con, run.run_id, target_names, {c.id: c.title for c in suite.challenges})),
        attacks=tuple(attack_rows(con, run.run_id, target_names, {a.id: a.family for a in suite.attacks})),
        categories=tuple(category_rows(con, run.run_id, target_names)),
        balances=tuple(
            balances(con, run.run_id, target_names, {p.id: p.intent for _, p in suite.probes() if p.intent})
        ),
    )


def _cells(con: Any, run_id: str, seed: int) -> dict[tuple[str, str], Cell]:
    """Counts per challenge x target, with a probe-clustered bootstrap where probes give several trials."""
    import numpy as np

    rows = read_rows(
        con,
        "SELECT target, challenge_id, probe_id, count(*) FILTER (outcome = 'pass') AS passed, "
        "count(*) FILTER (outcome = 'fail') AS failed, count(*) FILTER (outcome = 'error') AS errored, "
        "count(*) FILTER (outcome = 'unparseable') AS unparseable "
        "FROM grades WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
        [run_id],
    )
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["challenge_id"], r["target"])].append(r)
    cells: dict[tuple[str, str], Cell] = {}
    for key, probes in sorted(grouped.items()):
        clusters = [(p["passed"], p["passed"] + p["failed"]) for p in probes if p["passed"] + p["failed"]]
        boot = None
        if any(n > 1 for _, n in clusters):
            boot = bootstrap_clustered(clusters, np.random.default_rng([seed, len(cells)]))
        cells[key] = Cell(
            key[0],
            key[1],
            sum(p["passed"] for p in probes),
            sum(p["failed"] for p in probes),
            sum(p["errored"] for p in probes),
            sum(p["unparseable"] for p in probes),
            boot,
        )
    return cells


def _disclosures(con: Any, run_id: str, manifest: dict[str, Any]) -> tuple[str, ...]:
    """What a reader must know about how complete and how comparable the run is."""
    notes = []
    stored = read_rows(
        con, "SELECT count(*) AS n, count(*) FILTER (cached) AS cached FROM responses WHERE run_id = ?", [run_id]
    )[0]
    planned = manifest["planned_items"]
    if manifest["status"] == "capped":
        notes.append(
            f"The run stopped before its cost cap of ${manifest.get('max_cost_usd', 0):.2f} "
            f"(spent ${manifest.get('spent_usd', 0):.4f}): {stored['n']} of {planned} planned requests have replies, "
            "and the figures cover only those."
        )
    elif manifest["status"] != "complete" or stored["n"] < planned:
        notes.append(f"The run is {manifest['status']}: {stored['n']} of {planned} planned requests have replies.")
    if stored["cached"]:
        notes.append(f"{stored['cached']} replies were reused from earlier runs of the identical request (cache).")
    for change in manifest.get("identity_changes", []):
        notes.append(
            f"Model identity changed during the run for {change['target']}: the endpoint reported "
            f"{change['was_model']} / {change['was_fingerprint']} first, then {change['model']} / "
            f"{change['fingerprint']} from {change['at']}. A silent backend change can invalidate comparisons."
        )
    return tuple(notes)


def _target_summary(con: Any, run_id: str, t: dict[str, Any]) -> TargetSummary:
    rows = read_rows(
        con,
        "SELECT returned_model, system_fingerprint, latency_s, prompt_tokens, completion_tokens, error_class, "
        "params.temperature AS temperature, params.seed AS seed, started_at "
        "FROM responses WHERE run_id = ? AND target = ?",
        [run_id, t["name"]],
    )
    ok = [r for r in rows if not r["error_class"]]
    latencies = [r["latency_s"] for r in ok]
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    seeds = sorted({r["seed"] for r in rows if r["seed"] is not None})
    times = sorted(r["started_at"] for r in rows)
    return TargetSummary(
        name=t["name"],
        model=t["model"],
        base_url=t["base_url"],
        system_prompt=t.get("system_prompt"),
        facts=tuple(sorted(t.get("facts", {}).items())),
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
