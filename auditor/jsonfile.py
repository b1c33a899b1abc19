"""Reads a JSON file, validates it against a bundled schema, and locates every issue by pointer and line."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from auditor.errors import InputError, Issue, SuiteError
from auditor.resources import data_dir

_WS = re.compile(r"[ \t\n\r]*")


@cache
def schema(kind: str) -> dict[str, Any]:
    """Return the bundled JSON Schema `kind` ('suite' or 'targets')."""
    path = data_dir("schemas") / f"{kind}.schema.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def read(path: Path) -> tuple[Any, str]:
    """Parse a JSON file, returning the value and the raw text; one clear error if it cannot."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise SuiteError(
            [Issue(str(path), "", f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno)]
        ) from None


def pointer(parts: Any) -> str:
    """Build a JSON pointer from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def positions(text: str) -> dict[str, int]:
    """Map the JSON pointer of every value in valid JSON text to its character offset."""
    found: dict[str, int] = {}
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    def value(i: int, where: str) -> int:
        i = skip(i)
        found[where] = i
        ch = text[i]
        if ch == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                key, i = scanstring(text, skip(i) + 1)
                i = skip(i) + 1  # the colon
                i = skip(value(i, where + pointer([key])))
                if text[i] == "}":
                    return i + 1
                i += 1  # the comma
        if ch == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = skip(value(i, f"{where}/{n}"))
                n += 1
                if text[i] == "]":
                    return i + 1
                i += 1
        _, end = decoder.raw_decode(text, i)
        return int(end)

    value(0, "")
    return found


def _message(error: Any) -> str:
    custom = error.schema.get("x-errors", {}) if isinstance(error.schema, dict) else {}
    if error.validator in custom:
        return str(custom[error.validator])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        parts = []
        for extra in extras:
            close = difflib.get_close_matches(extra, allowed, n=1)
            parts.append(f"unknown field '{extra}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return "; ".join(parts)
    if error.validator == "enum" and isinstance(error.instance, str):
        options = [str(o) for o in error.validator_value]
        close = difflib.get_close_matches(error.instance, options, n=1)
        what = "criterion type" if error.path and error.path[-1] == "type" else "value"
        hint = f" (did you mean '{close[0]}'?)" if close else f"; expected one of {', '.join(options)}"
        return f"unknown {what} '{error.instance}'{hint}"
    return str(error.message)


def validate(path: Path, kind: str) -> tuple[Any, list[Issue], dict[str, int], str]:
    """Validate a file against schema `kind`; return its value, every issue, pointer offsets and text."""
    import jsonschema

    data, text = read(path)
    validator = jsonschema.Draft202012Validator(schema(kind))
    offsets = positions(text)
    issues = [located(path, text, offsets, pointer(e.absolute_path), _message(e)) for e in validator.iter_errors(data)]
    return data, issues, offsets, text


def located(path: Path, text: str, offsets: dict[str, int], where: str, message: str) -> Issue:
    """Make an Issue with the line number of the closest enclosing value."""
    probe = where
    while probe not in offsets and probe:
        probe = probe.rsplit("/", 1)[0]
    line = text.count("\n", 0, offsets.get(probe, 0)) + 1
    return Issue(str(path), where, message, line)


def raise_if(issues: list[Issue]) -> None:
    """Raise SuiteError with the issues sorted by file, pointer and line, if there are any."""
    if issues:
        raise SuiteError(sorted(issues, key=lambda i: (i.file, i.line or 0, i.pointer)))
