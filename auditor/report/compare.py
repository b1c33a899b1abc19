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


def _paired(
    rows: list[dict[str, Any]], side: str, group: tuple[str, ...], a: str, b: str
) -> dict[tuple[Any, ...], list[tuple[bool, bool]]]:
    """Decided trials matched across two sides (`side` is the column telling them apart, e.g. target or run),
    as (a passed, b passed) pairs grouped by the `group` columns."""
    trials: dict[tuple[Any, ...], dict[str, bool]] = defaultdict(dict)
    for r in rows:
        trials[tuple(r[c] for c in (*group, *_TRIAL))][r[side]] = r["outcome"] == "pass"
    paired: dict[tuple[Any, ...], list[tuple[bool, bool]]] = defaultdict(list)
    for key, seen in trials.items():
        if a in seen and b in seen:
            paired[key[: len(group)]].append((seen[a], seen[b]))
    return paired


def pairings(con: Any, run_id: str, targets: list[str], titles: dict[str, str]) -> list[Pairing]:
    """Every pair of targets on every challenge, matched trial by trial (both decided), with McNemar's test."""
    rows = read_rows(
        con,
        "SELECT challenge_id, probe_id, attack, variant, sample, target, outcome FROM grades "
        "WHERE run_id = ? AND outcome IN ('pass', 'fail') ORDER BY ALL",
        [run_id],
    )
    out = []
    for a, b in combinations(targets, 2):
        by_challenge = _paired(rows, "target", ("challenge_id",), a, b)
        for (challenge_id,) in sorted(by_challenge):
            result = paired_difference(by_challenge[(challenge_id,)])
            text = result.statement(a, b, titles.get(challenge_id, challenge_id))
            out.append(Pairing(challenge_id, a, b, result, text))
    return out


def balances(con: Any, run_id: str, targets: list[str], intents: dict[str, str]) -> list[Balance]:
    """Per target: how often it complied with harmful probes (graded fail) and refused benign ones."""
    if not intents:
        return []
    rows = read_rows(
        con,
        "SELECT g.target, g.probe_id, g.outcome, r.content FROM grades g JOIN responses r USING (run_id, item_id) "
        "WHERE g.run_id = ? AND g.outcome IN ('pass', 'fail')",
        [run_id],
    )
    counts = {t: [0, 0, 0, 0] for t in targets}
    for r in rows:
        intent = intents.get(r["probe_id"])
        c = counts.get(r["target"])
        if c is None or intent is None:
            continue
        if intent == "harmful":
            c[0] += 1
            c[1] += r["outcome"] == "fail"
        else:
            c[2] += 1
            c[3] += detect_refusal(r["content"] or "")[0]
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
    rows = [
        r
        for r in read_rows(
            con,
            "SELECT target, attack, probe_id, variant, sample, outcome FROM grades WHERE run_id = ? ORDER BY ALL",
            [run_id],
        )
        if harmful is None or r["probe_id"] in harmful
    ]
    direct: dict[tuple[str, str, int, int], str] = {}
    by_attack: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["attack"] == "direct":
            direct[(r["target"], r["probe_id"], r["variant"], r["sample"])] = r["outcome"]
        else:
            by_attack[(r["target"], r["attack"])].append(r)
    out = []
    for (target, attack), hits in sorted(by_attack.items(), key=lambda kv: (targets.index(kv[0][0]), kv[0][1])):
        base = [direct.get((target, h["probe_id"], h["variant"], h["sample"])) for h in hits]
        decided = [b for b in base if b in ("pass", "fail")]
        baseline = sum(b == "fail" for b in decided) / len(decided) if decided else None
        errors = sum(h["outcome"] not in ("pass", "fail") for h in hits)
        successes = sum(h["outcome"] == "fail" for h in hits)
        out.append(AttackRow(target, attack, families.get(attack, attack), len(hits), errors, successes, baseline))
    direct_rows = defaultdict(list)
    for (target, *_), outcome in direct.items():
        direct_rows[target].append(outcome)
    attacked_targets = {row.target for row in out}
    baselines = []
    for target in targets:
        if target in attacked_targets:
            outcomes = direct_rows[target]
            errors = sum(o not in ("pass", "fail") for o in outcomes)
            successes = sum(o == "fail" for o in outcomes)
            baselines.append(AttackRow(target, "direct", "baseline", len(outcomes), errors, successes, None))
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
    rows = read_rows(
        con,
        "SELECT run_id, target, challenge_id, probe_id, attack, variant, sample, outcome FROM grades "
        "WHERE run_id IN (?, ?) AND outcome IN ('pass', 'fail') ORDER BY ALL",
        [run_a, run_b],
    )
    paired = _paired(rows, "run_id", ("target", "challenge_id"), run_b, run_a)
    out = []
    for (target, challenge_id), pairs in sorted(paired.items()):
        result = paired_difference(pairs)
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
    rows = read_rows(
        con,
        "SELECT g.target, g.probe_id, r.content FROM grades g JOIN responses r USING (run_id, item_id) "
        "WHERE g.run_id = ? AND g.outcome = 'fail'",
        [run_id],
    )
    patterns = {p: re.compile(x, re.IGNORECASE) for p, x in stereotypes.items()}
    counts = {t: [0, 0] for t in targets}
    for r in rows:
        pattern = patterns.get(r["probe_id"])
        if pattern is None or r["target"] not in counts:
            continue
        counts[r["target"]][0] += 1
        counts[r["target"]][1] += bool(pattern.search(r["content"] or ""))
    return [BiasRow(t, len(stereotypes), *counts[t]) for t in targets]
