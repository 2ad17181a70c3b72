"""The Redis store (redis-py): single server, TLS, Sentinel and Cluster; Valkey speaks the
same protocol.

Every operation is one command or one single-key Lua script (:mod:`.scripts`), so it is
atomic, costs one round trip and runs unchanged on Redis Cluster, where a session's keys
and a user's index keys live in different slots. A read is a plain ``HGETALL``, checked for
expiry here; when its throttled "last seen" refresh is due (at most once per
``refresh_after`` per session), the refresh is a second round trip (:data:`.TOUCH`).
Clients come from :mod:`.connect`.
How each call reaches Redis (one deadline, one error translation, writes sent at most
once) is :mod:`.calls`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any

from ...errors import ConfigurationError, KeyCollision
from ...expiry import refresh_due
from ...ids import user_key
from ...record import Change, Meta, Record
from .. import base
from ..base import Store, exported, listed
from .calls import RedisCalls
from .connect import DEFAULT_MAX_CONNECTIONS, DEFAULT_SENTINEL_CHECK, DEFAULT_TIMEOUT
from .scripts import (
    CREATE,
    CREATE_INDEXED,
    INDEX_ADD,
    INDEX_LIST,
    LISTED_FIELDS,
    TOUCH,
    UPDATE,
    ReadMeta,
    create_args,
    create_indexed_args,
    listed_meta,
    live_members,
    number,
    record_of,
    update_args,
)

DEFAULT_PREFIX = "satchel:"


class RedisStore(RedisCalls, Store):
    """``RedisStore("redis://localhost:6379/0")``, or around clients the app already has:
    ``RedisStore(client=redis.Redis(...), async_client=redis.asyncio.Redis(...))``.

    The sync client serves the sync path, the async client the async path; each is made
    from the URL on first use when not given. ``prefix`` starts every key this store
    writes (default ``"satchel:"``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        wait_replicas: int = 0,
        wait_timeout: float | None = None,
        sentinel_check_interval: float = DEFAULT_SENTINEL_CHECK,
    ) -> None:
        if url is None and client is None and async_client is None:
            raise ConfigurationError("RedisStore needs a URL or a client")
        if socket_timeout <= 0 or connect_timeout <= 0 or sentinel_check_interval <= 0:
            raise ConfigurationError("RedisStore timeouts and intervals must be positive")
        if max_connections < 1:
            raise ConfigurationError("RedisStore max_connections must be at least 1")
        if wait_timeout is None:
            wait_timeout = socket_timeout / 2
        if wait_replicas < 0 or not 0 < wait_timeout < socket_timeout:
            raise ConfigurationError(
                "RedisStore wait_replicas must be >= 0 and wait_timeout between 0 and "
                "socket_timeout (the WAIT and the write share the call's timeout)"
            )
        given: list[type] = [type(c) for c in (client, async_client) if c is not None]
        if wait_replicas and (
            (url is not None and url.startswith("redis+cluster:"))
            or any(_is_cluster(kind) for kind in given)  # (a Cluster client of the app's own)
        ):
            raise ConfigurationError("RedisStore wait_replicas is not supported on Redis Cluster")
        self.url = url
        self.prefix = prefix
        self.options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "max_connections": max_connections,
            "sentinel_check_interval": sentinel_check_interval,
        }
        self.wait_replicas = wait_replicas
        self.wait_ms = max(1, int(wait_timeout * 1000))
        self._client = client
        self._async_client = async_client
        self._resources: list[Any] = []  # e.g. Sentinel connections, closed with the store
        self._scripts: dict[str, Any] = {}
        self._async_scripts: dict[str, Any] = {}

    def _create_indexed_call(
        self, key: str, record: Record, user_id: str
    ) -> tuple[list[str], list[str]]:
        return [self.hash_key(key), self.index_key(user_id)], create_indexed_args(key, record)

    @staticmethod
    def _filed(reply: Any) -> int:
        if int(reply) < 0:
            raise KeyCollision("session key collision")
        return int(reply)

    @staticmethod
    def _cluster(client: Any) -> bool:
        """Whether ``client`` spreads keys over several servers (Redis Cluster)."""
        kind: type = type(client)
        return _is_cluster(kind)

    def hash_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def index_key(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_key(user_id)}"

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        name = self.hash_key(key)
        record = _live(self._hgetall(name), now)
        if (
            record is None
            or refresh_after is None
            or not refresh_due(record.meta, now, refresh_after)
        ):
            return record
        if not self._run(TOUCH, [name], [number(now)] * 2):
            return None
        return _refreshed(record, now)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return bool(self._run(TOUCH, [self.hash_key(key)], [number(last_seen), number(now)]))

    def create(self, key: str, record: Record) -> None:
        if not self._write(CREATE, [self.hash_key(key)], create_args(record)):
            raise KeyCollision("session key collision")

    def update(self, key: str, change: Change, now: float) -> int | None:
        keys = [self.hash_key(key)]
        version = self._write(UPDATE, keys, update_args(change, now))
        if version == -1:  # a hash of 0.1's layout: it takes the whole metadata
            version = self._write(UPDATE, keys, update_args(change, now, whole=True))
        return None if version is None else int(version)

    def delete(self, key: str) -> bool:
        return bool(self._write(None, [self.hash_key(key)], []))

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Redis expires sessions by their TTL: nothing to purge."""
        return 0

    def index_add(self, user_id: str, key: str, deadline: float) -> int:
        """Returns how many members the user's index holds after adding (those past their
        deadline dropped): an upper bound of the user's live sessions."""
        args = [number(deadline), key, number(time.time())]
        return int(self._write(INDEX_ADD, [self.index_key(user_id)], args))

    def create_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        """A login: the record and its index entry in one script, one round trip (two
        calls on Cluster, where the index lives in another slot)."""
        if self._cluster(self.client):
            return super().create_indexed(key, record, user_id)
        keys, args = self._create_indexed_call(key, record, user_id)
        return self._filed(self._write(CREATE_INDEXED, keys, args))

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        index = self.index_key(user_id)
        with self._errors():
            members = self._script(INDEX_LIST)(keys=[index], args=[number(now)])
            if not members:
                return []
            pipe = self.client.pipeline(transaction=False)
            for member in members:
                pipe.hmget(self.hash_key(member.decode()), *LISTED_FIELDS)
            live, gone = live_members(user_id, members, pipe.execute(), now)
            if gone:
                self.client.zrem(index, *gone)
        return live

    # -- capabilities (satchel.stores.capabilities): Countable, Listable ----------------------

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._errors(deadline=False):
            names = list(self.client.scan_iter(match=f"{self.prefix}s:*", count=1000))
            for start in range(0, len(names), 500):
                batch = names[start : start + 500]
                pipe = self.client.pipeline(transaction=False)
                for name in batch:
                    pipe.hmget(name, *LISTED_FIELDS)
                rows = [
                    (name.decode()[len(self.prefix) + 2 :], values)
                    for name, values in zip(batch, pipe.execute(), strict=True)
                    if any(value is not None for value in values)  # not expired meanwhile
                ]
                for key, meta in listed(rows, lambda row: listed_meta(row[0])):
                    if meta.expires_at > now:
                        yield key, meta

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        """SCAN (every primary on Cluster), then one pipelined ``HGETALL`` per batch. SCAN
        may name a key twice: each is handed over once."""
        start, seen, size = len(self.prefix) + 2, set(), base.EXPORT_BATCH
        with self._errors(deadline=False):
            names = self.client.scan_iter(match=f"{self.prefix}s:*", count=size)
            while batch := list(itertools.islice(names, size)):
                pipe = self.client.pipeline(transaction=False)
                for name in batch:
                    pipe.hgetall(name)
                rows = [
                    (name.decode()[start:], fields)
                    for name, fields in zip(batch, pipe.execute(), strict=True)
                    if fields  # not expired or deleted meanwhile
                ]
                for key, record in exported(rows, lambda row: record_of(row[0])):
                    if key not in seen and now < record.meta.expires_at:
                        seen.add(key)
                        yield key, record

    def count(self, now: float) -> int:
        with self._errors(deadline=False):
            return sum(1 for _ in self.client.scan_iter(match=f"{self.prefix}s:*", count=1000))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for resource in self._resources:
            if hasattr(resource, "close") and not hasattr(resource, "aclose"):
                resource.close()

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        name, client = self.hash_key(key), self.async_client
        record = _live(await self._acall(lambda: client.hgetall(name)), now)
        if (
            record is None
            or refresh_after is None
            or not refresh_due(record.meta, now, refresh_after)
        ):
            return record
        if not await self._arun(TOUCH, [name], [number(now)] * 2):
            return None
        return _refreshed(record, now)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        args = [number(last_seen), number(now)]
        return bool(await self._arun(TOUCH, [self.hash_key(key)], args))

    async def acreate(self, key: str, record: Record) -> None:
        if not await self._awrite(CREATE, [self.hash_key(key)], create_args(record)):
            raise KeyCollision("session key collision")

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        keys = [self.hash_key(key)]
        version = await self._awrite(UPDATE, keys, update_args(change, now))
        if version == -1:
            version = await self._awrite(UPDATE, keys, update_args(change, now, whole=True))
        return None if version is None else int(version)

    async def adelete(self, key: str) -> bool:
        return bool(await self._awrite(None, [self.hash_key(key)], []))

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return 0

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int:
        args = [number(deadline), key, number(time.time())]
        return int(await self._awrite(INDEX_ADD, [self.index_key(user_id)], args))

    async def acreate_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        if self._cluster(self.async_client):
            return await super().acreate_indexed(key, record, user_id)
        keys, args = self._create_indexed_call(key, record, user_id)
        return self._filed(await self._awrite(CREATE_INDEXED, keys, args))

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        index, client = self.index_key(user_id), self.async_client
        members = await self._arun(INDEX_LIST, [index], [number(now)])
        if not members:
            return []

        async def fetch() -> Any:
            pipe = client.pipeline(transaction=False)
            for member in members:
                pipe.hmget(self.hash_key(member.decode()), *LISTED_FIELDS)
            return await pipe.execute()

        live, gone = live_members(user_id, members, await self._acall(fetch), now)
        if gone:
            await self._acall(lambda: client.zrem(index, *gone))
        return live

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
        for resource in self._resources:
            if hasattr(resource, "aclose"):
                await resource.aclose()


