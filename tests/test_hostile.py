"""A hostile endpoint and careless input: the run survives any reply, secrets never land, the terminal stays clean."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner, Result
from conftest import MINI_SUITE, write_targets

from auditor.cli import cli
from auditor.cli.console import format_rows
from auditor.run.serve import Scripted, chat_body, error_body
from auditor.run.wire import Answer, Malformed, read_body

CHOICE = {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"id": "x", "object": "chat.completion", "model": "m", "choices": [CHOICE]}
    base.update(fields)
    return json.dumps(base).encode()


def message(value: Any) -> bytes:
    return body(choices=[{"index": 0, "message": value, "finish_reason": "stop"}])


def content(value: Any) -> bytes:
    return message({"role": "assistant", "content": value})


# (body, content stored) for replies that are kept; (body, None) for replies that become error rows
SHAPES: list[tuple[str, bytes, str | None]] = [
    ("lone surrogate", b'{"model": "m", "choices": [{"message": {"content": "a\\ud800b"}}]}', "a\\ud800b"),
    ("reversed surrogate pair", b'{"choices": [{"message": {"content": "\\udc00\\ud800"}}]}', "\\udc00\\ud800"),
    ("number content", content(42), None),
    ("object content", content({"text": "hi"}), None),
    ("boolean content", content(True), None),
    ("content parts", content([{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]), "hello"),
    ("parts without text", content([{"type": "image_url"}]), None),
    ("null content with refusal", message({"role": "assistant", "content": None, "refusal": "No."}), "No."),
    ("null message", message(None), None),
    ("missing message", body(choices=[{"index": 0}]), None),
    ("string message", message("hello"), None),
    ("null choices", body(choices=None), None),
    ("object choices", body(choices={"0": CHOICE}), None),
    ("null choice", body(choices=[None]), None),
    ("string choice", body(choices=["fine"]), None),
    ("string usage", body(usage="lots"), "fine"),
    ("string token counts", body(usage={"prompt_tokens": "12", "completion_tokens": "x"}), "fine"),
    ("negative and huge counts", body(usage={"prompt_tokens": -5, "completion_tokens": 10**30}), "fine"),
    ("fractional counts", body(usage={"prompt_tokens": 1.5, "completion_tokens": True}), "fine"),
    ("numeric model", body(model=7), "fine"),
    ("object fingerprint", body(system_fingerprint={"a": 1}), "fine"),
    ("numeric finish reason", body(choices=[{**CHOICE, "finish_reason": 3}]), "fine"),
    ("array body", b"[1, 2, 3]", None),
    ("string body", b'"hello"', None),
    ("empty body", b"", None),
    ("HTML body", b"<html><body>Bad gateway</body></html>", None),
    ("error object with status 200", json.dumps(error_body(500, "upstream down")).encode(), None),
    ("deeply nested body", b'{"choices": ' + b"[" * 5000 + b"]" * 5000 + b"}", None),
    ("invalid UTF-8", b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', None),
    ("control characters", content("\x1b]0;owned\x07\x1b[2J\x00"), "\x1b]0;owned\x07\x1b[2J\x00"),
]


@pytest.mark.parametrize(("name", "raw", "kept"), SHAPES, ids=[s[0] for s in SHAPES])
def test_read_body_never_raises(name: str, raw: bytes, kept: str | None) -> None:
    result = read_body(raw)
    if kept is None:
        assert isinstance(result, Malformed)
    else:
        assert isinstance(result, Answer)
        assert result.content == kept
        result.content.encode("utf-8")  # storable
        assert result.prompt_tokens is None or isinstance(result.prompt_tokens, int)
        assert result.model is None or isinstance(result.model, str)


def test_read_body_cuts_a_giant_reply_visibly() -> None:
    result = read_body(content("x" * 1_200_000))
    assert isinstance(result, Answer)
    assert result.content.endswith("[auditor: reply cut at 1,000,000 of 1,200,000 characters]")


def run(tmp_path: Path, url: str, *extra: str, limits: dict[str, Any] | None = None) -> tuple[Result, Path]:
    suite = tmp_path / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE))
    target = {"name": "t", "base_url": url, "model": "m", "limits": limits or {"max_retries": 0}}
    targets = write_targets(tmp_path / "targets.json", target)
    archive = tmp_path / "audits"
    args = ["run", str(suite), "--targets", str(targets), "--archive", str(archive), "--quiet", *extra]
    return CliRunner().invoke(cli, args), archive


def rows(archive: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    glob = archive / "runs" / "*" / "responses" / "part-*.parquet"
    return con.execute(sql.replace("responses", f"read_parquet('{glob}')")).fetchall()


def test_every_malformed_shape_becomes_a_row_and_the_run_finishes(tmp_path: Path, server: Any) -> None:
    served: dict[str, int] = {}

    def responder(request: dict[str, Any]) -> Scripted:
        prompt = request["messages"][-1]["content"]
        n = served.setdefault(prompt, len(served))
        return Scripted(raw=SHAPES[n % len(SHAPES)][1])

    result, archive = run(tmp_path, server(responder).url)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    manifest = json.loads(next((archive / "runs").glob("*/manifest.json")).read_text())
    assert manifest["status"] == "complete"
    stored = rows(archive, "SELECT count(*), count(DISTINCT item_id) FROM responses")
    assert stored == [(manifest["planned_items"], manifest["planned_items"])]
    assert CliRunner().invoke(cli, ["verify", "--archive", str(archive)]).exit_code == 0


def test_a_hostile_reply_cannot_stop_a_resume_either(tmp_path: Path, server: Any) -> None:
    srv = server(lambda request: Scripted(raw=b'{"choices": [{"message": {"content": "a\\ud800b"}}]}'))
    result, archive = run(tmp_path, srv.url)
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    again = CliRunner().invoke(cli, ["run", "--resume", run_id, "--archive", str(archive), "--quiet"])
    assert again.exit_code == 0, again.output
    assert rows(archive, "SELECT DISTINCT content FROM responses") == [("a\\ud800b",)]


def test_an_echoed_api_key_is_redacted_everywhere(tmp_path: Path, server: Any, monkeypatch: Any) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("HOSTILE_KEY", secret)
    calls: list[int] = []

    def responder(request: dict[str, Any]) -> Scripted:
        calls.append(1)
        if len(calls) % 2:
            return Scripted(chat_body(f"your key is {secret}", model=f"model-{secret}"))
        return Scripted(error_body(400, f"bad key {secret}"), status=400)

    suite = tmp_path / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE))
    target = {"name": "t", "base_url": server(responder).url, "model": "m", "api_key_env": "HOSTILE_KEY"}
    targets = write_targets(tmp_path / "targets.json", target)
    archive = tmp_path / "audits"
    result = CliRunner().invoke(cli, ["run", str(suite), "--targets", str(targets), "--archive", str(archive)])
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    for path in archive.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert ("your key is [REDACTED]",) in rows(archive, "SELECT DISTINCT content FROM responses")
    assert ("Error code: 400 - bad key [REDACTED]",) in rows(archive, "SELECT DISTINCT error_message FROM responses")
    out = CliRunner().invoke(cli, ["report", "latest", "--archive", str(archive), "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    for path in (tmp_path / "r").iterdir():
        assert secret.encode() not in path.read_bytes()


@pytest.mark.parametrize("url", ["http://user:S3CRET-PASS@127.0.0.1:9/v1", "https://S3CRET-PASS@api.example.com/v1"])
def test_credentials_in_a_base_url_are_refused_and_never_echoed(tmp_path: Path, url: str) -> None:
    suite = tmp_path / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE))
    targets = write_targets(tmp_path / "targets.json", {"name": "t", "base_url": url, "model": "m"})
    archive = tmp_path / "audits"
    for args in (
        ["run", str(suite), "--targets", str(targets), "--archive", str(archive)],
        ["run", str(suite), "--target", f"name=t,base_url={url},model=m", "--archive", str(archive)],
        ["validate", str(targets)],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "S3CRET" not in result.output
        assert result.stderr.splitlines()[0].endswith(
            "/targets/0/base_url: base_url carries credentials (user:password@host); they would be stored in the "
            "archive and printed in reports: remove them and give the key with api_key_env"
        )
    assert not archive.exists()


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil"


def test_query_output_escapes_terminal_control_characters(tmp_path: Path, server: Any) -> None:
    result, archive = run(tmp_path, server(lambda request: Scripted(chat_body(HOSTILE))).url)
    assert result.exit_code == 0, result.output
    sql = "SELECT content FROM responses LIMIT 1"
    for fmt in ("table", "json"):
        out = CliRunner().invoke(cli, ["query", sql, "--format", fmt, "--archive", str(archive)])
        assert out.exit_code == 0
        for char in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert char not in out.stdout, (fmt, out.stdout)
    table = CliRunner().invoke(cli, ["query", sql, "--archive", str(archive)])
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eevil" in table.stdout
    piped = CliRunner().invoke(cli, ["query", sql, "--format", "csv", "--archive", str(archive)])
    assert piped.stdout == f"content\n{HOSTILE}\n"  # CSV into a pipe or file keeps the data byte for byte
    assert format_rows(["content"], [(HOSTILE,)], "csv", terminal=True) == (
        "content\n\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eevil\n"
    )


def test_an_endpoint_error_message_reaches_stderr_escaped(tmp_path: Path, server: Any) -> None:
    srv = server(lambda request: Scripted(error_body(401, "denied " + HOSTILE), status=401))
    result, _ = run(tmp_path, srv.url)
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "denied \\x1b]0;owned\\x07" in line
    for char in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert char not in result.stderr


def test_a_giant_reply_is_clipped_in_the_report(tmp_path: Path, server: Any) -> None:
    long_reply = "I will help. " + "A" * 400 + " " + "word " * 150_000
    result, archive = run(tmp_path, server(lambda request: Scripted(chat_body(long_reply))).url)
    assert result.exit_code == 0, result.output
    out = CliRunner().invoke(cli, ["report", "latest", "--archive", str(archive), "--out", str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    html = next((tmp_path / "r").glob("*.html")).read_text()
    assert "more characters cut here; the archive holds the full text" in html
    assert len(html) < 400_000
    assert rows(archive, "SELECT max(length(content)) FROM responses") == [(len(long_reply),)]


class Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        Counting.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_the_pdf_renderer_fetches_nothing(tmp_path: Path, server: Any) -> None:
    from auditor.resources import data_dir

    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    Counting.hits.clear()
    result, archive = run(tmp_path, server(lambda request: Scripted(chat_body("fine"))).url)
    assert result.exit_code == 0, result.output
    templates = tmp_path / "templates"
    templates.mkdir()
    original = (data_dir("report_templates") / "report.html.j2").read_text()
    url = f"http://127.0.0.1:{listener.server_address[1]}"
    probe = f'<img src="{url}/image.png"><link rel="stylesheet" href="{url}/style.css">'
    (templates / "report.html.j2").write_text(original.replace("</body>", probe + "</body>"))
    out = CliRunner().invoke(
        cli,
        ["report", "latest", "--templates", str(templates), "--archive", str(archive), "--out", str(tmp_path / "r")],
    )
    listener.shutdown()
    assert out.exit_code == 0, out.output
    assert Counting.hits == []
