"""The API server's embedding model in a child process: search queries first, notes on arrival after them.

A never-seen query costs two kinds of work: the model's forward pass, which runs outside the interpreter
lock, and everything else (HTTP, auth, ranking, reading the hits), which runs inside it. In one process the
encoding thread must take the lock back after every native call (tokenizer, ONNX Runtime) and waits for it
behind the requests' Python, up to the interpreter's switch interval each time, so the encoder idles between
batches while requests wait for it. In a child process the encoder has a lock of its own: it takes every
query waiting in its pipe and encodes and answers them a few at a time, back to back. Measured in
``benchmarks.api_latency --only search_new`` (docs/benchmarks.md, "Queries encoded in a child process").

:class:`ProcessEncoder` has the :class:`~pipeline.embedding.Embedder` interface (``name``, ``encode``) and may
be called from many threads at once: each call is one request to the child, and the child batches the
requests that wait together. Work no request waits for (notes embedded on arrival, through
:meth:`ProcessEncoder.in_background`) is encoded a few texts at a time, with the queries that arrive
meanwhile served between, so the server holds one copy of the model (about 800 MB with MiniLM's runtime
libraries and the int8 graph queries run in) and search does not queue behind a batch of notes. A child that
dies fails the calls it held and the next call starts a new one.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from pipeline.embedding import EmbeddingError, encode_queries

log = logging.getLogger(__name__)

# Queries encoded and answered at once. Answered in one batch, twenty queries reach the server together and
# queue for its search slots; four at a time, they arrive as the slots free up. On 2 cores, 20 clients of
# never-seen queries on SQLite: p95 100.0-114.9 ms with 4 against 141.5-143.9 with no limit, 112-113 with 2
# or 8; PostgreSQL no different (docs/benchmarks.md).
QUERY_CHUNK = 4
BACKGROUND_CHUNK = 8  # background texts encoded at once: a query that arrives meanwhile waits for this many


def main() -> None:
    """The child (``python -m api.query_process``): requests on stdin, replies on stdout, logs on stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends us by closing stdin
    requests_in = Connection(os.dup(0), writable=False)
    replies_out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # what the model's libraries print goes to stderr, not into the replies
    try:
        factory = pickle.loads(requests_in.recv_bytes())
    except (EOFError, OSError):
        return
    _serve(requests_in, replies_out, factory)


def _serve(requests_in: Connection, replies_out: Connection, factory: Callable[[], Any]) -> None:
    """Load the model, say so, then answer requests until the parent closes the pipe.

    Queries come first, in arrival order, ``QUERY_CHUNK`` requests to a call, each call answered before the
    next; background requests (notes embedded on arrival) are encoded ``BACKGROUND_CHUNK`` texts at a time,
    with the queries that arrived meanwhile served between chunks.
    """
    try:
        embedder = factory()
        dim = int(np.asarray(embedder.encode(["warm up"])).shape[1])
        encode_queries(embedder, ["warm up"])  # its query graph too, where it has one
        precision = str(getattr(embedder, "query_precision_used", "fp32"))  # int8 unless it fell back at load
        replies_out.send_bytes(pickle.dumps(("ready", str(embedder.name), dim, precision)))
    except Exception as exc:
        replies_out.send_bytes(pickle.dumps(("failed", f"{type(exc).__name__}: {exc}", 0, "")))
        return

    def encode(requests: list[tuple[int, list[str]]], queries: bool) -> list[tuple[int, np.ndarray | str]]:
        texts = list(dict.fromkeys(t for _, batch in requests for t in batch))
        try:
            # Queries may run in the model's int8 graph; background texts are stored, so they never do.
            vectors = encode_queries(embedder, texts) if queries else embedder.encode(texts)
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), dim)
        except Exception as exc:  # every request of this batch gets the error
            return [(rid, f"{type(exc).__name__}: {exc}") for rid, _ in requests]
        row = {t: i for i, t in enumerate(texts)}
        return [(rid, vectors[[row[t] for t in batch]]) for rid, batch in requests]

    queries: list[tuple[int, list[str]]] = []
    background: collections.deque[tuple[int, list[str], list[np.ndarray]]] = collections.deque()
    while True:
        try:
            messages = [] if background or queries else [requests_in.recv_bytes()]  # wait only with nothing to do
            while requests_in.poll():  # everything that waited meanwhile
                messages.append(requests_in.recv_bytes())
        except (EOFError, OSError):  # the parent closed the pipe or exited
            return
        for rid, texts, in_background in map(pickle.loads, messages):
            if in_background:
                background.append((rid, texts, []))
            else:
                queries.append((rid, texts))
        if queries:
            replies, queries = encode(queries[:QUERY_CHUNK], True), queries[QUERY_CHUNK:]
        else:
            rid, texts, done = background[0]
            start = sum(len(v) for v in done)
            (_, got), = encode([(rid, texts[start:start + BACKGROUND_CHUNK])], False)
            if isinstance(got, str) or start + BACKGROUND_CHUNK >= len(texts):
                background.popleft()
                replies = [(rid, got if isinstance(got, str) else np.concatenate([*done, got]))]
            else:
                done.append(got)
                continue
        try:
            replies_out.send_bytes(pickle.dumps(replies))
        except (EOFError, OSError):
            return


