"""A semaphore that serves its waiters in the order they came.

``threading.Semaphore`` wakes its longest waiter on release, but the woken thread must then win the
interpreter lock and the semaphore's own lock before a thread that has only just arrived does; under load
on few cores the newcomer often wins, so the same waiter can be passed over again and again. Latency
then spreads: the mean is what the throughput allows, and the tail is whoever kept losing.
:class:`FifoSemaphore` hands a released slot straight to the longest waiter, so nobody can take it first.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FifoSemaphore:
    """At most ``value`` holders at once; waiters get the slot in arrival order (a context manager)."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"a semaphore needs at least one slot, not {value}")
        self._value = self._slots = value
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    @property
    def waiting(self) -> int:
        """Threads waiting for a slot now."""
        return len(self._waiters)

    def acquire(self, blocking: bool = True) -> bool:
        """Takes a slot, waiting behind everyone already waiting; without ``blocking``, False if none is free."""
        with self._lock:
            if self._value and not self._waiters:
                self._value -= 1
                return True
            if not blocking:
                return False
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append(baton)
        baton.acquire()  # released by the holder that hands us its slot
        return True

    def release(self) -> None:
        """Gives the slot back, to the longest waiter if there is one."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()  # the slot passes on; the count stays as it is
            elif self._value < self._slots:
                self._value += 1
            else:  # as threading.BoundedSemaphore: a release with nothing held is a bug, not a new slot
                raise ValueError("released more often than acquired")

    def __enter__(self) -> FifoSemaphore:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
