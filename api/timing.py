"""Where a request's time goes: named stages sent back in a ``Server-Timing`` header.

Off unless the app is built with ``server_timing=True`` (the latency benchmark turns it on): the header
tells a caller how long the server spent embedding, scoring and querying, which is useful to whoever
profiles the API and nobody else. A stage is recorded with :func:`timed` anywhere below a route, in the
event loop or in a worker thread (the threadpool runs each call in a copy of the request's context, and the
copy shares the one dict of stages).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_stages: ContextVar[dict[str, float] | None] = ContextVar("groundswell_stages", default=None)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Add the time spent in the block to ``stage`` of the current request (a no-op outside one)."""
    stages = _stages.get()
    if stages is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[stage] = stages.get(stage, 0.0) + (time.perf_counter() - start) * 1000


def record(stage: str, ms: float) -> None:
    """Add ``ms`` milliseconds to ``stage`` of the current request (a no-op outside one)."""
    stages = _stages.get()
    if stages is not None:
        stages[stage] = stages.get(stage, 0.0) + ms


class ServerTiming:
    """ASGI middleware: ``Server-Timing: app;dur=..., <stage>;dur=...`` on every HTTP response.

    ``app`` is the time from the request reaching the application to its response headers, so a client's
    latency minus ``app`` is what the request spent queued in sockets, the event loop and the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stages: dict[str, float] = {}
        token = _stages.set(stages)
        start = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                total = (time.perf_counter() - start) * 1000
                value = ", ".join([f"app;dur={total:.2f}"] + [f"{k};dur={v:.2f}" for k, v in stages.items()])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"server-timing", value.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            _stages.reset(token)
