"""API latency under load: demo data scaled to N items, 20 concurrent clients against a real uvicorn.

    python -m benchmarks.api_latency --backend sqlite --items 100000
    python -m benchmarks.api_latency --backend postgresql --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/gs_bench_api
    python -m benchmarks.api_latency --backend sqlite --search-model all-MiniLM-L6-v2 --only search --only search_new

The data is the demo generator's, repeated under distinct sources until there are ``--items`` items, and
analysed by the real :class:`pipeline.analysis.Analyzer` (a full run with ``--build-model``, the hashing
embedder by default, for speed): themes, assignments, weekly stats and opportunity scores are all the
analysis's own. The analysed SQLite database is cached under ``var/bench`` and copied (row for row) into
PostgreSQL for that backend.

The server is ``uvicorn`` in its own process (``--workers`` processes, one by default; its HTTP parser and
event loop chosen as ``groundswell serve`` has them, httptools and uvloop when installed, or as
``GS_BENCH_HTTP`` and ``GS_BENCH_LOOP`` say, e.g. ``h11`` and ``asyncio``; no access log) built by
:func:`create_app` with ``--search-model`` as the configured model, so search embeds each query with
that model, in the model's own child process as ``groundswell serve`` does (``GS_BENCH_QUERY_PROCESS=0``:
in the server's threads), and with ``warm_search`` as ``groundswell serve`` has it; the load starts once the server's
processes are idle (warmed up). Search compares the query with stored vectors of the same model; when the
database holds none for it (a real sentence-transformers model over 100k texts takes too long to embed
here), the ``--build-model`` vectors are stored again under the search model's name: the vectors and the
query embedding then cost what they would in production, though the hits mean nothing. ``--recall N``
measures what the approximate search costs in hits, with the build model's own vectors and queries, where
nearest neighbours mean something.

The load is closed-loop: each of ``--clients`` clients (its own keep-alive connection, in one asyncio
process apart from the server) sends its next request when the last one is answered, so with more clients
than cores a latency includes the wait behind the others. Prints p50/p95 of GET /v1/opportunities, GET
/v1/themes, GET /v1/search (six queries over and over, as people repeat searches) and GET /v1/search with
a query never seen before (so its vector is not cached), and POST /v1/feedback, each with the throughput
and the CPU milliseconds per request of the server (all its processes; not PostgreSQL's) and of the load
generator; and, from the server's ``Server-Timing`` header, the mean and p95 of each stage (auth, version
check, embed, queue, score, rows, ...) against ``app``, the time in the application, and ``outside app``,
the rest of the latency (sockets, event loop, client). Then it posts 1,000 field notes at once (and again,
as retries with the same idempotency keys) and checks in the database that each key was stored once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine, make_url

from models import migrate
from models.db import make_engine, make_session_factory, session_scope
from models.tables import Base, Embedding, Feedback, Source

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "var" / "bench"
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
SEARCH_QUERIES = ["export to excel keeps failing", "single sign-on with okta", "slow dashboard loading",
                  "salesforce sync duplicates", "mobile app crashes offline", "pricing too expensive"]
NEW_WORDS = ["again", "today", "for our team", "since the update", "urgent", "on chrome", "in the eu", "weekly",
             "for admins", "after login", "on large accounts", "via the api", "in reports", "still"]


class NoJobs:
    """The benchmark starts no background jobs."""

    def submit(self, kind: str, **params: Any) -> int:
        return int(params.get("run_id", 0))


# -- data ---------------------------------------------------------------------------------------------
def build_dataset(path: Path, n_items: int, model: str) -> dict[str, Any]:
    """Demo copies up to ``n_items`` items in a SQLite file, analysed by the real Analyzer (one full run)."""
    from ingest.accounts import AccountResolver
    from ingest.demo import DEMO_SOURCES, generate_demo
    from ingest.upsert import FeedbackWriter, get_or_create_source
    from models.settings import Settings
    from pipeline.analysis import Analyzer
    from pipeline.embedding import make_embedder

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{tmp}")
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    t0 = time.perf_counter()
    stored, copy = 0, 0
    while stored < n_items:
        data = generate_demo(seed=100 + copy, now=NOW)
        with session_scope(factory) as session:
            resolver = AccountResolver(session)
            for account in data.accounts:
                resolver.upsert(account)
        by_source: dict[tuple[str, str], list[Any]] = {}
        for name, record in data.items[: n_items - stored]:
            by_source.setdefault((f"{name}-{copy}", DEMO_SOURCES[name]), []).append(record)
            stored += 1
        for (name, kind), records in by_source.items():
            for start in range(0, len(records), 5000):
                with session_scope(factory) as session:
                    source = get_or_create_source(session, name=name, kind=kind)
                    FeedbackWriter(session, source).write(records[start:start + 5000])
        copy += 1
    loaded_s = time.perf_counter() - t0
    settings = Settings(data_dir=path.parent, embedding_model=model, _env_file=None)  # type: ignore[call-arg]
    t1 = time.perf_counter()
    summary = Analyzer(factory, settings, make_embedder(model)).run(full=True, now=NOW)
    analysed_s = time.perf_counter() - t1
    engine.dispose()
    os.replace(tmp, path)
    info = {"items": stored, "copies": copy, "load_s": round(loaded_s), "analysis_s": round(analysed_s),
            "themes": summary.themes, "opportunities": summary.opportunities, "assigned": summary.assigned}
    print(f"  built {path.name}: {info}", flush=True)
    return info


def dataset(n_items: int, model: str, rebuild: bool) -> Path:
    path = CACHE_DIR / f"api_latency_{n_items}_{model}.db"
    if rebuild or not path.exists():
        build_dataset(path, n_items, model)
    return path


def copy_database(src: Path, url: str) -> None:
    """A fresh database at ``url`` holding every row of the analysed SQLite file ``src``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        dest = Path(parsed.database or "")
        shutil.copyfile(src, dest)
        engine = make_engine(url)
        migrate.upgrade(engine)  # the cached database may predate a migration
        engine.dispose()
        return
    admin = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).first():
            conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    admin.dispose()
    engine = make_engine(url)
    with engine.begin() as conn:  # our own dedicated benchmark database: start clean
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrate.upgrade(engine)
    source = make_engine(f"sqlite:///{src}")
    t0 = time.perf_counter()
    with source.connect() as read, engine.begin() as write:
        for table in Base.metadata.sorted_tables:
            result = read.execution_options(yield_per=5000).execute(select(table))
            for chunk in result.partitions():
                write.execute(insert(table), [dict(row._mapping) for row in chunk])
            if "id" in table.c:
                write.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                   f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    print(f"  copied into PostgreSQL in {time.perf_counter() - t0:.0f}s", flush=True)
    source.dispose()
    engine.dispose()


