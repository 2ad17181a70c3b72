# redis-py's pool classes are untyped; these subclasses call into them throughout.
# mypy: disable-error-code="no-untyped-call"
"""Connection pools for the Redis store (imported only when a Redis client is made).

Three things redis-py's default pools do not do, and a session store needs:

* **Wait, do not refuse.** The default pools raise "Too many connections" at the 51st
  concurrent call, a 503 on a healthy server. These derive from redis-py's
  ``BlockingConnectionPool``: a call waits for a free connection, within its deadline.
* **One deadline per call.** The wait for a connection, connects, retries and reads share
  the call's ``socket_timeout`` (:data:`CALL` holds the deadline the store set); on the
  async path the store's watchdog does the same.
* **Follow a Sentinel failover promptly.** redis-py asks Sentinel for the primary only when
  it opens a connection, so pooled connections keep writing to an old primary that is still
  reachable until Sentinel demotes it (about 10 s, every write lost). The Sentinel pools ask
  again every ``check_interval`` seconds and after a READONLY/NOREPLICAS reply, in the
  background, and never hand out a connection to anything but the primary Sentinel names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import threading
import time
from queue import Empty, Full
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.exceptions import ConnectionError
from redis.sentinel import SentinelConnectionPool
from redis.utils import SENTINEL

from .._handoff import Handoff
from .connect import CALL, Call

__all__ = ["CALL", "AsyncClient", "Call", "Client", "PoolExhausted"]


class PoolExhausted(ConnectionError):
    """No pooled connection came free before the call's deadline."""


def _remaining(limit: float | None) -> float | None:
    """What is left of the current call's deadline, at most ``limit``; None outside a call
    (the connection's own timeouts then apply)."""
    call = CALL.get(None)
    if call is None:
        return None
    left = max(call.deadline - time.monotonic(), 0.001)
    return left if limit is None else min(limit, left)


class _Deadline:
    """Mixin for redis-py's sync connection classes: each read, and each connect, waits at
    most what is left of the call's deadline. So a call's retry, its reconnect, and the
    topology refresh redis-py's Cluster client runs after a timeout (one query per node)
    all fit in the one ``socket_timeout``, where each used to get a timeout of its own."""

    socket_timeout: float | None
    socket_connect_timeout: float | None

    def read_response(
        self, disable_decoding: bool = False, *, timeout: Any = SENTINEL, **kwargs: Any
    ) -> Any:
        if timeout is SENTINEL:
            # (_remaining, spelt out without min() and max(): this runs for every reply)
            call = CALL.get()
            if call is not None:
                left, limit = call.deadline - time.monotonic(), self.socket_timeout
                if left < 0.001:
                    left = 0.001
                timeout = left if limit is None or left < limit else limit
        return super().read_response(  # type: ignore[misc]
            disable_decoding, timeout=timeout, **kwargs
        )

    def connect(self) -> None:
        # The pool connects every connection it hands out: redis-py does it through its
        # Retry (two lambdas, three calls) before finding the socket open (~70
        # bytecodes a call). An open socket needs nothing.
        if not self._sock:  # type: ignore[attr-defined]
            super().connect()  # type: ignore[misc]

    def _construct_command_packer(self, packer: Any) -> Any:
        built = super()._construct_command_packer(packer)  # type: ignore[misc]
        if packer is None and type(built) is _HiredisRespSerializer:  # redis-py's choice
            return _HiredisPacker(built)
        return built

    def _connect(self) -> Any:
        left = _remaining(self.socket_connect_timeout)
        if left is None:
            return super()._connect()  # type: ignore[misc]
        saved = self.socket_connect_timeout
        self.socket_connect_timeout = left
        try:
            return super()._connect()  # type: ignore[misc]
        finally:
            self.socket_connect_timeout = saved


@functools.cache
def deadline_class(connection_class: type) -> type:
    """``connection_class`` with :class:`_Deadline` mixed in."""
    return type(f"Deadline{connection_class.__name__}", (_Deadline, connection_class), {})


def _sync_get(get: Any) -> Any:
    """Get a connection from a sync blocking pool, naming the pool when none came free."""
    try:
        return get()
    except ConnectionError as exc:
        if str(exc) == "No connection available.":  # redis-py's BlockingConnectionPool
            raise PoolExhausted(str(exc)) from exc
        raise


