"""Compacting a run's many small Parquet parts into few files once the run is done with them.

Replies are flushed every 200 rows or 2 seconds, so a slow run leaves a part per reply or two; thousands of small
files make DuckDB slow and object storage costly. Compaction rewrites a folder's parts (responses, judgements,
adaptive) into files of up to ROWS_PER_FILE rows, each write sealed in the ledger like any other, and each removed
part recorded as removed, so `auditor verify` still accounts for every file.

Crash safety: the compacted files are first written under a name the archive's views do not read
(compact-NNNN.parquet); only then are the old parts removed and the new files renamed into place (part-cNNNN).
A crash at any point leaves the old parts readable or the compacted files complete and sealed; `finish` rolls
an interrupted compaction forward, and runs before anything reads or adds to the run.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from auditor.archive import ledger

ROWS_PER_FILE = 250_000
FOLDERS = ("responses", "judgements", "adaptive")
PENDING = "compact-*.parquet"


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("part-*.parquet") if not p.name.startswith("part-c"))


def compact(run_path: Path, min_parts: int = 2) -> int:
    """Compact every folder of the run holding at least `min_parts` uncompacted parts; return the parts removed.
    Holds the run's ledger lock throughout, so a reader finishing compactions waits rather than joins in."""
    with ledger.locked(run_path):
        return _compact(run_path, min_parts)


def _compact(run_path: Path, min_parts: int) -> int:
    finish(run_path)
    removed = 0
    for name in FOLDERS:
        folder = run_path / name
        parts = _parts(folder)
        if len(parts) < min_parts:
            continue
        table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
        done = len(list(folder.glob("part-c*.parquet")))
        for n, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_FILE)):
            path = folder / f"compact-{done + n:04d}.parquet"
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(table.slice(start, ROWS_PER_FILE), tmp, compression="zstd")
            ledger.record(run_path, path, tmp)
            tmp.replace(path)
        removed += len(parts)
        finish(run_path)
    return removed


def finish(run_path: Path) -> bool:
    """Finish an interrupted compaction: when the sealed compact-NNNN files hold every row of the old parts, the
    parts are removed (recorded as removed) and the files renamed into place; otherwise (a crash while they were
    written) the compacted files are dropped and the parts kept. Returns whether there was one."""
    if not any((run_path / name).glob(PENDING) for name in FOLDERS):
        return False
    with ledger.locked(run_path):  # the compaction may be running in another process: wait for it, then look again
        return _finish(run_path)


def _finish(run_path: Path) -> bool:
    pending = sorted(p for name in FOLDERS for p in (run_path / name).glob(PENDING))
    if not pending:
        return False
    for folder in sorted({p.parent for p in pending}):
        files = sorted(folder.glob(PENDING))
        parts = _parts(folder)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        # the old parts are removed only once every compacted file is written, so files holding at least the rows
        # of the parts left mean a crash came during the removals (roll forward), fewer a crash while writing (back)
        complete = rows >= sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        for path in parts if complete else files:
            ledger.remove(run_path, path)
            path.unlink()
        for path in files if complete else []:
            target = folder / path.name.replace("compact-", "part-c")
            ledger.record(run_path, target, path)
            ledger.remove(run_path, path)
            path.replace(target)
    return True
