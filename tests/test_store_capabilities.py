"""The store layer's seams: optional powers as capability interfaces (and the CLI's clear
refusal of a store without one), one driver-error translation, the generated async twins,
and the user index key shared by the stores."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from satchel import ids
from satchel.cli import main
from satchel.errors import StoreError, StoreUnavailable
from satchel.record import Change, Meta, Record
from satchel.stores import (
    Countable,
    ExpiryCountable,
    Exportable,
    FileStore,
    HasSchema,
    Listable,
    MemoryStore,
    SQLiteStore,
    Store,
    register_scheme,
)
from satchel.stores._errors import ErrorTable, map_exceptions, translate
from satchel.testing import FakeClock
from satchel.testing.conformance import _meta

from .services import MemcachedServer

POWERS = (Countable, Listable, ExpiryCountable, HasSchema, Exportable)


def _stores(tmp_path: Path) -> dict[str, tuple[Store, set[type]]]:
    """Every store (none connects when made), and the powers it must have."""
    from satchel.stores.memcached import MemcachedStore
    from satchel.stores.mysql import MySQLStore
    from satchel.stores.postgres import PostgresStore
    from satchel.stores.redis import RedisStore

    sql: set[type] = {Countable, Listable, ExpiryCountable, HasSchema, Exportable}
    listing: set[type] = {Countable, Listable, Exportable}
    return {
        "memory": (MemoryStore(), listing),
        "file": (FileStore(tmp_path / "files"), listing),
        "sqlite": (SQLiteStore(tmp_path / "s.db"), sql),
        "redis": (RedisStore("redis://127.0.0.1:6379/0"), listing),
        "postgres": (PostgresStore("postgresql://postgres@127.0.0.1:5432/test"), sql),
        "mysql": (MySQLStore("mysql://root@127.0.0.1:3306/test"), sql),
        "memcached": (MemcachedStore([("127.0.0.1", 11211)]), set()),
    }


def test_each_store_has_exactly_its_powers(tmp_path: Path) -> None:
    for name, (store, powers) in _stores(tmp_path).items():
        try:
            assert {p for p in POWERS if isinstance(store, p)} == powers, name
            # no power is faked on the base: the optional methods are not there at all
            for method in (
                "count",
                "iter_sessions",
                "count_expired",
                "init_schema",
                "iter_records",
            ):
                assert not hasattr(Store, method)
        finally:
            store.close()


class Bare(Store):
    """A store with the base contract only (a MemoryStore underneath): no optional
    power, as a third-party store might be."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        return self.inner.load(key, now, refresh_after)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return self.inner.touch(key, last_seen, now)

    def create(self, key: str, record: Record) -> None:
        self.inner.create(key, record)

    def update(self, key: str, change: Change, now: float) -> int | None:
        return self.inner.update(key, change, now)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.inner.purge_expired(now, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        self.inner.index_add(user_id, key, deadline)

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self.inner.list_user(user_id, now)


def bare_from_url(url: str) -> Store:
    return Bare()


@pytest.fixture
def bare_scheme() -> Iterator[str]:
    from satchel.stores import registry

    register_scheme("bare", f"{__name__}:bare_from_url")
    yield "bare://"
    del registry._SCHEMES["bare"]


def test_cli_refuses_a_store_without_a_power_clearly(bare_scheme: str) -> None:
    assert not any(isinstance(Bare(), p) for p in POWERS)
    run = CliRunner().invoke
    stats = run(main, ["sessions", "stats", "--store", bare_scheme])
    assert (stats.exit_code, stats.stderr.strip()) == (
        1,
        "store: bare:// (from argument)\n"  # which store it opened, then why it cannot
        "Error: this store cannot count its sessions: Bare cannot count one application's sessions",
    )
    listing = run(main, ["sessions", "list", "--store", bare_scheme])
    assert listing.exit_code == 1
    assert "Bare cannot list all its sessions; use --user" in listing.output
    revoke = run(main, ["sessions", "revoke", "--handle", "A" * 12, "--store", bare_scheme])
    assert revoke.exit_code == 1
    assert "Bare cannot list all its sessions; give --user with --handle" in revoke.output
    # what every store does still works: a user's sessions, a purge (no progress count)
    assert run(main, ["sessions", "list", "--user", "alice", "--store", bare_scheme]).exit_code == 0
    purge = run(main, ["sessions", "purge", "--store", bare_scheme])
    assert (purge.exit_code, purge.stdout.strip()) == (0, "purged 0 expired session(s)")
    init = run(main, ["db", "init", "--store", bare_scheme])
    assert (init.exit_code, init.stdout.strip()) == (0, "Bare needs no schema: nothing to do")


def test_cli_on_memcached_refuses_counting_and_listing(memcached: MemcachedServer) -> None:
    run = CliRunner().invoke
    stats = run(main, ["sessions", "stats", "--store", memcached.url])
    assert stats.exit_code == 1
    assert "this store cannot count its sessions: MemcachedStore" in stats.output
    listing = run(main, ["sessions", "list", "--store", memcached.url])
    assert listing.exit_code == 1
    assert "MemcachedStore cannot list all its sessions; use --user" in listing.output
    purge = run(main, ["sessions", "purge", "--json", "--store", memcached.url])
    assert (purge.exit_code, purge.stdout.strip()) == (0, '{\n  "purged": 0\n}')


def test_stats_of_a_store_expiring_by_itself_omit_the_expired_count() -> None:
    stats = CliRunner().invoke(main, ["sessions", "stats", "--json", "--store", "memory://"])
    assert stats.exit_code == 0
    assert '"expired_awaiting_purge": null' in stats.output


# -- the async twins -----------------------------------------------------------------------


class Watched(MemoryStore):
    """Records the thread each sync method runs in."""

    threads: list[int]

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        self.threads.append(threading.get_ident())
        return super().load(key, now, refresh_after)


def test_memory_async_forms_run_inline_on_the_event_loop() -> None:
    store = Watched()
    store.threads = []

    async def main() -> int:
        await store.aload("0" * 64, time.time())
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert store.threads == [loop_thread]  # no hop to a worker thread


class WatchedSQLite(SQLiteStore):
    threads: list[int]

    def delete(self, key: str) -> bool:
        self.threads.append(threading.get_ident())
        return super().delete(key)


def test_sqlite_async_forms_run_inline_unless_the_lock_is_busy(tmp_path: Path) -> None:
    import sqlite3

    store = WatchedSQLite(tmp_path / "w.db", timeout=2)
    store.threads = []

    async def delete() -> int:
        await store.adelete("0" * 64)
        return threading.get_ident()

    loop_thread = asyncio.run(delete())
    assert store.threads == [loop_thread]  # uncontended: inline, no thread hop
    store.threads = []
    holder = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        loop_thread = asyncio.run(delete())
    finally:
        release.join()
        holder.close()
        store.close()
    # busy: tried inline without waiting, then again in a worker thread, which waited
    assert store.threads[0] == loop_thread
    assert len(store.threads) == 2
    assert store.threads[1] != loop_thread


def test_apurge_expired_reports_each_batch(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    for store in (MemoryStore(), SQLiteStore(tmp_path / "p.db"), FileStore(tmp_path / "f")):
        for _ in range(5):
            store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now)))
        batches: list[int] = []
        later = clock.now + 100 * 86400
        purged = asyncio.run(store.apurge_expired(later, 2, batches.append))
        assert purged == 5, store
        assert sum(batches) == 5, store
        store.close()


