"""Options several commands share: the archive, the suite-size cap, and per-target limit overrides."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from auditor.records import LimitOverrides
from auditor.suite.load import MAX_ITEMS as MAX_SUITE_ITEMS

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
