"""The one family of errors auditor raises; the CLI turns each into one line and an exit code.

AuditorError                  exit 1 unless stated
+-- UsageError                exit 2: a bad option or name on the command line
|   +-- UnknownName           an unknown run id, target, template ... ("did you mean")
+-- InputError                exit 2: a file that cannot be read or is not valid
|   +-- SuiteError            a suite or targets file that breaks its schema (carries every issue)
+-- ConfigError               a missing API key variable, a missing optional extra
+-- EndpointError             a model endpoint that cannot be reached at all
+-- ArchiveError              an archive folder or run that is damaged or incomplete
+-- RenderError               a report template or PDF that cannot be produced
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class AuditorError(Exception):
    """Base of every error auditor reports to the user."""

    exit_code = 1


class UsageError(AuditorError):
    """A bad option or argument."""

    exit_code = 2


class UnknownName(UsageError):
    """A name that matches nothing known, with close matches offered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1) if len(name) <= 200 else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listing = f"; known: {', '.join(known)}" if known and len(known) <= 12 else ""
        super().__init__(f"unknown {kind} '{clip(name, 80)}'{hint}{listing}")


class InputError(AuditorError):
    """A file that cannot be read or parsed."""

    exit_code = 2


@dataclass(frozen=True)
class Issue:
    """One problem found in an input file, located by JSON pointer and line."""

    file: str
    pointer: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return clip(f"{where}: {clip(self.pointer, 200) or '/'}: {self.message}")


def clip(text: str, limit: int = 400) -> str:
    """Text cut to `limit` characters with a visible count of what was cut (error lines quote user values)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


class SuiteError(InputError):
    """A suite or targets file with one or more schema or semantic issues."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class ConfigError(AuditorError):
    """Something the environment must provide is missing."""


class EndpointError(AuditorError):
    """A model endpoint that cannot be used at all."""


class ArchiveError(AuditorError):
    """A damaged, missing or incomplete archive or run."""


class RenderError(AuditorError):
    """A report that cannot be rendered."""
