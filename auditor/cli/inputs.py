"""Commands that read suites, targets and public behaviour sets: validate, schema, plan, import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from auditor.cli.console import format_rows, printable
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE
from auditor.cli.options import MAX_ITEMS, SUITE
from auditor.errors import InputError, SuiteError, UsageError
from auditor.suite.targets import choose

if TYPE_CHECKING:
    from auditor.records import Target
    from auditor.run.plan import Estimate, Latency, PlanEstimate


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@MAX_ITEMS
@click.option("--strict", is_flag=True, help="Fail (exit 2) when a probe's criterion misgrades one of its examples.")
def validate(files: tuple[Path, ...], max_items: int, strict: bool) -> None:
    """Check suite and targets files; print every issue with file, line and JSON pointer.

    A suite's labelled examples are graded with their probes' own criteria and every misgrade is reported.

    \b
    auditor validate my-suite.json targets.json
    auditor validate --strict my-suite.json      # misgraded examples fail the check (for CI)
    auditor validate jailbreak                   # a bundled suite, by name
    """
    from auditor.run.plan import requests_per_target
    from auditor.suite.bundled import bundled
    from auditor.suite.files import read
    from auditor.suite.load import detect_kind, load_suite
    from auditor.suite.targets import load_targets

    issues: list[str] = []
    suites = bundled()
    for given in files:
        name = given.name.removesuffix(".json")
        bundled_suite = not given.exists() and given.parent == Path(".") and name in suites
        path = suites[name].path if bundled_suite else given
        try:
            data, text = read(path)
            kind = detect_kind(data)
            if kind == "suite":
                suite = load_suite(path, max_items=max_items)
                measured = sum(len(c.probes) for c in suite.challenges)
                click.echo(
                    f"{path}: valid suite '{suite.id}' {suite.version}: {len(suite.challenges)} challenges, "
                    f"{measured} probes, {len(suite.policies)} policies; "
                    f"{requests_per_target(suite):,} requests per target"
                )
                issues += _example_report(path, text, suite, strict)
            else:
                targets = load_targets(path)
                click.echo(f"{path}: valid targets file: {', '.join(t.name for t in targets)}")
        except SuiteError as exc:
            issues.extend(str(i) for i in exc.issues)
        except InputError as exc:
            issues.append(str(exc))
    if issues:
        raise InputError("\n".join(issues))


def _example_report(path: Path, text: str, suite: Any, strict: bool) -> list[str]:
    """Grade the suite's examples; print a warning per misgrade and a summary; with `strict`, return them as issues."""
    from auditor.suite.examples import check_examples
    from auditor.suite.files import located, positions

    found = check_examples(suite)
    if not found.checked and not found.unchecked and not found.judge_only:
        return []
    offsets = positions(text)
    lines = []
    for m in found.misgrades:
        issue = located(path, text, offsets, m.pointer, f"example graded {m.got}, labelled {m.expect}: {m.evidence}")
        lines.append(str(issue))
        if not strict:
            click.echo(f"warning: {printable(str(issue))}", err=True)
    skipped = f", {found.judge_only} only a judge decides" if found.judge_only else ""
    unchecked = f", {found.unchecked} need a judge (no fallback)" if found.unchecked else ""
    click.echo(f"{path}: examples: {found.checked} graded, {len(found.misgrades)} misgraded{skipped}{unchecked}")
    return lines if strict else []


