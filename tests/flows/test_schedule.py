"""`groundswell schedule` starts a local Prefect server, registers both deployments with their cron, stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli_schedule import LocalPrefectServer, free_port, is_stop, register
from flows.deployments import PIPELINE_DEPLOYMENT, REPORT_DEPLOYMENT, build_deployments
from ingest.errors import IngestError
from ingest.http import HttpClient
from models.db import make_engine
from models.settings import Settings
from models.tables import AnalysisRun, Embedding, Report, Theme

# api.cli registers the command itself once `api.cli_schedule` is among its extensions; until then, here.
LAUNCH = (
    "from api.cli import app\n"
    "from api.cli_schedule import register\n"
    "if 'schedule' not in {c.name or c.callback.__name__ for c in app.registered_commands}:\n"
    "    register(app)\n"
    "app(prog_name='groundswell')\n"
)


def prefect_api(api_url: str) -> HttpClient:
    """The Prefect server's API, retried with backoff as Prefect's own client is: the server answers 503 while its
    SQLite database is busy (the served runner writing), and such a request changed nothing."""
    return HttpClient(source="prefect server", base_url=api_url, timeout_s=10.0, backoff_s=0.5, max_backoff_s=8.0)


def deployments(api_url: str) -> dict[str, dict[str, Any]]:
    with prefect_api(api_url) as api:
        return {d["name"]: d for d in api.post_json("deployments/filter", {})}


def crons(deployment: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]]


def test_deployments_carry_the_configured_schedules(settings: Settings) -> None:
    custom = settings.model_copy(update={"pipeline_cron": "*/30 * * * *", "timezone": "Europe/Berlin"})
    pipeline, report = build_deployments(custom)
    assert (pipeline.flow_name, pipeline.name, report.flow_name, report.name) == (
        "pipeline", PIPELINE_DEPLOYMENT, "weekly-report", REPORT_DEPLOYMENT)
    assert [(s.schedule.cron, s.schedule.timezone) for s in pipeline.schedules] == [("*/30 * * * *", "Europe/Berlin")]
    assert [(s.schedule.cron, s.schedule.timezone) for s in report.schedules] == [("0 8 * * 1", "Europe/Berlin")]
    assert report.parameters == {"deliver": True}


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    impatient = LocalPrefectServer(tmp_path, port=free_port(), startup_timeout_s=0.5)
    with pytest.raises(Exception, match="did not answer|exited"):
        impatient.start()
    assert impatient.process is not None and impatient.process.poll() is not None  # stopped, not left running


def test_command_is_registered() -> None:
    import typer

    app = typer.Typer()

    @app.callback()
    def main() -> None: ...

    register(app)
    result = CliRunner().invoke(app, ["schedule", "--help"])
    assert result.exit_code == 0 and "cron schedules" in result.output


def test_the_ways_a_stop_comes_out_of_the_runner() -> None:
    from prefect.exceptions import TerminationSignal

    for stop in (KeyboardInterrupt(), SystemExit(0), SystemExit(None), TerminationSignal(signal.SIGTERM),
                 BaseExceptionGroup("task group", [SystemExit(0)]),
                 BaseExceptionGroup("outer", [KeyboardInterrupt(), BaseExceptionGroup("inner", [SystemExit(0)])])):
        assert is_stop(stop), stop
    for error in (RuntimeError("boom"), SystemExit(2), BaseExceptionGroup("mixed", [SystemExit(0), ValueError()])):
        assert not is_stop(error), error


@pytest.mark.parametrize(("raised", "code"), [
    (BaseExceptionGroup("unhandled errors in a TaskGroup", [SystemExit(0)]), 0),  # SIGTERM while starting
    (KeyboardInterrupt(), 0),
    (BaseExceptionGroup("unhandled errors in a TaskGroup", [RuntimeError("lost the server")]), 1),
], ids=["sigterm-in-task-group", "interrupt", "error"])
def test_a_stop_ends_the_command_cleanly_and_an_error_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 raised: BaseException, code: int) -> None:
    import flows.deployments
    from api.cli import app

    def serve(deployments: Any) -> None:
        raise raised

    monkeypatch.setattr(flows.deployments, "serve_deployments", serve)
    monkeypatch.setenv("GROUNDSWELL_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("GROUNDSWELL_DATABASE_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # no local server; nothing is called
    result = CliRunner().invoke(app, ["schedule"])
    assert result.exit_code == code, result.output
    if code:
        assert "lost the server" in repr(result.exception)


@contextmanager
def scheduling(tmp_path: Path, pipeline_cron: str, *, demo: str | None = None,
               **extra_env: str) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, Any]]]:
    """`groundswell schedule` in a subprocess with its own local Prefect server, once both deployments are
    registered: yields the process, the server's API URL and the deployments by name; kills it if still running.
    ``demo`` are the arguments of a `groundswell demo load` run first."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "GROUNDSWELL_"))}
    env.update(GROUNDSWELL_DATA_DIR=str(tmp_path / "var"), GROUNDSWELL_TIMEZONE="Europe/Berlin",
               GROUNDSWELL_PIPELINE_CRON=pipeline_cron, PREFECT_HOME=str(tmp_path / "prefect-client"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra_env)
    if demo is not None:
        subprocess.run([sys.executable, "-c", LAUNCH, "demo", "load", *demo.split()], env=env, check=True,
                       capture_output=True, cwd=Path(__file__).parents[2])
    log = (tmp_path / "schedule.log").open("w+b")
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "schedule", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    try:
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                found = deployments(api_url)
            except IngestError:  # not answering yet
                found = {}
            if {PIPELINE_DEPLOYMENT, REPORT_DEPLOYMENT} <= found.keys():
                break
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "schedule.log").read_text()
        yield proc, api_url, found
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def assert_stopped_cleanly(tmp_path: Path, proc: subprocess.Popen[bytes], api_url: str,
                           stop_signal: signal.Signals) -> None:
    proc.send_signal(stop_signal)
    assert proc.wait(timeout=60) == 0, (tmp_path / "schedule.log").read_text()
    output = (tmp_path / "schedule.log").read_text()
    stopped = re.search(r"local Prefect server \(pid (\d+)\) stopped$", output, re.MULTILINE)
    assert stopped, output
    with pytest.raises(ProcessLookupError):
        os.kill(int(stopped.group(1)), 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api_url}/health", timeout=2.0)


