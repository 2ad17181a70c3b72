"""Redis store (redis-py): single server, TLS, Sentinel and Cluster; Valkey speaks the same
protocol.

Each session is one hash, ``{prefix}s:{store key}``:

========  ===========================================================
``d:*``   one field per app key, holding the encoded value
``m``     the metadata as JSON (``ls`` and ``v`` override what it says)
``ls``    last seen, epoch seconds
``it``    idle timeout, seconds
``ad``    absolute deadline, epoch seconds
``v``     record version
========  ===========================================================

Every operation is one single-key Lua script (or one command), so it is atomic, costs one
round trip and runs unchanged on Redis Cluster, where a session's keys and a user's index
keys live in different slots. The hash's TTL is ``min(ls + it, ad)``, so Redis drops a
session by itself and a TTL never reaches past the absolute deadline; the core checks the
same rule on every load.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, TypeVar
from urllib.parse import unquote

from ..errors import ConfigurationError, CorruptRecord, KeyCollision, StoreError, StoreUnavailable
from ..record import Change, Meta, Record
from ..redact import mask_url, scrub
from .base import Store, listed

T = TypeVar("T")

# KEYS[1] session hash; ARGV: now, refresh_after (-1: never)
# Returns nil, or {the hash as one JSON object, refreshed 0/1}: a single bulk string is
# far cheaper for the client to parse than a flat HGETALL reply.
LOAD = """
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return nil end
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local now = tonumber(ARGV[1])
local ls, it, ad = tonumber(f['ls']), tonumber(f['it']), tonumber(f['ad'])
if not (ls and it and ad) then return {cjson.encode(f), 0} end
if now >= math.min(ls + it, ad) then return nil end
local refresh = tonumber(ARGV[2])
if refresh >= 0 and now - ls >= refresh and ls < ad then
  redis.call('HSET', KEYS[1], 'ls', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.min(now + it, ad) * 1000))
  return {cjson.encode(f), 1}
end
return {cjson.encode(f), 0}
"""

# KEYS[1]; ARGV: last_seen, now. Returns 1 if the session exists and is live, else 0.
TOUCH = """
local f = redis.call('HMGET', KEYS[1], 'ls', 'it', 'ad')
local ls, it, ad = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not (ls and it and ad) then return 0 end
local seen, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if now >= math.min(ls + it, ad) then return 0 end
if seen > ls then
  redis.call('HSET', KEYS[1], 'ls', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.min(seen + it, ad) * 1000))
end
return 1
"""

# KEYS[1]; ARGV: expire_at_ms, then field, value pairs. Refuses to overwrite.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1]; ARGV: now, clear (0/1), meta json, ls, it, ad, n_set, then n_set name/value
# pairs, then names to delete. Returns the new version, or nil if the session is gone.
UPDATE = """
local f = redis.call('HMGET', KEYS[1], 'ls', 'it', 'ad')
local ls, it, ad = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not (ls and it and ad) then return nil end
if tonumber(ARGV[1]) >= math.min(ls + it, ad) then return nil end
if ARGV[2] == '1' then
  local fields = redis.call('HKEYS', KEYS[1])
  for _, name in ipairs(fields) do
    if string.sub(name, 1, 2) == 'd:' then redis.call('HDEL', KEYS[1], name) end
  end
end
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i])
  i = i + 1
end
redis.call('HSET', KEYS[1], 'm', ARGV[3], 'ls', ARGV[4], 'it', ARGV[5], 'ad', ARGV[6])
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
local expires = math.min(tonumber(ARGV[4]) + tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expires * 1000))
return v
"""

# The per-user index: a sorted set {prefix}u:{sha256(user)}, member = store key, score =
# the session's absolute deadline. It lives in another slot than the sessions, so it is
# kept by its own single-key scripts and pruned when read: no keyspace notifications
# (which Redis Cluster keeps per node), no multi-key scripts.
# KEYS[1] index; ARGV: deadline, store key.
INDEX_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(top[2]) * 1000))
return 1
"""

# KEYS[1] index; ARGV: now. Drops members past their deadline, returns the rest.
INDEX_LIST = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

