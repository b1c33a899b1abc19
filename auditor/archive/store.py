"""The archive: one folder per run with a manifest and Parquet tables, read through DuckDB views.

Layout (format version 1):

    ARCHIVE/runs/RUN_ID/manifest.json         what was run, with what, when, and its status
    ARCHIVE/runs/RUN_ID/run.parquet           the manifest's headline as one row (the `runs` view)
    ARCHIVE/runs/RUN_ID/responses/part-N.parquet   responses, appended in small durable parts
    ARCHIVE/runs/RUN_ID/judgements/part-N.parquet  judge model calls, same columns as responses
    ARCHIVE/runs/RUN_ID/adaptive/part-N.parquet    attacker, target and scorer calls of adaptive attacks
    ARCHIVE/runs/RUN_ID/grades.parquet        grades, replaced whole on every re-grade
    ARCHIVE/shards/sKofN/RUN_ID/              shard K of N of a run sent in shards: a run folder of its own
                                              until `auditor finalize` builds runs/RUN_ID (auditor.shards)
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.archive import compact, ledger
from auditor.archive.manifest import SHARDED, Manifest
from auditor.archive.tables import (
    CALIBRATIONS,
    FORMAT_VERSION,
    GRADES,
    LABELLED_GRADES,
    RESPONSES,
    REVIEWS,
    RUNS,
    VIEWS,
)
from auditor.clock import new_id
from auditor.errors import ArchiveError, UnknownName, UsageError
from auditor.records import Completion, WorkItem


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_table(table: pa.Table, path: Path, sealed_in: Path | None = None) -> None:
    """Write a Parquet file atomically; when `sealed_in` (a run folder) is given, record it in that run's ledger
    between writing and renaming."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    if sealed_in is None:
        os.replace(tmp, path)
        return
    with ledger.locked(sealed_in):  # recorded and in place together, for processes writing into the same run
        ledger.record(sealed_in, path, tmp)
        os.replace(tmp, path)


