import datetime as dt
import json
import math

import numpy as np
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from models import migrate
from models.db import json_loads, make_engine
from models.tables import Account, AnalysisRun, Base, Feedback, Source


def test_upgrade_creates_every_table_and_round_trips(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        expected = set(Base.metadata.tables)
        assert expected <= set(inspect(engine).get_table_names())
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) & expected == set()
        migrate.upgrade(engine, "head")
        assert expected <= set(inspect(engine).get_table_names())
        assert migrate.current_revision(engine) is not None
    finally:
        engine.dispose()


def test_models_match_the_migrations(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"


def test_timestamps_come_back_in_utc(sessions) -> None:
    when = dt.datetime(2026, 3, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with sessions.begin() as session:
        source = Source(name="s", kind="file")
        session.add(source)
        session.flush()
        session.add(Feedback(source_id=source.id, external_id="1", kind="ticket", text="t", content_hash="h",
                             occurred_at=when))
    with sessions() as session:
        got = session.scalars(select(Feedback.occurred_at)).one()
    assert got == when and got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_naive_timestamps_are_refused(sessions) -> None:
    with pytest.raises(Exception, match="naive datetime"), sessions.begin() as session:
        session.add(Account(name="a", name_key="a", created_at=dt.datetime(2026, 1, 1)))


def test_sqlite_pragmas(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    engine.dispose()


def test_json_loads_reads_what_orjson_refuses() -> None:
    # orjson parses stored JSON columns; what json.dumps may write and orjson refuses falls back to json.
    assert json_loads('{"a": [1, 2.5, "é"], "b": null}') == {"a": [1, 2.5, "é"], "b": None}
    assert json_loads(b'{"x": true}') == {"x": True}
    assert json_loads(json.dumps({"big": 2**70})) == {"big": 2**70}
    assert math.isnan(json_loads(json.dumps([float("nan")]))[0])
    assert json_loads(json.dumps([float("inf")])) == [float("inf")]
    assert json_loads(json.dumps("\ud800")) == "\ud800"
    with pytest.raises(json.JSONDecodeError):
        json_loads("{not json")


def test_json_columns_round_trip(sessions) -> None:
    flags = {"big": 2**70, "text": "naïve 😀", "nested": {"list": [1, 2.5, None, True]}}
    with sessions.begin() as session:
        source = Source(name="s", kind="file")
        session.add(source)
        session.flush()
        session.add(Feedback(source_id=source.id, external_id="1", kind="ticket", text="t", content_hash="h",
                             occurred_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), flags=flags, tags=["a", "b"]))
    with sessions() as session:
        assert session.execute(select(Feedback.flags, Feedback.tags)).one() == (flags, ["a", "b"])


def test_upgrading_closes_all_but_the_newest_of_several_running_analyses(db_url: str) -> None:
    """Before 0004 nothing stopped analyses from overlapping; the one-running index needs at most one."""
    from sqlalchemy import text

    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0003")
        with engine.begin() as conn:
            for kind, status in [("full", "running"), ("incremental", "running"), ("sync", "running"),
                                 ("full", "succeeded"), ("incremental", "running")]:
                conn.execute(text("INSERT INTO analysis_run (kind, status, started_at, stats) "
                                  "VALUES (:kind, :status, CURRENT_TIMESTAMP, '{}')"), {"kind": kind, "status": status})
        migrate.upgrade(engine, "head")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT kind, status, error FROM analysis_run ORDER BY id")).all()
        assert [(k, s) for k, s, _ in rows] == [("full", "abandoned"), ("incremental", "abandoned"),
                                                ("sync", "running"), ("full", "succeeded"), ("incremental", "running")]
        assert "closed by migration 0004" in rows[0][2]
        with Session(engine) as session:  # the migration's timestamp reads back as an aware UTC datetime
            closed = session.scalars(select(AnalysisRun.finished_at).where(AnalysisRun.status == "abandoned")).all()
        assert all(t is not None and t.utcoffset() == dt.timedelta(0) for t in closed)
        with pytest.raises(Exception, match="(?i)unique"), engine.begin() as conn:
            conn.execute(text("INSERT INTO analysis_run (kind, status, started_at, stats) "
                              "VALUES ('full', 'running', CURRENT_TIMESTAMP, '{}')"))
    finally:
        engine.dispose()


def test_upgrading_drops_the_sentence_vectors_of_texts_the_model_now_reads_without_fillers(db_url: str) -> None:
    """Before 0005 a sentence model read each text as written; a text with spoken-language fillers now reads
    differently, so its old vector goes and the next run embeds it again. The rest keep theirs."""
    from sqlalchemy import text

    from ingest.cleaning import content_hash
    from models.tables import utcnow
    from pipeline.embedding_store import missing_hashes, store_embeddings

    chatty = "Um so yeah we kind of need SSO with Okta before renewal"
    written = "We need SSO with Okta before renewal."
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0004")
        with Session(engine) as session:
            source = Source(name="s", kind="file")
            session.add(source)
            session.flush()
            for i, body in enumerate([chatty, written, chatty]):  # the chatty text twice: one hash, two items
                session.add(Feedback(source_id=source.id, external_id=str(i), kind="ticket", text=body,
                                     content_hash=content_hash(body), occurred_at=utcnow()))
            session.flush()
            for model in ("all-MiniLM-L6-v2", "/models/my-sentence-model", "hashing-64"):
                store_embeddings(session, model, [(content_hash(body), np.zeros(2, dtype=np.float32))
                                                  for body in (chatty, written)])
            session.commit()
        migrate.upgrade(engine, "head")
        with engine.connect() as conn:
            kept = set(conn.execute(text("SELECT content_hash, model FROM embedding")).tuples())
        assert kept == {(content_hash(written), "all-MiniLM-L6-v2"),
                        (content_hash(written), "/models/my-sentence-model"),
                        (content_hash(written), "hashing-64"), (content_hash(chatty), "hashing-64")}
        with Session(engine) as session:  # what the next run embeds again
            assert missing_hashes(session, "all-MiniLM-L6-v2") == [(content_hash(chatty), chatty)]
            assert missing_hashes(session, "hashing-64") == []
    finally:
        engine.dispose()
