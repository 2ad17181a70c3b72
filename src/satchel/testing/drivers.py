"""Run one test body on the sync or the async path of a store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ConfigurationError
from ..ops import Flow, adrive, drive
from ..record import Change, Meta, Record
from ..stores.base import Store

T = TypeVar("T")


class StoreDriver:
    """The store's methods, called through its sync or its async forms.

    ``mode="async"`` runs each call on one event loop kept for the driver's life, so a
    store with loop-bound connections behaves as it would in an ASGI server.
    """

    def __init__(self, store: Store, mode: str) -> None:
        if mode not in ("sync", "async"):
            raise ConfigurationError("mode is 'sync' or 'async'")
        self.store, self.mode = store, mode
        self._runner = asyncio.Runner() if mode == "async" else None

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.store.aclose())
            self._runner.close()
        else:
            self.store.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._runner is not None
        return self._runner.run(coro)

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        if self._runner:
            return self._run(self.store.aload(key, now, refresh_after))
        return self.store.load(key, now, refresh_after)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        if self._runner:
            return self._run(self.store.atouch(key, last_seen, now))
        return self.store.touch(key, last_seen, now)

    def create(self, key: str, record: Record) -> None:
        if self._runner:
            return self._run(self.store.acreate(key, record))
        return self.store.create(key, record)

    def update(self, key: str, change: Change, now: float) -> int | None:
        if self._runner:
            return self._run(self.store.aupdate(key, change, now))
        return self.store.update(key, change, now)

    def delete(self, key: str) -> bool:
        if self._runner:
            return self._run(self.store.adelete(key))
        return self.store.delete(key)

    def purge_expired(self, now: float, batch_size: int = 500) -> int:
        if self._runner:
            return self._run(self.store.apurge_expired(now, batch_size))
        return self.store.purge_expired(now, batch_size)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        if self._runner:
            return self._run(self.store.aindex_add(user_id, key, deadline))
        return self.store.index_add(user_id, key, deadline)

    def create_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        if self._runner:
            return self._run(self.store.acreate_indexed(key, record, user_id))
        return self.store.create_indexed(key, record, user_id)

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        if self._runner:
            return self._run(self.store.alist_user(user_id, now))
        return self.store.list_user(user_id, now)

    def flow(self, flow: Flow[T]) -> T:
        """Run an engine flow on this driver's path."""
        if self._runner:
            return self._run(adrive(flow, self.store))
        return drive(flow, self.store)

    def concurrently(self, flows: list[Callable[[], Flow[Any]]]) -> list[Any]:
        """Run flows at the same time: threads on the sync path, tasks on the async one.
        Each callable makes its flow when started."""
        if self._runner:

            async def gather() -> list[Any]:
                return list(await asyncio.gather(*(adrive(f(), self.store) for f in flows)))

            return self._run(gather())
        results: list[Any] = [None] * len(flows)
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(flows))

        def work(i: int) -> None:
            try:
                barrier.wait()
                results[i] = drive(flows[i](), self.store)
            except BaseException as exc:  # re-raised in the calling thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(flows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results
