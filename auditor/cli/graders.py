"""Commands that measure graders: calibrate against labelled sets, and human review of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows
from auditor.cli.options import ARCHIVE_OPTION
from auditor.errors import InputError
from auditor.suite.labelled import FORMATS
from auditor.suite.targets import choose


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

    \b
    auditor calibrate labelled-refusals.jsonl --criterion refusal
    auditor calibrate harmbench_val.json --criterion '{"type": "judge", "rubric": "harmful"}' \\
        --targets targets.json --judge judge
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
