"""The Redis store against real servers: single, Cluster (three primaries) and Sentinel."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from redis.connection import Connection
from starlette.applications import Starlette

from satchel import StoreUnavailable, ids
from satchel.asgi import SessionMiddleware
from satchel.ops import drive
from satchel.record import Record
from satchel.stores.redis import RedisStore, from_url
from satchel.stores.registry import store_from_url
from satchel.testing.conformance import StoreConformance, _key, _meta, cookie_id, request

from .conftest import KEY
from .helpers import make_engine
from .services import RedisServer, SentinelSetup
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _no_leaked_connections() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed connection fails the test that
    leaked it rather than a later one."""
    yield
    gc.collect()


def _prefix() -> str:
    return f"satchel-test-{uuid.uuid4().hex[:8]}:"


class TestRedisConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url: str) -> Iterator[None]:
        self.url = redis_url
        self.prefix = _prefix()
        yield
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=self.prefix + "*", count=10_000):
            client.delete(key)
        client.close()

    def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix)


class TestRedisClusterConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_cluster: str) -> None:
        self.url = redis_cluster

    def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=_prefix())


class TestRedisSentinelConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_sentinel: SentinelSetup) -> None:
        self.url = redis_sentinel.url

    def make_store(self) -> RedisStore:
        return RedisStore(self.url, prefix=_prefix())


def test_urls_pick_the_right_client(redis_url: str) -> None:
    store = store_from_url(redis_url + "?prefix=app:&socket_timeout=0.5")
    assert isinstance(store, RedisStore)
    assert store.prefix == "app:"
    assert store.options["socket_timeout"] == 0.5
    assert isinstance(store.client, redis.Redis)
    cluster = from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert cluster.url == "redis+cluster://127.0.0.1:1,127.0.0.1:2"
    assert from_url("rediss://example.invalid:6380/1").url == "rediss://example.invalid:6380/1"
    store.close()


def test_keys_are_hashed_and_ttl_stops_at_the_absolute_deadline(redis_url: str) -> None:
    prefix = _prefix()
    store = RedisStore(redis_url, prefix=prefix)
    engine = make_engine()
    session, cookie = drive(request(engine, None, secret="value"), store)
    sid = cookie_id(cookie)
    assert sid is not None
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=prefix + "*")]
    assert keys == [f"{prefix}s:{ids.store_key(sid)}"]
    stored: dict[bytes, bytes] = client.hgetall(keys[0])  # type: ignore[assignment]
    assert sid.encode() not in b"".join(k + v for k, v in stored.items())
    meta = session.meta
    assert meta is not None
    expire_at = client.pexpiretime(keys[0]) / 1000
    assert abs(expire_at - meta.expires_at) < 0.01
    assert expire_at <= meta.absolute_deadline
    client.delete(keys[0])
    client.close()
    store.close()


# -- round trips, counted at the connection ---------------------------------------------------


