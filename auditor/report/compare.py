"""Comparisons a procurement board reads: paired target-vs-target tests and safety against over-refusal."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from auditor.archive.store import read_rows
from auditor.criteria.refusal import detect_refusal
from auditor.stats import PairedComparison, attack_success, lift, paired_difference, wilson


@dataclass(frozen=True)
class Pairing:
    """Two targets compared on the same probes, variants and samples of one challenge."""

    challenge_id: str
    a: str
    b: str
    result: PairedComparison
    text: str


@dataclass(frozen=True)
class Balance:
    """Harmful compliance against over-refusal for one target (probes declaring an intent)."""

    target: str
    harmful_n: int
    harmful_complied: int
    benign_n: int
    benign_refused: int

    @property
    def compliance(self) -> tuple[float | None, tuple[float, float]]:
        rate = self.harmful_complied / self.harmful_n if self.harmful_n else None
        return rate, wilson(self.harmful_complied, self.harmful_n)

    @property
    def over_refusal(self) -> tuple[float | None, tuple[float, float]]:
        rate = self.benign_refused / self.benign_n if self.benign_n else None
        return rate, wilson(self.benign_refused, self.benign_n)


_TRIAL = ("challenge_id", "probe_id", "attack", "variant", "sample")


def _paired_counts(con: Any, side: str, group: tuple[str, ...], where: str, params: list[Any]) -> list[Any]:
    """Decided trials matched across two sides (`side` is the column telling them apart, e.g. target or run),
    counted in DuckDB: per pair of sides and `group` columns, (both passed, only the first, only the second,
    neither)."""
    keys = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '') AS {c}" for c in dict.fromkeys((*group, *_TRIAL)))
    sql = (
        f"WITH g AS (SELECT {side} AS side, {keys}, outcome = 'pass' AS ok FROM grades "
        f"WHERE {where} AND outcome IN ('pass', 'fail')) "
        f"SELECT a.side, b.side, {', '.join(f'a.{c}' for c in group)}, count(*) FILTER (a.ok AND b.ok), "
        "count(*) FILTER (a.ok AND NOT b.ok), count(*) FILTER (NOT a.ok AND b.ok), "
        "count(*) FILTER (NOT a.ok AND NOT b.ok) "
        f"FROM g a JOIN g b ON {' AND '.join(f'a.{c} = b.{c}' for c in dict.fromkeys((*group, *_TRIAL)))} "
        "AND a.side <> b.side GROUP BY ALL"
    )
    return list(con.execute(sql, params).fetchall())


def _pairs(both: int, a_only: int, b_only: int, neither: int) -> list[tuple[bool, bool]]:
    return [(True, True)] * both + [(True, False)] * a_only + [(False, True)] * b_only + [(False, False)] * neither


def pairings(con: Any, run_id: str, targets: list[str], titles: dict[str, str]) -> list[Pairing]:
    """Every pair of targets on every challenge, matched trial by trial (both decided), with McNemar's test."""
    if len(targets) < 2:
        return []
    counted = {(a, b, c): counts for a, b, c, *counts in _paired_counts(con, "target", ("challenge_id",),
                                                                          "run_id = ?", [run_id])}  # fmt: skip
    out = []
    for a, b in combinations(targets, 2):
        for challenge_id in sorted(c for x, y, c in counted if (x, y) == (a, b)):
            result = paired_difference(_pairs(*counted[(a, b, challenge_id)]))
            text = result.statement(a, b, titles.get(challenge_id, challenge_id))
            out.append(Pairing(challenge_id, a, b, result, text))
    return out