# Once a year, at night: no scheduled run starts while a test is stopping the command.
RARE_CRON = "15 4 1 1 *"


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_schedule_serves_both_deployments_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    with scheduling(tmp_path, RARE_CRON) as (proc, api_url, found):
        assert crons(found[PIPELINE_DEPLOYMENT]) == [(RARE_CRON, "Europe/Berlin", True)]
        assert crons(found[REPORT_DEPLOYMENT]) == [("0 8 * * 1", "Europe/Berlin", True)]
        assert found[REPORT_DEPLOYMENT]["parameters"] == {"deliver": True}
        assert (tmp_path / "var" / "prefect" / "server.log").is_file()  # its state lives under the data dir
        assert_stopped_cleanly(tmp_path, proc, api_url, stop_signal)


def run_deployment(api_url: str, deployment: dict[str, Any], timeout_s: float = 240.0) -> dict[str, Any]:
    """Start a run of ``deployment`` on the server (as its schedule would) and wait until it ends."""
    with prefect_api(api_url) as api:
        run_id = api.post_json(f"deployments/{deployment['id']}/create_flow_run", {})["id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = api.get_json(f"flow_runs/{run_id}")
            if run["state"] and run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} of {deployment['name']} did not end within {timeout_s:.0f}s")


@pytest.mark.slow
def test_served_deployments_run_to_completion(tmp_path: Path) -> None:
    """What the schedule starts runs the product's flows: each deployment's run completes and leaves its mark."""
    with scheduling(tmp_path, RARE_CRON, demo="--weeks 6 --accounts 12",
                    GROUNDSWELL_EMBEDDING_MODEL="hashing-128") as (proc, api_url, found):
        for name in (PIPELINE_DEPLOYMENT, REPORT_DEPLOYMENT):
            run = run_deployment(api_url, found[name])
            assert run["state"]["type"] == "COMPLETED", (
                f"{name}: {run['state']}\n{(tmp_path / 'schedule.log').read_text()[-6000:]}")
        engine = make_engine(Settings(data_dir=tmp_path / "var").effective_database_url)
        try:
            with engine.connect() as conn:
                kinds = set(conn.scalars(select(AnalysisRun.kind).where(AnalysisRun.status == "succeeded")))
                reports = conn.scalar(select(func.count()).select_from(Report))
                themes = conn.scalar(select(func.count()).select_from(Theme).where(Theme.status == "active"))
                embedded = conn.scalar(select(func.count()).select_from(Embedding))
        finally:
            engine.dispose()
        # The run embedded the demo feedback, found its themes and scored them; the report was written.
        assert "full" in kinds and reports == 1 and themes >= 5 and embedded > 100, (kinds, reports, themes, embedded)
        assert_stopped_cleanly(tmp_path, proc, api_url, signal.SIGINT)