def ensure_vectors(engine: Engine, build_model: str, search_model: str) -> None:
    """Store the build model's vectors under the search model's name when that model has none."""
    from pipeline.embedding import make_embedder

    if search_model == build_model:
        return
    with engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(Embedding).where(Embedding.model == search_model)):
            return
        dim = make_embedder(search_model).encode(["probe"]).shape[1]
        have = conn.scalar(select(func.max(Embedding.dim)).where(Embedding.model == build_model))
        if have != dim:
            raise SystemExit(f"{build_model} vectors have {have} dimensions, {search_model} has {dim}; "
                             f"build with a model of {dim} dimensions (e.g. --build-model hashing-{dim})")
        cols = [Embedding.content_hash, Embedding.dim, Embedding.vector, Embedding.created_at]
        conn.execute(insert(Embedding).from_select(
            ["content_hash", "dim", "vector", "created_at", "model"],
            select(*cols, text(f"'{search_model}'")).where(Embedding.model == build_model)))
    print(f"  stored {build_model} vectors under {search_model} (latency only; hits are meaningless)",
          flush=True)


# -- server ---------------------------------------------------------------------------------------------
def bench_app() -> Any:
    """The app a benchmark server runs, from the ``GS_BENCH_*`` variables that :func:`serve` sets.

    An import-string factory, so that ``uvicorn`` can start it in several worker processes.
    """
    from api.app import create_app
    from models.settings import Settings

    url, model = os.environ["GS_BENCH_URL"], os.environ["GS_BENCH_MODEL"]
    settings = Settings(database_url=url, data_dir=Path(tempfile.mkdtemp()), embedding_model=model,  # type: ignore[call-arg]
                        torch_threads=int(os.environ.get("GS_BENCH_TORCH_THREADS", "0")), _env_file=None,
                        query_encoder_process=os.environ.get("GS_BENCH_QUERY_PROCESS", "1") == "1")
    # As `groundswell serve` builds it: the configured model, queries encoded in a child process unless
    # GS_BENCH_QUERY_PROCESS=0; warm_search starts that process before the load begins.
    app = create_app(settings, job_runner=NoJobs(), note_rate=(1e6, 10**6), server_timing=True, warm_search=True,
                     search_concurrency=int(os.environ.get("GS_BENCH_SEARCH_CONCURRENCY", "0")))
    app.state.embedder.encode(["warm up"])  # the model that embeds notes on arrival, loaded before the load
    return app


