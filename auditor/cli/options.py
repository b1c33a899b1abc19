"""Options several commands share: the archive, the suite-size cap, and per-target limit overrides."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from auditor.records import LimitOverrides
from auditor.suite.load import MAX_ITEMS as MAX_SUITE_ITEMS


class ArchiveLocation(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """An archive folder, or the URL of an archive on object storage (s3://bucket/prefix)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from auditor.archive.remote import parse

        return parse(value)


_ARCHIVE = click.option(
    "--archive",
    type=ArchiveLocation(),
    default="audits",
    show_default=True,
    envvar="AUDITOR_ARCHIVE",
    help="Archive folder holding the runs, or s3://BUCKET/PREFIX (credentials from the AWS environment).",
)


def ARCHIVE_OPTION(command: Callable[..., Any]) -> Callable[..., Any]:  # noqa: N802  # used as a constant
    """Add --archive to a command, which receives the archive's folder: for a URL, a local working copy pulled from
    the store before the command and pushed back while and after it runs (auditor.archive.remote)."""

    @functools.wraps(command)
    def wrapper(*args: Any, archive: Path | str, **kwargs: Any) -> Any:
        if isinstance(archive, Path):
            return command(*args, archive=archive, **kwargs)
        from auditor.archive.remote import working_copy

        with working_copy(archive) as folder:
            click.get_current_context().meta[_SHOWN] = (folder, archive)
            return command(*args, archive=folder, **kwargs)

    return _ARCHIVE(wrapper)


_SHOWN = "auditor.archive"


def shown(archive: Path) -> str:
    """The archive as the user named it: the URL for the working copy of an archive on object storage."""
    return url_of(archive) or str(archive)


def url_of(archive: Path) -> str | None:
    """The URL of the archive on object storage whose working copy `archive` is, or None for a plain folder."""
    ctx = click.get_current_context(silent=True)
    folder, url = ctx.meta.get(_SHOWN, (None, None)) if ctx is not None else (None, None)
    return str(url) if folder == archive else None


ARCHIVE_LOCATION = _ARCHIVE  # the folder (Path) or the URL (str) as given, for commands that read a store directly
MAX_ITEMS = click.option(
    "--max-items",
    type=click.IntRange(1),
    default=MAX_SUITE_ITEMS,
    show_default=True,
    envvar="AUDITOR_MAX_ITEMS",
    help="Refuse a suite that expands to more requests per target than this.",
)

_LIMITS = (
    click.option("--concurrency", type=click.IntRange(1, 1024), help="Override every target's concurrency limit."),
    click.option("--rpm", type=click.FloatRange(min=0, min_open=True), help="Override requests per minute."),
    click.option("--tpm", type=click.FloatRange(min=0, min_open=True), help="Override tokens per minute."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Override the request timeout (s)."),
    click.option("--max-retries", type=click.IntRange(0, 20), help="Override retries per request."),
)


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the limit-override options to a command, which receives them as one `limits` record."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        concurrency: int | None,
        rpm: float | None,
        tpm: float | None,
        timeout: float | None,
        max_retries: int | None,
        **kwargs: Any,
    ) -> Any:
        return command(*args, limits=LimitOverrides(concurrency, rpm, tpm, timeout, max_retries), **kwargs)

    for option in reversed(_LIMITS):
        wrapper = option(wrapper)
    return wrapper


class SuiteArgument(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A suite file, or the name of a bundled suite (auditor suites lists them)."""

    name = "SUITE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from auditor.suite.bundled import resolve

        return value if isinstance(value, Path) else resolve(value)


SUITE = SuiteArgument()
