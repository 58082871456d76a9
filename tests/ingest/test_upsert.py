"""FeedbackWriter: upsert by (source, external id), change detection, quarantine and account linking."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection
from ingest.upsert import FeedbackWriter, get_or_create_source
from models.db import session_scope
from models.tables import Account, Feedback, RejectedRecord

WHEN = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def rec(eid: str, text: str, **kw: object) -> FeedbackRecord:
    return FeedbackRecord(external_id=eid, text=text, occurred_at=kw.pop("occurred_at", WHEN), **kw)  # type: ignore[arg-type]


def write(sessions: sessionmaker[Session], records: list[FeedbackRecord | Rejection], **kw: bool):  # type: ignore[no-untyped-def]
    with session_scope(sessions) as session:
        source = get_or_create_source(session, name="s", kind="file")
        return FeedbackWriter(session, source, **kw).write(records, stream="t")  # type: ignore[arg-type]


def rows(sessions: sessionmaker[Session]) -> dict[str, Feedback]:
    with sessions() as session:
        return {f.external_id: f for f in session.scalars(select(Feedback))}


def test_insert_update_unchanged_and_needs_analysis(sessions: sessionmaker[Session]) -> None:
    stats = write(sessions, [rec("a", "Export is slow"), rec("b", "Need SSO")])
    assert (stats.inserted, stats.updated, stats.unchanged) == (2, 0, 0)
    with sessions.begin() as session:
        session.execute(update(Feedback).values(needs_analysis=False))
    stats = write(sessions, [rec("a", "Export is slow", title="new title"), rec("b", "Need SSO with Okta")])
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 1, 1)
    stored = rows(sessions)
    assert len(stored) == 2
    assert stored["a"].title == "new title" and not stored["a"].needs_analysis  # metadata only: no re-embedding
    assert stored["b"].text == "Need SSO with Okta" and stored["b"].needs_analysis


def rows_written(session: Session) -> int:
    """Rows this transaction has inserted into or updated in feedback so far."""
    if session.get_bind().dialect.name == "sqlite":
        return int(session.scalar(text("SELECT total_changes()")))
    return int(session.scalar(text(
        "SELECT n_tup_ins + n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'feedback'::regclass"
    )))


def test_unchanged_records_read_again_write_no_row(sessions: sessionmaker[Session]) -> None:
    page = [rec("a", "Export is slow", tags=["csv"], deal_amount=12.5), rec("b", "Need SSO", title="sso")]
    write(sessions, page)
    with session_scope(sessions) as session:
        source = get_or_create_source(session, name="s", kind="file")
        before = rows_written(session)
        stats = FeedbackWriter(session, source).write(page)
        assert rows_written(session) == before
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, 2)


def test_metadata_change_is_stored_without_reanalysis(sessions: sessionmaker[Session]) -> None:
    write(sessions, [rec("a", "Export is slow", tags=["csv", "export"])])
    with sessions.begin() as session:
        session.execute(update(Feedback).values(needs_analysis=False))
    later = WHEN + dt.timedelta(days=1)
    stats = write(sessions, [rec("a", "Export is slow", tags=["csv"], occurred_at=later, deal_stage="won")])
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, 1)
    stored = rows(sessions)["a"]
    assert stored.tags == ["csv"] and stored.occurred_at == later and stored.deal_stage == "won"
    assert not stored.needs_analysis


def test_several_pages_in_one_transaction(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        writer = FeedbackWriter(session, get_or_create_source(session, name="s", kind="file"))
        first = writer.write([rec("a", "one"), rec("b", "two")])
        second = writer.write([rec("b", "two, changed"), rec("c", "three")])
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 0)
    stored = rows(sessions)
    assert sorted(stored) == ["a", "b", "c"] and stored["b"].text == "two, changed"


def test_a_page_rolled_back_to_its_savepoint_leaves_nothing(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        writer = FeedbackWriter(session, get_or_create_source(session, name="s", kind="file"))
        savepoint = session.begin_nested()
        writer.write([rec("a", "lost")])
        savepoint.rollback()
        stats = writer.write([rec("b", "kept")])
    assert stats.inserted == 1 and sorted(rows(sessions)) == ["b"]


def test_repeated_record_in_a_page_keeps_the_last(sessions: sessionmaker[Session]) -> None:
    stats = write(sessions, [rec("a", "first"), rec("a", "second version")])
    assert stats.inserted == 1 and rows(sessions)["a"].text == "second version"


def test_rejections_are_stored_once_with_reason(sessions: sessionmaker[Session]) -> None:
    bad = [rec("e", "   "), rec("k", "fine", kind="tweet"), rec("big", "x" * 100_001),
           Rejection("file.csv:7", "raw,row", "bad date")]
    for _ in range(2):
        stats = write(sessions, bad)
        assert stats.rejected == 4
    with sessions() as session:
        rejected = {r.record_key: r.reason for r in session.scalars(select(RejectedRecord))}
    assert set(rejected) == {"e", "k", "big", "file.csv:7"}
    assert rejected["e"] == "empty text" and "unknown kind 'tweet'" in rejected["k"]
    assert "over the limit" in rejected["big"]
    assert rows(sessions) == {}


def test_raw_text_kept_only_when_configured_and_naive_dates_are_utc(sessions: sessionmaker[Session]) -> None:
    write(sessions, [rec("a", "mail me at a@b.com", occurred_at=dt.datetime(2026, 1, 5, 12))])
    assert rows(sessions)["a"].raw_text is None and "[EMAIL]" in rows(sessions)["a"].text
    assert rows(sessions)["a"].occurred_at == WHEN
    write(sessions, [rec("b", "mail me at a@b.com")], store_raw_text=True)
    assert rows(sessions)["b"].raw_text == "mail me at a@b.com"


def test_accounts_matched_by_external_id_domain_and_name(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        source = get_or_create_source(session, name="s", kind="hubspot")
        writer = FeedbackWriter(session, source)
        writer.accounts.upsert(AccountRecord(name="Globex Corp", domain="globex.com", arr=10.0,
                                             external_ids={"hubspot": "9"}), system="hubspot")
        writer.write([
            rec("1", "a", account=AccountRef(external_id="9", system="hubspot")),
            rec("2", "b", account=AccountRef(domain="someone@globex.com")),
            rec("3", "c", account=AccountRef(name="GLOBEX, Inc.")),
            rec("4", "d", account=AccountRef(name="Brand New Ltd")),
            rec("5", "e", account=AccountRef(domain="someone@gmail.com")),
        ])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 2
        globex = session.scalars(select(Account).where(Account.domain == "globex.com")).one()
    stored = rows(sessions)
    assert {stored[k].account_id for k in "123"} == {globex.id}
    assert stored["4"].account_id not in (None, globex.id) and stored["5"].account_id is None


def test_records_without_id_are_each_kept_in_quarantine(sessions) -> None:
    import datetime as dt

    from sqlalchemy import func, select

    from ingest.records import FeedbackRecord
    from ingest.upsert import FeedbackWriter, get_or_create_source
    from models.tables import RejectedRecord

    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    records = [FeedbackRecord(external_id="", text=f"text {i}", occurred_at=when) for i in range(3)]
    for _ in range(2):  # reading the same page again adds nothing
        with sessions.begin() as session:
            source = get_or_create_source(session, name="s", kind="file")
            stats = FeedbackWriter(session, source).write(records)
            assert stats.rejected == 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RejectedRecord)) == 3


def test_resolver_without_preload_finds_accounts_by_external_id_domain_and_name(sessions) -> None:
    from ingest.accounts import AccountResolver
    from ingest.records import AccountRecord, AccountRef

    with sessions.begin() as session:
        resolver = AccountResolver(session)
        acme = resolver.upsert(AccountRecord(name="Acme, Inc.", domain="acme.com", external_ids={"sf": "001A"}),
                               system="sf")
        other = resolver.upsert(AccountRecord(name="Globex", domain="globex.io"))
    with sessions.begin() as session:
        lazy = AccountResolver(session, preload=False)
        assert lazy.resolve(AccountRef(external_id="001A", system="sf")) == acme
        assert lazy.resolve(AccountRef(domain="jane@globex.io")) == other
        assert lazy.resolve(AccountRef(name="ACME")) == acme
        assert lazy.created == 0
        new = lazy.resolve(AccountRef(name="Initech"))
        assert new not in (acme, other) and lazy.created == 1
