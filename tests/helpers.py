"""Shared test helpers: a call-counting wrapper around a real store, small ASGI apps."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from satchel.auth import login
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.record import Change, Meta, Record
from satchel.session import Session
from satchel.stores.base import Store
from satchel.stores.capabilities import Countable
from satchel.testing import FakeClock

KEY = "test-key-0123456789-0123456789-0123456789"


def make_engine(clock: FakeClock | None = None) -> Engine:
    """An engine with default options and the test key."""
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    return Engine(secret_keys=[KEY], expiry=ExpiryPolicy(), **kwargs)


class CountingStore(Store):
    """Delegates to a real store and counts each call (sync and async alike)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        self.calls["load"] += 1
        return self.inner.load(key, now, refresh_after)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        self.calls["touch"] += 1
        return self.inner.touch(key, last_seen, now)

    def create(self, key: str, record: Record) -> None:
        self.calls["create"] += 1
        self.inner.create(key, record)

    def update(self, key: str, change: Change, now: float) -> int | None:
        self.calls["update"] += 1
        return self.inner.update(key, change, now)

    def delete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return self.inner.delete(key)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.inner.purge_expired(now, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        self.calls["index_add"] += 1
        return self.inner.index_add(user_id, key, deadline)

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        self.calls["list_user"] += 1
        return self.inner.list_user(user_id, now)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        self.calls["index_add"] += 1
        return await self.inner.aindex_add(user_id, key, deadline)

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        self.calls["list_user"] += 1
        return await self.inner.alist_user(user_id, now)

    def count(self, now: float) -> int:
        assert isinstance(self.inner, Countable)
        return self.inner.count(now)

    def close(self) -> None:
        self.inner.close()

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        self.calls["load"] += 1
        return await self.inner.aload(key, now, refresh_after)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        self.calls["touch"] += 1
        return await self.inner.atouch(key, last_seen, now)

    async def acreate(self, key: str, record: Record) -> None:
        self.calls["create"] += 1
        await self.inner.acreate(key, record)

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        self.calls["update"] += 1
        return await self.inner.aupdate(key, change, now)

    async def adelete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return await self.inner.adelete(key)


def set_cookie_value(headers: Any, name: str = "satchel") -> str | None:
    """The value of the session's Set-Cookie in an httpx response's headers."""
    for header in headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return str(header.split(";", 1)[0].split("=", 1)[1])
    return None


def session_of(request: Request) -> Session:
    """The satchel session of a Starlette request."""
    assert isinstance(request.session, Session)
    return request.session


async def do_login(request: Request) -> Response:
    """A route that logs ``?user=`` in (default alice)."""
    login(session_of(request), request.query_params.get("user", "alice"))
    return PlainTextResponse("in")


def loads_back_to_back(
    load: Callable[[str], object], keys: list[str], threads: int = 20, seconds: float = 1.0
) -> tuple[list[BaseException], float]:
    """``threads`` threads calling ``load`` on ``keys`` (in turn) back to back for
    ``seconds``: the store errors they met, and the slowest call. On a pool of one
    connection, what shows whether a waiting thread is served in turn."""
    from satchel.errors import StoreError

    failures: list[BaseException] = []
    worst = [0.0]
    end = time.monotonic() + seconds

    def reader(key: str) -> None:
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                load(key)
            except StoreError as exc:
                failures.append(exc)
            worst[0] = max(worst[0], time.monotonic() - started)

    running = [threading.Thread(target=reader, args=(keys[i % len(keys)],)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return failures, worst[0]
