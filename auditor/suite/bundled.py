"""The suites that ship with auditor, found by name: every command that takes a suite file also takes one of these
names, and `auditor suites` lists, shows and copies them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from auditor.errors import InputError
from auditor.resources import data_dir


@dataclass(frozen=True)
class Bundled:
    """A bundled suite: its name, file, title and size."""

    name: str
    path: Path
    title: str
    version: str
    probes: int
    description: str


def bundled() -> dict[str, Bundled]:
    """Every bundled suite by name (the file name without .json)."""
    found = {}
    for path in sorted(data_dir("suites").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "challenges" not in data:
            continue  # the embedded targets file
        probes = sum(len(c.get("probes", [])) for c in data["challenges"])
        first = str(data.get("description", "")).split(". ")[0]
        found[path.stem] = Bundled(path.stem, path, data["title"], data["version"], probes, first)
    return found


def resolve(text: str | Path) -> Path:
    """A suite argument as a path: an existing file, else the bundled suite of that name (with or without .json);
    a name that is neither is one error listing the bundled names."""
    path = Path(text)
    if path.exists():
        return path
    suites = bundled()
    name = path.name.removesuffix(".json") if path.parent in (Path("."), Path("suites")) else None
    if name is not None and name in suites:
        return suites[name].path
    if path.suffix or len(path.parts) > 1:
        raise InputError(f"{text}: no such file")
    raise InputError(f"no suite file '{text}' and no bundled suite of that name; bundled: {', '.join(suites)}")
