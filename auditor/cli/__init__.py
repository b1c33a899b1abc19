"""The command line: parses options, calls the pipeline, and turns errors into one line and an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from auditor import __version__
from auditor.cli.console import Progress, format_rows, printable
from auditor.cli.inputs import (
    ARCHIVE_OPTION,
    MAX_ITEMS,
    calibrate_cmd,
    import_cmd,
    plan_cmd,
    review_cmd,
    schema,
    validate,
)
from auditor.errors import AuditorError, UsageError, clip
from auditor.suite.targets import choose

ARCHIVE = ARCHIVE_OPTION


class Failure(click.ClickException):
    """An AuditorError on its way out: one line per issue on stderr, the error's exit code."""

    def __init__(self, error: AuditorError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        lines = self.message.splitlines() or ["failed"]
        for line in lines[:MAX_ERROR_LINES]:
            click.echo(f"error: {printable(clip(line, 1000))}", err=True)
        if len(lines) > MAX_ERROR_LINES:
            click.echo(f"error: ... and {len(lines) - MAX_ERROR_LINES} more issues", err=True)


MAX_ERROR_LINES = 200


class AuditorGroup(click.Group):
    """The command group; the one place where library errors become messages and exit codes."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Click's main, with its usage errors (bad option, missing argument) as one `error:` line like all others."""
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
            code = result if isinstance(result, int) else 0
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "auditor"
            click.echo(f"error: {printable(clip(exc.format_message(), 1000))} (see {where} --help)", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:
            click.echo("error: aborted", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditorError as exc:
            raise Failure(exc) from None
        except KeyboardInterrupt:
            raise Failure(AuditorError("interrupted; everything stored so far is kept")) from None
        except OSError as exc:  # the file system or the machine refused: an environment failure
            where = f"{exc.filename}: " if exc.filename else ""
            raise Failure(AuditorError(f"{where}{exc.strerror or exc}")) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with how to see the whole story
            if os.environ.get("AUDITOR_DEBUG"):
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (set AUDITOR_DEBUG=1 for the traceback)"
            raise Failure(AuditorError(message)) from None


@click.group(cls=AuditorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """auditor: declarative audit reports for large language models."""


def _finish_run(archive: Path, run: Any, as_json: bool, quiet: bool, stored: int) -> None:
    from auditor import pipeline
    from auditor.report import summary

    if stored or not (run.path / "grades.parquet").is_file():
        pipeline.grade_run(run)
    report = pipeline.report(archive, run)
    if as_json:
        click.echo(summary.dumps(summary.summary_json(report)))
        return
    if not quiet:
        for v in report.verdicts:
            click.echo(f"{v.target:24} {v.policy.id:28} {v.decision}")
    click.echo(run.run_id)


@cli.command()
@click.argument("suite", type=click.Path(path_type=Path), required=False)
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), help="Targets file (JSON).")
@click.option(
    "--target",
    "target_opts",
    multiple=True,
    help="A target name from the targets file, or name=...,base_url=...,model=...[,api_key_env=VAR]. Repeatable.",
)
@click.option(
    "--judge", "judge_name", metavar="NAME", help="Target (from --targets) that grades judge criteria; not audited."
)
@click.option(
    "--attacker",
    "attacker_name",
    metavar="NAME",
    help="Target (from --targets) that writes adaptive attacks; not audited.",
)
@click.option("--resume", "resume", metavar="RUN", help="Send only the missing requests of an earlier run.")
@click.option("--label", help="A free-text label stored with the run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for retry jitter.")
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Override every target's concurrency limit.")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), help="Override requests per minute.")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), help="Override tokens per minute.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Override the request timeout (s).")
@click.option("--max-retries", type=click.IntRange(0, 20), help="Override retries per request.")
@click.option("--no-cache", is_flag=True, help="Send every request even if the archive holds a reply to it.")
@click.option(
    "--max-cost", type=click.FloatRange(min=0), metavar="USD", help="Stop before the run's spend would cross this."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the run id.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@MAX_ITEMS
@ARCHIVE
def run(
    suite: Path | None,
    targets_file: Path | None,
    target_opts: tuple[str, ...],
    judge_name: str | None,
    attacker_name: str | None,
    resume: str | None,
    label: str | None,
    seed: int,
    concurrency: int | None,
    rpm: float | None,
    tpm: float | None,
    timeout: float | None,
    max_retries: int | None,
    no_cache: bool,
    max_cost: float | None,
    as_json: bool,
    quiet: bool,
    max_items: int,
    archive: Path,
) -> None:
    """Run SUITE against the targets, store every response, grade, and print the run id."""
    from auditor import pipeline
    from auditor.archive.store import Archive

    if resume:
        run_dir = Archive.existing(archive).run(resume)
    else:
        if suite is None:
            raise UsageError("give a SUITE file (or --resume RUN)")
        overrides = {
            "concurrency": concurrency,
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "timeout_s": timeout,
            "max_retries": max_retries,
        }
        chosen = choose(targets_file, target_opts, judge_name, attacker_name)
        targets = [t.with_limits(overrides) for t in chosen.audited]
        judge, attacker = chosen.judge, chosen.attacker
        run_dir = pipeline.start_run(
            suite, targets, pipeline.RunOptions(archive, label, seed, judge, attacker, max_items)
        )
    outcome = _execute(run_dir, quiet, not no_cache, max_cost)
    _finish_run(archive, run_dir, as_json, quiet, outcome["sent"] + outcome["cached"])


def _execute(run_dir: Any, quiet: bool, use_cache: bool = True, max_cost: float | None = None) -> dict[str, Any]:
    from auditor import pipeline

    progress = Progress(quiet)
    options = pipeline.ExecOptions(
        use_cache=use_cache,
        max_cost=max_cost,
        progress=progress,
        warn=lambda m: click.echo(f"warning: {printable(m)}", err=True),
    )
    resume = f"auditor run --resume {run_dir.run_id}"
    try:
        outcome = pipeline.execute_run(run_dir, options)
    except KeyboardInterrupt:
        raise AuditorError(f"interrupted; completed results are kept. Resume with: {resume}") from None
    except AuditorError as exc:
        kept = AuditorError(f"{exc}; run {run_dir.run_id} kept, resume with: {resume}")
        kept.exit_code = exc.exit_code
        raise kept from None
    finally:
        progress.close()
    if not quiet:
        click.echo(
            f"{outcome['sent']} sent, {outcome['cached']} from cache, {outcome['already_done']} already stored",
            err=True,
        )
    if outcome["status"] == "capped":
        click.echo(f"warning: stopped before the cost cap; the run is resumable: {resume} --max-cost HIGHER", err=True)
    return dict(outcome)


@cli.command()
@click.argument("run_id", default="latest")
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(path_type=Path),
    help="Grade with this suite file instead of the run's copy.",
)
@click.option("--judge", "judge_name", metavar="NAME", help="Judge target for judge criteria (default: the run's).")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), help="Targets file holding the judge.")
@click.option("--target", "target_opts", multiple=True, help="A judge given as name=...,base_url=...,model=...")
@ARCHIVE
def grade(
    run_id: str,
    suite_path: Path | None,
    judge_name: str | None,
    targets_file: Path | None,
    target_opts: tuple[str, ...],
    archive: Path,
) -> None:
    """Re-grade a run's stored responses (no model is called)."""
    from collections import Counter

    from auditor import pipeline
    from auditor.archive.store import Archive

    run_dir = Archive.existing(archive).run(run_id)
    judge = choose(targets_file, target_opts, judge=judge_name, audit=False).judge
    rows = pipeline.grade_run(run_dir, suite_path, judge)
    counts = Counter(r["outcome"] for r in rows)
    line = (
        f"{run_dir.run_id}: {len(rows)} graded: {counts['pass']} pass, {counts['fail']} fail, {counts['error']} error"
    )
    click.echo(line + (f", {counts['unparseable']} unparseable" if counts["unparseable"] else ""))


