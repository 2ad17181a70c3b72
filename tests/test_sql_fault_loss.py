"""What a fault can lose, or still write, on PostgreSQL and MariaDB (docs/stores.md,
"What a fault can lose"): measured on the real servers through a freezable proxy.

The link freezes just as a request's write (the per-key ``UPDATE``) is sent: the client
gives up at its deadline and answers 503, but the statement is already on its way, and the
server runs it when the link comes back.

* PostgreSQL runs each statement in autocommit: the late ``UPDATE`` commits. A 503 does not
  mean "nothing was written": the write may land, once, shortly after.
* MariaDB runs it inside SQLAlchemy's transaction, whose ``COMMIT`` was never sent: the
  server rolls it back when the connection closes. Only a fault between the ``COMMIT`` and
  its reply leaves a 503 whose write landed.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from satchel import asgi, wsgi
from satchel.record import Change
from satchel.stores.base import Store

from .conftest import KEY
from .helpers import CountingStore
from .services import FreezableTcpProxy
from .test_asgi import ROUTES
from .test_sql_frozen_link import BOUND, frozen_setup  # noqa: F401 - the fixture
from .test_wsgi import app as wsgi_app

# The counter after a 503'd increment from 1, once the link is back.
LANDS = {"postgres": 2, "mariadb": 1}

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FreezeOnUpdate(CountingStore):
    """The real store; the link freezes right before the first update is sent."""

    def __init__(self, inner: Store, proxy: FreezableTcpProxy) -> None:
        super().__init__(inner)
        self.proxy, self.armed = proxy, False

    def update(self, key: str, change: Change, now: float) -> int | None:
        if self.armed:
            self.armed = False
            self.proxy.freeze()
        return super().update(key, change, now)

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        if self.armed:
            self.armed = False
            self.proxy.freeze()
        return await super().aupdate(key, change, now)


@pytest.fixture
def freezing(
    frozen_setup: tuple[FreezableTcpProxy, Store],  # noqa: F811 - pytest fixture injection
    request: pytest.FixtureRequest,
) -> tuple[FreezableTcpProxy, FreezeOnUpdate, int]:
    proxy, store = frozen_setup
    backend = request.node.callspec.params["frozen_setup"]
    return proxy, FreezeOnUpdate(store, proxy), LANDS[backend]


def test_wsgi_timed_out_write_after_the_link_returns(
    freezing: tuple[FreezableTcpProxy, FreezeOnUpdate, int],
) -> None:
    proxy, store, expected = freezing
    app = wsgi.SessionMiddleware(wsgi_app, store=store, secret_keys=[KEY])
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://x") as c:
        assert c.get("/incr").text == "1"
        store.armed = True
        started = time.monotonic()
        assert c.get("/incr").status_code == 503
        assert time.monotonic() - started < BOUND
        proxy.thaw()
        time.sleep(1)  # the held statement reaches the server
        deadline = time.monotonic() + 10
        while (read := c.get("/read")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read.text.startswith(f"({expected},")  # PostgreSQL: the 503'd write landed


async def test_asgi_timed_out_write_after_the_link_returns(
    freezing: tuple[FreezableTcpProxy, FreezeOnUpdate, int],
) -> None:
    proxy, store, expected = freezing
    app = asgi.SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://x"
        ) as c:
            assert (await c.get("/incr")).json() == {"n": 1}
            store.armed = True
            started = time.monotonic()
            assert (await c.get("/incr")).status_code == 503
            assert time.monotonic() - started < BOUND
            proxy.thaw()
            await anyio.sleep(1)  # the held statement reaches the server
            deadline = time.monotonic() + 10
            while (read := await c.get("/read")).status_code != 200:
                assert time.monotonic() < deadline
                await anyio.sleep(0.1)
            assert read.json()["n"] == expected  # PostgreSQL: the 503'd write landed
    finally:
        await store.inner.aclose()
