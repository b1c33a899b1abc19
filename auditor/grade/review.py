"""Human review of a run: export a stratified sample of graded replies for people to label, and import their
labels into the archive, where they override the grader and calibrate it on the run's own replies."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from auditor.archive.store import RunDir, connect, read_rows
from auditor.clock import now
from auditor.errors import InputError, UsageError

COLUMNS = (
    "item_id", "target", "challenge_id", "probe_id", "attack", "prompt", "reply", "grader", "grader_outcome",
    "grader_evidence", "human_label", "note",
)  # fmt: skip


def sample(archive_root: Path, run: RunDir, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to `size` graded replies (pass or fail), the same number from each grader outcome where there are enough,
    drawn at random (seeded) and ordered by item id, with the prompt, the reply and the grader's call."""
    import numpy as np

    rows = read_rows(
        connect(archive_root),
        "SELECT g.item_id, g.target, g.challenge_id, g.probe_id, g.attack, r.messages, r.content AS reply, "
        "g.grader, g.outcome AS grader_outcome, g.evidence AS grader_evidence FROM grades g "
        "JOIN responses r USING (run_id, item_id) WHERE g.run_id = ? AND g.outcome IN ('pass', 'fail') "
        "ORDER BY g.item_id",
        [run.run_id],
    )
    if not rows:
        raise UsageError(f"run {run.run_id} has no graded replies to review (auditor grade {run.run_id})")
    rng = np.random.default_rng([seed, int(hashlib.sha256(run.run_id.encode()).hexdigest()[:8], 16)])
    strata = {o: [r for r in rows if r["grader_outcome"] == o] for o in ("fail", "pass")}
    share = {o: min(len(v), size // 2) for o, v in strata.items()}
    spare = size - sum(share.values())
    for o, v in strata.items():  # a small stratum leaves its share to the other
        extra = min(spare, len(v) - share[o])
        share[o] += extra
        spare -= extra
    chosen = []
    for o, members in strata.items():
        picks: list[int] = list(rng.choice(len(members), size=share[o], replace=False)) if share[o] else []
        chosen += [members[int(i)] for i in picks]
    out = []
    for r in sorted(chosen, key=lambda r: r["item_id"]):
        prompt = next((m["content"] for m in reversed(r.pop("messages") or []) if m["role"] == "user"), "")
        out.append({**r, "prompt": prompt, "human_label": "", "note": ""})
    return out


def write_sheet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the sample as CSV (for spreadsheets) or JSONL, by the file's extension."""
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps({c: r.get(c, "") for c in COLUMNS}, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
        text = buf.getvalue()
    path.write_text(text, encoding="utf-8")


def read_labels(path: Path, known: set[str]) -> tuple[list[tuple[str, str, str]], str]:
    """(item id, label, note) for every row a reviewer labelled, and the file's SHA-256; rows left unlabelled are
    skipped. Problems are InputErrors naming file, line and field."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError:
                    raise InputError(f"{path}:{n}: not a JSON object on one line") from None
                if not isinstance(value, dict):
                    raise InputError(f"{path}:{n}: not a JSON object on one line")
                rows.append((n, value))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in ("item_id", "human_label") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column {', '.join(missing)}")
        rows = [(n, row) for n, row in enumerate(reader, start=2)]
    labels: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    for n, row in rows:
        label = str(row.get("human_label") or "").strip().lower()
        if not label:
            continue
        item = str(row.get("item_id") or "").strip()
        if label not in ("pass", "fail"):
            raise InputError(f"{path}:{n}: field 'human_label' must be pass or fail, not '{label[:40]}'")
        if item not in known:
            raise InputError(f"{path}:{n}: field 'item_id': '{item[:40]}' is not a graded reply of this run")
        if item in seen:
            raise InputError(f"{path}:{n}: field 'item_id': '{item}' is labelled twice (first on line {seen[item]})")
        seen[item] = n
        labels.append((item, label, str(row.get("note") or "")[:2000]))
    if not labels:
        raise InputError(f"{path}: no row has a human_label (pass or fail)")
    return labels, hashlib.sha256(raw).hexdigest()


def import_labels(archive_root: Path, run: RunDir, path: Path, reviewer: str) -> tuple[int, int]:
    """Store a reviewer's labels in the run (sealed in its ledger); returns (labels stored, disagreements)."""
    if not reviewer.strip():
        raise UsageError("--reviewer needs a name")
    graded = {
        r["item_id"]: r["outcome"]
        for r in read_rows(
            connect(archive_root),
            "SELECT item_id, outcome FROM grades WHERE run_id = ? AND outcome IN ('pass', 'fail')",
            [run.run_id],
        )
    }
    labels, sha = read_labels(path, set(graded))
    run.check_before_writing()
    at = now()
    rows = [
        {"run_id": run.run_id, "item_id": i, "label": label, "note": note, "reviewer": reviewer, "reviewed_at": at,
         "source_sha256": sha}
        for i, label, note in labels
    ]  # fmt: skip
    stored = run.write_review(rows)
    record = {"file": stored.relative_to(run.path).as_posix(), "source": str(path), "sha256": sha,
              "reviewer": reviewer, "labels": len(rows), "at": at}  # fmt: skip
    manifest = run.manifest()
    run.write_manifest(manifest.but(reviews=(*manifest.reviews, record)))
    return len(rows), sum(graded[i] != label for i, label, _ in labels)
