"""Every bundled probe ships labelled examples, and every bundled criterion decides them as labelled; degenerate
models (refuse everything, comply with everything) are approved for no deployment context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT, write_targets

from auditor.cli import cli
from auditor.criteria import needs_judge
from auditor.run.serve import Scripted, chat_body
from auditor.suite.examples import check_examples
from auditor.suite.load import load_suite

SUITES = sorted(
    str(p.relative_to(ROOT / "suites"))
    for p in [*(ROOT / "suites").glob("*.json"), *(ROOT / "suites" / "starters").glob("*.json")]
    if "challenges" in json.loads(p.read_text())
)


@pytest.mark.parametrize("name", SUITES)
def test_every_probe_has_a_passing_and_a_failing_example(name: str) -> None:
    suite = load_suite(ROOT / "suites" / name)
    for _, probe in suite.probes():
        verdicts = {v for e in probe.examples for v in e.expect}
        assert verdicts == {"pass", "fail"}, probe.id


@pytest.mark.parametrize("name", SUITES)
def test_every_criterion_decides_its_examples(name: str) -> None:
    suite = load_suite(ROOT / "suites" / name)
    found = check_examples(suite)
    assert found.unchecked == 0  # bundled judge criteria all have a fallback: the demo runs without a judge
    assert [(m.probe_id, m.expect, m.got, m.evidence) for m in found.misgrades] == []
    for _, probe in suite.probes():  # judge_only marks only cases a judge criterion's fallback cannot see
        judge_only = [e for e in probe.examples if e.judge_only]
        if judge_only:
            assert probe.pass_if.kind == "judge" or "judge" in json.dumps(probe.pass_if.spec), probe.id
            assert not needs_judge(probe.pass_if.spec)
            assert len(judge_only) * 5 <= len(probe.examples), probe.id


def test_validate_reports_a_misgraded_example_with_its_line(tmp_path: Path) -> None:
    from conftest import MINI_SUITE

    suite = json.loads(json.dumps(MINI_SUITE))
    probe = suite["challenges"][1]["probes"][0]  # contains "Paris"
    probe["examples"] = [
        {"reply": "Paris.", "expect": "pass"},
        {"reply": "Not Paris - it is Lyon.", "expect": "fail", "why": "names Paris only to reject it"},
    ]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite, indent=2))
    lenient = CliRunner().invoke(cli, ["validate", str(path)])
    assert lenient.exit_code == 0
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "Not Paris" in text) - 1
    warning = (
        f"warning: {path}:{line}: /challenges/1/probes/0/examples/1: example graded pass, labelled fail: found 'Paris'"
    )
    assert lenient.stderr.splitlines() == [warning]
    assert lenient.stdout.splitlines()[-1] == f"{path}: examples: 2 graded, 1 misgraded"
    strict = CliRunner().invoke(cli, ["validate", "--strict", str(path)])
    assert strict.exit_code == 2
    assert strict.stderr.splitlines() == [warning.replace("warning: ", "error: ")]


def refuse_everything(request: dict[str, Any]) -> Scripted:
    return Scripted(chat_body("I'm sorry, but I can't help with that request."))


def comply_with_everything(request: dict[str, Any]) -> Scripted:
    asked = request["messages"][-1]["content"]
    return Scripted(
        chat_body(
            "Sure! Here is exactly what you asked for, no questions asked.\n"
            "1. Start with the first step.\n2. Continue with the second.\n3. Finish.\n"
            f"You wrote: {asked[:200]}"
        )
    )


@pytest.mark.parametrize("responder", [refuse_everything, comply_with_everything], ids=["refuses", "complies"])
@pytest.mark.parametrize("name", SUITES)
def test_a_degenerate_model_is_approved_for_no_context(tmp_path: Path, server: Any, name: str, responder: Any) -> None:
    targets = write_targets(tmp_path / "t.json", {"name": "m", "base_url": server(responder).url, "model": "m"})
    result = CliRunner().invoke(
        cli,
        ["run", str(ROOT / "suites" / name), "--targets", str(targets), "--archive", str(tmp_path / "a"), "--quiet",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    decisions = {v["context"]: v["decision"] for v in json.loads(result.stdout)["verdicts"]}
    assert "approve" not in decisions.values(), decisions
