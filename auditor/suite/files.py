"""Reads a JSON file, validates it against a bundled schema, and locates every issue by pointer and line."""

from __future__ import annotations

import difflib
import json
import math
import re
from functools import cache
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from auditor.errors import InputError, Issue, SuiteError
from auditor.resources import data_dir

_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")


@cache
def schema(kind: str) -> dict[str, Any]:
    """Return the bundled JSON Schema `kind` ('suite' or 'targets')."""
    path = data_dir("schemas") / f"{kind}.schema.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


MAX_BYTES = 50_000_000
MAX_DEPTH = 64
MAX_INT = 2**63 - 1
_LONG_NUMBER = re.compile(r"\d{4300,}")


def read(path: Path) -> tuple[Any, str]:
    """Parse a JSON file, returning the value and the raw text; one clear error if it cannot.

    The value is checked for what JSON allows but a suite cannot use: nesting deeper than MAX_DEPTH,
    numbers that are not finite or do not fit 64 bits, and text holding lone surrogates (not Unicode).
    """
    try:
        if not path.is_file():
            what = "no such file" if not path.exists() else "not a regular file (a folder, pipe or device)"
            raise InputError(f"{path}: {what}")
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"{path}: larger than {MAX_BYTES // 1_000_000} MB; not a suite or targets file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(
            [Issue(str(path), "", f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno)]
        ) from None
    except RecursionError:
        raise SuiteError([Issue(str(path), "", f"JSON nested deeper than {MAX_DEPTH} levels")]) from None
    except ValueError as exc:  # an integer literal too long to convert
        long = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, long.start()) + 1 if long else None
        raise SuiteError([Issue(str(path), "", f"a number with more than 4,300 digits ({exc})"[:200], line)]) from None
    return data, text


def value_issues(data: Any) -> list[tuple[str, str]]:
    """(pointer, message) for every value JSON parses but no suite or targets file can hold."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return [(where, f"nested deeper than {MAX_DEPTH} levels")]
        if isinstance(value, dict):
            for key, child in value.items():
                if _SURROGATE.search(key):
                    found.append(
                        (where, "a field name holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text")
                    )
                stack.append((where + pointer([key]), child, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{where}/{i}", child, depth + 1) for i, child in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            found.append((where, "text holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text"))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append((where, f"{value} is not a finite number"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            found.append((where, "the number does not fit in 64 bits"))
    return sorted(found)


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


def message_of(error: Any) -> str:
    """A schema error in words: custom x-errors text, unknown fields with did-you-mean, enum options."""
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
    bad = value_issues(data)
    if bad and bad[0][1].startswith("nested deeper"):
        raise SuiteError([Issue(str(path), bad[0][0], bad[0][1])])
    offsets = positions(text)
    if bad:
        raise SuiteError([located(path, text, offsets, where, message) for where, message in bad])
    validator = jsonschema.Draft202012Validator(schema(kind))
    issues = [
        located(path, text, offsets, pointer(e.absolute_path), message_of(e)) for e in validator.iter_errors(data)
    ]
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
