"""MariaDB / MySQL store, through SQLAlchemy Core with PyMySQL (sync) and aiomysql (async).

Why these: PyMySQL and aiomysql are pure Python, so they install anywhere without a
compiler or client library, and speak to MariaDB and MySQL alike; SQLAlchemy Core gives
both paths a well-kept connection pool (overflow, recycling, invalidation of broken
connections, fork guidance) that would otherwise be hand-made. No ORM is used.

Every operation is one statement. The per-key commit is one ``UPDATE`` whose
``JSON_MERGE_PATCH`` sets the changed keys and removes the deleted ones (a JSON null in a
merge patch removes a key; stored values are JSON strings, never null), under InnoDB's
row lock: no read-modify-write race. The new version comes back in the OK packet through
``LAST_INSERT_ID(version + 1)``, so the update needs no second round trip.

``user_id`` is ``VARBINARY``: every byte counts. MariaDB's ``utf8mb4_bin`` (and every
``_bin``/``_ci`` collation but the ``nopad`` ones) is PAD SPACE, so ``"alice "`` would match
``"alice"`` in listings, revoke-all and the per-user cap. A table made by satchel 0.1
(``VARCHAR`` ``utf8mb4_bin``) is converted when the schema step runs (first use with
``create_table=True``, or ``satchel db init``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any

from ..errors import ConfigurationError, CorruptRecord, KeyCollision, StoreError, StoreUnavailable
from ..record import Change, Meta, Record
from ..redact import scrub
from ._sql import deadlines, meta_of, meta_params
from .base import Store, listed, purge_in_batches

DEFAULT_TABLE = "satchel_sessions"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    skey               CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    data               LONGTEXT NOT NULL,   -- JSON object: app key -> encoded value
    meta               TEXT NOT NULL,       -- JSON of satchel.Meta
    last_seen          DOUBLE NOT NULL,     -- epoch seconds
    idle_timeout       DOUBLE NOT NULL,
    absolute_deadline  DOUBLE NOT NULL,
    expires_at         DOUBLE NOT NULL,     -- least(last_seen + idle, deadline)
    user_id            VARBINARY(1020) NULL, -- bytes: no PAD SPACE, "alice " is not "alice"
    handle             VARCHAR(32) NOT NULL,
    version            BIGINT NOT NULL,
    INDEX {t}_expires_at (expires_at),
    INDEX {t}_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"""

# satchel 0.1 made user_id a PAD SPACE VARCHAR; same length in bytes (255 x 4), as bytes.
_USER_COLUMN = """
SELECT DATA_TYPE FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'user_id'
"""
_MIGRATE_USER = "ALTER TABLE {t} MODIFY user_id VARBINARY(1020) NULL"
# Workers starting at once take turns: one creates or converts, the others then see it done.
_DUP_ENTRY = 1062  # ER_DUP_ENTRY
_LOCK = "SELECT GET_LOCK(:name, :wait)"
_UNLOCK = "SELECT RELEASE_LOCK(:name)"

_LOAD = "SELECT data, meta, last_seen, version FROM {t} WHERE skey = :key AND expires_at > :now"
# MariaDB and MySQL assign left to right: expires_at sees the new last_seen.
_TOUCH = """
UPDATE {t} SET last_seen = GREATEST(last_seen, :seen),
               expires_at = LEAST(last_seen + idle_timeout, absolute_deadline)
WHERE skey = :key AND expires_at > :now
"""
_CREATE = """
INSERT INTO {t} (skey, data, meta, last_seen, idle_timeout, absolute_deadline, expires_at,
                 user_id, handle, version)
VALUES (:key, :data, :meta, :ls, :it, :ad, :exp, :uid, :handle, :version)
"""
_UPDATE = """
UPDATE {t} SET
    data = JSON_MERGE_PATCH(IF(:clear, '{{}}', data), :patch),
    meta = :meta, last_seen = :ls, idle_timeout = :it, absolute_deadline = :ad,
    expires_at = :exp, user_id = :uid, handle = :handle,
    version = LAST_INSERT_ID(version + 1)
WHERE skey = :key AND expires_at > :now
"""
_DELETE = "DELETE FROM {t} WHERE skey = :key"
_PURGE = "DELETE FROM {t} WHERE expires_at <= :now LIMIT {batch}"
_COUNT = "SELECT count(*) FROM {t} WHERE expires_at > :now"
_COUNT_EXPIRED = "SELECT count(*) FROM {t} WHERE expires_at <= :now"
_ALL = "SELECT skey, meta, last_seen, version FROM {t} WHERE expires_at > :now ORDER BY skey"
_LIST_USER = (
    "SELECT skey, meta, last_seen, version FROM {t} WHERE user_id = :user AND expires_at > :now"
)


