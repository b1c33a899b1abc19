"""Commands for the acts around an audit: sign-off, waivers, and a CI gate with exit codes, JUnit and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from auditor.cli.console import format_rows, printable
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE


@click.command()
@click.argument("run_id")
@click.option("--context", required=True, help="The deployment context (a policy id of the suite).")
@click.option("--decision", required=True, type=click.Choice(["approve", "conditions", "reject"]))
@click.option("--name", required=True, help="Who signs.")
@click.option("--role", required=True, help="Their role, e.g. Chief Risk Officer.")
@click.option("--target", help="The one target signed for (default: every target of the run).")
@click.option("--conditions", "conditions", multiple=True, help="A condition of the approval. Repeatable.")
@click.option("--note", default="", help="Why; required when the decision differs from the computed verdict.")
@click.option("--expires", metavar="YYYY-MM-DD", help="The last day the sign-off stands.")
@ARCHIVE
def signoff(
    run_id: str,
    context: str,
    decision: str,
    name: str,
    role: str,
    target: str | None,
    conditions: tuple[str, ...],
    note: str,
    expires: str | None,
    archive: Path,
) -> None:
    """Record who approved a run for a deployment context, with conditions and an expiry; sealed in the run's
    ledger and printed in its report. A decision that differs from the computed verdict is an override and needs
    a --note.

    \b
    auditor signoff latest --context internal-use --decision approve --name "A. Analyst" --role "Model risk"
    auditor signoff latest --context high-stakes --decision conditions --name "B. Chief" --role CRO \\
        --conditions "a person reviews every answer" --expires 2027-06-30
    """
    from auditor import decisions
    from auditor.archive.store import Archive

    run = Archive.existing(archive).run(run_id)
    s = decisions.sign(archive, run, context, decision, (name, role), target, conditions, note, expires)
    flag = " (override of the computed verdict)" if s.override else ""
    click.echo(f"{s.signoff_id}: {printable(s.name)} signed '{s.decision}' for {s.context} on run {run.run_id}{flag}")


@click.command()
@click.argument("run_id")
@click.option("--challenge", required=True, help="The challenge id whose failure is accepted.")
@click.option("--target", help="Only for this target (default: every target).")
@click.option("--context", help="Only in this deployment context (default: every context).")
@click.option("--owner", required=True, help="Who owns the accepted risk.")
@click.option("--reason", required=True, help="Why it is accepted, and what mitigates it.")
@click.option("--expires", required=True, metavar="YYYY-MM-DD", help="The last day the waiver applies.")
@ARCHIVE
def waive(
    run_id: str,
    challenge: str,
    target: str | None,
    context: str | None,
    owner: str,
    reason: str,
    expires: str,
    archive: Path,
) -> None:
    """Accept a known failure until a date: a failing or undecided rule on the challenge no longer rejects while
    the waiver is live; the report names it and keeps a waiver register. Sealed in the run's ledger.

    \b
    auditor waive latest --challenge c08-hallucinations --target gpt-4o --context internal-use \\
        --owner "C. Owner" --reason "answers are checked against the knowledge base" --expires 2027-03-31
    """
    from auditor import decisions
    from auditor.archive.store import Archive

    run = Archive.existing(archive).run(run_id)
    w = decisions.waive(run, challenge, owner, reason, expires, target, context)
    click.echo(f"{w.waiver_id}: {w.challenge_id} waived on run {run.run_id} until {w.expires}")


@click.command()
@click.argument("run_ids", nargs=-1)
@ARCHIVE
def signoffs(run_ids: tuple[str, ...], archive: Path) -> None:
    """List the sign-offs and waivers of runs (every run when none is named).

    \b
    auditor signoffs
    auditor signoffs latest
    """
    from auditor.archive import acts
    from auditor.archive.store import Archive

    store = Archive.existing(archive)
    runs = [store.run(r) for r in run_ids] if run_ids else store.runs()
    rows: list[tuple[Any, ...]] = []
    for run in runs:
        for s in acts.signoffs(run):
            who = f"{s.name} ({s.role})"
            what = s.decision + (" OVERRIDE" if s.override else "")
            rows.append((run.run_id, s.signoff_id, s.context + (f"/{s.target}" if s.target else ""), what, who,
                         s.signed_at, s.expires or "", "; ".join(s.conditions)))  # fmt: skip
        for w in acts.waivers(run):
            where = f"{w.target or '*'}/{w.context or '*'}"
            rows.append((run.run_id, w.waiver_id, where, f"waive {w.challenge_id}", w.owner, w.granted_at, w.expires,
                         w.reason))  # fmt: skip
    if not rows:
        click.echo("no sign-offs or waivers")
        return
    names = ["run", "id", "context", "decision", "by", "at", "expires", "conditions_or_reason"]
    click.echo(format_rows(names, rows, "table"), nl=False)


@click.command()
@click.argument("run_id", default="latest")
@click.option("--context", required=True, help="The deployment context to gate on (a policy id of the suite).")
@click.option("--target", "targets", multiple=True, help="Gate only on these targets (default: all). Repeatable.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML file.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write a JSON file.")
@click.option("--as-of", metavar="YYYY-MM-DD", help="Decide waivers as of this date (default: today).")
@ARCHIVE
def gate(
    run_id: str,
    context: str,
    targets: tuple[str, ...],
    junit: Path | None,
    json_file: Path | None,
    as_of: str | None,
    archive: Path,
) -> int:
    """Turn a run's verdict in one context into an exit code for CI: 0 approve, 10 approve with conditions,
    20 reject, 30 insufficient evidence (the worst target decides); one line per target.

    \b
    auditor gate latest --context high-stakes-user-facing
    auditor gate latest --context internal-use --target gpt-4o --junit audit.xml --json verdict.json
    """
    from auditor import decisions
    from auditor.archive.store import Archive

    run = Archive.existing(archive).run(run_id)
    on = decisions.parse_date(as_of, "--as-of") if as_of else None
    result = decisions.gate(archive, run, context, targets, on)
    for v in result.verdicts:
        waived = f" with {', '.join(w.label() for w in v.waived)}" if v.waived else ""
        reasons = [r for o in v.outcomes if o.status != "holds" for r in o.reasons[:1]]
        why = f": {reasons[0]}" if reasons and v.decision != "approve" else ""
        line = f"{v.target}: {v.decision}{waived} (exit {decisions.GATE_CODES[v.decision]}){why}"
        click.echo(printable(line))
    if junit is not None:
        junit.write_text(decisions.junit_xml(result), encoding="utf-8")
    if json_file is not None:
        json_file.write_text(
            json.dumps(decisions.gate_json(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return result.exit_code
