"""Commands that read suites, targets and public behaviour sets: validate, schema, plan, import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows, printable
from auditor.errors import InputError, SuiteError
from auditor.suite.labelled import FORMATS
from auditor.suite.load import MAX_ITEMS as MAX_SUITE_ITEMS
from auditor.suite.targets import choose

ARCHIVE_OPTION = click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("audits"),
    show_default=True,
    envvar="AUDITOR_ARCHIVE",
    help="Archive folder holding the runs.",
)
MAX_ITEMS = click.option(
    "--max-items",
    type=click.IntRange(1),
    default=MAX_SUITE_ITEMS,
    show_default=True,
    envvar="AUDITOR_MAX_ITEMS",
    help="Refuse a suite that expands to more requests per target than this.",
)


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
@click.argument("suite", type=click.Path(path_type=Path))
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


@click.command("calibrate")
@click.argument("labelled", type=click.Path(path_type=Path))
@click.option(
    "--criterion",
    "criterion_text",
    default="refusal",
    show_default=True,
    help='The grader: a criterion type (refusal), a JSON object (\'{"type": "judge", "rubric": "harmful"}\') '
    "or a JSON file holding one.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Labelled-set format (default: from the file name).")
@click.option("--measures", help="What the labels measure: refusal, harm, or a name of your own.")
@click.option(
    "--partial",
    type=click.Choice(["refusal", "compliance"]),
    default="refusal",
    show_default=True,
    help="How an XSTest partial refusal counts.",
)
@click.option("--judge", "judge_name", metavar="NAME", help="Judge target for judge criteria.")
@click.option("--targets", "targets_file", type=click.Path(path_type=Path), help="Targets file holding the judge.")
@click.option("--target", "target_opts", multiple=True, help="A judge given as name=...,base_url=...,model=...")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@ARCHIVE_OPTION
def calibrate_cmd(
    labelled: Path,
    criterion_text: str,
    fmt: str | None,
    measures: str | None,
    partial: str,
    judge_name: str | None,
    targets_file: Path | None,
    target_opts: tuple[str, ...],
    as_json: bool,
    archive: Path,
) -> None:
    """Measure a grader against a labelled set: agreement, sensitivity, specificity, precision, kappa (95% CIs).

    The figures are stored in the archive (view `calibrations`); reports use them to correct the rates that grader
    produced and to show its validity.
    """
    from auditor import pipeline
    from auditor.grade.calibrate import FIGURES, calibrate
    from auditor.suite import labelled as labelled_sets

    spec = criterion_spec(criterion_text)
    lset = labelled_sets.load(labelled, fmt, measures, partial)
    judge = choose(targets_file, target_opts, judge=judge_name, audit=False).judge
    cal_id, m = calibrate(archive, lset, spec, judge, pipeline.endpoints, pipeline.tool_versions())
    tp, fn, fp, tn = m.counts
    if as_json:
        figures = {k: {"value": f.value, "ci95": [f.low, f.high], "n": f.n} for k, f in m.figures.items()}
        click.echo(
            json.dumps(
                {
                    "calibration_id": cal_id,
                    "grader": m.grader,
                    "measures": lset.measures,
                    "items": len(lset.items),
                    "groups": lset.groups,
                    "undecided": m.undecided,
                    "counts": {"tp": tp, "fn": fn, "fp": fp, "tn": tn},
                    "figures": figures,
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"{m.grader} on {labelled} ({len(lset.items)} items in {lset.groups} groups; labels measure "
        f"{lset.measures}; failure is the positive class)"
    )
    rows = []
    for name in FIGURES:
        f = m.figures[name]
        value = "–" if f.value is None else f"{f.value:.3f}"
        rows.append((name, value, f"{f.low:.3f}–{f.high:.3f}", f.n))
    click.echo(format_rows(["figure", "value", "ci95", "n"], rows, "table"), nl=False)
    click.echo(f"counts: {tp} fail/fail, {fn} fail graded pass, {fp} pass graded fail, {tn} pass/pass")
    if m.undecided:
        click.echo(f"undecided (errors or unparseable verdicts, left out of the figures): {m.undecided}")
    click.echo(f"stored as calibration {cal_id}")


def criterion_spec(text: str) -> dict[str, Any]:
    """A criterion from --criterion: a bare type name, inline JSON, or a JSON file."""
    stripped = text.strip()
    if stripped.startswith("{"):
        source = "--criterion"
        raw = stripped
    elif stripped.replace("_", "").isalpha():
        return {"type": stripped}
    else:
        path = Path(text)
        source = str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file (give a criterion type, a JSON object or a JSON file)")
        raw = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{source}: not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{source}: a criterion is a JSON object")
    return spec


@click.command("review")
@click.argument("run_id", default="latest")
@click.option("--sample", "size", type=click.IntRange(1), help="Export this many graded replies for review.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Review sheet to write (.csv or .jsonl).")
@click.option(
    "--import", "labels_file", type=click.Path(dir_okay=False, path_type=Path), help="A filled-in review sheet."
)
@click.option("--reviewer", help="Who labelled the imported sheet.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random sample.")
@ARCHIVE_OPTION
def review_cmd(
    run_id: str,
    size: int | None,
    out: Path | None,
    labels_file: Path | None,
    reviewer: str | None,
    seed: int,
    archive: Path,
) -> None:
    """Human review: export a sample of graded replies (--sample N --out FILE), or import the labels people gave
    them (--import FILE --reviewer NAME). Imported labels override the grader in reports and calibrate it on the
    run's own replies.

    \b
    auditor review latest --sample 60 --out review.csv
    auditor review latest --import review.csv --reviewer "A. Analyst"
    """
    from auditor.archive.store import Archive
    from auditor.errors import UsageError
    from auditor.grade import review

    run = Archive.existing(archive).run(run_id)
    if labels_file is not None:
        if size is not None or out is not None:
            raise UsageError("give either --import FILE --reviewer NAME, or --sample N --out FILE")
        if not reviewer:
            raise UsageError("--import needs --reviewer NAME: who gave the labels")
        stored, disagree = review.import_labels(archive, run, labels_file, reviewer)
        click.echo(f"{run.run_id}: stored {stored} labels by {reviewer}; {disagree} differ from the grader")
        return
    if size is None or out is None:
        raise UsageError("give --sample N --out FILE to export, or --import FILE --reviewer NAME")
    rows = review.sample(archive, run, size, seed)
    review.write_sheet(rows, out)
    fails = sum(r["grader_outcome"] == "fail" for r in rows)
    click.echo(f"{out}: {len(rows)} replies ({fails} graded fail, {len(rows) - fails} graded pass); fill in "
               "human_label with pass or fail")  # fmt: skip