def _live(fields: Mapping[bytes, bytes], now: float) -> Record | None:
    """The record of a session hash's ``HGETALL``, unless it is empty or expired at
    ``now`` (Redis's TTL runs on the server's clock; the contract on the caller's)."""
    if not fields:
        return None
    record = record_of(fields)
    return None if now >= record.meta.expires_at else record


def _refreshed(record: Record, now: float) -> Record:
    meta = record.meta
    seen = meta.seen(now) if isinstance(meta, ReadMeta) else meta._replace(last_seen=now)
    return Record(record.data, seen, refreshed=True)


# what redis-py takes from a URL's query besides what it parses itself (text arguments of
# its connection classes that make sense for satchel: not decode_responses, which would
# hand satchel text where it reads bytes)
_TEXT_ARGUMENTS = (
    "client_name",
    "encoding",
    "encoding_errors",
    "password",
    "socket_keepalive",
    "username",
)
_TLS_ARGUMENTS = (
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_ca_path",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_ciphers",
    "ssl_keyfile",
    "ssl_password",
    "ssl_validate_ocsp",
    "ssl_validate_ocsp_stapled",
)


def driver_parameters(tls: bool) -> frozenset[str]:
    """The query parameters redis-py reads from a ``redis://`` (``rediss://`` with
    ``tls``) URL: those it parses, and a few text arguments of its connection class
    (anything else it would pass to the connection, failing at the first request)."""
    import inspect

    from redis import connection

    cls = connection.SSLConnection if tls else connection.Connection
    accepted = set(inspect.signature(connection.AbstractConnection.__init__).parameters)
    accepted |= set(inspect.signature(cls.__init__).parameters)
    wanted = set(_TEXT_ARGUMENTS) | (set(_TLS_ARGUMENTS) if tls else set())
    return frozenset(connection.URL_QUERY_ARGUMENT_PARSERS) | frozenset(wanted & accepted)


