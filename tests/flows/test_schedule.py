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


# What Prefect's own client retries: its server answers 503 when its SQLite database is busy (another writer holds
# the lock), and the request changed nothing, so it may be sent again.
RETRYABLE = {429, 502, 503}


def call(method: str, url: str, *, attempts: int = 6, **kwargs: Any) -> Any:
    """One request to the Prefect API, retried with backoff where the server says to; the answer's JSON."""
    for attempt in range(attempts):
        response = httpx.request(method, url, timeout=10.0, **kwargs)
        if response.status_code not in RETRYABLE or attempt == attempts - 1:
            break
        time.sleep(0.5 * 2 ** attempt)
    response.raise_for_status()
    return response.json()


def deployments(api_url: str) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in call("POST", f"{api_url}/deployments/filter", json={})}


def crons(deployment: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]]


def test_calls_to_the_prefect_api_retry_only_what_its_server_calls_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[int] = []

    def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        code = codes.pop(0)
        answers.append(code)
        return httpx.Response(code, json={"id": "run"}, request=httpx.Request(method, url))

    monkeypatch.setattr(httpx, "request", request)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    codes = [503, 503, 200]
    assert call("POST", "http://server/api/x") == {"id": "run"} and answers == [503, 503, 200]
    answers.clear()
    codes = [500, 200]
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        call("GET", "http://server/api/x")
    assert answers == [500]
    codes = [503] * 3
    with pytest.raises(httpx.HTTPStatusError, match="503"):
        call("GET", "http://server/api/x", attempts=3)
    assert not codes


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
            except httpx.HTTPError:
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
    run_id = call("POST", f"{api_url}/deployments/{deployment['id']}/create_flow_run", json={})["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = call("GET", f"{api_url}/flow_runs/{run_id}")
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