@dataclass(frozen=True)
class RunDir:
    """One run's folder in the archive."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> Manifest:
        """The run's manifest, upgraded from older format versions as it is read."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"{self.manifest_path}: unreadable run manifest: {exc}") from None
        return Manifest.from_json(data, str(self.manifest_path))

    def check_before_writing(self) -> None:
        """Finish writes a crash interrupted, then refuse to add to a run whose stored files fail verification."""
        ledger.recover(self.path)
        compact.finish(self.path)
        self.require_intact(f"nothing is added to altered evidence (auditor verify {self.run_id})")

    def require_intact(self, consequence: str, problems: tuple[str, ...] | None = None) -> None:
        """Raise one ArchiveError naming the first problem `auditor verify` finds in the run (or in `problems`,
        found already) and `consequence`: what is refused because of it."""
        problems = self.verify().problems if problems is None else problems
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ArchiveError(f"run {self.run_id} fails verification: {problems[0]}{more}; {consequence}")

    def head(self) -> str:
        """The ledger's head: a hash over every file the run has stored, the manifest included."""
        return ledger.head(self.path)

    def seal(self, path: Path) -> None:
        """Record a file the run stored in its tamper-evident ledger."""
        ledger.record(self.path, path)

    def verify(self) -> ledger.LedgerCheck:
        """Check the run's stored files against its ledger and the seal in its manifest."""
        manifest = self.manifest()
        writing = manifest.status in ("running", SHARDED)
        return ledger.verify(self.path, manifest.seal or None, not writing, manifest.unsealed)

    def write_manifest(self, manifest: Manifest) -> Manifest:
        """Write the one-row Parquet mirror of the manifest, then the manifest carrying the ledger's head at that
        point (its seal); both are recorded in the ledger, the manifest last, so it seals everything before it.
        Returns the manifest as written (current format, with its seal)."""
        row = {
            "run_id": manifest.run_id,
            "status": manifest.status,
            "suite_id": manifest.suite.id,
            "suite_version": manifest.suite.version,
            "suite_sha256": manifest.suite.sha256,
            "targets": manifest.target_names(),
            "planned_items": manifest.planned_items,
            "started_at": manifest.started_at,
            "finished_at": manifest.finished_at,
            "label": manifest.label,
        }
        _write_table(pa.Table.from_pylist([row], schema=RUNS), self.path / "run.parquet", self.path)
        written = manifest.but(format_version=FORMAT_VERSION, unsealed=(), seal=ledger.head(self.path))
        text = json.dumps(written.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")
            ledger.record(self.path, self.manifest_path, tmp)

        _write_atomic(self.manifest_path, write)
        return written

    def response_parts(self, folder: str = "responses") -> list[Path]:
        return sorted((self.path / folder).glob("part-*.parquet"))

    def done_items(self, folder: str = "responses") -> set[str]:
        """The ids of items that already have a stored response (or judge answer)."""
        done: set[str] = set()
        for part in self.response_parts(folder):
            done.update(pq.read_table(part, columns=["item_id"]).column("item_id").to_pylist())
        return done

    def read_parts(self, columns: list[str], folder: str = "responses") -> list[dict[str, Any]]:
        """Rows of the run's stored parts in `folder` (responses, judgements, adaptive), given columns only."""
        parts = self.response_parts(folder)
        if not parts:
            return []
        try:
            return list(pq.ParquetDataset(parts).read(columns=columns).to_pylist())
        except (pa.ArrowInvalid, OSError) as exc:
            raise ArchiveError(
                f"{self.path / folder}: cannot read stored rows ({str(exc).splitlines()[0]}); "
                "was the run written by another auditor version?"
            ) from None

    def write_grades(self, rows: list[dict[str, Any]]) -> None:
        _write_table(pa.Table.from_pylist(rows, schema=GRADES), self.path / "grades.parquet", self.path)

    def write_review(self, rows: list[dict[str, Any]]) -> Path:
        """Store one imported human review as a new sealed part under reviews/."""
        folder = self.path / "reviews"
        folder.mkdir(exist_ok=True)
        path = folder / f"review-{len(list(folder.glob('review-*.parquet'))):04d}.parquet"
        _write_table(pa.Table.from_pylist(rows, schema=REVIEWS), path, self.path)
        return path


class Archive:
    """An archive folder holding runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def existing(cls, root: Path) -> Archive:
        """An archive that must already exist (for every command that reads one)."""
        if not root.is_dir():
            what = "it is a file, not a folder" if root.exists() else "the folder does not exist"
            raise UsageError(f"{root}: no archive here: {what} (give --archive, or run a suite first)")
        return cls(root)

    def new_run(self) -> RunDir:
        run = RunDir(self.root / "runs" / new_id())
        (run.path / "responses").mkdir(parents=True)
        return run

    def new_calibration(self) -> RunDir:
        """A folder for one calibration: its summary, graded items and judge calls, sealed in its own ledger."""
        folder = RunDir(self.root / "calibrations" / new_id())
        folder.path.mkdir(parents=True)
        return folder

    def runs(self) -> list[RunDir]:
        folder = self.root / "runs"
        if not folder.is_dir():
            return []
        found = (RunDir(p) for p in folder.iterdir() if (p / "manifest.json").is_file())
        return sorted(found, key=lambda r: r.run_id)

    def run(self, run_id: str) -> RunDir:
        """Find a run by id, unique prefix, or 'latest'."""
        runs = self.runs()
        sharded = self.root.glob(f"shards/*/{glob.escape(run_id)}/manifest.json")
        if run_id not in {r.run_id for r in runs} and any(sharded):
            raise UsageError(
                f"run {run_id} is sent in shards and not finalized yet: run each missing shard with auditor run "
                f"SUITE --targets FILE --shard K/N --run {run_id}, then auditor finalize {run_id}"
            )
        if not runs:
            raise UsageError(f"{self.root}: no runs in this archive (run `auditor run SUITE` first)")
        if run_id == "latest":
            return runs[-1]
        matches = [r for r in runs if r.run_id.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ArchiveError(f"run id prefix '{run_id}' is ambiguous: {', '.join(r.run_id for r in matches[:5])}")
        raise UnknownName("run", run_id, [r.run_id for r in runs])


def write_calibration(folder: RunDir, summary: dict[str, Any], items: list[dict[str, Any]], record: Any) -> None:
    """Store a calibration: its figures (one row of the `calibrations` view), its graded items, and a JSON record
    of the grader and the labelled set; each file sealed in the folder's ledger, the record last."""
    _write_table(pa.Table.from_pylist(items, schema=LABELLED_GRADES), folder.path / "items.parquet", folder.path)
    _write_table(pa.Table.from_pylist([summary], schema=CALIBRATIONS), folder.path / "summary.parquet", folder.path)
    text = json.dumps({**record, "seal": ledger.head(folder.path)}, indent=2, sort_keys=True, ensure_ascii=False)

    def write(tmp: Path) -> None:
        tmp.write_text(text + "\n", encoding="utf-8")
        ledger.record(folder.path, folder.path / "calibration.json", tmp)

    _write_atomic(folder.path / "calibration.json", write)


class ResponseWriter:
    """Appends response rows durably: a new Parquet part every `every_rows` rows or `every_s` seconds.

    Processes writing into one run at once each name their parts apart (`tag`: part-TAG-NNNNNN.parquet; a tag
    never starts with c, which marks compacted files)."""

    def __init__(
        self, run: RunDir, every_rows: int = 200, every_s: float = 2.0, folder: str = "responses", tag: str = ""
    ) -> None:
        self.run = run
        self.folder = run.path / folder
        self.folder.mkdir(exist_ok=True)
        self.every_rows = every_rows
        self.every_s = every_s
        self.rows: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.prefix = f"part-{tag}-" if tag else "part-"
        self.next_part = len(list(self.folder.glob(f"{self.prefix}*.parquet")))
        self.written = 0

    def add(self, item: WorkItem, completion: Completion, cached: bool) -> None:
        self.rows.append(response_row(self.run.run_id, item, completion, cached))
        if len(self.rows) >= self.every_rows or time.monotonic() - self.last_flush >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=RESPONSES)
        path = self.folder / f"{self.prefix}{self.next_part:06d}.parquet"
        while path.exists():
            self.next_part += 1
            path = self.folder / f"{self.prefix}{self.next_part:06d}.parquet"
        _write_table(table, path, self.run.path)
        self.next_part += 1
        self.written += len(self.rows)
        self.rows = []


