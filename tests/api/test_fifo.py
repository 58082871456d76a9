"""The search slots' semaphore: a bound on holders, and slots handed out in arrival order."""

from __future__ import annotations

import threading
import time

import pytest

from api.fifo import FifoSemaphore


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_semaphore_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FifoSemaphore(0)


def test_no_more_holders_than_slots() -> None:
    sem = FifoSemaphore(2)
    assert sem.acquire(blocking=False) and sem.acquire(blocking=False)
    assert not sem.acquire(blocking=False)
    sem.release()
    assert sem.acquire(blocking=False)

    sem, lock, running, most = FifoSemaphore(3), threading.Lock(), [0], [0]

    def hold() -> None:
        with sem:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.005)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 3
    assert sem.acquire(blocking=False) and sem.acquire(blocking=False) and sem.acquire(blocking=False)


def test_a_released_slot_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    # threading.Semaphore lets the releasing thread (or any newcomer) take the slot back before the
    # waiter it woke gets to run; under load that is how one request gets passed over again and again.
    sem = FifoSemaphore(1)
    sem.acquire()
    got: list[str] = []

    def wait(name: str) -> None:
        with sem:
            got.append(name)

    waiters = []
    for name in ("first", "second", "third"):
        t = threading.Thread(target=wait, args=(name,))
        t.start()
        wait_for(lambda n=len(waiters) + 1: sem.waiting == n)
        waiters.append(t)
    sem.release()
    assert not sem.acquire(blocking=False)  # the slot is already the first waiter's
    for t in waiters:
        t.join(5)
    assert got == ["first", "second", "third"]
    assert sem.waiting == 0
    assert sem.acquire(blocking=False)  # and it came back once they were done


def test_a_release_with_nothing_held_is_refused() -> None:
    sem = FifoSemaphore(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match="released more often than acquired"):
        sem.release()
    assert sem.acquire(blocking=False) and sem.acquire(blocking=False)
    assert not sem.acquire(blocking=False)  # still two slots, not three


def test_a_slot_is_given_back_when_the_holder_raises() -> None:
    sem = FifoSemaphore(1)
    with pytest.raises(RuntimeError), sem:
        raise RuntimeError("search failed")
    assert sem.acquire(blocking=False)
