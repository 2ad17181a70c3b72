"""Threads waiting for a pooled connection, served first come, first served: what the
sync pools' queues share (the Redis store's :class:`~satchel.stores.redis.pools._Stack`,
the MariaDB store's :class:`~satchel.stores.mysql.pools.FairQueuePool`).

A queue built on a condition variable lets a thread that finds an item free take it even
while others wait: the waiter a returned item woke finds it gone, and waits again (one
connection, 20 threads loading back to back: some loads waited out their whole deadline).
Here each waiting thread has a lock of its own; a returned item is handed straight to the
oldest waiter (and its lock released), never left where a newcomer could take it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Handoff"]


class _Waiter:
    """A thread waiting for an item: its lock is released when one is handed to it."""

    __slots__ = ("item", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.item: Any = None


class Handoff:
    """The line of threads waiting on one queue, whose ``mutex`` guards it too."""

    __slots__ = ("mutex", "waiters")

    def __init__(self, mutex: threading.Lock | threading.RLock) -> None:
        self.mutex = mutex
        self.waiters: collections.deque[_Waiter] = collections.deque()

    def join(self) -> _Waiter:
        """Take a place at the back of the line (the caller holds the mutex)."""
        waiter = _Waiter()
        self.waiters.append(waiter)
        return waiter

    def hand(self, item: Any) -> bool:
        """Give ``item`` to the oldest waiter, if any (the caller holds the mutex)."""
        if not self.waiters:
            return False
        waiter = self.waiters.popleft()
        waiter.item = item
        waiter.lock.release()
        return True

    def wait(
        self, waiter: _Waiter, timeout: float | None, give_back: Callable[[Any], None]
    ) -> tuple[bool, Any]:
        """Wait (the mutex not held) until an item is handed to ``waiter``, at most
        ``timeout`` seconds: (True, the item), or (False, None) when the time ran out. A
        waiter interrupted as it is handed one gives it back (``give_back``: the queue's
        return, which hands it to the next waiter)."""
        try:
            if waiter.lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
                return True, waiter.item
        except BaseException:
            if not self._leave(waiter):
                give_back(waiter.item)
            raise
        if self._leave(waiter):
            return False, None
        return True, waiter.item  # handed one as the time ran out

    def _leave(self, waiter: _Waiter) -> bool:
        """Step out of the line: False if an item was handed to ``waiter`` meanwhile."""
        with self.mutex:
            try:
                self.waiters.remove(waiter)
            except ValueError:  # handed an item (hand() released its lock)
                return False
            return True
