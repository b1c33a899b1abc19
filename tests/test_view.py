"""`auditor view`: the archive's index and reports over real HTTP on 127.0.0.1, escaped, fenced, and cached."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import MINI_SUITE, refuse_or_answer, write_targets

from auditor import pipeline
from auditor.archive.store import Archive, RunDir
from auditor.cli import cli
from auditor.errors import ConfigError
from auditor.report import site
from auditor.report.render import render_html
from auditor.run.serve import ChatServer
from auditor.suite.targets import choose

HOSTILE_LABEL = "<script>alert('label')</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: Any) -> Path:
    """An archive with a graded run (hostile label) of the mini suite and a newer run that was never executed."""
    tmp: Path = tmp_path_factory.mktemp("view")
    suite = tmp / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE))
    root = tmp / "audits"
    with ChatServer(refuse_or_answer, model_name="scripted-1") as model:
        targets = write_targets(tmp / "t.json", {"name": "scripted", "base_url": model.url, "model": "scripted-1"})
        ran = CliRunner().invoke(
            cli,
            ["run", str(suite), "--targets", str(targets), "--label", HOSTILE_LABEL, "--archive", str(root), "--quiet"],
        )
        assert ran.exit_code == 0, ran.output
        chosen = list(choose(targets, (), None, None).audited)
        pipeline.start_run(suite, chosen, pipeline.RunOptions(root, label="not yet sent"))
    return root


def render(archive: Path) -> site.RenderRun:
    return lambda run: render_html(pipeline.report(archive, run))


@contextmanager
def serving(archive: Path, render_run: site.RenderRun) -> Iterator[site.SiteServer]:
    server = site.serve(archive, 0, render_run)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server(archive: Path) -> Iterator[site.SiteServer]:
    with serving(archive, render(archive)) as s:
        yield s


def get(server: site.SiteServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """Send `path` as written (no client-side normalising); return status, lower-cased headers and body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read().decode("utf-8")
    finally:
        conn.close()


def run_ids(archive: Path) -> tuple[str, str]:
    """(the graded run, the unsent run)."""
    runs = Archive(archive).runs()
    graded = [r.run_id for r in runs if (r.path / "grades.parquet").is_file()]
    unsent = [r.run_id for r in runs if not (r.path / "grades.parquet").is_file()]
    assert len(graded) == 1 and len(unsent) == 1
    return graded[0], unsent[0]


def test_the_server_binds_loopback_only(server: site.SiteServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.server_port}/" and server.server_port > 0