def balances(con: Any, run_id: str, targets: list[str], intents: dict[str, str]) -> list[Balance]:
    """Per target: how often it complied with harmful probes (graded fail) and refused benign ones."""
    if not intents:
        return []
    import pyarrow as pa

    con.register("_intents", pa.table({"probe_id": list(intents), "intent": list(intents.values())}))
    counts = {t: [0, 0, 0, 0] for t in targets}
    decided = "g.run_id = ? AND g.outcome IN ('pass', 'fail')"
    harmful = con.execute(
        "SELECT g.target, count(*), count(*) FILTER (g.outcome = 'fail') FROM grades g JOIN _intents i "
        f"USING (probe_id) WHERE {decided} AND i.intent = 'harmful' GROUP BY ALL",
        [run_id],
    )
    for target, n, complied in harmful.fetchall():
        if target in counts:
            counts[target][0:2] = [n, complied]
    # the benign replies are read (a batch at a time) to tell refusals: only their text is needed
    cur = con.execute(
        "SELECT g.target, r.content FROM grades g JOIN _intents i USING (probe_id) JOIN responses r "
        f"USING (run_id, item_id) WHERE {decided} AND i.intent <> 'harmful'",
        [run_id],
    )
    while batch := cur.fetchmany(5000):
        for target, content in batch:
            if target in counts:
                counts[target][2] += 1
                counts[target][3] += detect_refusal(content or "")[0]
    con.unregister("_intents")
    return [Balance(t, *counts[t]) for t in targets]


@dataclass(frozen=True)
class AttackRow:
    """How often one attack broke a target's criteria, against the direct request on the same behaviours."""

    target: str
    attack: str
    family: str
    attempts: int
    errors: int
    successes: int
    baseline: float | None

    @property
    def rates(self) -> tuple[float | None, float | None]:
        """Attack-success rate over decided attempts and over all attempts (errors count as failures)."""
        return attack_success(self.successes, self.attempts, self.errors)

    @property
    def lift(self) -> float | None:
        return lift(self.rates[0], self.baseline)


@dataclass(frozen=True)
class CategoryRow:
    """Attack success per behaviour category: the direct request and every attack together."""

    target: str
    category: str
    direct: tuple[int, int]
    attacked: tuple[int, int]  # (successes, decided attempts)


def attack_rows(
    con: Any, run_id: str, targets: list[str], families: dict[str, str], harmful: set[str] | None = None
) -> list[AttackRow]:
    """Per target and attack: attempts, errors and successes (the probe's criterion failed), with the direct
    baseline measured on exactly the probes, variants and samples the attack covered. Only probes of harmful
    intent count when the suite declares intents (`harmful`): a benign twin's failure is an over-refusal, not a
    successful attack."""
    attacked = read_rows(con, "SELECT count(*) AS n FROM grades WHERE run_id = ? AND attack <> 'direct'", [run_id])
    if not attacked[0]["n"]:
        return []
    import pyarrow as pa

    only = sorted(harmful) if harmful is not None else None
    con.register("_harmful", pa.table({"probe_id": pa.array(only or [], pa.string())}))
    decided = "outcome IN ('pass', 'fail')"
    g = "SELECT target, attack, probe_id, variant, sample, outcome FROM grades WHERE run_id = ?" + (
        " AND probe_id IN (SELECT probe_id FROM _harmful)" if only is not None else ""
    )
    rows = con.execute(
        f"WITH g AS ({g}), d AS (SELECT * FROM g WHERE attack = 'direct') "
        f"SELECT g.target, g.attack, count(*), count(*) FILTER (NOT coalesce(g.{decided}, false)), "
        f"count(*) FILTER (g.outcome = 'fail'), count(*) FILTER (d.{decided}), count(*) FILTER (d.outcome = 'fail') "
        "FROM g LEFT JOIN d ON g.target = d.target AND g.probe_id = d.probe_id AND g.variant = d.variant "
        "AND g.sample = d.sample WHERE g.attack <> 'direct' GROUP BY ALL",
        [run_id],
    ).fetchall()
    direct = con.execute(
        f"WITH g AS ({g}) SELECT target, count(*), count(*) FILTER (NOT coalesce({decided}, false)), "
        "count(*) FILTER (outcome = 'fail') FROM g WHERE attack = 'direct' GROUP BY ALL",
        [run_id],
    ).fetchall()
    con.unregister("_harmful")
    out = []
    for target, attack, attempts, errors, successes, base_decided, base_failed in sorted(
        rows, key=lambda r: (targets.index(r[0]) if r[0] in targets else len(targets), r[1])
    ):
        baseline = base_failed / base_decided if base_decided else None
        out.append(AttackRow(target, attack, families.get(attack, attack), attempts, errors, successes, baseline))
    direct_rows = {target: (n, errors, successes) for target, n, errors, successes in direct}
    attacked_targets = {row.target for row in out}
    baselines = [
        AttackRow(target, "direct", "baseline", *direct_rows.get(target, (0, 0, 0)), None)
        for target in targets
        if target in attacked_targets
    ]
    return sorted(baselines + out, key=lambda r: (targets.index(r.target), r.attack != "direct", r.attack))


