"""Commands that call models: run a suite, the embedded-model demo, and grade (which may call a judge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from auditor.cli.console import Progress, printable
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE
from auditor.cli.options import MAX_ITEMS, SUITE, limit_options, shown, url_of
from auditor.errors import AuditorError, UsageError
from auditor.records import LimitOverrides
from auditor.suite.targets import choose


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


@click.command()
@click.argument("suite", type=SUITE, required=False)
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
@click.option(
    "--plan",
    "plan_id",
    metavar="ID",
    help="Start from a plan sealed with `auditor plan --seal`: the run must match it exactly, and records its seal.",
)
@click.option("--label", help="A free-text label stored with the run.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="The run's seed: retry jitter now, and the bootstrap intervals of its reports later.",
)
@limit_options
@click.option("--no-cache", is_flag=True, help="Send every request even if the archive holds a reply to it.")
@click.option(
    "--max-cost", type=click.FloatRange(min=0), metavar="USD", help="Stop before the run's spend would cross this."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    metavar="N",
    help="Processes sending the run, each a shard of it (default: one per core, at most 8 and one per 500 "
    "requests; 1: this process only). With --ray: the number of Ray tasks.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    metavar="[ADDRESS]",
    help="Send the shards as Ray tasks on the cluster at ADDRESS (default: a local Ray instance); with an s3:// "
    "archive each task writes its shard through the bucket, from any node. Extra 'ray'.",
)
@click.option("--shard", "shard_spec", metavar="K/N", help="Send only shard K of N of the run given with --run.")
@click.option(
    "--run",
    "run_id",
    metavar="RUN",
    help="With --shard: the run the shard belongs to (each shard stores a folder of its own); then auditor "
    "finalize RUN.",
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
    plan_id: str | None,
    label: str | None,
    seed: int,
    limits: LimitOverrides,
    no_cache: bool,
    max_cost: float | None,
    workers: int | None,
    ray_address: str | None,
    shard_spec: str | None,
    run_id: str | None,
    as_json: bool,
    quiet: bool,
    max_items: int,
    archive: Path,
) -> None:
    """Run SUITE (a file, or a bundled suite's name) against the targets, store every response, grade, and print
    the run id. Exits 0 once the run is complete, whatever the verdicts.

    \b
    auditor run jailbreak --targets targets.json --target gpt-4o-mini --judge judge
    auditor run my-suite.json --target name=vllm,base_url=http://localhost:8000/v1,model=Qwen/Qwen2.5-7B-Instruct
    auditor run sixteen-challenges --targets targets.json --max-cost 5 --concurrency 4
    auditor run --resume latest
    auditor run big-suite.json --targets targets.json --concurrency 256 --workers 2
    auditor run big-suite.json --targets targets.json --shard 1/2 --run audit-7 --archive s3://audits/team
    auditor run big-suite.json --targets targets.json --ray ray://head:10001 --archive s3://audits/team
    """
    from auditor import pipeline
    from auditor.archive.store import Archive
    from auditor.run.launch import Workers

    shard = None
    if shard_spec is not None or run_id is not None:
        from auditor.run.workers import parse_shard

        if shard_spec is None or run_id is None:
            raise UsageError("--shard K/N and --run RUN go together: the shard to send and the run it belongs to")
        if resume or ray_address is not None:
            raise UsageError("--shard sends one shard of a new or sharded run: not with --resume or --ray")
        shard = parse_shard(shard_spec)
    fan_out = Workers(workers, ray_address) if workers != 1 or ray_address is not None else None
    if fan_out is not None and workers is not None:
        fan_out.warm()  # the workers' modules load while the run is prepared
    if resume:
        run_dir = Archive.existing(archive).run(resume)
    else:
        if suite is None:
            raise UsageError("give a SUITE file (or --resume RUN)")
        chosen = choose(targets_file, target_opts, judge_name, attacker_name)
        targets = [t.with_limits(limits) for t in chosen.audited]
        judge, attacker = chosen.judge, chosen.attacker
        sealed = None
        if plan_id is not None:
            from auditor.decisions import sealed_plan

            sealed = sealed_plan(archive, plan_id, suite, targets, judge, attacker)
        options = pipeline.RunOptions(archive, label, seed, judge, attacker, max_items, sealed)
        url = url_of(archive)
        if ray_address is not None and url is not None:
            _run_on_ray(url, archive, suite, targets, options, workers, ray_address, max_cost, as_json, quiet)
            return
        if shard is not None and run_id is not None:
            from auditor import shards

            run_dir = shards.join_run(suite, targets, options, run_id, shard)
        else:
            run_dir = pipeline.start_run(suite, targets, options)
        if not quiet:
            helpers = [f"{role} {h.name}" for role, h in (("judge", judge), ("attacker", attacker)) if h]
            aside = f" ({' and '.join(helpers)}: helpers, not audited)" if helpers else ""
            part = f"shard {shard} of " if shard else ""
            click.echo(f"{part}run {run_dir.run_id}: auditing {', '.join(t.name for t in targets)}{aside}", err=True)
    if shard is not None:
        _run_shard(run_dir, shard, workers, quiet, not no_cache, max_cost, archive)
        return
    if fan_out is not None and workers is None:
        fan_out.warm(run_dir.manifest().planned_items)  # by the default, workers are for runs of some size
    outcome = _execute(run_dir, quiet, not no_cache, max_cost, fan_out)
    _finish_run(archive, run_dir, as_json, quiet, outcome["sent"] + outcome["cached"])


def _run_on_ray(
    url: str,
    archive: Path,
    suite: Path,
    targets: list[Any],
    options: Any,
    count: int | None,
    address: str,
    max_cost: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """`auditor run --ray` on an archive in a bucket: Ray tasks, on whichever nodes, each send a shard into the
    bucket; the run is finalized here once all are done (auditor.shards.send_on_ray)."""
    from auditor import shards

    if options.attacker is not None:
        raise UsageError("adaptive attacks (--attacker) run in one process, not as Ray tasks: run without --ray")
    progress = Progress(quiet)

    def warn(message: str) -> None:
        click.echo(f"warning: {printable(message)}", err=True)

    try:
        run_dir = shards.send_on_ray(
            url, archive, suite, targets, options, shards.RayOptions(address, count, max_cost, progress, warn)
        )
    except KeyboardInterrupt:
        raise AuditorError("interrupted; the shards' replies stored so far are kept in the bucket") from None
    finally:
        progress.close()
    _finish_run(archive, run_dir, as_json, quiet, run_dir.manifest().planned_items)


def _run_shard(
    run_dir: Any, shard: Any, workers: int | None, quiet: bool, use_cache: bool, cap: float | None, archive: Path
) -> None:
    from auditor import shards
    from auditor.run.launch import Workers

    again = f"run it again: auditor run SUITE --targets FILE --shard {shard} --run {run_dir.run_id}"
    Workers(workers).warm(run_dir.manifest().planned_items // shard.count)

    def send(run: Any, options: Any) -> dict[str, Any]:
        return shards.run_shard(run, shard, workers, options, archive)

    _execute(run_dir, quiet, use_cache, cap, send=send, again=again)
    if not quiet:
        click.echo(f"shard {shard} done; once every shard is: auditor finalize {run_dir.run_id}", err=True)
    click.echo(run_dir.run_id)


def _execute(
    run_dir: Any,
    quiet: bool,
    use_cache: bool = True,
    max_cost: float | None = None,
    fan_out: Any = None,
    send: Any = None,
    again: str = "",
) -> dict[str, Any]:
    """Send a run's missing items (with `send`, by default `pipeline.execute_run`), showing progress; errors say
    how to carry on (`again`, by default the resume command)."""
    from auditor import pipeline

    progress = Progress(quiet)
    options = pipeline.ExecOptions(
        use_cache=use_cache,
        max_cost=max_cost,
        progress=progress,
        warn=lambda m: click.echo(f"warning: {printable(m)}", err=True),
        fan_out=fan_out,
    )
    resume = f"auditor run --resume {run_dir.run_id}"
    capped = f"{again} --max-cost HIGHER" if again else f"the run is resumable: {resume} --max-cost HIGHER"
    again = again or f"resume with: {resume}"
    try:
        outcome = (send or pipeline.execute_run)(run_dir, options)
    except KeyboardInterrupt:
        raise AuditorError(f"interrupted; completed results are kept. {again[0].upper()}{again[1:]}") from None
    except AuditorError as exc:
        kept = AuditorError(f"{exc}; run {run_dir.run_id} kept, {again}")
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
        click.echo(f"warning: stopped before the cost cap; {capped}", err=True)
    return dict(outcome)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the run id.")
@click.option("--quiet", is_flag=True, help="Print only the run id.")
@ARCHIVE
def finalize(run_id: str, as_json: bool, quiet: bool, archive: Path) -> None:
    """Finish a run sent in shards (auditor run --shard K/N --run RUN, or --ray with an s3:// archive): check that
    the shards agree and verify, and that every planned item is stored exactly once among them (else name the
    shards with items missing, or the items stored twice, and change nothing); then build the run from the shards'
    folders, compact it, seal it complete, grade it and print the run id.

    \b
    auditor finalize audit-7
    auditor finalize audit-7 --archive s3://audits/team --json
    """
    from auditor import shards
    from auditor.archive.store import Archive

    run_dir = shards.finalize(Archive.existing(archive).root, run_id)
    _finish_run(archive, run_dir, as_json, quiet, 1)


@click.command()
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
    """Re-grade a run's stored responses: the audited models are not called (a judge may be).

    \b
    auditor grade latest
    auditor grade latest --suite fixed-suite.json
    auditor grade RUN --targets targets.json --judge judge
    """
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


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--suite",
    "suite_path",
    type=SUITE,
    help="Suite file or bundled suite name to run (default: sixteen-challenges).",
)
@click.option("--quiet", is_flag=True)
@ARCHIVE
def demo(out: Path, suite_path: Path | None, quiet: bool, archive: Path) -> None:
    """Audit the embedded SmolLM2 model, as is and behind a safety prompt, and write one HTML and PDF report
    (no API key, no network).

    \b
    auditor demo
    auditor demo --suite jailbreak --out demo-reports
    """
    from auditor import pipeline
    from auditor.resources import data_dir
    from auditor.suite.targets import load_targets

    suites = data_dir("suites")
    targets = load_targets(suites / "embedded-targets.json")
    suite = suite_path or suites / "sixteen-challenges.json"
    click.echo(f"auditing {', '.join(t.name for t in targets)} with {suite.name} (archive {shown(archive)})", err=True)
    run_dir = pipeline.start_run(suite, targets, pipeline.RunOptions(archive, "demo"))
    _execute(run_dir, quiet)
    pipeline.grade_run(run_dir)
    report_obj = pipeline.report(archive, run_dir)
    from auditor.report import render

    for v in report_obj.verdicts:
        click.echo(f"{v.target:24} {v.policy.id:28} {v.decision}")
    for path in render.write(report_obj, out, ["html", "pdf"]):
        click.echo(str(path))