# -- one error translation -----------------------------------------------------------------


def test_map_exceptions_translates_by_table_in_order() -> None:
    table: ErrorTable = {(ConnectionError, TimeoutError): StoreUnavailable, OSError: StoreError}
    with pytest.raises(StoreUnavailable) as caught, map_exceptions(lambda: table, "Test"):
        raise ConnectionRefusedError("redis://:hunter2@db:6379 refused")
    assert str(caught.value).startswith("Test store unavailable: ")
    assert "hunter2" not in str(caught.value)
    assert isinstance(caught.value.original, ConnectionRefusedError)
    assert caught.value.__cause__ is caught.value.original
    with pytest.raises(StoreError) as failed, map_exceptions(lambda: table, "Test"):
        raise PermissionError("no")
    assert type(failed.value) is StoreError
    assert str(failed.value) == "Test store failed: no"
    with pytest.raises(KeyError), map_exceptions(lambda: table, "Test"):
        raise KeyError("not a driver error: goes up as it is")
    own = StoreUnavailable("already translated")
    with pytest.raises(StoreUnavailable) as passed, map_exceptions(lambda: table, "Test"):
        raise own
    assert passed.value is own
    assert translate(ValueError(), table, "Test") is None


def test_map_exceptions_works_around_awaits() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("late")

    async def main() -> None:
        with map_exceptions(lambda: {OSError: StoreUnavailable}, "Test"):
            await failing()

    with pytest.raises(StoreUnavailable, match="Test store unavailable: late"):
        asyncio.run(main())


