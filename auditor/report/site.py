"""Serves an archive on 127.0.0.1: an index of its runs, and each run's HTML report rendered when asked for.

Routes: `/` lists the runs newest first; `/runs/RUN_ID/` is that run's report; `/latest/` redirects to the newest
run's report. Anything else is 404. A run id is looked up among the archive's runs, never joined into a path, so a
request cannot read files. Rendering is done by a function the caller passes in (the orchestration module builds
reports, and this stage sits upstream of it); its HTML is kept per run until the run's ledger head moves.
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from auditor.archive.store import Archive, RunDir, connect, outcome_counts, read_rows
from auditor.errors import AuditorError, ConfigError, clip
from auditor.report.history import RunEntry
from auditor.report.render import _decision_class

HOST = "127.0.0.1"
# The form clock.new_id gives run ids; a requested id must have it before it is looked up at all.
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
RUN_PATH = re.compile(r"/runs/([^/]*)(/?)")

RenderRun = Callable[[RunDir], str]

# Every page: no sniffing, no referrer, no framing, nothing kept in a cache (a re-graded run changes its report).
COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
# The index and error pages run no script and load nothing; their one stylesheet is inline.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A report carries its own policy in a meta tag, which pins its one script by hash. Both policies apply, so this
# header narrows nothing the meta allows; it adds what a meta tag cannot say (frame-ancestors) and keeps the
# network shut should a custom template drop the meta.
REPORT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class RunRow:
    """One run as the index lists it."""

    run_id: str
    label: str
    status: str
    suite_id: str
    suite_version: str
    targets: tuple[str, ...]
    started_at: str
    planned: int
    graded: int
    passed: int
    failed: int
    errored: int
    unparseable: int


@dataclass(frozen=True)
class Page:
    """A reply: status, headers and body."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def run_rows(root: Path) -> list[RunRow]:
    """Every run of the archive with its headline counts, newest first."""
    rows = read_rows(
        connect(root),
        "SELECT r.run_id, coalesce(r.label, '') AS label, r.status, r.suite_id, r.suite_version, "
        "r.targets, r.started_at, r.planned_items AS planned, count(g.item_id) AS graded, "
        f"{outcome_counts('g')} FROM runs r LEFT JOIN grades g USING (run_id) GROUP BY ALL ORDER BY r.run_id DESC",
    )
    return [RunRow(**{**row, "targets": tuple(row["targets"] or ())}) for row in rows]


STYLE = """
:root { --ink: #1d2330; --muted: #5b6474; --line: #e2e6ed; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #f5f6f8; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 20px 28px; }
h1 { margin: 0; font-size: 20px; font-weight: 650; }
header p, footer { margin: 4px 0 0; color: var(--muted); font-size: 14px; }
main { padding: 24px 28px; }
footer { padding: 0 28px 28px; }
table { border-collapse: separate; border-spacing: 0; width: 100%; background: #fff; border: 1px solid var(--line);
  border-radius: 8px; }
td { font-size: 14px; }
th, td { padding: 9px 9px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
tr:last-child td { border-bottom: 0; }
th { font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; color: var(--muted);
  background: #fafbfc; white-space: nowrap; }
th:first-child { border-top-left-radius: 8px; } th:last-child { border-top-right-radius: 8px; }
tbody tr:hover td { background: #f3f7fd; }
.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.id, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.id { white-space: nowrap; }
.label { min-width: 10em; max-width: 24em; overflow-wrap: break-word; }
.scroll { overflow-x: auto; }
.nowrap { white-space: nowrap; } .version { color: var(--muted); }
.when { white-space: nowrap; color: var(--muted); }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.complete { background: #e2f3e7; color: #17662f; } .running { background: #e3ecfb; color: #1f4f9a; }
.stopped { background: #fcefd8; color: #875800; } .other { background: #eceef2; color: #444; }
.pass { color: #17662f; } .fail { color: #a31515; } .error { color: #875800; } .zero { color: #b0b6c1; }
.message { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; max-width: 60em;
  overflow-wrap: anywhere; }
"""