def category_rows(con: Any, run_id: str, targets: list[str]) -> list[CategoryRow]:
    """Attack success per behaviour category, for probes that declare one."""
    rows = read_rows(
        con,
        "SELECT target, category, attack = 'direct' AS is_direct, count(*) FILTER (outcome = 'fail') AS s, "
        "count(*) FILTER (outcome IN ('pass', 'fail')) AS n FROM grades "
        "WHERE run_id = ? AND category IS NOT NULL GROUP BY ALL ORDER BY ALL",
        [run_id],
    )
    table: dict[tuple[str, str], dict[bool, tuple[int, int]]] = defaultdict(dict)
    for r in rows:
        table[(r["target"], r["category"])][bool(r["is_direct"])] = (int(r["s"]), int(r["n"]))
    return [
        CategoryRow(t, c, v.get(True, (0, 0)), v.get(False, (0, 0)))
        for (t, c), v in sorted(table.items(), key=lambda kv: (targets.index(kv[0][0]), kv[0][1]))
        if t in targets
    ]


@dataclass(frozen=True)
class Drift:
    """One target on one challenge in two runs: the same trials paired, earlier run as A, later as B."""

    target: str
    challenge_id: str
    result: PairedComparison
    text: str


def drift(con: Any, run_a: str, run_b: str) -> list[Drift]:
    """Every target and challenge present in both runs, matched trial by trial (same probe, attack, variant and
    sample, both decided), with McNemar's exact test: did the model get better or worse between the audits?"""
    counted = _paired_counts(con, "run_id", ("target", "challenge_id"), "run_id IN (?, ?)", [run_a, run_b])
    paired = {(target, challenge): counts for now, _, target, challenge, *counts in counted if now == run_b}
    out = []
    for (target, challenge_id), counts in sorted(paired.items()):
        result = paired_difference(_pairs(*counts))
        text = result.statement(f"{target} now", "before", challenge_id)
        out.append(Drift(target, challenge_id, result, text))
    return out


@dataclass(frozen=True)
class BiasRow:
    """How a target's errors on probes with a stereotyped answer lean: the share that follow the stereotype."""

    target: str
    probes: int
    errors: int
    stereotyped: int

    @property
    def score(self) -> tuple[float | None, tuple[float, float]]:
        """The bias score (stereotyped errors among errors) with its 95% Wilson interval; 0.5 would be no lean
        where each scene offers one stereotyped and one other person."""
        rate = self.stereotyped / self.errors if self.errors else None
        return rate, wilson(self.stereotyped, self.errors)


def bias_rows(con: Any, run_id: str, targets: list[str], stereotypes: dict[str, str]) -> list[BiasRow]:
    """Per target: among failed replies to probes that name a stereotyped answer, how many give that answer."""
    import re

    if not stereotypes:
        return []
    import pyarrow as pa

    con.register("_stereotyped", pa.table({"probe_id": list(stereotypes)}))
    cur = con.execute(
        "SELECT g.target, g.probe_id, r.content FROM grades g JOIN responses r USING (run_id, item_id) "
        "WHERE g.run_id = ? AND g.outcome = 'fail' AND g.probe_id IN (SELECT probe_id FROM _stereotyped)",
        [run_id],
    )
    patterns = {p: re.compile(x, re.IGNORECASE) for p, x in stereotypes.items()}
    counts = {t: [0, 0] for t in targets}
    while batch := cur.fetchmany(5000):
        for target, probe, content in batch:
            if target in counts:
                counts[target][0] += 1
                counts[target][1] += bool(patterns[probe].search(content or ""))
    con.unregister("_stereotyped")
    return [BiasRow(t, len(stereotypes), *counts[t]) for t in targets]
