"""Writes generated demo data through the same upsert path the connectors use."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from ingest.accounts import AccountResolver
from ingest.demo import DEMO_SOURCES, DemoData
from ingest.records import FeedbackRecord
from ingest.upsert import FeedbackWriter, WriteStats, get_or_create_source
from models.db import session_scope

PAGE_SIZE = 1000


def load_demo(factory: sessionmaker[Session], data: DemoData, *, redact_pii: bool = True,
              progress: Callable[[int], None] | None = None) -> dict[str, WriteStats]:
    """Store demo accounts and items, one committed page at a time; loading twice changes nothing.

    Returns:
        Write statistics per source name.
    """
    with session_scope(factory) as session:
        resolver = AccountResolver(session)
        for account in data.accounts:
            resolver.upsert(account)
    by_source: dict[str, list[FeedbackRecord]] = defaultdict(list)
    for source_name, record in data.items:
        by_source[source_name].append(record)
    results: dict[str, WriteStats] = {}
    for source_name, records in by_source.items():
        stats = WriteStats()
        for start in range(0, len(records), PAGE_SIZE):
            page = records[start:start + PAGE_SIZE]
            with session_scope(factory) as session:
                source = get_or_create_source(session, name=source_name, kind=DEMO_SOURCES[source_name],
                                              config={"demo": True})
                stats.add(FeedbackWriter(session, source, redact_pii=redact_pii).write(page, stream="demo"))
            if progress is not None:
                progress(len(page))
        results[source_name] = stats
    return results
