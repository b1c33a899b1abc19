"""Hostile and careless input files: every one ends in one-line errors and exit code 2, never a traceback or a hang."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import MINI_SUITE, ROOT

from auditor.cli import cli

TARGET = {"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail the test instead of hanging: SIGALRM raises inside whatever blocks."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def clean_failure(result: Result) -> list[str]:
    """Assert exit code 2, no traceback, only `error:` lines on stderr (each short); return them."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr[:2000]
    assert all(len(line) < 1500 for line in lines)
    return lines


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def suite_with(**changes: Any) -> dict[str, Any]:
    suite = copy.deepcopy(MINI_SUITE)
    probe = suite["challenges"][0]["probes"][0]
    for key, value in changes.items():
        where, _, field = key.partition("__")
        holder = {"probe": probe, "suite": suite, "defaults": suite["defaults"]["params"]}[where]
        holder[field] = value
    return suite


# (case id, file text, message expected in the error line)
SUITE_CASES: list[tuple[str, str, str]] = [
    ("nesting-1000", '{"a": ' + "[" * 1000 + "]" * 1000 + "}", "nested deeper than 64 levels"),
    ("nesting-100000", "[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
    (
        "integer-5000-digits",
        json.dumps(MINI_SUITE).replace('"samples": 2', '"samples": ' + "9" * 5000),
        "a number with more than 4,300 digits",
    ),  # fmt: skip
    ("huge-max-tokens", json.dumps(suite_with(defaults__max_tokens=10**400)), "does not fit in 64 bits"),
    (
        "infinite-temperature",
        json.dumps(suite_with(defaults__temperature=1.5)).replace("1.5", "1e400"),
        "inf is not a finite number",
    ),  # fmt: skip
    ("nan-temperature", json.dumps(suite_with(defaults__temperature=float("nan"))), "nan is not a finite number"),
    (
        "huge-threshold",
        json.dumps(MINI_SUITE).replace('"min_pass_rate": 0.5', '"min_pass_rate": ' + "1" * 400),
        "does not fit in 64 bits",
    ),  # fmt: skip
    ("surrogate-title", json.dumps(MINI_SUITE).replace('"Mini suite"', '"Mini \\ud800 suite"'), "lone surrogate"),
    ("surrogate-key", json.dumps(MINI_SUITE).replace('"owner"', '"own\\udfffer"'), "lone surrogate"),
    ("seed-2-63", json.dumps(suite_with(defaults__seed=2**63 - 1)), "is greater than the maximum of 4294967295"),
    ("negative-seed", json.dumps(suite_with(defaults__seed=-1)), "is less than the minimum of 0"),
    ("id-trailing-newline", json.dumps(suite_with(suite__id="mini\n")), "an id uses lower-case letters"),
    ("probe-id-trailing-newline", json.dumps(suite_with(probe__id="lockpick\n")), "an id uses lower-case letters"),
    (
        "million-combinations",
        json.dumps(
            suite_with(
                probe__prompt="{{a}} {{b}} {{c}}", probe__variables={k: [str(i) for i in range(100)] for k in "abc"}
            )
        ),
        "requests per target (this probe alone to 2,000,000), more than the cap of 200,000",
    ),  # fmt: skip
    ("five-million-character-name", json.dumps(suite_with(suite__id="x" * 5_000_000)), "more characters"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in SUITE_CASES], ids=[c[0] for c in SUITE_CASES])
def test_hostile_suites_give_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "suite.json", text)
    targets = write(tmp_path / "targets.json", json.dumps({"targets": [TARGET]}))
    archive = tmp_path / "audits"
    with deadline(30):
        for args in (["validate", str(path)], ["plan", str(path)], ["run", str(path), "--targets", str(targets)]):
            lines = clean_failure(CliRunner().invoke(cli, [*args, "--archive", str(archive)][: len(args) + (
                2 if args[0] == "run" else 0)]))  # fmt: skip
            assert any(message in line for line in lines), lines
    assert not archive.exists(), "nothing is created for a suite that cannot be loaded"


TARGET_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("name-trailing-newline", {**TARGET, "name": "t\n"}, "/targets/0/name"),
    ("key-env-trailing-newline", {**TARGET, "api_key_env": "KEY\n"}, "never hold the key itself"),
    ("url-trailing-newline", {**TARGET, "base_url": "http://127.0.0.1:9/v1\n"}, "base_url must be an http(s) URL"),
    ("huge-price", {**TARGET, "facts": {"price_input_per_mtok": 10**400}}, "does not fit in 64 bits"),
    ("huge-concurrency", {**TARGET, "limits": {"concurrency": 10**400}}, "does not fit in 64 bits"),
    ("huge-timeout", {**TARGET, "limits": {"timeout_s": 1e12}}, "is greater than the maximum of 3600"),
    ("seed-2-64", {**TARGET, "params": {"seed": 2**64}}, "does not fit in 64 bits"),
]