@click.command()
@click.argument("kind", type=click.Choice(["suite", "targets"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of suites or targets files.

    \b
    auditor schema suite > suite.schema.json
    auditor schema targets
    """
    from auditor.suite.files import schema as load

    click.echo(json.dumps(load(kind), indent=2))


@click.command("plan")
@click.argument("suite", type=SUITE)
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), help="Targets file (JSON).")
@click.option("--target", "target_opts", multiple=True, help="As for `auditor run`.")
@click.option("--judge", "judge_name", metavar="NAME", help="Judge target (from --targets): count and price its calls.")
@click.option(
    "--attacker", "attacker_name", metavar="NAME", help="Attacker target (from --targets): count and price its calls."
)
@click.option(
    "--assume-rate",
    type=click.FloatRange(0, 1),
    default=0.9,
    show_default=True,
    help="Pass rate assumed when judging whether the planned trials can decide each policy rule.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole estimate as JSON.")
@click.option(
    "--seal",
    is_flag=True,
    help="Pre-register: seal the suite hash, thresholds, targets and planned requests in the archive now; start the "
    "run with `auditor run ... --plan ID` and its report states the criteria were fixed before the results.",
)
@MAX_ITEMS
@ARCHIVE
def plan_cmd(
    suite: Path,
    targets_file: Path | None,
    target_opts: tuple[str, ...],
    judge_name: str | None,
    attacker_name: str | None,
    assume_rate: float,
    as_json: bool,
    seal: bool,
    max_items: int,
    archive: Path,
) -> None:
    """Print what a run would send, cost at most and take, per target and for the judge and the attacker, and what
    the sample sizes can decide. Nothing is sent.

    Judge calls are counted as grading makes them, adaptive attacks at their most rounds, and the time from each
    model's median latency in the archive's earlier runs (else an assumed one) and its declared limits.

    \b
    auditor plan jailbreak --targets targets.json --judge grader
    auditor plan my-suite.json --targets targets.json --judge grader --attacker red-team --archive audits
    auditor plan my-suite.json --targets targets.json --judge grader --json   # for scripts
    auditor plan my-suite.json --targets targets.json --judge grader --seal   # pre-register, then run --plan ID
    """
    from dataclasses import asdict

    from auditor import pipeline
    from auditor.run.plan import sample_plan
    from auditor.suite.load import load_suite

    chosen = (
        choose(targets_file, target_opts, judge=judge_name, attacker=attacker_name)
        if targets_file or target_opts or judge_name or attacker_name
        else None
    )
    targets = list(chosen.audited) if chosen else []
    helpers = (chosen.judge, chosen.attacker) if chosen else (None, None)
    estimate = pipeline.estimate(suite, targets, max_items, *helpers, archive) if targets else None
    plans = sample_plan(load_suite(suite, max_items=max_items), assume_rate)
    rules = [(p.challenge_id, r) for p in plans for r in p.rules]
    if as_json:
        found = {
            **(asdict(estimate) if estimate else {"targets": []}),
            "challenges": [{k: v for k, v in asdict(p).items() if k != "rules"} for p in plans],
            "rules": [{"challenge": c, **asdict(r)} for c, r in rules],
            "assumed_rate": assume_rate,
        }
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        if estimate is not None:
            _print_estimate(estimate, {t.name: t for t in targets + [h for h in helpers if h]})
        _print_sample_plan(plans, rules, assume_rate)
    if seal:
        from auditor import decisions

        if not targets:
            raise UsageError("--seal needs the targets the run will audit: give --targets FILE or --target")
        plan_id, path, digest = decisions.seal_plan(archive, suite, targets, *helpers)
        click.echo(f"sealed plan {plan_id}: {path} (sha256 {digest[:16]}); run it with --plan {plan_id}", err=True)
    for challenge, r in rules:
        if not r.decidable:
            need = (
                f"about {r.trials_needed} trials would decide it"
                if r.trials_needed
                else "no number of trials decides a rate this close to the minimum"
            )
            where = challenge if r.cell == challenge else f"{challenge}, {r.cell}"
            click.echo(
                f"warning: {where}: {r.trials} trials cannot decide {r.rule} (minimum "
                f"{r.threshold:.0%}) at an assumed pass rate of {assume_rate:.0%}; {need}",
                err=True,
            )


def _about(seconds: float) -> str:
    """A duration as people say it: about 40 s, about 4 min, about 2.5 h."""
    if seconds < 90:
        return f"about {round(seconds)} s" if seconds >= 1 else "under 1 s" if seconds else "0 s"
    return f"about {round(seconds / 60)} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def _assumed(model: Target, latency: Latency) -> str:
    """What a duration assumed of one model: its latency, measured or not, and its limits."""
    limits = model.limits
    rates = ((limits.requests_per_minute, "requests"), (limits.tokens_per_minute, "tokens"))
    paced = "".join(f", {value:g} {unit}/min" for value, unit in rates if value)
    if latency.runs:
        runs = f"{latency.runs} earlier run{'s' if latency.runs > 1 else ''}"
        shown = f"{latency.seconds:.1f} s" if latency.seconds >= 0.1 else f"{1000 * latency.seconds:.0f} ms"
        said = f"latency {shown} measured in {runs}"
    elif model.embedded:
        said = (
            f"latency {latency.seconds:g} s assumed (a local model's speed depends on the machine); run once to measure"
        )
    else:
        said = f"latency {latency.seconds:g} s assumed; run once to measure"
    return f"{model.name}: {said}; concurrency {limits.concurrency}{paced}"


def _print_estimate(e: PlanEstimate, models: dict[str, Target]) -> None:
    """The per-target tables of an estimate, what the judge and attacker add, and what the durations assumed."""

    def usd(value: float, priced: bool) -> str:
        return f"{value:.4f}" if priced else "no prices declared"

    rows = [(t.target, t.requests, t.prompt_tokens, t.max_completion_tokens, usd(t.max_cost_usd, t.priced))
            for t in e.targets]  # fmt: skip
    names = ["target", "requests", "est_prompt_tokens", "max_completion_tokens", "max_cost_usd"]
    click.echo(format_rows(names, rows, "table"), nl=False)
    click.echo(
        "Prompt tokens are estimated at one per 3 bytes; "
        "the cost is a ceiling that assumes every reply uses max_tokens.\n"
    )
    judge, attacker = e.judge, e.attacker

    def added(t: Estimate) -> tuple[Any, ...]:
        judged = (t.judge.calls, usd(t.judge_cost_usd, judge.priced)) if judge else ("-", "-")
        attacked = (
            (t.attacker.calls, usd(t.attacker_cost_usd, attacker.priced))
            + (t.attack_target.calls, usd(t.attack_target_cost_usd, t.priced))
            if attacker
            else ("-",) * 4
        )
        return (t.target, *judged, *attacked, _about(t.duration_s + t.search_duration_s))

    names = ["target", "judge_calls", "judge_cost_usd", "attacker_calls", "attacker_cost_usd", "attack_target_calls",
             "attack_target_cost_usd", "est_duration"]  # fmt: skip
    click.echo(format_rows(names, [added(t) for t in e.targets], "table"), nl=False)
    if judge:
        click.echo(
            f"Judge calls: one per judge criterion in each of {e.judged_trials} judge-graded trials, with the rubric, "
            f"the probe and a reply at max_tokens, at the prices of '{judge.name}'; at most, as grading sends an "
            "identical request once and reuses answers the archive holds."
        )
    elif e.judged_trials:
        fallback = "`auditor run` refuses without one" if e.judge_required else "without one, fallback criteria grade"
        graded = "1 trial is" if e.judged_trials == 1 else f"{e.judged_trials} trials are"
        click.echo(f"{graded} graded by a judge; name one with --judge to price them ({fallback})")
    if attacker and e.searches:
        extra = sum(t.attack_target.calls for t in e.targets)
        click.echo(
            f"Adaptive attacks: {e.searches} searches make at most {attacker.calls.calls} attacker calls and {extra} "
            f"extra target calls, if every attacker answer parses and no attempt reaches the success score; "
            f"'{e.scorer}' scores the attempts (counted in its calls)."
        )
    elif attacker:
        click.echo(f"The suite declares no adaptive attacks: attacker '{attacker.name}' would not be called.")
    elif e.searches:
        declared = "1 adaptive search is" if e.searches == 1 else f"{e.searches} adaptive searches are"
        click.echo(f"{declared} declared; name an attacker with --attacker to price them (without one, not run)")
    click.echo("Duration: requests x latency / concurrency, or the rate limits where slower; assumed per model:")
    for name, latency in [(t.target, t.latency) for t in e.targets] + [(h.name, h.latency) for h in (judge, attacker)
                                                                        if h]:  # fmt: skip
        click.echo(f"  {_assumed(models[name], latency)}")
    phases = [f"the targets side by side {_about(max((t.duration_s for t in e.targets), default=0.0))}"]
    phases += [f"adaptive searches {_about(attacker.duration_s)}"] if attacker and e.searches else []
    phases += [f"grading {_about(judge.duration_s)}"] if judge else []
    click.echo(f"Whole run: {_about(e.duration_s)} ({', then '.join(phases)}).\n")


def _print_sample_plan(plans: list[Any], rules: list[tuple[str, Any]], assume_rate: float) -> None:
    """The sample sizes per challenge, and per rule and cell the failures tolerated and the grader's false-fail
    tolerance."""
    table = [
        (p.challenge_id, p.trials, f"±{100 * p.half_width:.1f} points", "no" if p.undecidable else "yes") for p in plans
    ]
    click.echo(
        format_rows(
            ["challenge", "trials_per_target", f"ci95_at_{assume_rate:.0%}", "rules_decidable"], table, "table"
        ),
        nl=False,
    )
    if rules:
        click.echo(
            "\nPer rule: the failures each cell tolerates at its planned trials, and the per-trial grader false-fail "
            "rate at which a model that truly passes everything is still approved only half the time."
        )
        rule_rows: list[tuple[Any, ...]] = [
            (
                r.rule,
                r.cell,
                r.trials,
                f"{r.threshold:.0%}",
                r.allowed_failures if r.allowed_failures >= 0 else "cannot hold",
                f"{100 * r.tolerated_false_fail:.1f}%",
            )
            for _, r in rules
        ]
        names = ["rule", "cell", "trials", "minimum", "max_failures", "false_fail_tolerated"]
        click.echo(format_rows(names, rule_rows, "table"), nl=False)


@click.command("import")
@click.argument("source", type=click.Choice(["harmbench", "jailbreakbench"]))
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Suite file to write (default: SOURCE.json)."
)
@click.option("--id", "suite_id", help="Suite id (default: SOURCE-import).")
@click.option("--no-attacks", is_flag=True, help="Direct requests only.")
@click.option(
    "--functional",
    default="standard,contextual",
    show_default=True,
    help="HarmBench functional categories to import (standard, contextual, copyright).",
)
def import_cmd(
    source: str, csv_file: Path, out: Path | None, suite_id: str | None, no_attacks: bool, functional: str
) -> None:
    """Turn a public behaviour CSV you downloaded into a suite (judge criteria: run it with --judge).

    \b
    auditor import harmbench harmbench_behaviors_text_all.csv --out harmbench.json
    auditor import jailbreakbench harmful-behaviors.csv --no-attacks
    """
    from auditor.suite import importers
    from auditor.suite.load import load_suite

    if source == "harmbench":
        wanted = tuple(f.strip() for f in functional.split(",") if f.strip())
        suite = importers.import_harmbench(csv_file, suite_id=suite_id, functional=wanted, attacks=not no_attacks)
    else:
        suite = importers.import_jailbreakbench(csv_file, suite_id=suite_id, attacks=not no_attacks)
    target = out or Path(f"{source}.json")
    importers.write_suite(suite, target)
    loaded = load_suite(target)
    probes = sum(len(c.probes) for c in loaded.challenges)
    click.echo(f"{target}: suite '{loaded.id}' with {len(loaded.challenges)} challenges, {probes} probes")
