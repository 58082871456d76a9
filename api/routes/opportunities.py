"""Opportunities: the latest analysis's ranking, one opportunity's evidence, and PM decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api import curation
from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.queries import list_opportunities as query_opportunities
from api.queries import opportunity_detail
from api.schemas import OpportunityDetail, OpportunityOut, OpportunityPatch

router = APIRouter(route_class=TransactionalRoute, prefix="/opportunities", tags=["opportunities"])

ReaderDep = Annotated[Principal, Depends(require_role("pm", "sales"))]
CuratorDep = Annotated[Principal, Depends(require_role("pm"))]
Segment = Annotated[str, Query(min_length=1, max_length=32, description="Customer segment; `all` for everyone.")]


@router.get("", response_model=list[OpportunityOut])
async def list_opportunities(request: Request, _: ReaderDep, segment: Segment = "all",
                             limit: Annotated[int, Query(ge=1, le=500)] = 20) -> Response:
    """The latest analysis's ranking (served from the per-analysis cache while nothing changed).

    Async: a cached answer is bytes in memory; the cache runs its database work in the threadpool.
    """
    return await request.app.state.list_cache.response(
        ("opportunities", segment, limit),
        lambda session: query_opportunities(session, segment=segment, limit=limit), OpportunityOut)


@router.get("/{theme_id}", response_model=OpportunityDetail)
def get_opportunity(theme_id: IdPath, session: SessionDep, _: ReaderDep, segment: Segment = "all") -> OpportunityDetail:
    return opportunity_detail(session, theme_id, segment=segment)


@router.patch("/{theme_id}", response_model=OpportunityDetail, summary="Record a decision")
def decide(theme_id: IdPath, body: OpportunityPatch, session: SessionDep, principal: CuratorDep) -> OpportunityDetail:
    curation.decide_opportunity(session, theme_id, body.decision, body.note, by=principal.name)
    return opportunity_detail(session, theme_id)
