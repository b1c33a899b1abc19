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
from auditor.report.verdicts import (
    Cell,
    ProbeRow,
    Tally,
    Verdict,
    cells_of,
    decide_with_waivers,
    evaluate,
    grader_notes,
    group_cells,
    probe_rows,
)

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
    failing: int = 0  # failing replies as graded, all targets: the examples are a sample of these


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
    probes: tuple[ProbeRow, ...] = ()  # every probe of every target, for the per-probe CSV
    seed: int = 0  # the run's seed: bootstrap intervals and the sample of examples


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
    reviewed = validity.reviews(con, run.run_id)
    tallies = _tallies(con, run.run_id, reviewed.labels)
    probe_graders = validity.probe_graders(suite, judge)
    trials = validity.by_grader(probe_graders, tallies, _reviewed_trials(con, run.run_id, reviewed.labels))
    uses = validity.grader_uses(suite, judge, trials, validity.stored_calibrations(con), probe_graders)
    cells = cells_of(tallies, manifest.seed, probe_graders, uses)
    intents = {p.id: p.intent for _, p in suite.probes() if p.intent}
    harmful = {p for p, intent in intents.items() if intent == "harmful"} if intents else None
    findings = _findings(con, run.run_id, suite, cells, target_names, manifest.seed)
    verdicts = [
        replace(
            _verdict(suite, policy, t, findings, tallies, manifest.seed, waivers, on),
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
        probes=probe_rows(tallies),
        seed=manifest.seed,
    )


def _tallies(con: Any, run_id: str, labels: dict[str, str]) -> list[Tally]:
    """The run's grades counted per target, challenge, probe, attack and category in DuckDB (a run of 100,000
    trials is a few thousand rows here, or one per probe), with human review labels (`labels`, item id -> label)
    overriding the grader's pass or fail."""
    _register_labels(con, labels)
    counts = ", ".join(
        f"count(*) FILTER ({column} = '{outcome}')"
        for column in ("outcome", "counted")
        for outcome in ("pass", "fail", "error")
    )
    rows = con.execute(
        "WITH g AS (SELECT g.target, g.challenge_id, g.probe_id, g.attack, g.category, g.outcome, "
        "g.outcome IN ('pass', 'fail') AND l.label IS NOT NULL AS reviewed, l.label, "
        "CASE WHEN g.outcome IN ('pass', 'fail') AND l.label IS NOT NULL THEN l.label ELSE g.outcome END AS counted "
        "FROM grades g LEFT JOIN _labels l USING (item_id) WHERE g.run_id = ?) "
        f"SELECT target, challenge_id, probe_id, attack, category, count(*), {counts}, "
        "count(*) FILTER (reviewed), count(*) FILTER (reviewed AND label = 'pass'), "
        "count(*) FILTER (reviewed AND label <> outcome) FROM g GROUP BY ALL ORDER BY ALL",
        [run_id],
    ).fetchall()
    con.unregister("_labels")
    out = []
    for target, challenge, probe, attack, category, n, gp, gf, ge, cp, cf, ce, reviewed, passed, overrides in rows:
        out.append(
            Tally(target, challenge, probe, attack, category, (gp, gf, ge, n - gp - gf - ge),
                  (cp, cf, ce, n - cp - cf - ce), reviewed, passed, overrides)
        )  # fmt: skip
    return out


def _register_labels(con: Any, labels: dict[str, str]) -> None:
    """Human review labels (item id -> label) as the table _labels of the connection, until unregistered."""
    import pyarrow as pa

    schema = pa.schema([("item_id", pa.string()), ("label", pa.string())])
    con.register("_labels", pa.table({"item_id": list(labels), "label": list(labels.values())}, schema=schema))


def _reviewed_trials(con: Any, run_id: str, labels: dict[str, str]) -> list[tuple[str, str, str]]:
    """(probe, grader outcome, human label) for each decided trial of the run a reviewer labelled."""
    if not labels:
        return []
    _register_labels(con, labels)
    rows = con.execute(
        "SELECT g.probe_id, g.outcome, l.label FROM grades g JOIN _labels l USING (item_id) "
        "WHERE g.run_id = ? AND g.outcome IN ('pass', 'fail') ORDER BY ALL",
        [run_id],
    ).fetchall()
    con.unregister("_labels")
    return [(str(p), str(o), str(label)) for p, o, label in rows]


def _findings(
    con: Any, run_id: str, suite: Suite, cells: dict[tuple[str, str], Cell], targets: list[str], seed: int
) -> list[Finding]:
    """Each measured challenge with its cells per target, the graders behind them and failing examples (replies to
    harmful requests marked as withheld, to be shown in full only in the evidence appendix).

    The examples of a cell are a deterministic random sample of its failing replies, drawn in DuckDB (only the
    chosen replies are read): one reply per probe, in the order of md5(seed, item id), before a second of any
    probe; shown in suite order."""
    failing = read_rows(
        con,
        "WITH f AS (SELECT target, challenge_id, probe_id, attack, variant, sample, evidence, item_id, "
        "md5(? || item_id) AS draw FROM grades WHERE run_id = ? AND outcome = 'fail'), "
        "p AS (SELECT *, row_number() OVER (PARTITION BY challenge_id, target, probe_id ORDER BY draw) AS turn "
        "FROM f), "
        "c AS (SELECT *, row_number() OVER (PARTITION BY challenge_id, target ORDER BY turn, draw) AS pick, "
        "count(*) OVER (PARTITION BY challenge_id, target) AS failing FROM p) "
        "SELECT c.target, c.challenge_id, c.probe_id, c.attack, c.sample, c.evidence, c.failing, r.variables, "
        "r.messages, r.content FROM c JOIN responses r ON r.run_id = ? AND r.item_id = c.item_id "
        "WHERE c.pick <= ? ORDER BY c.challenge_id, c.target, c.probe_id, c.variant, c.sample",
        [f"{seed}:", run_id, run_id, EXAMPLES_PER_CELL],
    )
    examples: dict[tuple[str, str], list[Example]] = defaultdict(list)
    failures: dict[str, dict[str, int]] = defaultdict(dict)
    harmful = {p.id for _, p in suite.probes() if p.intent == "harmful"}
    for f in failing:
        key = (f["challenge_id"], f["target"])
        failures[f["challenge_id"]][f["target"]] = int(f["failing"])
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
        failing_n = sum(failures[ch.id].get(t, 0) for t in targets) if ch.id in failures else 0
        findings.append(Finding(ch, row, means, shown, tuple(graders.get(ch.id, [])), failing_n))
    return findings


def _verdict(
    suite: Suite,
    policy: Policy,
    target: str,
    findings: list[Finding],
    tallies: list[Tally],
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
            selected = group_cells(tallies, target, {f.challenge.id for f in chosen}, rule.per, families, seed)
        outcomes.append(evaluate(rule, selected))
    return decide_with_waivers(target, policy, outcomes, waivers, on)


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
    """A target's replies summarised in DuckDB (latency percentiles interpolated linearly, as stats.percentile)."""
    ok = "coalesce(error_class, '') = ''"
    row = read_rows(
        con,
        f"SELECT count(*) AS n, count(*) FILTER ({ok}) AS ok, "
        f"quantile_cont(latency_s, 0.5) FILTER ({ok}) AS p50, quantile_cont(latency_s, 0.95) FILTER ({ok}) AS p95, "
        f"list(DISTINCT returned_model) FILTER ({ok} AND coalesce(returned_model, '') <> '') AS models, "
        f"list(DISTINCT system_fingerprint) FILTER ({ok} AND coalesce(system_fingerprint, '') <> '') AS prints, "
        f"coalesce(sum(coalesce(prompt_tokens, 0)) FILTER ({ok}), 0) AS prompt_tokens, "
        f"coalesce(sum(coalesce(completion_tokens, 0)) FILTER ({ok}), 0) AS completion_tokens, "
        "list(DISTINCT params.temperature) FILTER (params.temperature IS NOT NULL) AS temperatures, "
        "min(params.seed) AS seed_min, max(params.seed) AS seed_max, count(DISTINCT params.seed) AS seeds, "
        "min(started_at) AS first_at, max(started_at) AS last_at "
        "FROM responses WHERE run_id = ? AND target = ?",
        [run_id, t.name],
    )[0]
    seeds = int(row["seeds"])
    return TargetSummary(
        name=t.name,
        model=t.model,
        base_url=t.base_url,
        system_prompt=t.system_prompt,
        facts=tuple(sorted(t.facts)),
        returned_models=tuple(sorted(row["models"] or ())),
        fingerprints=tuple(sorted(row["prints"] or ())),
        responses=int(row["n"]),
        errors=int(row["n"]) - int(row["ok"]),
        latency_p50=row["p50"],
        latency_p95=row["p95"],
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        temperatures=tuple(sorted(float(x) for x in row["temperatures"] or ())),
        seeds=f"{row['seed_min']}–{row['seed_max']}" if seeds > 1 else (str(row["seed_min"]) if seeds else "none"),
        first_at=row["first_at"] or "",
        last_at=row["last_at"] or "",
    )
