"""What a report says about the acts around its run: whether the criteria were fixed before the results
(pre-registration), the waiver register, and the sign-offs, each as of the date the report decides on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from auditor.archive import acts
from auditor.archive.store import RunDir
from auditor.report.verdicts import Verdict

PREREGISTRATION = "preregistration.json"  # the sealed plan a run was started from, copied into its folder


@dataclass(frozen=True)
class Preregistration:
    """The sealed plan a run was started from: when the suite, thresholds and targets were fixed."""

    plan_id: str
    sealed_at: str
    seal: str
    suite_sha256: str
    items: int


@dataclass(frozen=True)
class WaiverEntry:
    """A waiver in the register: what it covers and what it did in this report."""

    waiver: acts.Waiver
    state: str  # applied | expired | not needed
    applied_to: tuple[str, ...]  # "target / context" where it turned a rule into an accepted one


@dataclass(frozen=True)
class SignoffEntry:
    """A sign-off as the report shows it."""

    signoff: acts.Signoff
    expired: bool


@dataclass(frozen=True)
class Governance:
    as_of: str  # the date verdicts and waivers were decided on, YYYY-MM-DD
    preregistration: Preregistration | None
    waivers: tuple[WaiverEntry, ...]
    signoffs: tuple[SignoffEntry, ...]


def preregistration(run: RunDir) -> Preregistration | None:
    """The sealed plan the run was started from, if it was (its copy in the run folder, sealed in its ledger)."""
    path = run.path / PREREGISTRATION
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return Preregistration(
        data["plan_id"], data["sealed_at"], data["seal"], data["suite"]["sha256"], len(data["item_ids"])
    )


def governance(run: RunDir, verdicts: list[Verdict], on: date) -> Governance:
    """The report's governance record for a run whose verdicts were decided on `on`."""
    applied: dict[str, list[str]] = {}
    for v in verdicts:
        for w in v.waived:
            applied.setdefault(w.waiver_id, []).append(f"{v.target} / {v.policy.id}")
    entries = []
    for w in acts.waivers(run):
        state = "applied" if w.waiver_id in applied else "expired" if not w.live(on) else "not needed"
        entries.append(WaiverEntry(w, state, tuple(applied.get(w.waiver_id, ()))))
    signoffs = tuple(SignoffEntry(s, not s.live(on)) for s in acts.signoffs(run))
    return Governance(on.isoformat(), preregistration(run), tuple(entries), signoffs)
