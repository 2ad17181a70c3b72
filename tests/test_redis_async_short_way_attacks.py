"""Attacks on the asyncio client's short way (``pools.AsyncClient``) and its pool's
first-come-first-served wait (``pools._FairWait``), through the store's public async
methods and the ASGI middleware, against real Redis servers. Each attack runs on the
short way and on redis-py's own client over the same pool
(``redis.asyncio.Redis.from_pool``)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio.observability import recorder as async_recorder
from starlette.applications import Starlette

from satchel.asgi import SessionMiddleware as AsgiMiddleware
from satchel.errors import StoreUnavailable
from satchel.record import Change, Record
from satchel.stores.redis import RedisStore
from satchel.stores.redis.pools import AsyncClient
from satchel.testing.conformance import _key, _meta

from .conftest import KEY
from .services import RedisServer
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio

WAYS = ["short", "redis_py"]


@pytest.fixture(params=WAYS)
def way(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _prefix() -> str:
    return f"satchel-test-{uuid.uuid4().hex[:8]}:"


def _store(url: str, way: str, **options: Any) -> RedisStore:
    store = RedisStore(url, prefix=_prefix(), **options)
    assert type(store.async_client) is AsyncClient
    if way == "redis_py":
        store._async_client = redis.asyncio.Redis.from_pool(store.async_client.connection_pool)
    return store


@pytest.fixture
async def cleanup() -> AsyncIterator[list[RedisStore]]:
    """The stores a test made: closed (also when it failed) and their keys deleted."""
    made: list[RedisStore] = []
    yield made
    for store in made:
        await store.aclose()
        assert store.url is not None
        client = redis.Redis.from_url(store.url)
        for key in client.scan_iter(match=store.prefix + "*", count=10_000):
            client.delete(key)
        client.close()


def _pool(store: RedisStore) -> Any:
    return store.async_client.connection_pool


def _assert_pool_clean(store: RedisStore) -> None:
    """No call holds a connection, none is pooled twice, none beyond the pool's size."""
    pool = _pool(store)
    assert len(pool._in_use_connections) == 0, "a connection leaked in use"
    free = pool._available_connections
    assert len({id(c) for c in free}) == len(free), "a connection pooled twice"
    assert len(free) <= pool.max_connections


async def _records(store: RedisStore, count: int) -> tuple[list[str], float]:
    """``count`` sessions, each holding its own key as data (a reply read by the wrong
    call shows)."""
    now = time.time()
    keys = [_key() for _ in range(count)]
    for key in keys:
        await store.acreate(key, Record({"k": key}, _meta(now)))
    return keys, now


async def _check(store: RedisStore, key: str, now: float) -> None:
    loaded = await store.aload(key, now + 1)
    assert loaded is not None
    assert loaded.data == {"k": key}


async def _settle(task: asyncio.Task[Any]) -> Any:
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"
    except StoreUnavailable:
        return "unavailable"


# -- cancellation at every await point -----------------------------------------------------