class _Stack:
    """The free connections of a sync blocking pool: what redis-py's
    ``BlockingConnectionPool`` asks of its ``queue_class`` (``get`` with a timeout,
    ``put_nowait``, the list ``queue``). Free connections are taken last in, first out
    (the warmest socket), as ``queue.LifoQueue`` does it, less its bookkeeping for
    ``join()`` and for waiting to put (the pool never does either): taking and returning
    one is one lock each (about 380 bytecodes a request less, two calls).

    Threads that find none free wait first come, first served (:class:`Handoff`): a
    returned connection goes straight to the oldest waiting thread. (On ``LifoQueue``'s
    condition a thread that returned a connection and asked again took it back before
    the notified waiter woke: one connection, 20 threads reading back to back, some of
    them waited out their whole deadline.)"""

    __slots__ = ("line", "maxsize", "mutex", "queue")

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self.queue: list[Any] = []
        self.mutex = threading.Lock()
        self.line = Handoff(self.mutex)

    def qsize(self) -> int:
        with self.mutex:
            return len(self.queue)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.mutex:
            queue = self.queue
            if queue and not self.line.waiters:
                return queue.pop()
            if not block:
                raise Empty
            if timeout is not None and timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            waiter = self.line.join()
        handed, item = self.line.wait(waiter, timeout, self.put_nowait)
        if not handed:
            raise Empty
        return item

    def put_nowait(self, item: Any) -> None:
        with self.mutex:
            if self.line.hand(item):
                return
            queue = self.queue
            if len(queue) >= self.maxsize > 0:
                raise Full
            queue.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # (the pool never holds more than maxsize: nothing waits)

    def get_nowait(self) -> Any:
        return self.get(block=False)


# redis-py's get_connection, without its decorator, which looks for deprecated arguments
# (the client passes none: about 110 bytecodes a call for a warning never given)
_get_connection = getattr(
    redis.BlockingConnectionPool.get_connection,
    "__wrapped__",
    redis.BlockingConnectionPool.get_connection,
)

try:
    from redis.asyncio.observability import recorder as _otel_async_recorder
    from redis.observability import providers as _otel_providers
    from redis.observability import recorder as _otel_recorder
except ImportError:  # redis-py before its metrics (< 7): nothing to go around
    _SHORT = _ASYNC_SHORT = False
else:
    # What the short ways below mirror of redis-py's own (its pool's get_connection and
    # release, its client's _execute_command), less their metrics calls.
    _SHORT = (
        hasattr(redis.Redis, "_close_connection")
        and hasattr(redis.BlockingConnectionPool, "maint_notifications_enabled")
        and hasattr(_otel_recorder, "_metrics_collector")  # (what _observed reads)
        and hasattr(_otel_providers, "_observability_instance")
    )
    _ASYNC_SHORT = _SHORT and hasattr(_otel_async_recorder, "_async_metrics_collector")


def _observed() -> bool:
    """Whether redis-py's own metrics may be on (``redis.observability``, off unless the app
    sets it up): then its pools and client take their own way, which records them. Off,
    that way still asks for its metrics collector at every step: twelve times a command
    (about 700 bytecodes a request, which the short ways save)."""
    if _otel_recorder._metrics_collector is not None:
        return True
    instance = _otel_providers._observability_instance
    return instance is not None and getattr(instance, "_provider_manager", True) is not None


def _aobserved() -> bool:
    """:func:`_observed`, for the asyncio client, whose metrics have a collector of their
    own."""
    return _otel_async_recorder._async_metrics_collector is not None or _observed()


