"""Fixtures of the API tests: an app on the test database with a fake embedder and job runner, keys per
role, and a seeded world. Browser tests save a screenshot under test-artifacts/ when they fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from models.settings import Settings
from pipeline.embedding import HashingEmbedder
from tests.api.factories import World, make_key, make_world

ROLES = ("admin", "pm", "sales", "ingest")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class FakeJobRunner:
    """Records submitted jobs instead of running them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def submit(self, kind: str, **params: Any) -> int:
        self.calls.append((kind, params))
        return int(params["run_id"])


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def job_runner() -> FakeJobRunner:
    return FakeJobRunner()


@pytest.fixture
def app(settings: Settings, engine: Any, embedder: HashingEmbedder, job_runner: FakeJobRunner) -> FastAPI:
    # `engine` is requested so the database is created and migrated before the app connects.
    return create_app(settings, embedder=embedder, job_runner=job_runner)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def keys(sessions: sessionmaker[Session]) -> dict[str, str]:
    """One API key per role (the names are `<role>-user`)."""
    with sessions.begin() as session:
        return {role: make_key(session, role) for role in ROLES}


@pytest.fixture
def auth(keys: dict[str, str]) -> Any:
    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[role]}"}
    return headers


@pytest.fixture
def world(sessions: sessionmaker[Session], embedder: HashingEmbedder) -> World:
    with sessions.begin() as session:
        return make_world(session, embedder)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or item.get_closest_marker("browser") is None:
        return
    page = getattr(item, "funcargs", {}).get("page")
    if page is None:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / f"{item.name.replace('/', '_').replace('[', '-').replace(']', '')}.png"
    try:
        page.screenshot(path=str(target), full_page=True)
        report.sections.append(("screenshot", str(target)))
    except Exception as exc:  # the page may be gone; the test failure is what matters
        report.sections.append(("screenshot", f"could not save: {exc}"))
