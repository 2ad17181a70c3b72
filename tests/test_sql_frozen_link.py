"""PostgreSQL and MariaDB behind a link that freezes (nothing forwarded, nothing closed):
every request answers 503 within about the store's timeout, on the ASGI (async driver) and
the WSGI (sync driver) paths, and the store works again once the link does.

Only a client-side deadline ends a call on such a link: the server never sees the query,
so its own ``statement_timeout`` cannot help, and TCP keeps the socket open for minutes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import psycopg
import pymysql
import pytest
from starlette.applications import Starlette

from satchel import asgi, wsgi
from satchel.stores.base import Store
from satchel.stores.mysql import MySQLStore
from satchel.stores.postgres import PostgresStore

from .conftest import KEY
from .services import TcpProxy, port_open, unavailable
from .test_asgi import ROUTES
from .test_wsgi import app as wsgi_app

pytestmark = pytest.mark.anyio
TIMEOUT = 1.0
BOUND = TIMEOUT * 1.5 + 0.5  # separates "answers" from "hangs for the outage"
FREEZE = 8.0  # how long the link stays frozen at most, well past the bound


def _drop_postgres(table: str) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _drop_mysql(table: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def _postgres(port: int, table: str) -> Store:
    url = f"postgresql://postgres@127.0.0.1:{port}/test"
    return PostgresStore(url, table=table, timeout=TIMEOUT)


def _mysql(port: int, table: str) -> Store:
    return MySQLStore(f"mysql://root@127.0.0.1:{port}/test", table=table, timeout=TIMEOUT)


BACKENDS: dict[str, tuple[int, Callable[[int, str], Store], Callable[[str], None]]] = {
    "postgres": (5432, _postgres, _drop_postgres),
    "mariadb": (3306, _mysql, _drop_mysql),
}


@pytest.fixture(params=sorted(BACKENDS))
def frozen_setup(request: pytest.FixtureRequest) -> Iterator[tuple[TcpProxy, Store]]:
    port, make, drop = BACKENDS[request.param]
    if not port_open(port):
        unavailable(f"{request.param} on 127.0.0.1:{port}")
    table = f"satchel_test_{uuid.uuid4().hex[:10]}"
    proxy = TcpProxy(port)
    store = make(proxy.port, table)
    yield proxy, store
    proxy.close()
    store.close()
    drop(table)


def _freeze(proxy: TcpProxy) -> None:
    """Freeze the link, and thaw it after FREEZE seconds whatever happens (so that a store
    without a deadline fails the test instead of hanging it)."""
    proxy.freeze()
    timer = threading.Timer(FREEZE, proxy.thaw)
    timer.daemon = True
    timer.start()


def _timed(send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = send()
    return response, time.monotonic() - started


def test_wsgi_frozen_link_gives_503_within_the_timeout(
    frozen_setup: tuple[TcpProxy, Store],
) -> None:
    proxy, store = frozen_setup
    app = wsgi.SessionMiddleware(wsgi_app, store=store, secret_keys=[KEY])
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="https://testserver") as c:
        assert c.get("/incr").text == "1"
        _freeze(proxy)
        try:
            for what, send in {
                "load": lambda: c.get("/incr"),
                "create": lambda: httpx.Client(
                    transport=transport, base_url="https://testserver"
                ).get("/incr"),
            }.items():
                response, elapsed = _timed(send)
                assert response.status_code == 503, what
                assert elapsed < BOUND, (what, elapsed)
        finally:
            proxy.thaw()
        _recovers(lambda: c.get("/incr"), lambda r: r.text == "2")


async def test_asgi_frozen_link_gives_503_within_the_timeout(
    frozen_setup: tuple[TcpProxy, Store],
) -> None:
    proxy, store = frozen_setup
    app = asgi.SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            assert (await c.get("/incr")).json() == {"n": 1}
            _freeze(proxy)
            try:
                for what in ("load", "create"):
                    if what == "create":
                        c.cookies.clear()
                    started = time.monotonic()
                    response = await c.get("/incr")
                    elapsed = time.monotonic() - started
                    assert response.status_code == 503, what
                    assert elapsed < BOUND, (what, elapsed)
            finally:
                proxy.thaw()
            for _ in range(100):  # the broken connections are discarded
                recovered = await c.get("/incr")
                if recovered.status_code == 200:
                    break
                await anyio.sleep(0.1)
            assert recovered.json() == {"n": 1}  # a fresh session (the cookie was cleared)
    finally:
        await store.aclose()


def _recovers(send: Callable[[], Any], ok: Callable[[Any], bool]) -> None:
    """The broken connections are discarded: the store answers again soon after."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = send()
        if response.status_code == 200:
            assert ok(response), response.text
            return
        time.sleep(0.1)
    raise AssertionError("the store did not recover after the link came back")


def test_mariadb_call_that_waited_for_the_pool_still_ends_within_the_timeout() -> None:
    """A call that waits for a pooled connection held by a frozen call, then runs its own
    statement on the frozen link, ends within one timeout of its start (sync path: the pool
    wait and PyMySQL's read timeout used to add up to twice the timeout)."""
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    from satchel.errors import StoreUnavailable

    table = f"satchel_test_{uuid.uuid4().hex[:10]}"
    proxy = TcpProxy(3306)
    store = MySQLStore(
        f"mysql://root@127.0.0.1:{proxy.port}/test",
        table=table,
        timeout=TIMEOUT,
        pool_size=1,
        max_overflow=0,
    )
    try:
        store.load("0" * 64, time.time())  # the schema, and the one pooled connection
        _freeze(proxy)
        took: list[float] = []

        def call() -> None:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.load("0" * 64, time.time())
            took.append(time.monotonic() - started)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)  # the second one waits for the first one's connection
        for thread in threads:
            thread.join(FREEZE + 5)
        assert len(took) == 2
        assert max(took) < TIMEOUT * 1.5, took
    finally:
        proxy.close()
        store.close()
        _drop_mysql(table)
