"""The PostgreSQL store against the machine's server, and through a proxy we can cut."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from starlette.applications import Starlette

from satchel import ids
from satchel.asgi import SessionMiddleware
from satchel.ops import drive
from satchel.stores.postgres import PostgresStore, from_url
from satchel.stores.registry import store_from_url
from satchel.testing.conformance import StoreConformance, cookie_id, request

from .conftest import KEY
from .helpers import make_engine
from .services import TcpProxy, port_open, unavailable
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio
BASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    return BASE


@pytest.fixture
def table(postgres_url: str) -> Iterator[str]:
    """A table of the test's own, dropped afterwards."""
    name = f"satchel_test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


class TestPostgresConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _table(self, postgres_url: str, table: str) -> None:
        self.url, self.table = postgres_url, table

    def make_store(self) -> PostgresStore:
        return PostgresStore(self.url, table=self.table, max_size=25)


def test_url_options(postgres_url: str) -> None:
    store = store_from_url(postgres_url + "?table=custom_t&max_size=3&timeout=1.5")
    assert isinstance(store, PostgresStore)
    assert (store.table, store.max_size, store.timeout) == ("custom_t", 3, 1.5)
    assert store.url == postgres_url
    assert from_url("postgres://u@h/db").url == "postgresql://u@h/db"
    with pytest.raises(Exception, match="not a plain SQL identifier"):
        PostgresStore(postgres_url, table="x; drop table y")


def test_schema_indexes_and_hashed_keys(postgres_url: str, table: str) -> None:
    store = PostgresStore(postgres_url, table=table)
    store.init_schema()
    _, cookie = drive(request(make_engine(), None, secret="value"), store)
    sid = cookie_id(cookie)
    assert sid is not None
    with psycopg.connect(postgres_url) as conn:
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
        }
        keys = [r[0] for r in conn.execute(f"SELECT key FROM {table}")]
        dump = str(conn.execute(f"SELECT * FROM {table}").fetchall())
    assert {f"{table}_expires_at", f"{table}_user_id", f"{table}_pkey"} <= indexes
    assert keys == [ids.store_key(sid)]
    assert sid not in dump
    store.close()


def test_purge_in_small_batches(postgres_url: str, table: str) -> None:
    from satchel.record import Record
    from satchel.testing.conformance import _meta

    store = PostgresStore(postgres_url, table=table)
    now = time.time()
    for _ in range(23):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(now - 10_000)))
    store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(now)))
    assert store.purge_expired(now, batch_size=5) == 23
    assert store.count(now) == 1
    store.close()


def test_pool_the_app_already_has(postgres_url: str, table: str) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(postgres_url, kwargs={"autocommit": True}, min_size=1) as pool:
        store = PostgresStore(pool=pool, table=table)
        _, cookie = drive(request(make_engine(), None, a=1), store)
        assert drive(request(make_engine(), cookie_id(cookie)), store)[0]["a"] == 1
        store.close()  # does not close a pool it did not make
        assert not pool.closed


async def test_cut_connection_gives_503_and_recovers(postgres_url: str, table: str) -> None:
    """A loopback proxy in front of the shared server is cut and restored; the shared server
    itself keeps running for the other tests."""
    proxy = TcpProxy(5432)
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{proxy.port}/test", table=table, timeout=1
    )
    app = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            assert (await c.get("/incr")).json() == {"n": 1}
            proxy.cut()
            down = await c.get("/incr")
            assert down.status_code == 503
            assert "Traceback" not in down.text
            assert "set-cookie" not in down.headers
            proxy.restore()
            recovered = None
            for _ in range(20):  # the pool replaces its broken connections
                recovered = await c.get("/incr")
                if recovered.status_code == 200:
                    break
            assert recovered is not None
            assert recovered.json() == {"n": 2}  # nothing half-written by the failed request
    finally:
        await store.aclose()
        proxy.close()
