"""Reads labelled sets, replies whose right verdict a person decided, for measuring graders against them.

Three formats, all read into the same LabelledItem records:

- `jsonl` (the documented format): one object per line with `id`, `reply`, `label` (`pass` or `fail`: the verdict a
  correct grader gives), optional `prompt` (or `behaviour`), `context` and `group` (items of one group, e.g. one
  prompt, are not independent; intervals are clustered by group). Other fields are ignored.
- `harmbench`: HarmBench's classifier validation set (JSON: behaviour id -> generations, each with `generation`,
  `test_case` and the annotators' `human_0`.. labels, 1 = the generation is an instance of the behaviour). The
  majority of the annotators decides; harmful means the criterion fails. Measures `harm`.
- `xstest`: XSTest v2 completion CSVs (`id`, `prompt`, `completion`, `final_label` = 1_full_compliance,
  2_full_refusal or 3_partial_refusal). A refusal passes; a partial refusal counts as `--partial` says. Measures
  `refusal`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.errors import InputError

FORMATS = ("jsonl", "harmbench", "xstest")
DEFAULT_MEASURES = {"harmbench": "harm", "xstest": "refusal"}
MAX_ITEMS = 1_000_000


@dataclass(frozen=True)
class LabelledItem:
    """One reply with the verdict a person gave it."""

    id: str
    reply: str
    label: str  # pass | fail
    prompt: str = ""
    context: str = ""
    group: str = ""


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set as read: its items, where it came from, its SHA-256 and what its labels measure."""

    path: str
    format: str
    sha256: str
    measures: str
    items: tuple[LabelledItem, ...]

    @property
    def groups(self) -> int:
        return len({i.group or i.id for i in self.items})


def guess_format(path: Path) -> str:
    """The format a file's name suggests: .jsonl, .csv (XSTest) or .json (HarmBench)."""
    suffix = path.suffix.lower()
    return {".csv": "xstest", ".json": "harmbench"}.get(suffix, "jsonl")


def load(path: Path, fmt: str | None = None, measures: str | None = None, partial: str = "refusal") -> LabelledSet:
    """Read a labelled set; every problem is an InputError naming file, line and field."""
    fmt = fmt or guess_format(path)
    if not path.is_file():
        raise InputError(f"{path}: {'no such file' if not path.exists() else 'not a regular file'}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if fmt == "xstest":
        items = list(_xstest(path, text, partial))
    else:
        items = list(_jsonl(path, text) if fmt == "jsonl" else _harmbench(path, text))
    if not items:
        raise InputError(f"{path}: no labelled items in the file")
    seen: dict[str, int] = {}
    for n, item in enumerate(items, start=1):
        if item.id in seen:
            raise InputError(f"{path}: item {n}: id '{item.id[:80]}' duplicates item {seen[item.id]}")
        seen[item.id] = n
    chosen = measures or DEFAULT_MEASURES.get(fmt)
    if not chosen:
        raise InputError(f"{path}: say what the labels measure with --measures (e.g. refusal or harm)")
    return LabelledSet(str(path), fmt, hashlib.sha256(raw).hexdigest(), chosen, tuple(items))


def _text(where: str, row: dict[str, Any], field: str, required: bool = True) -> str:
    value = row.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"{where}: field '{field}' must be {'non-empty ' if required else ''}text")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InputError(f"{where}: field '{field}' holds a lone surrogate (not Unicode text)")
    return value


def _jsonl(path: Path, text: str) -> Iterator[LabelledItem]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise InputError(f"{where}: not a JSON object on one line") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: not a JSON object on one line")
        label = row.get("label")
        if label not in ("pass", "fail"):
            raise InputError(f'{where}: field \'label\' must be "pass" or "fail", not {json.dumps(label)[:40]}')
        if "id" not in row:
            raise InputError(f"{where}: field 'id' is missing")
        ident = row["id"]
        if not isinstance(ident, (str, int)) or isinstance(ident, bool):
            raise InputError(f"{where}: field 'id' must be text or a number")
        prompt = _text(where, row, "prompt", False) or _text(where, row, "behaviour", False)
        group = row.get("group", "")
        yield LabelledItem(
            id=str(ident),
            reply=_text(where, row, "reply"),
            label=label,
            prompt=prompt,
            context=_text(where, row, "context", False),
            group=str(group) if isinstance(group, (str, int)) else "",
        )


def _harmbench(path: Path, text: str) -> Iterator[LabelledItem]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping behaviour ids to lists of generations")
    for behaviour_id, generations in data.items():
        if not isinstance(generations, list):
            raise InputError(f"{path}: /{behaviour_id}: expected a list of generations")
        for k, g in enumerate(generations):
            where = f"{path}: /{behaviour_id}/{k}"
            if not isinstance(g, dict):
                raise InputError(f"{where}: expected an object")
            votes = [g[key] for key in sorted(g) if key.startswith("human_")]
            if not votes or any(v not in (0, 1) or isinstance(v, bool) for v in votes):
                raise InputError(f"{where}: field 'human_0': annotator labels must be 0 or 1")
            harmful = sum(votes) * 2 > len(votes)
            behaviour = g.get("behavior") or g.get("behaviour") or g.get("test_case") or behaviour_id
            yield LabelledItem(
                id=f"{behaviour_id}/{k}",
                reply=_text(where, g, "generation"),
                label="fail" if harmful else "pass",
                prompt=str(behaviour),
                context=str(g.get("context") or ""),
                group=str(behaviour_id),
            )


XSTEST_LABELS = {"1_full_compliance": "fail", "2_full_refusal": "pass"}


def _xstest(path: Path, text: str, partial: str) -> Iterator[LabelledItem]:
    rows = csv.DictReader(text.splitlines())
    missing = [c for c in ("id", "prompt", "completion", "final_label") if c not in (rows.fieldnames or [])]
    if missing:
        raise InputError(f"{path}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        final = (row.get("final_label") or "").strip()
        if final == "3_partial_refusal":
            label = "pass" if partial == "refusal" else "fail"
        elif final in XSTEST_LABELS:
            label = XSTEST_LABELS[final]
        else:
            raise InputError(
                f"{where}: field 'final_label' must be 1_full_compliance, 2_full_refusal or 3_partial_refusal, "
                f"not '{final[:40]}'"
            )
        model = (row.get("model") or "").strip()
        yield LabelledItem(
            id=f"{row['id']}/{model}" if model else str(row["id"]),
            reply=_text(where, row, "completion"),
            label=label,
            prompt=_text(where, row, "prompt"),
            group=_text(where, row, "prompt"),
        )
