"""The MariaDB/MySQL store against the machine's MariaDB, and through a proxy we cut."""

from __future__ import annotations

import asyncio
import time

import httpx
import pymysql
import pytest
from starlette.applications import Starlette

from satchel import ids
from satchel.asgi import SessionMiddleware
from satchel.errors import StoreError
from satchel.ops import drive
from satchel.record import Record
from satchel.stores.mysql import MySQLStore
from satchel.stores.registry import store_from_url
from satchel.testing.conformance import StoreConformance, cookie_id, request
from satchel.testing.flows import make_meta

from .conftest import KEY
from .helpers import loads_back_to_back, make_engine
from .services import TcpProxy, port_open, unavailable
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio
BASE = "mariadb://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mysql_url() -> str:
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    return BASE


@pytest.fixture
def table(mariadb_table: str) -> str:
    return mariadb_table


class TestMySQLConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _table(self, mysql_url: str, table: str) -> None:
        self.url, self.table = mysql_url, table

    def make_store(self) -> MySQLStore:
        return MySQLStore(self.url, table=self.table, pool_size=25)


def test_url_options(mysql_url: str) -> None:
    store = store_from_url(mysql_url + "?table=t1&pool_size=3&timeout=2")
    assert isinstance(store, MySQLStore)
    assert (store.table, store.pool_size, store.timeout) == ("t1", 3, 2.0)
    assert store.url == "mysql://root@127.0.0.1:3306/test"


def test_schema_and_hashed_keys(mysql_url: str, table: str) -> None:
    store = MySQLStore(mysql_url, table=table)
    store.init_schema()
    _, cookie = drive(request(make_engine(), None, secret="value"), store)
    sid = cookie_id(cookie)
    assert sid is not None
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    with conn.cursor() as cur:
        cur.execute(f"SHOW INDEX FROM {table}")
        indexes = {row[2] for row in cur.fetchall()}
        cur.execute(f"SELECT * FROM {table}")
        dump = str(cur.fetchall())
    conn.close()
    assert {"PRIMARY", f"{table}_expires_at", f"{table}_user_id"} <= indexes
    assert ids.store_key(sid) in dump
    assert sid not in dump
    store.close()


def test_values_with_quotes_nulls_and_unicode_survive_the_merge(mysql_url: str, table: str) -> None:
    store = MySQLStore(mysql_url, table=table)
    engine = make_engine()
    odd = {'we"ird.key': None, "ключ": "значение ✓", "$.path": [1, {"a": None}]}
    _, cookie = drive(request(engine, None, **odd), store)
    sid = cookie_id(cookie)
    drive(request(engine, sid, extra=1), store)
    session, _ = drive(request(engine, sid), store)
    assert dict(session) == {**odd, "extra": 1}
    store.close()


async def test_cut_connection_gives_503_and_recovers(mysql_url: str, table: str) -> None:
    proxy = TcpProxy(3306)
    store = MySQLStore(f"mysql://root@127.0.0.1:{proxy.port}/test", table=table, timeout=1)
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            assert (await c.get("/incr")).json() == {"n": 1}
            proxy.cut()
            down = await c.get("/incr")
            assert down.status_code == 503
            assert "set-cookie" not in down.headers
            proxy.restore()
            recovered = None
            for _ in range(20):
                recovered = await c.get("/incr")
                if recovered.status_code == 200:
                    break
            assert recovered is not None
            assert recovered.json() == {"n": 2}
    finally:
        await store.aclose()
        proxy.close()


# -- a caller waiting for a pooled connection is served first come, first served ------------


def _loads_back_to_back(store: MySQLStore) -> tuple[list[BaseException], float]:
    """20 threads loading five live sessions back to back for a second (helpers)."""
    now = time.time()
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    for key in keys:
        store.create(key, Record({"k": key}, make_meta(now)))

    def load(key: str) -> None:
        assert store.load(key, now + 1) is not None

    return loads_back_to_back(load, keys)


def test_threads_waiting_for_a_connection_are_served_in_turn(mysql_url: str, table: str) -> None:
    """(SQLAlchemy's QueuePool let a thread that returned the connection and asked again
    take it back before the waiter it woke ran: 5 loads failed at their 1 s deadline.)"""
    store = MySQLStore(mysql_url, table=table, pool_size=1, max_overflow=0, timeout=1.0)
    failures, worst = _loads_back_to_back(store)
    store.close()
    assert failures == []
    assert worst < 0.5


async def test_tasks_waiting_for_a_connection_are_served_in_turn(
    mysql_url: str, table: str
) -> None:
    """The asyncio pool: 20 tasks loading back to back for a second through one
    connection, none near its deadline; a waiter cancelled as it is handed the connection
    passes it on."""
    store = MySQLStore(mysql_url, table=table, pool_size=1, max_overflow=0, timeout=1.0)
    now = time.time()
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    for key in keys:
        await store.acreate(key, Record({"k": key}, make_meta(now)))
    failures: list[BaseException] = []
    worst = [0.0]
    end = time.monotonic() + 1.0

    async def reader(key: str) -> None:
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                assert await store.aload(key, now + 1) is not None
            except StoreError as exc:
                failures.append(exc)
            worst[0] = max(worst[0], time.monotonic() - started)

    await asyncio.gather(*(reader(keys[i % 5]) for i in range(20)))
    assert failures == []
    assert worst[0] < 0.5

    async def load(key: str) -> None:
        await store.aload(key, now + 1)

    for _ in range(20):  # some cancelled while waiting, some as they are handed it
        tasks = [asyncio.create_task(load(keys[i % 5])) for i in range(6)]
        await asyncio.sleep(0.001 * (_ % 4))
        tasks[1].cancel()
        tasks[2].cancel()
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=0.9)
        assert [type(r) for r in done].count(asyncio.CancelledError) <= 2
        assert not [r for r in done if isinstance(r, StoreError)]
    await store.aclose()
