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


def test_demo_load_ends_its_history_at_the_start_of_the_hour(tmp_path: Path, monkeypatch) -> None:
    # The current week's items are placed by where `now` falls; to the second, two loads a second apart
    # could differ (30 records did at 00:10 on a Friday), and the second load would update them.
    import datetime as dt

    import ingest.demo

    seen: list[dt.datetime] = []
    real = ingest.demo.generate_demo
    monkeypatch.setattr(ingest.demo, "generate_demo", lambda **kw: seen.append(kw["now"]) or real(**kw))
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    before = dt.datetime.now(dt.UTC)
    result = CliRunner().invoke(app, ["demo", "load", "--weeks", "4", "--accounts", "10", "--json"])
    assert result.exit_code == 0, result.output
    (now,) = seen
    assert (now.minute, now.second, now.microsecond) == (0, 0, 0) and now.tzinfo is not None
    assert before - dt.timedelta(hours=1) < now <= before


def test_demo_load_is_deterministic_and_idempotent(tmp_path: Path, monkeypatch) -> None:
    import datetime as dt
    import json

    def hour() -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)

    for attempt in range(2):  # history ends at the start of the hour: two loads across its turn may differ
        monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", f"sqlite:///{tmp_path / f'demo{attempt}.db'}")
        started = hour()
        first = CliRunner().invoke(app, ["demo", "load", "--weeks", "16", "--seed", "3", "--json"])
        assert first.exit_code == 0, first.output
        rows = json.loads(first.output.strip().splitlines()[-1])
        assert sum(r["inserted"] for r in rows) >= 3000
        again = CliRunner().invoke(app, ["demo", "load", "--weeks", "16", "--seed", "3", "--json"])
        if hour() == started:
            break
    rows = json.loads(again.output.strip().splitlines()[-1])
    assert sum(r["inserted"] for r in rows) == 0 and sum(r["updated"] for r in rows) == 0


def test_analyze_prints_every_field_in_full_on_a_narrow_screen(tmp_path: Path, monkeypatch) -> None:
    import flows.analysis

    result = {"run_id": 7, "kind": "incremental", "embedded": 1200, "items": 3517, "unassigned_share": 0.0006,
              "seconds": 12.345, "steps": {"embed": 0.022, "scores": 0.221},
              "decision": {"full": False, "reason": "incremental", "last_full_at": "2026-12-03T16:40:09+00:00"}}
    monkeypatch.setattr(flows.analysis, "analyze", lambda full=False: result)
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("COLUMNS", "80")
    out = CliRunner().invoke(app, ["analyze"])
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80
    for text in ("run_id", "incremental", "1,200", "3,517", "unassigned_share", "0.0006", "12.35", "embed: 0.022",
                 "scores: 0.221", "full: False", "last_full_at: 2026-12-03T16:40:09+00:00"):
        assert text in out.output, (text, out.output)


def test_analyze_refuses_to_start_beside_a_running_analysis(settings, sessions, monkeypatch) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from models.tables import AnalysisRun
    from pipeline.runs import process_owner

    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("GROUNDSWELL_DATA_DIR", str(settings.data_dir))
    with sessions.begin() as session:  # the hourly schedule's run, in a live process
        running = AnalysisRun(kind="incremental", status="running", owner=process_owner())
        session.add(running)
    with prefect_test_harness(server_startup_timeout=120):  # the real flow, on a server started outside the runner
        out = CliRunner().invoke(app, ["analyze", "--full"])
    assert out.exit_code != 0
    message = " ".join(out.output.split())
    assert f"analysis not started: analysis run {running.id} (incremental) is running since" in message, out.output
    assert "one analysis runs at a time" in message
