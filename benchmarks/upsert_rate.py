"""Upsert throughput: 100k feedback items through FeedbackWriter (cleaning and redaction on).

python -m benchmarks.upsert_rate [--items 100000] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PG_BENCH_URL, emit, ensure_pg_database, reset_pg_schema
from ingest.records import AccountRef, FeedbackRecord
from ingest.upsert import FeedbackWriter, get_or_create_source
from models import migrate
from models.db import make_engine, make_session_factory, session_scope

WORDS = [
    "export",
    "csv",
    "dashboard",
    "slow",
    "login",
    "sso",
    "saml",
    "okta",
    "invoice",
    "billing",
    "mobile",
    "app",
    "crash",
    "sync",
    "salesforce",
    "hubspot",
    "permissions",
    "roles",
    "audit",
    "log",
    "api",
    "rate",
    "limit",
    "webhook",
    "notifications",
    "search",
    "filter",
    "report",
    "chart",
    "dark",
    "mode",
    "onboarding",
    "timezone",
    "calendar",
    "integration",
    "jira",
    "slack",
]


def make_records(n: int, seed: int = 1) -> list[FeedbackRecord]:
    rng = random.Random(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
        text = f"Hi team, {words}. Contact me at user{i}@example.com or +1 415 555 {i % 10000:04d}. Thanks"
        out.append(
            FeedbackRecord(
                external_id=f"t-{i}",
                text=text,
                occurred_at=start + dt.timedelta(minutes=i),
                kind="ticket",
                account=AccountRef(name=f"Account {i % 500}", domain=f"account{i % 500}.com"),
            )
        )
    return out


def run_one(url: str, records: list[FeedbackRecord], page: int = 1000) -> dict[str, Any]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    started = time.perf_counter()
    for start in range(0, len(records), page):
        with session_scope(factory) as session:
            source = get_or_create_source(session, name="bench", kind="file")
            FeedbackWriter(session, source).write(records[start : start + page])
    first = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(records), page):
        with session_scope(factory) as session:
            source = get_or_create_source(session, name="bench", kind="file")
            FeedbackWriter(session, source).write(records[start : start + page])
    again = time.perf_counter() - started
    engine.dispose()
    return {
        "items": len(records),
        "insert_s": round(first, 2),
        "insert_items_per_s": round(len(records) / first),
        "reupsert_items_per_s": round(len(records) / again),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    records = make_records(args.items)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            {"benchmark": "upsert", "backend": "sqlite", **run_one(f"sqlite:///{Path(tmp) / 'bench.db'}", records)}
        )
    if ensure_pg_database(PG_BENCH_URL):
        reset_pg_schema(PG_BENCH_URL)
        rows.append({"benchmark": "upsert", "backend": "postgresql", **run_one(PG_BENCH_URL, records)})
    else:
        rows.append({"benchmark": "upsert", "backend": "postgresql", "note": "server not reachable"})
    emit(rows, as_json=args.json, title="upsert throughput (cleaning + redaction on)")
    return rows


if __name__ == "__main__":
    main()
