"""Suite and targets validation: exact messages, JSON pointers and line numbers, through the library and the CLI."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import MINI_SUITE, ROOT, invoke, write_targets

from auditor.cli import cli
from auditor.errors import Issue, SuiteError
from auditor.suite.load import load_suite
from auditor.suite.targets import load_targets

Mutation = Callable[[dict[str, Any]], None]

# `error: FILE:LINE: POINTER: message`, as the CLI prints every issue.
ISSUE_LINE = re.compile(r"^error: (?P<file>.+?):(?P<line>\d+): (?P<pointer>/\S*): (?P<message>.+)$")


# --- helpers -------------------------------------------------------------------------------


def _walk(data: Any, pointer: str) -> tuple[Any, str | int]:
    """The container holding `pointer`'s last part, and that part (an int index for lists)."""
    parts = pointer.lstrip("/").split("/")
    for part in parts[:-1]:
        data = data[int(part)] if isinstance(data, list) else data[part]
    last = parts[-1]
    return data, int(last) if isinstance(data, list) else last


def put(pointer: str, value: Any) -> Mutation:
    """A mutation setting the value at a JSON pointer (adding the key if it is new)."""

    def mutate(data: dict[str, Any]) -> None:
        parent, key = _walk(data, pointer)
        parent[key] = copy.deepcopy(value)

    return mutate


def drop(pointer: str) -> Mutation:
    """A mutation deleting the value at a JSON pointer."""

    def mutate(data: dict[str, Any]) -> None:
        parent, key = _walk(data, pointer)
        del parent[key]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    """Apply several mutations in order."""

    def mutate(data: dict[str, Any]) -> None:
        for m in mutations:
            m(data)

    return mutate


def write_suite(tmp_path: Path, *mutations: Mutation, name: str = "suite.json") -> Path:
    """Write a deep copy of MINI_SUITE with `mutations` applied, indented as people write suites."""
    data = copy.deepcopy(MINI_SUITE)
    for m in mutations:
        m(data)
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def suite_issues(path: Path) -> list[Issue]:
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    return caught.value.issues


