"""The MariaDB / MySQL store, through SQLAlchemy Core with PyMySQL (sync) and aiomysql (async).

Why these: PyMySQL and aiomysql are pure Python, so they install anywhere without a
compiler or client library, and speak to MariaDB and MySQL alike; SQLAlchemy Core gives
both paths a well-kept connection pool (overflow, recycling, invalidation of broken
connections, fork guidance) that would otherwise be hand-made. No ORM is used.

Every operation is one statement (:mod:`.statements` says how the per-key commit stays
one ``UPDATE``, and why ``user_id`` is ``VARBINARY``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from functools import cache
from typing import Any

from ... import _json
from ...errors import ConfigurationError, KeyCollision, StoreError, StoreUnavailable
from ...record import Change, Meta, Record
from ...redact import scrub
from .._errors import ErrorTable, map_exceptions
from .._sql import deadlines, meta_of, meta_params, record_of
from ..base import Store, apurge_in_batches, export_in_batches, listed, purge_in_batches
from . import statements as sql
from .statements import DEFAULT_TABLE, IDENTIFIER


@cache
def _error_table() -> ErrorTable:
    from sqlalchemy import exc as sa

    unavailable = (sa.OperationalError, sa.TimeoutError, sa.InterfaceError)
    return {unavailable: StoreUnavailable, sa.SQLAlchemyError: StoreError}


@cache
def _async_error_table() -> ErrorTable:
    return {TimeoutError: StoreUnavailable, **_error_table()}  # asyncio.timeout's first


def _describe(exc: BaseException, kind: type[StoreError]) -> str:
    """One line. An unreachable server's SQLAlchemy message may quote the statement: what
    the driver said (its error code and the server's or socket's message: unknown
    database, access denied, connection refused) is given instead, else the class name."""
    if kind is not StoreUnavailable:
        return scrub(str(exc))
    original = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        said = " ".join(args[1].split())
        return scrub(f"{type(original).__name__} {args[0]}: {said}")
    return exc.__class__.__name__


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
        if not IDENTIFIER.fullmatch(table):
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

            from .pools import FairQueuePool

            timeout = self.timeout
            self._engine = create_engine(
                self._driver_url("pymysql"),
                poolclass=FairQueuePool,
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

            source = sql.STATEMENTS[name].format(t=self.table, **fmt)
            statement = self._sql[cache_key] = text(source)
        return statement

    def _errors(
        self, timed_out: Callable[[BaseException], bool], table: Callable[[], ErrorTable]
    ) -> AbstractContextManager[None]:
        """Driver errors as StoreErrors; ``timed_out(exc)`` says the call's own deadline
        ended it, whatever the driver made of that."""

        def refine(exc: BaseException, kind: type[StoreError]) -> StoreError | type[StoreError]:
            from sqlalchemy import exc as sa

            if timed_out(exc):
                return StoreUnavailable(f"MySQL store timed out after {self.timeout} s", exc)
            if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
                return StoreUnavailable
            return kind

        return map_exceptions(table, "MySQL", describe=_describe, refine=refine)

    def _run(self, name: str, params: dict[str, Any], **fmt: Any) -> Any:
        """One statement in a transaction. ``timeout`` bounds the whole call: the wait for a
        pooled connection, then what is left of it the statement and its COMMIT (PyMySQL's
        read timeout applies per read; a call that waited for the pool would otherwise get
        a whole timeout more), ended by shutting the socket down (as for PostgreSQL)."""
        deadline = time.monotonic() + self.timeout
        watch, token = None, _call_deadline.set(deadline)
        try:
            timed_out = lambda _: watch is not None and watch.fired  # noqa: E731
            with self._errors(timed_out, _error_table), self.engine.begin() as conn:
                sock = getattr(conn.connection.dbapi_connection, "_sock", None)
                if sock is not None:
                    watch = deadlines.watch(sock.fileno(), deadline)
                with watch or nullcontext():
                    if not self._ready:
                        self._schema(conn)
                    return conn.execute(self._statement(name, **fmt), params)
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
        if conn.execute(text(sql.LOCK), lock).scalar() != 1:
            raise StoreUnavailable(f"MySQL store: schema lock busy for {lock['wait']} s")
        try:
            conn.execute(text(sql.SCHEMA.format(t=self.table)))
            column = conn.execute(text(sql.USER_COLUMN), {"t": self.table}).scalar()
            if str(column).lower() != "varbinary":
                conn.execute(text(sql.MIGRATE_USER.format(t=self.table)))
        finally:
            conn.execute(text(sql.UNLOCK), {"name": lock["name"]})
        self._ready = True

    async def _aschema(self, conn: Any) -> None:
        """:meth:`_schema` on the async path."""
        from sqlalchemy import text

        lock = self._schema_lock()
        if (await conn.execute(text(sql.LOCK), lock)).scalar() != 1:
            raise StoreUnavailable(f"MySQL store: schema lock busy for {lock['wait']} s")
        try:
            await conn.execute(text(sql.SCHEMA.format(t=self.table)))
            column = (await conn.execute(text(sql.USER_COLUMN), {"t": self.table})).scalar()
            if str(column).lower() != "varbinary":
                await conn.execute(text(sql.MIGRATE_USER.format(t=self.table)))
        finally:
            await conn.execute(text(sql.UNLOCK), {"name": lock["name"]})
        self._ready = True

    async def _arun(self, name: str, params: dict[str, Any], **fmt: Any) -> Any:
        """:meth:`_run` on the async engine, bounded by ``asyncio.timeout``."""
        with self._errors(lambda exc: isinstance(exc, TimeoutError), _async_error_table):
            async with asyncio.timeout(self.timeout), self.async_engine.begin() as conn:
                if not self._ready:
                    await self._aschema(conn)
                return await conn.execute(self._statement(name, **fmt), params)

    # -- parameters, shared by both paths -------------------------------------------------------

    @staticmethod
    def _create_params(key: str, record: Record) -> dict[str, Any]:
        return {
            "key": key,
            "data": _json.dumps(dict(record.data)),
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
            "patch": _json.dumps(patch),
            "keep_device": change.keeps_device,
            "unbinds": change.unbinds,
            # both unbound (most writes): the stored meta is not parsed to keep its binding
            "device_null": change.meta.device is None,
            "version": change.meta.version,  # a floor: Change.version_over
            **meta_params(change.meta),
        }

    @staticmethod
    def _version(result: Any) -> int | None:
        return int(result.lastrowid) if result.rowcount else None

    @staticmethod
    def _collision(exc: StoreError) -> StoreError:
        """A duplicate primary key (ERsql.DUP_ENTRY on PRIMARY) is a real key collision;
        no other integrity error is."""
        from sqlalchemy import exc as sa

        original = exc.original
        if isinstance(original, sa.IntegrityError):
            args = getattr(original.orig, "args", ())
            if args and args[0] == sql.DUP_ENTRY and "PRIMARY" in str(args[1:]):
                return KeyCollision("session key collision", original)
        return exc

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        row = self._run("load", {"key": key, "now": now}).first()
        return None if row is None else record_of(row)

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

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """The user_id column (indexed) is the index: nothing to do (and no count: a
        login lists the user's sessions, one indexed query, to enforce the cap)."""
        return None

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        rows = self._run("list_user", {"user": user_id, "now": now}).fetchall()
        return list(listed(rows, meta_of))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- capabilities (satchel.stores.capabilities) --------------------------------------------

    def init_schema(self) -> None:
        """Create the table and its indexes (``satchel db init``)."""
        self._ready = False
        self._run("count", {"now": 0})

    def count(self, now: float) -> int:
        return int(self._run("count", {"now": now}).scalar_one())

    def count_expired(self, now: float) -> int:
        return int(self._run("count_expired", {"now": now}).scalar_one())

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        yield from listed(self._run("all", {"now": now}).fetchall(), meta_of)

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        def page(after: str, limit: int) -> Any:
            return self._run("export", {"now": now, "after": after}, batch=int(limit)).fetchall()

        return export_in_batches(page, record_of)

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        row = (await self._arun("load", {"key": key, "now": now})).first()
        return None if row is None else record_of(row)

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

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        async def batch() -> int:
            return int((await self._arun("purge", {"now": now}, batch=int(batch_size))).rowcount)

        return await apurge_in_batches(batch, batch_size, on_batch)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        rows = (await self._arun("list_user", {"user": user_id, "now": now})).fetchall()
        return list(listed(rows, meta_of))

    async def aclose(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
            self._async_engine = None
        self.close()


# given as text in a URL's query, SQLAlchemy gathers these into the drivers' ``ssl`` dict
_SSL_PARAMETERS = (
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "ssl_capath",
    "ssl_cipher",
    "ssl_check_hostname",
)
# the drivers' connect arguments that only code can give (objects, not text)
_NOT_TEXT = ("conv", "cursorclass", "ssl", "self")


def driver_parameters() -> frozenset[str]:
    """The query parameters the rest of the URL's query may hold: the connect arguments
    both drivers take (the sync and the async path get the same), and SQLAlchemy's
    ``ssl_*``."""
    import inspect

    import aiomysql
    import pymysql

    sync = set(inspect.signature(pymysql.connections.Connection.__init__).parameters)
    both = sync & set(inspect.signature(aiomysql.connect).parameters)
    return frozenset(both - set(_NOT_TEXT)) | frozenset(_SSL_PARAMETERS)


def from_url(url: str) -> MySQLStore:
    """``mysql://user:pw@host:3306/db`` or ``mariadb://...``, with optional ``table``,
    ``pool_size``, ``max_overflow`` and ``timeout`` query parameters."""
    clean, options = parse_url(url)
    return MySQLStore("mysql://" + clean.split("://", 1)[1], **options)


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without satchel's parameters, and their values; ConfigurationError for an
    unknown parameter or a bad value (nothing is connected)."""
    from ..registry import read_url

    own: dict[str, Callable[[str], Any]] = {
        "table": str,
        "pool_size": int,
        "max_overflow": int,
        "timeout": float,
    }
    return read_url(url, own, driver_parameters(), "PyMySQL/aiomysql")