DEFAULT_PREFIX = "satchel:"
DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_CONNECTIONS = 50
# How often a Sentinel-backed store asks Sentinel which server is the primary, besides
# after a READONLY or NOREPLICAS reply: the longest a reachable old primary keeps
# receiving this process's writes once Sentinel names a new one.
DEFAULT_SENTINEL_CHECK = 0.2


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from redis import exceptions as rx

    return (
        rx.ConnectionError,
        rx.TimeoutError,
        rx.ClusterDownError,
        rx.ReadOnlyError,
        rx.TryAgainError,
        rx.RedisClusterException,
        OSError,
    )


def _driver_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, *_unavailable_errors())


def _translate(exc: BaseException) -> StoreError:
    if isinstance(exc, _unavailable_errors()) or _no_replicas(exc):
        return StoreUnavailable(f"Redis store unavailable: {scrub(str(exc))}", exc)
    return StoreError(f"Redis store failed: {scrub(str(exc))}", exc)


def _no_replicas(exc: BaseException) -> bool:
    """The primary refused a write for want of replicas (``min-replicas-to-write``): it
    has most likely been cut off from them by a failover, so the write was not applied."""
    return str(exc).startswith("NOREPLICAS")


def _meta_of_fields(fields: Sequence[Any]) -> Meta:
    m, ls, v = fields
    return Meta.from_json(m, last_seen=float(ls), version=int(v))


def _fields(record: Record) -> list[str | bytes]:
    meta = record.meta
    flat: list[str | bytes] = [
        "m",
        meta.to_json(),
        "ls",
        repr(meta.last_seen),
        "it",
        repr(meta.idle_timeout),
        "ad",
        repr(meta.absolute_deadline),
        "v",
        str(meta.version),
    ]
    for name, value in record.data.items():
        flat += ["d:" + name, value]
    return flat


def _record(reply: Sequence[Any], now: float) -> Record:
    """A Record from the LOAD script's reply (the hash before any refresh, and a flag)."""
    refreshed = bool(reply[1])
    try:
        fields: dict[str, str] = json.loads(reply[0])
        data = {name[2:]: value for name, value in fields.items() if name.startswith("d:")}
        last_seen = now if refreshed else float(fields["ls"])
        meta = Meta.from_json(fields["m"], last_seen=last_seen, version=int(fields["v"]))
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptRecord("Redis session hash cannot be decoded", exc) from exc
    return Record(data, meta, refreshed=refreshed)


def _update_args(change: Change, now: float) -> list[str]:
    meta = change.meta
    args = [
        repr(now),
        "1" if change.clear else "0",
        meta.to_json(),
        repr(meta.last_seen),
        repr(meta.idle_timeout),
        repr(meta.absolute_deadline),
        str(len(change.set)),
    ]
    for name, value in change.set.items():
        args += [name, value]
    args += list(change.delete)
    return args


