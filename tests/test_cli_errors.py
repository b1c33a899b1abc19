"""Bad input through the CLI: each ends with its exit code and one clear `error:` line, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MINI_SUITE, invoke, one_error, write_targets

from auditor.run.serve import ChatServer

CLOSED = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
FAST_FAIL = {"max_retries": 0, "timeout_s": 2}


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(MINI_SUITE, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


def closed_target(name: str = "closed") -> str:
    return f"name={name},base_url={CLOSED},model=m"


# --- auditor run -----------------------------------------------------------------------------


def test_run_missing_suite(tmp_path: Path, archive: Path) -> None:
    missing = tmp_path / "nope.json"
    line = one_error(invoke("run", str(missing), "--target", closed_target(), "--archive", str(archive), "--quiet"), 2)
    assert line == f"error: {missing}: no such file"
    assert not (archive / "runs").exists(), "nothing is created for a suite that cannot be read"


def test_run_malformed_suite(tmp_path: Path, archive: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "format": "auditor-suite/1",\n  "id": "mini",\n}\n', encoding="utf-8")
    result = invoke("run", str(broken), "--target", closed_target(), "--archive", str(archive), "--quiet")
    line = one_error(result, 2)
    assert line.startswith(f"error: {broken}:4: /: malformed JSON: ")  # the trailing comma is seen at the brace
    assert not (archive / "runs").exists()


def test_run_invalid_suite(suite_file: Path, archive: Path) -> None:
    data = json.loads(suite_file.read_text(encoding="utf-8"))
    data["challenges"][0]["probes"][1]["pass_if"]["type"] = "refusl"
    suite_file.write_text(json.dumps(data, indent=2), encoding="utf-8")
    result = invoke("run", str(suite_file), "--target", closed_target(), "--archive", str(archive), "--quiet")
    line = one_error(result, 2)
    assert "unknown criterion type 'refusl' (did you mean 'refusal'?)" in line
    assert "/challenges/0/probes/1/pass_if/type" in line


def test_run_api_key_variable_not_set(
    tmp_path: Path, suite_file: Path, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDITOR_TEST_MISSING_KEY", raising=False)
    targets = write_targets(
        tmp_path / "targets.json",
        {
            "name": "keyed",
            "base_url": CLOSED,
            "model": "m",
            "api_key_env": "AUDITOR_TEST_MISSING_KEY",
            "limits": FAST_FAIL,
        },
    )
    result = invoke("run", str(suite_file), "--targets", str(targets), "--archive", str(archive), "--quiet")
    line = one_error(result, 1)
    assert "AUDITOR_TEST_MISSING_KEY" in line
    assert "'keyed'" in line


def test_run_target_option_unknown_key(suite_file: Path, archive: Path) -> None:
    result = invoke(
        "run",
        str(suite_file),
        "--target",
        "nmae=x,base_url=http://127.0.0.1:9/v1,model=m",
        "--archive",
        str(archive),
        "--quiet",
    )
    line = one_error(result, 2)
    assert line.startswith("error: unknown --target key 'nmae' (did you mean 'name'?)")


def test_run_target_option_invalid_url(suite_file: Path, archive: Path) -> None:
    result = invoke(
        "run",
        str(suite_file),
        "--target",
        "name=x,base_url=ftp://host/v1,model=m",
        "--archive",
        str(archive),
        "--quiet",
    )
    line = one_error(result, 2)
    assert line == (
        "error: --target: /targets/0/base_url: base_url must be an http(s) URL such as https://api.example.com/v1, "
        "or embedded:smollm2 for the bundled model"
    )


def test_run_target_name_not_in_targets_file(tmp_path: Path, suite_file: Path, archive: Path) -> None:
    targets = write_targets(
        tmp_path / "targets.json",
        {"name": "alpha", "base_url": CLOSED, "model": "m"},
        {"name": "beta", "base_url": CLOSED, "model": "m"},
    )
    result = invoke(
        "run", str(suite_file), "--targets", str(targets), "--target", "alpah", "--archive", str(archive), "--quiet"
    )
    line = one_error(result, 2)
    assert line.startswith("error: unknown target 'alpah' (did you mean 'alpha'?)")
    assert not (archive / "runs").exists()


def test_run_without_targets(suite_file: Path, archive: Path) -> None:
    line = one_error(invoke("run", str(suite_file), "--archive", str(archive), "--quiet"), 2)
    assert "no targets" in line


def test_run_unreachable_endpoint(tmp_path: Path, suite_file: Path, archive: Path) -> None:
    targets = write_targets(
        tmp_path / "targets.json", {"name": "closed", "base_url": CLOSED, "model": "m", "limits": FAST_FAIL}
    )
    result = invoke("run", str(suite_file), "--targets", str(targets), "--archive", str(archive), "--quiet")
    line = one_error(result, 1)
    assert "target 'closed'" in line
    assert "completed results are kept" in line
    runs = list((archive / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "manifest.json").is_file(), "the run is kept for --resume"


def test_run_unknown_embedded_model(tmp_path: Path, suite_file: Path, archive: Path) -> None:
    targets = write_targets(tmp_path / "targets.json", {"name": "local", "base_url": "embedded:nosuch", "model": "m"})
    result = invoke("run", str(suite_file), "--targets", str(targets), "--archive", str(archive), "--quiet")
    line = one_error(result, 2)
    assert line == (
        f"error: {tmp_path / 'targets.json'}:5: /targets/0/base_url: base_url must be an http(s) URL such as "
        "https://api.example.com/v1, or embedded:smollm2 for the bundled model"
    )


# --- auditor report / query ------------------------------------------------------------------


@pytest.fixture
def one_run(suite_file: Path, archive: Path, server: Callable[..., ChatServer]) -> str:
    """An archive holding one complete run of the mini suite against the scripted server; its run id."""
    s = server()
    result = invoke(
        "run",
        str(suite_file),
        "--target",
        f"name=scripted,base_url={s.url},model=scripted-1",
        "--archive",
        str(archive),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    (run,) = (archive / "runs").iterdir()
    return run.name


@pytest.mark.parametrize("make_folder", [False, True], ids=["no-folder", "empty-folder"])
def test_report_unknown_run_in_empty_archive(archive: Path, make_folder: bool) -> None:
    if make_folder:
        archive.mkdir()
    line = one_error(invoke("report", "nosuchrun", "--archive", str(archive), "--out", str(archive / "r")), 2)
    if make_folder:
        assert line == f"error: {archive}: no runs in this archive (run `auditor run SUITE` first)"
    else:
        assert line == (
            f"error: {archive}: no archive here: the folder does not exist (give --archive, or run a suite first)"
        )


def test_report_unknown_run(archive: Path, one_run: str) -> None:
    result = invoke("report", "nosuchrun", "--archive", str(archive), "--out", str(archive.parent / "reports"))
    line = one_error(result, 2)
    assert line.startswith("error: unknown run 'nosuchrun'")
    assert one_run in line  # the known runs are listed
    assert not (archive.parent / "reports").exists()


def test_resume_with_damaged_suite_copy(archive: Path, one_run: str) -> None:
    (archive / "runs" / one_run / "suite.json").write_text("{ broken", encoding="utf-8")
    result = invoke("run", "--resume", one_run, "--archive", str(archive), "--quiet")
    line = one_error(result, 1)
    assert line == (
        f"error: run {one_run} fails verification: suite.json changed after it was recorded; nothing is added to "
        f"altered evidence (auditor verify {one_run}); run {one_run} kept, resume with: auditor run --resume {one_run}"
    )


@pytest.mark.parametrize("fmt", ["docx", "html,docx", ","])
def test_report_unknown_format(archive: Path, fmt: str) -> None:
    line = one_error(invoke("report", "latest", "--format", fmt, "--archive", str(archive)), 2)
    assert line.startswith("error: unknown report format")
    if "docx" in fmt:
        assert "'docx'" in line


def test_query_syntax_error(archive: Path) -> None:
    archive.mkdir()
    line = one_error(invoke("query", "SELEC 1", "--archive", str(archive)), 2)
    assert line.startswith("error: query failed: ")
    assert "SELEC" in line


def test_query_unknown_table(archive: Path) -> None:
    archive.mkdir()
    line = one_error(invoke("query", "SELECT * FROM nosuchtable", "--archive", str(archive)), 2)
    assert line.startswith("error: query failed: ")


def test_a_judge_named_as_an_audited_target_is_an_error(tmp_path: Path, suite_file: Path, archive: Path) -> None:
    targets = write_targets(
        tmp_path / "t.json",
        {"name": "a", "base_url": CLOSED, "model": "m"},
        {"name": "j", "base_url": CLOSED, "model": "m"},
    )
    result = invoke("run", str(suite_file), "--targets", str(targets), "--target", "j", "--judge", "j", "--archive",
                    str(archive))  # fmt: skip
    line = one_error(result, 2)
    assert line == (
        "error: target 'j' is named both as audited and as the judge or attacker: a helper model is not audited; "
        "name another judge, or drop it from --target"
    )
    assert not archive.exists()


def test_the_default_audit_leaves_out_helpers_and_classifiers(tmp_path: Path) -> None:
    from auditor.suite.targets import choose

    targets = write_targets(
        tmp_path / "t.json",
        {"name": "a", "base_url": CLOSED, "model": "m"},
        {"name": "j", "base_url": CLOSED, "model": "m"},
        {"name": "guard", "base_url": CLOSED, "model": "g", "classifier": {"type": "llama_guard"}},
    )
    chosen = choose(targets, judge="j")
    assert [t.name for t in chosen.audited] == ["a"]
    assert chosen.judge is not None and chosen.judge.name == "j"
    assert [t.name for t in choose(targets, ("guard",)).audited] == ["guard"]  # named, so audited