class BlockingPool(redis.BlockingConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("queue_class", _Stack)
        super().__init__(*args, **kwargs)
        self.connection_class = deadline_class(self.connection_class)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # (deprecated arguments: redis-py warns)
            return self._get_redis_py(*args, **kwargs)
        if _SHORT and not _observed():
            return self.get_short()
        return self._get_redis_py()

    def _get_redis_py(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if args or kwargs:
                return super().get_connection(*args, **kwargs)
            return _get_connection(self)
        except ConnectionError as exc:
            if str(exc) == "No connection available.":  # redis-py's BlockingConnectionPool
                raise PoolExhausted(str(exc)) from exc
            raise

    def get_short(self) -> Any:
        """redis-py's ``get_connection`` (8.x) without its metrics (the caller knows them
        off): a free connection (or a new one), connected, and refused if it holds data no
        command asked for."""
        if self._in_maintenance:  # (redis-py's way holds a lock meanwhile)
            return self._get_redis_py()
        self._checkpid()
        try:
            connection = self.pool.get(block=True, timeout=self.timeout)
        except Empty:
            raise PoolExhausted("No connection available.") from None
        if connection is None:
            connection = self.make_connection()
        try:
            connection.connect()
            try:
                if self._unasked_data(connection):
                    raise ConnectionError("Connection has data")
            except (ConnectionError, redis.TimeoutError, OSError):
                connection.disconnect()
                connection.connect()
                if self._unasked_data(connection):
                    raise ConnectionError("Connection not ready") from None
        except BaseException:
            self.release(connection)
            raise
        return connection

    def _unasked_data(self, connection: Any) -> bool:
        """The connection holds a reply no command asked for (redis-py's test: not when a
        client-side cache or maintenance notices may push data)."""
        return bool(
            connection.can_read() and self.cache is None and not self.maint_notifications_enabled()
        )

    def release(self, connection: Any) -> None:
        if _SHORT and not _observed():
            self.release_short(connection)
        else:
            super().release(connection)

    def release_short(self, connection: Any) -> None:
        """redis-py's ``release`` (8.x) without its metrics (the caller knows them off)."""
        if self._in_maintenance:
            super().release(connection)
            return
        self._checkpid()
        if not self.owns_connection(connection):
            super().release(connection)  # (another process's: redis-py drops it)
            return
        if connection.should_reconnect():
            connection.disconnect()
        with contextlib.suppress(Full):
            self.pool.put_nowait(connection)


# The store's commands on every request: the client sends them its short way.
_SHORT_COMMANDS = frozenset(("HGETALL", "EVALSHA", "DEL"))


def _send(connection: Any, args: tuple[Any, ...]) -> Any:
    connection.send_command(*args)
    return connection.read_response()


def _failed(connection: Any, error: BaseException) -> None:
    """redis-py's failure callback, which runs before a retry: the connection is closed
    (and reopened by the retry)."""
    from redis.client import add_debug_log_for_operation_failure, is_debug_log_enabled

    if is_debug_log_enabled():
        add_debug_log_for_operation_failure(connection)
    connection.disconnect()


class Client(redis.Redis):
    """redis-py's sync client, sending the store's commands of every request
    (:data:`_SHORT_COMMANDS`) a shorter way than its ``_execute_command`` (8.x): the same
    pool, retry, connection and reply callback, without the metrics calls (when redis-py's
    metrics are off) nor its look at each command for ``HIMPORT SET``. Anything else,
    a client bound to one connection, and metrics on: redis-py's own way."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        if (
            not _SHORT
            or name not in _SHORT_COMMANDS
            or self.connection is not None
            or (options and (len(options) > 1 or "keys" not in options))
            or _observed()
        ):
            return super().execute_command(*args, **options)
        pool: Any = self.connection_pool
        short = type(pool) is BlockingPool  # (metrics off: its short ways, asked directly)
        connection = pool.get_short() if short else pool.get_connection()
        try:
            response = connection.retry.call_with_retry(
                functools.partial(_send, connection, args), functools.partial(_failed, connection)
            )
        finally:
            try:
                if connection.should_reconnect():  # (a maintenance notice moved it)
                    connection.disconnect()
                    connection.connect()
            finally:
                if short:
                    pool.release_short(connection)
                else:
                    pool.release(connection)
        callback = self.response_callbacks.get(name)
        return response if callback is None else callback(response)


async def _asend(connection: Any, args: tuple[Any, ...]) -> Any:
    await connection.send_command(*args)
    return await connection.read_response()


async def _afailed(connection: Any, error: BaseException, failures: int) -> None:
    """redis-py's failure callback (asyncio), which runs before a retry: the connection
    is closed (and reopened by the retry)."""
    await connection.disconnect(error=error, failure_count=failures)


class AsyncClient(redis.asyncio.Redis):
    """redis-py's asyncio client, sending the store's commands of every request
    (:data:`_SHORT_COMMANDS`) a shorter way than its ``execute_command`` (8.x), as
    :class:`Client` does on the sync path: the same pool, retry, connection and reply
    callback, without the metrics calls (when redis-py's metrics are off) nor its look at
    each command for ``HIMPORT SET``; its pool hands a free connection out at once
    (:class:`_FairWait`). Anything else, a client bound to one connection, and metrics
    on: redis-py's own way."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        if (
            not _ASYNC_SHORT
            or name not in _SHORT_COMMANDS
            or self.single_connection_client
            or self.connection is not None
            or (options and (len(options) > 1 or "keys" not in options))
            or _aobserved()
        ):
            return await super().execute_command(*args, **options)
        pool: Any = self.connection_pool
        connection = await pool.get_connection()
        try:
            response = await connection.retry.call_with_retry(
                lambda: _asend(connection, args),
                lambda error, failures: _afailed(connection, error, failures),
                with_failure_count=True,
            )
        finally:
            await pool.release(connection)
        callback = self.response_callbacks.get(name)
        return response if callback is None else callback(response)


async def _async_get(get: Any) -> Any:
    """Get a connection from an async blocking pool, marking the call as waiting in the
    pool meanwhile (so a timeout there is reported as the pool's)."""
    call = CALL.get(None)
    if call is not None:
        call.in_pool = True
    connection = await get()
    if call is not None:
        call.in_pool = False
    return connection


class _Packing:
    """Mixin for redis-py's asyncio connections: a command is packed by hiredis in one C
    call, as redis-py's sync connections already do; its asyncio connections pack in
    Python, argument by argument (an update script's two dozen arguments: about 60k
    instructions, callgrind). The bytes are the same; what hiredis refuses (a bool, say)
    goes to redis-py's packer, which raises its own error."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (type(first) is str and " " in first) or (type(first) is bytes and b" " in first):
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]  # 'CONFIG GET'
        try:
            return [_hiredis_pack(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]


class _HiredisPacker:
    """The sync connections' command packer: hiredis in one C call, as redis-py's own
    ``HiredisRespSerializer`` ends up doing, without its Python pass over the arguments
    (a generator step each: an update script's two dozen arguments cost about 300
    bytecodes). What that pass is for -- a command name to split (``"CONFIG GET"``), a
    ``bytearray`` or ``memoryview`` argument to copy (hiredis refuses them) -- goes to
    redis-py's packer, as does anything hiredis refuses (which raises redis-py's error)."""

    __slots__ = ("fallback",)

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        if type(first) is str and first.isalpha():  # a one-word command name
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                pass
        return self.fallback.pack(*args)  # type: ignore[no-any-return]


_HiredisRespSerializer = getattr(redis.connection, "HiredisRespSerializer", None)

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis-py without hiredis: its own packer
    _PACKING: tuple[type, ...] = ()
else:
    _PACKING = (_Packing,)


_PACKED: dict[type, type] = {}


def packed_class(connection_class: Any) -> Any:
    """``connection_class`` packing commands with hiredis (when installed)."""
    if not _PACKING:
        return connection_class
    packed = _PACKED.get(connection_class)
    if packed is None:
        name = f"Packed{connection_class.__name__}"
        packed = _PACKED[connection_class] = type(name, (*_PACKING, connection_class), {})
    return packed


class _FairWait:
    """Mixin for redis-py's asyncio blocking pools: connections handed out first come,
    first served, and never lost to a cancelled waiter.

    redis-py's ``BlockingConnectionPool`` (8.x) waits on an ``asyncio.Condition``: a task
    that frees the connection a task waits for notifies that task, and if it asks for a
    connection again before the woken task runs (a request that loads, then saves), it
    finds one free and takes it; the woken task waits again, at the back (one connection,
    20 readers: 18 of them timed out at their deadline). And on Python 3.11 a woken waiter
    cancelled before it runs drops the wake-up, so the next waiter sits until its deadline
    while the connection lies idle. Here a task that finds no connection free (or others
    already waiting) queues a future; a freed connection goes straight to the oldest
    waiter still waiting, and a waiter cancelled after it was handed one hands it on.
    While nobody waits, a free connection is handed out at once, without the condition,
    the ``asyncio.timeout`` and the context manager of redis-py's way (about 600 bytecodes
    a request with the release). redis-py's metrics are recorded as its pool records them
    when they are on."""

    _available_connections: list[Any]
    _in_use_connections: set[Any]
    _in_maintenance: bool
    _lock: asyncio.Lock
    max_connections: int
    timeout: float | None

    _waiting: collections.deque[asyncio.Future[Any]] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connected connection: a free one (or a new one, below ``max_connections``)
        if no task waits, else the next one freed after those of the tasks before. Waits
        at most the pool's ``timeout`` (None: the store's watchdog bounds the call, and
        :data:`CALL` tells it the time ran out in the pool). (Arguments, deprecated by
        redis-py, are ignored.)"""
        observed = _aobserved()
        started = time.monotonic() if observed else 0.0
        made = False
        waiting = self._waiting
        if waiting:  # others were first
            connection = await self._wait_turn()
        else:
            if self._in_maintenance:  # (a maintenance notice rewrites the pool under _lock)
                async with self._lock:
                    connection, made = self._take()
            else:
                connection, made = self._take()
            if connection is None:
                connection = await self._wait_turn()
        try:
            await self._ready(connection)
        except BaseException:
            await self.release(connection)
            raise
        if observed:
            await self._record_get(started, made)
        return connection

    def _take(self) -> tuple[Any, bool]:
        """A free connection, or a new one below ``max_connections`` (and whether it is
        new); (None, False) when every connection is in use."""
        available = self._available_connections
        if available:
            connection, made = available.pop(), False
        elif len(self._in_use_connections) < self.max_connections:
            connection, made = self.make_connection(), True  # type: ignore[attr-defined]
        else:
            return None, False
        self._in_use_connections.add(connection)
        return connection, made

    async def _ready(self, connection: Any) -> None:
        """redis-py's ``ensure_connection``: connected (an open socket asks nothing: its
        way goes through the retry to find it open), and refused if it holds data no
        command asked for (reconnected once)."""
        if not connection.is_connected:
            await connection.connect()
        try:
            if await self._unasked_data(connection):
                raise ConnectionError("Connection has data")
        except (ConnectionError, redis.TimeoutError, OSError):
            await connection.disconnect()
            await connection.connect()
            if await self._unasked_data(connection):
                raise ConnectionError("Connection not ready") from None

    async def _unasked_data(self, connection: Any) -> bool:
        """The connection holds a reply no command asked for (redis-py's test)."""
        return bool(
            await connection.can_read() and not self.maint_notifications_enabled()  # type: ignore[attr-defined]
        )

    async def _wait_turn(self) -> Any:
        """Queue for the next connection freed; it arrives in use, this task's."""
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = collections.deque()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        call = CALL.get(None)
        if call is not None:
            call.in_pool = True
        try:
            if self.timeout is None:
                connection = await future
            else:
                async with asyncio.timeout(self.timeout):
                    connection = await future
        except BaseException as exc:
            if future.done() and not future.cancelled():  # handed one, but leaving: pass it on
                self._hand_on(future.result())
            else:
                future.cancel()
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
            if isinstance(exc, TimeoutError):
                raise PoolExhausted("No connection available.") from None
            raise
        if call is not None:
            call.in_pool = False
        return connection

    def _hand_on(self, connection: Any) -> None:
        """A freed connection (still counted in use) to the oldest task still waiting, or
        back among the free ones."""
        waiting = self._waiting
        while waiting:
            future = waiting.popleft()
            if not future.done():  # (a cancelled waiter's future is done)
                future.set_result(connection)
                return
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)

    async def release(self, connection: Any) -> None:
        """Back to the pool (redis-py's ``release``): to the oldest waiting task if any.
        A connection that asked to reconnect (a maintenance notice moved it) is closed
        first; one that holds a new token of a streaming credential provider gets it (the
        event redis-py's release sends)."""
        if connection not in self._in_use_connections:
            raise KeyError(connection)  # (redis-py's release: not this pool's, or twice)
        if connection.should_reconnect():
            await connection.disconnect()
        if getattr(connection, "_re_auth_token", None) is not None:
            from redis.event import AsyncAfterConnectionReleasedEvent

            await self._event_dispatcher.dispatch_async(  # type: ignore[attr-defined]
                AsyncAfterConnectionReleasedEvent(connection)
            )
        self._hand_on(connection)
        if _aobserved():
            await self._record_release()

    async def _record_get(self, started: float, made: bool) -> None:
        from redis.observability.attributes import get_pool_name

        pool: Any = self
        if made:
            await _otel_async_recorder.record_connection_create_time(
                connection_pool=pool, duration_seconds=time.monotonic() - started
            )
        await _otel_async_recorder.record_connection_wait_time(
            pool_name=get_pool_name(pool), duration_seconds=time.monotonic() - started
        )

    async def _record_release(self) -> None:
        from redis.observability.attributes import ConnectionState, get_pool_name

        pool: Any = self
        name = get_pool_name(pool)
        await _otel_async_recorder.record_connection_count(
            pool_name=name, connection_state=ConnectionState.USED, counter=-1
        )
        await _otel_async_recorder.record_connection_count(
            pool_name=name, connection_state=ConnectionState.IDLE, counter=1
        )