@cli.command()
@click.argument("run_id", default="latest")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="Comma-separated: html, pdf.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Use these templates instead of the bundled ones.",
)
@ARCHIVE
@click.option("--baseline", metavar="RUN", help="An earlier run to report the change since, trial by trial.")
def report(run_id: str, formats: str, out: Path, templates: Path | None, baseline: str | None, archive: Path) -> None:
    """Render a run's report as HTML and/or PDF (no model is called)."""
    from auditor import pipeline
    from auditor.archive.store import Archive

    wanted = [f.strip().lower() for f in formats.split(",") if f.strip()]
    bad = [f for f in wanted if f not in ("html", "pdf")]
    if bad or not wanted:
        raise UsageError(f"unknown report format '{','.join(bad) or formats}'; use html, pdf or html,pdf")
    store = Archive.existing(archive)
    run_dir = store.run(run_id)
    earlier = store.run(baseline) if baseline else None
    if earlier is not None and earlier.run_id == run_dir.run_id:
        raise UsageError(f"--baseline names the reported run {run_dir.run_id} itself; give an earlier run")
    for path in pipeline.write_report(archive, run_dir, out, wanted, templates, earlier):
        click.echo(str(path))


@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@ARCHIVE
def query(sql: str, fmt: str, archive: Path) -> None:
    """Run SQL over the archive's views: runs, responses, grades."""
    import duckdb

    from auditor.archive.store import Archive, connect

    con = connect(Archive.existing(archive).root)
    try:
        cur = con.execute(sql)
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None
    if cur.description is None:
        return
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    # color=True: click would strip escape sequences from piped output; values are escaped here for terminals
    click.echo(format_rows(names, rows, fmt, terminal=fmt != "csv" or sys.stdout.isatty()), nl=False, color=True)


