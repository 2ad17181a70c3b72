"""The Redis store's own sync client (issue 12, Flask): RESP2, and the short way of the
store's commands through redis-py's pool and client, against a real server."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.observability import recorder as async_recorder
from redis.connection import Connection
from redis.observability import recorder

from satchel.errors import StoreUnavailable
from satchel.record import Change, Record
from satchel.stores.redis import RedisStore
from satchel.stores.redis.pools import AsyncClient, Client
from satchel.testing.conformance import _key, _meta


@pytest.fixture(autouse=True)
def _no_leaked_connections() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    prefix = f"satchel-test-{uuid.uuid4().hex[:8]}:"
    made = RedisStore(redis_url, prefix=prefix)
    yield made
    made.close()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=10_000):
        client.delete(key)
    client.close()


def _write_and_read(store: RedisStore) -> None:
    """A record made, loaded, updated (the fast path) and loaded again, intact."""
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    loaded = store.load(key, meta.last_seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "1"}
    now = meta.last_seen + 2
    meta = loaded.meta._replace(last_seen=now)
    store.update(key, Change(meta, {"a": "2", "b": "3"}, frozenset({"c"}), base=loaded.meta), now)
    again = store.load(key, now + 1)
    assert again is not None
    assert again.data == {"a": "2", "b": "3"}
    assert again.meta.version == loaded.meta.version + 1


def _protocol(client: Any) -> Any:
    connection = client.connection_pool.get_connection()
    try:
        return connection.protocol
    finally:
        client.connection_pool.release(connection)


def test_the_store_s_own_client_speaks_resp2(store: RedisStore) -> None:
    """RESP3 answers HGETALL with a map, which hiredis builds one popitem() per field."""
    assert _protocol(store.client) == 2
    _write_and_read(store)


def test_a_url_asking_for_resp3_gets_it(redis_url: str) -> None:
    store = RedisStore(redis_url + "?protocol=3", prefix=f"satchel-test-{uuid.uuid4().hex[:8]}:")
    assert _protocol(store.client) == 3
    _write_and_read(store)
    store.close()


def test_the_store_s_commands_go_the_short_way(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HGETALL, EVALSHA and DEL skip redis-py's _execute_command (its metrics calls, off,
    cost about 700 bytecodes a request); any other command goes through it."""
    assert type(store.client) is Client
    through: list[Any] = []
    original: Any = redis.Redis._execute_command

    def counted(self: Any, *args: Any, **options: Any) -> Any:
        through.append(args[0])
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "_execute_command", counted)
    _write_and_read(store)
    store.delete(_key())
    assert through == []
    store.client.ping()
    assert through == ["PING"]


