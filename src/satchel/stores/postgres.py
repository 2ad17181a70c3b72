"""PostgreSQL store (psycopg 3 and psycopg_pool, sync and async).

Every operation is one statement in autocommit mode, so one round trip, atomic by itself:
the per-key commit merges inside PostgreSQL with jsonb ``-`` and ``||`` under the row lock,
so no read-modify-write race exists; the throttled "last seen" refresh of a read is folded
into the read with a data-modifying CTE.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ..errors import ConfigurationError, CorruptRecord, KeyCollision, StoreError, StoreUnavailable
from ..record import Change, Meta, Record
from ..redact import scrub
from ._sql import deadlines, meta_of, meta_params
from .base import Store, listed, purge_in_batches

DEFAULT_TABLE = "satchel_sessions"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    key                text PRIMARY KEY,          -- SHA-256 of the session ID, hex
    data               jsonb NOT NULL,            -- app key -> encoded value (JSON text)
    meta               text NOT NULL,             -- JSON of satchel.Meta
    last_seen          double precision NOT NULL, -- epoch seconds
    idle_timeout       double precision NOT NULL, -- seconds
    absolute_deadline  double precision NOT NULL, -- epoch seconds
    expires_at         double precision NOT NULL, -- least(last_seen + idle, deadline)
    user_id            text,                      -- NULL until login
    handle             text NOT NULL,             -- public handle shown in UIs
    version            bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t} (expires_at);
CREATE INDEX IF NOT EXISTS {t}_user_id ON {t} (user_id) WHERE user_id IS NOT NULL;
"""

# data is read as text and decoded by _record: psycopg's jsonb loader would raise
# RecursionError on a deeply nested (corrupt) document, past any handling.
_LOAD = "SELECT data::text, meta, last_seen, version FROM {t} WHERE key = %s AND expires_at > %s"

# One statement: refresh "last seen" when due, and return the row either way.
_LOAD_REFRESH = """
WITH touched AS (
    UPDATE {t} SET last_seen = %(now)s,
                   expires_at = least(%(now)s + idle_timeout, absolute_deadline)
    WHERE key = %(key)s AND expires_at > %(now)s
      AND %(now)s - last_seen >= %(refresh)s AND last_seen < absolute_deadline
    RETURNING data, meta, last_seen, version
)
SELECT data::text, meta, last_seen, version, true FROM touched
UNION ALL
SELECT data::text, meta, last_seen, version, false FROM {t}
WHERE key = %(key)s AND expires_at > %(now)s AND NOT EXISTS (SELECT 1 FROM touched)
"""

_TOUCH = """
UPDATE {t} SET last_seen = greatest(last_seen, %(seen)s),
               expires_at = least(greatest(last_seen, %(seen)s) + idle_timeout,
                                  absolute_deadline)
WHERE key = %(key)s AND expires_at > %(now)s
"""

_CREATE = """
INSERT INTO {t} (key, data, meta, last_seen, idle_timeout, absolute_deadline, expires_at,
                 user_id, handle, version)
VALUES (%(key)s, %(data)s, %(meta)s, %(ls)s, %(it)s, %(ad)s, %(exp)s, %(uid)s, %(handle)s,
        %(version)s)
"""

_UPDATE = """
UPDATE {t} SET
    data = (CASE WHEN %(clear)s THEN '{{}}'::jsonb ELSE data - %(delete)s::text[] END)
           || %(set)s::jsonb,
    meta = %(meta)s, last_seen = %(ls)s, idle_timeout = %(it)s,
    absolute_deadline = %(ad)s, expires_at = %(exp)s, user_id = %(uid)s,
    handle = %(handle)s, version = version + 1
WHERE key = %(key)s AND expires_at > %(now)s
RETURNING version
"""

_DELETE = "DELETE FROM {t} WHERE key = %s"

# Small batches, skipping rows other transactions hold: the table is never locked for long.
_PURGE = """
DELETE FROM {t} WHERE key IN (
    SELECT key FROM {t} WHERE expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED
)
"""

_COUNT = "SELECT count(*) FROM {t} WHERE expires_at > %s"
_COUNT_EXPIRED = "SELECT count(*) FROM {t} WHERE expires_at <= %s"
_ALL = "SELECT key, meta, last_seen, version FROM {t} WHERE expires_at > %s ORDER BY key"
_LIST_USER = "SELECT key, meta, last_seen, version FROM {t} WHERE user_id = %s AND expires_at > %s"


