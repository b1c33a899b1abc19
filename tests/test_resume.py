"""Nothing lost, nothing doubled: kill -9 and Ctrl-C mid-run, resume, cache and cost cap through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import hello_suite, write_targets

from auditor.cli import cli
from auditor.run.serve import Scripted, chat_body

N = 300


def big_suite(tmp_path: Path) -> Path:
    return hello_suite(tmp_path / "big.json", N)


def slow_hello(request: dict[str, Any]) -> Scripted:
    return Scripted(chat_body("hello there", prompt_tokens=20, completion_tokens=10), delay_s=0.05)


class Hello:
    """Says hello after `delay` seconds; slow at first (300 items at concurrency 2 take 30 s, so a signal
    always lands mid-run), then fast once the test sets `delay` to 0."""

    def __init__(self) -> None:
        self.delay = 0.2

    def __call__(self, request: dict[str, Any]) -> Scripted:
        return Scripted(chat_body("hello there", prompt_tokens=20, completion_tokens=10), delay_s=self.delay)


def start_cli(*args: str) -> subprocess.Popen[str]:
    # A shell running us in the background ignores SIGINT, and children inherit that; restore the default so
    # the CLI sees Ctrl-C as a user at a terminal would.
    return subprocess.Popen(
        [sys.executable, "-m", "auditor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stored_rows(archive: Path) -> list[dict[str, Any]]:
    out = CliRunner().invoke(
        cli, ["query", "--archive", str(archive), "--format", "json", "SELECT run_id, item_id, cached FROM responses"]
    )
    assert out.exit_code == 0, out.output
    return list(json.loads(out.stdout))


def wait_for_parts(archive: Path, minimum: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(archive.glob("runs/*/responses/part-*.parquet"))) >= minimum:
            return
        time.sleep(0.05)
    raise AssertionError("the run never stored a part")


def manifest(archive: Path) -> dict[str, Any]:
    (path,) = archive.glob("runs/*/manifest.json")
    return dict(json.loads(path.read_text()))


def test_kill_9_then_resume_sends_only_missing_requests(tmp_path: Path, server: Any) -> None:
    hello = Hello()
    srv = server(hello)
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 2}}
    )
    archive = tmp_path / "audits"
    proc = start_cli("run", str(big_suite(tmp_path)), "--targets", str(targets), "--archive", str(archive), "--quiet")
    wait_for_parts(archive, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = stored_rows(archive)
    assert 0 < len(before) < N
    assert manifest(archive)["status"] == "running"  # killed: no chance to mark anything
    sent_before = len(srv.requests)
    hello.delay = 0.0

    run_id = manifest(archive)["run_id"]
    resumed = CliRunner().invoke(cli, ["run", "--resume", run_id, "--archive", str(archive), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip().splitlines()[-1] == run_id
    after = stored_rows(archive)
    assert len(after) == N
    assert len({r["item_id"] for r in after}) == N  # exactly one row per planned item
    assert len(srv.requests) - sent_before == N - len(before)  # only the missing ones were sent
    assert manifest(archive)["status"] == "complete"

    again = CliRunner().invoke(cli, ["run", "--resume", run_id, "--archive", str(archive), "--quiet"])
    assert again.exit_code == 0
    assert len(srv.requests) - sent_before == N - len(before)  # a finished run sends nothing
    assert len(stored_rows(archive)) == N


def test_ctrl_c_stops_cleanly_and_marks_the_run_interrupted(tmp_path: Path, server: Any) -> None:
    srv = server(Hello())
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 2}}
    )
    archive = tmp_path / "audits"
    proc = start_cli("run", str(big_suite(tmp_path)), "--targets", str(targets), "--archive", str(archive), "--quiet")
    wait_for_parts(archive, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "interrupted" in line and "auditor run --resume" in line
    m = manifest(archive)
    assert m["status"] == "interrupted"
    rows = stored_rows(archive)
    assert 0 < len(rows) < N and len({r["item_id"] for r in rows}) == len(rows)


def test_cache_makes_a_rerun_free(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    srv = server()
    targets = write_targets(tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m"})
    archive = tmp_path / "audits"
    args = ["run", str(mini_suite), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0
    assert len(srv.requests) == 7
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0
    assert len(srv.requests) == 7  # zero requests the second time
    rows = stored_rows(archive)
    second_id = second.stdout.strip().splitlines()[-1]
    assert sorted(r["cached"] for r in rows if r["run_id"] == second_id) == [True] * 7
    third = CliRunner().invoke(cli, [*args, "--no-cache"])
    assert third.exit_code == 0
    assert len(srv.requests) == 14


def test_cost_cap_stops_the_run_and_the_report_says_so(tmp_path: Path, server: Any) -> None:
    srv = server(slow_hello)
    targets = write_targets(
        tmp_path / "t.json",
        {
            "name": "t",
            "base_url": srv.url,
            "model": "m",
            "limits": {"concurrency": 2},
            "facts": {"price_input_per_mtok": 1000.0, "price_output_per_mtok": 1000.0},
        },
    )
    archive = tmp_path / "audits"
    # each reply costs (20 + 10) * 1000 / 1e6 = $0.03; the cap of $0.60 allows fewer than N of them
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(big_suite(tmp_path)),
            "--targets",
            str(targets),
            "--archive",
            str(archive),
            "--quiet",
            "--max-cost",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    m = manifest(archive)
    assert m["status"] == "capped"
    assert m["spent_usd"] <= 0.6
    rows = stored_rows(archive)
    assert 0 < len(rows) < N
    assert m["spent_usd"] == round(0.03 * len(rows), 6)
    assert "resumable" in result.stderr
    out = CliRunner().invoke(
        cli, ["report", "latest", "--format", "html", "--archive", str(archive), "--out", str(tmp_path / "rep")]
    )
    html = Path(out.stdout.strip()).read_text()
    assert "stopped before its cost cap of $0.60" in html
    assert f"{len(rows)} of {N} planned requests" in html


def test_model_identity_change_is_warned_and_reported(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    calls = iter(range(1000))

    def responder(request: dict[str, Any]) -> Scripted:
        n = next(calls)
        model = "m-0513" if n < 3 else "m-0806"
        return Scripted(
            chat_body("I'm sorry, but I can't help with that.", model=model, system_fingerprint=f"fp-{model}")
        )

    srv = server(responder)
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 1}}
    )
    archive = tmp_path / "audits"
    result = CliRunner().invoke(
        cli, ["run", str(mini_suite), "--targets", str(targets), "--archive", str(archive), "--quiet"]
    )
    assert result.exit_code == 0
    assert "warning: target 't': the endpoint now reports model 'm-0806'" in result.stderr
    out = CliRunner().invoke(
        cli, ["report", "latest", "--format", "html", "--archive", str(archive), "--out", str(tmp_path / "rep")]
    )
    html = Path(out.stdout.strip()).read_text()
    assert "Model identity changed during the run for t" in html and "m-0806" in html


def test_command_line_limits_override_the_targets_file(tmp_path: Path, mini_suite: Path, server: Any) -> None:
    srv = server()
    targets = write_targets(
        tmp_path / "t.json", {"name": "t", "base_url": srv.url, "model": "m", "limits": {"concurrency": 8}}
    )
    archive = tmp_path / "audits"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(mini_suite),
            "--targets",
            str(targets),
            "--archive",
            str(archive),
            "--concurrency",
            "2",
            "--rpm",
            "600",
            "--timeout",
            "9",
            "--max-retries",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    limits = manifest(archive)["targets"][0]["limits"]
    assert limits == {"concurrency": 2, "requests_per_minute": 600.0, "timeout_s": 9.0, "max_retries": 1}
    # not a terminal: plain progress lines on stderr, and a closing count
    assert "[t] 7/7 done" in result.stderr
    assert "7 sent, 0 from cache, 0 already stored" in result.stderr


def test_plan_prints_requests_tokens_and_the_cost_ceiling(tmp_path: Path) -> None:
    targets = write_targets(
        tmp_path / "t.json",
        {
            "name": "priced",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "facts": {"price_input_per_mtok": 1000.0, "price_output_per_mtok": 1000.0},
        },
        {"name": "free", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
    )
    result = CliRunner().invoke(cli, ["plan", str(big_suite(tmp_path)), "--targets", str(targets)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[2:4]]
    # "Say hello." is 10 bytes: 10 // 3 + 4 per message + 3 = 10 prompt tokens per item; 300 items;
    # ceiling 16 tokens each; cost (3,000 + 4,800) * $1,000 / 1e6 = $7.80
    assert rows[0] == ["priced", "300", "3000", "4800", "7.8000"]
    assert rows[1][:4] == ["free", "300", "3000", "4800"] and "no prices declared" in result.stdout
