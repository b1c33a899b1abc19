"""Writes the archive as a static site that opens from file:// with no network and no script: an index of the
runs (the server's index, linked to files), each run's report, and a page per suite with its history and trends.

Layout of the folder written:

    OUT/index.html              every run, newest first, with verdicts and sign-offs, or why it has no report
    OUT/runs/RUN_ID.html        each run's report, as `auditor report` renders it
    OUT/suites/SUITE_ID.html    a suite's history per target: a table and a trend chart per challenge

Every file is written to a temporary name and renamed, so a re-run replaces the site file by file; pages of runs or
suites the archive no longer reports are removed. Reports are built and rendered by functions the caller passes in
(the orchestration module builds reports, and this stage sits upstream of it).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from auditor.archive.store import RunDir
from auditor.errors import AuditorError
from auditor.report.analyse import Report
from auditor.report.charts import FILLS, GRID, INK, MUTED, WIDTH, Chart, _clip, _line, _svg, _text
from auditor.report.history import BuildReport, Change, Rate, SuiteHistory, TargetHistory, history
from auditor.report.site import RUN_ID, STYLE, Frame, environment, index_html
from auditor.report.verdicts import pct

RenderReport = Callable[[Report], str]

# The pages' own policy, in a meta tag (a file has no headers): nothing loads, no script runs, the charts are inline.
STATIC_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
FOOTER = "Written by auditor index from the archive; no model was called. The pages open offline."
SUITE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")  # the suite schema's id form: safe as a file name
UP, DOWN = "#2e7d32", "#a31515"

# The written pages' additions to the site's STYLE: decisions in word, colour and symbol (as in the report),
# sign-offs, reasons a run has no report, and the suite pages' tables and charts.
STATIC_STYLE = """
h2 { font-size: 16px; font-weight: 650; margin: 26px 0 10px; } main > h2:first-child { margin-top: 0; }
.decision { font-weight: 600; white-space: nowrap; } .ok { color: #17662f; } .warn { color: #875800; }
.unknown { color: #4b5563; } .bad { color: #a31515; } .decision.ok::before { content: "✓ "; }
.decision.warn::before { content: "◐ "; } .decision.unknown::before { content: "? "; }
.decision.bad::before { content: "✗ "; }
.problem { color: #a31515; min-width: 16em; max-width: 40em; overflow-wrap: anywhere; }
.signoff { min-width: 11em; font-size: 13px; } .signoff + .signoff { margin-top: 6px; }
.verdict { white-space: nowrap; font-size: 13px; }
.sub { color: var(--muted); font: 13px/1.4 system-ui, sans-serif; white-space: normal; max-width: 18em;
  overflow-wrap: anywhere; }
ul.suites { margin: 0; padding-left: 1.2em; }
.history td { min-width: 7em; } .history th.context { min-width: 10em; } .history td.n { min-width: 5.5em; }
.history .decision { white-space: normal; }
.ci { color: var(--muted); font-size: 12px; white-space: nowrap; }
.up { color: #17662f; font-weight: 700; } .down { color: #a31515; font-weight: 700; }
figure { margin: 14px 0 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
figure svg { display: block; max-width: 760px; height: auto; }
figcaption, .changes { color: var(--muted); font-size: 13px; } .changes { margin: 10px 0 0; padding-left: 1.2em; }
section + section { margin-top: 34px; } .note { color: var(--muted); font-size: 13px; max-width: 60em; }
"""

SUITE_PAGE = """{% extends "base" %}
{% from "macros" import decision, signoff %}
{% block sub %}<p>Suite <code>{{ suite.suite_id }}</code> over {{ runs }} run{{ "" if runs == 1 else "s" }}
in <code>{{ archive }}</code>, oldest first</p>{% endblock %}
{% block main %}
<p class="note">Per target and challenge, the pass rate of every graded run with its 95% interval (the report's
figures). <span class="up">&#9650;</span> and <span class="down">&#9660;</span> mark a change from the previous graded
run that McNemar's exact test on the paired trials finds at p &lt; 0.05. # numbers the graded runs, as the charts
do.</p>
{% for t in suite.targets %}
{% set chart = charts[loop.index0] %}
<section>
<h2>{{ t.target }}</h2>
<div class="scroll"><table class="history">
<thead><tr><th class="n">#</th><th>Run</th><th>Started (UTC)</th>
{% for id, title in suite.challenges %}<th class="n" title="{{ title }}">{{ id }}</th>{% endfor %}
{% for id, title in suite.contexts %}<th class="context" title="{{ title }}">{{ id }}</th>{% endfor %}
<th>Sign-offs</th></tr></thead>
<tbody>
{% for row in t.rows %}
{% set href = link(row.run.run_id) %}
<tr>
<td class="n">{{ row.number or "" }}</td>
<td class="id">{% if href %}<a href="{{ href }}">{{ row.run.run_id }}</a>{% else %}{{ row.run.run_id }}{% endif %}
{% if row.run.label %}<div class="sub">{{ row.run.label | truncate(80) }}</div>{% endif %}</td>
<td class="when">{{ row.run.started_at[:10] }}<br>{{ row.run.started_at[11:16] }}</td>
{% if row.run.reported %}
{% for rate in row.rates %}
{% set change = row.changes[loop.index0] %}
<td class="n">{% if rate is none or rate.rate is none %}<span class="zero">&ndash;</span>{% else %}{{ pct(rate.rate) }}
{% if change and change.significant %}<span class="{{ change.direction }}" title="{{ change.text }}">
{{- "&#9650;" | safe if change.direction == "up" else "&#9660;" | safe }}</span>{% endif %}
<br><span class="ci">{{ pct(rate.low) }}&ndash;{{ pct(rate.high) }}</span>{% endif %}</td>
{% endfor %}
{% for d in row.decisions %}<td>{{ decision(d) if d else "" }}</td>{% endfor %}
{% else %}
<td colspan="{{ [suite.challenges | length + suite.contexts | length, 1] | max }}" class="problem">
<strong>{{ row.run.state }}</strong>: {{ row.run.reason | truncate(400) }}</td>
{% endif %}
<td>{% for s in row.signoffs %}{{ signoff(s) }}{% endfor %}</td>
</tr>
{% endfor %}
</tbody></table></div>
{% if chart %}<figure>{{ chart.svg | safe }}<figcaption>{{ chart.caption }}</figcaption></figure>{% endif %}
{% set flagged = t.changes | selectattr("significant") | list %}
{% if flagged %}<ul class="changes">
{% for c in flagged %}
<li><span class="{{ c.direction }}">{{ "&#9650;" | safe if c.direction == "up" else "&#9660;" | safe }}</span>
{% filter replace("\n", " ") %}Run {{ numbers[(t.target, c.run_id)] }} against run {{ numbers[(t.target, c.since)] }}:
{{ c.text }}.{% endfilter %}</li>
{% endfor %}</ul>{% endif %}
</section>
{% endfor %}
{% endblock %}
"""


@dataclass(frozen=True)
class SuiteLink:
    """A suite's history page as the index lists it."""

    suite_id: str
    title: str
    runs: int
    href: str


def write_site(root: Path, out: Path, build: BuildReport, render: RenderReport) -> Path:
    """Write the archive's static site into `out` and return the path of its index.html.

    A run whose report cannot be built (not graded, failing verification) or rendered is listed in the index with
    the reason and without a link; the other runs are written all the same.
    """
    env = environment({"suite": SUITE_PAGE})
    written: set[Path] = set()
    pages: dict[str, str] = {}  # run id -> its report's file, relative to the index
    unrendered: dict[str, str] = {}  # run id -> why its report has no page

    def build_and_write(run: RunDir) -> Report:
        report = build(run)
        if not RUN_ID.fullmatch(run.run_id):
            unrendered[run.run_id] = "the run id is not in the form auditor writes, so no page is named after it"
            return report
        try:
            html = render(report)
        except AuditorError as exc:
            unrendered[run.run_id] = f"its report cannot be rendered: {exc}"
            return report
        written.add(_write(out / "runs" / f"{run.run_id}.html", html))
        pages[run.run_id] = f"runs/{run.run_id}.html"
        return report

    found = history(root, build_and_write)
    entries = [
        replace(e, state="cannot be rendered", reason=unrendered[e.run_id]) if e.run_id in unrendered else e
        for e in found.runs
    ]
    links = []
    for suite in found.suites:
        name = _suite_file(suite.suite_id)
        html = _suite_page(env, root, suite, lambda run_id: f"../{pages[run_id]}" if run_id in pages else None)
        written.add(_write(out / "suites" / name, html))
        runs = len({row.run.run_id for t in suite.targets for row in t.rows})
        links.append(SuiteLink(suite.suite_id, suite.title, runs, f"suites/{name}"))
    frame = Frame("index.html", FOOTER, STATIC_POLICY, STATIC_STYLE)
    index = index_html(env, frame, root, entries, pages.get, {e.run_id: e for e in entries}, links)
    written.add(_write(out / "index.html", index))
    for folder in (out / "runs", out / "suites"):
        for stale in [*folder.glob("*.html"), *folder.glob("*.html.tmp")]:
            if stale not in written:
                stale.unlink()
    return out / "index.html"


def _write(path: Path, text: str) -> Path:
    """Write a page under a temporary name, then rename it over the old one (a reader never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _suite_file(suite_id: str) -> str:
    """A suite's page name: its id where the id has the schema's form, else a digest of it (a hand-edited manifest
    could hold any text)."""
    if SUITE_ID.fullmatch(suite_id):
        return f"{suite_id}.html"
    return f"suite-{hashlib.sha256(suite_id.encode('utf-8')).hexdigest()[:16]}.html"


def _suite_page(env: Any, root: Path, suite: SuiteHistory, link: Callable[[str], str | None]) -> str:
    numbers = {(t.target, row.run.run_id): row.number for t in suite.targets for row in t.rows}
    return str(
        env.get_template("suite").render(
            title=f"{suite.title}: history",
            style=STYLE + STATIC_STYLE,
            archive=str(root),
            suite=suite,
            runs=len({run_id for _, run_id in numbers}),
            charts=[trend(f"trend-{i + 1}", t, suite.challenges) for i, t in enumerate(suite.targets)],
            numbers=numbers,
            link=link,
            pct=pct,
            home="../index.html",
            footer=FOOTER,
            policy=STATIC_POLICY,
        )
    )


PANEL_H, GAP, COLUMNS = 118.0, 16.0, 3


def _triangle(x: float, y: float, up: bool) -> str:
    s, fill = (1, UP) if up else (-1, DOWN)
    points = f"{x:.1f},{y - 6 * s:.1f} {x - 5.5:.1f},{y + 4 * s:.1f} {x + 5.5:.1f},{y + 4 * s:.1f}"
    return f'<polygon points="{points}" fill="{fill}" stroke="{INK}" stroke-width="0.6"/>'


def _said(number: int, rate: Rate, change: Change | None) -> str:
    text = f"run {number} {pct(rate.rate)} ({pct(rate.low)} to {pct(rate.high)})"
    if change is not None and change.significant:
        way = "rise" if change.direction == "up" else "drop"
        text += f", a significant {way} since the run before (McNemar p = {change.p_value:.2g})"
    return text


def trend(chart_id: str, target: TargetHistory, challenges: Sequence[tuple[str, str]]) -> Chart | None:
    """Small multiples of one target's pass rate over its graded runs: a panel per challenge with the rate as a
    line, its 95% interval as a band, and a triangle where the change from the run before is significant. None
    when the target has no graded run."""
    rows = [r for r in target.rows if r.number]
    if not rows or not challenges:
        return None
    columns = min(COLUMNS, len(challenges))
    panel_w = (WIDTH - GAP * (columns + 1)) / columns
    height = GAP + -(-len(challenges) // columns) * (PANEL_H + GAP) + 18
    body = [f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>']
    words = []
    for k, (challenge_id, title) in enumerate(challenges):
        x0, y0 = GAP + (k % columns) * (panel_w + GAP), GAP + (k // columns) * (PANEL_H + GAP)
        left, right, top, bottom = x0 + 30, x0 + panel_w - 8, y0 + 22, y0 + PANEL_H - 16

        def x(i: int, left: float = left, right: float = right) -> float:
            return (left + right) / 2 if len(rows) == 1 else left + (right - left) * i / (len(rows) - 1)

        def y(v: float, top: float = top, bottom: float = bottom) -> float:
            return bottom - (bottom - top) * v

        body.append(_text(x0, y0 + 8, _clip(f"{challenge_id}: {title}", int(panel_w / 5.6)), size=10))
        for tick in (0.0, 0.5, 1.0):
            body.append(_line(left, y(tick), right, y(tick), GRID, 0.8))
            body.append(_text(left - 4, y(tick) + 3, f"{tick:.0%}", "end", 8, MUTED))
        points = [(i, row.rates[k], row.changes[k]) for i, row in enumerate(rows)]
        decided = [(i, r, c) for i, r, c in points if r is not None and r.rate is not None]
        for segment in _runs_of(decided):
            band = [f"{x(i):.1f},{y(r.high):.1f}" for i, r, _ in segment]
            band += [f"{x(i):.1f},{y(r.low):.1f}" for i, r, _ in reversed(segment)]
            body.append(f'<polygon points="{" ".join(band)}" fill="{FILLS[0]}" fill-opacity="0.14"/>')
            if len(segment) > 1:
                line = " ".join(f"{x(i):.1f},{y(r.rate or 0):.1f}" for i, r, _ in segment)
                body.append(f'<polyline points="{line}" fill="none" stroke="{FILLS[0]}" stroke-width="1.6"/>')
            else:
                i, r, _ = segment[0]
                body.append(_line(x(i), y(r.low), x(i), y(r.high), FILLS[0], 1.2))
        for i, r, c in decided:
            if c is not None and c.significant:
                body.append(_triangle(x(i), y(r.rate or 0), c.direction == "up"))
            else:
                body.append(f'<circle cx="{x(i):.1f}" cy="{y(r.rate or 0):.1f}" r="2.6" fill="{FILLS[0]}"/>')
        step = max(1, -(-len(rows) // 12))
        for i, row in enumerate(rows):
            if i % step == 0 or i == len(rows) - 1:
                body.append(_text(x(i), bottom + 12, str(row.number), "middle", 8, MUTED))
        said = [_said(rows[i].number, r, c) for i, r, c in decided]
        words.append(f"{title}: " + ("; ".join(said) if said else "no decided trials"))
    legend_y = height - 8
    body.append(f'<circle cx="{GAP + 4:.1f}" cy="{legend_y - 3:.1f}" r="2.6" fill="{FILLS[0]}"/>')
    body.append(_text(GAP + 12, legend_y, "pass rate of graded run #"))
    body.append(
        f'<rect x="{GAP + 150:.1f}" y="{legend_y - 8:.1f}" width="14" height="8" fill="{FILLS[0]}" '
        'fill-opacity="0.14"/>'
    )
    body.append(_text(GAP + 168, legend_y, "95% interval"))
    body.append(_triangle(GAP + 250, legend_y - 3, True) + _triangle(GAP + 264, legend_y - 3, False))
    body.append(_text(GAP + 274, legend_y, "significant rise / drop since the run before (McNemar, p < 0.05)"))
    alt = f"Pass rate of {target.target} over {len(rows)} graded runs, per challenge. " + ". ".join(words) + "."
    caption = (
        f"{target.target}: pass rate per challenge over the graded runs (numbered as in the table), with the 95% "
        "interval shaded; a triangle marks a significant change from the run before."
    )
    return Chart(chart_id, _svg(chart_id, height, body, alt), caption, alt)


def _runs_of(points: list[tuple[int, Rate, Change | None]]) -> list[list[tuple[int, Rate, Change | None]]]:
    """Points split where a run has no decided rate, so a line never bridges a gap."""
    segments: list[list[tuple[int, Rate, Change | None]]] = []
    for point in points:
        if segments and segments[-1][-1][0] == point[0] - 1:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments
