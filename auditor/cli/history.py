"""Commands that read the archive as a record over time: history (pass rates, verdicts and sign-offs per run) and
index (the whole archive as a static site)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from auditor.cli.console import printable
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE

if TYPE_CHECKING:
    from auditor.archive.acts import Signoff
    from auditor.report.history import BuildReport, SuiteHistory, TargetHistory


@click.command()
@click.option("--target", help="Only this target's history.")
@click.option("--suite", "suite_id", metavar="ID", help="Only this suite's runs (by suite id).")
@click.option("--context", help="Only this deployment context's verdicts and sign-offs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ARCHIVE
def history(target: str | None, suite_id: str | None, context: str | None, fmt: str, archive: Path) -> None:
    """Pass rate per suite, target and challenge over every graded run, with each run's verdicts and sign-offs.

    "down" or "up" after a rate marks a significant change from the previous graded run of the suite and target
    (McNemar's exact test on the paired trials, p < 0.05; the p-value is listed under the table). Runs without a
    report (not graded, failing verification) are listed with the reason. No model is called.

    \b
    auditor history
    auditor history --suite jailbreak --target gpt-4o-mini
    auditor history --context high-stakes --format json > history.json
    """
    import json

    from auditor.report import history as timeline

    found = timeline.history(_existing(archive), _build(archive), target, suite_id, context)
    if fmt == "json":
        click.echo(json.dumps(timeline.to_json(found), indent=2, ensure_ascii=True))
        return
    blocks = [_block(suite, t) for suite in found.suites for t in suite.targets]
    unread = [e for e in found.runs if not e.suite_id]
    if unread:
        blocks.append("\n".join(["runs that cannot be read:", *(f"  {e.run_id}: {e.reason}" for e in unread)]))
    click.echo(printable("\n\n".join(blocks)))


@click.command("index")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the site into (created; its pages are replaced on every run).",
)
@ARCHIVE
def index_cmd(out: Path, archive: Path) -> None:
    """Write the archive as a static site: an index of the runs, each run's report, and a history page per suite.

    The pages open from file:// with no network and no script (share the folder, or serve it as it is). Runs
    without a report are listed with the reason. Prints the path of index.html.

    \b
    auditor index --out site/
    auditor index --out /srv/audits-site --archive /shared/audits
    """
    from auditor.report.index import write_site
    from auditor.report.render import render_html

    click.echo(printable(str(write_site(_existing(archive), out, _build(archive), render_html))))


def _existing(archive: Path) -> Path:
    """The archive folder, checked to exist (a missing one is a usage error)."""
    from auditor.archive.store import Archive

    return Archive.existing(archive).root


def _build(archive: Path) -> BuildReport:
    """Builds a run's report as `auditor report` does (verified first; an ungraded run is an error)."""
    from auditor import pipeline

    return lambda run: pipeline.report(archive, run)


def _block(suite: SuiteHistory, target: TargetHistory) -> str:
    """One suite and target: a row per run (rates with markers, verdicts, sign-offs), then the changes flagged and
    the reasons runs have no figures."""
    names = ["run", "date", *(c for c, _ in suite.challenges), *(c for c, _ in suite.contexts), "sign-offs"]
    if len(names) == 3:  # no run of the suite has figures (nor sign-offs): the column says why
        names[-1] = "state"
    rows: list[list[str]] = []
    spans: dict[int, str] = {}  # row index -> why the run has no figures, shown across its figure columns
    notes = []
    for row in target.rows:
        cells = [row.run.run_id, row.run.when]
        if row.run.reported:
            for rate, change in zip(row.rates, row.changes):
                mark = f" {change.direction}" if change is not None and change.significant else ""
                cells.append("-" if rate is None else f"{_pct(rate.rate)}{mark}")
            cells += [d or "-" for d in row.decisions]
            cells.append("; ".join(_signoff(s) for s in row.signoffs))
        else:
            spans[len(rows)] = row.run.state
            notes.append(f"  {row.run.run_id}: {row.run.reason}")
        rows.append(cells)
    widths = [min(60, max([len(n), *(len(r[i]) for r in rows if i < len(r))])) for i, n in enumerate(names)]
    widths[-1] = 0  # the last column is not padded or cut
    lines = [f"{suite.suite_id} ({suite.title}), target {target.target}"]
    for i, cells in enumerate([names, *rows]):
        text = "  ".join(_fit(v, w) for v, w in zip(cells, widths))
        lines.append((f"{text}  {spans[i - 1]}" if i - 1 in spans else text).rstrip())
    flagged = [c for c in target.changes if c.significant]
    if flagged:
        lines.append("significant changes (McNemar exact test on paired trials, p < 0.05):")
        lines += [
            f"  {c.run_id} {c.challenge_id}: {c.direction}, {_pct(c.before)} -> {_pct(c.now)} since {c.since} "
            f"(p = {c.p_value:.2g}, {c.n} paired trials)"
            for c in flagged
        ]
    if notes:
        lines += ["runs without figures:", *notes]
    lines += [f"note: {n}" for n in suite.notes]
    return "\n".join(lines)


def _fit(value: str, width: int) -> str:
    if not width:
        return value
    return (value if len(value) <= width else value[: width - 3] + "...").ljust(width)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _signoff(s: Signoff) -> str:
    who = f"{s.name}, {s.role}" if s.role else s.name
    extra = (" override" if s.override else "") + (f" until {s.expires}" if s.expires else "")
    target = f" {s.target}" if s.target else ""
    return f"{s.signoff_id} {s.context}{target}: {s.decision} ({who}){extra}"