@dataclass(eq=False, slots=True)
class _Call:
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: str | None = None


class _Child:
    """One child process, its end of the pipe and the calls it has not answered yet."""

    def __init__(self, factory: Callable[[], Any], start_timeout_s: float) -> None:
        # `python -m api.query_process` rather than multiprocessing's spawn, which imports the parent's main
        # module again in the child (a script without a main guard would run twice; stdin cannot be read).
        # Its own session: Ctrl-C in a terminal stops the server, which then closes the child.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.query_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}, start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        # One pipe each way: closing ours of the requests ends the child even while our reader is blocked on
        # the replies.
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.calls: dict[int, _Call] = {}
        self.lock = threading.Lock()  # guards calls and dead
        self.send_lock = threading.Lock()
        self.dead = False
        try:
            self.requests.send_bytes(pickle.dumps(factory))
            if not self.replies.poll(start_timeout_s):
                raise EmbeddingError(f"the query encoder process did not load its model in {start_timeout_s:.0f}s")
            status, detail, self.dim, self.query_precision = pickle.loads(self.replies.recv_bytes())
        except (EOFError, OSError) as exc:
            self._abandon()
            raise EmbeddingError(f"the query encoder process exited while loading its model "
                                 f"(exit code {self.process.returncode})") from exc
        except EmbeddingError:
            self._abandon()
            raise
        if status != "ready":
            self._abandon()
            raise EmbeddingError(f"the query encoder process could not load its model: {detail}")
        self.name: str = detail
        threading.Thread(target=self._read, daemon=True, name="query-encoder-replies").start()

    def call(self, rid: int, texts: list[str], background: bool) -> _Call | None:
        """The call, sent; None when this child had exited before it could be asked."""
        call = _Call()
        with self.lock:
            if self.dead:
                return None
            self.calls[rid] = call
        try:
            with self.send_lock:
                self.requests.send_bytes(pickle.dumps((rid, texts, background)))
        except (EOFError, OSError):  # it exited (its end of the pipe is closed); the reader fails the rest
            with self.lock:
                self.calls.pop(rid, None)
                self.dead = True
            return None
        return call

    def _read(self) -> None:
        try:
            while True:
                for rid, answer in pickle.loads(self.replies.recv_bytes()):
                    with self.lock:
                        call = self.calls.pop(rid, None)
                    if call is None:
                        continue
                    if isinstance(answer, str):
                        call.error = answer
                    else:
                        call.vectors = answer
                    call.done.set()
        except (EOFError, OSError):
            pass
        self.replies.close()
        # The pipe closes a moment before the exit can be reaped: wait for it (a child that closed its end
        # and lives on is said to be still running).
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5.0)
        with self.lock:
            self.dead = True
            calls, self.calls = self.calls, {}
        for call in calls.values():
            call.error = self._exit_message()
            call.done.set()

    def state(self) -> str:
        """``running`` while it has not exited (and is not known dead), else how it exited."""
        code = self.process.poll()
        if code is None:
            return "exited (still running)" if self.dead else "running"
        return f"exited (exit code {code})"

    def _exit_message(self) -> str:
        return f"the query encoder process {self.state()}"

    def _abandon(self) -> None:  # a child that never got ready: no reader thread will close the replies
        self.close()
        self.replies.close()

    def close(self) -> None:
        self.requests.close()  # the child's next read ends, it exits, and so our reader's read ends
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5.0)


