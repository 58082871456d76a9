"""Feedback embedded as it arrives through the API, so search finds a field note within seconds.

Without this, an item posted to ``/v1/feedback`` (or pushed in a batch) would have no vector until the next
analysis run embedded it, and search, which ranks stored vectors, could not find it until then. The route
hands the stored items' ids to :class:`ArrivalEmbedder` once its transaction has committed (a FastAPI
background task runs after the response, so after the commit); one background thread reads the texts of
those that have no vector yet, encodes them in batches with the API's own copy of the model, and stores
the vectors through the same code as the analysis (:func:`embed_pairs`).

Nothing depends on it: a vector it has not stored yet (a crash, a full queue, a database error) is made by
the next analysis, which embeds every text without one. Texts already embedded are skipped, so a retried
note, or a text already known, costs one lookup.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from fastapi import BackgroundTasks, Request
from sqlalchemy.orm import Session, sessionmaker

from pipeline.embedding_store import embed_pairs, missing_hashes

log = logging.getLogger(__name__)

# Embedding a note costs a few ms of CPU that no request waits for: at nice 10 the thread mostly runs when
# request threads do not need the core.
ARRIVAL_NICENESS = 10


class ArrivalEmbedder:
    """A queue of feedback ids to embed and the one thread that embeds them.

    Args:
        sessions: write sessions of the API's database.
        read_sessions: read sessions (on SQLite a write session takes the write lock as it begins); the
            write sessions when None.
        embedder: the model that encodes (the API's search model, the one the analysis uses).
        batch_size: most texts encoded in one call.
        max_pending: ids held at most; more are left to the next analysis (and counted in ``dropped``).
        write_lock: held around each write (the API's SQLite writer queue), or None.
    """

    def __init__(self, sessions: sessionmaker[Session], embedder: Any, *,
                 read_sessions: sessionmaker[Session] | None = None, batch_size: int = 64,
                 max_pending: int = 100_000,
                 write_lock: AbstractContextManager[Any] | None = None) -> None:
        self.sessions = sessions
        self.read_sessions = read_sessions or sessions
        self.embedder = embedder
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.write_lock = write_lock
        self._pending: dict[int, None] = {}  # feedback ids, in arrival order
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.embedded = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, feedback_ids: Iterable[int]) -> None:
        """Queue stored (committed) feedback items by id; returns at once."""
        dropped = 0
        with self._cond:
            if self._closed:
                return
            for feedback_id in feedback_ids:
                if feedback_id in self._pending:
                    continue
                if len(self._pending) >= self.max_pending:
                    dropped += 1
                    continue
                self._pending[feedback_id] = None
            self.dropped += dropped
            if self._pending and self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="arrival-embedder")
                self._thread.start()
            self._cond.notify()
        if dropped:
            log.warning("%d arrived items not queued for embedding (%d already waiting); the next analysis "
                        "embeds them", dropped, self.max_pending)

    def stats(self) -> dict[str, int]:
        """Items waiting, and items embedded, failed and left to the analysis (queue full) since start."""
        with self._cond:
            return {"pending": len(self._pending), "embedded": self.embedded,
                    "failed": self.failed, "dropped": self.dropped}

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is embedded (or given up). Returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking items and let the thread finish the batch it is on; what waits is left to the analysis."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _take(self) -> list[int] | None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()  # flush() waiters
            self._cond.wait_for(lambda: self._pending or self._closed)
            if self._closed:
                return None
            batch = list(self._pending)[:self.batch_size]
            for feedback_id in batch:
                del self._pending[feedback_id]
            self._busy = True
            return batch

    def _run(self) -> None:
        _lower_this_threads_priority()
        while (batch := self._take()) is not None:
            try:
                self._embed(batch)
            except Exception:  # the next analysis embeds them; the server carries on
                self.failed += len(batch)
                log.exception("embedding %d arrived items failed; the next analysis will embed them", len(batch))

    def _embed(self, feedback_ids: list[int]) -> None:
        with self.read_sessions() as session:
            todo = missing_hashes(session, self.embedder.name, feedback_ids)
        if not todo:
            return
        self.embedded += embed_pairs(self.sessions, self.embedder, todo, batch_size=self.batch_size,
                                     write_lock=self.write_lock)


def _lower_this_threads_priority(niceness: int = ARRIVAL_NICENESS) -> None:
    """Let requests have the cores first: on Linux a thread has its own nice value (its task id is its own
    process id for ``setpriority``). Elsewhere, or when refused, the thread runs at normal priority."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < niceness:  # never raise it (a server already run under nice)
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError:
        log.debug("could not lower the arrival embedder's priority", exc_info=True)


def embed_after_response(request: Request, background: BackgroundTasks, feedback_ids: Sequence[int]) -> None:
    """Queue ``feedback_ids`` for embedding once the response is sent, which is after the route committed."""
    arrivals: ArrivalEmbedder | None = getattr(request.app.state, "arrivals", None)
    if arrivals is not None and feedback_ids:
        background.add_task(arrivals.submit, list(feedback_ids))
