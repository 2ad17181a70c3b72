"""SQLAlchemy's ``QueuePool`` with waiting threads served first come, first served
(imported only when the MariaDB/MySQL store makes its sync engine).

Its queue lets a thread that finds a connection free take it even while others wait: the
waiter a returned connection woke finds it gone, and waits again. With one connection and
20 threads loading sessions back to back for a second, 5 loads failed at their deadline
(``pool_size=1&max_overflow=0&timeout=1``). Here a returned connection goes straight to
the oldest thread still waiting, a thread that arrives while others wait queues behind
them, and a waiter that gives up (its deadline, an interrupt) as it is handed one passes
it on, as in the Redis store's pools (:mod:`satchel.stores.redis.pools`). The asyncio
engine keeps SQLAlchemy's ``AsyncAdaptedQueuePool``: the same load through it (and
waiters cancelled as they are woken) meets no deadline
(``tests/test_mysql.py::test_tasks_waiting_for_a_connection_are_served_in_turn``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.pool import QueuePool
from sqlalchemy.util import queue as sqla_queue

from .._handoff import Handoff

__all__ = ["FairQueuePool"]


class _FairQueue(sqla_queue.Queue[Any]):
    """The sync pool's queue: items (connection records) handed to the oldest waiter
    (:class:`Handoff`)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self.line = Handoff(self.mutex)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.mutex:
            if self.queue and not self.line.waiters:
                return self._get()
            if not block:
                raise sqla_queue.Empty
            waiter = self.line.join()
        handed, item = self.line.wait(waiter, timeout, self._give_back)
        if not handed:
            raise sqla_queue.Empty
        return item

    def _give_back(self, item: Any) -> None:
        try:
            self.put(item, False)
        except sqla_queue.Full:  # (returns filled it meanwhile: an overflow connection)
            self.overfull(item)

    def overfull(self, item: Any) -> None:
        """What the pool does with a connection returned into a full queue (set by
        :class:`FairQueuePool`)."""
        raise sqla_queue.Full

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # (the pool only ever puts without blocking: a full queue closes the connection)
        with self.mutex:
            if self.line.hand(item):
                return
            if self._full():
                raise sqla_queue.Full
            self._put(item)


class FairQueuePool(QueuePool):
    """SQLAlchemy's ``QueuePool``, waiters served first come, first served."""

    _queue_class = _FairQueue

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool.overfull = self._do_return_conn  # type: ignore[attr-defined]