def _translate(exc: BaseException) -> StoreError:
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"PostgreSQL store unavailable: {scrub(str(exc))}", exc)
    return StoreError(f"PostgreSQL store failed: {scrub(str(exc))}", exc)


def _record(row: tuple[Any, ...]) -> Record:
    data, meta, last_seen, version, *rest = row
    try:
        data = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord("session data cannot be decoded", exc) from exc
    if not isinstance(data, dict):
        raise CorruptRecord("session data is not an object")
    meta_obj = meta_of((meta, last_seen, version))
    return Record(data, meta_obj, refreshed=bool(rest and rest[0]))


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
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"table name {table!r} is not a plain SQL identifier")
        self.url, self.table = url, table
        self.min_size, self.max_size, self.timeout = min_size, max_size, timeout
        self._pool, self._async_pool = pool, async_pool
        self._owns_pools = pool is None and async_pool is None
        self._ready = not create_table
        self._pid = os.getpid()
        self._sql = {
            name: sql.format(t=table)
            for name, sql in {
                "load": _LOAD,
                "load_refresh": _LOAD_REFRESH,
                "touch": _TOUCH,
                "create": _CREATE,
                "update": _UPDATE,
                "delete": _DELETE,
                "purge": _PURGE,
                "count": _COUNT,
                "list_user": _LIST_USER,
                "count_expired": _COUNT_EXPIRED,
                "all": _ALL,
                "schema": SCHEMA,
            }.items()
        }

    # -- pools ------------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() != self._pid and self._owns_pools:
            self._pool = self._async_pool = None  # the parent's sockets are not ours
            self._pid = os.getpid()

    def _configure(self, conn: Any) -> None:
        conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")

    async def _aconfigure(self, conn: Any) -> None:
        await conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")

    @property
    def pool(self) -> Any:
        self._check_fork()
        if self._pool is None:
            if self.url is None:
                raise ConfigurationError("this PostgresStore has no sync pool; pass pool=")
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout))},
                configure=self._configure,
                open=True,
            )
        return self._pool

    async def _apool(self) -> Any:
        self._check_fork()
        if self._async_pool is None:
            if self.url is None:
                raise ConfigurationError("this PostgresStore has no async pool; pass async_pool=")
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout))},
                configure=self._aconfigure,
                open=False,
            )
            await pool.open()
            self._async_pool = pool
        return self._async_pool

    def _timed_out(self, exc: BaseException | None) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL store timed out after {self.timeout} s", exc)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor for one call; ``timeout`` bounds the whole call (waiting for a pooled
        connection, the statement, the first use's schema): past it, the connection's
        socket is shut down (see :class:`~satchel.stores._sql.Deadlines`), the connection
        closed so that the pool replaces it, and the call fails with StoreUnavailable."""
        import psycopg

        deadline = time.monotonic() + self.timeout
        watch = None
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                watch = deadlines.watch(conn.fileno(), deadline)
                try:
                    with watch:
                        if not self._ready:
                            self._create_schema(conn)
                        with conn.cursor() as cur:
                            yield cur
                finally:
                    if watch.fired:  # final once the watch has ended
                        conn.close()  # its socket is shut: never back into the pool
        except StoreError:
            raise
        except psycopg.Error as exc:
            if watch is not None and watch.fired:
                raise self._timed_out(exc) from exc
            raise _translate(exc) from exc

    @asynccontextmanager
    async def _acursor(self) -> AsyncIterator[Any]:
        """As :meth:`_cursor`, with the same deadline thread. Not ``asyncio.timeout``: a
        psycopg statement cancelled by the event loop first asks the server to cancel it
        and waits for that, up to 10 s more on a frozen link; a shut socket ends the wait
        at once."""
        import psycopg

        deadline = time.monotonic() + self.timeout
        watch = None
        try:
            pool = await self._apool()
            async with pool.connection(timeout=self.timeout) as conn:
                watch = deadlines.watch(conn.fileno(), deadline)
                try:
                    with watch:
                        if not self._ready:
                            await self._acreate_schema(conn)
                        async with conn.cursor() as cur:
                            yield cur
                finally:
                    if watch.fired:  # final once the watch has ended
                        await conn.close()  # its socket is shut: never back into the pool
        except StoreError:
            raise
        except psycopg.Error as exc:
            if watch is not None and watch.fired:
                raise self._timed_out(exc) from exc
            raise _translate(exc) from exc

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

    def init_schema(self) -> None:
        """Create the table and its indexes (``satchel db init``)."""
        self._ready = False
        with self._cursor():
            pass

    # -- statements and their parameters, shared by both paths -------------------------------

    def _load_call(self, key: str, now: float, refresh: float | None) -> tuple[str, Any]:
        if refresh is None:
            return self._sql["load"], (key, now)
        return self._sql["load_refresh"], {"key": key, "now": now, "refresh": refresh}

    @staticmethod
    def _create_params(key: str, record: Record) -> dict[str, Any]:
        from psycopg.types.json import Jsonb

        return {
            "key": key,
            "data": Jsonb(dict(record.data)),
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
            "set": Jsonb(dict(change.set)),
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
        with self._cursor() as cur:
            cur.execute(*self._load_call(key, now, refresh_after))
            row = cur.fetchone()
        return None if row is None else _record(row)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._cursor() as cur:
            cur.execute(self._sql["touch"], {"key": key, "seen": last_seen, "now": now})
            return bool(cur.rowcount)

    def create(self, key: str, record: Record) -> None:
        try:
            with self._cursor() as cur:
                cur.execute(self._sql["create"], self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._cursor() as cur:
            cur.execute(self._sql["update"], self._update_params(key, change, now))
            row = cur.fetchone()
        return None if row is None else int(row[0])

    def delete(self, key: str) -> bool:
        with self._cursor() as cur:
            cur.execute(self._sql["delete"], (key,))
            return bool(cur.rowcount)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        def batch() -> int:
            with self._cursor() as cur:
                cur.execute(self._sql["purge"], (now, batch_size))
                return int(cur.rowcount)

        return purge_in_batches(batch, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        """The user_id column (indexed) is the index: nothing to do."""

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        with self._cursor() as cur:
            cur.execute(self._sql["list_user"], (user_id, now))
            rows = cur.fetchall()
        return list(listed(rows, meta_of))

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> None:
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        async with self._acursor() as cur:
            await cur.execute(self._sql["list_user"], (user_id, now))
            rows = await cur.fetchall()
        return list(listed(rows, meta_of))

    def count_expired(self, now: float) -> int | None:
        with self._cursor() as cur:
            cur.execute(self._sql["count_expired"], (now,))
            row = cur.fetchone()
        return int(row[0])

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._cursor() as cur:
            cur.execute(self._sql["all"], (now,))
            rows = cur.fetchall()
        yield from listed(rows, meta_of)

    def count(self, now: float) -> int:
        with self._cursor() as cur:
            cur.execute(self._sql["count"], (now,))
            row = cur.fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._pool is not None and self._owns_pools:
            self._pool.close()
            self._pool = None

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        async with self._acursor() as cur:
            await cur.execute(*self._load_call(key, now, refresh_after))
            row = await cur.fetchone()
        return None if row is None else _record(row)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        async with self._acursor() as cur:
            await cur.execute(self._sql["touch"], {"key": key, "seen": last_seen, "now": now})
            return bool(cur.rowcount)

    async def acreate(self, key: str, record: Record) -> None:
        try:
            async with self._acursor() as cur:
                await cur.execute(self._sql["create"], self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        async with self._acursor() as cur:
            await cur.execute(self._sql["update"], self._update_params(key, change, now))
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def adelete(self, key: str) -> bool:
        async with self._acursor() as cur:
            await cur.execute(self._sql["delete"], (key,))
            return bool(cur.rowcount)

    async def apurge_expired(self, now: float, batch_size: int = 500) -> int:
        total = 0
        while True:
            async with self._acursor() as cur:
                await cur.execute(self._sql["purge"], (now, batch_size))
                deleted: int = cur.rowcount
            total += deleted
            if deleted < batch_size:
                return total

    async def aclose(self) -> None:
        if self._async_pool is not None and self._owns_pools:
            await self._async_pool.close()
            self._async_pool = None
        self.close()


def from_url(url: str) -> PostgresStore:
    """``postgresql://user@host:5432/db?table=...&max_size=10&timeout=5``; satchel's own
    query parameters are taken out, the rest goes to libpq."""
    from .registry import url_options

    clean, options = url_options(
        url, {"table": str, "min_size": int, "max_size": int, "timeout": float}
    )
    if clean.startswith("postgres://"):
        clean = "postgresql://" + clean.removeprefix("postgres://")
    return PostgresStore(clean, **options)
