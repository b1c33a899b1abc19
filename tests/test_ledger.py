"""The tamper-evident archive: every stored file is in a hash-chained ledger that `auditor verify` checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import write_targets

from auditor.cli import cli


def one_run(tmp_path: Path, mini_suite: Path, server: Any) -> tuple[Path, Path]:
    targets = write_targets(tmp_path / "t.json", {"name": "t", "base_url": server().url, "model": "m"})
    archive = tmp_path / "audits"
    result = CliRunner().invoke(
        cli, ["run", str(mini_suite), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    run = archive / "runs" / result.stdout.strip().splitlines()[-1]
    return archive, run


def verify(archive: Path) -> Any:
    return CliRunner().invoke(cli, ["verify", "--archive", str(archive)])


def test_a_clean_run_verifies_and_the_report_shows_its_seal(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    result = verify(archive)
    assert result.exit_code == 0
    last = (run / "ledger.jsonl").read_text().splitlines()[-1]
    head = hashlib.sha256(last.encode()).hexdigest()  # the seal covers everything, the manifest last
    assert json.loads(last)["file"] == "manifest.json"
    # suite copy, responses, grades, run.parquet and the manifest
    assert result.stdout.strip() == f"{run.name}: ok, 5 files, seal {head[:16]}"
    out = CliRunner().invoke(
        cli, ["report", "latest", "--format", "html", "--archive", str(archive), "--out", str(tmp_path / "r")]
    )
    assert head in Path(out.stdout.strip()).read_text()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("targets", 0, "model"), "gpt-4o"),
        (("targets", 0, "base_url"), "https://api.example.com/v1"),
        (("status",), "complete-ish"),
        (("planned_items",), 3),
    ],
)
def test_a_forged_manifest_is_detected_and_not_reported(
    tmp_path: Path, mini_suite: Path, server: Any, field: tuple[Any, ...], value: Any
) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    manifest = json.loads((run / "manifest.json").read_text())
    holder = manifest
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = value
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    result = verify(archive)
    assert result.exit_code == 1
    assert result.stdout.strip() == f"{run.name}: TAMPERED: manifest.json changed after it was recorded"
    out = CliRunner().invoke(
        cli, ["report", "latest", "--format", "html", "--archive", str(archive), "--out", str(tmp_path / "r")]
    )
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        f"error: run {run.name} fails verification: manifest.json changed after it was recorded; no report is "
        f"rendered from altered evidence (auditor verify {run.name})"
    )
    assert not (tmp_path / "r").exists()


def test_a_changed_byte_of_run_parquet_is_detected(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    data = bytearray((run / "run.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (run / "run.parquet").write_bytes(bytes(data))
    assert verify(archive).stdout.strip() == f"{run.name}: TAMPERED: run.parquet changed after it was recorded"


def test_a_file_added_anywhere_in_the_run_is_detected(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    (run / "notes").mkdir()
    (run / "notes" / "override.json").write_text("{}")
    assert verify(archive).stdout.strip() == f"{run.name}: TAMPERED: notes/override.json was never recorded"


def test_a_changed_response_is_detected(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    (part,) = sorted((run / "responses").glob("part-*.parquet"))
    table = pq.read_table(part).to_pylist()
    table[0]["content"] = "I'm sorry, but I can't help with that."  # a failing reply quietly made to pass
    pq.write_table(pq.read_table(part).from_pylist(table, schema=pq.read_schema(part)), part)
    result = verify(archive)
    assert result.exit_code == 1
    assert f"{run.name}: TAMPERED: responses/{part.name} changed after it was recorded" in result.stdout
    assert result.stderr.strip() == "error: 1 of 1 runs failed verification"


def test_missing_added_and_edited_files_are_detected(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    (run / "grades.parquet").unlink()
    (run / "responses" / "part-000099.parquet").write_bytes((run / "suite.json").read_bytes())
    lines = (run / "ledger.jsonl").read_text().splitlines()
    entry = json.loads(lines[0])
    entry["sha256"] = "0" * 64
    lines[0] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    (run / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    out = verify(archive).stdout
    assert "grades.parquet is recorded but missing" in out
    assert "responses/part-000099.parquet was never recorded" in out
    assert "ledger.jsonl line 2 does not follow line 1: the ledger was edited" in out
    assert "suite.json changed after it was recorded" in out  # the forged hash no longer matches the file


def test_a_rewritten_ledger_does_not_match_the_seal(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    (part,) = sorted((run / "responses").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes() + b"x")
    entries = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    prev, lines = "0" * 64, []
    for entry in entries:  # a forger who re-hashes the changed file and rebuilds the whole chain
        if entry["file"] == f"responses/{part.name}":
            entry["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
        entry["prev"] = prev
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        prev = hashlib.sha256(line.encode()).hexdigest()
        lines.append(line)
    (run / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    out = verify(archive).stdout
    assert (
        out.strip()
        == f"{run.name}: TAMPERED: the seal in the manifest matches no point of the ledger: the ledger was rewritten"
    )


def test_regrading_is_recorded_not_flagged(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    archive, run = one_run(tmp_path, mini_suite, server)
    assert CliRunner().invoke(cli, ["grade", "latest", "--archive", str(archive)]).exit_code == 0
    assert verify(archive).exit_code == 0
    entries = [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]
    assert sum(e["file"] == "grades.parquet" for e in entries) == 2  # recorded twice, the latest wins


def test_manifest_round_trip_and_upgrade_from_format_1(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    from auditor.archive.manifest import Manifest
    from auditor.errors import ArchiveError

    archive, run = one_run(tmp_path, mini_suite, server)
    data = json.loads((run / "manifest.json").read_text())
    manifest = Manifest.from_json(data)
    assert json.loads(json.dumps(manifest.to_json())) == data  # what is read is what was written
    assert manifest.targets[0].name == "t" and manifest.graded_with is not None
    old = {k: v for k, v in data.items() if k not in ("unsealed",)} | {"format_version": 1}
    upgraded = Manifest.from_json(old)
    assert upgraded.format_version == 2 and upgraded.unsealed == ("manifest.json", "run.parquet")
    with pytest.raises(ArchiveError, match="archive format 9 is not supported by this auditor"):
        Manifest.from_json({**data, "format_version": 9})


def test_a_run_that_was_never_graded_is_not_reported(tmp_path: Path, mini_suite: Path) -> None:
    archive = tmp_path / "audits"
    closed = "name=t,base_url=http://127.0.0.1:9/v1,model=m"
    ran = CliRunner().invoke(cli, ["run", str(mini_suite), "--target", closed, "--archive", str(archive), "--quiet"])
    assert ran.exit_code == 1  # the endpoint cannot be reached: the run stops before grading
    run_id = next((archive / "runs").iterdir()).name
    out = CliRunner().invoke(cli, ["report", "latest", "--archive", str(archive), "--out", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert out.stderr.splitlines() == [f"error: run {run_id} has not been graded: auditor grade {run_id}"]
    assert not (tmp_path / "r").exists()
