"""Report settings: who the report is for and from, a logo, a classification marking, a version, and the language
of the report's fixed text; read from a small JSON file (`auditor report --settings FILE`) or given as options."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from auditor.errors import InputError
from auditor.resources import data_dir

LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
MAX_LOGO_BYTES = 500_000


@dataclass(frozen=True)
class ReportSettings:
    """What a team sets once for its reports; everything optional."""

    organisation: str = ""
    prepared_for: str = ""
    logo: str = ""  # a data: URI (embedded, so the report fetches nothing)
    classification: str = ""
    version: str = ""
    language: str = "en"

    def but(self, **changes: Any) -> ReportSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def languages() -> list[str]:
    """The languages the bundled fixed text comes in."""
    return sorted(p.stem for p in (data_dir("report_templates") / "text").glob("*.json"))


def fixed_text(language: str, templates: Path | None = None) -> dict[str, Any]:
    """The report's fixed text (headings, labels, decision words) in a language, from the templates folder
    (falling back to the bundled catalogue for any string a custom one leaves out)."""
    bundled = data_dir("report_templates") / "text"
    if not (bundled / f"{language}.json").is_file():
        raise InputError(f"no report text in language '{language}'; available: {', '.join(languages())}")
    text = dict(json.loads((bundled / "en.json").read_text(encoding="utf-8")))
    text.update(json.loads((bundled / f"{language}.json").read_text(encoding="utf-8")))
    custom = templates / "text" / f"{language}.json" if templates is not None else None
    if custom is not None and custom.is_file():
        text.update(json.loads(custom.read_text(encoding="utf-8")))
    return text


def logo_uri(path: Path) -> str:
    """A logo file as a data: URI (PNG, JPEG or SVG, at most 500 kB)."""
    kind = LOGO_TYPES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: a logo must be PNG, JPEG or SVG")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if len(data) > MAX_LOGO_BYTES:
        raise InputError(f"{path}: a logo may be at most {MAX_LOGO_BYTES // 1000} kB")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def load(path: Path) -> ReportSettings:
    """Read a settings file: a JSON object with any of organisation, prepared_for, logo (a path relative to the
    file), classification, version and language. Unknown fields and wrong types are one clear error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON settings file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: report settings are a JSON object")
    known = {f.name for f in fields(ReportSettings)}
    for key, value in data.items():
        if key not in known:
            raise InputError(f"{path}: /{key}: unknown setting; known: {', '.join(sorted(known))}")
        if not isinstance(value, str):
            raise InputError(f"{path}: /{key}: must be text")
    if "logo" in data:
        data["logo"] = logo_uri((path.parent / data["logo"]).resolve())
    settings = ReportSettings(**data)
    if settings.language not in languages():
        raise InputError(f"{path}: /language: no report text in '{settings.language}'; available: "
                         f"{', '.join(languages())}")  # fmt: skip
    return settings
