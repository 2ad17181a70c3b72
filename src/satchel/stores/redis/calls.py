"""How the Redis store makes one call: its clients, one deadline, one error translation,
and writes sent at most once (and, with ``wait_replicas``, acknowledged by replicas).

:class:`RedisCalls` is the half of :class:`~satchel.stores.redis.RedisStore` that talks to
redis-py; the store itself (:mod:`.store`) only says which script runs with which
arguments.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from ...errors import ConfigurationError, StoreError, StoreUnavailable
from .._errors import ErrorTable, map_exceptions
from .connect import CALL, SENDING_WRITE, Call, make_client

T = TypeVar("T")


@cache
def _error_table() -> ErrorTable:
    from redis import exceptions as rx

    unavailable = (
        rx.ConnectionError,
        rx.TimeoutError,
        rx.ClusterDownError,
        rx.ReadOnlyError,
        rx.TryAgainError,
        rx.RedisClusterException,
        OSError,
    )
    return {unavailable: StoreUnavailable, rx.RedisError: StoreError}


class _Watchdog:
    """The deadlines of one event loop's calls in flight, checked by one timer that runs
    while there are any, every ``period`` seconds: a call past its deadline has its task
    cancelled (and :meth:`RedisCalls._acall` turns that into a timeout). An
    ``asyncio.timeout`` per call did the same at about 40,000 instructions a call (a timer
    scheduled and cancelled each time, measured with callgrind); entering this is a dict
    insert. A call may overrun its deadline by up to ``period``."""

    __slots__ = ("calls", "expired", "handle", "loop", "period")

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self.loop = loop
        self.period = period
        self.calls: dict[asyncio.Task[Any], float] = {}  # task -> deadline (loop.time())
        self.expired: set[asyncio.Task[Any]] = set()
        self.handle: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], timeout: float) -> None:
        loop = self.loop
        self.calls[task] = loop.time() + timeout
        if self.handle is None:
            self.handle = loop.call_at(loop.time() + self.period, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        for task, deadline in self.calls.items():
            if deadline <= now and task not in self.expired:
                self.expired.add(task)
                task.cancel()
        self.handle = self.loop.call_at(now + self.period, self._check) if self.calls else None


@cache
def _no_script_error() -> type[Exception]:
    from redis.exceptions import NoScriptError

    return NoScriptError


def _no_replicas(exc: BaseException) -> bool:
    """The primary refused a write for want of replicas (``min-replicas-to-write``): it
    has most likely been cut off from them by a failover, so the write was not applied."""
    return str(exc).startswith("NOREPLICAS")


class RedisCalls:
    """Clients (made from ``url`` on first use when not given), their registered scripts,
    and the call helpers: :meth:`_run`/:meth:`_arun` for reads, :meth:`_write`/
    :meth:`_awrite` for writes, :meth:`_errors`/:meth:`_acall` around anything else."""

    url: str | None
    options: dict[str, Any]
    wait_replicas: int
    wait_ms: int
    _client: Any
    _async_client: Any
    _resources: list[Any]  # e.g. Sentinel connections, closed with the store
    _scripts: dict[str, Any]
    _async_scripts: dict[str, Any]
    _watchdog: _Watchdog | None = None

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
            # is enforced around each whole call instead, by a watchdog (no Task).
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

    # -- one deadline and one error translation per call ----------------------------------

    def _pool_error(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            "Redis store unavailable: no connection came free in its pool "
            f"(max_connections={self.options['max_connections']}) within the "
            f"{self.options['socket_timeout']} s timeout",
            exc,
        )

    def _refine(
        self, exc: BaseException, kind: type[StoreError], client: Any
    ) -> StoreError | type[StoreError]:
        """What the error table cannot tell: a pool that had no connection to give, and
        a reply saying the server is no longer (or cannot act as) the primary, which makes
        a Sentinel pool ask Sentinel on the next call."""
        from .pools import PoolExhausted

        if isinstance(exc, PoolExhausted):
            return self._pool_error(exc)
        if _no_replicas(exc) or "previous master" in str(exc):
            recheck = getattr(getattr(client, "connection_pool", None), "recheck", None)
            if recheck is not None:
                recheck()
        return StoreUnavailable if _no_replicas(exc) else kind

    def _refine_sync(
        self, exc: BaseException, kind: type[StoreError]
    ) -> StoreError | type[StoreError]:
        return self._refine(exc, kind, self._client)

    @functools.cached_property
    def _mapped(self) -> map_exceptions:
        """The sync path's error translation (kept: it holds no state between calls)."""
        return map_exceptions(_error_table, "Redis", refine=self._refine_sync)

    @contextmanager
    def _errors(self, *, deadline: bool = True) -> Iterator[None]:
        """Translate driver errors, and give the call one deadline: the wait for a pooled
        connection, connects, the retry and the reads share ``socket_timeout``. Scans of
        the whole keyspace (admin commands, any length) go without one: each command is
        then bounded by the timeouts on its own."""
        timeout = self.options["socket_timeout"]
        token = CALL.set(Call(time.monotonic() + timeout)) if deadline else None
        try:
            with self._mapped:
                yield
        finally:
            if token is not None:
                CALL.reset(token)

    async def _acall(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one async call under one deadline (:class:`_Watchdog`): pool wait,
        connect, retry and command together take at most ``socket_timeout``."""
        timeout = self.options["socket_timeout"]
        task = asyncio.current_task()
        assert task is not None  # an async store call runs in a task
        watchdog = self._watchdog
        if watchdog is None or watchdog.loop is not task.get_loop():
            watchdog = self._watchdog = _Watchdog(task.get_loop(), timeout / 16)
        watchdog.watch(task, timeout)
        token = CALL.set(Call(time.monotonic() + timeout))
        try:
            with self._amapped:
                try:
                    return await call()
                except asyncio.CancelledError:
                    if task in watchdog.expired:  # our deadline, not the caller's cancel
                        raise TimeoutError from None
                    raise
        finally:
            watchdog.calls.pop(task, None)
            if task in watchdog.expired:
                watchdog.expired.discard(task)
                task.uncancel()
            CALL.reset(token)

    def _refine_async(
        self, exc: BaseException, kind: type[StoreError]
    ) -> StoreError | type[StoreError]:
        if isinstance(exc, TimeoutError):  # the watchdog's: the call's deadline passed
            call = CALL.get()
            if call is not None and call.in_pool:
                return self._pool_error(exc)
            return StoreUnavailable("Redis store unavailable: timed out", exc)
        return self._refine(exc, kind, self._async_client)

    @functools.cached_property
    def _amapped(self) -> map_exceptions:
        return map_exceptions(_error_table, "Redis", refine=self._refine_async)

    # The sync calls below spell out what ``with self._errors()`` does: a generator
    # context manager costs a store call about 100 bytecodes more.

    def _run(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """A read script, under the call's deadline."""
        token = CALL.set(Call(time.monotonic() + self.options["socket_timeout"]))
        try:
            with self._mapped:
                return self._eval(source, keys, args)
        finally:
            CALL.reset(token)

    def _hgetall(self, name: str) -> Any:
        """``HGETALL name``, under the call's deadline."""
        token = CALL.set(Call(time.monotonic() + self.options["socket_timeout"]))
        try:
            with self._mapped:
                return self.client.hgetall(name)
        finally:
            CALL.reset(token)

    async def _arun(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        return await self._acall(lambda: self._aeval(source, keys, args))

    def _eval(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """Run a script by its SHA. During a failover the pool can hold connections to two
        servers: redis-py then loads the script on one and runs it on the other, and the
        second NOSCRIPT escapes it. The server refused before running anything, so the
        script is sent once more with its source (EVAL), which any primary can run."""
        # EVALSHA straight from the client: redis-py's Script.__call__ adds an import and
        # a check per call, and on NOSCRIPT loads the script then runs it again, which
        # the EVAL below does in one command (and it caches the script on that server).
        script = self._scripts.get(source) or self._script(source)
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except _no_script_error():  # (evaluated only when something was raised)
            return self.client.eval(source, len(keys), *keys, *args)

    async def _aeval(self, source: str, keys: list[str], args: Sequence[Any]) -> Any:
        """:meth:`_eval` on the async client."""
        script = self._async_scripts.get(source) or self._ascript(source)
        try:
            return await self.async_client.evalsha(script.sha, len(keys), *keys, *args)
        except _no_script_error():  # (evaluated only when something was raised)
            return await self.async_client.eval(source, len(keys), *keys, *args)

    # -- writes: sent once, and with wait_replicas, acknowledged by replicas ----------------

    def _short(self, acked: Any) -> StoreUnavailable | None:
        if int(acked) >= self.wait_replicas:
            return None
        return StoreUnavailable(
            f"Redis store unavailable: the write reached the primary, but {acked} of "
            f"{self.wait_replicas} replicas confirmed it within {self.wait_ms} ms "
            "(it may be lost in a failover)"
        )

    def _write(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        """A write script (or ``DEL`` when ``source`` is None), under the call's deadline,
        sent once. With ``wait_replicas``, a ``WAIT`` follows it on the same connection,
        in the same round trip, and the write is only acknowledged once that many replicas
        have it."""
        token = CALL.set(Call(time.monotonic() + self.options["socket_timeout"]))
        try:
            with self._mapped:
                sending = SENDING_WRITE.set(True)
                try:
                    if not self.wait_replicas:
                        if source is None:
                            # not client.delete: redis-py's sync Cluster client pipelines
                            # that (one command per slot) and sends again what failed on
                            # a connection
                            return self.client.execute_command("DEL", *keys)
                        return self._eval(source, keys, args)
                    result, acked = self._write_waited(source, keys, args)
                finally:
                    SENDING_WRITE.reset(sending)
        finally:
            CALL.reset(token)
        short = self._short(acked)
        if short is not None:
            raise short
        return result

    def _write_waited(
        self, source: str | None, keys: list[str], args: Sequence[Any]
    ) -> tuple[Any, Any]:
        """The write and its ``WAIT``, in one round trip: (its reply, the replicas that
        acknowledged it)."""
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
        return result, acked

    async def _awrite(self, source: str | None, keys: list[str], args: Sequence[Any]) -> Any:
        """:meth:`_write` on the async client."""
        # (sent_once() spelled out, as in _write: a generator context manager and the
        # _arun step cost a login about 5,000 instructions)
        sending = SENDING_WRITE.set(True)
        try:
            client = self.async_client
            if not self.wait_replicas:
                if source is None:
                    return await self._acall(lambda: client.execute_command("DEL", *keys))
                return await self._acall(lambda: self._aeval(source, keys, args))
            from redis.exceptions import NoScriptError

            script = None if source is None else self._ascript(source)

            async def run() -> Any:
                pipe = client.pipeline(transaction=False)
                if script is None:
                    pipe.delete(*keys)
                else:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)
                return await pipe.execute()

            async def waited() -> Any:
                try:
                    return await run()
                except NoScriptError:
                    if script is None:
                        raise
                    await client.script_load(script.script)
                    return await run()

            result, acked = await self._acall(waited)
        finally:
            SENDING_WRITE.reset(sending)
        short = self._short(acked)
        if short is not None:
            raise short
        return result
