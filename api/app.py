"""The FastAPI application, built by :func:`create_app` from explicit settings."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from models.db import engine_from_settings, make_session_factory
from models.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine_from_settings(settings)
    sessions = make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        engine.dispose()

    app = FastAPI(title="Groundswell", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready() -> Any:
        """The database answers and the embedding model can be found."""
        checks: dict[str, str] = {}
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            from pathlib import Path

            from pipeline.embedding import resolve_model_path

            path = resolve_model_path(settings.embedding_model)
            checks["model"] = "ok" if Path(path).exists() or "/" not in path else f"missing: {path}"
        except Exception as exc:
            checks["model"] = f"unavailable: {exc}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    return app