async def test_a_cancel_at_any_step_of_any_call_leaves_the_pool_right(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """A call cancelled after 0, 1, 2, ... event-loop steps (so in the pool, the
    connect, the send, the read, the retry): the next calls on the one connection get
    their own replies, and no connection stays in use."""
    store = _store(redis_url, way, max_connections=1)
    cleanup.append(store)
    keys, now = await _records(store, 4)
    ops: list[Callable[[], Coroutine[Any, Any, Any]]] = [
        lambda: store.aload(keys[0], now + 1),
        lambda: store.aupdate(keys[1], Change(_meta(now), {"k": keys[1]}), now + 1),
        lambda: store.adelete(_key()),
        lambda: store.acreate(_key(), Record({"x": "1"}, _meta(now))),
    ]
    for steps in range(24):
        for op in ops:
            task = asyncio.create_task(op())
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            await _settle(task)
            _assert_pool_clean(store)
            await _check(store, keys[2], now)
            await _check(store, keys[3], now)
            _assert_pool_clean(store)
    await store.aclose()


async def test_wait_for_timeouts_around_store_calls(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """Store calls under ``asyncio.wait_for`` with timeouts shorter than a round trip,
    many at once on a pool of two: those that finish get their own record."""
    store = _store(redis_url, way, max_connections=2)
    cleanup.append(store)
    keys, now = await _records(store, 20)
    rng = random.Random(7)

    async def one(key: str) -> None:
        try:
            loaded = await asyncio.wait_for(store.aload(key, now + 1), rng.random() * 0.003)
        except (TimeoutError, StoreUnavailable):
            return
        assert loaded is not None
        assert loaded.data == {"k": key}

    for _ in range(10):
        await asyncio.gather(*(one(rng.choice(keys)) for _ in range(60)))
        _assert_pool_clean(store)
    for key in keys:
        await _check(store, key, now)
    _assert_pool_clean(store)
    await store.aclose()


@pytest.mark.parametrize("size", [1, 2, 3])
async def test_random_cancellations_on_a_tiny_pool(
    redis_url: str, way: str, size: int, cleanup: list[RedisStore]
) -> None:
    """300 concurrent reads and writes on a pool of 1 to 3, a third cancelled at random
    moments: every call not cancelled succeeds with its own reply, none past the
    deadline; afterwards nothing is in use and the pool serves again."""
    store = _store(redis_url, way, max_connections=size, socket_timeout=2.0)
    cleanup.append(store)
    keys, now = await _records(store, 30)
    rng = random.Random(size)

    async def read(key: str) -> float:
        start = time.monotonic()
        await _check(store, key, now)
        return time.monotonic() - start

    async def write(key: str) -> float:
        start = time.monotonic()
        await store.aupdate(key, Change(_meta(now), {"k": key}), now + 1)
        return time.monotonic() - start

    tasks = [
        asyncio.create_task((read if rng.random() < 0.7 else write)(rng.choice(keys)))
        for _ in range(300)
    ]
    doomed = rng.sample(tasks, 100)
    for task in doomed:
        await asyncio.sleep(rng.random() * 0.002)
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            assert task in doomed
            continue
        assert not isinstance(result, BaseException), repr(result)
        assert result < 2.0
    _assert_pool_clean(store)
    for key in keys[:5]:
        await _check(store, key, now)
    _assert_pool_clean(store)
    await store.aclose()


async def test_deadlines_expiring_everywhere_on_a_tiny_pool(
    private_redis: RedisServer, way: str, cleanup: list[RedisStore]
) -> None:
    """A 20 ms deadline and 400 concurrent calls on one connection: the watchdog cancels
    calls waiting in the pool, connecting, sending and reading. Every call ends within
    its deadline (or soon after: the loop is busy) with its own reply or StoreUnavailable; no
    socket is left open beyond the pool's one; the store then serves normally."""
    store = _store(private_redis.url, way, max_connections=1, socket_timeout=0.02)
    cleanup.append(store)
    keys, now = await _records(store, 10)
    rng = random.Random(5)

    async def one(key: str) -> str:
        start = time.monotonic()
        try:
            await _check(store, key, now)
            outcome = "ok"
        except StoreUnavailable:
            outcome = "unavailable"
        assert time.monotonic() - start < 1.0  # (no hang: 400 tasks on a busy loop; 0.38 s seen)
        return outcome

    outcomes: list[str] = []
    for _ in range(5):
        outcomes += await asyncio.gather(*(one(rng.choice(keys)) for _ in range(400)))
        _assert_pool_clean(store)
    assert "ok" in outcomes
    admin = redis.Redis(port=private_redis.port, host="127.0.0.1")
    clients = [c for c in admin.client_list() if c["name"] != "admin" and c["cmd"] != "client|list"]
    admin.close()
    assert len(clients) <= 1, clients
    store.options["socket_timeout"] = 2.0
    for key in keys:
        await _check(store, key, now)
    _assert_pool_clean(store)
    await store.aclose()


# -- fairness and wake-ups ---------------------------------------------------------------------


async def test_a_waiting_call_is_not_starved_by_newcomers(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """One connection, 20 tasks reading back to back for a second: no read waits anywhere
    near the deadline (a waiting call must not lose the connection to newcomers forever).

    On redis-py's own pool (an ``asyncio.Condition``), a task that frees the connection
    notifies a waiter, then asks again before the woken task runs, finds the connection
    free and takes it: the woken task waits again, at the back. A request that loads
    then saves does just this: 18-19 of 20 readers timed out."""
    store = _store(redis_url, way, max_connections=1, socket_timeout=1.0)
    cleanup.append(store)
    keys, now = await _records(store, 5)
    worst = [0.0]
    errors: list[BaseException] = []
    end = time.monotonic() + 1.0

    async def reader(key: str) -> None:
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                await _check(store, key, now)
            except StoreUnavailable as exc:
                errors.append(exc)
            worst[0] = max(worst[0], time.monotonic() - start)

    await asyncio.gather(*(reader(keys[i % 5]) for i in range(20)))
    assert errors == []
    assert worst[0] < 0.5
    _assert_pool_clean(store)
    await store.aclose()


async def test_a_waiting_call_cancelled_after_its_wake_up_passes_it_on(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """One connection, two calls waiting for it. It comes free and the first waiter is
    woken, then cancelled (its client went away) before it runs: the second waiter must
    get the free connection at once, not at its deadline.

    On redis-py's own pool, Python 3.11's ``asyncio.Condition.wait`` dropped the wake-up
    of a woken task cancelled before it ran, and nothing notified again: the second
    waiter sat until its deadline (StoreUnavailable, "no connection came free") while the
    connection lay idle."""
    store = _store(redis_url, way, max_connections=1, socket_timeout=1.0)
    cleanup.append(store)
    keys, now = await _records(store, 2)
    pool = _pool(store)
    held = await pool.get_connection()
    first = asyncio.create_task(store.aload(keys[0], now + 1))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(_check(store, keys[1], now))
    await asyncio.sleep(0.02)
    await pool.release(held)  # (notifies the first waiter)
    first.cancel()
    start = time.monotonic()
    await _settle(first)
    await second
    assert time.monotonic() - start < 0.3
    _assert_pool_clean(store)
    await store.aclose()


# -- metrics turned on and off mid-run ---------------------------------------------------------


class _Collector:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_metrics_switched_on_and_off_under_load(
    redis_url: str, cleanup: list[RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's metrics turned on and off every millisecond while 200 calls run on a
    pool of two (connections got one way, released the other): all succeed, none leaks."""
    store = _store(redis_url, "short", max_connections=2)
    cleanup.append(store)
    keys, now = await _records(store, 10)
    monkeypatch.setattr(async_recorder, "_async_metrics_collector", None)
    stop = asyncio.Event()

    async def toggle() -> None:
        collector: Any = _Collector()
        while not stop.is_set():
            async_recorder._async_metrics_collector = (
                collector if async_recorder._async_metrics_collector is None else None
            )
            await asyncio.sleep(0.001)

    toggler = asyncio.create_task(toggle())
    rng = random.Random(3)
    await asyncio.gather(*(_check(store, rng.choice(keys), now) for _ in range(200)))
    stop.set()
    await toggler
    async_recorder._async_metrics_collector = None
    _assert_pool_clean(store)
    await store.aclose()


# -- the server frozen, killed, its connections killed ------------------------------------------


async def _load_until(
    store: RedisStore, keys: list[str], now: float, end: float, *, check: bool = True
) -> list[Any]:
    """Reads in a loop until ``end``: (duration, outcome) of each."""
    seen: list[Any] = []
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            if check:
                await _check(store, random.choice(keys), now)
            else:
                await store.aload(random.choice(keys), now + 1)
            outcome = "ok"
        except StoreUnavailable:
            outcome = "unavailable"
        seen.append((time.monotonic() - start, outcome))
    return seen


async def test_a_frozen_server_gives_prompt_errors_and_recovery(
    private_redis: RedisServer, way: str, cleanup: list[RedisStore]
) -> None:
    store = _store(private_redis.url, way, max_connections=2, socket_timeout=0.3)
    cleanup.append(store)
    keys, now = await _records(store, 5)
    end = time.monotonic() + 0.3
    loaders = [asyncio.create_task(_load_until(store, keys, now, end)) for _ in range(20)]
    await asyncio.sleep(0.1)
    private_redis.pause()
    try:
        seen = await asyncio.wait_for(asyncio.gather(*loaders), timeout=5)
    finally:
        private_redis.resume()
    flat = [s for run in seen for s in run]
    assert any(outcome == "unavailable" for _, outcome in flat)
    assert max(duration for duration, _ in flat) < 0.3 + 0.15
    _assert_pool_clean(store)
    for key in keys:  # the server back: every call answers again, right
        await _check(store, key, now)
    _assert_pool_clean(store)
    await store.aclose()


async def test_a_killed_and_restarted_server(
    private_redis: RedisServer, way: str, cleanup: list[RedisStore]
) -> None:
    store = _store(private_redis.url, way, max_connections=3, socket_timeout=0.5)
    cleanup.append(store)
    _, now = await _records(store, 1)
    end = time.monotonic() + 0.6
    loaders = [
        asyncio.create_task(_load_until(store, [_key()], now, end, check=False)) for _ in range(20)
    ]
    await asyncio.sleep(0.1)
    private_redis.stop()
    await asyncio.sleep(0.2)
    private_redis.start()
    seen = await asyncio.wait_for(asyncio.gather(*loaders), timeout=5)
    flat = [s for run in seen for s in run]
    assert max(duration for duration, _ in flat) < 0.5 + 0.15
    _assert_pool_clean(store)
    keys, now = await _records(store, 5)  # (the restarted server is empty)
    for key in keys:
        await _check(store, key, now)
    _assert_pool_clean(store)
    await store.aclose()


async def test_client_kill_of_pooled_connections_under_load(
    private_redis: RedisServer, way: str, cleanup: list[RedisStore]
) -> None:
    """Every connection killed by the server five times while 20 tasks read on a pool of
    three: no wrong reply, no exception but StoreUnavailable, nothing leaked."""
    store = _store(private_redis.url, way, max_connections=3, socket_timeout=1.0)
    cleanup.append(store)
    keys, now = await _records(store, 10)
    admin = redis.asyncio.Redis(port=private_redis.port, host="127.0.0.1")
    end = time.monotonic() + 0.6
    loaders = [asyncio.create_task(_load_until(store, keys, now, end)) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0.1)
        await admin.client_kill_filter(_type="normal", skipme=True)
    seen = await asyncio.wait_for(asyncio.gather(*loaders), timeout=5)
    assert sum(1 for run in seen for _, outcome in run if outcome == "ok") > 50
    _assert_pool_clean(store)
    for key in keys:
        await _check(store, key, now)
    await admin.aclose()
    await store.aclose()


async def test_stray_replies_on_pooled_connections_under_load(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """Pooled connections left with unread replies, again and again, while calls run:
    no call reads another's reply."""
    store = _store(redis_url, way, max_connections=3)
    cleanup.append(store)
    keys, now = await _records(store, 10)
    pool = _pool(store)
    end = time.monotonic() + 0.5

    async def spoil() -> None:
        while time.monotonic() < end:
            connection = await pool.get_connection()
            await connection.send_command("HGETALL", store.hash_key(keys[0]))
            await asyncio.sleep(0.005)
            await pool.release(connection)
            await asyncio.sleep(0.01)

    seen = await asyncio.gather(spoil(), *(_load_until(store, keys, now, end) for _ in range(10)))
    assert all(outcome == "ok" for run in seen[1:] for _, outcome in run)
    _assert_pool_clean(store)
    await store.aclose()


# -- the ASGI middleware, clients going away mid-request ----------------------------------------


async def test_asgi_clients_disconnecting_mid_request(
    redis_url: str, way: str, cleanup: list[RedisStore]
) -> None:
    """200 requests on a pool of two, a third of them abandoned at random moments (the
    request task cancelled, as a server does when the client goes away); then one client's
    counter still counts right and nothing is in use."""
    store = _store(redis_url, way, max_connections=2)
    cleanup.append(store)
    app = AsgiMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    rng = random.Random(11)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        tasks = [asyncio.create_task(c.get("/incr")) for _ in range(200)]
        for task in rng.sample(tasks, 70):
            await asyncio.sleep(rng.random() * 0.002)
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                assert isinstance(result, asyncio.CancelledError), repr(result)
            else:
                assert result.status_code == 200
        _assert_pool_clean(store)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        for n in range(1, 6):
            reply = await c.get("/incr")
            assert reply.json() == {"n": n}
    _assert_pool_clean(store)
    await store.aclose()
