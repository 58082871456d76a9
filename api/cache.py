"""Ready-to-send JSON of the ranked lists, reused until the analysis or a curation changes what they show.

``GET /v1/opportunities`` and ``GET /v1/themes`` answer the same bytes to every caller until a new analysis
run, a curation (rename, archive, merge, decision) or new weekly stats. Every request still asks the
database one cheap question, :func:`data_version`, so a change made by another process (an analysis
worker, a second API worker) is seen on the very next request; only the building and serialising of the
lists is saved.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from api.queries import latest_run_select
from models.tables import AnalysisRun, Opportunity, Theme, ThemeStat


@functools.cache
def _version_statement() -> Select[Any]:
    # Built once: composing eight subqueries per request costs more than running them.
    return select(
        latest_run_select().scalar_subquery(),
        select(func.max(AnalysisRun.id)).scalar_subquery(),
        select(func.count()).select_from(AnalysisRun).where(AnalysisRun.status == "running").scalar_subquery(),
        select(func.count()).select_from(Theme).scalar_subquery(),
        select(func.max(Theme.updated_at)).scalar_subquery(),
        select(func.max(Opportunity.id)).scalar_subquery(),
        select(func.count()).select_from(ThemeStat).scalar_subquery(),
        select(func.max(ThemeStat.id)).scalar_subquery(),
    )


def data_version(session: Session) -> tuple[Any, ...] | None:
    """What the ranked lists depend on, in one round trip; None while an analysis is running.

    A running analysis rewrites themes and weekly stats before it scores, so nothing is cached then, and
    every run (a new ``analysis_run`` row) changes the version. Curation bumps ``theme.updated_at``; rows
    written outside an analysis show in the counts and newest ids. Every part is an index lookup or a
    count of a small table, so asking costs about a millisecond.
    """
    row = session.execute(_version_statement()).one()
    if row[2]:
        return None
    return tuple(row)


class ListCache:
    """Serialised responses keyed by ``(what, params)``, all dropped when :func:`data_version` changes.

    Args:
        max_entries: distinct ``(what, params)`` kept for one data version (least recently used dropped).
    """

    def __init__(self, *, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._version: tuple[Any, ...] | None = None
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _adapter(self, model: Any) -> TypeAdapter[Any]:
        adapter = self._adapters.get(model)
        if adapter is None:
            adapter = self._adapters[model] = TypeAdapter(list[model])
        return adapter

    def response(self, session: Session, key: Hashable, build: Callable[[], Sequence[Any]],
                 model: type[Any]) -> Response:
        """The JSON response of ``build()`` (a list of ``model``), from the cache when the data is unchanged."""
        version = data_version(session)
        with self._lock:
            if version is not None and version == self._version and key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return Response(self._entries[key], media_type="application/json")
        body = self._adapter(model).dump_json(list(build()), by_alias=True)
        with self._lock:
            self.misses += 1
            if version is None:
                return Response(body, media_type="application/json")
            if version != self._version:
                self._version = version
                self._entries.clear()
            self._entries[key] = body
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return Response(body, media_type="application/json")
