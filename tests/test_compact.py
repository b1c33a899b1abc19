"""Compaction: a finished run's small Parquet parts become few files, sealed in the ledger; verify, resume and
queries are unaffected, and a compaction a crash interrupted is finished or undone, never half-read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from conftest import MINI_SUITE, refuse_or_answer, write_targets

from auditor.archive import compact, ledger
from auditor.archive.store import Archive, connect
from auditor.cli import cli
from auditor.run.serve import ChatServer, Scripted


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def slow(request: dict[str, Any]) -> Scripted:
    reply = refuse_or_answer(request)
    return Scripted(reply.body, delay_s=0.35)


def test_a_slow_run_ends_with_one_sealed_file(tmp_path: Path) -> None:
    suite = json.loads(json.dumps(MINI_SUITE))
    suite["challenges"][1]["probes"][0]["samples"] = 12  # 18 replies at 0.35 s: parts flushed every 2 s
    (tmp_path / "s.json").write_text(json.dumps(suite))
    with ChatServer(slow) as srv:
        targets = write_targets(tmp_path / "t.json", {"name": "m", "base_url": srv.url, "model": "m",
                                                      "limits": {"concurrency": 1}})  # fmt: skip
        result = invoke("run", str(tmp_path / "s.json"), "--targets", str(targets), "--archive", str(tmp_path / "a"),
                        "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "a" / "runs").iterdir()
    assert [p.name for p in (run / "responses").iterdir()] == ["part-c0000.parquet"]
    entries = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    removed = [e["file"] for e in entries if e["sha256"] == ledger.REMOVED]
    assert len([r for r in removed if r.startswith("responses/part-0")]) >= 2  # there were several parts
    assert pq.read_table(run / "responses" / "part-c0000.parquet").num_rows == 18
    assert invoke("verify", "--archive", str(tmp_path / "a")).exit_code == 0
    count = invoke("query", "SELECT count(*) AS n FROM responses", "--format", "csv", "--archive", str(tmp_path / "a"))
    assert count.stdout.splitlines()[1] == "18"
    again = invoke("run", "--resume", run.name, "--archive", str(tmp_path / "a"), "--quiet")
    assert again.exit_code == 0  # nothing missing, nothing sent twice


def split_into_parts(run: Path, pieces: int) -> list[dict[str, Any]]:
    """Rewrite the run's responses as `pieces` sealed parts, as a slow run leaves them; return the rows."""
    folder = run / "responses"
    (only,) = folder.glob("part-*.parquet")
    table = pq.read_table(only)
    rows: list[dict[str, Any]] = table.to_pylist()
    ledger.remove(run, only)
    only.unlink()
    step = -(-len(rows) // pieces)
    for n in range(pieces):
        path = folder / f"part-{n:06d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[n * step : (n + 1) * step], schema=table.schema), path)
        ledger.record(run, path)
    return rows


def graded_run(tmp_path: Path, mini_suite: Path, url: str) -> Path:
    targets = write_targets(tmp_path / "t.json", {"name": "m", "base_url": url, "model": "m"})
    result = invoke("run", str(mini_suite), "--targets", str(targets), "--archive", str(tmp_path / "a"), "--quiet")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "a" / "runs").iterdir()
    return run


def test_compaction_keeps_every_row_and_the_seal_accounts_for_it(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    run = graded_run(tmp_path, mini_suite, server().url)
    rows = split_into_parts(run, 4)
    store = Archive(run.parents[1]).run(run.name)
    store.write_manifest(store.manifest())
    assert store.verify().problems == ()
    assert compact.compact(run) == 4
    store.write_manifest(store.manifest())
    assert [p.name for p in (run / "responses").iterdir()] == ["part-c0000.parquet"]
    assert store.verify().problems == ()
    assert sorted(r["item_id"] for r in store.read_parts(["item_id"])) == sorted(r["item_id"] for r in rows)
    (run / "responses" / "part-c0000.parquet").write_bytes(b"PAR1 forged")
    assert "responses/part-c0000.parquet changed after it was recorded" in store.verify().problems


def pending_compaction(run: Path, parts: list[Path]) -> None:
    """The first compacted file of the run's responses, holding the rows of `parts`, written under its pending name
    and recorded in the ledger, as compaction leaves it before it moves anything."""
    pending = run / "responses" / "compact-0000.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in parts]), pending)
    ledger.record(run, pending)


def test_a_crash_after_writing_the_compacted_file_is_rolled_forward(
    tmp_path: Path, mini_suite: Path, server: Any
) -> None:
    run = graded_run(tmp_path, mini_suite, server().url)
    rows = split_into_parts(run, 3)
    folder = run / "responses"
    pending_compaction(
        run, sorted(folder.glob("part-*.parquet"))
    )  # the crash came here: old parts and the sealed compacted file side by side
    con = connect(run.parents[1])  # reading the archive finishes the compaction first: no row is read twice
    assert con.execute("SELECT count(*) FROM responses").fetchone() == (len(rows),)
    assert [p.name for p in folder.iterdir()] == ["part-c0000.parquet"]
    store = Archive(run.parents[1]).run(run.name)
    store.write_manifest(store.manifest())
    assert store.verify().problems == ()


def test_a_crash_while_removing_the_old_parts_is_rolled_forward(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    run = graded_run(tmp_path, mini_suite, server().url)
    rows = split_into_parts(run, 3)
    folder = run / "responses"
    parts = sorted(folder.glob("part-*.parquet"))
    pending_compaction(run, parts)
    ledger.remove(run, parts[0])
    parts[0].unlink()  # the crash came after the first old part was removed: its rows live on only in the new file
    assert compact.finish(run)
    assert [p.name for p in folder.iterdir()] == ["part-c0000.parquet"]
    store = Archive(run.parents[1]).run(run.name)
    assert sorted(r["item_id"] for r in store.read_parts(["item_id"])) == sorted(r["item_id"] for r in rows)
    store.write_manifest(store.manifest())
    assert store.verify().problems == ()


def test_a_crash_while_writing_the_compacted_files_is_undone(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    run = graded_run(tmp_path, mini_suite, server().url)
    rows = split_into_parts(run, 3)
    folder = run / "responses"
    pending_compaction(run, sorted(folder.glob("part-*.parquet"))[:1])  # some rows: the crash came before the next file
    assert compact.finish(run)
    assert sorted(p.name for p in folder.iterdir()) == ["part-000000.parquet", "part-000001.parquet",
                                                        "part-000002.parquet"]  # fmt: skip
    store = Archive(run.parents[1]).run(run.name)
    assert len(store.read_parts(["item_id"])) == len(rows)
    store.write_manifest(store.manifest())
    assert store.verify().problems == ()


def test_a_file_recorded_as_removed_but_present_is_found(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    run = graded_run(tmp_path, mini_suite, server().url)
    (part,) = (run / "responses").glob("part-*.parquet")
    ledger.remove(run, part)
    problems = ledger.verify(run, None, False).problems
    assert f"responses/{part.name} is recorded as removed but is present" in problems
