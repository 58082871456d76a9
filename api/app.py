"""The FastAPI application, built by :func:`create_app` from explicit settings."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from api.arrivals import ArrivalEmbedder
from api.cache import ListCache
from api.deps import lookup_principal, sqlite_writer_lock
from api.errors import ApiError, TooManyRequests
from api.fifo import FifoSemaphore
from api.jobs import JobRunner, ThreadJobRunner
from api.query_embedding import QueryEmbedder
from api.query_process import ProcessEncoder
from api.search_index import VectorIndex
from api.security import RateLimiter
from api.sharing import SharedCall
from api.timing import ServerTiming
from models.db import engine_from_settings, make_read_session_factory, make_session_factory, session_scope
from models.settings import Settings
from pipeline.embedding import EmbeddingError, available_cores
from pipeline.runs import reap_abandoned_runs

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
STATIC_DIR = Path(__file__).parent / "static"


def problem(status: int, title: str, detail: str, *, field: str | None = None,
            errors: Sequence[dict[str, Any]] = (), headers: dict[str, str] | None = None) -> JSONResponse:
    """An RFC 9457 problem-details response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc_path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


class BodySizeLimit:
    """Answers 413 when a request body exceeds ``max_bytes``, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            # No database stores NUL in text; say so here rather than fail deep in a query.
            await self._reject(scope, receive, send, 422, "Invalid input",
                               "query parameters must not contain NUL characters", field="query")
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body at all (a GET, say)
            return
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                await self._reject(scope, receive, send, 400, "Bad request", "Content-Length is not a number")
                return
            if too_big:
                await self._too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No length announced (chunked): read the body here, within the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._reject(scope, receive, send, 413, "Request body too large",
                           f"the body is over the limit of {self.max_bytes} bytes")

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int, title: str,
                      detail: str, field: str = "body") -> None:
        await problem(status, title, detail, field=field)(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """Hand out ``messages`` first, then defer to the server (which reports a disconnect when it happens)."""
    queue = list(messages)

    async def replay() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replay


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc_path(e.get("loc", ())), "message": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(422, "Malformed JSON", "the request body is not valid JSON", field="body", errors=errors)
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Invalid input", detail or str(first["message"]), field=first["field"], errors=errors)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        return problem(exc.status, exc.title, exc.detail, field=exc.field, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail),
                       headers=dict(exc.headers or {}))

    @app.exception_handler(EmbeddingError)
    async def embedding_error(_request: Request, exc: EmbeddingError) -> JSONResponse:
        log.error("search's embedding model failed: %s", exc)
        return problem(503, "Service unavailable", f"the search model is unavailable: {exc}")

    @app.exception_handler(IntegrityError)
    async def integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error: %s", exc.orig)
        return problem(409, "Conflict", "the change conflicts with stored data (a duplicate or a missing row)")

    @app.exception_handler(DataError)
    async def data_error(_request: Request, exc: DataError) -> JSONResponse:
        log.info("value refused by the database: %s", exc.orig)
        return problem(422, "Invalid input", "a value is out of range or malformed for the database")

    @app.exception_handler(OperationalError)
    async def operational_error(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return problem(503, "Service unavailable", "the database is busy or unreachable; retry shortly",
                       headers={"Retry-After": "1"})


def single_statement_reads(read_engine: Engine) -> Engine:
    """The engine for the reads done in one statement each (who is this key, what changed, the hits).

    On PostgreSQL they run in autocommit: a transaction around one SELECT costs two more round trips
    (BEGIN, COMMIT) on every request. SQLite keeps the read sessions' deferred transactions, which cost
    no round trip.
    """
    if read_engine.dialect.name == "postgresql":
        return read_engine.execution_options(isolation_level="AUTOCOMMIT")
    return read_engine


def _warm_search(app: FastAPI) -> None:
    embedder = app.state.query_embedder
    try:
        embedder.encode_one("warm up")
        app.state.vector_index.warm(embedder.name)
    except Exception:  # the first search tries again, and reports what is wrong
        log.exception("warming search up failed")


def _reap_runs(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Close runs whose process is gone (see :func:`pipeline.runs.reap_abandoned_runs`)."""
    with session_scope(sessions) as session:
        reaped = reap_abandoned_runs(session, older_than=dt.timedelta(hours=settings.stale_run_hours))
    if reaped:
        log.warning("marked %d run(s) abandoned: their process stopped without recording an end", reaped)
    return reaped


