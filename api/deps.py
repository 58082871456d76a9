"""Dependencies shared by the routers: database session, settings, and who is calling with which role."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy import Connection, Engine, Select, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.schemas import MAX_ID
from api.security import ROLES, hash_key, same_hash
from api.timing import record, timed
from models.db import session_scope
from models.settings import Settings
from models.tables import ApiKey, utcnow

PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# last_used_at is informative only; writing it on every request would turn each read into a write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request: committed when the route returns normally, rolled back on error.

    Async, so opening and closing it costs no threadpool hop: a session connects on its first query, and
    :class:`TransactionalRoute` ends the transaction in the endpoint's own thread, so by the time this
    resumes there is normally nothing left to commit. A transaction still open (a route outside
    TransactionalRoute) is finished in the threadpool, never on the event loop.
    """
    # Safe methods read only: on SQLite their sessions do not queue behind writers for the write lock.
    factory = request.app.state.read_sessions if request.method in ("GET", "HEAD") else request.app.state.sessions
    session: Session = factory()
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": the commit happens before the response is sent, so a 201 means stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: the API key it authenticated with."""

    key_id: int
    name: str
    role: str
    last_used_at: dt.datetime | None = None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


@functools.cache
def _key_by_hash() -> Select[int, str, str, str, dt.datetime | None]:
    # Built once, values bound per call: composing a select costs more than running this one.
    return (select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.key_hash, ApiKey.last_used_at)
            .where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)))


@functools.cache
def _key_by_id() -> Select[int, str, str, dt.datetime | None]:
    return (select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.last_used_at)
            .where(ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None)))


def principal_for_key(db: Session | Connection, secret: str) -> Principal | None:
    """The live key whose hash matches ``secret``, or None."""
    return principal_for_digest(db, hash_key(secret))


def principal_for_digest(db: Session | Connection, digest: str) -> Principal | None:
    """The live key whose stored hash is ``digest``, or None."""
    row = db.execute(_key_by_hash(), {"digest": digest}).first()
    if row is None or not same_hash(row.key_hash, digest):
        return None
    return Principal(key_id=row.id, name=row.name, role=row.role, last_used_at=row.last_used_at)


def principal_for_id(db: Session | Connection, key_id: Any) -> Principal | None:
    """The live key with this id (page sessions store it), or None once revoked."""
    if not isinstance(key_id, int) or not 1 <= key_id <= MAX_ID:
        return None
    row = db.execute(_key_by_id(), {"key_id": key_id}).first()
    return None if row is None else Principal(key_id=row.id, name=row.name, role=row.role,
                                              last_used_at=row.last_used_at)


Credential = tuple[str, Any]  # ("key", sha-256 of an API key) or ("page", key id of a page session)


def lookup_principal(engine: Engine, credential: Credential) -> Principal | None:
    """The live key a credential names, or None; a bare connection of ``engine``, not a Session."""
    kind, value = credential
    with engine.connect() as conn:
        return principal_for_digest(conn, value) if kind == "key" else principal_for_id(conn, value)


async def get_principal(request: Request) -> Principal:
    """Authenticate ``Authorization: Bearer KEY``; the web pages' session cookie also works for safe methods.

    The cookie is refused for writes so that the JSON API needs no CSRF token: a page's forms post to
    the page routes, which check one.

    The key is looked up in its own short transaction, not the route's session: holding a connection (and on
    SQLite the database lock) across FastAPI's threadpool hops deadlocks once every worker thread waits.
    Requests with the same key that arrive together share one lookup (``app.state.principals``, a
    :class:`~api.sharing.SharedCall`) that started after each of them arrived, so a revoked key is refused
    by every request that arrives after the revocation; under load most requests then need no thread.
    """
    started = time.perf_counter()
    principal = await request.app.state.principals(_credential(request))
    record("auth", (time.perf_counter() - started) * 1000)
    if principal is None:
        if request.headers.get("authorization"):
            raise _unauthorized("unknown or revoked API key")
        raise _unauthorized("missing API key: send 'Authorization: Bearer <API key>'")
    now = utcnow()
    if principal.last_used_at is None or now - principal.last_used_at > LAST_USED_RESOLUTION:
        await run_in_threadpool(_touch, request.app.state.sessions, principal.key_id, now)
    return principal


