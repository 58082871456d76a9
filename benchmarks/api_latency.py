"""API latency under load: demo-like data scaled to N items, 20 concurrent clients against a real uvicorn.

Prints p50/p95 of GET /v1/opportunities, GET /v1/themes, GET /v1/search and POST /v1/feedback per backend,
then posts 1,000 field notes at once (and again, as retries with the same idempotency keys) and checks each
is stored exactly once.

    python benchmarks/api_latency.py --backend sqlite --items 100000
    python benchmarks/api_latency.py --backend postgresql --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/gs_bench_api
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from api.app import create_app
from api.routes.keys import create_key
from models import migrate
from models.db import make_engine, make_session_factory, session_scope
from models.settings import Settings
from models.tables import (
    Account,
    AnalysisRun,
    Embedding,
    Feedback,
    Opportunity,
    Source,
    Theme,
    ThemeAssignment,
    ThemeStat,
    utcnow,
)
from pipeline.embedding import HashingEmbedder

TOPICS = ["export to excel", "single sign on", "slack integration", "mobile app offline", "dark mode",
          "api rate limits", "bulk edit", "audit log", "custom fields", "salesforce sync", "gantt chart",
          "time tracking", "two factor auth", "data residency eu", "webhooks retries", "csv import errors",
          "search is slow", "dashboard filters", "role permissions", "invoice pdf", "calendar sync",
          "kanban swimlanes", "email notifications", "zapier", "jira integration", "recurring tasks",
          "templates", "public api docs", "sandbox environment", "sso scim provisioning"]
PHRASES = ["we really need {t}", "{t} is blocking our rollout", "customers keep asking about {t}",
           "please improve {t}", "{t} does not work for large teams", "any update on {t}?"]


class NoJobs:
    def submit(self, kind: str, **params: Any) -> int:
        return int(params["run_id"])


def prepare_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        admin = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s",
                                          (parsed.database,)).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
        admin.dispose()
        engine = make_engine(url)
        with engine.begin() as conn:  # our own dedicated benchmark database: start clean
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()


def seed(url: str, n_items: int, embedder: HashingEmbedder, seed_value: int = 7) -> None:
    rng = random.Random(seed_value)
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = utcnow()
    t0 = time.perf_counter()
    with engine.begin() as conn:
        source_id = conn.execute(insert(Source).values(name="bench", kind="demo", config={}).returning(Source.id)
                                 ).scalar_one()
        accounts = [{"name": f"Account {i}", "name_key": f"account {i}", "domain": f"account{i}.com",
                     "segment": rng.choice(["enterprise", "mid_market", "smb"]), "arr": rng.choice([0, 5e3, 5e4, 2e5]),
                     "lifecycle": "customer", "open_pipeline": 0.0, "external_ids": {}} for i in range(2000)]
        conn.execute(insert(Account), accounts)
        account_ids = list(conn.execute(select(Account.id)).scalars())
        theme_rows = [{"label": t, "keywords": t.split(), "quotes": [], "size": 0, "status": "active",
                       "trend": rng.choice(["new", "emerging", "growing", "stable", "fading"])} for t in TOPICS]
        conn.execute(insert(Theme), theme_rows)
        theme_ids = list(conn.execute(select(Theme.id).order_by(Theme.id)).scalars())
        run_id = conn.execute(insert(AnalysisRun).values(kind="full", status="succeeded", started_at=now,
                                                          finished_at=now, stats={}).returning(AnalysisRun.id)
                              ).scalar_one()
        for start in range(0, n_items, 5000):
            rows, texts, topics = [], [], []
            for i in range(start, min(n_items, start + 5000)):
                topic = rng.randrange(len(TOPICS))
                text = rng.choice(PHRASES).format(t=TOPICS[topic]) + f" (ref {i})"
                texts.append(text)
                topics.append(topic)
                rows.append({"source_id": source_id, "external_id": f"b-{i}", "kind": "ticket", "text": text,
                             "content_hash": hashlib.sha256(text.encode()).hexdigest(),
                             "account_id": rng.choice(account_ids),
                             "occurred_at": now - dt.timedelta(minutes=rng.randrange(16 * 7 * 24 * 60)),
                             "ingested_at": now, "updated_at": now, "flags": {}, "competitors": [], "tags": [],
                             "needs_analysis": False})
            conn.execute(insert(Feedback), rows)
            ids = conn.execute(select(Feedback.id, Feedback.content_hash).where(
                Feedback.external_id.in_([r["external_id"] for r in rows]))).all()
            by_hash = {h: fid for fid, h in ids}
            vectors = embedder.encode(texts)
            conn.execute(insert(ThemeAssignment), [
                {"feedback_id": by_hash[r["content_hash"]], "theme_id": theme_ids[t], "similarity": 0.8,
                 "method": "cluster", "pinned": False, "assigned_at": now} for r, t in zip(rows, topics, strict=True)])
            conn.execute(insert(Embedding), [
                {"content_hash": r["content_hash"], "model": embedder.name, "dim": embedder.dim,
                 "vector": v.tobytes(), "created_at": now} for r, v in zip(rows, vectors, strict=True)])
        monday = dt.date.today() - dt.timedelta(days=dt.date.today().weekday())
        stats, opps = [], []
        for rank, theme_id in enumerate(theme_ids, start=1):
            for w in range(16):
                start_day = monday - dt.timedelta(weeks=15 - w)
                iso = start_day.isocalendar()
                stats.append({"theme_id": theme_id, "week": f"{iso.year}-W{iso.week:02d}", "week_start": start_day,
                              "items": rng.randrange(50, 400), "accounts": rng.randrange(10, 100), "arr": 1e5,
                              "open_pipeline": 0.0, "intents": {}, "sources": {}})
            for segment in ("all", "enterprise", "mid_market", "smb"):
                opps.append({"theme_id": theme_id, "run_id": run_id, "segment": segment, "score": 100.0 - rank,
                             "rank": rank, "tier": "important", "components": {"momentum": rng.random()},
                             "metrics": {}, "rationale": f"rank {rank}", "created_at": now})
        conn.execute(insert(ThemeStat), stats)
        conn.execute(insert(Opportunity), opps)
    print(f"  seeded {n_items:,} items in {time.perf_counter() - t0:.0f}s")
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def load(base: str, key: str, method: str, path: str, n: int, clients: int,
               body: Any = None) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                payload = body(i) if callable(body) else body
                t = time.perf_counter()
                response = await client.request(method, path, json=payload, headers=headers)
                latencies.append((time.perf_counter() - t) * 1000)
                if response.status_code >= 400:
                    errors += 1
        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


async def notes_exactly_once(base: str, key: str, n: int, tag: str) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        async def post(i: int) -> int:
            response = await client.post("/v1/feedback", headers={**headers, "Idempotency-Key": f"{tag}-{i}"},
                                         json={"text": f"concurrent note {tag} {i}", "account_name": "Account 1"})
            return int(response.json()["id"]) if response.status_code == 201 else -response.status_code
        first = await asyncio.gather(*(post(i) for i in range(n)))
        again = await asyncio.gather(*(post(i) for i in range(n)))
    errors = sum(1 for x in first + again if x < 0)
    same = sum(1 for a, b in zip(first, again, strict=True) if a == b and a > 0)
    return errors, same


def run_backend(name: str, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    print(f"{name}: {url}")
    prepare_database(url)
    embedder = HashingEmbedder(dim=384)
    seed(url, args.items, embedder)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        _, key = create_key(session, name="bench-pm", role="pm")
    settings = Settings(database_url=url, data_dir=Path(tempfile.mkdtemp()), _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, embedder=embedder, job_runner=NoJobs(), note_rate=(1e6, 10**6))
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    rows = []
    words = [t.split()[0] for t in TOPICS]
    cases = [("GET", "/v1/opportunities", None), ("GET", "/v1/themes", None),
             ("GET", "/v1/search?q=export+excel+blocking", None),
             ("POST", "/v1/feedback", lambda i: {"text": f"bench note {i} about {words[i % len(words)]}",
                                                  "account_name": f"Account {i % 2000}"})]
    for method, path, body in cases:
        asyncio.run(load(base, key, method, path, 20, 5, body))  # warm-up (and the search matrix load)
        lat, errors = asyncio.run(load(base, key, method, path, args.requests, args.clients, body))
        rows.append({"backend": name, "request": f"{method} {path.split('?')[0]}", "n": len(lat),
                     "p50_ms": statistics.median(lat), "p95_ms": percentile(lat, 0.95), "errors": errors})
    errors, same = asyncio.run(notes_exactly_once(base, key, args.notes, f"burst{time.time_ns()}"))
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(Feedback).where(Feedback.text.like("concurrent note %")))
    rows.append({"backend": name, "request": f"{args.notes} concurrent notes x2 (retry)", "n": 2 * args.notes,
                 "p50_ms": float("nan"), "p95_ms": float("nan"),
                 "errors": errors, "stored": stored, "same_id_on_retry": same})
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="Requests per endpoint.")
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/gs_bench_api")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    if args.backend in ("sqlite", "both"):
        path = Path(tempfile.mkdtemp()) / "bench.db"
        results += run_backend("sqlite", f"sqlite:///{path}", args)
    if args.backend in ("postgresql", "both"):
        results += run_backend("postgresql", args.pg_url, args)
    print(f"\n{'backend':<11} {'request':<36} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6}  extra")
    for r in results:
        extra = f"stored={r['stored']} same_id_on_retry={r['same_id_on_retry']}" if "stored" in r else ""
        print(f"{r['backend']:<11} {r['request']:<36} {r['n']:>6} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['errors']:>6}  {extra}")


if __name__ == "__main__":
    main()
