"""Redis clients for a satchel Redis URL: a single server (plain, TLS, Unix socket),
Sentinel or Cluster, sync or asyncio, with the pools, timeouts and retry policy a session
store needs (see :mod:`.pools`). Imports redis-py only when a client is made.
"""

from __future__ import annotations

import copy
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

from ...errors import ConfigurationError
from ...redact import mask_url

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_CONNECTIONS = 50
# How often a Sentinel-backed store asks Sentinel which server is the primary, besides
# after a READONLY or NOREPLICAS reply: the longest a reachable old primary keeps
# receiving this process's writes once Sentinel names a new one.
DEFAULT_SENTINEL_CHECK = 0.2


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


@dataclass
class Call:
    """One store call: its deadline (``time.monotonic()``), and whether it is waiting for a
    pooled connection, so a timeout there can be reported as the pool's."""

    deadline: float
    in_pool: bool = False


# The current store call (set by :mod:`.calls`, read by :mod:`.pools`). Here, not in
# .pools, so that the store can set it without importing redis-py.
CALL: ContextVar[Call | None] = ContextVar("satchel_redis_call", default=None)

# Set while a write is sent: a write goes out at most once (see _retry).
SENDING_WRITE: ContextVar[bool] = ContextVar("satchel_redis_sending_write", default=False)


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
        def get_retries(self) -> int:
            # What redis-py's Cluster clients ask before sending a command again to the
            # node a refreshed slot map names, after a connection error.
            return 0 if SENDING_WRITE.get() else int(super().get_retries())

        def call_with_retry(self, *args: Any, **kwargs: Any) -> Any:
            if not SENDING_WRITE.get():
                return super().call_with_retry(*args, **kwargs)
            once = self.__dict__.get("_satchel_once")
            if once is None:  # made once per Retry, not per write (a copy is ~230 bytecodes)
                once = copy.copy(self)
                once._retries = 0
                self._satchel_once = once
            once._supported_errors = self._supported_errors  # (redis-py may widen them)
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
    :mod:`.pools`. Cluster clients keep redis-py's per-node pools, which have no
    practical limit."""

    from . import pools

    options: dict[str, Any] = {
        "retry": _retry(asyncio),
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        # RESP2 (redis-py 8 speaks RESP3 unless told): every read is an HGETALL, which
        # RESP3 answers with a map that hiredis builds into a dict one popitem() per
        # field (about 14k instructions for a small session, callgrind); as RESP2's flat
        # list it is one dict(zip()). The replies the store reads are the same either
        # way (its scripts return integers, nil and lists). A URL's ?protocol=3 wins.
        "protocol": 2,
    }
    sized = {"max_connections": max_connections, "timeout": pool_timeout}
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    path, _, _query = tail.partition("?")
    if scheme in ("redis", "rediss", "unix"):
        if asyncio:
            apool = pools.AsyncBlockingPool.from_url(url, **sized, **options)
            return pools.AsyncClient.from_pool(apool), []
        pool = pools.BlockingPool.from_url(url, **sized, **options)
        return pools.Client.from_pool(pool), []
    if scheme == "redis+cluster":
        password, hosts = _hosts(netloc, 6379)
        if asyncio:
            from redis.asyncio.cluster import ClusterNode as AsyncNode

            from .cluster import AsyncCluster

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
