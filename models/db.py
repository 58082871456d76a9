"""Database engine and sessions. The same code runs on SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models.settings import Settings


def json_loads(text: str | bytes) -> Any:
    """Parse a stored JSON column: orjson (several times faster on the small documents stored here), or the
    standard library for what orjson refuses and ``json.dumps`` may have written (NaN, Infinity, integers
    beyond 64 bits, lone surrogates)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            json_deserializer=json_loads,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # pysqlite's own transaction handling defers BEGIN; we emit BEGIN ourselves (below)
            # so that writers take the lock up front instead of failing on upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the lock up front (IMMEDIATE) and queue on busy_timeout; a deferred transaction
            # that later writes can fail at once with "database is locked". Read-only sessions ask for
            # DEFERRED (see make_read_session_factory) so readers never wait on writers under WAL.
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")

        return engine
    return create_engine(url, echo=echo, json_deserializer=json_loads, pool_pre_ping=True, pool_size=10,
                         max_overflow=20)


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.effective_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads only: on SQLite they do not take the write lock (PostgreSQL is unaffected)."""
    return sessionmaker(bind=engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_for(session: Session):  # type: ignore[no-untyped-def]
    """The dialect's INSERT construct for ``session`` (it has ON CONFLICT), SQLite or PostgreSQL.

    Raises:
        NotImplementedError: another backend.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"database backend {name!r} is not supported (use SQLite or PostgreSQL)")
    return sqlite.insert if name == "sqlite" else postgresql.insert
