"""`groundswell keys`: create, list and revoke API keys."""

from __future__ import annotations

import typer
from sqlalchemy import select

from api.cli_common import console, fail, print_json, runtime, summary_table
from api.errors import NotFound
from api.routes.keys import create_key, key_out, revoke_key
from api.security import ROLES
from models.db import session_scope
from models.tables import ApiKey

keys_app = typer.Typer(help="API keys (stored hashed; each has a role: admin, pm, sales or ingest).",
                       no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    role: str = typer.Option(..., "--role", "-r", help=f"One of {', '.join(ROLES)}."),
    name: str = typer.Option(..., "--name", "-n", help="Who or what uses the key, e.g. jane@acme.com."),
) -> None:
    """Create a key and print it once, as the last line of output."""
    if role not in ROLES:
        fail(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    name = name.strip()
    if not name or len(name) > 100:
        fail("--name must have 1 to 100 characters")
    rt = runtime(ctx)
    with session_scope(rt.sessions) as session:
        key, secret = create_key(session, name=name, role=role)
        key_id = key.id
    typer.echo(f"created key {key_id} ({role}) for {name}; store it now, it is not shown again:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (never their secrets)."""
    rt = runtime(ctx)
    with session_scope(rt.sessions) as session:
        rows = [key_out(k).model_dump(mode="json") for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]
    if as_json:
        print_json(rows)
        return
    table_rows = [{"id": r["id"], "name": r["name"], "role": r["role"], "prefix": r["prefix"],
                   "created": r["created_at"][:19], "last used": (r["last_used_at"] or "")[:19],
                   "revoked": (r["revoked_at"] or "")[:19]} for r in rows]
    console.print(summary_table("API keys", table_rows) if table_rows else "no API keys")


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: int = typer.Argument(..., help="Id shown by `keys list`.")) -> None:
    """Revoke a key; requests with it get 401 from then on."""
    rt = runtime(ctx)
    try:
        with session_scope(rt.sessions) as session:
            key = revoke_key(session, key_id)
            name = key.name
    except NotFound as exc:
        fail(str(exc))
    console.print(f"revoked key {key_id} ({name})")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
