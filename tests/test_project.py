"""Starting a project: bundled suites by name, `auditor suites` (list, show, copy) and `auditor init`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT, refuse_or_answer

from auditor.cli import cli
from auditor.run.serve import ChatServer

BUNDLED = sorted(p.stem for p in (ROOT / "suites").glob("*.json") if "challenges" in json.loads(p.read_text()))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_suites_lists_every_bundled_suite_once() -> None:
    result = invoke("suites")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()[2:] if line and not line.startswith(("(", "S"))]
    assert names == BUNDLED
    for name in BUNDLED:
        data = json.loads((ROOT / "suites" / f"{name}.json").read_text())
        probes = sum(len(c.get("probes", [])) for c in data["challenges"])
        row = next(line for line in result.stdout.splitlines() if line.startswith(name + " "))
        assert row.split()[1:3] == [data["version"], str(probes)]
    assert "customer-support" in result.stdout


def test_suites_show_prints_challenges_and_rules() -> None:
    result = invoke("suites", "show", "jailbreak")
    assert result.exit_code == 0, result.output
    data = json.loads((ROOT / "suites" / "jailbreak.json").read_text())
    assert result.stdout.startswith(f"{data['title']} ({data['id']} {data['version']}), ")
    for challenge in data["challenges"]:
        assert f"\n{challenge['id']} " in result.stdout
    for policy in data["policies"]:
        assert f"context {policy['id']}: " in result.stdout


def test_suites_copy_writes_the_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "mine.json"
    result = invoke("suites", "copy", "bias", str(dest))
    assert result.exit_code == 0, result.output
    assert dest.read_bytes() == (ROOT / "suites" / "bias.json").read_bytes()
    again = invoke("suites", "copy", "bias", str(dest))
    assert again.exit_code == 2
    assert again.output.strip() == f"error: {dest} already exists; --force replaces"
    assert invoke("suites", "copy", "bias", str(dest), "--force").exit_code == 0
    into_folder = invoke("suites", "copy", "jailbreak", str(tmp_path))
    assert into_folder.stdout.strip() == str(tmp_path / "jailbreak.json")
    unknown = invoke("suites", "copy", "jailbrake")
    assert unknown.exit_code == 2 and "bundled: bias" in unknown.output


@pytest.mark.parametrize("name", ["jailbreak", "jailbreak.json", "suites/jailbreak.json"])
def test_commands_taking_a_suite_take_a_bundled_name(name: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no suites/ folder here: the name must come from the package
    result = invoke("plan", name)
    assert result.exit_code == 0, result.output
    assert "trials_per_target" in result.stdout


def test_a_name_that_is_neither_file_nor_bundled_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("plan", "jailbrake")
    assert result.exit_code == 2
    assert result.output.startswith("error: no suite file 'jailbrake' and no bundled suite of that name; bundled: ")
    assert len(result.output.strip().splitlines()) == 1
    missing = invoke("plan", "my/suite.json")
    assert (missing.exit_code, missing.output.strip()) == (2, "error: my/suite.json: no such file")


def test_init_writes_a_project_that_validates_and_runs(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    result = invoke("init", str(folder))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["NEXT-STEPS.md", "customer-support.json", "report-settings.json", "targets.json"]
    checked = invoke("validate", "--strict", str(folder / "customer-support.json"), str(folder / "targets.json"))
    assert checked.exit_code == 0, checked.output
    assert "0 misgraded" in checked.stdout
    targets = json.loads((folder / "targets.json").read_text())
    assert {"smollm2", "judge", "azure-gpt-4o", "vllm-model", "ollama-model"} <= {t["name"] for t in targets["targets"]}
    steps = (folder / "NEXT-STEPS.md").read_text()
    assert "auditor plan customer-support.json --targets targets.json" in steps
    with ChatServer(refuse_or_answer) as srv:
        targets["targets"].append({"name": "scripted", "base_url": srv.url, "model": "m"})
        (folder / "targets.json").write_text(json.dumps(targets))
        run = invoke("run", str(folder / "customer-support.json"), "--targets", str(folder / "targets.json"),
                     "--target", "scripted", "--archive", str(folder / "audits"), "--quiet")  # fmt: skip
        assert run.exit_code == 0, run.output
        assert len(srv.requests) == 45
    report = invoke("report", "latest", "--archive", str(folder / "audits"), "--out", str(folder / "reports"),
                    "--format", "html", "--settings", str(folder / "report-settings.json"))  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "Your organisation" in Path(report.stdout.strip()).read_text()


def test_init_refuses_to_overwrite_and_knows_its_domains(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    again = invoke("init", str(tmp_path))
    assert again.exit_code == 2 and "already exist; --force replaces" in again.output
    assert invoke("init", str(tmp_path), "--force").exit_code == 0
    other = invoke("init", str(tmp_path / "x"), "--domain", "banking")
    assert other.exit_code == 2
    assert other.output.strip() == "error: no starter suite for domain 'banking'; starters: customer-support"
