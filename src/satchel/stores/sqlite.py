"""SQLite store, the embedded default: WAL, an index on expiry, safe across processes.

Every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before reading, so a per-key merge can never interleave with another process's commit.

On the async path each call first runs inline on the event loop's own connection, whose
busy timeout is zero: an uncontended SQLite call (10-60 us) is cheaper than a hop to a
worker thread (about 60 us here). Only if the lock is busy does the call move to a
worker thread, where it waits up to ``timeout`` without blocking the loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from .. import _json
from ..errors import ConfigurationError, KeyCollision, StoreError, StoreUnavailable
from ..record import Change, Meta, Record
from ._errors import ErrorTable, map_exceptions
from ._files import check_parent, make_private
from ._sql import data_of
from .base import InlineFirstStore, export_in_batches, listed, purge_in_batches

T = TypeVar("T")
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS satchel_sessions (
    key         TEXT PRIMARY KEY,   -- SHA-256 of the session ID, hex; never the ID itself
    data        TEXT NOT NULL,      -- JSON object: app key -> encoded value
    meta        TEXT NOT NULL,      -- JSON of satchel.record.Meta
    expires_at  REAL NOT NULL,      -- min(last_seen + idle, absolute deadline), epoch seconds
    user_id     TEXT,               -- NULL until login
    handle      TEXT NOT NULL,      -- public handle shown in UIs
    version     INTEGER NOT NULL
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS satchel_sessions_expires_at ON satchel_sessions (expires_at)",
    "CREATE INDEX IF NOT EXISTS satchel_sessions_user_id ON satchel_sessions (user_id)"
    " WHERE user_id IS NOT NULL",
)
"""The statements creating the table and its indexes, run in order."""


def _error_table() -> ErrorTable:
    """A locked or unopenable database may come right; anything else is a failure."""
    return {sqlite3.OperationalError: StoreUnavailable, sqlite3.Error: StoreError}


def _mapped() -> AbstractContextManager[None]:
    return map_exceptions(_error_table, "SQLite")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY_CODES


def _enter_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (it stays so: later connections find it there and change
    nothing). The switch takes an exclusive lock and fails at once, without the busy
    timeout, while another connection holds the file, as workers starting together on a
    new file do: it is retried, with backoff, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _meta_of(fields: Sequence[Any]) -> Meta:
    return Meta.from_json(fields[0])


class SQLiteStore(InlineFirstStore):
    """``SQLiteStore("sessions.db")``; the file (and its WAL files) are created mode 0600,
    and existing ones open to group or others are set to 0600. One owned by another user or
    a symbolic link is refused, and so is a directory anyone may write to without the
    sticky bit (see :mod:`satchel.stores._files`).

    One connection per thread; ``timeout`` is how long a writer waits for the lock.
    The async forms run inline first (:class:`~satchel.stores.base.InlineFirstStore`).

    ``synchronous`` says what an acknowledged write survives. ``"normal"`` (the default;
    WAL with ``synchronous=NORMAL``): a crash of the process loses nothing, but a power
    loss or an OS crash can roll back the commits since the WAL was last synced (at most
    the last checkpoint's worth, 1,000 pages), logouts among them. ``"full"``: the WAL is
    fsynced at every commit, so nothing acknowledged is lost, at the cost of one fsync per
    write (3-6.5 ms instead of 45-250 us on the test VM; see docs/performance.md).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
        synchronous: Literal["normal", "full"] = "normal",
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ConfigurationError(
                f"SQLite synchronous={synchronous!r}: use 'normal' (durable against a crash "
                "of the process) or 'full' (also against a power loss)"
            )
        self.path = str(path)
        self.timeout = timeout
        self.synchronous = synchronous
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._pid = os.getpid()
        if self.path != ":memory:":
            self._open_file(Path(self.path))
        self.init_schema()

    @staticmethod
    def _open_file(path: Path) -> None:
        """Create the file mode 0600, or check an existing one: the database and the
        journal files beside it must be this process's own, not symbolic links, and give no
        access to group or others (tightened to 0600), and the directory holding them must
        not let others replace them (see :func:`make_private` and :func:`check_parent`)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            make_private(path.with_name(path.name + suffix), 0o600, "SQLite file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open SQLite file {path}: {exc}", exc) from exc
        check_parent(path.parent, "SQLite file")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise StoreUnavailable(f"cannot open SQLite file {path}: {exc}", exc) from exc

    def init_schema(self) -> None:
        """Create the table and its indexes (done on construction; ``satchel db init``), in
        one ``BEGIN IMMEDIATE`` transaction: workers starting at once on a new file take
        turns instead of racing from a read to a write."""
        with self._transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: connections must not cross processes
            self._local = threading.local()
            self._connections = []
            self._pid = os.getpid()
        nowait = getattr(self._local, "nowait", False)
        slot = "db_nowait" if nowait else "db"
        db: sqlite3.Connection | None = getattr(self._local, slot, None)
        if db is None:
            with _mapped():
                db = sqlite3.connect(
                    self.path,
                    timeout=0 if nowait else self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                _enter_wal(db, 0 if nowait else self.timeout)
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            setattr(self._local, slot, db)
            with self._guard:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        with _mapped():
            try:
                db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with _mapped():
            return fn(self._connection())

    @staticmethod
    def _record(data: str, meta: str) -> Record:
        return Record(data_of(data), Meta.from_json(meta))

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        row = self._run(
            lambda db: db.execute(
                "SELECT data, meta FROM satchel_sessions WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
        )
        return None if row is None else self._record(*row)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._transaction() as db:
            row = db.execute(
                "SELECT meta FROM satchel_sessions WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            if row is None:
                return False
            meta = Meta.from_json(row[0])
            if last_seen > meta.last_seen:
                meta = meta.with_changes(last_seen=last_seen)
                db.execute(
                    "UPDATE satchel_sessions SET meta = ?, expires_at = ? WHERE key = ?",
                    (meta.to_json(), meta.expires_at, key),
                )
            return True

    def create(self, key: str, record: Record) -> None:
        meta = record.meta
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO satchel_sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        _json.dumps(dict(record.data)),
                        meta.to_json(),
                        meta.expires_at,
                        meta.user_id,
                        meta.handle,
                        meta.version,
                    ),
                )
        except StoreError as exc:
            if isinstance(exc.original, sqlite3.IntegrityError):
                raise KeyCollision("session key collision", exc.original) from exc
            raise

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT data, meta FROM satchel_sessions WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            if row is None:
                return None
            current = self._record(*row)
            version = change.version_over(current.meta.version)
            meta = change.meta_over(current.meta).with_changes(version=version)
            db.execute(
                "UPDATE satchel_sessions SET data = ?, meta = ?, expires_at = ?, user_id = ?,"
                " handle = ?, version = ? WHERE key = ?",
                (
                    _json.dumps(change.apply(current.data)),
                    meta.to_json(),
                    meta.expires_at,
                    meta.user_id,
                    meta.handle,
                    version,
                    key,
                ),
            )
            return version

    def delete(self, key: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM satchel_sessions WHERE key = ?", (key,)).rowcount > 0

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Deletes in batches of ``batch_size``, each its own short transaction, so the
        write lock is never held for long."""

        def batch() -> int:
            with self._transaction() as db:
                return int(
                    db.execute(
                        "DELETE FROM satchel_sessions WHERE key IN (SELECT key FROM"
                        " satchel_sessions WHERE expires_at <= ? LIMIT ?)",
                        (now, batch_size),
                    ).rowcount
                )

        return purge_in_batches(batch, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """The user_id column (indexed) is the index: nothing to do (and no count: a
        login lists the user's sessions, one indexed query, to enforce the cap)."""
        return None

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, meta FROM satchel_sessions WHERE user_id = ? AND expires_at > ?",
                (user_id, now),
            ).fetchall()
        )
        return list(listed(rows, _meta_of))

    def count_expired(self, now: float) -> int:
        row = self._run(
            lambda db: db.execute(
                "SELECT count(*) FROM satchel_sessions WHERE expires_at <= ?", (now,)
            ).fetchone()
        )
        return int(row[0])

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT key, meta FROM satchel_sessions WHERE expires_at > ? ORDER BY key",
                (now,),
            ).fetchall()
        )
        yield from listed(rows, _meta_of)

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        def page(after: str, limit: int) -> list[Any]:
            return self._run(
                lambda db: db.execute(
                    "SELECT key, data, meta FROM satchel_sessions"
                    " WHERE expires_at > ? AND key > ? ORDER BY key LIMIT ?",
                    (now, after, limit),
                ).fetchall()
            )

        return export_in_batches(page, lambda fields: self._record(*fields))

    def count(self, now: float) -> int:
        row = self._run(
            lambda db: db.execute(
                "SELECT count(*) FROM satchel_sessions WHERE expires_at > ?", (now,)
            ).fetchone()
        )
        return int(row[0])

    @contextmanager
    def _nowait(self) -> Iterator[None]:
        """This thread's calls use its second connection, whose busy timeout is zero."""
        self._local.nowait = True
        try:
            yield
        finally:
            self._local.nowait = False

    def _busy(self, exc: StoreError) -> bool:
        original = exc.original
        return isinstance(original, sqlite3.OperationalError) and _is_busy(original)

    def close(self) -> None:
        with self._guard:
            for db in self._connections:
                db.close()
            self._connections = []
        self._local = threading.local()
