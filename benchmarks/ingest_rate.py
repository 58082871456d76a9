"""Ingest throughput: a generated CSV export through the file connector (redaction on), and raw upserts.

Targets (issue 3): at least 5,000 items/s into SQLite and 2,000 into PostgreSQL.

    .venv/bin/python benchmarks/ingest_rate.py [--rows 100000] [--json] [--pg-url URL]

PostgreSQL runs when the server at ``--pg-url`` answers; the benchmark uses the database that URL names
(default: ``GROUNDSWELL_BENCH_PG_URL``, else ``gs_bench``), created when missing and emptied before each run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PG_BENCH_URL, emit, ensure_pg_database, peak_mib, reset_pg_schema  # noqa: E402
from ingest.connectors.files import FileConnector  # noqa: E402
from ingest.records import AccountRef, FeedbackRecord  # noqa: E402
from ingest.sync import sync_source  # noqa: E402
from ingest.upsert import FeedbackWriter, get_or_create_source  # noqa: E402
from models import migrate  # noqa: E402
from models.db import make_engine, make_session_factory, session_scope  # noqa: E402
from models.tables import Source  # noqa: E402

PHRASES = ["CSV export times out on large reports", "SSO with Okta keeps failing", "Dashboard loads slowly",
           "Need audit logs for SOC2", "Pricing for extra seats is confusing", "Mobile app crashes on login",
           "Webhooks retry too often", "Please add dark mode", "Salesforce sync duplicates contacts"]


def generate_csv(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["external_id", "text", "occurred_at", "account_name", "account_domain", "kind", "title"])
        for i in range(rows):
            company = rng.randrange(500)
            body = (f"{rng.choice(PHRASES)}. {rng.choice(PHRASES)} as well. Reach me at user{i}@acme{company}.com "
                    f"or +1 415 555 {i % 10000:04d}. Ticket {i}.")
            writer.writerow([f"t{i}", body, (start + dt.timedelta(minutes=i)).isoformat(), f"Acme {company}",
                             f"acme{company}.com", "ticket", f"Issue {i}"])


def reset(url: str) -> None:
    """A freshly migrated, empty database. PostgreSQL gets a new schema: a TRUNCATE would keep the planner
    statistics of the last run, and a first import into a new database has none."""
    if url.startswith("postgresql"):
        reset_pg_schema(url)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()


def bench_file(url: str, csv_path: Path) -> dict[str, Any]:
    reset(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        session.add(Source(name="bench", kind="file", config={"path": str(csv_path)}))
    connector = FileConnector(source="bench", options={"path": str(csv_path), "page_size": "2000"})
    t0 = time.perf_counter()
    result = sync_source(factory, "bench", connector, redact_pii=True)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    again = sync_source(factory, "bench", FileConnector(source="bench", options={"path": str(csv_path)}))
    resync = time.perf_counter() - t1
    engine.dispose()
    return {"stored": result.stats.inserted, "rejected": result.stats.rejected, "seconds": round(seconds, 2),
            "items_per_s": round(result.stats.inserted / seconds), "resync_seconds": round(resync, 3),
            "resync_stored": again.stats.stored}


def bench_upsert(url: str, rows: int) -> dict[str, Any]:
    """FeedbackWriter alone on ready records: the cost of clean + redact + link + upsert, twice (insert, update)."""
    reset(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    records = [FeedbackRecord(external_id=f"u{i}",
                              text=f"{PHRASES[i % len(PHRASES)]} (case {i}, mail a{i}@x{i % 300}.io)",
                              occurred_at=when, account=AccountRef(name=f"X {i % 300}", domain=f"x{i % 300}.io"))
               for i in range(rows)]
    out: dict[str, Any] = {}
    for label in ("insert", "reupsert"):
        t0 = time.perf_counter()
        for start in range(0, rows, 2000):
            with session_scope(factory) as session:
                source = get_or_create_source(session, name="raw", kind="file")
                FeedbackWriter(session, source).write(records[start:start + 2000])
        seconds = time.perf_counter() - t0
        out[f"{label}_items_per_s"] = round(rows / seconds)
    engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--pg-url", default=PG_BENCH_URL,
                        help="the PostgreSQL database to use (emptied; default GROUNDSWELL_BENCH_PG_URL or gs_bench)")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp:
        csv_path = Path(tmp) / "export.csv"
        generate_csv(csv_path, args.rows)
        targets = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", 5_000)]
        if ensure_pg_database(args.pg_url):
            targets.append(("postgresql", args.pg_url, 2_000))
        else:
            print(f"PostgreSQL not measured: no server answers at {args.pg_url}", file=sys.stderr)
        for backend, url, target in targets:
            row = {"backend": backend, "rows": args.rows, **bench_file(url, csv_path),
                   **bench_upsert(url, args.rows), "target_items_per_s": target}
            row["meets_target"] = row["items_per_s"] >= target
            row["peak_mib_so_far"] = peak_mib()  # this process, both backends so far
            results.append(row)
    if args.json:
        emit(results, as_json=True, title="file ingest")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"file ingest, redaction on, {args.rows:,} rows")
        for column in results[0]:
            table.add_column(column, justify="right")
        for row in results:
            table.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
                            for v in row.values()))
        Console().print(table)
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
