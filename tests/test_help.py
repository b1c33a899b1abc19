"""Help that teaches: every command shows examples, the top level lists every command in workflow order with
the exit codes, and the query command names every view the archive has."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.archive.tables import VIEWS
from auditor.cli import COMMANDS, cli

NAMES = [command.name or "" for command, _ in COMMANDS]


def help_of(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_command_help_has_an_example(name: str) -> None:
    examples = [line.strip() for line in help_of(name).splitlines() if line.startswith("  auditor ")]
    assert examples, name
    assert all(line.split()[1] == name for line in examples if not line.startswith("auditor plan")), examples


def test_top_level_help_lists_every_command_in_order_and_the_exit_codes() -> None:
    text = help_of()
    commands, epilog = text.split("Commands:")[1].split("\n\n", 1)
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert listed == NAMES
    assert sorted(NAMES) == sorted(cli.commands)
    assert "..." not in commands.replace("grades ...", "")  # no line cut short
    epilog = " ".join(epilog.split())
    assert "1 the environment failed" in epilog and "2 bad input" in epilog


def test_query_help_and_errors_name_every_view(tmp_path: Path) -> None:
    text = help_of("query")
    for view, _, _ in VIEWS:
        assert f"\n  {view} " in text
    (tmp_path / "runs").mkdir()
    result = CliRunner().invoke(cli, ["query", "SELECT * FROM nope", "--archive", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().endswith("views: " + ", ".join(v for v, _, _ in VIEWS))
