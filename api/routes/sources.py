"""Sources: list (PMs and admins), configure (admins) and sync in the background (PMs and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.errors import Conflict, NotFound
from api.routes.runs import start_run
from api.schemas import RunOut, SourceIn, SourceOut
from models.tables import Source

router = APIRouter(route_class=TransactionalRoute, prefix="/sources", tags=["sources"])

PmDep = Annotated[Principal, Depends(require_role("pm"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]


def source_out(source: Source) -> SourceOut:
    return SourceOut(id=source.id, name=source.name, kind=source.kind, config=source.config or {},
                     enabled=source.enabled, created_at=source.created_at, last_sync_at=source.last_sync_at,
                     last_sync_status=source.last_sync_status, last_sync_error=source.last_sync_error)


@router.get("", response_model=list[SourceOut])
def list_sources(session: SessionDep, _: PmDep) -> list[SourceOut]:
    return [source_out(s) for s in session.scalars(select(Source).order_by(Source.id))]


@router.post("", status_code=201, response_model=SourceOut)
def create_source(body: SourceIn, session: SessionDep, _: AdminDep) -> SourceOut:
    if session.scalar(select(Source.id).where(Source.name == body.name)) is not None:
        raise Conflict(f"a source named {body.name!r} exists", field="body.name")
    source = Source(name=body.name, kind=body.kind, config=body.config, enabled=body.enabled)
    session.add(source)
    session.flush()
    return source_out(source)


@router.post("/{source_id}/sync", status_code=202, response_model=RunOut, summary="Sync a source in the background")
def sync_source(source_id: IdPath, request: Request, session: SessionDep, principal: PmDep) -> RunOut:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"source {source_id} does not exist")
    if not source.enabled:
        raise Conflict(f"source {source.name!r} is disabled")
    return start_run(request, session, "sync", {"source_id": source.id, "source": source.name,
                                                "requested_by": principal.name})
