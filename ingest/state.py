"""Cursor state per (source, stream), read before a sync and saved with the page it covers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import SyncState, utcnow


def get_cursor(session: Session, source_id: int, stream: str) -> dict[str, Any]:
    """The saved cursor of a stream; an empty dict when it never stored a page."""
    cursor = session.scalar(
        select(SyncState.cursor).where(SyncState.source_id == source_id, SyncState.stream == stream)
    )
    return dict(cursor) if cursor else {}


def get_cursors(session: Session, source_id: int) -> dict[str, dict[str, Any]]:
    """Every saved cursor of a source, by stream name."""
    rows = session.execute(
        select(SyncState.stream, SyncState.cursor).where(SyncState.source_id == source_id)
    ).tuples().all()
    return {stream: dict(cursor or {}) for stream, cursor in rows}


def save_cursor(session: Session, source_id: int, stream: str, cursor: dict[str, Any]) -> None:
    """Set the cursor of a stream inside the caller's transaction (the caller commits with the page)."""
    state = session.scalars(
        select(SyncState).where(SyncState.source_id == source_id, SyncState.stream == stream)
    ).first()
    if state is None:
        session.add(SyncState(source_id=source_id, stream=stream, cursor=dict(cursor), updated_at=utcnow()))
    else:
        # A new dict, so the JSON column sees the change.
        state.cursor = dict(cursor)
        state.updated_at = utcnow()
    session.flush()
