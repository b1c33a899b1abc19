"""Finds earlier replies to the same request anywhere in the archive, and what a run has spent so far."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from auditor.archive.store import ResponseWriter, RunDir, connect, read_rows
from auditor.records import Completion, Target, WorkItem


def reuse(run: RunDir, todo: list[WorkItem], writer: ResponseWriter, root: Path | None = None) -> set[str]:
    """Store replies the archive (at `root`, by default the one holding the run) already holds for identical
    requests (never for fresh probes); return the ids of the items answered so."""
    reusable = [i for i in todo if not i.fresh]
    hits = lookup(root or run.path.parents[1], reusable)
    reused = [item for item in reusable if item.request_hash in hits]
    for item in reused:
        writer.add(item, hits[item.request_hash], cached=True)
    writer.flush()
    return {item.item_id for item in reused}


def lookup(archive_root: Path, items: list[WorkItem], view: str = "responses") -> dict[str, Completion]:
    """Map request hashes of `items` to the earliest successful stored reply to the same request.

    `view` is `responses` for audited models or `judgements` for judge calls.
    """
    if not items:
        return {}
    con = connect(archive_root)
    con.register("wanted", pa.table({"request_hash": sorted({i.request_hash for i in items})}))
    rows = read_rows(
        con,
        "SELECT DISTINCT ON (request_hash) request_hash, content, finish_reason, prompt_tokens, completion_tokens, "
        f"latency_s, returned_model, system_fingerprint, started_at FROM {view} "
        "WHERE error_class IS NULL AND request_hash IN (SELECT request_hash FROM wanted) "
        "ORDER BY request_hash, started_at",
    )
    return {
        r["request_hash"]: Completion(
            content=r["content"],
            finish_reason=r["finish_reason"],
            prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"],
            latency_s=r["latency_s"],
            returned_model=r["returned_model"],
            system_fingerprint=r["system_fingerprint"],
            error_class=None,
            error_message=None,
            attempts=0,
            started_at=r["started_at"],
        )
        for r in rows
    }


def spent(archive_root: Path, run_id: str, targets: list[Target]) -> float:
    """What a run's requests (not its cache hits) cost at the targets' declared prices."""
    con = connect(archive_root)
    rows = read_rows(
        con,
        "SELECT target, sum(prompt_tokens) AS p, sum(completion_tokens) AS c FROM responses "
        "WHERE run_id = ? AND NOT cached GROUP BY target",
        [run_id],
    )
    prices = {t.name: t for t in targets}
    return sum(prices[r["target"]].price(r["p"] or 0, r["c"] or 0) for r in rows if r["target"] in prices)