def serve(url: str, model: str, port: int, cpus: str | None, workers: int = 1, torch_threads: int = 0) -> None:
    """Run the app under uvicorn from this process (the benchmark starts it as a subprocess)."""
    import uvicorn

    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    os.environ.update(GS_BENCH_URL=url, GS_BENCH_MODEL=model, GS_BENCH_TORCH_THREADS=str(torch_threads))
    uvicorn.run("benchmarks.api_latency:bench_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                http=os.environ.get("GS_BENCH_HTTP", "auto"), loop=os.environ.get("GS_BENCH_LOOP", "auto"),
                access_log=False, log_level="warning", backlog=4096,
                timeout_keep_alive=120)


def start_server(url: str, model: str, cpus: str | None, workers: int = 1,
                 torch_threads: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "benchmarks.api_latency", "--serve", url, "--port", str(port),
           "--search-model", model, "--workers", str(workers), "--torch-threads", str(torch_threads)]
    cmd += ["--server-cpus", cpus] if cpus else []
    proc = subprocess.Popen(cmd, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                wait_until_idle(proc.pid, deadline)
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 180 s")


def wait_until_idle(pid: int, deadline: float, busy: float = 0.05) -> None:
    """Wait until the server's processes use under ``busy`` of a core: every worker warmed up at startup."""
    last = process_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = process_cpu_s(pid)
        if now - last < busy:
            return
        last = now


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- load -------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx spends about 3 ms of CPU per request, which on a small machine makes the load generator, not
    the server, what a latency benchmark measures; this one spends a small fraction of that.
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        status, _, data = await self.exchange(method, path, body, headers)
        return status, data

    async def exchange(self, method: str, path: str, body: Any = None,
                       headers: dict[str, str] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
        """One request: (status, lower-cased response headers, body)."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await self._exchange(method, path, body, headers)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()  # the server closed an idle keep-alive connection: reconnect once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: Any,
                        headers: dict[str, str] | None) -> tuple[int, dict[bytes, bytes], bytes]:
        assert self.reader is not None and self.writer is not None
        payload = json.dumps(body).encode() if body is not None else b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.headers}{extra}"
                + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if payload else "")
                + "\r\n")
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readuntil(b"\r\n")
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, chunked = 0, False
        response_headers: dict[bytes, bytes] = {}
        for line in (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n"):
            name, _, value = line.partition(b":")
            name, value = name.lower(), value.strip()
            response_headers[name] = value
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, response_headers, await self.reader.readexactly(length)
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size + 2))
        await self.reader.readuntil(b"\r\n")
        return status, response_headers, b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadResult:
    """What one endpoint's load measured: client latencies, the server's own stage timings, CPU spent."""

    latencies: list[float]
    errors: int
    wall_s: float
    stages: list[dict[str, float]] = field(default_factory=list)  # per request, from Server-Timing
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0


def parse_server_timing(value: bytes | None) -> dict[str, float]:
    """``app;dur=1.2, embed;dur=0.4`` -> {"app": 1.2, "embed": 0.4}."""
    out: dict[str, float] = {}
    for part in (value or b"").decode().split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = float(dur)
    return out


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds so far of a process and its descendants (the server's workers); Linux."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # exited meanwhile
    tree, grew = {pid}, True
    while grew:
        more = {p for p, f in stats.items() if int(f[1]) in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


async def load(base: str, key: str, method: str, path: Any, n: int, clients: int,
               body: Any = None, server_pid: int | None = None) -> LoadResult:
    """``n`` requests from ``clients`` concurrent clients, each with its own keep-alive connection.

    Closed loop: each client sends its next request as soon as the last one answered, so with more clients
    than the server has cores a request's latency includes its wait behind the others (what a user of a
    busy server sees). The client's and the server's CPU seconds are measured too, which shows whether the
    load generator, not the server, is what takes the cores.
    """
    result = LoadResult([], 0, 0.0)
    counter = iter(range(n))

    async def worker() -> None:
        client = RawClient(base, {"Authorization": f"Bearer {key}"})
        for i in counter:
            payload = body(i) if callable(body) else body
            target = path(i) if callable(path) else path
            t = time.perf_counter()
            try:
                status, headers, _ = await client.exchange(method, target, payload)
            except OSError:
                status, headers = 599, {}
            result.latencies.append((time.perf_counter() - t) * 1000)
            result.stages.append(parse_server_timing(headers.get(b"server-timing")))
            if status >= 400:
                result.errors += 1
        await client.close()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    server0 = process_cpu_s(server_pid) if server_pid else 0.0
    await asyncio.gather(*(worker() for _ in range(clients)))
    result.wall_s = time.perf_counter() - wall0
    result.client_cpu_s = time.process_time() - cpu0
    result.server_cpu_s = (process_cpu_s(server_pid) - server0) if server_pid else 0.0
    return result


def stage_breakdown(result: LoadResult) -> str:
    """Mean (p95) milliseconds of each server stage, of the whole app, and of what happened outside it."""
    names: list[str] = []
    for stages in result.stages:
        names += [k for k in stages if k not in names]
    if "app" not in names:
        return ""
    outside = [lat - st["app"] for lat, st in zip(result.latencies, result.stages, strict=True) if "app" in st]
    columns = {name: [st.get(name, 0.0) for st in result.stages if "app" in st] for name in names}
    columns["outside app"] = outside
    parts = [f"{name} {sum(v) / len(v):.1f} ({percentile(v, 0.95):.1f})" for name, v in columns.items()]
    n = len(result.latencies)
    parts.append(f"| {n / result.wall_s:.0f} req/s, CPU ms/request: server "
                 f"{1000 * result.server_cpu_s / n:.1f}, load generator {1000 * result.client_cpu_s / n:.1f}")
    return "  ".join(parts)


async def notes_at_once(base: str, key: str, n: int, tag: str) -> tuple[list[int], list[int], int]:
    """``n`` field notes posted at once, then all again with the same idempotency keys (a client's retry).

    A note whose connection fails is retried with its key, as a real client would; the retries are
    counted, and the database check afterwards is what shows whether each note was stored once.
    """
    retries = 0

    async def post(i: int) -> int:
        nonlocal retries
        client = RawClient(base, {"Authorization": f"Bearer {key}"})
        try:
            for _ in range(5):
                try:
                    status, data = await client.request(
                        "POST", "/v1/feedback", {"text": f"concurrent note {tag} {i}: export to excel is broken",
                                                 "account_name": "Bench Account"},
                        headers={"Idempotency-Key": f"{tag}-{i}"})
                except OSError:
                    retries += 1
                    await client.close()
                    continue
                return int(json.loads(data)["id"]) if status == 201 else -status
            return -599
        finally:
            await client.close()

    first = await asyncio.gather(*(post(i) for i in range(n)))
    again = await asyncio.gather(*(post(i) for i in range(n)))
    return list(first), list(again), retries


def approximate_recall(db: Path, model: str, n_queries: int, limit: int = 20) -> dict[str, Any]:
    """Recall@``limit`` of the search index's approximate ranking against its exact one, on the dataset.

    The queries are the benchmark's own and ``n_queries`` stored texts (every k-th item), embedded by the
    model that built the data, so that neighbours mean something (the search model's vectors may be
    copies of the build model's). A hit counts when its score reaches the exact ``limit``-th score, so an
    item tied with an exact hit is no miss.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    from api.search_index import VectorIndex
    from models.db import make_read_session_factory
    from pipeline.embedding import make_embedder

    threadpool_limits(limits=1, user_api="blas")
    engine = make_engine(f"sqlite:///{db}")
    index = VectorIndex(make_read_session_factory(engine))
    with session_scope(index.sessions) as session:  # type: ignore[arg-type]
        snapshot = index.snapshot(session, model)
        total = session.scalar(select(func.count()).select_from(Feedback)) or 1
        step = max(1, total // max(1, n_queries))
        texts = list(session.scalars(select(Feedback.text).where(Feedback.id % step == 0).limit(n_queries)))
    engine.dispose()
    vectors = make_embedder(model).encode(SEARCH_QUERIES + texts)
    recalls, costs = [], []
    for q in vectors:  # one BLAS thread, as in the server (see create_app)
        exact_ids, exact_scores = index.nearest(snapshot, q, limit=limit, exact=True)
        t = time.process_time()
        _, scores = index.nearest(snapshot, q, limit=limit, exact=False)
        costs.append(time.process_time() - t)
        recalls.append(float(np.mean(scores >= exact_scores[-1] - 1e-6)) if len(exact_ids) else 1.0)
    return {"queries": len(recalls), "mean": float(np.mean(recalls)), "p10": float(np.percentile(recalls, 10)),
            "min": float(np.min(recalls)), "approx_ms": 1000 * float(np.mean(costs)), "rows": snapshot.size}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_backend(name: str, url: str, db: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from api.routes.keys import create_key
    from ingest.field_notes import SOURCE_NAME as FIELD_NOTES_SOURCE

    print(f"{name}: {url}", flush=True)
    copy_database(db, url)
    engine = make_engine(url)
    ensure_vectors(engine, args.build_model, args.search_model)
    with session_scope(make_session_factory(engine)) as session:
        _, key = create_key(session, name="bench-pm", role="pm")
        n_items = session.scalar(select(func.count()).select_from(Feedback))
    if args.client_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    proc, base = start_server(url, args.search_model, args.server_cpus, args.workers, args.torch_threads)
    rows = []
    precision = None
    fresh = itertools.count()
    try:
        cases = {
            "opportunities": ("GET", "/v1/opportunities", None),
            "themes": ("GET", "/v1/themes", None),
            "search": ("GET", lambda i: f"/v1/search?q={quote_plus(SEARCH_QUERIES[i % len(SEARCH_QUERIES)])}", None),
            # Never the same text twice, so no query vector comes from the server's cache.
            "search_new": ("GET", lambda i: "/v1/search?q=" + quote_plus(
                f"{SEARCH_QUERIES[i % len(SEARCH_QUERIES)]} {NEW_WORDS[next(fresh) % len(NEW_WORDS)]} "
                f"{NEW_WORDS[next(fresh) * 7 % len(NEW_WORDS)]} {next(fresh)}"), None),
            "feedback": ("POST", "/v1/feedback",
                         lambda i: {"text": f"bench note {i}: {SEARCH_QUERIES[i % len(SEARCH_QUERIES)]}",
                                    "account_name": "Bench Account"}),
        }
        for case in [c for c in (args.only or cases) if c in cases]:
            method, path, body = cases[case]
            asyncio.run(load(base, key, method, path, 40, args.clients, body))  # warm-up (search matrix load)
            result = asyncio.run(load(base, key, method, path, args.requests, args.clients, body, proc.pid))
            lat = result.latencies
            label = {"search": "/v1/search", "search_new": "/v1/search (new queries)"}.get(case, path)
            n = len(lat)
            rows.append({"backend": name, "request": f"{method} {label}", "n": n,
                         "p50_ms": statistics_median(lat), "p95_ms": percentile(lat, 0.95),
                         "errors": result.errors, "load": loadavg(),
                         "extra": f"{n / result.wall_s:.0f} req/s, server CPU {1000 * result.server_cpu_s / n:.1f} "
                                  f"ms/req, load generator CPU {1000 * result.client_cpu_s / n:.1f} ms/req"})
            print(f"  {rows[-1]}", flush=True)
            print(f"    server stages, mean (p95) ms: {stage_breakdown(result)}", flush=True)
        # What the server's model process says it encodes queries in (int8 unless it fell back at load).
        precision = httpx.get(f"{base}/ready", timeout=10).json().get("query_encoder", {}).get("query_precision")
        if args.notes and (not args.only or "notes" in args.only):
            tag = f"burst{time.time_ns()}"
            t0 = time.perf_counter()
            first, again, retries = asyncio.run(notes_at_once(base, key, args.notes, tag))
            seconds = time.perf_counter() - t0
            with engine.connect() as conn:
                note_source = select(Source.id).where(Source.name == FIELD_NOTES_SOURCE).scalar_subquery()
                keys = conn.execute(
                    select(Feedback.external_id, func.count()).where(
                        Feedback.source_id == note_source, Feedback.external_id.like(f"key:%:{tag}-%"))
                    .group_by(Feedback.external_id)).all()
            per_key = [n for _, n in keys]
            errors = sum(1 for x in first + again if x < 0)
            rows.append({"backend": name, "request": f"{args.notes} notes at once, then retried", "n": 2 * args.notes,
                         "p50_ms": float("nan"), "p95_ms": float("nan"), "errors": errors, "load": loadavg(),
                         "extra": f"keys stored={len(per_key)} max rows per key={max(per_key, default=0)} "
                                  f"same id on retry={sum(a == b > 0 for a, b in zip(first, again, strict=True))} "
                                  f"connection retries={retries} in {seconds:.1f}s"})
            print(f"  {rows[-1]}", flush=True)
    finally:
        stop_server(proc)
        engine.dispose()
    for row in rows:
        row["items"] = n_items
        row["query_precision"] = precision
    return rows


def statistics_median(values: list[float]) -> float:
    return percentile(values, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="Requests per endpoint.")
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--build-model", default="hashing-384", help="Embedder of the analysis that builds the data.")
    parser.add_argument("--search-model", default="hashing-384", help="The app's configured (query) embedder.")
    parser.add_argument("--only", action="append",
                        choices=["opportunities", "themes", "search", "search_new", "feedback", "notes"])
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached analysed database.")
    parser.add_argument("--recall", type=int, default=0, metavar="N",
                        help="Also measure approximate search's recall against exact search, with N stored "
                             "texts as queries.")
    parser.add_argument("--server-cpus", help="Pin the server to these CPUs, e.g. 0.")
    parser.add_argument("--workers", type=int, default=1, help="Server worker processes (as `serve --workers`).")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="threads of each server's query embedder; 0: the product's default (one).")
    parser.add_argument("--query-precision", choices=["int8", "fp32"],
                        help="The server's query_precision (default: the product's, or GROUNDSWELL_QUERY_PRECISION).")
    parser.add_argument("--client-cpus", help="Pin the load generator to these CPUs, e.g. 1.")
    parser.add_argument("--pg-url", default=os.environ.get(
        "GROUNDSWELL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/gs_bench_api"),
        help="This benchmark's own PostgreSQL database (emptied); default GROUNDSWELL_BENCH_PG_URL or gs_bench_api.")
    parser.add_argument("--json", action="store_true", help="One JSON object per row (progress goes to stderr).")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.search_model, args.port, args.server_cpus, args.workers, args.torch_threads)
        return
    if args.query_precision:
        os.environ["GROUNDSWELL_QUERY_PRECISION"] = args.query_precision  # read by the server's Settings
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr  # progress lines must not mix with the JSON rows
    try:
        db = dataset(args.items, args.build_model, args.rebuild)
        results: list[dict[str, Any]] = []
        if args.recall:
            r = approximate_recall(db, args.build_model, args.recall)
            print(f"  search recall@20, approximate vs exact ({args.build_model}, {r['queries']} queries over "
                  f"{r['rows']} rows): mean {r['mean']:.3f}, p10 {r['p10']:.2f}, min {r['min']:.2f}; "
                  f"approximate ranking {r['approx_ms']:.1f} ms CPU", flush=True)
        if args.backend in ("sqlite", "both"):
            workdir = Path(tempfile.mkdtemp())
            results += run_backend("sqlite", f"sqlite:///{workdir / 'bench.db'}", db, args)
            shutil.rmtree(workdir, ignore_errors=True)
        if args.backend in ("postgresql", "both"):
            results += run_backend("postgresql", args.pg_url, db, args)
    finally:
        sys.stdout = stdout
    if args.json:
        for r in results:
            row = {"benchmark": "api_latency", **r, "clients": args.clients, "query_model": args.search_model,
                   "build_model": args.build_model}
            print(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}))
        return
    precisions = ", ".join(sorted({f"{r['backend']} {r['query_precision']}" for r in results}))
    print(f"\nquery embedder: {args.search_model} (queries encoded in: {precisions}); "
          f"data analysed with {args.build_model}; "
          f"{args.clients} clients; {os.cpu_count()} cores")
    print(f"{'backend':<11} {'items':>7} {'request':<34} {'n':>5} {'p50 ms':>7} {'p95 ms':>7} {'errors':>6}  "
          f"{'load avg':<15} extra")
    for r in results:
        print(f"{r['backend']:<11} {r['items']:>7} {r['request']:<34} {r['n']:>5} {r['p50_ms']:>7.1f} "
              f"{r['p95_ms']:>7.1f} {r['errors']:>6}  {r['load']:<15} {r.get('extra', '')}")


if __name__ == "__main__":
    main()
