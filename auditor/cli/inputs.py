"""Commands that read suites, targets and public behaviour sets: validate, schema, plan, import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows, printable
from auditor.cli.options import MAX_ITEMS, SUITE
from auditor.errors import InputError, SuiteError
from auditor.suite.targets import choose


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
    """
    from auditor.run.plan import requests_per_target
    from auditor.suite.files import read
    from auditor.suite.load import detect_kind, load_suite
    from auditor.suite.targets import load_targets

    issues: list[str] = []
    for path in files:
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
    """Print the JSON Schema of suites or targets files."""
    from auditor.suite.files import schema as load

    click.echo(json.dumps(load(kind), indent=2))


@click.command("plan")
@click.argument("suite", type=SUITE)
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), help="Targets file (JSON).")
@click.option("--target", "target_opts", multiple=True, help="As for `auditor run`.")
@click.option(
    "--assume-rate",
    type=click.FloatRange(0, 1),
    default=0.9,
    show_default=True,
    help="Pass rate assumed when judging whether the planned trials can decide each policy rule.",
)
@MAX_ITEMS
def plan_cmd(
    suite: Path, targets_file: Path | None, target_opts: tuple[str, ...], assume_rate: float, max_items: int
) -> None:
    """Print requests, tokens and the cost ceiling per target, and what the sample sizes can decide."""
    from auditor import pipeline
    from auditor.run.plan import sample_plan
    from auditor.suite.load import load_suite

    rows = []
    targets = list(choose(targets_file, target_opts).audited) if targets_file or target_opts else []
    for e in pipeline.estimate(suite, targets, max_items):
        cost = f"{e.max_cost_usd:.4f}" if e.priced else "no prices declared"
        rows.append((e.target, e.requests, e.prompt_tokens, e.max_completion_tokens, cost))
    if rows:
        names = ["target", "requests", "est_prompt_tokens", "max_completion_tokens", "max_cost_usd"]
        click.echo(format_rows(names, rows, "table"), nl=False)
        click.echo(
            "Prompt tokens are estimated at one per 3 bytes; "
            "the cost is a ceiling that assumes every reply uses max_tokens.\n"
        )
    plans = sample_plan(load_suite(suite, max_items=max_items), assume_rate)
    table = [
        (p.challenge_id, p.trials, f"±{100 * p.half_width:.1f} points", "no" if p.undecidable else "yes") for p in plans
    ]
    click.echo(
        format_rows(
            ["challenge", "trials_per_target", f"ci95_at_{assume_rate:.0%}", "rules_decidable"], table, "table"
        ),
        nl=False,
    )
    rules = [(p.challenge_id, r) for p in plans for r in p.rules]
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
    """Turn a public behaviour CSV you downloaded into a suite (judge criteria: run it with --judge)."""
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
