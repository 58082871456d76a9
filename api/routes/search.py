"""Semantic search over feedback. A plain ``def`` route: FastAPI runs it in its threadpool, so the
query's model inference never blocks the event loop."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.deps import IdQuery, Principal, SessionDep, TransactionalRoute, require_role
from api.errors import InvalidInput
from api.queries import FeedbackFilters
from api.schemas import FeedbackKind, SearchOut

router = APIRouter(route_class=TransactionalRoute, prefix="/search", tags=["search"])

ReaderDep = Annotated[Principal, Depends(require_role("pm"))]


@router.get("", response_model=SearchOut)
def search(
    request: Request, session: SessionDep, _: ReaderDep,
    q: Annotated[str, Query(min_length=1, max_length=1000, description="What to look for, in plain words.")],
    theme: IdQuery = None,
    account: IdQuery = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    kind: FeedbackKind | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchOut:
    if not q.strip():
        raise InvalidInput("q must not be blank", field="query.q")
    embedder = request.app.state.embedder
    query = embedder.encode([q.strip()])[0]
    filters = FeedbackFilters(theme=theme, account=account, source=source, kind=kind, since=since, until=until)
    hits = request.app.state.vector_index.search(session, embedder.name, query, filters, limit=limit)
    return SearchOut(query=q, model=embedder.name, hits=hits)