def response_row(run_id: str, item: WorkItem, c: Completion, cached: bool) -> dict[str, Any]:
    """The stored row for one work item's completion."""
    params = dict(item.params)
    return {
        "run_id": run_id,
        "item_id": item.item_id,
        "request_hash": item.request_hash,
        "target": item.target,
        "challenge_id": item.challenge_id,
        "probe_id": item.probe_id,
        "attack": item.attack,
        "category": item.category,
        "variant": item.variant,
        "variables": json.dumps(dict(item.variables), sort_keys=True, ensure_ascii=False),
        "sample": item.sample,
        "messages": [{"role": m.role, "content": m.content} for m in (c.transcript or item.messages)],
        "params": {k: params.get(k) for k in ("temperature", "top_p", "max_tokens", "seed")},
        "content": c.content,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "latency_s": c.latency_s,
        "returned_model": c.returned_model,
        "system_fingerprint": c.system_fingerprint,
        "error_class": c.error_class,
        "error_message": c.error_message,
        "attempts": c.attempts,
        "cached": cached,
        "started_at": c.started_at,
    }


def connect(root: Path) -> Any:
    """An in-memory DuckDB connection with a view per table of the archive (VIEWS), empty where none is stored."""
    import duckdb

    for run_path in sorted({p.parents[1] for p in root.glob(f"runs/*/*/{compact.PENDING}")}):
        compact.finish(run_path)  # a compaction a crash interrupted: its rows would be read twice or not at all
    con = duckdb.connect(":memory:")
    for view, pattern, schema in VIEWS:
        if any(root.glob(pattern)):
            glob = str(root / pattern).replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
        else:
            con.register(f"_empty_{view}", schema.empty_table())
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM _empty_{view}")
    return con


def outcome_counts(alias: str = "") -> str:
    """The SQL select list that counts a grades table's outcomes: passed, failed, errored, unparseable."""
    column = f"{alias}.outcome" if alias else "outcome"
    return ", ".join(
        f"count(*) FILTER ({column} = '{outcome}') AS {name}"
        for outcome, name in (
            ("pass", "passed"),
            ("fail", "failed"),
            ("error", "errored"),
            ("unparseable", "unparseable"),
        )
    )


def read_rows(con: Any, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Run SQL and return rows as dicts; a failing query over the archive is an ArchiveError."""
    import duckdb

    for attempt in range(3):
        try:
            cur = con.execute(sql, list(params))
            break
        except duckdb.IOException as exc:  # another run compacted its parts between listing and reading them:
            if attempt < 2 and "Failed to open" in str(exc):  # the view's glob is listed afresh on the next try
                continue
            first = str(exc).splitlines()[0]
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
        raise ArchiveError(f"reading the archive failed: {first} (was it written by another auditor version?)")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]
