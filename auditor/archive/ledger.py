"""A run's tamper-evident ledger: every file the run writes is recorded with its SHA-256 in a hash chain.

Each line of RUN/ledger.jsonl names a file (relative to the run folder), its SHA-256, the time, and
the SHA-256 of the previous line, so changing, removing or adding a stored file, or editing the
ledger itself, is detected by `verify`.

Several processes may write into one run (worker processes, shards on other machines sharing the folder): every
append reads the head and writes its line under an exclusive lock on the ledger file (`locked`), so the chain
never forks.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from auditor.clock import now

LEDGER = "ledger.jsonl"
MANIFEST = "manifest.json"
GENESIS = "0" * 64


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lines(folder: Path) -> list[str]:
    path = folder / LEDGER
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def head(folder: Path) -> str:
    """The hash of the ledger's last line: a seal over everything the run has stored."""
    lines = _lines(folder)
    return hashlib.sha256(lines[-1].encode()).hexdigest() if lines else GENESIS


_held: dict[str, tuple[int, int]] = {}  # ledger path -> (locked descriptor, depth) in this process
_mutex = threading.RLock()


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the run's ledger exclusively (other processes and threads wait; the same thread may nest): what is
    appended, and what a verifier reads, stays consistent while several processes write into one run."""
    key = str(folder / LEDGER)
    with _mutex:
        fd, depth = _held.get(key, (-1, 0))
        if not depth:
            fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            if depth:
                _held[key] = (fd, depth)
            else:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _append(folder: Path, entry: dict[str, str]) -> str:
    """Append one entry after the current head, under the lock; return the new head."""
    with locked(folder):
        line = json.dumps({**entry, "at": now(), "prev": head(folder)}, sort_keys=True, separators=(",", ":"))
        with (folder / LEDGER).open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
    return hashlib.sha256(line.encode()).hexdigest()


def record(folder: Path, path: Path, content: Path | None = None) -> str:
    """Append `path` (inside `folder`) and its hash to the ledger; return the new head.

    `content` is the file to hash when it still lies under a temporary name: recording before the rename
    means a crash can leave a recorded file missing (re-recorded when the write is redone), never a stored
    file unrecorded.
    """
    return _append(folder, {"file": path.relative_to(folder).as_posix(), "sha256": file_hash(content or path)})


REMOVED = "removed"  # the digest of a file recorded as deliberately removed (compacted away)


def remove(folder: Path, path: Path) -> str:
    """Record that `path` (inside `folder`) is removed on purpose, before it is; return the new head."""
    return _append(folder, {"file": path.relative_to(folder).as_posix(), "sha256": REMOVED})


def recover(folder: Path, mine: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Finish writes a crash interrupted, so a killed run can resume: a file recorded in the ledger whose
    temporary copy (NAME.tmp) still holds the recorded bytes is moved into place; any other temporary file
    is removed (its rows are sent again) if `mine` says it is this process's to remove (another process writing
    into the run may be about to record it). Returns the names moved into place."""
    with locked(folder):  # writers record and rename under the lock: a recorded temporary file here is orphaned
        return _recover(folder, mine)


def _recover(folder: Path, mine: Callable[[str], bool]) -> list[str]:
    latest: dict[str, str] = {}
    for line in _lines(folder):
        try:
            entry = json.loads(line)
            latest[str(entry["file"])] = str(entry["sha256"])
        except (ValueError, KeyError, TypeError):
            return []  # a damaged ledger is for verify to report, not for recovery to touch
    moved = []
    for tmp in sorted(folder.rglob("*.tmp")):
        name = tmp.relative_to(folder).as_posix().removesuffix(".tmp")
        target = folder / name
        if (
            name in latest
            and file_hash(tmp) == latest[name]
            and (not target.is_file() or file_hash(target) != latest[name])
        ):
            os.replace(tmp, target)
            moved.append(name)
        elif not mine(name):
            continue
        else:
            tmp.unlink()
    return moved


@dataclass(frozen=True)
class LedgerCheck:
    """What verification found: the files checked, the ledger head, and every problem."""

    files: int
    head: str
    problems: tuple[str, ...]


def verify(folder: Path, sealed: str | None, finished: bool, unsealed: tuple[str, ...] = ()) -> LedgerCheck:
    """Check a run folder against its ledger.

    Checked: the chain (each line names the hash of the one before); every recorded file's hash (the latest
    entry per file wins); every file in the folder is recorded (but the ledger, temporary files and the
    `unsealed` names of older formats); and the `sealed` head the manifest carries, which must be a point of
    the chain. Once the run has finished, the manifest must be the ledger's last entry and carry the head
    just before it, so nothing was stored after the run was sealed without the manifest saying so.
    """
    problems = []
    latest: dict[str, str] = {}
    prev = GENESIS
    heads = {GENESIS}
    before_manifest: str | None = None
    last_file = ""
    for n, line in enumerate(_lines(folder), start=1):
        try:
            entry = json.loads(line)
            name, digest = str(entry["file"]), str(entry["sha256"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"{LEDGER} line {n} is not a ledger entry")
            break
        if not isinstance(entry, dict) or entry.get("prev") != prev:
            problems.append(f"{LEDGER} line {n} does not follow line {n - 1}: the ledger was edited")
        if name == MANIFEST:
            before_manifest = prev
        prev = hashlib.sha256(line.encode()).hexdigest()
        heads.add(prev)
        latest[name] = digest
        last_file = name
    for name, digest in sorted(latest.items()):
        path = folder / name
        if name.startswith("/") or ".." in name.split("/"):
            problems.append(f"{LEDGER} names a file outside the run folder: {name[:200]}")
        elif digest == REMOVED:
            if path.exists():
                problems.append(f"{name} is recorded as removed but is present")
        elif not path.is_file():
            problems.append(f"{name} is recorded but missing")
        elif file_hash(path) != digest:
            problems.append(f"{name} changed after it was recorded")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != LEDGER and not name.endswith(".tmp") and name not in latest and name not in unsealed:
            problems.append(f"{name} was never recorded")
    if sealed is not None and sealed not in heads:
        problems.append("the seal in the manifest matches no point of the ledger: the ledger was rewritten")
    elif finished and not unsealed and (last_file != MANIFEST or sealed != before_manifest):
        problems.append("files were recorded after the run was sealed")
    elif finished and unsealed and sealed is not None and sealed != prev:
        problems.append("files were recorded after the run was sealed")
    return LedgerCheck(sum(d != REMOVED for d in latest.values()), prev, tuple(problems))