def _touch(sessions: sessionmaker[Session], key_id: int, now: dt.datetime) -> None:
    with timed("auth_touch"), session_scope(sessions) as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def _credential(request: Request) -> Credential:
    header = request.headers.get("authorization")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("use the header 'Authorization: Bearer <API key>'")
        return ("key", hash_key(secret.strip()))
    if request.method in ("GET", "HEAD") and "session" in request.scope:
        key_id = request.session.get("key_id")
        if isinstance(key_id, int) and not isinstance(key_id, bool):
            return ("page", key_id)
    raise _unauthorized("missing API key: send 'Authorization: Bearer <API key>'")


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency admitting keys of ``roles``; admin is always admitted. 401 without a key, 403 otherwise."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
    allowed = frozenset(roles) | {"admin"}

    async def dependency(principal: PrincipalDep) -> Principal:  # async: a pure check needs no thread
        if principal.role not in allowed:
            raise HTTPException(
                status_code=403,
                detail=f"a key with role {principal.role!r} may not do this; it needs one of "
                f"{', '.join(sorted(allowed))}",
            )
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route audit test
    dependency.__name__ = f"require_role_{'_'.join(sorted(allowed))}"
    return dependency


READERS = ("pm",)  # read everything; sales reads themes and opportunities explicitly
ReaderDep = Annotated[Principal, Depends(require_role("pm"))]
ThemeReaderDep = Annotated[Principal, Depends(require_role("pm", "sales"))]
CuratorDep = Annotated[Principal, Depends(require_role("pm"))]
NoteWriterDep = Annotated[Principal, Depends(require_role("sales", "pm"))]
IngestDep = Annotated[Principal, Depends(require_role("ingest"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]


IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="Row id.")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


class TransactionalRoute(APIRoute):
    """Commits (or rolls back) the route's session inside the endpoint's own worker thread.

    A sync generator dependency would commit in a later threadpool hop; while it waits for a free worker it
    still holds its connection (and on SQLite the database lock), which deadlocks under load once every
    worker waits for that lock. Ending the transaction in the same hop releases the connection at once.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _transactional(endpoint)
        super().__init__(path, endpoint, **kwargs)


# One per SQLite engine: this process's writers queue here, in order, instead of in SQLite's busy handler.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()
SQLITE_WRITER_WAIT_S = 60.0


def sqlite_writer_lock(bind: Any) -> threading.Lock | None:
    """The in-process writer lock of a SQLite write engine; None for read engines and other databases.

    SQLite lets one writer in at a time, and its busy handler makes the others poll with sleeps of up to
    100 ms: under a burst of writes (a thousand field notes at once) some waiters lose every poll until
    the busy timeout and fail with "database is locked". Queueing on a lock first lets each waiter in
    as soon as the one before it commits; other processes still meet the busy timeout as before.
    """
    if bind.dialect.name != "sqlite" or bind.get_execution_options().get("sqlite_begin") == "DEFERRED":
        return None
    with _SQLITE_WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(bind)
        if lock is None:
            lock = _SQLITE_WRITERS[bind] = threading.Lock()
    return lock


def _transactional(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        sessions = [v for v in kwargs.values() if isinstance(v, Session)]
        with ExitStack() as held:
            for lock in {id(lk): lk for s in sessions if (lk := sqlite_writer_lock(s.get_bind())) is not None}.values():
                if not lock.acquire(timeout=SQLITE_WRITER_WAIT_S):
                    raise HTTPException(status_code=503, detail="the database is busy; retry shortly",
                                        headers={"Retry-After": "1"})
                held.callback(lock.release)
            try:
                result = endpoint(*args, **kwargs)
                for session in sessions:
                    session.commit()
                return result
            except BaseException:
                for session in sessions:
                    session.rollback()
                raise

    return run