def test_real_driver_faults_keep_their_messages_and_originals() -> None:
    """A server that is not there, for each network store: StoreUnavailable naming the
    backend, the driver's exception kept, no password in the message."""
    from satchel.stores.memcached import MemcachedStore
    from satchel.stores.mysql import MySQLStore
    from satchel.stores.postgres import PostgresStore
    from satchel.stores.redis import RedisStore

    cases: list[tuple[Store, str]] = [
        (RedisStore("redis://:hunter2@127.0.0.1:1/0", socket_timeout=0.5), "Redis store"),
        (MemcachedStore([("127.0.0.1", 1)], timeout=0.5), "Memcached store unavailable: "),
        (
            PostgresStore("postgresql://u:hunter2@127.0.0.1:1/test", timeout=1),
            "PostgreSQL store",
        ),
        (MySQLStore("mysql://u:hunter2@127.0.0.1:1/test", timeout=1), "MySQL store"),
    ]
    for store, prefix in cases:
        with pytest.raises(StoreUnavailable) as caught:
            store.load("0" * 64, time.time())
        assert str(caught.value).startswith(prefix), str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert caught.value.original is not None
        store.close()


def test_sqlite_lock_busy_is_unavailable_with_the_driver_error(tmp_path: Path) -> None:
    import sqlite3

    store = SQLiteStore(tmp_path / "busy.db", timeout=0.05)
    holder = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="SQLite store unavailable: database is locked"):
            store.delete("0" * 64)
        # the async path tries inline without waiting, then waits in a thread: same answer
        with pytest.raises(StoreUnavailable) as caught:
            asyncio.run(store.adelete("0" * 64))
        assert isinstance(caught.value.original, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


# -- the user index key --------------------------------------------------------------------


def test_user_key_is_the_format_existing_indexes_use(tmp_path: Path) -> None:
    from satchel.stores.memcached import MemcachedStore
    from satchel.stores.redis import RedisStore

    user = "ålice@example.com"
    digest = hashlib.sha256(user.encode("utf-8")).hexdigest()
    assert ids.user_key(user) == digest
    assert RedisStore("redis://127.0.0.1:1").index_key(user) == f"satchel:u:{digest}"
    assert MemcachedStore([("127.0.0.1", 1)]).index_item(user) == f"satchel:u:{digest}"
    files = FileStore(tmp_path / "users")
    assert files._user_file(user)[1] == tmp_path / "users" / ".users" / f"{digest}.json"


def test_memcached_index_follows_the_apps_clock(memcached: MemcachedServer) -> None:
    """The index item's life comes from the deadlines the core passes, not from the
    machine's clock: with an app clock near 1970 (a test clock), a logged-in session is
    still honoured (0.1 computed the index's life from time.time(), so the index expired
    at once and the session was refused as unlisted)."""
    from satchel.stores.memcached import MemcachedStore

    store = MemcachedStore([("127.0.0.1", memcached.port)], prefix="clock:")
    now = 1000.0
    meta = _meta(now).with_changes(user_id="alice")
    key = ids.store_key(ids.new_session_id())
    store.create(key, Record({"a": "1"}, meta))
    store.index_add("alice", key, meta.absolute_deadline)
    assert store.load(key, now) is not None
    assert [k for k, _ in store.list_user("alice", now)] == [key]
    store.close()