class CountingConnection(Connection):
    """Counts each write of a request to the socket: one per round trip (a pipeline or a
    script is one)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class CountingAsyncConnection(redis.asyncio.Connection):
    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingAsyncConnection.sent += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, RedisStore]]:
    pool = redis.asyncio.ConnectionPool.from_url(
        redis_url, connection_class=CountingAsyncConnection
    )
    async_client = redis.asyncio.Redis(connection_pool=pool)
    store = RedisStore(async_client=async_client, prefix=_prefix())
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")  # loads the scripts into Redis's cache
        await c.get("/read")
        yield c, store
    await async_client.aclose()
    await pool.disconnect()


async def round_trips(client: httpx.AsyncClient, path: str) -> int:
    before = CountingAsyncConnection.sent
    response = await client.get(path)
    assert response.status_code == 200
    return CountingAsyncConnection.sent - before


async def test_round_trips_per_request(counted: tuple[httpx.AsyncClient, RedisStore]) -> None:
    """A read costs one round trip (its throttled "last seen" refresh is not due; see
    test_a_due_refresh_costs_one_more_round_trip); a write two; login from an existing
    session three (load; create the new record and file it in the user's index, one
    script; delete the old record: the user's index is small, so no listing is needed to
    enforce the per-user cap); logout two (load, delete); no cookie, none."""
    client, _ = counted
    assert await round_trips(client, "/read") == 1
    assert await round_trips(client, "/incr") == 2
    assert await round_trips(client, "/login") == 3
    assert await round_trips(client, "/read") == 1
    assert await round_trips(client, "/logout") == 2
    client.cookies.clear()
    assert await round_trips(client, "/untouched") == 0
    assert await round_trips(client, "/incr") == 1  # a new session: one create


def test_sync_round_trips(redis_url: str) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    store = RedisStore(client=redis.Redis(connection_pool=pool), prefix=_prefix())
    engine = make_engine()
    _, cookie = drive(request(engine, None, a=1), store)
    sid = cookie_id(cookie)
    drive(request(engine, sid), store)  # warm the script cache
    before = CountingConnection.sent
    drive(request(engine, sid), store)
    assert CountingConnection.sent - before == 1
    before = CountingConnection.sent
    drive(request(engine, sid, b=2), store)
    assert CountingConnection.sent - before == 2
    store.delete(ids.store_key(sid or ""))
    store.close()
    pool.disconnect()


async def test_a_due_refresh_costs_one_more_round_trip(redis_url: str) -> None:
    """A read is one HGETALL; the throttled "last seen" refresh is a second round trip,
    made only when due (so at most once per refresh interval per session), on both paths."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    apool = redis.asyncio.ConnectionPool.from_url(
        redis_url, connection_class=CountingAsyncConnection
    )
    store = RedisStore(
        client=redis.Redis(connection_pool=pool),
        async_client=redis.asyncio.Redis(connection_pool=apool),
        prefix=_prefix(),
    )
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    await store.aload(key, meta.last_seen + 100, refresh_after=60)  # loads TOUCH's script
    store.load(key, meta.last_seen + 200, refresh_after=60)
    paths: list[type[CountingConnection] | type[CountingAsyncConnection]] = [
        CountingConnection,
        CountingAsyncConnection,
    ]
    for step, counter in enumerate(paths * 2):
        now = meta.last_seen + 300 + 100 * step
        before = counter.sent
        if counter is CountingConnection:
            record = store.load(key, now, refresh_after=60)
        else:
            record = await store.aload(key, now, refresh_after=60)
        assert record is not None
        assert counter.sent - before == 2  # HGETALL, then the due refresh
        assert record.refreshed
        assert record.meta.last_seen == now
        before = counter.sent
        if counter is CountingConnection:
            again = store.load(key, now + 59, refresh_after=60)
        else:
            again = await store.aload(key, now + 59, refresh_after=60)
        assert again is not None
        assert counter.sent - before == 1  # refreshed 59 s ago: not due
        assert not again.refreshed
        assert again.meta.last_seen == now
        assert dict(again.data) == {"a": "1"}
    store.delete(key)
    store.close()
    await store.aclose()
    pool.disconnect()
    await apool.disconnect()


# -- faults ------------------------------------------------------------------------------------


async def test_stopped_server_gives_503_and_recovers(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, socket_timeout=0.5, connect_timeout=0.5)
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        assert (await c.get("/incr")).json() == {"n": 1}
        private_redis.stop()
        down = await c.get("/read")
        assert down.status_code == 503
        assert "Traceback" not in down.text
        assert (await c.get("/incr", headers={"cookie": "x=1"})).status_code == 503
        private_redis.start()  # an empty server: the old session is gone, fail closed
        assert (await c.get("/read")).json()["n"] is None
        assert (await c.get("/incr")).json() == {"n": 1}
    await store.aclose()


async def test_hung_server_times_out_to_503_and_recovers(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, socket_timeout=0.3, connect_timeout=0.3)
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        private_redis.pause()
        try:
            started = asyncio.get_running_loop().time()
            down = await c.get("/incr")
            elapsed = asyncio.get_running_loop().time() - started
        finally:
            private_redis.resume()
        assert down.status_code == 503
        assert elapsed < 5
        assert (await c.get("/incr")).json() == {"n": 2}  # nothing was half-written
    await store.aclose()


def test_sync_path_translates_errors(private_redis: RedisServer) -> None:
    store = RedisStore(private_redis.url, socket_timeout=0.3, connect_timeout=0.3)
    private_redis.stop()
    with pytest.raises(StoreUnavailable) as info:
        store.load(ids.store_key(ids.new_session_id()), 0)
    assert isinstance(info.value.original, redis.ConnectionError)