def test_round_trips_on_the_short_way(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read is one command, a write one (the script loaded)."""
    sent: list[Any] = []
    original: Any = Connection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> Any:
        sent.append(command)
        return original(self, command, check_health)

    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    loaded = store.load(key, meta.last_seen + 1)
    assert loaded is not None
    seen = meta.last_seen + 2
    change = Change(loaded.meta._replace(last_seen=seen), {"a": "2"}, base=loaded.meta)
    store.update(key, change, meta.last_seen + 2)  # (loads the script)
    loaded = store.load(key, meta.last_seen + 3)
    assert loaded is not None
    monkeypatch.setattr(Connection, "send_packed_command", counted)
    loaded = store.load(key, meta.last_seen + 3)
    assert loaded is not None
    assert len(sent) == 1
    seen = meta.last_seen + 4
    change = Change(loaded.meta._replace(last_seen=seen), {"a": "3"}, base=loaded.meta)
    store.update(key, change, meta.last_seen + 4)
    assert len(sent) == 2


class _Collector:
    """Stands for redis-py's metrics collector: what it was asked to record."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.recorded.append(name)


def test_with_redis_py_metrics_on_the_commands_are_recorded(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short way is only taken while redis-py's metrics are off."""
    collector = _Collector()
    monkeypatch.setattr(recorder, "_metrics_collector", collector)
    assert store.load(_key(), time.time()) is None
    assert "record_operation_duration" in collector.recorded
    assert "record_connection_count" in collector.recorded


def test_a_pooled_connection_holding_unread_data_is_not_used(store: RedisStore) -> None:
    """As in redis-py's pool: a connection with a reply no command asked for is
    reconnected before it is handed out, so no call reads another's reply."""
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    pool = store.client.connection_pool
    connection = pool.get_connection()
    connection.send_command("ECHO", "stray")
    time.sleep(0.05)  # (the reply arrives)
    pool.release(connection)
    loaded = store.load(key, meta.last_seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "1"}


def test_a_connection_the_server_closed_is_replaced(store: RedisStore, redis_url: str) -> None:
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    pool = store.client.connection_pool
    connection = pool.get_connection()
    connection.send_command("CLIENT", "ID")
    client_id = connection.read_response()
    pool.release(connection)
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_id=client_id) == 1
    admin.close()
    loaded = store.load(key, meta.last_seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "1"}


def test_a_lost_reply_is_read_again_for_a_read_never_for_a_write(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short way keeps redis-py's Retry: a read whose connection fails is sent again
    on a new connection, a write is sent once (a lost reply is a 503)."""
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    loaded = store.load(key, meta.last_seen + 1)
    assert loaded is not None
    seen = meta.last_seen + 2
    store.update(key, Change(loaded.meta._replace(last_seen=seen), {"a": "2"}), seen)
    sent: list[Any] = []
    original_send: Any = Connection.send_packed_command
    original_read: Any = Connection.read_response
    lost = [True]

    def send(self: Any, command: Any, check_health: bool = True) -> Any:
        if b"CLIENT" not in command[0]:  # (not a reconnect's own)
            sent.append(command)
        return original_send(self, command, check_health)

    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = original_read(self, *args, **kwargs)
        if lost and lost.pop():
            raise redis.ConnectionError("reply lost")
        return reply

    monkeypatch.setattr(Connection, "send_packed_command", send)
    monkeypatch.setattr(Connection, "read_response", read)
    loaded = store.load(key, seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "2"}
    assert len(sent) == 2  # the HGETALL, again
    sent.clear()
    lost.append(True)
    seen += 2
    with pytest.raises(StoreUnavailable):
        store.update(key, Change(loaded.meta._replace(last_seen=seen), {"a": "3"}), seen)
    assert len(sent) == 1
    monkeypatch.undo()
    again = store.load(key, seen + 1)
    assert again is not None
    assert again.data == {"a": "3"}  # (the write was applied: only its reply was lost)


# -- the asyncio client ----------------------------------------------------------------------


async def _awrite_and_read(store: RedisStore) -> None:
    """:func:`_write_and_read` on the async path."""
    key, meta = _key(), _meta(time.time())
    await store.acreate(key, Record({"a": "1"}, meta))
    loaded = await store.aload(key, meta.last_seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "1"}
    now = meta.last_seen + 2
    meta = loaded.meta._replace(last_seen=now)
    change = Change(meta, {"a": "2", "b": "3"}, frozenset({"c"}), base=loaded.meta)
    await store.aupdate(key, change, now)
    again = await store.aload(key, now + 1)
    assert again is not None
    assert again.data == {"a": "2", "b": "3"}
    assert again.meta.version == loaded.meta.version + 1


@pytest.mark.anyio
async def test_the_async_client_s_commands_go_the_short_way(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HGETALL, EVALSHA and DEL skip redis-py's asyncio execute_command and its pool's
    condition (about 2,500 bytecodes a write request); any other command goes through
    them."""
    assert type(store.async_client) is AsyncClient
    through: list[Any] = []
    original: Any = redis.asyncio.Redis.execute_command
    pooled: list[str] = []
    original_get: Any = redis.asyncio.BlockingConnectionPool.get_connection

    async def counted(self: Any, *args: Any, **options: Any) -> Any:
        through.append(args[0])
        return await original(self, *args, **options)

    async def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        pooled.append("get")
        return await original_get(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counted)
    await _awrite_and_read(store)  # (the first call of each connection opens it)
    monkeypatch.setattr(redis.asyncio.BlockingConnectionPool, "get_connection", get)
    await _awrite_and_read(store)
    await store.adelete(_key())
    assert through == []
    assert pooled == []
    await store.async_client.ping()
    assert through == ["PING"]
    await store.aclose()


@pytest.mark.anyio
async def test_async_round_trips_on_the_short_way(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read is one command, a write one (the script loaded)."""
    sent: list[Any] = []
    original: Any = AsyncConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> Any:
        sent.append(command)
        return await original(self, command, check_health)

    key, meta = _key(), _meta(time.time())
    await store.acreate(key, Record({"a": "1"}, meta))
    loaded = await store.aload(key, meta.last_seen + 1)
    assert loaded is not None
    seen = meta.last_seen + 2
    change = Change(loaded.meta._replace(last_seen=seen), {"a": "2"}, base=loaded.meta)
    await store.aupdate(key, change, seen)  # (loads the script)
    monkeypatch.setattr(AsyncConnection, "send_packed_command", counted)
    loaded = await store.aload(key, meta.last_seen + 3)
    assert loaded is not None
    assert len(sent) == 1
    seen = meta.last_seen + 4
    change = Change(loaded.meta._replace(last_seen=seen), {"a": "3"}, base=loaded.meta)
    await store.aupdate(key, change, seen)
    assert len(sent) == 2
    await store.aclose()


@pytest.mark.anyio
async def test_with_redis_py_async_metrics_on_the_commands_are_recorded(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short way is only taken while redis-py's metrics are off."""
    collector = _Collector()
    monkeypatch.setattr(async_recorder, "_async_metrics_collector", collector)
    assert await store.aload(_key(), time.time()) is None
    assert "record_operation_duration" in collector.recorded
    assert "record_connection_count" in collector.recorded
    await store.aclose()


@pytest.mark.anyio
async def test_a_pooled_async_connection_holding_unread_data_is_not_used(
    store: RedisStore,
) -> None:
    key, meta = _key(), _meta(time.time())
    await store.acreate(key, Record({"a": "1"}, meta))
    pool = store.async_client.connection_pool
    connection = await pool.get_connection()
    await connection.send_command("ECHO", "stray")
    await asyncio.sleep(0.05)  # (the reply arrives)
    await pool.release(connection)
    for _ in range(3):
        loaded = await store.aload(key, meta.last_seen + 1)
        assert loaded is not None
        assert loaded.data == {"a": "1"}
    await store.aclose()


@pytest.mark.anyio
async def test_an_async_connection_the_server_closed_is_replaced(
    store: RedisStore, redis_url: str
) -> None:
    key, meta = _key(), _meta(time.time())
    await store.acreate(key, Record({"a": "1"}, meta))
    pool = store.async_client.connection_pool
    connection = await pool.get_connection()
    await connection.send_command("CLIENT", "ID")
    client_id = await connection.read_response()
    await pool.release(connection)
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_id=client_id) == 1
    admin.close()
    loaded = await store.aload(key, meta.last_seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "1"}
    await store.aclose()


@pytest.mark.anyio
async def test_an_async_lost_reply_is_read_again_for_a_read_never_for_a_write(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, meta = _key(), _meta(time.time())
    await store.acreate(key, Record({"a": "1"}, meta))
    loaded = await store.aload(key, meta.last_seen + 1)
    assert loaded is not None
    seen = meta.last_seen + 2
    await store.aupdate(key, Change(loaded.meta._replace(last_seen=seen), {"a": "2"}), seen)
    sent: list[Any] = []
    original_send: Any = AsyncConnection.send_packed_command
    original_read: Any = AsyncConnection.read_response
    lost = [True]

    async def send(self: Any, command: Any, check_health: bool = True) -> Any:
        if b"CLIENT" not in bytes(command[0] if isinstance(command, list) else command):
            sent.append(command)
        return await original_send(self, command, check_health)

    async def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = await original_read(self, *args, **kwargs)
        if lost and lost.pop():
            raise redis.ConnectionError("reply lost")
        return reply

    monkeypatch.setattr(AsyncConnection, "send_packed_command", send)
    monkeypatch.setattr(AsyncConnection, "read_response", read)
    loaded = await store.aload(key, seen + 1)
    assert loaded is not None
    assert loaded.data == {"a": "2"}
    assert len(sent) == 2  # the HGETALL, again
    sent.clear()
    lost.append(True)
    seen += 2
    with pytest.raises(StoreUnavailable):
        await store.aupdate(key, Change(loaded.meta._replace(last_seen=seen), {"a": "3"}), seen)
    assert len(sent) == 1
    monkeypatch.undo()
    again = await store.aload(key, seen + 1)
    assert again is not None
    assert again.data == {"a": "3"}  # (the write was applied: only its reply was lost)
    await store.aclose()


@pytest.mark.anyio
async def test_a_freed_async_connection_goes_to_the_task_waiting_for_it(
    redis_url: str,
) -> None:
    """With every connection in use, a call waits in redis-py's pool; when one comes free,
    the waiting call gets it before any call that comes later (no call waits forever
    while newcomers take the connections)."""
    store = RedisStore(redis_url, prefix=f"satchel-test-{uuid.uuid4().hex[:8]}:", max_connections=1)
    await store.aload(_key(), time.time())  # (the connection made)
    pool = store.async_client.connection_pool
    held = await pool.get_connection()
    done: list[str] = []

    async def load(name: str) -> None:
        await store.aload(_key(), time.time())
        done.append(name)

    waiting = asyncio.create_task(load("waiting"))
    await asyncio.sleep(0.05)
    assert done == []
    await pool.release(held)
    later = asyncio.create_task(load("later"))
    await asyncio.gather(waiting, later)
    assert done == ["waiting", "later"]
    await store.aclose()