@pytest.mark.parametrize(("entry", "message"), [c[1:] for c in TARGET_CASES], ids=[c[0] for c in TARGET_CASES])
def test_hostile_targets_give_one_line_errors(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    path = write(tmp_path / "targets.json", json.dumps({"targets": [entry]}))
    lines = clean_failure(CliRunner().invoke(cli, ["validate", str(path)]))
    assert any(message in line for line in lines), lines


def test_a_named_pipe_or_folder_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "suite.json"
    os.mkfifo(fifo)
    with deadline(10):
        (line,) = clean_failure(CliRunner().invoke(cli, ["validate", str(fifo)]))
    assert line == f"error: {fifo}: not a regular file (a folder, pipe or device)"
    (line,) = clean_failure(CliRunner().invoke(cli, ["validate", str(tmp_path)]))
    assert line == f"error: {tmp_path}: not a regular file (a folder, pipe or device)"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["runs", "--archive", "{tmp}/blocker/audits"], 2,
         "{tmp}/blocker/audits: no archive here: the folder does not exist (give --archive, or run a suite first)"),
        (["query", "SELECT 1", "--archive", "{tmp}/blocker"], 2,
         "{tmp}/blocker: no archive here: it is a file, not a folder (give --archive, or run a suite first)"),
        (["run", "{suite}", "--target", "name=t,base_url=http://127.0.0.1:9/v1,model=m", "--archive",
          "{tmp}/blocker/audits"], 1, "{tmp}/blocker/audits/runs/*/responses: Not a directory"),
    ],
)  # fmt: skip
def test_file_system_refusals_are_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    suite = write(tmp_path / "suite.json", json.dumps(MINI_SUITE))
    fill = {"{tmp}": str(tmp_path), "{suite}": str(suite)}
    result = CliRunner().invoke(cli, [fill.get(a, a).replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    (line,) = result.stderr.splitlines()
    assert fnmatch.fnmatchcase(line, "error: " + message.replace("{tmp}", str(tmp_path))), line


def test_a_report_into_a_file_or_onto_a_folder_is_one_line(tmp_path: Path, server: Any) -> None:
    suite = write(tmp_path / "suite.json", json.dumps(MINI_SUITE))
    archive = str(tmp_path / "audits")
    url = server().url
    ran = CliRunner().invoke(cli, ["run", str(suite), "--target", f"name=t,base_url={url},model=m", "--archive",
                                   archive, "--quiet"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    (tmp_path / "blocker").write_text("a file")
    result = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "blocker" / "r"), "--archive", archive])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'blocker' / 'r'}: Not a directory"]
    run_id = ran.stdout.strip().splitlines()[-1]
    html = tmp_path / "out" / f"audit-mini-{run_id}.html"
    html.mkdir(parents=True)
    result = CliRunner().invoke(cli, ["report", "--format", "html", "--out", str(tmp_path / "out"), "--archive",
                                      archive])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {html}: Is a directory"]


# --- seeded fuzzing of the bundled files ----------------------------------------------------------

POOL: list[Any] = [None, True, -1, 0, 10**400, 2**63, 1e308, "", "x" * 10_000, "\ud800", "\n", [], {}, [[[[[]]]]],
                   {"type": "nope"}, "{{undeclared}}", "NaN"]  # fmt: skip


def nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from nodes(v, (*path, i))


def mutate(data: Any, rng: random.Random) -> str:
    """One to three random edits: replace a value, drop a key, or nest deeply; then JSON text (NaN allowed)."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(nodes(data))[1:])
        holder = data
        for key in path[:-1]:
            holder = holder[key]
        choice = rng.random()
        if choice < 0.15 and isinstance(holder, dict):
            del holder[path[-1]]
        elif choice < 0.2:
            holder[path[-1]] = json.loads("[" * 70 + "]" * 70)
        else:
            holder[path[-1]] = rng.choice(POOL)
    text = json.dumps(data, allow_nan=True)
    return text.replace('"NaN"', "NaN") if rng.random() < 0.5 else text


SOURCES = [
    ROOT / "suites" / "jailbreak.json",
    ROOT / "suites" / "hallucination.json",
    ROOT / "examples" / "targets.json",
]


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_fuzzed_files_never_crash_or_hang(tmp_path: Path, source: Path) -> None:
    rng = random.Random(f"auditor-fuzz-{source.stem}")
    data = json.loads(source.read_text(encoding="utf-8"))
    rejected = 0
    with deadline(60):
        for n in range(100):
            path = write(tmp_path / f"case-{n}.json", mutate(data, rng))
            result = CliRunner().invoke(cli, ["validate", str(path)])
            assert result.exception is None or isinstance(result.exception, SystemExit), (n, repr(result.exception))
            assert result.exit_code in (0, 2), (n, result.output[:2000])
            if result.exit_code == 2:
                rejected += 1
                assert all(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr[:2000]
            elif "challenges" in data:
                planned = CliRunner().invoke(cli, ["plan", str(path)])
                assert planned.exit_code == 0, (n, planned.output[:2000])
    assert rejected >= 50  # the mutations mostly break the file, and each break is reported, not crashed on