def test_sentinel_failover_keeps_sessions_working(private_sentinel: SentinelSetup) -> None:
    """Sessions written before a failover (and replicated) are there after it, and new
    writes go to the new primary."""
    store = RedisStore(private_sentinel.url, socket_timeout=1, connect_timeout=1)
    engine = make_engine()
    _, cookie = drive(request(engine, None, before="failover"), store)
    sid = cookie_id(cookie)
    redis_cli_wait = redis.Redis(port=private_sentinel.primary.port)
    assert redis_cli_wait.execute_command("WAIT", 1, 2000) == 1  # type: ignore[no-untyped-call]
    redis_cli_wait.close()
    private_sentinel.failover()
    session = None
    for _ in range(20):  # the client may meet the demoted primary once before it learns
        try:
            session, _ = drive(request(engine, sid, after="failover"), store)
            break
        except StoreUnavailable:
            import time

            time.sleep(0.25)
    assert session is not None
    assert session["before"] == "failover"
    assert drive(request(engine, sid), store)[0]["after"] == "failover"
    store.close()


async def test_round_trips_of_a_login_without_a_cookie(
    counted: tuple[httpx.AsyncClient, RedisStore],
) -> None:
    """The login scenario of benchmarks/bench_table.py (no cookie; a user with no other
    session, as the fixture's prefix is fresh): one round trip, as the benchmark's floor
    makes one SET (0.1: four; the record and its index entry in two calls, then a
    listing of two). The "three" of a login from an existing session above include the
    load of the old record and its deletion."""
    client, _ = counted
    client.cookies.clear()
    assert await round_trips(client, "/login") == 1


async def test_async_commands_packed_in_c_reach_redis_intact(redis_url: str) -> None:
    """The asyncio connections pack commands with hiredis (issue 12): every kind of
    argument arrives as redis-py's own packer would send it, multi-word commands
    included, and what neither accepts fails as redis-py fails."""
    from satchel.stores.redis.pools import _Packing

    store = RedisStore(redis_url, prefix=_prefix())
    client = store.async_client
    assert issubclass(client.connection_pool.connection_class, _Packing)
    key = store.prefix + "packed"
    try:
        await client.hset(key, mapping={"s": "é ✓", "b": b"\x00\xff", "i": 10**20, "f": 0.1})
        assert await client.hgetall(key) == {
            b"s": "é ✓".encode(),
            b"b": b"\x00\xff",
            b"i": b"100000000000000000000",
            b"f": b"0.1",
        }
        assert await client.execute_command("CONFIG GET", "maxmemory-policy")
        with pytest.raises(redis.exceptions.DataError):
            await client.set(key + "x", True)
    finally:
        await client.delete(key)
        await store.aclose()


def test_sync_commands_packed_in_one_c_call_reach_redis_intact(redis_url: str) -> None:
    """The sync connections pack with hiredis without redis-py's Python pass over the
    arguments (issue 12): every kind of argument arrives as redis-py's own packer sends
    it; multi-word commands, bytearray and memoryview arguments, and what neither
    accepts, go to redis-py's packer."""
    from satchel.stores.redis.pools import _HiredisPacker

    store = RedisStore(redis_url, prefix=_prefix())
    client = store.client
    key = store.prefix + "packed"
    try:
        assert client.ping()
        connection = client.connection_pool.get_connection()
        assert isinstance(connection._command_packer, _HiredisPacker)
        client.connection_pool.release(connection)
        client.hset(key, mapping={"s": "é ✓", "b": b"\x00\xff", "i": 10**20, "f": 0.1})
        client.hset(key, mapping={"ba": bytearray(b"\x01"), "mv": memoryview(b"\x02")})
        assert client.hgetall(key) == {
            b"s": "é ✓".encode(),
            b"b": b"\x00\xff",
            b"i": b"100000000000000000000",
            b"f": b"0.1",
            b"ba": b"\x01",
            b"mv": b"\x02",
        }
        assert client.execute_command("CONFIG GET", "maxmemory-policy")
        with pytest.raises(redis.exceptions.DataError):
            client.set(key + "x", True)
    finally:
        client.delete(key)
        store.close()