def test_the_index_lists_every_run_newest_first(server: site.SiteServer, archive: Path) -> None:
    status, headers, body = get(server, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    policy = headers["content-security-policy"]
    assert (
        policy.startswith("default-src 'none';") and "script-src" not in policy and "frame-ancestors 'none'" in policy
    )
    assert headers["x-content-type-options"] == "nosniff"
    graded, unsent = run_ids(archive)
    newest, older = sorted([graded, unsent], reverse=True)
    assert f'<a href="/runs/{newest}/">{newest}</a>' in body and f'<a href="/runs/{older}/">{older}</a>' in body
    assert body.index(newest) < body.index(older)
    assert body.count('mini <span class="version">0.1.0</span>') == 2 and "not yet sent" in body
    assert body.count('<span class="nowrap">scripted</span>') == 2
    assert ">running<" in body and ">complete<" in body
    # the graded run: 7 of 7 graded; the scripted model refuses the 5 harmful asks and names Paris for both capitals
    row = body[body.index(f"/runs/{graded}/") :].split("</tr>")[0]
    assert '<td class="n">7 <span class="version">of 7</span></td>' in row
    cells = [c.split(">", 1)[1].split("<")[0] for c in row.split('<td class="n ')[1:]]
    assert cells == ["6", "1", "0", "0"]


def test_a_hostile_label_is_escaped(server: site.SiteServer) -> None:
    _, _, body = get(server, "/")
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in body


def test_a_run_page_is_its_report(server: site.SiteServer, archive: Path) -> None:
    graded, _ = run_ids(archive)
    status, headers, body = get(server, f"/runs/{graded}/")
    assert status == 200, body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>LLM audit report: Mini suite</title>" in body
    assert graded in body and "scripted" in body
    assert '<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;' in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "<script>alert" not in body  # the label is escaped in the report too
    status, headers, _ = get(server, f"/runs/{graded}")
    assert (status, headers["location"]) == (302, f"/runs/{graded}/")


def test_latest_redirects_to_the_newest_run(server: site.SiteServer, archive: Path) -> None:
    status, headers, body = get(server, "/latest/")
    assert (status, headers["location"], body) == (302, f"/runs/{max(run_ids(archive))}/", "")


@pytest.mark.parametrize(
    "path",
    [
        "/nothing-here",
        "/runs/20990101T000000Z-abcdef/",
        "/runs/..%2F..%2Fetc/",
        "/runs/../../etc/passwd",
        "/runs/%2e%2e/%2e%2e/etc/passwd",
        "/runs/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/runs/{prefix}/",
        "/runs/{graded}/manifest.json",
        "/runs/{graded}/../../",
    ],
    ids=["unknown", "no-such-run", "encoded", "dot-dot", "encoded-dots", "passwd", "prefix", "file", "up"],
)
def test_unknown_paths_and_traversal_are_404(server: site.SiteServer, archive: Path, path: str) -> None:
    graded, _ = run_ids(archive)
    status, headers, body = get(server, path.format(graded=graded, prefix=graded[:10]))
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "root:" not in body and "ledger" not in body and "<title>LLM audit report" not in body


def test_no_such_run_is_said_plainly(server: site.SiteServer) -> None:
    status, _, body = get(server, "/runs/20990101T000000Z-abcdef/")
    assert status == 404 and "no run &#39;20990101T000000Z-abcdef&#39; in this archive" in body


def test_a_run_that_cannot_render_is_a_500_and_the_server_keeps_serving(server: site.SiteServer, archive: Path) -> None:
    _, unsent = run_ids(archive)
    status, headers, body = get(server, f"/runs/{unsent}/")
    assert status == 500
    assert f"run {unsent} has not been graded: auditor grade {unsent}" in body
    assert headers["content-security-policy"].startswith("default-src 'none';")
    assert get(server, "/")[0] == 200


def test_a_rendering_bug_is_one_line_and_the_server_keeps_serving(archive: Path) -> None:
    def broken(run: RunDir) -> str:
        raise KeyError("boom")

    graded, _ = run_ids(archive)
    with serving(archive, broken) as s:
        status, _, body = get(s, f"/runs/{graded}/")
        assert status == 500 and "internal error: KeyError: &#39;boom&#39;" in body
        assert get(s, "/")[0] == 200


def test_a_report_is_rendered_once_until_its_run_changes(archive: Path) -> None:
    calls: list[str] = []

    def counted(run: RunDir) -> str:
        calls.append(run.run_id)
        return render(archive)(run)

    graded, _ = run_ids(archive)
    with serving(archive, counted) as s:
        first = get(s, f"/runs/{graded}/")[2]
        assert get(s, f"/runs/{graded}/")[2] == first and calls == [graded]
        pipeline.grade_run(Archive(archive).run(graded))  # a re-grade moves the run's ledger head
        assert get(s, f"/runs/{graded}/")[0] == 200 and calls == [graded, graded]


def test_head_requests_send_no_body(server: site.SiteServer) -> None:
    status, headers, body = get(server, "/", method="HEAD")
    assert status == 200 and body == "" and int(headers["content-length"]) > 0


def test_a_busy_port_is_a_config_error(archive: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            site.serve(archive, port, render(archive))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@pytest.mark.parametrize(
    ("where", "extra", "code", "message"),
    [
        ("empty", [], 2, "error: {archive}: no runs in this archive (run `auditor run SUITE` first)"),
        (
            "missing",
            [],
            2,
            "error: {archive}: no archive here: the folder does not exist (give --archive, or run a suite first)",
        ),
        ("full", ["20990101T000000Z-abcdef"], 2, "error: unknown run '20990101T000000Z-abcdef'"),
        (
            "full",
            ["--port", "{port}"],
            1,
            "error: port {port} on 127.0.0.1 is in use: choose another with --port, or 0 for a free one",
        ),
    ],
    ids=["no-runs", "no-archive", "unknown-run", "busy-port"],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, archive: Path, busy_port: int, where: str, extra: list[str], code: int, message: str
) -> None:
    root = {"empty": tmp_path, "missing": tmp_path / "nope", "full": archive}[where]
    args = ["view", "--no-open", "--archive", str(root), *[a.format(port=busy_port) for a in extra]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(archive=root, port=busy_port))
    assert result.stdout == ""


def test_cli_serves_opens_the_run_and_stops_on_ctrl_c(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", browser)
    fetched: list[tuple[int, dict[str, str], str]] = []

    def interrupted(self: site.SiteServer, poll_interval: float = 0.5) -> None:
        """Serve one request of the index, then be interrupted as by Ctrl-C."""
        client = threading.Thread(target=lambda: fetched.append(get(self, "/")))
        client.start()
        self.handle_request()
        client.join(30)
        raise KeyboardInterrupt

    monkeypatch.setattr(site.SiteServer, "serve_forever", interrupted)
    graded, _ = run_ids(archive)
    result = CliRunner().invoke(cli, ["view", graded[:-2], "--archive", str(archive)])  # a unique prefix
    assert result.exit_code == 0, result.output
    first, last = result.stdout.splitlines()
    assert first.startswith(f"serving {archive} at http://127.0.0.1:") and first.endswith("/ (Ctrl-C to stop)")
    assert last == "stopped"
    url = first.split(" at ")[1].split(" ")[0]
    assert opened == [f"{url}runs/{graded}/"]
    assert [(status, "auditor runs" in body) for status, _, body in fetched] == [(200, True)]


def test_help_shows_examples() -> None:
    result = CliRunner().invoke(cli, ["view", "--help"])
    assert result.exit_code == 0
    assert "auditor view --no-open --archive audits/" in result.output and "--port" in result.output