def from_url(url: str) -> RedisStore:
    """``redis://``, ``rediss://``, ``redis+sentinel://`` or ``redis+cluster://``, with
    optional ``prefix``, ``socket_timeout``, ``connect_timeout``, ``max_connections``,
    ``wait_replicas``, ``wait_timeout`` and ``sentinel_check_interval`` query parameters
    (satchel's own; everything else is left to redis-py)."""
    clean, options = parse_url(url)
    return RedisStore(clean, **options)


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without satchel's parameters, and their values; ConfigurationError for an
    unknown parameter or a bad value (nothing is connected)."""
    from ..registry import read_url

    own: dict[str, Callable[[str], Any]] = {
        "prefix": str,
        "socket_timeout": float,
        "connect_timeout": float,
        "max_connections": int,
        "wait_replicas": int,
        "wait_timeout": float,
        "sentinel_check_interval": float,
    }
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss"):  # the rest of the query goes to redis-py
        return read_url(url, own, driver_parameters(scheme == "rediss"), "redis-py")
    return read_url(url, own)  # Sentinel and Cluster URLs: satchel reads the query alone


@cache
def _is_cluster(kind: type) -> bool:
    """Whether clients of class ``kind`` are Redis Cluster clients (asked at every login:
    answered once per class)."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.cluster import RedisCluster

    return issubclass(kind, RedisCluster | AsyncCluster)
