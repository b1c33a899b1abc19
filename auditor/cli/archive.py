"""Commands that read the archive and call no model: report, query, verify, compare, runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows, printable
from auditor.cli.options import ARCHIVE_LOCATION, shown
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE
from auditor.errors import AuditorError, UsageError


@click.command()
@click.argument("run_id", default="latest")
@click.option(
    "--format",
    "formats",
    default="html,pdf,csv",
    show_default=True,
    help="Comma-separated: html, pdf, csv (every probe's figures, which the report summarises).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A folder of templates to use before the bundled ones (override one partial, keep the rest).",
)
@click.option("--baseline", metavar="RUN", help="An earlier run to report the change since, trial by trial.")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report settings (JSON): organisation, prepared_for, logo, classification, version, language.",
)
@click.option("--organisation", help="Who prepared the report.")
@click.option("--prepared-for", help="Who commissioned it.")
@click.option("--logo", type=click.Path(dir_okay=False, path_type=Path), help="A PNG, JPEG or SVG logo (embedded).")
@click.option("--classification", help="A classification marking, e.g. CONFIDENTIAL, on every page.")
@click.option("--report-version", help="The report's own version, e.g. 1.0 or draft 2.")
@click.option("--language", help="Language of the report's fixed text: en (default) or fr.")
@click.option("--as-of", metavar="YYYY-MM-DD", help="Decide waivers and expiries as of this date (default today).")
@ARCHIVE
def report(
    run_id: str,
    formats: str,
    out: Path,
    templates: Path | None,
    baseline: str | None,
    settings_file: Path | None,
    organisation: str | None,
    prepared_for: str | None,
    logo: Path | None,
    classification: str | None,
    report_version: str | None,
    language: str | None,
    as_of: str | None,
    archive: Path,
) -> None:
    """Render a run's report as HTML and/or PDF (no model is called).

    \b
    auditor report latest
    auditor report latest --baseline RUN_BEFORE --organisation "Risk Office" --classification CONFIDENTIAL
    auditor report latest --settings report-settings.json --templates my-templates/
    """
    from auditor import pipeline
    from auditor.archive.store import Archive
    from auditor.report import settings as report_settings

    wanted = [f.strip().lower() for f in formats.split(",") if f.strip()]
    bad = [f for f in wanted if f not in ("html", "pdf", "csv")]
    if bad or not wanted:
        raise UsageError(f"unknown report format '{','.join(bad) or formats}'; use html, pdf, csv or html,pdf,csv")
    chosen = report_settings.load(settings_file) if settings_file else report_settings.ReportSettings()
    if language is not None and language not in report_settings.languages():
        raise UsageError(
            f"no report text in language '{language}'; available: {', '.join(report_settings.languages())}"
        )
    chosen = chosen.but(
        organisation=organisation,
        prepared_for=prepared_for,
        logo=report_settings.logo_uri(logo) if logo else None,
        classification=classification,
        version=report_version,
        language=language,
    )
    store = Archive.existing(archive)
    run_dir = store.run(run_id)
    earlier = store.run(baseline) if baseline else None
    if earlier is not None and earlier.run_id == run_dir.run_id:
        raise UsageError(f"--baseline names the reported run {run_dir.run_id} itself; give an earlier run")
    on = None
    if as_of is not None:
        from auditor.decisions import parse_date

        on = parse_date(as_of, "--as-of")
    for path in pipeline.write_report(archive, run_dir, out, wanted, templates, earlier, chosen, on):
        click.echo(str(path))


@click.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@ARCHIVE_LOCATION
def query(sql: str, fmt: str, archive: Path | str) -> None:
    """Run SQL (DuckDB) over the archive's views (an archive on object storage is read in place):

    \b
    runs             one row per run: suite, targets, status, seal
    responses        one row per request sent: messages, reply, tokens, latency, errors
    judgements       the judge's calls (same columns as responses)
    adaptive         adaptive-attack calls (same columns as responses)
    grades           one row per graded reply: criterion, outcome, grader, evidence
    reviews          human review verdicts imported with auditor review import
    calibrations     one row per grader measured with auditor calibrate
    labelled_grades  each labelled reply a calibration graded

    \b
    auditor query "SELECT target, challenge_id, avg((outcome = 'pass')::int) AS pass_rate FROM grades GROUP BY ALL"
    auditor query "SELECT * FROM responses WHERE error_class IS NOT NULL" --format csv > errors.csv
    auditor query "SELECT run_id, status FROM runs" --archive s3://audits-bucket/team
    """
    import duckdb

    from auditor.archive import remote
    from auditor.archive.store import Archive, connect
    from auditor.archive.tables import VIEWS

    for attempt in range(3):
        con = remote.connect(archive) if isinstance(archive, str) else connect(Archive.existing(archive).root)
        try:
            cur = con.execute(sql)
            rows = cur.fetchall() if cur.description is not None else []
            break
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.IOException) and isinstance(archive, str) and attempt < 2:
                continue  # a push replaced or removed an object meanwhile: list the store again
            views = ", ".join(v for v, _, _ in VIEWS)
            raise UsageError(f"query failed: {str(exc).splitlines()[0]}; views: {views}") from None
    if cur.description is None:
        return
    names = [d[0] for d in cur.description]
    # color=True: click would strip escape sequences from piped output; values are escaped here for terminals
    click.echo(format_rows(names, rows, fmt, terminal=fmt != "csv" or sys.stdout.isatty()), nl=False, color=True)


@click.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_OR_BUNDLE]...")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signer's Ed25519 public key (PEM) a bundle's signature must verify with; one you trust, never "
    "the bundle.pub the bundle carries.",
)
@ARCHIVE
def verify(run_ids: tuple[str, ...], key_file: Path | None, archive: Path) -> None:
    """Check runs against their tamper-evident ledgers (all runs when none is named), or bundles made by auditor
    export (a FILE.tar.gz or .tgz, checked without any archive: members, run ledger, and with --key the
    signature); exit 1 if one fails.

    \b
    auditor verify
    auditor verify latest 20261127T2226
    auditor verify audit.tar.gz --key auditor-key.pub.pem
    """
    from auditor.archive import bundle
    from auditor.archive.store import Archive
    from auditor.shards import stored_shards

    key = bundle.load_public_key(key_file) if key_file else None
    bundles = [Path(a) for a in run_ids if bundle.is_bundle_path(a)]
    names = [a for a in run_ids if not bundle.is_bundle_path(a)]
    if key is not None and not bundles:
        raise UsageError("--key checks a bundle's signature; name a bundle (FILE.tar.gz) to verify")
    for path in bundles:
        if not path.is_file():
            raise UsageError(f"{path}: no such bundle file")
    runs: list[tuple[str, Any]] = []  # what each checked folder is called, and the folder
    if names or not bundles:
        store = Archive.existing(archive)
        for name in names or [""]:
            shards = stored_shards(store.root, name or None)  # runs sent in shards: their folders until finalized
            if name and shards and not (store.root / "runs" / name).is_dir():
                runs += shards
            elif name:
                run = store.run(name)
                runs.append((run.run_id, run))
            else:
                runs += [(r.run_id, r) for r in store.runs()] + shards
        if not runs:
            raise UsageError(f"{archive}: no runs to verify")
    broken = 0
    for label, run in runs:
        verdict = run.verify()
        if verdict.problems:
            broken += 1
            for problem in verdict.problems:
                click.echo(f"{label}: TAMPERED: {problem}")
        else:
            click.echo(f"{label}: ok, {verdict.files} files, seal {verdict.head[:16]}")
    for path in bundles:
        check = bundle.verify(path, key)
        if check.problems:
            broken += 1
            for problem in check.problems:
                click.echo(printable(f"{path}: TAMPERED: {problem}"))
            continue
        signed = "signature present but not checked (give --key)" if check.signed else "unsigned"
        signed = f"signed by key {check.signer}" if check.signer else signed
        click.echo(printable(f"{path}: ok, {check.files} files, run {check.run_id}, seal {check.head[:16]}, {signed}"))
    if broken:
        what = "runs" if not bundles else "bundles" if not runs else "runs and bundles"
        raise AuditorError(f"{broken} of {len(runs) + len(bundles)} {what} failed verification")


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b", default="latest")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ARCHIVE
def compare_cmd(run_a: str, run_b: str, fmt: str, archive: Path) -> None:
    """Compare two runs trial by trial (RUN_A earlier, RUN_B later): what got better or worse, and is it real.

    \b
    auditor compare RUN_BEFORE latest
    auditor compare RUN_BEFORE RUN_AFTER --format json
    """
    from auditor.archive.store import Archive, connect
    from auditor.report.compare import drift

    store = Archive.existing(archive)
    a, b = store.run(run_a), store.run(run_b)
    if a.run_id == b.run_id:
        raise UsageError(f"both arguments name run {a.run_id}; give two different runs")
    manifests = a.manifest(), b.manifest()
    found = drift(connect(archive), a.run_id, b.run_id)
    if fmt == "json":
        from auditor.report.summary import drift_json

        click.echo(drift_json(found))
        return
    if manifests[0].suite.sha256 != manifests[1].suite.sha256:
        click.echo("note: the runs used different suite files; only trials present in both are compared", err=True)
    if not found:
        raise UsageError(f"runs {a.run_id} and {b.run_id} share no graded trials (same target, probe and sample)")
    rows = [
        (
            d.target,
            d.challenge_id,
            d.result.n,
            f"{d.result.b_rate:.0%}",
            f"{d.result.a_rate:.0%}",
            f"{100 * (d.result.difference or 0):+.0f} ({100 * d.result.low:+.0f} to {100 * d.result.high:+.0f})",
            f"{d.result.p_value:.3g}",
        )
        for d in found
    ]
    names = ["target", "challenge", "paired_trials", "before", "now", "difference_points_ci95", "mcnemar_p"]
    click.echo(format_rows(names, rows, "table"), nl=False)
    for d in found:
        if d.result.p_value < 0.05:
            click.echo(d.text)


@click.command()
@ARCHIVE
def runs(archive: Path) -> None:
    """List runs with status and headline figures.

    \b
    auditor runs
    auditor runs --archive /shared/audits
    """
    from auditor.archive.store import Archive, connect, outcome_counts, read_rows
    from auditor.shards import pending

    root = Archive.existing(archive).root
    con = connect(root)
    rows = read_rows(
        con,
        "SELECT r.run_id, r.status, r.suite_id || ' ' || r.suite_version AS suite, "
        "array_to_string(r.targets, ', ') AS targets, r.planned_items AS planned, count(g.item_id) AS graded, "
        f"{outcome_counts('g')}, r.started_at "
        "FROM runs r LEFT JOIN grades g USING (run_id) GROUP BY ALL ORDER BY r.run_id",
    )
    if rows:
        click.echo(format_rows(list(rows[0]), [tuple(r.values()) for r in rows], "table"), nl=False)
    waiting = pending(root)
    for line in waiting:
        click.echo(printable(line))
    if not rows and not waiting:
        click.echo(f"no runs in {shown(archive)}")