TEMPLATES = {
    "base": """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{% if policy %}<meta http-equiv="Content-Security-Policy" content="{{ policy }}">
{% endif %}
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style>{{ style | safe }}</style>{# STYLE, a constant of this module: the one unescaped value #}
</head>
<body>
<header><h1>{{ title }}</h1>{% block sub %}{% endblock %}</header>
<main>{% block main %}{% endblock %}</main>
<footer>{{ footer }} <a href="{{ home }}">All runs</a></footer>
</body>
</html>
""",
    "index": """{% extends "base" %}
{% from "macros" import decision, signoff %}
{% block sub %}<p>{{ rows | length }} run{{ "" if rows | length == 1 else "s" }} in <code>{{ archive }}</code>,
newest first</p>{% endblock %}
{% block main %}
{% if suites %}
<h2>Suites over time</h2>
<ul class="suites">
{% for s in suites %}<li><a href="{{ s.href }}">{{ s.suite_id }}</a> {{ s.title }}
<span class="version">{{ s.runs }} run{{ "" if s.runs == 1 else "s" }}</span></li>
{% endfor %}
</ul>
<h2>Runs</h2>
{% endif %}
{% if rows %}
<div class="scroll"><table>
{% set brief = details is not none %}{# the written index: verdicts and sign-offs instead of counts #}
<thead><tr><th>Run</th>{% if not brief %}<th>Label</th>{% endif %}<th>Status</th><th>Suite</th>
{% if not brief %}<th>Targets</th>{% endif %}<th>Started (UTC)</th>
{% if not brief %}
<th class="n">Graded</th><th class="n">Pass</th><th class="n">Fail</th>
<th class="n">Error</th><th class="n" title="unparseable">Unparsed</th>
{% else %}
<th>Verdict per target and context</th><th>Sign-offs</th>
{% endif %}
</tr></thead>
<tbody>
{% for r in rows %}
{% set href = link(r.run_id) %}
<tr>
<td class="id">{% if href %}<a href="{{ href }}">{{ r.run_id }}</a>{% else %}{{ r.run_id }}{% endif %}
{% if brief and r.label %}<div class="label sub">{{ r.label | truncate(160) }}</div>{% endif %}</td>
{% if not brief %}<td class="label">{{ r.label | truncate(160) }}</td>{% endif %}
<td><span class="badge {{ badge(r.status) }}">{{ r.status }}</span></td>
<td class="nowrap">{{ r.suite_id }}{{ "<br>" | safe if brief }} <span class="version">{{ r.suite_version }}</span></td>
{% if not brief %}
<td>{% for t in r.targets %}<span class="nowrap">{{ t }}</span>{{ ", " if not loop.last }}{% endfor %}</td>
{% endif %}
<td class="when">{{ r.started_at[:10] }}<br>{{ r.started_at[11:19] }}</td>
{% if not brief %}
<td class="n">{{ "{:,}".format(r.graded) }} <span class="version">of {{ "{:,}".format(r.planned) }}</span></td>
{% for value, kind in [(r.passed, "pass"), (r.failed, "fail"), (r.errored, "error"), (r.unparseable, "error")] %}
<td class="n {{ kind if value else 'zero' }}">{{ "{:,}".format(value) }}</td>
{% endfor %}
{% else %}
{% set d = details[r.run_id] %}
{% if d.reason %}
<td colspan="2" class="problem"><strong>{{ d.state }}</strong>: {{ d.reason | truncate(400) }}
{% if r.targets %}<div class="sub">targets: {{ r.targets | join(", ") }}</div>{% endif %}</td>
{% else %}
<td>{% for v in d.verdicts %}<div class="verdict">{{ v.target }} <span class="version">{{ v.context }}</span>
{{ decision(v.decision) }}</div>{% endfor %}</td>
<td>{% for s in d.signoffs %}{{ signoff(s) }}{% else %}<span class="version">none</span>{% endfor %}</td>
{% endif %}
{% endif %}
</tr>
{% endfor %}
</tbody>
</table></div>
{% else %}
<p class="message">No runs in this archive yet. Run a suite first: <code>auditor run SUITE</code>.</p>
{% endif %}
{% endblock %}
""",
    "macros": """{% macro decision(text) %}<span class="decision {{ decision_class(text) }}">{{ text }}</span>
{%- endmacro %}
{% macro signoff(s) %}<div class="signoff"><span class="id">{{ s.signoff_id }}</span> {{ s.context }}{{
(" · " ~ s.target) if s.target }}: {{ decision(s.decision) }}{% if s.override %}
<span class="badge stopped" title="the decision differs from the computed verdict">override</span>{% endif %}<br>
<span class="version">{{ s.name }}, {{ s.role }}, {{ s.signed_at[:10] }}{{ (", until " ~ s.expires) if s.expires
}}</span></div>{% endmacro %}
""",
    "message": """{% extends "base" %}
{% block main %}<p class="message">{{ message }}</p>{% endblock %}
""",
}


def _badge(status: str) -> str:
    return {"complete": "complete", "running": "running", "interrupted": "stopped", "capped": "stopped"}.get(
        status, "other"
    )


