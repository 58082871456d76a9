"""Server-rendered web pages: log in with an API key, the PM dashboard, themes, search, reports, and the
sales reps' field-note form. Jinja2 templates, inline SVG charts, no JavaScript build step."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlparse

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import select

from api import curation
from api.arrivals import embed_after_response
from api.deps import IdPath, Principal, SessionDep, SettingsDep, TransactionalRoute, principal_for_id, principal_for_key
from api.errors import ApiError
from api.queries import (
    EMERGING_TRENDS,
    FeedbackFilters,
    feedback_outs,
    get_feedback,
    list_feedback,
    list_opportunities,
    list_themes,
    theme_detail,
)
from api.routes.feedback import store_field_note
from api.schemas import MAX_ID, FieldNoteIn, WeekPoint
from api.security import csrf_matches, new_csrf_token
from models.db import session_scope
from models.tables import Account, Report

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PERIODS = (4, 12, 26, 52)

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageForbidden(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def require_page_role(*roles: str) -> Callable[..., Principal]:
    """Pages authenticate by the session cookie; admin is always admitted."""
    allowed = frozenset(roles) | {"admin"}

    def dependency(request: Request) -> Principal:
        # A short transaction of its own (see api.deps.get_principal for why).
        with session_scope(request.app.state.sessions) as session:
            principal = principal_for_id(session, request.session.get("key_id"))
        if principal is None:
            request.session.clear()
            raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if principal.role not in allowed:
            raise PageForbidden(f"this page is for {', '.join(sorted(allowed))}; you are signed in as "
                                f"{principal.role}")
        return principal

    dependency.allowed_roles = allowed  # type: ignore[attr-defined]
    return dependency


PmPage = Annotated[Principal, Depends(require_page_role("pm"))]
NotePage = Annotated[Principal, Depends(require_page_role("sales", "pm"))]
AnyPage = Annotated[Principal, Depends(require_page_role("sales", "pm", "ingest"))]


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = new_csrf_token()
        request.session["csrf"] = token
    return str(token)


def _check_csrf(request: Request, token: str) -> None:
    if not csrf_matches(request.session.get("csrf"), token):
        raise PageForbidden("the form expired or did not come from this site; reload the page and try again")


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    base = {"user": None, "csrf": _csrf(request), "path": request.url.path}
    return TEMPLATES.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def _safe_next(value: str | None) -> str | None:
    if not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme or parsed.netloc or not value.startswith("/") or value.startswith("//"):
        return None
    return value


def _home(principal: Principal) -> str:
    return "/notes/new" if principal.role == "sales" else "/"


# -- charts ---------------------------------------------------------------------------------------------
def sparkline(values: Sequence[float], width: int = 120, height: int = 28) -> Markup:
    """A polyline of ``values`` scaled into a small SVG."""
    if not values:
        return Markup("")
    top = max(max(values), 1)
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values))
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="weekly mentions: {", ".join(str(int(v)) for v in values)}">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def weekly_chart(series: Sequence[WeekPoint], width: int = 640, height: int = 200) -> Markup:
    """Bars of weekly mentions with a line of distinct accounts, labelled axes."""
    if not series:
        return Markup('<p class="muted">No weekly figures yet.</p>')
    pad_l, pad_b, pad_t = 36, 28, 10
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(max(p.items for p in series), max(p.accounts for p in series), 1)
    slot = plot_w / len(series)
    parts = [f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="weekly mentions and accounts">']
    for frac in (0, 0.5, 1):
        y = pad_t + plot_h * (1 - frac)
        parts.append(f'<line x1="{pad_l}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end">{round(top * frac)}</text>')
    line: list[str] = []
    for i, p in enumerate(series):
        x = pad_l + i * slot
        h = plot_h * p.items / top
        parts.append(f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{pad_t + plot_h - h:.1f}" '
                     f'width="{slot * 0.7:.1f}" height="{h:.1f}"><title>{p.week}: {p.items} mentions, '
                     f'{p.accounts} accounts</title></rect>')
        line.append(f"{x + slot / 2:.1f},{pad_t + plot_h * (1 - p.accounts / top):.1f}")
        if i % max(1, len(series) // 6) == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">{p.week[5:]}</text>')
    parts.append(f'<polyline class="accounts" fill="none" points="{" ".join(line)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


TEMPLATES.env.globals.update(sparkline=sparkline, weekly_chart=weekly_chart)
TEMPLATES.env.filters["money"] = lambda v: f"${v:,.0f}" if v is not None else "—"


# -- session ----------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    return _render(request, "login.html", {"user": None, "next": _safe_next(next) or "", "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, api_key: Annotated[str, Form(max_length=200)] = "",
          csrf: Annotated[str, Form(max_length=200)] = "",
          next: Annotated[str, Form(max_length=500)] = "") -> Response:
    _check_csrf(request, csrf)
    client = request.client.host if request.client else "unknown"
    limiter = request.app.state.login_limiter
    if not limiter.allow(f"login:{client}"):
        return _render(request, "login.html", {"user": None, "next": next,
                                                "error": "Too many attempts; wait a minute and try again."},
                       status_code=429)
    principal = principal_for_key(session, api_key.strip()) if api_key.strip() else None
    if principal is None:
        return _render(request, "login.html", {"user": None, "next": next, "error": "That key is not valid."},
                       status_code=401)
    request.session.clear()  # a fresh session and CSRF token on every login (no fixation)
    request.session.update({"key_id": principal.key_id, "csrf": new_csrf_token()})
    return RedirectResponse(_safe_next(next) or _home(principal), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    _check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# -- PM pages ------------------------------------------------------------------------------------------------
def _segments(session: Any) -> list[str]:
    names = session.scalars(select(Account.segment).where(Account.segment.is_not(None)).distinct()).all()
    return ["all", *sorted(str(n) for n in names)]


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep, user: AnyPage,
              segment: Annotated[str, Query(max_length=32)] = "all",
              weeks: Annotated[int, Query(ge=1, le=104)] = 12) -> Response:
    if user.role not in ("pm", "admin"):
        return RedirectResponse(_home(user) if user.role == "sales" else "/reports", status_code=303)
    segment = segment or "all"
    return _render(request, "dashboard.html", {
        "user": user, "segment": segment, "weeks": weeks, "periods": PERIODS, "segments": _segments(session),
        "opportunities": list_opportunities(session, segment=segment, limit=10, weeks=weeks),
        "emerging": list_themes(session, segment=segment, trend=EMERGING_TRENDS, sort="momentum", limit=10,
                                weeks=weeks),
    })


@router.get("/themes/{theme_id}", response_class=HTMLResponse)
def theme_page(theme_id: IdPath, request: Request, session: SessionDep, user: NotePage,
               segment: Annotated[str, Query(max_length=32)] = "all", error: str | None = None) -> Response:
    try:
        theme = theme_detail(session, theme_id, segment=segment or "all")
    except ApiError as exc:
        return _render(request, "error.html", {"user": user, "message": exc.detail}, status_code=exc.status)
    others = [t for t in list_themes(session, limit=500, sort="size") if t.id != theme_id]
    return _render(request, "theme.html", {"user": user, "theme": theme, "others": others, "error": error,
                                           "can_curate": user.role in ("pm", "admin")})


@router.post("/themes/{theme_id}/rename")
def rename(theme_id: IdPath, request: Request, session: SessionDep, user: PmPage,
           label: Annotated[str, Form(max_length=300)] = "",
           csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    _check_csrf(request, csrf)
    try:
        curation.rename_theme(session, theme_id, label, by=user.name)
    except ApiError as exc:
        return RedirectResponse(f"/themes/{theme_id}?error={quote(exc.detail)}", status_code=303)
    return RedirectResponse(f"/themes/{theme_id}", status_code=303)


@router.post("/themes/{theme_id}/merge")
def merge(theme_id: IdPath, request: Request, session: SessionDep, user: PmPage,
          into: Annotated[str, Form(max_length=20)] = "", csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    _check_csrf(request, csrf)
    if not into.isdigit() or not 1 <= int(into) <= MAX_ID:
        return RedirectResponse(f"/themes/{theme_id}?error={quote('choose a theme to merge into')}", status_code=303)
    try:
        target = curation.merge_themes(session, theme_id, int(into), by=user.name)
    except ApiError as exc:
        return RedirectResponse(f"/themes/{theme_id}?error={quote(exc.detail)}", status_code=303)
    return RedirectResponse(f"/themes/{target.id}", status_code=303)


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, session: SessionDep, user: PmPage,
                q: Annotated[str, Query(max_length=1000)] = "") -> Response:
    hits = []
    if q.strip():
        embedder = request.app.state.query_embedder
        vector = embedder.encode_one(q.strip())
        hits = request.app.state.vector_index.search(session, embedder.name, vector, FeedbackFilters(), limit=20)
    return _render(request, "search.html", {"user": user, "q": q, "hits": hits})


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, session: SessionDep, user: AnyPage) -> Response:
    if user.role not in ("pm", "admin"):
        raise PageForbidden("reports are for PMs and admins")
    reports = session.scalars(select(Report).order_by(Report.week.desc())).all()
    return _render(request, "reports.html", {"user": user, "reports": [
        {"id": r.id, "week": r.week, "created_at": r.created_at} for r in reports]})


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(report_id: IdPath, request: Request, session: SessionDep, user: PmPage) -> Response:
    report = session.get(Report, report_id)
    if report is None:
        return _render(request, "error.html", {"user": user, "message": f"report {report_id} does not exist"},
                       status_code=404)
    return _render(request, "report.html", {"user": user, "report": {"id": report.id, "week": report.week,
                                                                     "markdown": report.markdown}})


@router.get("/reports/{report_id}/html", response_class=HTMLResponse)
def report_html(report_id: IdPath, session: SessionDep, _: PmPage) -> Response:
    report = session.get(Report, report_id)
    if report is None:
        return HTMLResponse("report not found", status_code=404)
    # Shown in a sandboxed iframe; the CSP stops any script the report might carry.
    return HTMLResponse(report.html, headers={"Content-Security-Policy": "script-src 'none'; sandbox"})


# -- sales: field notes --------------------------------------------------------------------------------------
def _note_form(request: Request, session: Any, user: Principal, *, values: dict[str, Any] | None = None,
               errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    accounts = session.execute(select(Account.name).order_by(Account.arr.desc(), Account.name).limit(50)).scalars()
    mine = list_feedback(session, FeedbackFilters(submitted_by=user.name, kind="field_note"), cursor=None, limit=5)
    return _render(request, "note_form.html", {
        "user": user, "values": values or {}, "errors": errors or {}, "accounts": list(accounts),
        "idempotency_key": (values or {}).get("idempotency_key") or uuid.uuid4().hex, "recent": mine.items,
    }, status_code=status_code)


@router.get("/notes/new", response_class=HTMLResponse)
def new_note(request: Request, session: SessionDep, user: NotePage) -> Response:
    return _note_form(request, session, user)


@router.post("/notes")
def submit_note(
    request: Request, background: BackgroundTasks, session: SessionDep, settings: SettingsDep, user: NotePage,
    text: Annotated[str, Form(max_length=200_000)] = "", account_name: Annotated[str, Form(max_length=1000)] = "",
    deal_stage: Annotated[str, Form(max_length=200)] = "", deal_amount: Annotated[str, Form(max_length=50)] = "",
    tags: Annotated[str, Form(max_length=2000)] = "", idempotency_key: Annotated[str, Form(max_length=150)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _check_csrf(request, csrf)
    values = {"text": text, "account_name": account_name, "deal_stage": deal_stage, "deal_amount": deal_amount,
              "tags": tags, "idempotency_key": idempotency_key}
    errors: dict[str, str] = {}
    status_code = 422
    try:
        note = FieldNoteIn(
            text=text, account_name=account_name or None, account_domain=None, deal_stage=deal_stage or None,
            deal_amount=deal_amount.replace(",", "").replace("$", "").strip() or None,  # type: ignore[arg-type]
            tags=[t for t in (s.strip() for s in tags.split(",")) if t],
        )
        feedback_id = store_field_note(session, settings, user, note, idempotency_key=idempotency_key or None,
                                       limiter_state=request.app.state)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err.get("loc") else "text"
            errors.setdefault(field, str(err["msg"]).removeprefix("Value error, "))
    except ApiError as exc:
        errors[(exc.field or "body.text").rsplit(".", 1)[-1]] = exc.detail
        status_code = exc.status  # 429 when rate-limited, so a client can tell waiting from fixing the note
    if errors:
        return _note_form(request, session, user, values=values, errors=errors, status_code=status_code)
    embed_after_response(request, background, [feedback_id])
    return RedirectResponse(f"/notes/{feedback_id}", status_code=303)


@router.get("/notes/{feedback_id}", response_class=HTMLResponse)
def note_page(feedback_id: IdPath, request: Request, session: SessionDep, user: NotePage) -> Response:
    try:
        item = get_feedback(session, feedback_id)
    except ApiError as exc:
        return _render(request, "error.html", {"user": user, "message": exc.detail}, status_code=404)
    if user.role == "sales" and item.submitted_by != user.name:
        return _render(request, "error.html", {"user": user, "message": f"feedback {feedback_id} does not exist"},
                       status_code=404)
    theme = curation.current_theme_of(session, feedback_id)
    return _render(request, "note_done.html", {"user": user, "note": feedback_outs(session, [item])[0],
                                               "theme": theme and {"id": theme.id, "label": theme.display_label}})


def install(app: FastAPI) -> None:
    """Register the pages' redirects and error pages on ``app``."""

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> Response:
        return TEMPLATES.TemplateResponse(request, "error.html", {"user": None, "csrf": "", "message": exc.message},
                                          status_code=403)