class ProcessEncoder:
    """An embedder whose model runs in a child process (started on first use, again after a crash).

    Args:
        factory: builds the embedder in the child (picklable: a module-level function or a partial of one).
        name: the model's name as stored with its vectors (known without loading it).
        start_timeout_s: longest wait for the child to load its model.
    """

    concurrent = True  # concurrent calls are batched by the child; callers need no batching of their own

    def __init__(self, factory: Callable[[], Any], name: str, *, start_timeout_s: float = 600.0) -> None:
        self.factory = factory
        self._name = name
        self.start_timeout_s = start_timeout_s
        self._child: _Child | None = None
        self._start_lock = threading.Lock()
        self._ids = itertools.count()
        self.starts = 0

    @property
    def name(self) -> str:
        return self._name

    def start(self) -> None:
        """Start the child and load its model now, unless it is running."""
        self._running()

    def _running(self) -> _Child:
        child = self._child
        if child is not None and not child.dead:
            return child
        with self._start_lock:
            child = self._child
            if child is None or child.dead:
                if child is not None:
                    log.warning("%s; starting another", child._exit_message())
                    child.close()
                child = _Child(self.factory, self.start_timeout_s)
                if child.name != self._name:
                    child.close()
                    raise EmbeddingError(f"the query encoder process loaded {child.name!r}, expected {self._name!r}")
                self._child = child
                self.starts += 1
            return child

    def encode(self, texts: Sequence[str], *, background: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32 rows, as the model in the child encodes search queries
        (:func:`~pipeline.embedding.encode_queries`), or texts to store when ``background``.

        Args:
            background: texts whose vectors are stored (notes embedded on arrival): encoded by the model's
                ``encode``, after any query waiting, a few at a time.

        Raises:
            EmbeddingError: the child could not load the model, the model failed on these texts, or the
                child exited before answering.
        """
        child = self._running()
        if not texts:
            return np.zeros((0, child.dim), dtype=np.float32)
        texts = [str(t) for t in texts]
        call = child.call(next(self._ids), texts, background)
        if call is None:  # the child had exited before we asked (the calls it held failed): ask a new one
            child = self._running()
            call = child.call(next(self._ids), texts, background)
            if call is None:
                raise EmbeddingError(child._exit_message())
        call.done.wait()
        if call.error is not None:
            raise EmbeddingError(call.error)
        assert call.vectors is not None
        return call.vectors

    def in_background(self) -> Any:
        """The same model for work no request waits for: it yields the child to queries between chunks."""
        return _Background(self)

    def stats(self) -> dict[str, Any]:
        """For ``/ready``: the child's state (running, not started, or how it exited), how often one started and
        what its model encodes queries in (``int8``, or ``fp32`` where the model has no int8 graph or it fell back
        at load)."""
        child = self._child
        if child is None:
            return {"state": "not started", "pid": None, "starts": self.starts, "query_precision": None}
        return {"state": child.state(), "pid": child.process.pid, "starts": self.starts,
                "query_precision": child.query_precision}

    def close(self) -> None:
        """Stop the child (a later call starts a new one)."""
        with self._start_lock:
            child, self._child = self._child, None
        if child is not None:
            child.close()


class _Background:
    """:class:`ProcessEncoder` as an embedder whose calls are encoded after the queries (notes on arrival)."""

    def __init__(self, encoder: ProcessEncoder) -> None:
        self.encoder = encoder

    @property
    def name(self) -> str:
        return self.encoder.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(texts, background=True)


if __name__ == "__main__":
    main()
