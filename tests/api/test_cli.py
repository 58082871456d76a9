"""The command line: conventions every command follows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from api.cli import app
from models.db import make_engine
from models.tables import Base

COMMANDS = ("serve", "sync", "analyze", "themes", "opportunities", "report", "schedule", "db", "demo", "sources",
            "keys")


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("db", "demo", "sources", "keys")])
def test_each_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_db_upgrade_creates_every_table_in_an_empty_sqlite_file(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "fresh.db"
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", f"sqlite:///{db}")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = make_engine(f"sqlite:///{db}")
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_bad_setting_fails_with_a_one_line_reason(monkeypatch) -> None:
    monkeypatch.setenv("GROUNDSWELL_MOMENTUM_WINDOW_WEEKS", "nine")
    result = CliRunner().invoke(app, ["themes"])
    assert result.exit_code != 0
    assert "momentum_window_weeks" in result.output


def test_demo_load_is_deterministic_and_idempotent(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    first = CliRunner().invoke(app, ["demo", "load", "--weeks", "16", "--seed", "3", "--json"])
    assert first.exit_code == 0, first.output
    rows = json.loads(first.output.strip().splitlines()[-1])
    assert sum(r["inserted"] for r in rows) >= 3000
    again = CliRunner().invoke(app, ["demo", "load", "--weeks", "16", "--seed", "3", "--json"])
    rows = json.loads(again.output.strip().splitlines()[-1])
    assert sum(r["inserted"] for r in rows) == 0 and sum(r["updated"] for r in rows) == 0
