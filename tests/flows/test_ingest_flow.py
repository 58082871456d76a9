"""The ingest flow: one task per source, failures isolated and reported, retries only on I/O errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import Completed, Failed
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import flows.ingest
from flows.ingest import SourceSyncError, ingest_all, retry_on_io_error, sources_to_sync, sync_one
from ingest.errors import ConfigError
from models.settings import Settings
from models.tables import Embedding, Feedback, Source
from pipeline.embedding_store import missing_hashes


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with the hashing embedder: a sync embeds what it stored (embed_on_arrival)."""
    return settings.model_copy(update={"embedding_model": "hashing-128"})


def add(sessions: sessionmaker[Session], name: str, kind: str, config: dict[str, str]) -> None:
    with sessions.begin() as session:
        session.add(Source(name=name, kind=kind, config=config))


def write_csv(path: Path, n: int) -> None:
    lines = ["external_id,text,occurred_at"] + [f"r{i},Slow dashboard number {i},2026-01-0{i % 9 + 1}"
                                                 for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_a_failing_source_does_not_stop_the_others(sessions: sessionmaker[Session], settings: Settings,
                                                   tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 12)
    add(sessions, "good", "file", {"path": str(tmp_path / "a.csv")})
    add(sessions, "gone", "file", {"path": str(tmp_path / "missing.csv")})
    add(sessions, "zd", "zendesk", {"subdomain": "acme", "email": "ops@acme.com"})  # no token in settings
    add(sessions, "field-notes", "field_notes", {})
    summaries = ingest_all(settings=settings)
    by_name = {s["source"]: s for s in summaries}
    assert set(by_name) == {"good", "gone", "zd"}  # pushed field notes are not pulled
    assert by_name["good"]["status"] == "ok" and by_name["good"]["inserted"] == 12
    assert by_name["gone"]["status"] == "failed" and "does not exist" in by_name["gone"]["error"]
    assert by_name["zd"]["status"] == "failed" and "GROUNDSWELL_ZENDESK_TOKEN" in by_name["zd"]["error"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 12
    again = ingest_all(names=["good"], settings=settings)
    assert again[0]["status"] == "ok" and again[0]["inserted"] == 0


def test_what_a_sync_stores_is_embedded_before_any_analysis(sessions: sessionmaker[Session], settings: Settings,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "a.csv", 12)
    add(sessions, "good", "file", {"path": str(tmp_path / "a.csv")})
    assert ingest_all(settings=settings)[0]["inserted"] == 12
    with sessions() as session:
        assert missing_hashes(session, "hashing-128") == []  # search finds them before the next analysis
        assert session.scalar(select(func.count()).select_from(Embedding)) == 12

    def broken(_settings: Settings) -> int:
        raise OSError("model file unreadable")

    monkeypatch.setattr(flows.ingest, "embed_arrivals", broken)
    write_csv(tmp_path / "a.csv", 15)
    summary = ingest_all(names=["good"], settings=settings)[0]
    assert summary["status"] == "ok" and summary["inserted"] == 3  # the sync stands; the analysis embeds them
    with sessions() as session:
        assert len(missing_hashes(session, "hashing-128")) == 3

    calls: list[Settings] = []
    monkeypatch.setattr(flows.ingest, "embed_arrivals", calls.append)
    write_csv(tmp_path / "a.csv", 16)
    off = settings.model_copy(update={"embed_on_arrival": False})
    assert ingest_all(names=["good"], settings=off)[0]["inserted"] == 1 and calls == []
    assert ingest_all(names=["good"], settings=settings)[0]["inserted"] == 0 and calls == []  # nothing new


def test_unknown_source_name_is_a_config_error(sessions: sessionmaker[Session], settings: Settings) -> None:
    with pytest.raises(ConfigError, match="no source named 'nope'"):
        sources_to_sync(settings, ["nope"])


def test_retries_are_declared_and_only_for_io_errors() -> None:
    assert sync_one.retries == 2 and sync_one.retry_condition_fn is retry_on_io_error
    io = Failed(data=SourceSyncError({"source": "x", "error": "timed out"}, retryable=True))
    config = Failed(data=SourceSyncError({"source": "x", "error": "no token"}, retryable=False))
    assert retry_on_io_error(sync_one, None, io) is True  # type: ignore[arg-type]
    assert retry_on_io_error(sync_one, None, config) is False  # type: ignore[arg-type]
    assert retry_on_io_error(sync_one, None, Completed(data=1)) is False  # type: ignore[arg-type]


def test_sync_task_logic_without_the_engine(sessions: sessionmaker[Session], settings: Settings,
                                            tmp_path: Path) -> None:
    write_csv(tmp_path / "b.csv", 3)
    add(sessions, "b", "file", {"path": str(tmp_path / "b.csv")})
    summary = sync_one.fn("b", settings)
    assert (summary["status"], summary["inserted"], summary["kind"]) == ("ok", 3, "file")
    add(sessions, "broken", "file", {"path": str(tmp_path / "missing")})
    with pytest.raises(SourceSyncError) as info:
        sync_one.fn("broken", settings)
    assert not info.value.retryable and info.value.summary["status"] == "failed"
