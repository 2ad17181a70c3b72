"""The MariaDB/MySQL store against the machine's MariaDB, and through a proxy we cut."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pymysql
import pytest
from starlette.applications import Starlette

from satchel import ids
from satchel.asgi import SessionMiddleware
from satchel.ops import drive
from satchel.stores.mysql import MySQLStore
from satchel.stores.registry import store_from_url
from satchel.testing.conformance import StoreConformance, cookie_id, request

from .conftest import KEY
from .helpers import make_engine
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
def table(mysql_url: str) -> Iterator[str]:
    name = f"satchel_test_{uuid.uuid4().hex[:10]}"
    yield name
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    conn.close()


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
