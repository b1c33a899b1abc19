"""Locates the bundled schemas, suites and report templates, in a wheel or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder holding bundled data `name` (schemas, suites or report_templates).

    A wheel carries them under auditor/_data/; a source checkout keeps them at the top level.
    """
    for candidate in (_HERE / "_data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled folder '{name}' is missing from this installation")
