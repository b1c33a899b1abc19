"""A run's manifest as a typed, frozen record: what was run, with what, when, and its status; read from and written
to manifest.json, with an ordered list of upgrade steps so archives written by older versions still open.

Format versions:
    1  the first archive format: the manifest and run.parquet were not recorded in the run's ledger
    2  every file of a run is recorded in the ledger, the manifest last (its `seal` is the head before it)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from auditor.archive.tables import FORMAT_VERSION
from auditor.errors import ArchiveError
from auditor.records import Target
from auditor.suite.targets import from_public


def _upgrade_1(data: dict[str, Any]) -> dict[str, Any]:
    """1 -> 2: no field changed; the two files format 1 left out of the ledger are named, so verification
    accepts them until the manifest is next written (and they are recorded)."""
    return {**data, "format_version": 2, "unsealed": ["manifest.json", "run.parquet"]}


UPGRADES: list[tuple[int, Callable[[dict[str, Any]], dict[str, Any]]]] = [(1, _upgrade_1)]
SHARDED = "sharded"  # the status of a run whose shards are written by separate processes until `auditor finalize`


@dataclass(frozen=True)
class SuiteRef:
    """The suite a run was started with."""

    id: str
    version: str
    title: str
    path: str
    sha256: str


@dataclass(frozen=True)
class Graded:
    """The suite file and judge a run was last graded with."""

    file: str
    source: str
    sha256: str
    at: str
    judge: Target | None = None


@dataclass(frozen=True)
class Manifest:
    """Everything a run records about itself besides its tables."""

    run_id: str
    status: str  # running | complete | interrupted | capped | sharded
    suite: SuiteRef
    targets: tuple[Target, ...]
    planned_items: int
    started_at: str
    seed: int = 0
    label: str | None = None
    judge: Target | None = None
    attacker: Target | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    finished_at: str | None = None
    argv: tuple[str, ...] = ()
    seal: str = ""
    identity_changes: tuple[dict[str, Any], ...] = ()
    max_cost_usd: float | None = None
    spent_usd: float | None = None
    graded_with: Graded | None = None
    reviews: tuple[dict[str, Any], ...] = ()
    unsealed: tuple[str, ...] = ()  # files an older format did not record in the ledger
    shards: int | None = None  # how many shards a sharded run is split into (auditor run --shard K/N)
    format_version: int = FORMAT_VERSION

    def but(self, **changes: Any) -> Manifest:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to manifest.json (targets and helpers without secrets, as Target.public())."""
        data = asdict(self)
        data["targets"] = [t.public() for t in self.targets]
        data["judge"] = self.judge.public() if self.judge else None
        data["attacker"] = self.attacker.public() if self.attacker else None
        data["options"] = {"seed": data.pop("seed")}
        if self.graded_with is not None:
            graded = self.graded_with
            data["graded_with"] = {**asdict(graded), "judge": graded.judge.public() if graded.judge else None}
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest.json") -> Manifest:
        """Read a manifest of any readable format version, applying the upgrade steps in order."""
        version = data.get("format_version") if isinstance(data, dict) else None
        if version not in (*[v for v, _ in UPGRADES], FORMAT_VERSION):
            raise ArchiveError(
                f"{where}: archive format {version} is not supported by this auditor (format {FORMAT_VERSION}); "
                "use the auditor version that wrote it"
            )
        for since, step in UPGRADES:
            if data["format_version"] == since:
                data = step(data)
        try:
            graded = data.get("graded_with") or None
            return cls(
                run_id=data["run_id"],
                status=data["status"],
                suite=SuiteRef(**{k: data["suite"][k] for k in ("id", "version", "title", "path", "sha256")}),
                targets=tuple(from_public(t) for t in data["targets"]),
                planned_items=int(data["planned_items"]),
                started_at=data["started_at"],
                seed=int(data.get("options", {}).get("seed", 0)),
                label=data.get("label"),
                judge=from_public(data["judge"]) if data.get("judge") else None,
                attacker=from_public(data["attacker"]) if data.get("attacker") else None,
                tool_versions=dict(data.get("tool_versions", {})),
                finished_at=data.get("finished_at"),
                argv=tuple(data.get("argv", ())),
                seal=str(data.get("seal", "")),
                identity_changes=tuple(data.get("identity_changes", ())),
                max_cost_usd=data.get("max_cost_usd"),
                spent_usd=data.get("spent_usd"),
                graded_with=(
                    Graded(
                        file=graded["file"],
                        source=graded["source"],
                        sha256=graded["sha256"],
                        at=graded.get("at", ""),
                        judge=from_public(graded["judge"]) if graded.get("judge") else None,
                    )
                    if graded and "file" in graded
                    else None
                ),
                reviews=tuple(data.get("reviews", ())),
                unsealed=tuple(data.get("unsealed", ())),
                shards=int(data["shards"]) if data.get("shards") else None,
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{where}: damaged run manifest ({type(exc).__name__}: {exc})") from None