def create_server_app() -> FastAPI:
    """The app as ``groundswell serve`` runs it: settings from the environment, search warmed at startup."""
    return create_app(warm_search=True)


def query_model_factory(settings: Settings) -> Callable[[], Any]:
    """What builds :func:`default_embedder`'s model in the query encoder's process (picklable)."""
    from pipeline.embedding import make_embedder

    return functools.partial(make_embedder, settings.embedding_model, device=settings.embedding_device,
                             batch_size=settings.embedding_batch_size, threads=settings.torch_threads or 1,
                             precision=settings.embedding_precision, runtime=settings.embedding_runtime,
                             query_precision=settings.query_precision)


def default_embedder(settings: Settings) -> Any:
    """The query embedder of search: the configured model, one thread per query unless threads are set.

    A query is a few tokens: a second thread shortens one encode a little and costs more CPU in all, while
    concurrent searches already keep the other cores busy.
    """
    return query_model_factory(settings)()


def create_app(settings: Settings | None = None, *, embedder: Any = None, job_runner: JobRunner | None = None,
               note_rate: tuple[float, int] = (2.0, 30), login_rate: tuple[float, int] = (0.2, 10),
               server_timing: bool = False, warm_search: bool = False, search_concurrency: int = 0,
               blas_threads: int | None = 1) -> FastAPI:
    """Build the app.

    Args:
        settings: the settings; read from the environment when None.
        embedder: the query embedder of search, run in the request threads; when None, the configured model,
            run in a child process unless ``settings.query_encoder_process`` is false (see
            :mod:`api.query_process`).
        job_runner: runs sync, analysis and report jobs; a thread per job when None.
        note_rate: (notes per second, burst) allowed per API key for field notes.
        login_rate: (attempts per second, burst) allowed per client address on the login page.
        server_timing: send each response's stage timings in a ``Server-Timing`` header (for profiling).
        warm_search: at startup, load the query model and build the search snapshot in the background, so
            the first searches do not wait for them (a server does; tests that change data after the app
            starts would see the startup snapshot for a few seconds).
        search_concurrency: searches run at once (in worker threads); the others wait their turn. 0: one
            per core. Ranking and reading hits is mostly Python, so more at once only trade the interpreter
            lock; a query's encode runs outside this limit and releases the lock. On 2 cores, 20 clients of
            never-seen queries: p95 83-101 ms with 2 against 104-129 with 4 on SQLite, no different on
            PostgreSQL (117-146 against 119-144 ms; docs/benchmarks.md).
        blas_threads: BLAS threads of this process (None leaves them be). Search multiplies a query by
            matrix slices of a few MB, many at once, one per request thread: a second BLAS thread only
            spins while it waits for work (a theme's slice costs 4x the CPU with two threads on two
            cores). Analysis jobs run in this process by the thread job runner get one thread too.
    """
    settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
    if blas_threads is not None:
        threadpool_limits(limits=blas_threads, user_api="blas")
    engine = engine_from_settings(settings)
    sessions = make_session_factory(engine)
    reap = functools.partial(_reap_runs, sessions, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:  # jobs this server's previous process left queued or running will never finish
            await anyio.to_thread.run_sync(reap)
        except Exception:  # a database that is down shows in /ready; the server still starts
            log.exception("closing runs left open by a stopped process failed")
        if warm_search:
            threading.Thread(target=_warm_search, args=(app,), daemon=True, name="warm-search").start()
        yield
        if app.state.arrivals is not None:
            app.state.arrivals.close()
        if app.state.query_process is not None:
            app.state.query_process.close()
        engine.dispose()

    app = FastAPI(
        title="Groundswell", version="0.1.0", lifespan=lifespan,
        description="Customer feedback in, ranked product opportunities out. Authenticate with "
        "`Authorization: Bearer <API key>`; errors are RFC 9457 problem details naming the field at fault.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.read_sessions = make_read_session_factory(engine)
    app.state.read_engine = single_statement_reads(app.state.read_sessions.kw["bind"])
    app.state.principals = SharedCall(functools.partial(lookup_principal, app.state.read_engine))
    # The configured model runs in a child process (one copy, for queries and, after them, notes on arrival);
    # an embedder given here (tests) or query_encoder_process=false runs in this process's threads.
    app.state.query_process = None
    if embedder is None and settings.query_encoder_process:
        app.state.query_process = ProcessEncoder(query_model_factory(settings), default_embedder(settings).name)
        app.state.embedder = app.state.query_process.in_background()
    else:
        app.state.embedder = embedder if embedder is not None else default_embedder(settings)
    app.state.query_embedder = QueryEmbedder(app.state.query_process or app.state.embedder)
    app.state.arrivals = ArrivalEmbedder(
        sessions, app.state.embedder, read_sessions=app.state.read_sessions,
        write_lock=sqlite_writer_lock(engine),
    ) if settings.embed_on_arrival else None
    app.state.job_runner = job_runner if job_runner is not None else ThreadJobRunner(settings, sessions)
    app.state.vector_index = VectorIndex(app.state.read_sessions)
    slots = search_concurrency or available_cores()
    app.state.search_slots = FifoSemaphore(slots)  # held while a search ranks and reads
    app.state.search_limiter = anyio.CapacityLimiter(slots)  # threads given to searches of cached queries
    app.state.list_cache = ListCache(app.state.read_sessions, reap=reap)
    app.state.note_limiter = RateLimiter(rate=note_rate[0], burst=note_rate[1])
    app.state.login_limiter = RateLimiter(rate=login_rate[0], burst=login_rate[1])

    _install_error_handlers(app)

    from api import pages
    from api.routes import accounts, feedback, keys, opportunities, reports, runs, search, sources, themes

    for module in (feedback, themes, opportunities, search, reports, sources, runs, keys, accounts):
        app.include_router(module.router, prefix="/v1")
    app.include_router(pages.router)
    pages.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready() -> Any:
        """The database answers and the embedding model can be found.

        With embedding on arrival, ``arrivals`` also counts the notes waiting to be embedded and those embedded,
        failed or left to the next analysis since the server started; ``query_encoder`` tells whether search's
        encoder process is running (or how it exited), how often one started and whether it encodes queries in
        int8 or float32.
        """
        checks: dict[str, str] = {}
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            from pipeline.embedding import resolve_model_path

            path = resolve_model_path(settings.embedding_model)
            checks["model"] = "ok" if Path(path).exists() or "/" not in path else f"missing: {path}"
        except Exception as exc:
            checks["model"] = f"unavailable: {exc}"
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
        if app.state.arrivals is not None:  # informational: a backlog or failures here never make it unready
            body["arrivals"] = app.state.arrivals.stats()
        if app.state.query_process is not None:  # informational too: a dead child restarts on the next search
            body["query_encoder"] = app.state.query_process.stats()
        return JSONResponse(body, status_code=200 if ok else 503)

    # Outermost first: the size limit sees the raw request before anything reads the body.
    secret = settings.session_secret.get_secret_value() if settings.session_secret else secrets.token_urlsafe(32)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="gs_session", same_site="lax",
                       https_only=settings.public_url.startswith("https://"), max_age=12 * 3600)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if server_timing:
        app.add_middleware(ServerTiming)
    return app
