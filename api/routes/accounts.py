"""Accounts: the autocomplete behind the field-note form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, or_, select

from api.deps import Principal, SessionDep, TransactionalRoute, require_role
from api.queries import account_out
from api.schemas import AccountOut
from models.tables import Account

router = APIRouter(route_class=TransactionalRoute, prefix="/accounts", tags=["accounts"])

ReaderDep = Annotated[Principal, Depends(require_role("pm", "sales"))]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@router.get("", response_model=list[AccountOut])
def find_accounts(session: SessionDep, _: ReaderDep,
                  q: Annotated[str, Query(max_length=100, description="Start of a name or domain.")] = "",
                  limit: Annotated[int, Query(ge=1, le=50)] = 10) -> list[AccountOut]:
    stmt = select(Account)
    text = q.strip().lower()
    if text:
        pattern = f"%{_like_escape(text)}%"
        stmt = stmt.where(or_(func.lower(Account.name).like(pattern, escape="\\"),
                              Account.domain.like(pattern, escape="\\")))
    accounts = session.scalars(stmt.order_by(Account.arr.desc(), Account.name).limit(limit)).all()
    return [a for a in (account_out(x) for x in accounts) if a is not None]
