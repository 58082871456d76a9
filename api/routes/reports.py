"""Weekly reports: list, read as Markdown, HTML or JSON, and ask for a new one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.errors import NotFound
from api.schemas import ReportIn, ReportOut, ReportSummary, RunOut
from models.tables import Report

router = APIRouter(route_class=TransactionalRoute, prefix="/reports", tags=["reports"])

ReaderDep = Annotated[Principal, Depends(require_role("pm"))]


def report_summary(report: Report) -> ReportSummary:
    return ReportSummary(id=report.id, week=report.week, created_at=report.created_at, path=report.path,
                         delivery=report.delivery or {})


@router.get("", response_model=list[ReportSummary])
def list_reports(session: SessionDep, _: ReaderDep) -> list[ReportSummary]:
    return [report_summary(r) for r in session.scalars(select(Report).order_by(Report.week.desc())).all()]


@router.get(
    "/{report_id}",
    response_model=ReportOut,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}},
    summary="One report; Markdown by default, HTML or JSON by Accept",
)
def get_report(report_id: IdPath, request: Request, session: SessionDep, _: ReaderDep) -> Response:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound(f"report {report_id} does not exist")
    accept = request.headers.get("accept", "").lower()
    if "text/html" in accept:
        return HTMLResponse(report.html)
    if "application/json" in accept:
        body = ReportOut(**report_summary(report).model_dump(), markdown=report.markdown, html=report.html)
        return JSONResponse(body.model_dump(mode="json"))
    return PlainTextResponse(report.markdown, media_type="text/markdown; charset=utf-8")


@router.post("", status_code=202, response_model=RunOut, summary="Write a report in the background")
def create_report(body: ReportIn, request: Request, session: SessionDep, principal: ReaderDep) -> RunOut:
    from api.routes.runs import start_run

    params = {"week": body.week, "deliver": body.deliver, "requested_by": principal.name}
    return start_run(request, session, "report", params)



