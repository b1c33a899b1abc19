"""The command line: parses options, calls the pipeline, and turns errors into one line and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from auditor import __version__
from auditor.cli import archive, graders, inputs, running
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


@click.group(cls=AuditorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
def cli() -> None:
    """auditor: declarative audit reports for large language models."""


COMMANDS = (
    running.run, running.grade, running.demo,
    archive.report, archive.query, archive.verify, archive.compare_cmd, archive.runs,
    inputs.validate, inputs.schema, inputs.plan_cmd, inputs.import_cmd,
    graders.calibrate_cmd, graders.review_cmd,
)  # fmt: skip
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Run the command line."""
    cli(prog_name="auditor")
