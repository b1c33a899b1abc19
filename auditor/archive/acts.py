"""The acts around an audit, stored with the run they concern and sealed in its ledger: sign-offs (who approved
what, for which context, with which conditions, until when) and waivers (a known failure accepted by an owner
until a date). Each act is one JSON file under the run's acts/ folder; the manifest is re-sealed after it, so
`auditor verify` covers every act and notices one removed or changed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from auditor.archive import ledger
from auditor.archive.store import RunDir
from auditor.errors import ArchiveError

SIGNOFF_DECISIONS = ("approve", "conditions", "reject")


@dataclass(frozen=True)
class Signoff:
    """A person's decision on a run for one deployment context (optionally one target)."""

    signoff_id: str  # S1, S2 ... in the order they were given
    run_id: str
    context: str
    decision: str  # approve | conditions | reject
    name: str
    role: str
    signed_at: str
    computed: str  # the computed verdict(s) when signed, e.g. "gpt-4o: approve with conditions"
    override: bool  # the decision contradicts the computed verdict
    target: str | None = None
    conditions: tuple[str, ...] = ()
    note: str = ""
    expires: str | None = None  # YYYY-MM-DD

    def live(self, on: date) -> bool:
        return self.expires is None or date.fromisoformat(self.expires) >= on


@dataclass(frozen=True)
class Waiver:
    """A failing or undecided challenge accepted by its owner until a date, for one target and context or all."""

    waiver_id: str  # W1, W2 ...
    run_id: str
    challenge_id: str
    owner: str
    reason: str
    expires: str  # YYYY-MM-DD, the last day it applies
    granted_at: str
    target: str | None = None
    context: str | None = None

    def live(self, on: date) -> bool:
        return date.fromisoformat(self.expires) >= on

    def covers(self, challenge_id: str, target: str, context: str) -> bool:
        return self.challenge_id == challenge_id and self.target in (None, target) and self.context in (None, context)

    def label(self) -> str:
        return f"waiver {self.waiver_id} ({self.owner}, until {self.expires})"


KINDS = {"signoff": Signoff, "waiver": Waiver}


def _folder(run: RunDir) -> Path:
    return run.path / "acts"


def _read(run: RunDir, kind: str) -> list[Any]:
    found = []
    for path in sorted(_folder(run).glob(f"{kind}-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            found.append(KINDS[kind](**data))
        except (OSError, ValueError, TypeError) as exc:
            raise ArchiveError(f"{path}: unreadable {kind}: {exc}") from None
    return found


def signoffs(run: RunDir) -> list[Signoff]:
    """The run's sign-offs, oldest first."""
    return list(_read(run, "signoff"))


def waivers(run: RunDir) -> list[Waiver]:
    """The run's waivers, oldest first."""
    return list(_read(run, "waiver"))


def next_id(run: RunDir, kind: str) -> str:
    """The id the next act of this kind gets: S1, S2 ... or W1, W2 ..."""
    return f"{kind[0].upper()}{len(list(_folder(run).glob(f'{kind}-*.json'))) + 1}"


def record(run: RunDir, act: Signoff | Waiver) -> Path:
    """Store an act under the run's acts/ folder, seal it in the ledger, and re-seal the manifest after it."""
    run.check_before_writing()
    kind = "signoff" if isinstance(act, Signoff) else "waiver"
    folder = _folder(run)
    folder.mkdir(exist_ok=True)
    number = int((act.signoff_id if isinstance(act, Signoff) else act.waiver_id)[1:])
    path = folder / f"{kind}-{number:04d}.json"
    if path.exists():
        raise ArchiveError(f"{path}: already recorded; acts are never overwritten")
    text = json.dumps(asdict(act), indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    ledger.record(run.path, path, tmp)
    tmp.replace(path)
    run.write_manifest(run.manifest())
    return path
