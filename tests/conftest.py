"""Shared fixtures: settings in a temporary folder, and a clean migrated database per test.

Database tests run on SQLite always and also on PostgreSQL when GROUNDSWELL_TEST_DATABASE_URL is set
(CI sets it). Use the ``engine``/``sessions`` fixtures and the test runs once per backend.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports prefect: no telemetry, and its state in a throwaway folder.
_PREFECT_HOME = tempfile.mkdtemp(prefix="gs-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Exported ONNX graphs of the embedding model go to a throwaway folder, not the user's ~/.cache.
os.environ.setdefault("GROUNDSWELL_MODEL_CACHE_DIR", tempfile.mkdtemp(prefix="gs-models-"))

import pytest  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from models import migrate  # noqa: E402
from models.db import make_engine, make_session_factory  # noqa: E402
from models.settings import Settings  # noqa: E402
from models.tables import Base  # noqa: E402

PG_URL = os.environ.get("GROUNDSWELL_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against the PostgreSQL test database")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def _pg_engine() -> Iterator[Engine]:
    if not PG_URL:
        pytest.skip("GROUNDSWELL_TEST_DATABASE_URL is not set")
    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _truncate_pg(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a clean, migrated database: a fresh SQLite file, or the truncated PostgreSQL test database."""
    if request.param == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "groundswell.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
    else:
        engine = request.getfixturevalue("_pg_engine")
        _truncate_pg(engine)
        yield PG_URL


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "var", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.effective_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)
