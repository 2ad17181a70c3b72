"""The PostgreSQL store (psycopg 3 and psycopg_pool, sync and async); its SQL is in
:mod:`.statements`.

Every operation is one statement in autocommit mode, so one round trip, atomic by itself:
the per-key commit merges inside PostgreSQL with jsonb ``-`` and ``||`` under the row lock,
so no read-modify-write race exists; the throttled "last seen" refresh of a read is folded
into the read with a data-modifying CTE.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from functools import cache
from typing import Any, Literal

from ... import _json
from ...errors import ConfigurationError, KeyCollision, StoreError, StoreUnavailable
from ...record import Change, Meta, Record
from ...redact import scrub
from .._errors import ErrorTable, map_exceptions
from .._sql import Watch, deadlines, meta_of, meta_params, record_of
from ..base import Store, apurge_in_batches, export_in_batches, listed, purge_in_batches
from .recovery import Recovery
from .statements import DEFAULT_TABLE, IDENTIFIER, STATEMENTS


@cache
def _error_table() -> ErrorTable:
    import psycopg

    return {psycopg.OperationalError: StoreUnavailable, psycopg.Error: StoreError}


Fetch = Literal["one", "all", "rowcount"]


class PostgresStore(Store):
    """``PostgresStore("postgresql://app@db/app")``, or around pools the app already has:
    ``PostgresStore(pool=ConnectionPool(...), async_pool=AsyncConnectionPool(...))``.

    Pools made here: ``max_size`` connections at most (default 10), ``timeout`` seconds to
    wait for a connection and for each statement (default 5). The table is created on first
    use, or by ``satchel db init``; the pools are rebuilt in a forked child.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: Any = None,
        async_pool: Any = None,
        table: str = DEFAULT_TABLE,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        create_table: bool = True,
    ) -> None:
        if url is None and pool is None and async_pool is None:
            raise ConfigurationError("PostgresStore needs a URL or a pool")
        if not IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"table name {table!r} is not a plain SQL identifier")
        self.url, self.table = url, table
        self.min_size, self.max_size, self.timeout = min_size, max_size, timeout
        self._pool, self._async_pool = pool, async_pool
        self._owns_pools = pool is None and async_pool is None
        self._ready = not create_table
        self._pid = os.getpid()
        self._recovery = Recovery()
        self._closing: set[asyncio.Task[None]] = set()  # old async pools being closed
        self._opening: asyncio.Task[Any] | None = None  # the async pool being opened
        self._opening_lock = threading.Lock()  # the sync pool being opened
        self._sql = {name: sql.format(t=table) for name, sql in STATEMENTS.items()}

    # -- pools ------------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() != self._pid and self._owns_pools:
            self._pool = self._async_pool = self._opening = None  # the parent's sockets
            self._pid = os.getpid()
            self._recovery = Recovery()

    def _configure(self, conn: Any) -> None:
        conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")

    async def _aconfigure(self, conn: Any) -> None:
        await conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")

    @property
    def pool(self) -> Any:
        """The sync pool, opened by the first call that needs it (threads arriving while
        it opens wait for it: each opened a pool of its own in 0.1)."""
        self._check_fork()
        if self._pool is not None:
            return self._pool
        if self.url is None:
            raise ConfigurationError("this PostgresStore has no sync pool; pass pool=")
        with self._opening_lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._probe()
                self._pool = ConnectionPool(
                    self.url,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    kwargs=self._connect_options(),
                    configure=self._configure,
                    open=True,
                )
            return self._pool

    async def _apool(self) -> Any:
        """The async pool, opened by the first call that needs it; calls arriving while it
        opens wait for that one opening (each opened a pool of its own in 0.1)."""
        self._check_fork()
        if self._async_pool is not None:
            return self._async_pool
        if self.url is None:
            raise ConfigurationError("this PostgresStore has no async pool; pass async_pool=")
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.done() or opening.get_loop() is not loop:
            opening = self._opening = loop.create_task(self._open_apool())
            opening.add_done_callback(_retrieve)
        return await asyncio.shield(opening)

    async def _open_apool(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        assert self.url is not None
        await self._aprobe()
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            timeout=self.timeout,
            kwargs=self._connect_options(),
            configure=self._aconfigure,
            open=False,
        )
        await pool.open()
        self._async_pool = pool
        return pool

    def _connect_options(self) -> dict[str, Any]:
        return {"autocommit": True, "connect_timeout": max(1, int(self.timeout))}

    def _probe(self) -> None:
        """One direct connection before the pool opens: a server that refuses it (no such
        database, wrong password, nothing listening) fails the call at once, with the
        server's reason in one line, instead of the pool's retries logging it for
        ``timeout`` seconds and then saying only that it got no connection."""
        import psycopg

        assert self.url is not None
        try:
            psycopg.connect(self.url, **self._connect_options()).close()
        except psycopg.Error as exc:
            raise _unreachable(exc) from exc

    async def _aprobe(self) -> None:
        import psycopg

        assert self.url is not None
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, **self._connect_options())
            await conn.close()
        except psycopg.Error as exc:
            raise _unreachable(exc) from exc

    def _errors(self, watch: Callable[[], Watch | None]) -> AbstractContextManager[None]:
        """Driver errors as StoreErrors; a call whose deadline shut its socket (``watch``
        fired) is a timeout, whatever the driver made of it."""

        def refine(exc: BaseException, kind: type[StoreError]) -> StoreError | type[StoreError]:
            fired = watch()
            if fired is not None and fired.fired:
                return StoreUnavailable(f"PostgreSQL store timed out after {self.timeout} s", exc)
            return kind

        return map_exceptions(_error_table, "PostgreSQL", refine=refine)

    def _recover(self) -> None:
        """After a failed call: check the server, replace a pool still backing off from
        an outage that has ended, or fail at once (:mod:`.recovery`)."""
        pool = self.pool
        if not self._owns_pools or not self._recovery.probe_due(pool):
            return
        try:
            self._probe()
        except StoreUnavailable as exc:
            self._recovery.probe_failed(exc)
            raise
        if self._recovery.probe_succeeded(pool) and self._pool is pool:
            self._pool = None
            threading.Thread(target=pool.close, name="satchel-pg-pool-close", daemon=True).start()

    async def _arecover(self) -> None:
        """:meth:`_recover` on the async path."""
        pool = await self._apool()
        if not self._owns_pools or not self._recovery.probe_due(pool):
            return
        try:
            await self._aprobe()
        except StoreUnavailable as exc:
            self._recovery.probe_failed(exc)
            raise
        if self._recovery.probe_succeeded(pool) and self._async_pool is pool:
            self._async_pool = None
            closing = asyncio.get_running_loop().create_task(pool.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor for one call; ``timeout`` bounds the whole call (waiting for a pooled
        connection, the statement, the first use's schema): past it, the connection's
        socket is shut down (see :class:`~satchel.stores._sql.Deadlines`), the connection
        closed so that the pool replaces it, and the call fails with StoreUnavailable."""
        if self._recovery.failing:
            self._recover()
        deadline = time.monotonic() + self.timeout
        watch = None
        try:
            with self._errors(lambda: watch), self.pool.connection(timeout=self.timeout) as conn:
                watch = deadlines.watch(conn.fileno(), deadline)
                self._recovery.acquired()
                try:
                    with watch:
                        if not self._ready:
                            self._create_schema(conn)
                        with conn.cursor() as cur:
                            yield cur
                finally:
                    self._recovery.released()
                    if watch.fired:  # final once the watch has ended
                        conn.close()  # its socket is shut: never back into the pool
        except StoreUnavailable:
            self._recovery.failing = True
            raise
        self._recovery.failing = False

    @asynccontextmanager
    async def _acursor(self) -> AsyncIterator[Any]:
        """As :meth:`_cursor`, with the same deadline thread. Not ``asyncio.timeout``: a
        psycopg statement cancelled by the event loop first asks the server to cancel it
        and waits for that, up to 10 s more on a frozen link; a shut socket ends the wait
        at once."""
        if self._recovery.failing:
            await self._arecover()
        deadline = time.monotonic() + self.timeout
        watch = None
        try:
            with self._errors(lambda: watch):
                pool = await self._apool()
                async with pool.connection(timeout=self.timeout) as conn:
                    watch = deadlines.watch(conn.fileno(), deadline)
                    self._recovery.acquired()
                    try:
                        with watch:
                            if not self._ready:
                                await self._acreate_schema(conn)
                            async with conn.cursor() as cur:
                                yield cur
                    finally:
                        self._recovery.released()
                        if watch.fired:  # final once the watch has ended
                            await conn.close()  # its socket is shut: never back into the pool
        except StoreUnavailable:
            self._recovery.failing = True
            raise
        self._recovery.failing = False

    def _execute(self, name: str, params: Any, fetch: Fetch = "rowcount") -> Any:
        """Run statement ``name``: its first row, all rows, or the row count."""
        with self._cursor() as cur:
            cur.execute(self._sql[name], params)
            if fetch == "rowcount":
                return cur.rowcount
            return cur.fetchone() if fetch == "one" else cur.fetchall()

    async def _aexecute(self, name: str, params: Any, fetch: Fetch = "rowcount") -> Any:
        async with self._acursor() as cur:
            await cur.execute(self._sql[name], params)
            if fetch == "rowcount":
                return cur.rowcount
            return await (cur.fetchone() if fetch == "one" else cur.fetchall())

    def _schema_lock(self) -> int:
        """The advisory lock key of this table's schema step (64 bits of a SHA-256)."""
        digest = hashlib.sha256(f"satchel schema {self.table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _create_schema(self, conn: Any) -> None:
        """``CREATE ... IF NOT EXISTS`` is not safe against itself: two workers starting
        at once both pass the check and the loser fails on a catalog unique index. One
        transaction under an advisory lock: the others wait, then find everything made."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._schema_lock(),))
            conn.execute(self._sql["schema"])
        self._ready = True

    async def _acreate_schema(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._schema_lock(),))
            await conn.execute(self._sql["schema"])
        self._ready = True

    # -- statements and their parameters, shared by both paths -------------------------------

    @staticmethod
    def _load_call(key: str, now: float, refresh: float | None) -> tuple[str, Any]:
        if refresh is None:
            return "load", (key, now)
        return "load_refresh", {"key": key, "now": now, "refresh": refresh}

    @staticmethod
    def _create_params(key: str, record: Record) -> dict[str, Any]:
        from psycopg.types.json import Jsonb

        return {
            "key": key,
            "data": Jsonb(dict(record.data), dumps=_json.dumps),
            "version": record.meta.version,
            **meta_params(record.meta),
        }

    @staticmethod
    def _update_params(key: str, change: Change, now: float) -> dict[str, Any]:
        from psycopg.types.json import Jsonb

        return {
            "key": key,
            "now": now,
            "clear": change.clear,
            "delete": list(change.delete),
            "set": Jsonb(dict(change.set), dumps=_json.dumps),
            "keep_device": change.keeps_device,
            "unbinds": change.unbinds,
            # both unbound (most writes): the stored meta is not parsed to keep its binding
            "device_null": change.meta.device is None,
            "version": change.meta.version,  # a floor: Change.version_over
            **meta_params(change.meta),
        }

    def _collision(self, exc: StoreError) -> StoreError:
        """A duplicate primary key is a real key collision; nothing else is."""
        import psycopg

        original = exc.original
        if (
            isinstance(original, psycopg.errors.UniqueViolation)
            and original.diag.constraint_name == f"{self.table}_pkey".lower()
        ):
            return KeyCollision("session key collision", original)
        return exc

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        row = self._execute(*self._load_call(key, now, refresh_after), fetch="one")
        return None if row is None else record_of(row)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return bool(self._execute("touch", {"key": key, "seen": last_seen, "now": now}))

    def create(self, key: str, record: Record) -> None:
        try:
            self._execute("create", self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    def update(self, key: str, change: Change, now: float) -> int | None:
        row = self._execute("update", self._update_params(key, change, now), "one")
        return None if row is None else int(row[0])

    def delete(self, key: str) -> bool:
        return bool(self._execute("delete", (key,)))

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        def batch() -> int:
            return int(self._execute("purge", (now, batch_size)))

        return purge_in_batches(batch, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """The user_id column (indexed) is the index: nothing to do (and no count: a
        login lists the user's sessions, one indexed query, to enforce the cap)."""
        return None

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return list(listed(self._execute("list_user", (user_id, now), "all"), meta_of))

    def close(self) -> None:
        if self._pool is not None and self._owns_pools:
            self._pool.close()
            self._pool = None

    # -- capabilities (satchel.stores.capabilities) --------------------------------------------

    def init_schema(self) -> None:
        """Create the table and its indexes (``satchel db init``)."""
        self._ready = False
        with self._cursor():
            pass

    def count(self, now: float) -> int:
        return int(self._execute("count", (now,), "one")[0])

    def count_expired(self, now: float) -> int:
        return int(self._execute("count_expired", (now,), "one")[0])

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        yield from listed(self._execute("all", (now,), "all"), meta_of)

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        def page(after: str, limit: int) -> Any:
            return self._execute("export", (now, after, limit), "all")

        return export_in_batches(page, record_of)

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        row = await self._aexecute(*self._load_call(key, now, refresh_after), fetch="one")
        return None if row is None else record_of(row)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return bool(await self._aexecute("touch", {"key": key, "seen": last_seen, "now": now}))

    async def acreate(self, key: str, record: Record) -> None:
        try:
            await self._aexecute("create", self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        row = await self._aexecute("update", self._update_params(key, change, now), "one")
        return None if row is None else int(row[0])

    async def adelete(self, key: str) -> bool:
        return bool(await self._aexecute("delete", (key,)))

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        async def batch() -> int:
            return int(await self._aexecute("purge", (now, batch_size)))

        return await apurge_in_batches(batch, batch_size, on_batch)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return list(listed(await self._aexecute("list_user", (user_id, now), "all"), meta_of))

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._async_pool is not None and self._owns_pools:
            await self._async_pool.close()
            self._async_pool = None
        self.close()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a failed opening's exception as seen (its callers, if any, got it)."""
    if not task.cancelled():
        task.exception()


def _unreachable(exc: BaseException) -> StoreUnavailable:
    """The store-unavailable error of a failed connection: the server's reason, one line
    (``FATAL: database "x" does not exist``), secrets scrubbed."""
    said = " ".join(str(exc).split())
    return StoreUnavailable(f"PostgreSQL store unavailable: {scrub(said)}", exc)


def libpq_parameters() -> frozenset[str]:
    """The connection parameters the installed libpq knows (the rest of the URL's query
    goes to it)."""
    import psycopg

    return frozenset(d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults())


def from_url(url: str) -> PostgresStore:
    """``postgresql://user@host:5432/db?table=...&max_size=10&timeout=5``; satchel's own
    query parameters are taken out, the rest goes to libpq."""
    clean, options = parse_url(url)
    if clean.startswith("postgres://"):
        clean = "postgresql://" + clean.removeprefix("postgres://")
    return PostgresStore(clean, **options)


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without satchel's parameters, and their values; ConfigurationError for an
    unknown parameter or a bad value (nothing is connected)."""
    from ..registry import read_url

    own: dict[str, Callable[[str], Any]] = {
        "table": str,
        "min_size": int,
        "max_size": int,
        "timeout": float,
    }
    return read_url(url, own, libpq_parameters(), "libpq")
