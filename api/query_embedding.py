"""Search queries to vectors: remembered by text, and encoded together when they arrive together.

A sentence-transformers forward pass has a fixed cost per call on top of a small cost per text, so twenty
queries encoded one by one in twenty threads cost several times one batch of twenty, and the threads fight
over the cores while they do. :class:`QueryEmbedder` lets the first waiting thread encode every query that
is waiting in one call; the others sleep until their vector is ready. An embedder that batches concurrent
calls itself (``concurrent = True``, such as :class:`~api.query_process.ProcessEncoder`) is called directly.
Vectors are kept in an LRU by query text, since people repeat searches (and the web page and the API ask the
same ones).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.lru import LRU
from pipeline.embedding import encode_queries


@dataclass(eq=False, slots=True)
class _Pending:
    text: str
    done: threading.Event = field(default_factory=threading.Event)
    vector: np.ndarray | None = None
    error: BaseException | None = None


class QueryEmbedder:
    """An :class:`~pipeline.embedding.Embedder` for one query at a time, with an LRU and batching.

    Args:
        embedder: the model that encodes (any object with ``name`` and ``encode(texts)``).
        cache_size: query texts whose vectors are kept (least recently used dropped); 0 keeps none.
        max_batch: most queries encoded in one call.
    """

    def __init__(self, embedder: Any, *, cache_size: int = 4096, max_batch: int = 64) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self._cache: LRU[str, np.ndarray] = LRU(cache_size)
        self._waiting: list[_Pending] = []
        self._lock = threading.Lock()
        self._encoding = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return str(self.embedder.name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The :class:`Embedder` protocol: ``(len(texts), dim)`` float32 rows (read-only, shared)."""
        return np.stack([self.encode_one(t) for t in texts]) if texts else self.embedder.encode([])

    def cached(self, text: str) -> np.ndarray | None:
        """The vector of ``text`` if it is in the cache (cheap enough for the event loop), else None."""
        vector = self._cache.get(text)
        if vector is not None:
            with self._lock:
                self.hits += 1
        return vector

    def encode_one(self, text: str) -> np.ndarray:
        """Returns: ``(dim,)`` float32 of unit length; read-only, since it is shared with the cache."""
        vector = self.cached(text)
        if vector is not None:
            return vector
        if getattr(self.embedder, "concurrent", False):  # it batches concurrent calls itself (a child process)
            with self._lock:
                self.misses += 1
            return self._keep(text, np.asarray(self.embedder.encode([text]), dtype=np.float32)[0])
        with self._lock:
            self.misses += 1
            pending = _Pending(text)
            self._waiting.append(pending)
        # Whoever holds the encoder lock encodes everything waiting; a thread whose query was taken into
        # another's batch finds it done once it gets the lock (or before).
        while not pending.done.is_set():
            with self._encoding:
                if pending.done.is_set():
                    break
                with self._lock:
                    batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                self._encode_batch(batch)
        if pending.error is not None:
            raise pending.error
        assert pending.vector is not None
        return pending.vector

    def _encode_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        texts = list(dict.fromkeys(p.text for p in batch))
        try:
            vectors = np.asarray(encode_queries(self.embedder, texts), dtype=np.float32)
        except Exception as exc:  # every waiter of this batch raises it, in its own thread
            for p in batch:
                p.error = exc
                p.done.set()
            return
        by_text = {t: self._keep(t, v) for t, v in zip(texts, vectors, strict=True)}
        for p in batch:
            p.vector = by_text[p.text]
            p.done.set()

    def _keep(self, text: str, vector: np.ndarray) -> np.ndarray:
        """``vector`` as its own read-only copy (not a view that keeps a batch alive), cached under ``text``."""
        kept = np.array(vector, dtype=np.float32)
        kept.setflags(write=False)
        self._cache.put(text, kept)
        return kept
