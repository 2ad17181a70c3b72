"""The Memcached store against a real memcached started for the tests."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from pymemcache.client.base import Client
from starlette.applications import Starlette

from satchel import ids
from satchel.asgi import SessionMiddleware
from satchel.ops import drive
from satchel.record import Record
from satchel.stores.memcached import THIRTY_DAYS, MemcachedStore, expire_value, from_url
from satchel.stores.registry import store_from_url
from satchel.testing.conformance import StoreConformance, _meta, cookie_id, request

from .conftest import KEY
from .helpers import make_engine
from .services import MemcachedServer
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


class TestMemcachedConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, memcached: MemcachedServer) -> None:
        self.url = memcached.url

    def make_store(self) -> MemcachedStore:
        store = from_url(self.url)
        store.prefix = _prefix()
        return store


def test_thirty_day_rule() -> None:
    now = 1_800_000_000.0
    assert expire_value(now + 60, now) == 60
    assert expire_value(now + THIRTY_DAYS, now) == THIRTY_DAYS
    assert expire_value(now + THIRTY_DAYS + 1, now) == int(now) + THIRTY_DAYS + 1  # absolute
    assert expire_value(now - 1, now) == -1


def test_long_lived_session_survives_the_thirty_day_rule(memcached: MemcachedServer) -> None:
    """A "remember me" session of 45 days idle: sent as seconds it would be read as a
    timestamp in 1970 and vanish at once; satchel sends the absolute time."""
    store = MemcachedStore([("127.0.0.1", memcached.port)], prefix=_prefix())
    now = time.time()
    meta = _meta(now).with_changes(idle_timeout=45 * 86400, absolute_deadline=now + 60 * 86400)
    key = ids.store_key(ids.new_session_id())
    store.create(key, Record({"a": "1"}, meta))
    assert store.load(key, now) is not None
    store.close()


def test_url_and_hashed_keys(memcached: MemcachedServer) -> None:
    store = store_from_url(memcached.url + "?prefix=app:&timeout=0.5&max_pool_size=4")
    assert isinstance(store, MemcachedStore)
    assert (store.prefix, store.timeout, store.max_pool_size) == ("app:", 0.5, 4)
    multi = from_url("memcached://127.0.0.1:1,127.0.0.2:2")
    assert multi.servers == [("127.0.0.1", 1), ("127.0.0.2", 2)]
    _, cookie = drive(request(make_engine(), None, a=1), store)
    sid = cookie_id(cookie)
    assert sid is not None
    direct = Client(("127.0.0.1", memcached.port))
    raw = direct.get(f"app:s:{ids.store_key(sid)}")
    direct.close()
    assert raw is not None
    assert sid.encode() not in raw
    store.close()


def test_eviction_fails_closed(memcached: MemcachedServer) -> None:
    """An item Memcached evicts is a session that is gone: anonymous, never an error."""
    store = MemcachedStore([("127.0.0.1", memcached.port)], prefix=_prefix())
    direct = Client(("127.0.0.1", memcached.port))
    try:
        engine = make_engine()
        _, cookie = drive(request(engine, None, user="alice"), store)
        sid = cookie_id(cookie)
        assert sid is not None
        # noreply=False: wait for the delete, or the next get may overtake it
        assert direct.delete(store.item_key(ids.store_key(sid)), noreply=False)
        session, cookie = drive(request(engine, sid), store)
        assert session.new
        assert cookie is None
    finally:
        direct.close()
        store.close()


async def test_stopped_server_gives_503_and_recovers(private_memcached: MemcachedServer) -> None:
    store = MemcachedStore([("127.0.0.1", private_memcached.port)], timeout=0.5)
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        assert (await c.get("/incr")).json() == {"n": 1}
        private_memcached.stop()
        down = await c.get("/read")
        assert down.status_code == 503
        assert "Traceback" not in down.text
        private_memcached.start()
        recovered = None
        for _ in range(10):
            recovered = await c.get("/incr")
            if recovered.status_code == 200:
                break
        assert recovered is not None
        assert recovered.status_code == 200  # a fresh server: the session starts over
    store.close()