class AsyncBlockingPool(_FairWait, redis.asyncio.BlockingConnectionPool):
    """Waits first come, first served (:class:`_FairWait`), without a timeout of its own:
    the store's watchdog bounds the call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_class = packed_class(self.connection_class)


class _Follow:
    """The Sentinel half, shared by the sync and async pools: when to ask Sentinel again.

    The question is asked in the background (a short-lived thread, or a task), so no
    request ever waits for Sentinel, even a frozen one; what Sentinel answers applies from
    the next connection handed out. At most one question is in flight."""

    check_interval: float
    _next_check: float = 0.0
    _checking: int = 0  # the pid of the process whose check is in flight, or 0

    def recheck(self) -> None:
        """Ask Sentinel on the next call (after a READONLY or NOREPLICAS reply)."""
        self._next_check = 0.0

    def _check_due(self) -> bool:
        now = time.monotonic()
        pid = os.getpid()
        # A check in flight in the parent when this process forked will not finish here.
        if self._checking == pid or now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        self._checking = pid
        return True

    def _stale(self, connection: Any) -> bool:
        address = getattr(self, "master_address", None)
        return address is not None and (connection.host, connection.port) != address


class SentinelPool(_Follow, SentinelConnectionPool, redis.BlockingConnectionPool):
    def __init__(self, *args: Any, check_interval: float = 1.0, **kwargs: Any) -> None:
        self.check_interval = check_interval
        kwargs.setdefault("queue_class", _Stack)  # (waiting threads served in turn)
        super().__init__(*args, **kwargs)
        self.connection_class = deadline_class(self.connection_class)

    def _check(self) -> None:
        try:
            # On a change this drops the idle connections. Best effort: with Sentinel
            # unreachable (or the store closing), keep the primary we know.
            with contextlib.suppress(Exception):
                self.get_master_address()
        finally:
            self._checking = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._check_due():
            threading.Thread(target=self._check, name="satchel-sentinel", daemon=True).start()
        get = super().get_connection
        connection = _sync_get(lambda: get(*args, **kwargs))
        if self._stale(connection):  # was in use while the primary changed
            connection.disconnect()
            try:
                connection.connect()
            except BaseException:
                self.release(connection)
                raise
        return connection


class AsyncSentinelPool(
    _Follow, _FairWait, AsyncSentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    def __init__(self, *args: Any, check_interval: float = 1.0, **kwargs: Any) -> None:
        self.check_interval = check_interval
        super().__init__(*args, **kwargs)
        self.connection_class = packed_class(self.connection_class)

    _task: asyncio.Task[None] | None = None

    async def _check(self) -> None:
        try:
            with contextlib.suppress(Exception):
                await self.get_master_address()
        finally:
            self._checking = 0

    async def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections and self._task is not None:  # closing: stop asking
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await super().disconnect(inuse_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._check_due():
            self._task = asyncio.get_running_loop().create_task(self._check())
        get = super().get_connection
        connection = await _async_get(lambda: get(*args, **kwargs))
        if self._stale(connection):  # was in use while the primary changed
            try:
                await connection.disconnect()
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection
