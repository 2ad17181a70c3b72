"""The Redis store under faults, against real private servers: a Sentinel failover whose
old primary stays reachable, more concurrent calls than the pool holds, and a frozen
server. The figures these tests print (run with ``-s``) are the ones in docs/stores.md."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette

from satchel import ConfigurationError, StoreError, StoreUnavailable, ids
from satchel.asgi import SessionMiddleware as AsgiMiddleware
from satchel.ops import adrive, drive
from satchel.record import Change
from satchel.stores.redis import RedisStore, from_url
from satchel.testing.conformance import cookie_id, request
from satchel.wsgi import SessionMiddleware as WsgiMiddleware

from .conftest import KEY
from .helpers import loads_back_to_back, make_engine
from .services import ClusterSetup, RedisServer, SentinelSetup, redis_cli, wait_for
from .test_asgi import ROUTES
from .test_wsgi import app as wsgi_app

pytestmark = pytest.mark.anyio

# A store that has not followed the new primary this long after Sentinel announced it is
# broken (0.1 kept writing to the old one until Sentinel demoted it, about 10 s).
FOLLOW_BOUND = 3.0


def _prefix() -> str:
    return f"satchel-test-{uuid.uuid4().hex[:8]}:"


# -- Sentinel failover with the old primary still reachable ------------------------------------


@dataclass
class FailoverRun:
    """What a writer saw while a failover happened under it."""

    acked: list[tuple[float, str, str]] = field(default_factory=list)  # (when, sid, key)
    errors: int = 0
    announced: float = 0.0  # when Sentinel named the new primary
    lost: list[tuple[float, str, str]] = field(default_factory=list)

    def report(self, label: str) -> str:
        late = [t - self.announced for t, _, _ in self.lost]
        after = sum(1 for t in late if t > 0)
        return (
            f"{label}: {len(self.acked)} acknowledged writes, {len(self.lost)} lost "
            f"({len(self.lost) - after} before Sentinel named the new primary, {after} after), "
            f"{self.errors} errors, last lost write {max(late, default=0):.2f} s after "
            "Sentinel named the new primary"
        )


def _sessions(setup: SentinelSetup, count: int) -> list[str]:
    """Sessions created before the failover and replicated, so the new primary has them
    (through a store without ``wait_replicas``: the WAIT below is the test's own)."""
    store = from_url(setup.url)
    engine = make_engine()
    sids = []
    for _ in range(count):
        _, cookie = drive(request(engine, None, start=True), store)
        sid = cookie_id(cookie)
        assert sid is not None
        sids.append(sid)
    primary = redis.Redis(port=setup.primary.port)
    assert primary.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
    primary.close()
    store.close()
    return sids


def _old_primary_demoted(setup: SentinelSetup) -> bool:
    info = redis_cli(setup.primary.port, "info", "replication")
    return "role:slave" in info and "master_link_status:up" in info


def _demote_old_primary(setup: SentinelSetup) -> None:
    """Make the old primary a replica of the new one, as Sentinel does about 10 s after a
    failover (sooner here, to keep the test short): what it acknowledged alone is gone."""
    new = setup.master_port()
    assert new is not None
    redis_cli(setup.primary.port, "replicaof", "127.0.0.1", str(new))
    wait_for(lambda: _old_primary_demoted(setup), "old primary demoted", timeout=30)


def _count_lost(setup: SentinelSetup, store: RedisStore, run: FailoverRun) -> None:
    new = setup.master_port()
    assert new is not None
    assert new != setup.primary.port
    client = redis.Redis(port=new)
    for when, sid, key in run.acked:
        if client.hget(store.hash_key(ids.store_key(sid)), "d:" + key) is None:
            run.lost.append((when, sid, key))
    client.close()


def _failover_under_sync_writes(setup: SentinelSetup, url: str) -> FailoverRun:
    store = from_url(url)
    sids = _sessions(setup, 10)
    engine = make_engine()
    run = FailoverRun()
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            sid, key = sids[i % len(sids)], f"w{i}"
            i += 1
            try:
                drive(request(engine, sid, **{key: i}), store)
            except StoreError:
                run.errors += 1
                time.sleep(0.01)
                continue
            run.acked.append((time.monotonic(), sid, key))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        setup.failover()
        run.announced = time.monotonic()
        time.sleep(FOLLOW_BOUND + 1)
    finally:
        stop.set()
        thread.join()
    _demote_old_primary(setup)
    _count_lost(setup, store, run)
    store.close()
    return run


async def _failover_under_async_writes(setup: SentinelSetup, url: str) -> FailoverRun:
    store = from_url(url)
    sids = _sessions(setup, 10)
    engine = make_engine()
    run = FailoverRun()
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = n
        while not stop.is_set():
            sid, key = sids[i % len(sids)], f"w{i}"
            i += 4
            try:
                await adrive(request(engine, sid, **{key: i}), store)
            except StoreError:
                run.errors += 1
                await asyncio.sleep(0.01)
                continue
            run.acked.append((time.monotonic(), sid, key))

    tasks = [asyncio.create_task(writer(n)) for n in range(4)]
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(setup.failover)
        run.announced = time.monotonic()
        await asyncio.sleep(FOLLOW_BOUND + 1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    await asyncio.to_thread(_demote_old_primary, setup)
    _count_lost(setup, store, run)
    await store.aclose()
    store.close()
    return run


def _assert_followed(run: FailoverRun) -> None:
    late = [t - run.announced for t, _, _ in run.lost if t - run.announced > FOLLOW_BOUND]
    assert not late, f"{len(late)} writes acknowledged by the old primary were lost"


def test_sync_store_follows_the_new_primary_after_failover(
    private_sentinel: SentinelSetup,
) -> None:
    run = _failover_under_sync_writes(private_sentinel, private_sentinel.url)
    print("\n" + run.report("sync, default"))
    assert run.acked
    _assert_followed(run)


async def test_async_store_follows_the_new_primary_after_failover(
    private_sentinel: SentinelSetup,
) -> None:
    run = await _failover_under_async_writes(private_sentinel, private_sentinel.url)
    print("\n" + run.report("async, default"))
    assert run.acked
    _assert_followed(run)


def test_wait_replicas_loses_no_acknowledged_write_in_a_failover(
    private_sentinel: SentinelSetup,
) -> None:
    url = private_sentinel.url + "?wait_replicas=1&wait_timeout=0.5"
    run = _failover_under_sync_writes(private_sentinel, url)
    print("\n" + run.report("sync, wait_replicas=1"))
    assert run.acked
    assert run.lost == []


async def test_async_wait_replicas_loses_no_acknowledged_write_in_a_failover(
    private_sentinel: SentinelSetup,
) -> None:
    url = private_sentinel.url + "?wait_replicas=1&wait_timeout=0.5"
    run = await _failover_under_async_writes(private_sentinel, url)
    print("\n" + run.report("async, wait_replicas=1"))
    assert run.acked
    assert run.lost == []


# -- the pool waits for a connection -----------------------------------------------------------


async def test_async_pool_waits_rather_than_refusing(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=4)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(200)]
    replies = await asyncio.gather(*(store.aload(k, time.time()) for k in keys))
    assert replies == [None] * 200
    await store.aclose()


async def test_asgi_requests_beyond_the_pool_size_all_succeed(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=3)
    app = AsgiMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        replies = await asyncio.gather(*(c.get("/incr") for _ in range(60)))
    assert [r.status_code for r in replies] == [200] * 60
    await store.aclose()


def test_sync_pool_waits_rather_than_refusing(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=2)
    failures: list[BaseException] = []
    barrier = threading.Barrier(12)

    def calls() -> None:
        barrier.wait()
        for _ in range(50):
            try:
                store.load(ids.store_key(ids.new_session_id()), time.time())
            except StoreError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    store.close()


def test_sync_pool_serves_waiting_threads_first_come_first_served(redis_url: str) -> None:
    """One connection, 20 threads reading back to back for a second: no read waits
    anywhere near its deadline. (On LifoQueue's condition a thread that returned the
    connection and asked again took it back before the notified waiter woke: some reads
    waited out their whole second and failed.)"""
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=1, socket_timeout=1.0)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    failures, worst = loads_back_to_back(lambda key: store.load(key, time.time()), keys)
    assert failures == []
    assert worst < 0.5
    store.close()


def test_sentinel_pool_serves_waiting_threads_first_come_first_served(
    private_sentinel: SentinelSetup,
) -> None:
    """As above, through Sentinel's pool."""
    store = RedisStore(private_sentinel.url, max_connections=1, socket_timeout=1.0)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    failures, worst = loads_back_to_back(lambda key: store.load(key, time.time()), keys)
    assert failures == []
    assert worst < 0.5
    store.close()


async def test_sentinel_async_pool_serves_waiting_tasks_first_come_first_served(
    private_sentinel: SentinelSetup,
) -> None:
    """One connection through Sentinel's asyncio pool, 20 tasks loading back to back for a
    second: none near its deadline (redis-py's pool let a task that freed the connection
    take it back from the task it woke)."""
    store = RedisStore(private_sentinel.url, max_connections=1, socket_timeout=1.0)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    failures: list[BaseException] = []
    worst = [0.0]
    end = time.monotonic() + 1.0

    async def reader(key: str) -> None:
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                await store.aload(key, time.time())
            except StoreError as exc:
                failures.append(exc)
            worst[0] = max(worst[0], time.monotonic() - started)

    await asyncio.gather(*(reader(keys[i % 5]) for i in range(20)))
    assert failures == []
    assert worst[0] < 0.5
    await store.aclose()


def test_sync_pool_exhausted_within_the_timeout_is_store_unavailable(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=1, socket_timeout=0.3)
    held = store.client.connection_pool.get_connection()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="pool") as info:
        store.load(ids.store_key(ids.new_session_id()), time.time())
    assert time.monotonic() - started < 0.3 * 1.5
    assert "max_connections=1" in str(info.value)
    store.client.connection_pool.release(held)
    store.close()


async def test_async_pool_exhausted_within_the_timeout_is_store_unavailable(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, prefix=_prefix(), max_connections=1, socket_timeout=0.3)
    pool = store.async_client.connection_pool
    held = await pool.get_connection()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="pool") as info:
        await store.aload(ids.store_key(ids.new_session_id()), time.time())
    assert time.monotonic() - started < 0.3 * 1.5
    assert "max_connections=1" in str(info.value)
    await pool.release(held)
    await store.aclose()


# -- a frozen server: the whole call is bounded by the timeout ---------------------------------

TIMEOUT = 0.5


@pytest.fixture
def frozen(private_redis: RedisServer) -> Iterator[RedisServer]:
    yield private_redis
    private_redis.resume()


def _timed_wsgi(store: RedisStore, server: RedisServer) -> float:
    wrapped = WsgiMiddleware(wsgi_app, store=store, secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        assert c.get("/incr").status_code == 200
        server.pause()
        started = time.monotonic()
        down = c.get("/incr")
        elapsed = time.monotonic() - started
        server.resume()
    assert down.status_code == 503
    return elapsed


async def _timed_asgi(store: RedisStore, server: RedisServer) -> float:
    wrapped = AsgiMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        assert (await c.get("/incr")).status_code == 200
        server.pause()
        started = time.monotonic()
        down = await c.get("/incr")
        elapsed = time.monotonic() - started
        server.resume()
    assert down.status_code == 503
    return elapsed


def test_wsgi_request_on_a_frozen_redis_answers_503_within_the_timeout(
    frozen: RedisServer,
) -> None:
    store = RedisStore(frozen.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = _timed_wsgi(store, frozen)
    print(f"\nWSGI, frozen Redis, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    store.close()


async def test_asgi_request_on_a_frozen_redis_answers_503_within_the_timeout(
    frozen: RedisServer,
) -> None:
    store = RedisStore(frozen.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = await _timed_asgi(store, frozen)
    print(f"\nASGI, frozen Redis, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    await store.aclose()


def test_wsgi_request_on_a_frozen_sentinel_primary_answers_503_within_the_timeout(
    private_sentinel: SentinelSetup,
) -> None:
    store = RedisStore(private_sentinel.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = _timed_wsgi(store, private_sentinel.primary)
    print(f"\nWSGI, frozen Sentinel primary, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    store.close()


async def test_asgi_request_on_a_frozen_sentinel_primary_answers_503_within_the_timeout(
    private_sentinel: SentinelSetup,
) -> None:
    store = RedisStore(private_sentinel.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = await _timed_asgi(store, private_sentinel.primary)
    print(f"\nASGI, frozen Sentinel primary, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    await store.aclose()
    store.close()


class _Frozen:
    """All of a cluster's nodes, frozen and resumed together."""

    def __init__(self, cluster: ClusterSetup) -> None:
        self.nodes = cluster.nodes

    def pause(self) -> None:
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()


def test_wsgi_request_on_a_frozen_cluster_answers_503_within_the_timeout(
    private_cluster: ClusterSetup,
) -> None:
    """0.1: 2.0 s for a 0.5 s timeout (the command's timeout, then one per node for the
    topology refresh redis-py runs after it)."""
    store = RedisStore(private_cluster.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = _timed_wsgi(store, _Frozen(private_cluster))  # type: ignore[arg-type]
    print(f"\nWSGI, frozen Cluster, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    store.close()


async def test_asgi_request_on_a_frozen_cluster_answers_503_within_the_timeout(
    private_cluster: ClusterSetup,
) -> None:
    store = RedisStore(private_cluster.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    elapsed = await _timed_asgi(store, _Frozen(private_cluster))  # type: ignore[arg-type]
    print(f"\nASGI, frozen Cluster, timeout {TIMEOUT} s: 503 after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    await store.aclose()
    store.close()


def test_a_frozen_sentinel_does_not_slow_calls(private_sentinel: SentinelSetup) -> None:
    """The store asks Sentinel for the primary in the background: with Sentinel frozen,
    calls go on at full speed to the primary it last named."""
    store = RedisStore(private_sentinel.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    key = ids.store_key(ids.new_session_id())
    store.load(key, time.time())
    private_sentinel.sentinel.send_signal(signal.SIGSTOP)
    try:
        slowest = 0.0
        for _ in range(10):  # spans several check intervals
            started = time.monotonic()
            store.load(key, time.time())
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
    finally:
        private_sentinel.sentinel.send_signal(signal.SIGCONT)
    assert slowest < TIMEOUT / 2
    store.close()


async def test_a_frozen_sentinel_does_not_slow_async_calls(
    private_sentinel: SentinelSetup,
) -> None:
    store = RedisStore(private_sentinel.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    key = ids.store_key(ids.new_session_id())
    await store.aload(key, time.time())
    private_sentinel.sentinel.send_signal(signal.SIGSTOP)
    try:
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            await store.aload(key, time.time())
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.1)
    finally:
        private_sentinel.sentinel.send_signal(signal.SIGCONT)
    assert slowest < TIMEOUT / 2
    await store.aclose()


# -- what a timed-out write does once the server resumes ---------------------------------------


def _frozen_write(server: RedisServer, store: RedisStore, op: str) -> bool:
    """Run one write with the server frozen (it times out: StoreUnavailable), resume the
    server, and tell whether the write landed anyway."""
    engine = make_engine()
    _, cookie = drive(request(engine, None, n=1), store)
    drive(request(engine, cookie_id(cookie), n=2), store)  # a server that has the scripts
    store.index_add("bob", "x", time.time() + 60)
    _, cookie = drive(request(engine, None, n=1), store)
    sid = cookie_id(cookie)
    assert sid is not None
    key = ids.store_key(sid)
    record = store.load(key, time.time())
    assert record is not None
    new_key = ids.store_key(ids.new_session_id())
    store.create_indexed(ids.store_key(ids.new_session_id()), record, "bob")  # the script
    writes: dict[str, Callable[[], object]] = {
        "create": lambda: store.create(new_key, record),
        "create_indexed": lambda: store.create_indexed(new_key, record, "alice"),
        "update": lambda: store.update(
            key, Change(record.meta, {"n": record.data["n"] + "0"}), time.time()
        ),
        "delete": lambda: store.delete(key),
        "index_add": lambda: store.index_add("alice", key, record.meta.absolute_deadline),
    }
    server.pause()
    try:
        with pytest.raises(StoreUnavailable):
            writes[op]()
    finally:
        server.resume()
    time.sleep(0.2)  # let the resumed server work through what it had received
    after = store.load(key, time.time())
    if op == "create":
        return store.load(new_key, time.time()) is not None
    if op == "update":
        return after is not None and after.data["n"] != record.data["n"]
    if op == "delete":
        return after is None
    raw = redis.Redis.from_url(server.url)
    filed = new_key if op == "create_indexed" else key
    indexed = raw.zscore(store.index_key("alice"), filed) is not None
    raw.close()
    if op == "create_indexed":
        return indexed and store.load(new_key, time.time()) is not None
    return indexed


@pytest.mark.parametrize("op", ["create", "create_indexed", "update", "delete", "index_add"])
def test_a_timed_out_write_lands_when_the_server_resumes(frozen: RedisServer, op: str) -> None:
    """What docs/stores.md says: a write that timed out (a 503) had been sent, and the
    server applies it when it resumes. (No Redis command can be withdrawn once sent.)"""
    store = RedisStore(frozen.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    assert _frozen_write(frozen, store, op)
    store.close()


def test_a_503_increment_is_applied_when_the_server_resumes(frozen: RedisServer) -> None:
    """Through HTTP: the increment that answered 503 is there once Redis resumes."""
    store = RedisStore(frozen.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    wrapped = WsgiMiddleware(wsgi_app, store=store, secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        assert c.get("/incr").text == "1"
        assert c.get("/incr").text == "2"  # the server has the update script now
        # Freeze between the load and the write: the load answers, the write times out.
        original = store.update

        def update_frozen(*args: Any) -> Any:
            frozen.pause()
            return original(*args)

        store.update = update_frozen  # type: ignore[method-assign,assignment]
        assert c.get("/incr").status_code == 503
        frozen.resume()
        store.update = original  # type: ignore[method-assign]
        time.sleep(0.2)
        assert c.get("/read").text == "(3, None)"
    store.close()


def test_wait_replicas_short_of_replicas_is_503_yet_the_write_is_on_the_primary(
    private_redis: RedisServer,
) -> None:
    """A primary without the replicas asked for: WAIT times out, the write is refused as
    StoreUnavailable (a 503), and yet it is on the primary, as docs/stores.md says."""
    store = from_url(private_redis.url + "?wait_replicas=1&wait_timeout=0.05")
    engine = make_engine()
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        drive(request(engine, None, n=1), store)
    raw = redis.Redis.from_url(private_redis.url)
    assert len(raw.keys(store.prefix + "s:*")) == 1
    raw.close()
    store.close()


async def test_async_wait_replicas_short_of_replicas_is_503(private_redis: RedisServer) -> None:
    store = from_url(private_redis.url + "?wait_replicas=1&wait_timeout=0.05")
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        await adrive(request(make_engine(), None, n=1), store)
    await store.aclose()


def test_redis_url_options(redis_url: str) -> None:
    store = from_url(
        redis_url + "?max_connections=7&wait_replicas=2&wait_timeout=0.25"
        "&sentinel_check_interval=0.5&socket_timeout=1"
    )
    assert store.options["max_connections"] == 7
    assert store.client.connection_pool.max_connections == 7
    assert store.client.connection_pool.timeout == 1
    assert store.wait_replicas == 2
    assert store.wait_ms == 250
    assert store.options["sentinel_check_interval"] == 0.5
    store.close()


@pytest.mark.parametrize(
    "query",
    [
        "wait_replicas=1&wait_timeout=2&socket_timeout=2",  # WAIT must fit in the timeout
        "wait_replicas=-1",
        "max_connections=0",
        "socket_timeout=0",
        "sentinel_check_interval=0",
    ],
)
def test_redis_url_options_out_of_range_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError):
        from_url("redis://127.0.0.1:6379/0?" + query)


def test_wait_replicas_is_refused_on_cluster() -> None:
    with pytest.raises(ConfigurationError, match="Cluster"):
        from_url("redis+cluster://127.0.0.1:7000?wait_replicas=1")


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_frozen_sentinel_fails_a_new_connection_within_the_timeout(
    private_sentinel: SentinelSetup, path: str
) -> None:
    """A store with no connection yet must ask Sentinel for the primary: a frozen Sentinel
    costs at most the call's timeout, not one per Sentinel and per retry."""
    store = RedisStore(private_sentinel.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    key = ids.store_key(ids.new_session_id())
    private_sentinel.sentinel.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await (
                asyncio.to_thread(store.load, key, time.time())
                if path == "sync"
                else store.aload(key, time.time())
            )
        elapsed = time.monotonic() - started
    finally:
        private_sentinel.sentinel.send_signal(signal.SIGCONT)
    print(f"\n{path}, frozen Sentinel, new connection: StoreUnavailable after {elapsed:.2f} s")
    assert elapsed < TIMEOUT * 1.5
    await store.aclose()
    store.close()