def _translate(exc: BaseException) -> StoreError:
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.OperationalError | sa.TimeoutError | sa.InterfaceError) or (
        isinstance(exc, sa.DBAPIError) and exc.connection_invalidated
    ):
        return StoreUnavailable(f"MySQL store unavailable: {exc.__class__.__name__}", exc)
    return StoreError(f"MySQL store failed: {scrub(str(exc))}", exc)


def _record(row: Any) -> Record:
    data, meta, last_seen, version = row
    try:
        values = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord("session data cannot be decoded", exc) from exc
    if not isinstance(values, dict):
        raise CorruptRecord("session data is not an object")
    return Record(values, meta_of((meta, last_seen, version)))


# The deadline of the sync call in progress (see MySQLStore._run).
_call_deadline: ContextVar[float | None] = ContextVar("satchel_mysql_deadline", default=None)


class MySQLStore(Store):
    """``MySQLStore("mysql://app:pw@db/app")`` (also ``mariadb://``).

    ``pool_size`` connections kept (default 10) plus ``max_overflow`` (default 10);
    ``timeout`` seconds for connecting, reading and waiting for a pooled connection
    (default 5). Connections are recycled after 30 minutes, below the server's
    ``wait_timeout``. The table is created on first use or by ``satchel db init``.
    After a fork the child makes its own pools.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 10,
        max_overflow: int = 10,
        timeout: float = 5.0,
        create_table: bool = True,
    ) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"table name {table!r} is not a plain SQL identifier")
        self.url, self.table = url, table
        self.pool_size, self.max_overflow, self.timeout = pool_size, max_overflow, timeout
        self._engine: Any = None
        self._async_engine: Any = None
        self._ready = not create_table
        self._pid = os.getpid()
        self._sql: dict[str, Any] = {}

    # -- engines ------------------------------------------------------------------------------

    def _driver_url(self, driver: str) -> Any:
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(drivername=f"mysql+{driver}")

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            if self._engine is not None:
                self._engine.dispose(close=False)  # leave the parent's sockets alone
            self._engine = self._async_engine = None
            self._pid = os.getpid()

    def _pool_options(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.timeout,
            "pool_recycle": 1800,
            # a failed statement's error must not carry its parameters (session values,
            # user IDs, devices) into the logs and the 503's cause
            "hide_parameters": True,
        }

    @property
    def engine(self) -> Any:
        self._check_fork()
        if self._engine is None:
            from sqlalchemy import create_engine

            timeout = self.timeout
            self._engine = create_engine(
                self._driver_url("pymysql"),
                connect_args={
                    "connect_timeout": timeout,
                    "read_timeout": timeout,
                    "write_timeout": timeout,
                    "charset": "utf8mb4",
                },
                **self._pool_options(),
            )
            from sqlalchemy import event

            @event.listens_for(self._engine, "do_connect")
            def _connect_within_the_call(dialect: Any, _: Any, cargs: Any, cparams: Any) -> Any:
                """A connection made for a call (the pool had none left) gets only what is
                left of that call's deadline to connect and shake hands (PyMySQL reads the
                handshake under its read timeout), then the configured timeouts again."""
                deadline = _call_deadline.get()
                if deadline is None:
                    return None
                left = max(0.01, deadline - time.monotonic())
                short = {"connect_timeout": left, "read_timeout": left, "write_timeout": left}
                conn = dialect.loaded_dbapi.connect(*cargs, **{**cparams, **short})
                conn._read_timeout = cparams["read_timeout"]  # PyMySQL's own attributes
                conn._write_timeout = cparams["write_timeout"]
                return conn

        return self._engine

    @property
    def async_engine(self) -> Any:
        self._check_fork()
        if self._async_engine is None:
            from sqlalchemy.ext.asyncio import create_async_engine

            self._async_engine = create_async_engine(
                self._driver_url("aiomysql"),
                connect_args={"connect_timeout": self.timeout, "charset": "utf8mb4"},
                **self._pool_options(),
            )
        return self._async_engine

    def _statement(self, name: str, **fmt: Any) -> Any:
        cache_key = name if not fmt else f"{name}:{sorted(fmt.items())}"
        statement = self._sql.get(cache_key)
        if statement is None:
            from sqlalchemy import text

            source = {
                "load": _LOAD,
                "touch": _TOUCH,
                "create": _CREATE,
                "update": _UPDATE,
                "delete": _DELETE,
                "purge": _PURGE,
                "count": _COUNT,
                "list_user": _LIST_USER,
                "count_expired": _COUNT_EXPIRED,
                "all": _ALL,
            }[name]
            statement = self._sql[cache_key] = text(source.format(t=self.table, **fmt))
        return statement

    def _run(self, name: str, params: dict[str, Any], **fmt: Any) -> Any:
        """One statement in a transaction. ``timeout`` bounds the whole call: the wait for a
        pooled connection, then what is left of it the statement and its COMMIT (PyMySQL's
        read timeout applies per read; a call that waited for the pool would otherwise get
        a whole timeout more), ended by shutting the socket down (as for PostgreSQL)."""
        from sqlalchemy import exc as sa

        deadline = time.monotonic() + self.timeout
        watch, token = None, _call_deadline.set(deadline)
        try:
            with self.engine.begin() as conn:
                sock = getattr(conn.connection.dbapi_connection, "_sock", None)
                watch = deadlines.watch(sock.fileno(), deadline) if sock is not None else None
                with watch or nullcontext():
                    if not self._ready:
                        self._schema(conn)
                    return conn.execute(self._statement(name, **fmt), params)
        except sa.SQLAlchemyError as exc:
            if watch is not None and watch.fired:
                raise StoreUnavailable(
                    f"MySQL store timed out after {self.timeout} s", exc
                ) from exc
            raise _translate(exc) from exc
        finally:
            _call_deadline.reset(token)

    def _schema_lock(self) -> dict[str, Any]:
        # MySQL caps lock names at 64 characters; two tables sharing a lock only take turns.
        name = f"satchel_schema_{self.table}"[:64]
        return {"name": name, "wait": max(1, int(self.timeout))}

    def _schema(self, conn: Any) -> None:
        """Under a named lock, create the table, then convert a satchel 0.1 ``user_id``
        column (see the module docstring)."""
        from sqlalchemy import text

        lock = self._schema_lock()
        if conn.execute(text(_LOCK), lock).scalar() != 1:
            raise StoreUnavailable(f"MySQL store: schema lock busy for {lock['wait']} s")
        try:
            conn.execute(text(SCHEMA.format(t=self.table)))
            column = conn.execute(text(_USER_COLUMN), {"t": self.table}).scalar()
            if str(column).lower() != "varbinary":
                conn.execute(text(_MIGRATE_USER.format(t=self.table)))
        finally:
            conn.execute(text(_UNLOCK), {"name": lock["name"]})
        self._ready = True

    async def _aschema(self, conn: Any) -> None:
        """:meth:`_schema` on the async path."""
        from sqlalchemy import text

        lock = self._schema_lock()
        if (await conn.execute(text(_LOCK), lock)).scalar() != 1:
            raise StoreUnavailable(f"MySQL store: schema lock busy for {lock['wait']} s")
        try:
            await conn.execute(text(SCHEMA.format(t=self.table)))
            column = (await conn.execute(text(_USER_COLUMN), {"t": self.table})).scalar()
            if str(column).lower() != "varbinary":
                await conn.execute(text(_MIGRATE_USER.format(t=self.table)))
        finally:
            await conn.execute(text(_UNLOCK), {"name": lock["name"]})
        self._ready = True

    async def _arun(self, name: str, params: dict[str, Any], **fmt: Any) -> Any:
        from sqlalchemy import exc as sa

        try:
            async with asyncio.timeout(self.timeout), self.async_engine.begin() as conn:
                if not self._ready:
                    await self._aschema(conn)
                return await conn.execute(self._statement(name, **fmt), params)
        except TimeoutError as exc:
            raise StoreUnavailable(f"MySQL store timed out after {self.timeout} s", exc) from exc
        except sa.SQLAlchemyError as exc:
            raise _translate(exc) from exc

    def init_schema(self) -> None:
        """Create the table and its indexes (``satchel db init``)."""
        self._ready = False
        self._run("count", {"now": 0})

    # -- parameters, shared by both paths -------------------------------------------------------

    @staticmethod
    def _create_params(key: str, record: Record) -> dict[str, Any]:
        return {
            "key": key,
            "data": json.dumps(dict(record.data)),
            "version": record.meta.version,
            **meta_params(record.meta),
        }

    @staticmethod
    def _update_params(key: str, change: Change, now: float) -> dict[str, Any]:
        patch: dict[str, str | None] = dict.fromkeys(change.delete)
        patch.update(change.set)
        return {
            "key": key,
            "now": now,
            "clear": change.clear,
            "patch": json.dumps(patch),
            **meta_params(change.meta),
        }

    @staticmethod
    def _version(result: Any) -> int | None:
        return int(result.lastrowid) if result.rowcount else None

    @staticmethod
    def _collision(exc: StoreError) -> StoreError:
        """A duplicate primary key (ER_DUP_ENTRY on PRIMARY) is a real key collision;
        no other integrity error is."""
        from sqlalchemy import exc as sa

        original = exc.original
        if isinstance(original, sa.IntegrityError):
            args = getattr(original.orig, "args", ())
            if args and args[0] == _DUP_ENTRY and "PRIMARY" in str(args[1:]):
                return KeyCollision("session key collision", original)
        return exc

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        row = self._run("load", {"key": key, "now": now}).first()
        return None if row is None else _record(row)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return bool(self._run("touch", {"key": key, "seen": last_seen, "now": now}).rowcount)

    def create(self, key: str, record: Record) -> None:
        try:
            self._run("create", self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    def update(self, key: str, change: Change, now: float) -> int | None:
        return self._version(self._run("update", self._update_params(key, change, now)))

    def delete(self, key: str) -> bool:
        return bool(self._run("delete", {"key": key}).rowcount)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        def batch() -> int:
            return int(self._run("purge", {"now": now}, batch=int(batch_size)).rowcount)

        return purge_in_batches(batch, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        """The user_id column (indexed) is the index: nothing to do."""

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        rows = self._run("list_user", {"user": user_id, "now": now}).fetchall()
        return list(listed(rows, meta_of))

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> None:
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        rows = (await self._arun("list_user", {"user": user_id, "now": now})).fetchall()
        return list(listed(rows, meta_of))

    def count_expired(self, now: float) -> int | None:
        return int(self._run("count_expired", {"now": now}).scalar_one())

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        yield from listed(self._run("all", {"now": now}).fetchall(), meta_of)

    def count(self, now: float) -> int:
        return int(self._run("count", {"now": now}).scalar_one())

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        row = (await self._arun("load", {"key": key, "now": now})).first()
        return None if row is None else _record(row)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        result = await self._arun("touch", {"key": key, "seen": last_seen, "now": now})
        return bool(result.rowcount)

    async def acreate(self, key: str, record: Record) -> None:
        try:
            await self._arun("create", self._create_params(key, record))
        except StoreError as exc:
            raise self._collision(exc) from exc.original

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        return self._version(await self._arun("update", self._update_params(key, change, now)))

    async def adelete(self, key: str) -> bool:
        return bool((await self._arun("delete", {"key": key})).rowcount)

    async def apurge_expired(self, now: float, batch_size: int = 500) -> int:
        total = 0
        while True:
            result = await self._arun("purge", {"now": now}, batch=int(batch_size))
            deleted: int = result.rowcount
            total += deleted
            if deleted < batch_size:
                return total

    async def aclose(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None
        self.close()


def from_url(url: str) -> MySQLStore:
    """``mysql://user:pw@host:3306/db`` or ``mariadb://...``, with optional ``table``,
    ``pool_size``, ``max_overflow`` and ``timeout`` query parameters."""
    from .registry import url_options

    clean, options = url_options(
        url, {"table": str, "pool_size": int, "max_overflow": int, "timeout": float}
    )
    return MySQLStore("mysql://" + clean.split("://", 1)[1], **options)
