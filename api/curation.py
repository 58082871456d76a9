"""Human curation of themes: rename, archive, merge, move an item, and opportunity decisions.

Plain functions on a Session, so the CLI and the pipeline's re-clustering share the same rules. Each
records a ``theme_event`` so the lineage shows who changed what; none commits (the caller does).
Re-clustering respects them: ``label_override`` beats the automatic label, pinned assignments stay,
and merged or archived themes are not resurrected.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from api.errors import Conflict, InvalidInput, NotFound
from models.tables import Feedback, Theme, ThemeAssignment, ThemeEvent, utcnow

DECISIONS = ("under_review", "planned", "shipped", "declined")


def _theme(session: Session, theme_id: int, *, field: str | None = None) -> Theme:
    theme = session.get(Theme, theme_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if theme is None:
        if field:
            raise InvalidInput(f"theme {theme_id} does not exist", field=field)
        raise NotFound(f"theme {theme_id} does not exist")
    return theme


def _event(session: Session, theme_id: int, kind: str, detail: dict[str, Any]) -> None:
    session.add(ThemeEvent(theme_id=theme_id, kind=kind, detail=detail))


def rename_theme(session: Session, theme_id: int, label: str, *, by: str | None = None) -> Theme:
    """Set the human label; it survives re-labelling by the pipeline."""
    label = label.strip()
    if not label:
        raise InvalidInput("label must not be blank", field="body.label")
    theme = _theme(session, theme_id)
    old = theme.display_label
    if old == label and theme.label_override == label:
        return theme
    theme.label_override = label[:300]
    theme.updated_at = utcnow()
    _event(session, theme.id, "renamed", {"from": old, "to": label, "by": by})
    session.flush()
    return theme


def set_archived(session: Session, theme_id: int, archived: bool, *, by: str | None = None) -> Theme:
    """Archive a theme (hidden from lists, kept for lineage) or restore an archived one."""
    theme = _theme(session, theme_id)
    if theme.status == "merged":
        raise Conflict(f"theme {theme_id} was merged into theme {theme.merged_into_id}; change that one instead")
    target = "archived" if archived else "active"
    if theme.status == target:
        return theme
    theme.status = target
    theme.updated_at = utcnow()
    _event(session, theme.id, "archived" if archived else "restored", {"by": by})
    session.flush()
    return theme


def merge_themes(session: Session, source_id: int, into_id: int, *, by: str | None = None) -> Theme:
    """Fold theme ``source_id`` into ``into_id``; every assignment moves, pinned ones stay pinned.

    Returns:
        The target theme.
    """
    if source_id == into_id:
        raise InvalidInput("a theme cannot be merged into itself", field="body.into")
    # Lock in id order so two crossing merges cannot deadlock on PostgreSQL.
    first, second = sorted((source_id, into_id))
    locked = {first: _theme(session, first, field=None if first == source_id else "body.into"),
              second: _theme(session, second, field=None if second == source_id else "body.into")}
    source, target = locked[source_id], locked[into_id]
    if source.status == "merged":
        raise Conflict(f"theme {source_id} was already merged into theme {source.merged_into_id}")
    if target.status == "merged":
        raise Conflict(f"theme {into_id} was merged into theme {target.merged_into_id}; merge into that one",
                       field="body.into")
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(ThemeAssignment).where(ThemeAssignment.theme_id == source_id)
        .values(theme_id=into_id, assigned_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    moved = result.rowcount
    source.status = "merged"
    source.merged_into_id = into_id
    source.updated_at = utcnow()
    target.size = (target.size or 0) + (source.size or 0)
    target.updated_at = utcnow()
    if target.status == "archived":
        target.status = "active"
    _event(session, source_id, "merged", {"into": into_id, "moved": moved, "by": by})
    _event(session, into_id, "merged", {"from": source_id, "moved": moved, "by": by})
    # Themes merged earlier into the source now point at the final target.
    session.execute(
        update(Theme).where(Theme.merged_into_id == source_id, Theme.id != into_id)
        .values(merged_into_id=into_id).execution_options(synchronize_session=False)
    )
    session.flush()
    return target


def move_feedback(session: Session, feedback_id: int, theme_id: int, *, by: str | None = None) -> ThemeAssignment:
    """Put one item in a theme by hand; the assignment is pinned, so re-clustering keeps it."""
    if session.get(Feedback, feedback_id) is None:
        raise NotFound(f"feedback {feedback_id} does not exist")
    theme = _theme(session, theme_id, field="body.theme_id")
    if theme.status == "merged":
        raise Conflict(f"theme {theme_id} was merged into theme {theme.merged_into_id}", field="body.theme_id")
    assignment = session.get(ThemeAssignment, feedback_id)
    previous = assignment.theme_id if assignment is not None else None
    if assignment is None:
        assignment = ThemeAssignment(feedback_id=feedback_id, theme_id=theme_id, similarity=1.0,
                                     method="manual", pinned=True)
        session.add(assignment)
    else:
        assignment.theme_id = theme_id
        assignment.method = "manual"
        assignment.pinned = True
        assignment.similarity = 1.0
        assignment.assigned_at = utcnow()
    if previous != theme_id:
        _event(session, theme_id, "moved_in", {"feedback_id": feedback_id, "from": previous, "by": by})
        if previous is not None:
            _event(session, previous, "moved_out", {"feedback_id": feedback_id, "to": theme_id, "by": by})
    session.flush()
    return assignment


def decide_opportunity(session: Session, theme_id: int, decision: str, note: str | None, *,
                       by: str | None = None) -> Theme:
    """Record a PM's decision on a theme's opportunity; the weekly report carries it."""
    if decision not in DECISIONS:
        raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}", field="body.decision")
    theme = _theme(session, theme_id)
    theme.decision = decision
    theme.decision_note = note
    theme.decided_at = utcnow()
    theme.decided_by = by
    _event(session, theme.id, "decided", {"decision": decision, "note": note, "by": by})
    session.flush()
    return theme


def current_theme_of(session: Session, feedback_id: int) -> Theme | None:
    """The theme an item belongs to now, following merges."""
    theme_id = session.scalar(select(ThemeAssignment.theme_id).where(ThemeAssignment.feedback_id == feedback_id))
    seen: set[int] = set()
    while theme_id is not None and theme_id not in seen:
        seen.add(theme_id)
        theme = session.get(Theme, theme_id)
        if theme is None:
            return None
        if theme.status != "merged" or theme.merged_into_id is None:
            return theme
        theme_id = theme.merged_into_id
    return None