@cli.command()
@click.argument("run_ids", nargs=-1)
@ARCHIVE
def verify(run_ids: tuple[str, ...], archive: Path) -> None:
    """Check runs against their tamper-evident ledgers (all runs when none is named)."""
    from auditor.archive.store import Archive

    store = Archive.existing(archive)
    runs = [store.run(r) for r in run_ids] if run_ids else store.runs()
    if not runs:
        raise UsageError(f"{archive}: no runs to verify")
    broken = 0
    for run in runs:
        verdict = run.verify()
        if verdict.problems:
            broken += 1
            for problem in verdict.problems:
                click.echo(f"{run.run_id}: TAMPERED: {problem}")
        else:
            click.echo(f"{run.run_id}: ok, {verdict.files} files, seal {verdict.head[:16]}")
    if broken:
        raise AuditorError(f"{broken} of {len(runs)} runs failed verification")


@cli.command("compare")
@click.argument("run_a")
@click.argument("run_b", default="latest")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ARCHIVE
def compare_cmd(run_a: str, run_b: str, fmt: str, archive: Path) -> None:
    """Compare two runs trial by trial (RUN_A earlier, RUN_B later): what got better or worse, and is it real."""
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


@cli.command()
@ARCHIVE
def runs(archive: Path) -> None:
    """List runs with status and headline figures."""
    from auditor.archive.store import Archive, connect, outcome_counts, read_rows

    con = connect(Archive.existing(archive).root)
    rows = read_rows(
        con,
        "SELECT r.run_id, r.status, r.suite_id || ' ' || r.suite_version AS suite, "
        "array_to_string(r.targets, ', ') AS targets, r.planned_items AS planned, count(g.item_id) AS graded, "
        f"{outcome_counts('g')}, r.started_at "
        "FROM runs r LEFT JOIN grades g USING (run_id) GROUP BY ALL ORDER BY r.run_id",
    )
    if not rows:
        click.echo(f"no runs in {archive}")
        return
    names = list(rows[0])
    click.echo(format_rows(names, [tuple(r.values()) for r in rows], "table"), nl=False)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(path_type=Path),
    help="Suite to run (default: the bundled sixteen-challenges suite).",
)
@click.option("--quiet", is_flag=True)
@ARCHIVE
def demo(out: Path, suite_path: Path | None, quiet: bool, archive: Path) -> None:
    """Audit the embedded SmolLM2 model, as is and behind a safety prompt, and write one HTML and PDF report."""
    from auditor import pipeline
    from auditor.resources import data_dir
    from auditor.suite.targets import load_targets

    suites = data_dir("suites")
    targets = load_targets(suites / "embedded-targets.json")
    suite = suite_path or suites / "sixteen-challenges.json"
    click.echo(f"auditing {', '.join(t.name for t in targets)} with {suite.name} (archive {archive})", err=True)
    run_dir = pipeline.start_run(suite, targets, pipeline.RunOptions(archive, "demo"))
    _execute(run_dir, quiet)
    pipeline.grade_run(run_dir)
    report_obj = pipeline.report(archive, run_dir)
    from auditor.report import render

    for v in report_obj.verdicts:
        click.echo(f"{v.target:24} {v.policy.id:28} {v.decision}")
    for path in render.write(report_obj, out, ["html", "pdf"]):
        click.echo(str(path))


for command in (validate, schema, plan_cmd, import_cmd, calibrate_cmd, review_cmd):
    cli.add_command(command)


def main() -> None:
    """Run the command line."""
    cli(prog_name="auditor")
