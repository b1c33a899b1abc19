"""The shape of the code: packages are the stages, in pipeline order; a module imports only upstream; only the CLI
knows click; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "auditor"

# The stages in pipeline order, each with its modules upstream first: a module may import only modules listed
# before it. Shared records, errors and maths come first; one orchestration module chains the stages; the CLI last.
STAGES: list[tuple[str, list[str]]] = [
    ("", ["__init__", "errors", "records", "clock", "resources", "stats", "agreement"]),
    ("criteria", ["registry", "rubrics", "refusal", "text", "usage", "consistency", "judge", "__init__"]),
    ("suite", ["__init__", "files", "attacks", "load", "bundled", "targets", "labelled", "examples", "importers"]),
    (
        "archive",
        [
            "__init__",
            "tables",
            "manifest",
            "ledger",
            "compact",
            "store",
            "acts",
            "bundle",
            "cache",
            "objects",
            "sync",
            "remote",
        ],
    ),
    (
        "run",
        [
            "__init__",
            "plan",
            "throttle",
            "wire",
            "serve",
            "endpoint",
            "execute",
            "adaptive",
            "local",
            "workers",
            "launch",
        ],
    ),
    ("grade", ["__init__", "rows", "judging", "calibrate", "review"]),
    (
        "report",
        [
            "__init__",
            "validity",
            "verdicts",
            "governance",
            "recommend",
            "compare",
            "analyse",
            "charts",
            "figures",
            "settings",
            "summary",
            "render",
            "history",
            "site",
            "index",
        ],
    ),
    ("", ["pipeline", "shards", "decisions"]),
    (
        "cli",
        [
            "console",
            "options",
            "project",
            "inputs",
            "graders",
            "running",
            "govern",
            "bundle",
            "archive",
            "history",
            "view",
            "__init__",
        ],
    ),
    ("", ["__main__"]),
]
ORDER = [f"{package}.{module}" if package else module for package, modules in STAGES for module in modules]


def path_of(module: str) -> Path:
    return PACKAGE / (module.replace(".", "/") + ".py")


def auditor_imports(path: Path) -> set[str]:
    """The auditor modules a file imports, as dotted names relative to the package (a package as its __init__)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("auditor"):
            base = node.module.removeprefix("auditor").removeprefix(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                if path_of(name).is_file():
                    found.add(name)
                elif (PACKAGE / name.replace(".", "/")).is_dir():
                    found.add(f"{name}.__init__")
                elif alias.name != "__version__":
                    found.add(f"{base}.__init__" if (PACKAGE / base.replace(".", "/")).is_dir() else base)
                else:
                    found.add("__init__")
    return found


def test_every_module_is_placed_in_the_order() -> None:
    on_disk = {str(p.relative_to(PACKAGE))[:-3].replace("/", ".") for p in PACKAGE.rglob("*.py")}
    assert sorted(on_disk) == sorted(ORDER)


def test_the_packages_are_the_stages() -> None:
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert packages == sorted(package for package, _ in STAGES if package)


@pytest.mark.parametrize("module", ORDER)
def test_stages_import_only_upstream(module: str) -> None:
    allowed = set(ORDER[: ORDER.index(module)])
    imported = auditor_imports(path_of(module)) - {module}
    assert imported <= allowed, f"{module} imports downstream modules {sorted(imported - allowed)}"


@pytest.mark.parametrize("module", [m for m in ORDER if not m.startswith("cli.") and m != "__main__"])
def test_only_the_cli_knows_click(module: str) -> None:
    source = path_of(module).read_text()
    assert "import click" not in source and "from click" not in source


@pytest.mark.parametrize("module", ORDER)
def test_modules_stay_small(module: str) -> None:
    assert len(path_of(module).read_text().splitlines()) <= 450


@pytest.mark.parametrize("module", ORDER)
def test_every_module_says_its_job(module: str) -> None:
    tree = ast.parse(path_of(module).read_text())
    assert ast.get_docstring(tree), f"{module} has no module docstring"
