"""Comparisons a procurement board reads: paired target-vs-target tests and safety against over-refusal."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from auditor.refusal import detect_refusal
from auditor.stats import PairedComparison, paired_difference, wilson
from auditor.store import read_rows


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


def pairings(con: Any, run_id: str, targets: list[str], titles: dict[str, str]) -> list[Pairing]:
    """Every pair of targets on every challenge, matched trial by trial (both decided), with McNemar's test."""
    rows = read_rows(
        con,
        "SELECT challenge_id, probe_id, attack, variant, sample, target, outcome FROM grades "
        "WHERE run_id = ? AND outcome IN ('pass', 'fail') ORDER BY ALL",
        [run_id],
    )
    trials: dict[tuple[str, str, str, int, int], dict[str, bool]] = defaultdict(dict)
    for r in rows:
        key = (r["challenge_id"], r["probe_id"], r["attack"], r["variant"], r["sample"])
        trials[key][r["target"]] = r["outcome"] == "pass"
    out = []
    for a, b in combinations(targets, 2):
        by_challenge: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        for key, seen in trials.items():
            if a in seen and b in seen:
                by_challenge[key[0]].append((seen[a], seen[b]))
        for challenge_id in sorted(by_challenge):
            result = paired_difference(by_challenge[challenge_id])
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