class RedisStore(Store):
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
        if wait_replicas and url is not None and url.startswith("redis+cluster:"):
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

    # -- clients --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.url is None:
                raise ConfigurationError("this RedisStore has no sync client; pass client=")
            self._client, extra = make_client(
                self.url, asyncio=False, pool_timeout=self.options["socket_timeout"], **self.options
            )
            self._resources += extra
        return self._client

    @property
    def async_client(self) -> Any:
        if self._async_client is None:
            if self.url is None:
                raise ConfigurationError("this RedisStore has no async client; pass async_client=")
            # No socket or pool timeout inside redis-py's asyncio client: on Python 3.11 it
            # wraps every send in asyncio.wait_for, a new Task per command. The same deadline
            # is enforced around each whole call instead, with asyncio.timeout (no Task).
            options = {**self.options, "socket_timeout": None}
            self._async_client, extra = make_client(
                self.url, asyncio=True, pool_timeout=None, **options
            )
            self._resources += extra
        return self._async_client

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return script

    def _ascript(self, source: str) -> Any:
        script = self._async_scripts.get(source)
        if script is None:
            script = self._async_scripts[source] = self.async_client.register_script(source)
        return script

    def hash_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def index_key(self, user_id: str) -> str:
        return f"{self.prefix}u:{hashlib.sha256(user_id.encode('utf-8')).hexdigest()}"

    @staticmethod
    def _listed(
        user_id: str, keys: list[bytes], replies: list[list[bytes | None]], now: float
    ) -> tuple[list[tuple[str, Meta]], list[bytes]]:
        """Live sessions from HMGET m ls v it ad replies, and the members to drop."""
        live, gone = [], []
        for member, (m, ls, v, it, ad) in zip(keys, replies, strict=True):
            if m is None or ls is None or it is None or ad is None or v is None:
                gone.append(member)
                continue
            try:
                meta = Meta.from_json(m, last_seen=float(ls), version=int(v))
            except (CorruptRecord, ValueError):
                gone.append(member)
                continue
            if meta.expires_at <= now or meta.user_id != user_id:
                gone.append(member)
                continue
            live.append((member.decode(), meta))
        return live, gone

    def _pool_error(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            "Redis store unavailable: no connection came free in its pool "
            f"(max_connections={self.options['max_connections']}) within the "
            f"{self.options['socket_timeout']} s timeout",
            exc,
        )

    def _fail(self, exc: BaseException, client: Any) -> StoreError:
        """The StoreError for a driver error; a reply saying the server is no longer (or
        cannot act as) the primary makes a Sentinel pool ask Sentinel on the next call."""
        from ._redis_pools import PoolExhausted

        if isinstance(exc, PoolExhausted):
            return self._pool_error(exc)
        if _no_replicas(exc) or "previous master" in str(exc):
            recheck = getattr(getattr(client, "connection_pool", None), "recheck", None)
            if recheck is not None:
                recheck()
        return _translate(exc)

    @contextmanager
    def _errors(self, *, deadline: bool = True) -> Iterator[None]:
        """Translate driver errors, and give the call one deadline: the wait for a pooled
        connection, connects, the retry and the reads share ``socket_timeout``. Scans of
        the whole keyspace (admin commands, any length) go without one: each command is
        then bounded by the timeouts on its own."""
        from ._redis_pools import CALL, Call

        timeout = self.options["socket_timeout"]
        token = CALL.set(Call(time.monotonic() + timeout)) if deadline else None
        try:
            yield
        except StoreError:
            raise
        except _driver_errors() as exc:
            raise self._fail(exc, self._client) from exc
        finally:
            if token is not None:
                CALL.reset(token)

    async def _aerrors(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one async call under one deadline (``asyncio.timeout``): pool wait, connect,
        retry and command together take at most ``socket_timeout``."""
        from ._redis_pools import CALL, Call

        state = Call(time.monotonic() + self.options["socket_timeout"])
        token = CALL.set(state)
        try:
            async with asyncio.timeout(self.options["socket_timeout"]):
                return await call()
        except StoreError:
            raise
        except TimeoutError as exc:
            if state.in_pool:
                raise self._pool_error(exc) from exc
            raise StoreUnavailable("Redis store unavailable: timed out", exc) from exc
        except _driver_errors() as exc:
            raise self._fail(exc, self._async_client) from exc
        finally:
            CALL.reset(token)

    # -- writes that wait for replicas ------------------------------------------------------

    def _short(self, acked: Any) -> StoreUnavailable | None:
        if int(acked) >= self.wait_replicas:
            return None
        return StoreUnavailable(
            f"Redis store unavailable: the write reached the primary, but {acked} of "
            f"{self.wait_replicas} replicas confirmed it within {self.wait_ms} ms "
            "(it may be lost in a failover)"
        )

    def _write(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        with _sent_once():
            return self._write_once(source, keys, args)

    def _write_once(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        """A write script (or ``DEL`` when ``source`` is None). With ``wait_replicas``, a
        ``WAIT`` follows it on the same connection, in the same round trip, and the write
        is only acknowledged once that many replicas have it."""
        if not self.wait_replicas:
            if source is None:
                return self.client.delete(*keys)
            return self._script(source)(keys=keys, args=args)
        from redis.exceptions import NoScriptError

        script = None if source is None else self._script(source)

        def run() -> Any:
            pipe = self.client.pipeline(transaction=False)
            if script is None:
                pipe.delete(*keys)
            else:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)
            return pipe.execute()

        try:
            result, acked = run()
        except NoScriptError:  # a new or restarted primary: load the script, once more
            if script is None:
                raise
            self.client.script_load(script.script)
            result, acked = run()
        short = self._short(acked)
        if short is not None:
            raise short
        return result

    async def _awrite(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        """:meth:`_write` on the async client, under the call's deadline, sent once."""
        with _sent_once():
            return await self._awrite_once(source, keys, args)

    async def _awrite_once(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        client = self.async_client
        if not self.wait_replicas:
            if source is None:
                return await self._aerrors(lambda: client.delete(*keys))
            script = self._ascript(source)
            return await self._aerrors(lambda: script(keys=keys, args=args))
        from redis.exceptions import NoScriptError

        ascript = None if source is None else self._ascript(source)

        async def run() -> Any:
            pipe = client.pipeline(transaction=False)
            if ascript is None:
                pipe.delete(*keys)
            else:
                pipe.evalsha(ascript.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)
            return await pipe.execute()

        async def waited() -> Any:
            try:
                return await run()
            except NoScriptError:
                if ascript is None:
                    raise
                await client.script_load(ascript.script)
                return await run()

        result, acked = await self._aerrors(waited)
        short = self._short(acked)
        if short is not None:
            raise short
        return result

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        with self._errors():
            reply = self._script(LOAD)(
                keys=[self.hash_key(key)],
                args=[repr(now), -1 if refresh_after is None else repr(refresh_after)],
            )
        return None if reply is None else _record(reply, now)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._errors():
            return bool(
                self._script(TOUCH)(keys=[self.hash_key(key)], args=[repr(last_seen), repr(now)])
            )

    def create(self, key: str, record: Record) -> None:
        expire_ms = str(int(record.meta.expires_at * 1000))
        with self._errors():
            created = self._write(CREATE, [self.hash_key(key)], [expire_ms, *_fields(record)])
        if not created:
            raise KeyCollision("session key collision")

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._errors():
            version = self._write(UPDATE, [self.hash_key(key)], _update_args(change, now))
        return None if version is None else int(version)

    def delete(self, key: str) -> bool:
        with self._errors():
            return bool(self._write(None, [self.hash_key(key)], []))

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        with self._errors():
            self._write(INDEX_ADD, [self.index_key(user_id)], [repr(deadline), key])

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        index = self.index_key(user_id)
        with self._errors():
            keys = self._script(INDEX_LIST)(keys=[index], args=[repr(now)])
            if not keys:
                return []
            pipe = self.client.pipeline(transaction=False)
            for member in keys:
                pipe.hmget(self.hash_key(member.decode()), "m", "ls", "v", "it", "ad")
            live, gone = self._listed(user_id, keys, pipe.execute(), now)
            if gone:
                self.client.zrem(index, *gone)
        return live

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Redis expires sessions by their TTL: nothing to purge."""
        return 0

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._errors(deadline=False):
            keys = list(self.client.scan_iter(match=f"{self.prefix}s:*", count=1000))
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                pipe = self.client.pipeline(transaction=False)
                for name in batch:
                    pipe.hmget(name, "m", "ls", "v", "it", "ad")
                rows = [
                    (name.decode()[len(self.prefix) + 2 :], m, ls, v)
                    for name, (m, ls, v, _it, _ad) in zip(batch, pipe.execute(), strict=True)
                    if m is not None and ls is not None and v is not None
                ]
                for key, meta in listed(rows, _meta_of_fields):
                    if meta.expires_at > now:
                        yield key, meta

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
        script = self._async_scripts.get(LOAD) or self._ascript(LOAD)
        reply = await self._aerrors(
            lambda: script(
                keys=[self.hash_key(key)],
                args=[repr(now), -1 if refresh_after is None else repr(refresh_after)],
            )
        )
        return None if reply is None else _record(reply, now)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        script = self._ascript(TOUCH)
        reply = await self._aerrors(
            lambda: script(keys=[self.hash_key(key)], args=[repr(last_seen), repr(now)])
        )
        return bool(reply)

    async def acreate(self, key: str, record: Record) -> None:
        expire_ms = str(int(record.meta.expires_at * 1000))
        created = await self._awrite(CREATE, [self.hash_key(key)], [expire_ms, *_fields(record)])
        if not created:
            raise KeyCollision("session key collision")

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        version = await self._awrite(UPDATE, [self.hash_key(key)], _update_args(change, now))
        return None if version is None else int(version)

    async def adelete(self, key: str) -> bool:
        return bool(await self._awrite(None, [self.hash_key(key)], []))

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> None:
        await self._awrite(INDEX_ADD, [self.index_key(user_id)], [repr(deadline), key])

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        index, client = self.index_key(user_id), self.async_client
        script = self._ascript(INDEX_LIST)
        keys = await self._aerrors(lambda: script(keys=[index], args=[repr(now)]))
        if not keys:
            return []

        async def fetch() -> Any:
            pipe = client.pipeline(transaction=False)
            for member in keys:
                pipe.hmget(self.hash_key(member.decode()), "m", "ls", "v", "it", "ad")
            return await pipe.execute()

        live, gone = self._listed(user_id, keys, await self._aerrors(fetch), now)
        if gone:
            await self._aerrors(lambda: client.zrem(index, *gone))
        return live

    async def apurge_expired(self, now: float, batch_size: int = 500) -> int:
        return 0

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
        for resource in self._resources:
            if hasattr(resource, "aclose"):
                await resource.aclose()


# -- URLs ---------------------------------------------------------------------------------------


def _hosts(netloc: str, default_port: int) -> tuple[str | None, list[tuple[str, int]]]:
    """``[password@]host:port,host:port`` -> (password, [(host, port), ...])."""
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.partition(":")[2] or auth)
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            hosts.append((host or "localhost", int(port) if port else default_port))
        except ValueError:
            raise ConfigurationError(f"Redis URL: bad port in {mask_url(part)!r}") from None
    return password, hosts


# Set while a write is sent: a write goes out at most once (see _retry).
_SENDING_WRITE: ContextVar[bool] = ContextVar("satchel_redis_sending_write", default=False)


@contextmanager
def _sent_once() -> Iterator[None]:
    token = _SENDING_WRITE.set(True)
    try:
        yield
    finally:
        _SENDING_WRITE.reset(token)


@cache
def _retry_class(asyncio: bool) -> Any:
    """redis-py's ``Retry`` (sync or async), retrying nothing while a write is sent.

    A connection error on a write does not say whether the server ran it: the reply may
    be what was lost. Sent again, a ``DEL`` answers 0 ("nothing deleted"), which the core
    must read as "another request logged this session out" (and so undoes a login whose
    first ``DEL`` had in fact worked), and a create answers "key exists". So writes are
    sent once, and a lost reply is a 503 (whose response still carries the cookie of a
    record the request created); reads keep the quick retry."""
    if asyncio:
        from redis.asyncio.retry import Retry as Base
    else:
        from redis.retry import Retry as Base  # type: ignore[assignment]

    class WritesOnce(Base):
        def call_with_retry(self, *args: Any, **kwargs: Any) -> Any:
            if not _SENDING_WRITE.get():
                return super().call_with_retry(*args, **kwargs)
            once = copy.copy(self)
            once._retries = 0
            return Base.call_with_retry(once, *args, **kwargs)

    return WritesOnce


def _retry(asyncio: bool) -> Any:
    """One quick retry, after a connection error only: enough to ride over a dropped idle
    connection or a demoted primary (READONLY), short enough that a dead server gives a
    prompt 503. Never after a timeout: a server that did not answer within the timeout is
    not given the timeout a second time (0.1 did, and a frozen server took twice it).
    Never for a write (:func:`_retry_class`)."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError

    return _retry_class(asyncio)(ExponentialBackoff(cap=0.05, base=0.01), 1, (ConnectionError,))


def make_client(
    url: str,
    *,
    asyncio: bool,
    socket_timeout: float | None = DEFAULT_TIMEOUT,
    socket_connect_timeout: float = DEFAULT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float | None = DEFAULT_TIMEOUT,
    sentinel_check_interval: float = DEFAULT_SENTINEL_CHECK,
) -> tuple[Any, list[Any]]:
    """A redis-py client (sync or asyncio) for a satchel Redis URL, and the other
    connections it relies on (Sentinel's), to close with it.

    Single servers and Sentinel get a pool of at most ``max_connections`` that waits up to
    ``pool_timeout`` for a free connection (``None``: the caller bounds the wait); see
    :mod:`._redis_pools`. Cluster clients keep redis-py's per-node pools, which have no
    practical limit."""
    import redis

    from . import _redis_pools as pools

    options: dict[str, Any] = {
        "retry": _retry(asyncio),
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
    }
    sized = {"max_connections": max_connections, "timeout": pool_timeout}
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    path, _, _query = tail.partition("?")
    if scheme in ("redis", "rediss", "unix"):
        if asyncio:
            apool = pools.AsyncBlockingPool.from_url(url, **sized, **options)
            return redis.asyncio.Redis.from_pool(apool), []
        pool = pools.BlockingPool.from_url(url, **sized, **options)
        return redis.Redis.from_pool(pool), []
    if scheme == "redis+cluster":
        password, hosts = _hosts(netloc, 6379)
        if asyncio:
            from redis.asyncio.cluster import ClusterNode as AsyncNode
            from redis.asyncio.cluster import RedisCluster as AsyncCluster

            nodes = [AsyncNode(h, p) for h, p in hosts]
            return AsyncCluster(startup_nodes=nodes, password=password, **options), []
        from redis.cluster import ClusterNode, RedisCluster
        from redis.connection import Connection

        sync_nodes = [ClusterNode(h, p) for h, p in hosts[1:]]  # type: ignore[no-untyped-call]
        first_host, first_port = hosts[0]
        client = RedisCluster(
            # Given a url (any node), redis-py builds the nodes' pools with
            # connection_class, which bounds every read by the call's deadline.
            url=f"redis://{first_host}:{first_port}",
            startup_nodes=sync_nodes,
            password=password,
            connection_class=pools.deadline_class(Connection),
            **options,
        )
        return client, []
    if scheme == "redis+sentinel":
        password, hosts = _hosts(netloc, 26379)
        service, _, db = path.partition("/")
        if not service:
            raise ConfigurationError(
                "Redis Sentinel URL names no service: redis+sentinel://host:26379/mymaster"
            )
        kwargs = {
            "password": password,
            "db": int(db or 0),
            "check_interval": sentinel_check_interval,
            **sized,
            **options,
        }
        # Sentinel's own clients: the same timeouts and retry as the data connections
        # (redis-py's default retries a timeout three times, with backoff: 19 s for a
        # frozen Sentinel and a 0.5 s timeout).
        sentinel_kwargs = {
            "socket_timeout": socket_timeout or socket_connect_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "retry": _retry(asyncio),
        }
        if asyncio:
            from redis.asyncio.sentinel import Sentinel as AsyncSentinel

            sentinel: Any = AsyncSentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
            client = sentinel.master_for(
                service, connection_pool_class=pools.AsyncSentinelPool, **kwargs
            )
            return client, list(sentinel.sentinels)
        from redis.sentinel import Sentinel

        sync_sentinel: Any = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        for sentinel_client in sync_sentinel.sentinels:  # lookups share the call's deadline
            pool = sentinel_client.connection_pool
            pool.connection_class = pools.deadline_class(pool.connection_class)
        client = sync_sentinel.master_for(
            service, connection_pool_class=pools.SentinelPool, **kwargs
        )
        return client, list(sync_sentinel.sentinels)
    raise ConfigurationError(f"not a Redis URL: {mask_url(url)!r}")


def from_url(url: str) -> RedisStore:
    """``redis://``, ``rediss://``, ``redis+sentinel://`` or ``redis+cluster://``, with
    optional ``prefix``, ``socket_timeout``, ``connect_timeout``, ``max_connections``,
    ``wait_replicas``, ``wait_timeout`` and ``sentinel_check_interval`` query parameters
    (satchel's own; everything else is left to redis-py)."""
    from .registry import url_options

    clean, options = url_options(
        url,
        {
            "prefix": str,
            "socket_timeout": float,
            "connect_timeout": float,
            "max_connections": int,
            "wait_replicas": int,
            "wait_timeout": float,
            "sentinel_check_interval": float,
        },
    )
    return RedisStore(clean, **options)
