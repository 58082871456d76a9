"""API keys (admins only): create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import IdPath, Principal, SessionDep, TransactionalRoute, require_role
from api.errors import NotFound
from api.schemas import KeyIn, KeyOut, NewKeyOut
from api.security import generate_key
from models.tables import ApiKey, utcnow

router = APIRouter(route_class=TransactionalRoute, prefix="/keys", tags=["keys"])

AdminDep = Annotated[Principal, Depends(require_role("admin"))]


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(id=key.id, name=key.name, role=key.role, prefix=key.prefix, created_at=key.created_at,
                  last_used_at=key.last_used_at, revoked_at=key.revoked_at)


def create_key(session: Session, *, name: str, role: str) -> tuple[ApiKey, str]:
    """Store a new key's hash; returns the row and the secret (never stored)."""
    new = generate_key()
    key = ApiKey(name=name, role=role, prefix=new.prefix, key_hash=new.key_hash)
    session.add(key)
    session.flush()
    return key, new.secret


def revoke_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} does not exist")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


@router.get("", response_model=list[KeyOut])
def list_keys(session: SessionDep, _: AdminDep) -> list[KeyOut]:
    return [key_out(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]


@router.post("", status_code=201, response_model=NewKeyOut)
def post_key(body: KeyIn, session: SessionDep, _: AdminDep) -> NewKeyOut:
    key, secret = create_key(session, name=body.name, role=body.role)
    return NewKeyOut(**key_out(key).model_dump(), key=secret)


@router.delete("/{key_id}", response_model=KeyOut)
def delete_key(key_id: IdPath, session: SessionDep, _: AdminDep) -> KeyOut:
    return key_out(revoke_key(session, key_id))
