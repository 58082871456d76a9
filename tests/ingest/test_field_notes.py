"""Field notes submitted by sales reps: stored once per idempotency key, validated, linked to accounts."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.errors import InvalidRecord
from ingest.field_notes import SOURCE_NAME, submit_field_note
from models.db import session_scope
from models.tables import Account, Feedback, Source


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Feedback)) or 0)


def test_note_is_stored_redacted_and_linked(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        note = submit_field_note(
            session, text="Blocked on SSO; call their CTO at jane@globex.com", account_name="Globex, Inc.",
            account_domain="globex.com", submitted_by="rep@us.com", deal_stage="negotiation", deal_amount=48_000,
            tags=["sso", " "], occurred_at=dt.datetime(2026, 1, 5, 15, tzinfo=dt.UTC),
        )
        note_id = note.id
    with sessions() as session:
        stored = session.get(Feedback, note_id)
        assert stored is not None
        assert stored.kind == "field_note" and stored.author_role == "sales" and stored.submitted_by == "rep@us.com"
        assert "[EMAIL]" in stored.text and "jane@globex.com" not in stored.text
        assert (stored.deal_stage, stored.deal_amount, stored.tags) == ("negotiation", 48_000.0, ["sso"])
        account = session.get(Account, stored.account_id)
        assert account is not None and account.domain == "globex.com"
        assert session.scalars(select(Source.kind).where(Source.name == SOURCE_NAME)).one() == "field_notes"


def test_same_idempotency_key_gives_the_same_item(sessions: sessionmaker[Session]) -> None:
    ids = set()
    for text in ("Needs audit logs", "Needs audit logs", "A retry with other text"):
        with session_scope(sessions) as session:
            ids.add(submit_field_note(session, text=text, submitted_by="rep", idempotency_key="k-1").id)
    assert len(ids) == 1 and count(sessions) == 1
    with session_scope(sessions) as session:
        submit_field_note(session, text="Needs audit logs", submitted_by="rep")  # no key: a new note
    assert count(sessions) == 2


def test_concurrent_submissions_with_one_key_store_one_item(sessions: sessionmaker[Session]) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        try:
            barrier.wait()
            with session_scope(sessions) as session:
                ids.append(submit_field_note(session, text="Pricing page confusing", submitted_by="rep",
                                             idempotency_key="same-key").id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(ids)) == 1 and count(sessions) == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"text": "   "}, "'text' is empty"),
    ({"text": "x" * 100_001}, "over the limit"),
    ({"submitted_by": ""}, "'submitted_by'"),
    ({"deal_amount": -5.0}, "'deal_amount'"),
    ({"occurred_at": dt.datetime(2026, 1, 1)}, "'occurred_at'"),
    ({"idempotency_key": "k" * 201}, "'idempotency_key'"),
])
def test_bad_notes_name_the_field(sessions: sessionmaker[Session], kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"text": "ok", "submitted_by": "rep", **kwargs}
    with session_scope(sessions) as session, pytest.raises(InvalidRecord, match=field):
        submit_field_note(session, **args)  # type: ignore[arg-type]
    assert count(sessions) == 0
