"""Themes: ranked lists, one theme's evidence, and curation (rename, archive, merge)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api import curation
from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.queries import list_themes, theme_detail
from api.schemas import MergeIn, ThemeDetail, ThemePatch, ThemeSummary

router = APIRouter(route_class=TransactionalRoute, prefix="/themes", tags=["themes"])

ReaderDep = Annotated[Principal, Depends(require_role("pm", "sales"))]
CuratorDep = Annotated[Principal, Depends(require_role("pm"))]
Segment = Annotated[str, Query(min_length=1, max_length=32, description="Customer segment; `all` for everyone.")]


@router.get("", response_model=list[ThemeSummary])
async def get_themes(
    request: Request, _: ReaderDep,
    status: Literal["active", "archived", "merged", "any"] = "active",
    segment: Segment = "all",
    sort: Literal["score", "momentum", "size"] = "score",
    trend: Annotated[list[Literal["new", "emerging", "growing", "stable", "fading", "dormant"]] | None,
                     Query()] = None,
    weeks: Annotated[int, Query(ge=1, le=104, description="Weeks in each theme's series.")] = 12,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Ranked themes (served from the per-analysis cache while nothing changed).

    Async: a cached answer is bytes in memory; the cache runs its database work in the threadpool.
    """
    key = ("themes", status, segment, sort, tuple(sorted(set(trend or ()))), weeks, limit)
    return await request.app.state.list_cache.response(
        key, lambda session: list_themes(session, status=None if status == "any" else status, segment=segment,
                                         sort=sort, trend=trend, limit=limit, weeks=weeks), ThemeSummary)


@router.get("/{theme_id}", response_model=ThemeDetail)
def get_theme(theme_id: IdPath, session: SessionDep, _: ReaderDep, segment: Segment = "all",
              weeks: Annotated[int, Query(ge=1, le=104)] = 26) -> ThemeDetail:
    return theme_detail(session, theme_id, segment=segment, weeks=weeks)


@router.patch("/{theme_id}", response_model=ThemeDetail, summary="Rename or archive a theme")
def patch_theme(theme_id: IdPath, body: ThemePatch, session: SessionDep, principal: CuratorDep) -> ThemeDetail:
    if body.label is None and body.archived is None:
        from api.errors import InvalidInput

        raise InvalidInput("send `label` to rename or `archived` to archive", field="body")
    if body.label is not None:
        curation.rename_theme(session, theme_id, body.label, by=principal.name)
    if body.archived is not None:
        curation.set_archived(session, theme_id, body.archived, by=principal.name)
    return theme_detail(session, theme_id)


@router.post("/{theme_id}/merge", response_model=ThemeDetail, summary="Merge this theme into another")
def merge_theme(theme_id: IdPath, body: MergeIn, session: SessionDep, principal: CuratorDep) -> ThemeDetail:
    target = curation.merge_themes(session, theme_id, body.into, by=principal.name)
    return theme_detail(session, target.id)
