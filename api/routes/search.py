"""Semantic search over feedback.

The route is ``async`` only to wait its turn; nothing blocking runs in the event loop. Ranking and reading the
hits run in a worker thread, at most ``search_concurrency`` searches at once (``app.state.search_slots``,
handed out in arrival order, see :mod:`api.fifo`): twenty searches on two cores finish no sooner in twenty
threads than in a few, but twenty threads trade the interpreter lock back and forth and hold twenty database
connections while they do. A search whose query vector is cached waits its turn without a thread
(``app.state.search_limiter``, as many as there are slots). One whose query is new has it encoded from a
worker thread, batched with the queries that arrive with it (by the model's own process, see
:mod:`api.query_process`, or in this one, see :class:`~api.query_embedding.QueryEmbedder`), and goes on to
search in that same thread.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import IdQuery, Principal, TransactionalRoute, require_role
from api.errors import InvalidInput
from api.queries import FeedbackFilters
from api.schemas import FeedbackKind, SearchOut
from api.timing import record, timed

router = APIRouter(route_class=TransactionalRoute, prefix="/search", tags=["search"])

ReaderDep = Annotated[Principal, Depends(require_role("pm"))]


@router.get("", response_model=SearchOut)
async def search(
    request: Request, _: ReaderDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="What to look for, in plain words.")],
    theme: IdQuery = None,
    account: IdQuery = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    kind: FeedbackKind | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    if not q.strip():
        raise InvalidInput("q must not be blank", field="query.q")
    filters = FeedbackFilters(theme=theme, account=account, source=source, kind=kind, since=since, until=until)
    filters.time_range()  # a bad bound is the caller's error (422), found before queueing
    embedder = request.app.state.query_embedder
    query = embedder.cached(q.strip())
    if query is None:
        # One thread encodes (batched with the queries encoded at the same time) and then searches: a second
        # hop back through the event loop would cost as much interpreter time as ranking the query.
        body = await run_in_threadpool(_encode_and_search, request, q, filters, limit)
    else:
        body = await anyio.to_thread.run_sync(_search, request, q, query, filters, limit, time.perf_counter(),
                                              limiter=request.app.state.search_limiter)
    return Response(body, media_type="application/json")


def _encode_and_search(request: Request, q: str, filters: FeedbackFilters, limit: int) -> bytes:
    with timed("embed"):
        query = request.app.state.query_embedder.encode_one(q.strip())
    return _search(request, q, query, filters, limit, time.perf_counter())


def _search(request: Request, q: str, query: np.ndarray, filters: FeedbackFilters, limit: int,
            queued: float) -> bytes:
    """The search itself, in a worker thread, once one of the search slots is free.

    Returns: the JSON of a :class:`SearchOut`.
    """
    with request.app.state.search_slots:
        record("queue", (time.perf_counter() - queued) * 1000)
        embedder = request.app.state.query_embedder
        with request.app.state.read_engine.connect() as conn:
            hits = request.app.state.vector_index.search(conn, embedder.name, query, filters, limit=limit)
    with timed("serialize"):
        # Serialised here, once: returning the model would have FastAPI validate every hit again first.
        return SearchOut(query=q, model=embedder.name, hits=hits).model_dump_json().encode()