def environment(extra: Mapping[str, str] | None = None) -> Any:
    """A strict Jinja2 environment for the site's pages (and `extra` templates that extend them): autoescape on
    (labels, target names and replies are free text), undefined names are errors."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.DictLoader({**TEMPLATES, **(extra or {})}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
    )
    env.globals["badge"] = _badge
    env.globals["decision_class"] = _decision_class
    return env


@dataclass(frozen=True)
class Frame:
    """What differs between the served site and the written one: where "All runs" points, the footer, and the
    policy a page carries in a meta tag ("" where the server sends it as a header)."""

    home: str
    footer: str
    policy: str = ""
    style: str = ""  # CSS added to the site's STYLE


SERVED = Frame("/", "Reports are rendered from the archive when opened; no model is called.")


def index_html(
    env: Any,
    frame: Frame,
    archive: Path,
    rows: Sequence[Any],
    link: Callable[[str], str | None],
    details: Mapping[str, RunEntry] | None = None,
    suites: Sequence[Any] = (),
) -> str:
    """The index of an archive's runs, newest first: the one builder behind the server's / and `auditor index`.
    `rows` are RunRows (shown with their counts) or, with `details` by run id, RunEntries (shown with verdicts and
    sign-offs, or why there is no report); `link` gives a run's href, or None to list it unlinked; `suites` are
    history pages (suite_id, title, runs, href) to list first."""
    return str(
        env.get_template("index").render(
            title="auditor runs",
            style=STYLE + frame.style,
            archive=str(archive),
            rows=rows,
            link=link,
            details=details,
            suites=suites,
            home=frame.home,
            footer=frame.footer,
            policy=frame.policy,
        )
    )


class Site:
    """What the server knows: the archive, how to render a run, and the reports rendered so far."""

    def __init__(self, root: Path, render: RenderRun) -> None:
        self.archive = Archive(root)
        self.render = render
        self.env = environment()
        self.reports: dict[str, tuple[str, str]] = {}  # run id -> (ledger head when rendered, HTML)
        self.lock = threading.Lock()  # one render at a time: two requests for a run render it once

    def page(self, path: str) -> Page:
        """The reply to a GET of `path` (the URL path, still percent-encoded); never raises."""
        try:
            return self._route(path)
        except AuditorError as exc:
            return self.message(500, "Cannot show this page", str(exc))
        except Exception as exc:  # a bug in rendering: one line on the page, and the server keeps serving
            return self.message(500, "Internal error", f"internal error: {type(exc).__name__}: {exc}")

    def _route(self, path: str) -> Page:
        if path == "/":
            rows = run_rows(self.archive.root)
            html = index_html(self.env, SERVED, self.archive.root, rows, lambda run_id: f"/runs/{quote(run_id)}/")
            return Page(200, html.encode("utf-8"), _html(PAGE_POLICY))
        if path.rstrip("/") == "/latest":
            runs = self.archive.runs()
            if not runs:
                return self.message(404, "No runs", f"{self.archive.root}: no runs in this archive yet")
            return _redirect(f"/runs/{runs[-1].run_id}/")
        match = RUN_PATH.fullmatch(path)
        if match is None:
            return self.message(404, "Not found", f"nothing at {clip(unquote(path), 200)}")
        run = self.find(unquote(match.group(1)))
        if run is None:
            shown = clip(unquote(match.group(1)), 80)
            return self.message(404, "No such run", f"no run '{shown}' in this archive (the index lists every run)")
        if not match.group(2):
            return _redirect(f"/runs/{run.run_id}/")
        return Page(200, self.report(run).encode("utf-8"), _html(REPORT_POLICY))

    def find(self, run_id: str) -> RunDir | None:
        """The run with exactly this id, or None; an id not in the run id format is not looked up."""
        if not RUN_ID.fullmatch(run_id):
            return None
        return next((r for r in self.archive.runs() if r.run_id == run_id), None)

    def report(self, run: RunDir) -> str:
        """The run's report HTML, rendered again only when the run's ledger has moved (a resume or a re-grade)."""
        with self.lock:
            head = run.head()
            kept = self.reports.get(run.run_id)
            if kept is not None and kept[0] == head:
                return kept[1]
            html = self.render(run)
            self.reports[run.run_id] = (head, html)
            return html

    def message(self, status: int, title: str, text: str) -> Page:
        """A page of one message (404s and 500s)."""
        html = self.env.get_template("message").render(
            title=title, style=STYLE, message=text, home=SERVED.home, footer=SERVED.footer, policy=""
        )
        return Page(status, html.encode("utf-8"), _html(PAGE_POLICY))


def _html(policy: str) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", policy))


def _redirect(location: str) -> Page:
    return Page(302, b"", (("Location", location),))


class Handler(BaseHTTPRequestHandler):
    """Answers GET and HEAD from the site; other methods get http.server's 501."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: SiteServer

    def version_string(self) -> str:
        return "auditor"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the CLI prints the one URL
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._reply(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._reply(with_body=False)

    def _reply(self, with_body: bool) -> None:
        page = self.server.site.page(urlsplit(self.path).path or "/")
        self.send_response(page.status)
        for name, value in COMMON_HEADERS + page.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(page.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(page.body)


class SiteServer(ThreadingHTTPServer):
    """The HTTP server of one site, bound to 127.0.0.1; serve_forever() in a thread, shutdown() to stop."""

    daemon_threads = True

    def __init__(self, site: Site, port: int) -> None:
        self.site = site
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}/"


def serve(archive: Path, port: int, render: RenderRun) -> SiteServer:
    """A server for the archive's index and reports, listening on 127.0.0.1 but not yet serving.

    Args:
        archive: The archive folder.
        port: The port; 0 picks a free one (read it back from `url`).
        render: Renders one run's report to HTML (raises AuditorError when it cannot, e.g. an ungraded run).

    Returns:
        The server; call serve_forever() (in a thread, for tests), then shutdown() and server_close().
    """
    try:
        return SiteServer(Site(archive, render), port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {HOST} is in use: choose another with --port, or 0 for a free one"
            ) from None
        raise ConfigError(f"cannot serve on {HOST}:{port}: {exc.strerror or exc}") from None
