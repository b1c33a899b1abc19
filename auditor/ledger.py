"""A run's tamper-evident ledger: every file the run writes is recorded with its SHA-256 in a hash chain.

Each line of RUN/ledger.jsonl names a file (relative to the run folder), its SHA-256, the time, and
the SHA-256 of the previous line, so changing, removing or adding a stored file, or editing the
ledger itself, is detected by `verify`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

LEDGER = "ledger.jsonl"
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


def record(folder: Path, path: Path, content: Path | None = None) -> str:
    """Append `path` (inside `folder`) and its hash to the ledger; return the new head.

    `content` is the file to hash when it still lies under a temporary name: recording before the rename
    means a crash can leave a recorded file missing (re-recorded when the write is redone), never a stored
    file unrecorded.
    """
    entry = {
        "file": path.relative_to(folder).as_posix(),
        "sha256": file_hash(content or path),
        "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "prev": head(folder),
    }
    line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    with (folder / LEDGER).open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
    return hashlib.sha256(line.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What verification found: the files checked, the ledger head, and every problem."""

    files: int
    head: str
    problems: tuple[str, ...]


def verify(folder: Path, sealed: str | None, patterns: tuple[str, ...], finished: bool) -> Verdict:
    """Check the chain, every recorded file's hash (the latest entry per file wins), files present but never
    recorded (matching `patterns`), and the `sealed` head kept in the manifest: it must be a point of the
    chain, and its end once the run has finished (a run killed mid-write may have recorded a little more)."""
    problems = []
    latest: dict[str, str] = {}
    prev = GENESIS
    heads = {GENESIS}
    for n, line in enumerate(_lines(folder), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(f"{LEDGER} line {n} is not JSON")
            break
        if entry.get("prev") != prev:
            problems.append(f"{LEDGER} line {n} does not follow line {n - 1}: the ledger was edited")
        prev = hashlib.sha256(line.encode()).hexdigest()
        heads.add(prev)
        latest[entry["file"]] = entry["sha256"]
    for name, digest in sorted(latest.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is recorded but missing")
        elif file_hash(path) != digest:
            problems.append(f"{name} changed after it was recorded")
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.relative_to(folder).as_posix() not in latest:
                problems.append(f"{path.relative_to(folder).as_posix()} was never recorded")
    if sealed is not None and sealed not in heads:
        problems.append("the seal in the manifest matches no point of the ledger: the ledger was rewritten")
    elif sealed is not None and finished and sealed != prev:
        problems.append("files were recorded after the run was sealed")
    return Verdict(len(latest), prev, tuple(problems))