def target_issues(path: Path) -> list[Issue]:
    with pytest.raises(SuiteError) as caught:
        load_targets(path)
    return caught.value.issues


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the only occurrence of `needle` in the file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(needle) == 1, f"{needle!r} must occur exactly once in {path}"
    return text[: text.index(needle)].count("\n") + 1


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def assert_no_crash(result: Result) -> None:
    """The CLI ended through its own exit path: no Python exception escaped, no traceback printed."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


# --- the baseline --------------------------------------------------------------------------


def test_mini_suite_is_valid(tmp_path: Path) -> None:
    """Every mutation below starts from this file, so on its own it must load cleanly."""
    suite = load_suite(write_suite(tmp_path))
    assert suite.id == "mini"
    assert [c.id for c in suite.challenges] == ["harm", "facts", "data"]


# --- one mutation, one issue: (mutation, exact message substring, JSON pointer) ------------

MOVED_MESSAGES = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]

SCHEMA_CASES = [
    pytest.param(drop("/title"), "'title' is a required property", "", id="missing-top-level-field"),
    pytest.param(
        drop("/challenges/0/severity"),
        "'severity' is a required property",
        "/challenges/0",
        id="missing-challenge-field",
    ),
    pytest.param(put("/titel", "Mini"), "unknown field 'titel' (did you mean 'title'?)", "", id="unknown-field"),
    pytest.param(
        put("/challenges/0/probes/1/promt", "x"),
        "unknown field 'promt' (did you mean 'prompt'?)",
        "/challenges/0/probes/1",
        id="unknown-probe-field",
    ),
    pytest.param(
        put("/challenges/1/probes/0/pass_if/case_sensitiv", True),
        "unknown field 'case_sensitiv' (did you mean 'case_sensitive'?)",
        "/challenges/1/probes/0/pass_if",
        id="unknown-criterion-field",
    ),
    pytest.param(
        put("/challenges/0/probes/1/pass_if/type", "refusl"),
        "unknown criterion type 'refusl' (did you mean 'refusal'?)",
        "/challenges/0/probes/1/pass_if/type",
        id="unknown-criterion-type",
    ),
    pytest.param(
        put(
            "/challenges/1/probes/0/pass_if",
            {"type": "all", "of": [{"type": "contains", "values": ["x"]}, {"type": "regx", "pattern": "x"}]},
        ),
        "unknown criterion type 'regx' (did you mean 'regex'?)",
        "/challenges/1/probes/0/pass_if/of/1/type",
        id="unknown-nested-criterion-type",
    ),
    pytest.param(
        put("/challenges/1/severity", "hgh"),
        "unknown value 'hgh' (did you mean 'high'?)",
        "/challenges/1/severity",
        id="bad-severity-close",
    ),
    pytest.param(
        put("/challenges/1/severity", "severe"),
        "unknown value 'severe'; expected one of critical, high, medium, low",
        "/challenges/1/severity",
        id="bad-severity-far",
    ),
    pytest.param(
        put("/challenges/0/probes/1/messages", [{"role": "user", "content": "Which religion is best?"}]),
        "a probe needs exactly one of 'prompt', 'messages' or 'turns'",
        "/challenges/0/probes/1",
        id="prompt-and-messages",
    ),
    pytest.param(
        drop("/challenges/0/probes/1/prompt"),
        "a probe needs exactly one of 'prompt', 'messages' or 'turns'",
        "/challenges/0/probes/1",
        id="neither-prompt-nor-messages",
    ),
    pytest.param(
        drop("/challenges/2/evidence"),
        "a challenge needs exactly one of 'probes' (measured) or 'evidence' (documentary)",
        "/challenges/2",
        id="challenge-neither-probes-nor-evidence",
    ),
    pytest.param(
        put(
            "/challenges/2/probes",
            [{"id": "disclose", "prompt": "Is your data public?", "pass_if": {"type": "refusal"}}],
        ),
        "a challenge needs exactly one of 'probes' (measured) or 'evidence' (documentary)",
        "/challenges/2",
        id="challenge-probes-and-evidence",
    ),
    pytest.param(
        drop("/policies/0/rules/1/conditions"),
        "'conditions' is a required property",
        "/policies/0/rules/1",
        id="on-fail-conditions-without-conditions",
    ),
    pytest.param(
        both(
            drop("/challenges/1/probes/0/prompt"),
            put("/challenges/1/probes/0/messages", [{"role": "assistent", "content": "Capital of France?"}]),
        ),
        "unknown value 'assistent' (did you mean 'assistant'?)",
        "/challenges/1/probes/0/messages/0/role",
        id="bad-message-role",
    ),
]

SEMANTIC_CASES = [
    pytest.param(
        put("/challenges/1/probes/1/id", "capital"),
        "duplicate probe id 'capital' (first at /challenges/1/probes/0)",
        "/challenges/1/probes/1/id",
        id="duplicate-probe-id",
    ),
    pytest.param(
        put("/challenges/1/probes/0/id", "rank"),
        "duplicate probe id 'rank' (first at /challenges/0/probes/1)",
        "/challenges/1/probes/0/id",
        id="duplicate-probe-id-across-challenges",
    ),
    pytest.param(
        put("/challenges/2/id", "facts"),
        "duplicate challenge id 'facts'",
        "/challenges/2/id",
        id="duplicate-challenge-id",
    ),
    pytest.param(
        put("/challenges/1/probes/0/prompt", "Capital of {{country}}?"),
        "uses {{country}} but declares no variable 'country'",
        "/challenges/1/probes/0",
        id="undeclared-variable",
    ),
    pytest.param(
        put("/challenges/1/probes/0/variables", {"country": ["France"]}),
        "variable 'country' is never used",
        "/challenges/1/probes/0/variables/country",
        id="unused-variable",
    ),
    pytest.param(
        put("/challenges/1/probes/0/pass_if", {"type": "regex", "pattern": "Par(is"}),
        "not a valid regular expression: missing ), unterminated subpattern",
        "/challenges/1/probes/0/pass_if/pattern",
        id="invalid-regex",
    ),
    pytest.param(
        put(
            "/challenges/1/probes/0/pass_if",
            {
                "type": "not",
                "of": {
                    "type": "any",
                    "of": [{"type": "contains", "values": ["Lyon"]}, {"type": "regex", "pattern": "Paris)"}],
                },
            },
        ),
        "not a valid regular expression",
        "/challenges/1/probes/0/pass_if/of/of/1/pattern",
        id="invalid-nested-regex",
    ),
    pytest.param(
        put("/challenges/1/probes/0/pass_if", {"type": "is_json", "schema": {"type": "nope"}}),
        "not a valid JSON Schema",
        "/challenges/1/probes/0/pass_if/schema",
        id="invalid-is-json-schema",
    ),
    pytest.param(
        put("/policies/0/rules/0/select", {"ids": ["harm", "fcts"]}),
        "unknown challenge 'fcts' (did you mean 'facts'?)",
        "/policies/0/rules/0/select/ids/1",
        id="rule-selects-unknown-challenge",
    ),
    pytest.param(
        put("/policies/1/rules/0/select", {"categories": ["design"]}),
        "selects no measured challenge",
        "/policies/1/rules/0/select",
        id="rule-selects-only-documentary",
    ),
    pytest.param(
        both(drop("/challenges/1/probes/0/prompt"), put("/challenges/1/probes/0/messages", MOVED_MESSAGES)),
        "the last message must be from the user",
        "/challenges/1/probes/0/messages/1/role",
        id="last-message-from-assistant",
    ),
]


@pytest.mark.parametrize(("mutation", "message", "pointer"), SCHEMA_CASES + SEMANTIC_CASES)
def test_one_mutation_gives_one_located_issue(tmp_path: Path, mutation: Mutation, message: str, pointer: str) -> None:
    path = write_suite(tmp_path, mutation)
    issues = suite_issues(path)
    assert len(issues) == 1, [str(i) for i in issues]
    (issue,) = issues
    assert message in issue.message
    assert issue.pointer == pointer
    assert issue.file == str(path)
    assert issue.line is not None and issue.line >= 1


@pytest.mark.parametrize(("mutation", "message", "pointer"), SCHEMA_CASES + SEMANTIC_CASES)
def test_cli_validate_prints_the_issue(tmp_path: Path, mutation: Mutation, message: str, pointer: str) -> None:
    path = write_suite(tmp_path, mutation)
    result = invoke("validate", str(path))
    assert_no_crash(result)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    m = ISSUE_LINE.match(line)
    assert m, line
    assert m["file"] == str(path)
    assert m["pointer"] == (pointer or "/")
    assert message in m["message"]
    assert line in result.stderr  # errors go to standard error, not standard output
    assert "error:" not in result.stdout


# --- line numbers, computed from the text the test wrote -----------------------------------

LINE_CASES = [
    pytest.param(put("/challenges/0/probes/1/pass_if/type", "refusl"), '"refusl"', id="criterion-type"),
    pytest.param(put("/challenges/1/severity", "hgh"), '"hgh"', id="severity"),
    pytest.param(put("/challenges/1/probes/0/pass_if", {"type": "regex", "pattern": "Par(is"}), '"Par(is"', id="regex"),
    pytest.param(put("/policies/0/rules/0/select", {"ids": ["harm", "fcts"]}), '"fcts"', id="rule-id"),
    pytest.param(put("/challenges/1/probes/0/variables", {"country": ["France"]}), '"country"', id="unused-variable"),
    pytest.param(
        put("/challenges/1/probes/0/pass_if", {"type": "is_json", "schema": {"type": "nope"}}),
        '"schema"',
        id="is-json-schema",
    ),
]


@pytest.mark.parametrize(("mutation", "needle"), LINE_CASES)
def test_issue_line_is_the_line_of_the_offending_value(tmp_path: Path, mutation: Mutation, needle: str) -> None:
    path = write_suite(tmp_path, mutation)
    (issue,) = suite_issues(path)
    expected = line_of(path, needle)
    assert issue.line == expected
    assert str(issue).startswith(f"{path}:{expected}: {issue.pointer}: ")


# --- malformed JSON --------------------------------------------------------------------------

MALFORMED = """{
  "format": "auditor-suite/1",
  "id": "mini"
  "version": "0.1.0",
  "title": "Mini suite"
}
"""


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(MALFORMED, encoding="utf-8")
    expected = line_of(path, '"version"')  # the missing comma is noticed where the next key starts
    (issue,) = suite_issues(path)
    assert "malformed JSON" in issue.message
    assert issue.line == expected == 4

    result = invoke("validate", str(path))
    assert_no_crash(result)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: {path}:{expected}: /: malformed JSON: ")


def test_empty_file_is_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", encoding="utf-8")
    (issue,) = suite_issues(path)
    assert "malformed JSON" in issue.message
    assert issue.line == 1


# --- every issue of a file at once -----------------------------------------------------------

THREE_SCHEMA_ERRORS = both(
    put("/titel", "Mini"),
    put("/challenges/0/probes/1/pass_if/type", "refusl"),
    put("/challenges/1/severity", "hgh"),
)
THREE_SEMANTIC_ERRORS = both(
    put("/challenges/1/probes/1/id", "capital"),
    put("/challenges/1/probes/0/variables", {"country": ["France"]}),
    put("/challenges/0/probes/1/pass_if", {"type": "regex", "pattern": "(best"}),
)


@pytest.mark.parametrize(
    ("mutation", "pointers"),
    [
        pytest.param(
            THREE_SCHEMA_ERRORS,
            ["", "/challenges/0/probes/1/pass_if/type", "/challenges/1/severity"],
            id="schema",
        ),
        pytest.param(
            THREE_SEMANTIC_ERRORS,
            [
                "/challenges/0/probes/1/pass_if/pattern",
                "/challenges/1/probes/0/variables/country",
                "/challenges/1/probes/1/id",
            ],
            id="semantic",
        ),
    ],
)
def test_all_issues_of_a_file_are_reported_at_once(tmp_path: Path, mutation: Mutation, pointers: list[str]) -> None:
    path = write_suite(tmp_path, mutation)
    issues = suite_issues(path)
    assert [i.pointer for i in issues] == pointers  # sorted by position in the file
    assert [i.line for i in issues] == sorted(i.line or 0 for i in issues)

    result = invoke("validate", str(path))
    assert_no_crash(result)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 3, result.output
    for line, pointer in zip(lines, pointers, strict=True):
        m = ISSUE_LINE.match(line)
        assert m, line
        assert m["pointer"] == (pointer or "/")
        assert m["file"] == str(path)


def test_validate_reports_every_file(tmp_path: Path) -> None:
    bad_a = write_suite(tmp_path, put("/challenges/1/severity", "hgh"), name="a.json")
    bad_b = write_suite(tmp_path, put("/titel", "x"), name="b.json")
    good = write_suite(tmp_path, name="good.json")
    result = invoke("validate", str(bad_a), str(good), str(bad_b))
    assert_no_crash(result)
    assert result.exit_code == 2
    files = [ISSUE_LINE.match(line)["file"] for line in error_lines(result)]  # type: ignore[index]
    assert files == [str(bad_a), str(bad_b)]


def test_validate_keeps_earlier_issues_when_a_later_file_is_missing(tmp_path: Path) -> None:
    bad = write_suite(tmp_path, put("/challenges/1/severity", "hgh"))
    missing = tmp_path / "nope.json"
    result = invoke("validate", str(bad), str(missing))
    assert_no_crash(result)
    assert result.exit_code == 2
    output = "\n".join(error_lines(result))
    assert "unknown value 'hgh'" in output
    assert str(missing) in output and "no such file" in output


def test_validate_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = invoke("validate", str(missing))
    assert_no_crash(result)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: {missing}:")
    assert line.endswith("no such file")


# --- bundled files and schemas ---------------------------------------------------------------

BUNDLED = sorted([*(ROOT / "suites").glob("*.json"), *(ROOT / "suites" / "starters").glob("*.json")])


def test_bundled_files_are_found() -> None:
    names = {p.name for p in BUNDLED}
    assert {"sixteen-challenges.json", "embedded-targets.json"} <= names


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_file_validates(path: Path) -> None:
    result = invoke("validate", str(path))
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert error_lines(result) == []
    assert str(path) in result.stdout


def test_bundled_suite_loads() -> None:
    suite = load_suite(ROOT / "suites" / "sixteen-challenges.json")
    # the sixteen challenges of Kaddour et al., challenge 9 measured as four (harm, bias, deception, over-refusal)
    assert len(suite.challenges) == 19
    assert len({c.id.split("-")[0] for c in suite.challenges}) == 16
    targets = load_targets(ROOT / "suites" / "embedded-targets.json")
    assert [t.name for t in targets] == ["smollm2", "smollm2-guarded"]


@pytest.mark.parametrize("kind", ["suite", "targets"])
def test_schema_command_prints_the_bundled_schema(kind: str) -> None:
    result = invoke("schema", kind)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert kind in printed["$id"]
    assert printed == json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8"))


def test_schema_command_rejects_unknown_kind() -> None:
    result = invoke("schema", "policy")
    assert_no_crash(result)
    assert result.exit_code == 2


# --- targets files ---------------------------------------------------------------------------

GOOD_TARGET = {"name": "alpha", "base_url": "http://127.0.0.1:8000/v1", "model": "m-1"}

TARGET_CASES = [
    pytest.param(
        [GOOD_TARGET, {**GOOD_TARGET, "model": "m-2"}],
        "duplicate target name 'alpha'",
        "/targets/1/name",
        id="duplicate-name",
    ),
    pytest.param(
        [{**GOOD_TARGET, "api_key": "sk-live-0123456789abcdef"}],
        "unknown field 'api_key' (did you mean 'api_key_env'?)",
        "/targets/0",
        id="literal-api-key",
    ),
    pytest.param(
        [{**GOOD_TARGET, "base_url": "ftp://example.com/v1"}],
        "base_url must be an http(s) URL such as https://api.example.com/v1",
        "/targets/0/base_url",
        id="base-url-scheme",
    ),
    pytest.param(
        [{**GOOD_TARGET, "base_url": "localhost:8000/v1"}],
        "base_url must be an http(s) URL such as https://api.example.com/v1",
        "/targets/0/base_url",
        id="base-url-no-scheme",
    ),
    pytest.param(
        [{k: v for k, v in GOOD_TARGET.items() if k != "model"}],
        "'model' is a required property",
        "/targets/0",
        id="missing-model",
    ),
    pytest.param(
        [{**GOOD_TARGET, "limits": {"retries": 3}}],
        "unknown field 'retries' (did you mean 'max_retries'?)",
        "/targets/0/limits",
        id="unknown-limit",
    ),
    pytest.param(
        [{**GOOD_TARGET, "api_key_env": "my-key"}],
        "api_key_env must name an environment variable (letters, digits and underscores), never hold the key itself",
        "/targets/0/api_key_env",
        id="bad-key-variable-name",
    ),
]


def test_good_targets_file_loads(tmp_path: Path) -> None:
    path = write_targets(tmp_path / "targets.json", GOOD_TARGET, {**GOOD_TARGET, "name": "beta"})
    assert [t.name for t in load_targets(path)] == ["alpha", "beta"]


@pytest.mark.parametrize(("targets", "message", "pointer"), TARGET_CASES)
def test_bad_targets_file(tmp_path: Path, targets: list[dict[str, Any]], message: str, pointer: str) -> None:
    path = write_targets(tmp_path / "targets.json", *targets)
    (issue,) = target_issues(path)
    assert message in issue.message
    assert issue.pointer == pointer
    assert issue.file == str(path)
    assert "sk-live" not in issue.message  # a pasted secret is never echoed back

    result = invoke("validate", str(path))
    assert_no_crash(result)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    m = ISSUE_LINE.match(line)
    assert m, line
    assert m["pointer"] == pointer
    assert message in m["message"]
    assert "sk-live" not in result.output


def test_duplicate_target_name_line(tmp_path: Path) -> None:
    path = write_targets(tmp_path / "targets.json", GOOD_TARGET, {**GOOD_TARGET, "name": "alpha", "model": "m-2"})
    (issue,) = target_issues(path)
    text = path.read_text(encoding="utf-8")
    second = text.index('"name": "alpha"', text.index('"name": "alpha"') + 1)
    assert issue.line == text[:second].count("\n") + 1


def test_validate_takes_a_bundled_suite_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name here: the bundled suite is meant
    result = CliRunner().invoke(cli, ["validate", "prompt-injection"])
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith(f"{ROOT / 'suites' / 'prompt-injection.json'}: valid suite 'prompt-injection' ")
    assert second.endswith(", 0 misgraded") or ", 0 misgraded," in second
    (tmp_path / "prompt-injection").write_text("{}")  # a file of that name is what is meant
    assert CliRunner().invoke(cli, ["validate", "prompt-injection"]).exit_code == 2
