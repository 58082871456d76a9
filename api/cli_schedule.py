"""`groundswell schedule`: serve the deployments (hourly pipeline, weekly report) with their cron schedules.

Cron schedules need a Prefect server. With ``PREFECT_API_URL`` set, that server is used; otherwise a local one is
started (``prefect server start`` on 127.0.0.1, its state under ``<data_dir>/prefect``) and stopped on the way out,
whether the command ends by Ctrl-C (SIGINT), SIGTERM or an error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import typer

from api.cli_common import console, err_console, fail, runtime


class ServerStartError(RuntimeError):
    """The local Prefect server did not come up; the message ends with the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalPrefectServer:
    """A ``prefect server start`` subprocess in its own process group, with its state under ``home``.

    Args:
        home: PREFECT_HOME of the server (its SQLite database and logs).
        port: port on 127.0.0.1; 0 picks a free one.
        startup_timeout_s: how long :meth:`start` waits for ``/api/health``.
    """

    host = "127.0.0.1"

    def __init__(self, home: Path, *, port: int = 0, startup_timeout_s: float = 120.0) -> None:
        self.home = home
        self.port = port or free_port(self.host)
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def start(self) -> str:
        """Start the server and wait until it answers; returns its API URL.

        Raises:
            ServerStartError: it exited or did not answer within the timeout (it is stopped then).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                   PREFECT_SERVER_API_HOST=self.host, PREFECT_SERVER_API_PORT=str(self.port))
        self._log = self.log_path.open("ab")
        # A session of its own: a Ctrl-C at the terminal reaches this command, which stops the server in order
        # (after the runner paused its schedules), not both at once.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port),
             "--analytics-off"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerStartError(f"prefect server exited with code {self.process.returncode}: "
                                       f"{self.log_tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200:
                    return self.api_url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"prefect server did not answer on {self.api_url} within "
                               f"{self.startup_timeout_s:.0f}s: {self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM to the server's process group (uvicorn shuts down gracefully), SIGKILL after ``timeout_s``.

        Returns:
            True when it ended on the SIGTERM, False when it had to be killed or had died before.
        """
        proc = self.process
        if proc is None:
            return False
        graceful = False
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
                # uvicorn re-raises the signal it shut down on, so a clean stop reads as -SIGTERM.
                graceful = proc.returncode in (0, -signal.SIGTERM)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return graceful

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt so clean-up runs; the Prefect runner installs its own
    SIGTERM handler while serving.

    SIGINT gets the handler too, not Python's default: with the default one in place, ``asyncio.run``
    turns a first SIGINT into a cancellation of its main task, and a cancellation that arrives while the
    Prefect runner starts up can be absorbed by it, so the command went on serving after Ctrl-C (seen
    once, in a whole test run on a loaded machine). Raised from the handler, the interrupt leaves the
    event loop.
    """

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def is_stop(exc: BaseException) -> bool:
    """Whether ``exc`` is only the way a stop signal came out of the Prefect runner.

    That is KeyboardInterrupt (raised by :func:`signals_as_interrupt`), ``SystemExit(0)`` (the runner's own
    SIGTERM handler, when the signal arrives while the runner starts or stops), Prefect's
    ``TerminationSignal``, or an exception group holding only those: a task group (anyio's, inside the
    runner) wraps what is raised within it, and an uncaught group ended the command with a traceback and
    exit code 1 after a SIGTERM that landed while the runner was starting.
    """
    from prefect.exceptions import TerminationSignal

    if isinstance(exc, BaseExceptionGroup):
        return all(is_stop(e) for e in exc.exceptions)
    if isinstance(exc, SystemExit):
        return exc.code in (None, 0)
    return isinstance(exc, KeyboardInterrupt | TerminationSignal)


def register(app: typer.Typer) -> None:
    @app.command()
    def schedule(
        ctx: typer.Context,
        port: int = typer.Option(0, help="Port of the local Prefect server (when PREFECT_API_URL is unset); "
                                 "0 picks a free one."),
    ) -> None:
        """Serve the hourly pipeline and the weekly report on their cron schedules until interrupted."""
        from models import migrate

        rt = runtime(ctx)
        settings = rt.settings
        migrate.upgrade(rt.engine)
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        server: LocalPrefectServer | None = None
        with signals_as_interrupt():
            try:
                api_url = os.environ.get("PREFECT_API_URL", "")
                if not api_url:
                    server = LocalPrefectServer(settings.data_dir.resolve() / "prefect", port=port)
                    err_console.print(f"starting a local Prefect server on {server.api_url} "
                                      f"(log: {server.log_path})", markup=False, highlight=False)
                    api_url = server.start()
                # Flow runs start in subprocesses of the runner: they read the API URL from the environment.
                os.environ["PREFECT_API_URL"] = api_url
                from prefect.settings import PREFECT_API_URL, temporary_settings

                from flows.deployments import build_deployments, serve_deployments

                with temporary_settings(updates={PREFECT_API_URL: api_url}):
                    deployments = build_deployments(settings)
                    for d in deployments:
                        console.print(f"serving {d.flow_name}/{d.name}: {d.schedules[0].schedule.cron} "
                                      f"({settings.timezone})", markup=False, highlight=False)
                    serve_deployments(deployments)
            except ServerStartError as exc:
                fail(str(exc))
            except BaseException as exc:
                if not is_stop(exc):
                    raise
            finally:
                if server is not None:
                    pid = server.process.pid if server.process else None
                    outcome = "stopped" if server.stop() else "killed (it did not stop on SIGTERM)"
                    err_console.print(f"local Prefect server (pid {pid}) {outcome}", markup=False, highlight=False)
