"""The command line: parses options, calls the pipeline, and turns errors into one line and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from auditor import __version__
from auditor.cli import archive, bundle, govern, graders, history, inputs, project, running, view
from auditor.cli.console import printable
from auditor.errors import AuditorError, clip


class CommandFailure(click.ClickException):
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
        except AuditorError as exc:  # raised while parsing arguments (a suite name that is no file)
            CommandFailure(exc).show()
            code = exc.exit_code
        except click.Abort:
            click.echo("error: aborted", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added: the order of an audit

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditorError as exc:
            raise CommandFailure(exc) from None
        except KeyboardInterrupt:
            raise CommandFailure(AuditorError("interrupted; everything stored so far is kept")) from None
        except OSError as exc:  # the file system or the machine refused: an environment failure
            where = f"{exc.filename}: " if exc.filename else ""
            raise CommandFailure(AuditorError(f"{where}{exc.strerror or exc}")) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with how to see the whole story
            if os.environ.get("AUDITOR_DEBUG"):
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (set AUDITOR_DEBUG=1 for the traceback)"
            raise CommandFailure(AuditorError(message)) from None


@click.group(
    cls=AuditorGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    epilog="Exit codes: 0 done (whatever the verdicts), 1 the environment failed (a missing key, an unreachable "
    "endpoint, a run that fails verification), 2 bad input (a file, option or name to fix). `auditor COMMAND -h` "
    "shows examples.",
)
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """auditor: declarative audit reports for large language models.

    \b
    auditor init my-audit            a targets file, a starter suite and the next commands
    auditor plan jailbreak --targets my-audit/targets.json
    auditor run jailbreak --targets my-audit/targets.json --target gpt-4o-mini --judge judge
    auditor report latest            HTML and PDF
    auditor demo                     the whole job on the bundled model, offline
    """


# in the order an audit uses them, each with the line `auditor --help` shows
COMMANDS = (
    (project.init, "Start a project: a commented targets file, a starter suite, the next commands."),
    (project.suites, "List, show and copy the bundled suites (usable by name wherever a suite is asked)."),
    (inputs.validate, "Check suite and targets files: every issue with file, line and JSON pointer."),
    (inputs.schema, "Print the JSON Schema of suites or targets files."),
    (inputs.plan_cmd, "What a run would send, cost and take, and whether its sample sizes can decide."),
    (running.run, "Run a suite against targets, store every reply, grade; --resume continues a run."),
    (running.finalize, "Check, seal and grade a run sent in shards (run --shard K/N --run RUN)."),
    (running.grade, "Re-grade a run's stored replies (no audited model is called)."),
    (archive.report, "Render a run's report as HTML and PDF."),
    (view.view, "Serve the archive's reports on 127.0.0.1 and open the latest."),
    (archive.runs, "List runs with status and headline figures."),
    (history.history, "Pass rates, verdicts and sign-offs per suite and target over time; flags real changes."),
    (history.index_cmd, "Write the archive as a static HTML site: runs, reports, suite histories."),
    (archive.query, "SQL over the archive's views (runs, responses, grades ...)."),
    (archive.compare_cmd, "Compare two runs trial by trial: what changed, and is it real."),
    (govern.gate, "Exit 0 / 10 / 20 / 30 on a run's verdict in one context, for CI; --junit, --json."),
    (govern.signoff, "Record who approved a run for a context, with conditions and expiry."),
    (govern.waive, "Accept a known failure until a date; the verdict and report show the waiver."),
    (govern.signoffs, "List sign-offs and waivers."),
    (archive.verify, "Check runs against their tamper-evident ledgers, or an exported bundle."),
    (bundle.export, "Pack a run and its reports into a portable bundle, optionally signed."),
    (bundle.keygen, "Make an Ed25519 key pair to sign bundles with."),
    (graders.calibrate_cmd, "Measure a grader against a labelled set."),
    (graders.review_cmd, "Export graded replies for human review, or import the labels."),
    (inputs.import_cmd, "Turn a public behaviour CSV into a suite."),
    (running.demo, "Audit the bundled model offline and write an HTML and PDF report."),
)  # fmt: skip
for command, line in COMMANDS:
    command.short_help = line
    cli.add_command(command)


def main() -> None:
    """Run the command line."""
    cli(prog_name="auditor")
