"""Workers starting at once on a new table (a new SQLite file): every one of them opens its
store and creates its first session.

PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` is not safe against itself: two sessions racing
both pass the "not exists" check and the loser fails on the catalog's unique index
(``pg_type_typname_nsp_index``), which satchel 0.1 reported as a 503 "session key
collision". SQLite's switch of a new file to WAL takes an exclusive lock and gives up at
once, without the busy timeout, when another process holds the file: half of four gunicorn
workers booting on a new database died with "database is locked" in 0.1 (the reliability
run's load-flask scenario caught one). Processes, not threads, as real workers are (each
with its own store and pool, released together by a barrier, then building the store: the
SQLite store opens its file in its constructor).
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from satchel import ids
from satchel.record import Record
from satchel.stores.mysql import MySQLStore
from satchel.stores.postgres import PostgresStore
from satchel.stores.sqlite import SQLiteStore
from satchel.testing.conformance import _meta

from .services import port_open, unavailable

WORKERS = 8
ROUNDS = 3  # fresh tables, to give the race several chances
SQLITE_ROUNDS = 10  # fresh files: 0.1 failed about one round in three
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/test"


def _first_session(
    make: Callable[[str], Any], table: str, barrier: Any, results: Any, asynchronous: bool
) -> None:
    import asyncio
    import time

    record = Record({"a": '"1"'}, _meta(time.time()))
    key = ids.store_key(ids.new_session_id())
    barrier.wait()
    try:
        store = make(table)
        if asynchronous:

            async def run() -> None:
                await store.acreate(key, record)
                await store.aclose()

            asyncio.run(run())
        else:
            store.create(key, record)
            store.close()
        results.put("ok")
    except Exception as exc:  # reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def _postgres(table: str) -> PostgresStore:
    return PostgresStore(POSTGRES, table=table, min_size=1, max_size=2)


def _mysql(table: str) -> MySQLStore:
    return MySQLStore(MYSQL, table=table, pool_size=2)


def _sqlite(path: str) -> SQLiteStore:
    return SQLiteStore(path)


def _drop_postgres(table: str) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _drop_mysql(table: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def _drop_sqlite(path: str) -> None:
    shutil.rmtree(Path(path).parent, ignore_errors=True)


BACKENDS = {
    "postgres": (5432, _postgres, _drop_postgres),
    "mariadb": (3306, _mysql, _drop_mysql),
    "sqlite": (None, _sqlite, _drop_sqlite),
}


def _new_name(make: Callable[[str], Any]) -> str:
    """A new table, or a new SQLite file in a directory of its own."""
    if make is _sqlite:
        return str(Path(tempfile.mkdtemp(prefix="satchel-schema-")) / "sessions.db")
    return f"satchel_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=[(b, a) for b in sorted(BACKENDS) for a in (False, True)], ids=str)
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any, bool]]:
    name, asynchronous = request.param
    port, make, drop = BACKENDS[name]
    if port is not None and not port_open(port):
        unavailable(f"{name} on 127.0.0.1:{port}")
    tables: list[str] = []
    yield make, tables, asynchronous
    for table in tables:
        drop(table)


def test_workers_racing_on_a_new_table_all_succeed(backend: tuple[Any, Any, bool]) -> None:
    make, tables, asynchronous = backend
    context = multiprocessing.get_context("fork")
    for _ in range(ROUNDS if make is not _sqlite else SQLITE_ROUNDS):
        table = _new_name(make)
        tables.append(table)
        barrier, results = context.Barrier(WORKERS), context.Queue()
        workers = [
            context.Process(
                target=_first_session, args=(make, table, barrier, results, asynchronous)
            )
            for _ in range(WORKERS)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
        assert outcomes == ["ok"] * WORKERS


def test_only_a_duplicate_session_key_is_a_collision(backend: tuple[Any, Any, bool]) -> None:
    """The real collision (the same store key twice) is KeyCollision, on both paths; the
    schema race above is not one."""
    import asyncio
    import time

    from satchel.errors import KeyCollision

    make, tables, asynchronous = backend
    table = _new_name(make)
    tables.append(table)
    store = make(table)
    record = Record({}, _meta(time.time()))
    key = ids.store_key(ids.new_session_id())
    store.create(key, record)
    if asynchronous:

        async def twice() -> None:
            try:
                with pytest.raises(KeyCollision):
                    await store.acreate(key, record)
            finally:
                await store.aclose()

        asyncio.run(twice())
    else:
        with pytest.raises(KeyCollision):
            store.create(key, record)
        store.close()
