"""One Prefect test harness (a temporary local API and database) shared by every flow test.

The harness ends with this folder (a package, so that ``scope="package"`` means it). Its exit drains
Prefect's events worker; left open for the rest of the session, the worker's websocket sends a keepalive
ping every 20 s from a background thread, with a payload drawn from the global ``random``, and a
hypothesis test drawing examples at that moment warns "do not use the random module inside strategies".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.settings import Settings


@pytest.fixture(scope="package", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flow_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Environment for flows that read ``Settings()`` themselves: the test database, data dir, fast embedder.

    Returns:
        The settings those flows will read (the test's settings with the hashing embedder).
    """
    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("GROUNDSWELL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GROUNDSWELL_EMBEDDING_MODEL", "hashing-128")
    monkeypatch.delenv("GROUNDSWELL_EMBEDDING_TASK_RUNNER", raising=False)
    return Settings(_env_file=None)  # type: ignore[call-arg]
