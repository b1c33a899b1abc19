"""The shape of the code: stages import only upstream stages, only the CLI knows click, files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "auditor"

# Upstream first. A module may import only modules listed before it.
ORDER = [
    "__init__",
    "errors",
    "records",
    "stats",
    "agreement",
    "resources",
    "jsonfile",
    "labelled",
    "attacks",
    "rubrics",
    "checks",
    "refusal",
    "text_checks",
    "usage_checks",
    "judge_checks",
    "criteria",
    "suite",
    "targets",
    "plan",
    "throttle",
    "ledger",
    "tables",
    "store",
    "serve",
    "wire",
    "execute",
    "cache",
    "grade",
    "examples",
    "judge",
    "adaptive",
    "calibrate",
    "validity",
    "compare",
    "verdicts",
    "analyse",
    "review",
    "summary",
    "render",
    "local",
    "importers",
    "pipeline",
    "console",
    "cli_inputs",
    "cli",
    "__main__",
]


def auditor_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("auditor"):
            if node.module == "auditor":
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("auditor."))
    return found - {"__version__"}


def test_every_module_is_placed_in_the_order() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(ORDER)


@pytest.mark.parametrize("module", ORDER)
def test_stages_import_only_upstream(module: str) -> None:
    allowed = set(ORDER[: ORDER.index(module)])
    imported = auditor_imports(PACKAGE / f"{module}.py")
    assert imported <= allowed, f"{module} imports downstream modules {sorted(imported - allowed)}"


@pytest.mark.parametrize("module", [m for m in ORDER if m not in ("cli", "cli_inputs", "__main__")])
def test_only_the_cli_knows_click(module: str) -> None:
    source = (PACKAGE / f"{module}.py").read_text()
    assert "import click" not in source and "from click" not in source


@pytest.mark.parametrize("module", ORDER)
def test_modules_stay_small(module: str) -> None:
    assert len((PACKAGE / f"{module}.py").read_text().splitlines()) <= 450
