"""ORM tables of Groundswell (see DESIGN.md, "The data model")."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger ids on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no offset, so it is restored here)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Groundswell stores UTC-aware timestamps only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime()}


class Source(Base):
    __tablename__ = "source"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sync_at: Mapped[dt.datetime | None]
    last_sync_status: Mapped[str | None] = mapped_column(String(32))
    last_sync_error: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    __tablename__ = "sync_state"
    __table_args__ = (UniqueConstraint("source_id", "stream"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(64))
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Account(Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    # Lower-cased, punctuation-free name: the key accounts are matched and deduplicated on.
    name_key: Mapped[str] = mapped_column(String(300), unique=True)
    domain: Mapped[str | None] = mapped_column(String(255), index=True)
    segment: Mapped[str | None] = mapped_column(String(32))
    arr: Mapped[float] = mapped_column(Float, default=0.0)
    lifecycle: Mapped[str] = mapped_column(String(16), default="unknown")
    open_pipeline: Mapped[float] = mapped_column(Float, default=0.0)
    external_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_feedback_occurred_at", "occurred_at"),
        Index("ix_feedback_account_id", "account_id"),
        Index("ix_feedback_content_hash", "content_hash"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    raw_text: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    author_role: Mapped[str | None] = mapped_column(String(32))
    submitted_by: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[dt.datetime]
    ingested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sentiment: Mapped[float | None] = mapped_column(Float)
    intent: Mapped[str | None] = mapped_column(String(32))
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    competitors: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    deal_stage: Mapped[str | None] = mapped_column(String(64))
    deal_amount: Mapped[float | None] = mapped_column(Float)
    # True when the text changed since signals and embeddings were computed.
    needs_analysis: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("feedback.id", ondelete="SET NULL"))

    account: Mapped[Account | None] = relationship(lazy="joined")
    source: Mapped[Source] = relationship(lazy="joined")


class RejectedRecord(Base):
    __tablename__ = "rejected_record"
    __table_args__ = (UniqueConstraint("source_id", "stream", "record_key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(64))
    # Stable key of the bad record (its external id, or file + line), so a re-read does not duplicate it.
    record_key: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    __tablename__ = "embedding"
    # Search checks a model's vectors for changes (count, newest) without reading the vectors themselves.
    __table_args__ = (Index("ix_embedding_model_created_at", "model", "created_at"),)

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# The run kinds that rewrite themes and assignments. At most one of them runs at a time (pipeline.runs).
ANALYSIS_KINDS = ("full", "incremental")
ONE_RUNNING_ANALYSIS = f"status = 'running' AND kind IN ({', '.join(repr(k) for k in ANALYSIS_KINDS)})"


class AnalysisRun(Base):
    __tablename__ = "analysis_run"
    __table_args__ = (
        Index("ux_analysis_run_one_running", "status", unique=True,
              sqlite_where=text(ONE_RUNNING_ANALYSIS), postgresql_where=text(ONE_RUNNING_ANALYSIS)),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # full, incremental, sync, report
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # the process that queued or runs it, host:pid:start (pipeline.runs.process_owner); None on older rows
    owner: Mapped[str | None] = mapped_column(String(255))


class Theme(Base):
    __tablename__ = "theme"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    label: Mapped[str] = mapped_column(String(300), default="")
    label_override: Mapped[str | None] = mapped_column(String(300))
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    quotes: Mapped[list[Any]] = mapped_column(default=list)  # feedback ids, most representative first
    centroid: Mapped[bytes | None] = mapped_column(LargeBinary)
    model: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, archived, merged
    trend: Mapped[str | None] = mapped_column(String(16))  # new, emerging, growing, stable, fading, dormant
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id", ondelete="SET NULL"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id", ondelete="SET NULL"))
    decision: Mapped[str | None] = mapped_column(String(32))  # under_review, planned, shipped, declined
    decision_note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def display_label(self) -> str:
        return self.label_override or self.label


class ThemeAssignment(Base):
    __tablename__ = "theme_assignment"
    __table_args__ = (Index("ix_theme_assignment_theme_id", "theme_id"),)

    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), primary_key=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"))
    similarity: Mapped[float] = mapped_column(Float, default=0.0)
    method: Mapped[str] = mapped_column(String(16))  # cluster, nearest, manual
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("analysis_run.id", ondelete="SET NULL"))
    assigned_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ThemeEvent(Base):
    __tablename__ = "theme_event"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # born, grew, merged, split, renamed, archived
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("analysis_run.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ThemeStat(Base):
    __tablename__ = "theme_stat"
    __table_args__ = (UniqueConstraint("theme_id", "week"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"))
    week: Mapped[str] = mapped_column(String(8))  # ISO week, e.g. 2026-W47
    week_start: Mapped[dt.date] = mapped_column(Date)
    items: Mapped[int] = mapped_column(Integer, default=0)
    accounts: Mapped[int] = mapped_column(Integer, default=0)
    arr: Mapped[float] = mapped_column(Float, default=0.0)
    open_pipeline: Mapped[float] = mapped_column(Float, default=0.0)
    sentiment: Mapped[float | None] = mapped_column(Float)
    intents: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sources: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Opportunity(Base):
    __tablename__ = "opportunity"
    __table_args__ = (
        UniqueConstraint("theme_id", "run_id", "segment"),
        Index("ix_opportunity_run_segment", "run_id", "segment"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("analysis_run.id", ondelete="CASCADE"))
    segment: Mapped[str] = mapped_column(String(32), default="all")
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))  # vital, important, nice_to_have
    components: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Report(Base):
    __tablename__ = "report"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    week: Mapped[str] = mapped_column(String(8), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    markdown: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)  # frozen theme figures for next week's diff
    delivery: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # admin, pm, sales, ingest
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
