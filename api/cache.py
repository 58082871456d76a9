"""Ready-to-send JSON of the ranked lists, reused until the analysis or a curation changes what they show.

``GET /v1/opportunities`` and ``GET /v1/themes`` answer the same bytes to every caller until a new analysis
run, a curation (rename, archive, merge, decision) or new weekly stats. Each request still waits for an
answer to one cheap question, :func:`data_version`, asked after the request reached its route, so a
change committed by another process (an analysis worker, a second API worker) before a request arrives
is always seen by it; only the building and serialising of the lists is saved.

Requests that arrive together share one asking of that question (:class:`~api.sharing.SharedCall`):
under load a cached list costs the event loop a few microseconds, not a round trip and a thread hop each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, Select, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.lru import LRU
from api.queries import latest_run_select
from api.sharing import SharedCall
from api.timing import record, timed
from models.db import session_scope
from models.tables import ANALYSIS_KINDS, AnalysisRun, Opportunity, Theme, ThemeStat

log = logging.getLogger(__name__)


@functools.cache
def _version_statement() -> Select[Any]:
    # Built once: composing eight subqueries per request costs more than running them.
    return select(
        latest_run_select().scalar_subquery(),
        select(func.max(AnalysisRun.id)).scalar_subquery(),
        select(func.count()).select_from(AnalysisRun)
        .where(AnalysisRun.status == "running", AnalysisRun.kind.in_(ANALYSIS_KINDS)).scalar_subquery(),
        select(func.count()).select_from(Theme).scalar_subquery(),
        select(func.max(Theme.updated_at)).scalar_subquery(),
        select(func.max(Opportunity.id)).scalar_subquery(),
        select(func.count()).select_from(ThemeStat).scalar_subquery(),
        select(func.max(ThemeStat.id)).scalar_subquery(),
    )


def data_version(db: Session | Connection) -> tuple[Any, ...] | None:
    """What the ranked lists depend on, in one round trip; None while an analysis is running.

    A running analysis rewrites themes and weekly stats before it scores, so nothing is cached then (a
    running sync or report changes neither), and every run (a new ``analysis_run`` row) changes the
    version. Curation bumps ``theme.updated_at``; rows written outside an analysis show in the counts and
    newest ids. Every part is an index lookup or a count of a small table, so asking costs about a
    millisecond.
    """
    row = db.execute(_version_statement()).one()
    if row[2]:
        return None
    return tuple(row)


class ListCache:
    """Serialised responses keyed by ``(what, params)``, all dropped when :func:`data_version` changes.

    Args:
        sessions: read sessions, for the version check and for building a list that is not cached.
        max_entries: distinct ``(what, params)`` kept for one data version (least recently used dropped).
        reap: closes runs whose process is gone (returns how many); asked at most every ``reap_every_s``
            while an analysis shows as running, so a killed one does not keep the cache off until the next
            analysis starts.
        reap_every_s: seconds between two calls of ``reap``.
    """

    def __init__(self, sessions: sessionmaker[Session], *, max_entries: int = 256,
                 reap: Callable[[], int] | None = None, reap_every_s: float = 60.0) -> None:
        self.sessions = sessions
        self.reap = reap
        self.reap_every_s = reap_every_s
        self._reaped_at = -math.inf
        self._version: tuple[Any, ...] | None = None
        self._entries: LRU[Hashable, bytes] = LRU(max_entries)
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self._lock = threading.Lock()
        self.version_check: SharedCall[None, tuple[Any, ...] | None] = SharedCall(self._current_version)
        self._building: dict[tuple[Any, Hashable], asyncio.Future[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def _current_version(self, _: None) -> tuple[Any, ...] | None:
        with self.sessions.kw["bind"].connect() as conn:  # a bare connection: cheaper than a Session
            version = data_version(conn)
        if version is None and self.reap is not None and time.monotonic() - self._reaped_at >= self.reap_every_s:
            self._reaped_at = time.monotonic()
            try:
                reaped = self.reap()
            except Exception:  # a failed clean-up must not fail the read; the next check tries again
                log.exception("closing runs whose process is gone failed")
                reaped = 0
            if reaped:
                with self.sessions.kw["bind"].connect() as conn:
                    version = data_version(conn)
        return version

    def _adapter(self, model: Any) -> TypeAdapter[Any]:
        adapter = self._adapters.get(model)
        if adapter is None:
            adapter = self._adapters[model] = TypeAdapter(list[model])
        return adapter

    async def response(self, key: Hashable, build: Callable[[Session], Sequence[Any]], model: type[Any]) -> Response:
        """The JSON response of ``build(session)`` (a list of ``model``), from the cache when the data is unchanged.

        Called from the event loop; the version check and any building run in the threadpool.
        """
        started = time.perf_counter()
        version = await self.version_check(None)
        record("version", (time.perf_counter() - started) * 1000)
        with self._lock:
            cached = self._entries.get(key) if version is not None and version == self._version else None
            if cached is not None:
                self.hits += 1
                return Response(cached, media_type="application/json")
        body = await self._shared_build(version, key, build, model)
        with self._lock:
            self.misses += 1
            if version is None:
                return Response(body, media_type="application/json")
            if version != self._version:
                self._version = version
                self._entries.clear()
            self._entries.put(key, body)
        return Response(body, media_type="application/json")

    async def _shared_build(self, version: tuple[Any, ...] | None, key: Hashable,
                            build: Callable[[Session], Sequence[Any]], model: type[Any]) -> bytes:
        """One build per ``(version, key)`` at a time: requests that miss together wait for the same build."""
        if version is None:
            return await run_in_threadpool(self._build, build, model)
        loop = asyncio.get_running_loop()
        task = self._building.get((version, key))
        if task is None or task.get_loop() is not loop:
            task = asyncio.ensure_future(run_in_threadpool(self._build, build, model))
            self._building[(version, key)] = task
            task.add_done_callback(lambda _: self._building.pop((version, key), None))
        return await asyncio.shield(task)

    def _build(self, build: Callable[[Session], Sequence[Any]], model: type[Any]) -> bytes:
        with timed("build"), session_scope(self.sessions) as session:
            return self._adapter(model).dump_json(list(build(session)), by_alias=True)
