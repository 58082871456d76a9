"""Runs of syncs, analyses and reports: list them and start an analysis."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.errors import Conflict, NotFound
from api.jobs import queue_run
from api.schemas import RunIn, RunOut
from models.tables import AnalysisRun
from pipeline.runs import OPEN_STATUSES, analysis_in_progress, describe_run

router = APIRouter(route_class=TransactionalRoute, prefix="/runs", tags=["runs"])

PmDep = Annotated[Principal, Depends(require_role("pm"))]


def run_out(run: AnalysisRun) -> RunOut:
    return RunOut(id=run.id, kind=run.kind, status=run.status, started_at=run.started_at,
                  finished_at=run.finished_at, stats=run.stats or {}, error=run.error)


def start_run(request: Request, session: Session, kind: str, params: dict[str, Any]) -> RunOut:
    """Record a queued run, commit it (the job's thread must see it), then hand it to the job runner."""
    run = queue_run(session, kind, params)
    session.commit()
    request.app.state.job_runner.submit(kind, run_id=run.id, **params)
    session.refresh(run)
    return run_out(run)


@router.get("", response_model=list[RunOut])
def list_runs(session: SessionDep, _: PmDep,
              kind: Literal["full", "incremental", "sync", "report"] | None = None,
              status: Literal["queued", "running", "succeeded", "failed", "abandoned"] | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RunOut]:
    stmt = select(AnalysisRun)
    if kind:
        stmt = stmt.where(AnalysisRun.kind == kind)
    if status:
        stmt = stmt.where(AnalysisRun.status == status)
    return [run_out(r) for r in session.scalars(stmt.order_by(AnalysisRun.id.desc()).limit(limit))]


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: IdPath, session: SessionDep, _: PmDep) -> RunOut:
    run = session.get(AnalysisRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run_out(run)


@router.post("", status_code=202, response_model=RunOut, summary="Start an analysis in the background",
             responses={409: {"description": "Another analysis is running; one runs at a time."}})
def start_analysis(body: RunIn, request: Request, session: SessionDep, principal: PmDep) -> RunOut:
    # One analysis runs at a time, and a queued one is about to; a killed one is closed when the next starts.
    other = analysis_in_progress(session, OPEN_STATUSES)
    if other is not None:
        raise Conflict(f"{describe_run(other)}; one analysis runs at a time, so start this one once it has "
                       f"ended (GET /v1/runs/{other.id})")
    return start_run(request, session, body.kind, {"requested_by": principal.name})
