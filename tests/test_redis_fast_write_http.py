"""The Redis write's fast path (issue 12) attacked from outside: requests through the ASGI
middleware against the real Redis (a private key prefix), racing each other at the points
where a write that trusted a stale read would lose or revive something -- a parallel
write to another key, a logout, a revocation from another device, a second save from
the same session object, an expiry change -- and checking the stored hash and its TTL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import Session, login, logout
from satchel.asgi import SessionMiddleware
from satchel.stores.redis import RedisStore

from .conftest import KEY

pytestmark = pytest.mark.anyio


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


class Gates:
    """Lets a test hold a request between its read and its write."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()
        self.go = asyncio.Event()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=f"satchel-attack12:{uuid.uuid4().hex[:8]}:")
    yield store
    for key in keys_of(store, "*"):
        store.client.delete(key)
    await store.aclose()
    store.close()


def keys_of(store: RedisStore, pattern: str) -> list[bytes]:
    """The keys under the test's prefix."""
    return list(store.client.scan_iter(match=store.prefix + pattern))


def make_app(store: RedisStore, gates: Gates) -> Any:
    async def do_login(request: Request) -> Response:
        login(_session(request), request.query_params.get("user", "alice"))
        return JSONResponse({})

    async def put(request: Request) -> Response:
        session = _session(request)
        name = request.query_params["k"]
        session.get(name)  # loaded here
        if request.query_params.get("hold"):
            gates.loaded.set()
            await gates.go.wait()
        session[name] = request.query_params["v"]
        return JSONResponse({})

    async def twice(request: Request) -> Response:
        session = _session(request)
        session["a"] = "1"
        await session.asave()
        if request.query_params.get("hold"):
            gates.loaded.set()
            await gates.go.wait()
        session["b"] = "2"
        await session.asave()
        session["c"] = "3"
        return JSONResponse({})

    async def remember(request: Request) -> Response:
        session = _session(request)
        session.get("x")
        if request.query_params.get("hold"):
            gates.loaded.set()
            await gates.go.wait()
        idle = request.query_params.get("idle")
        absolute = request.query_params.get("absolute")
        session.set_expiry(
            idle_timeout=float(idle) if idle else None,
            absolute_timeout=float(absolute) if absolute else None,
            persistent=bool(request.query_params.get("persistent")) or None,
        )
        return JSONResponse({})

    async def do_logout(request: Request) -> Response:
        logout(_session(request))
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/login", do_login),
            Route("/put", put),
            Route("/twice", twice),
            Route("/remember", remember),
            Route("/logout", do_logout),
        ]
    )
    return SessionMiddleware(app, store=store, secret_keys=[KEY], refresh_interval=0)


def stored(store: RedisStore) -> dict[str, str]:
    """The one session hash under the test's prefix."""
    keys = keys_of(store, "s:*")
    assert len(keys) == 1, keys
    raw: dict[bytes, bytes] = store.client.hgetall(keys[0])
    return {name.decode(): value.decode() for name, value in raw.items()}


def ttl_at(store: RedisStore) -> float:
    keys = keys_of(store, "s:*")
    assert len(keys) == 1
    return int(store.client.pexpiretime(keys[0])) / 1000


async def client(store: RedisStore, gates: Gates) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(store, gates))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def held(c: httpx.AsyncClient, gates: Gates, url: str) -> asyncio.Task[httpx.Response]:
    task = asyncio.ensure_future(c.get(url))
    await asyncio.wait_for(gates.loaded.wait(), 5)
    return task


async def test_a_parallel_write_to_another_key_is_kept(store: RedisStore) -> None:
    gates = Gates()
    async with await client(store, gates) as c:
        (await c.get("/login")).raise_for_status()
        (await c.get("/put?k=a&v=0")).raise_for_status()
        slow = await held(c, gates, "/put?k=a&v=1&hold=1")
        (await c.get("/put?k=b&v=2")).raise_for_status()
        gates.go.set()
        (await slow).raise_for_status()
    fields = stored(store)
    assert (fields["d:a"], fields["d:b"]) == ('"1"', '"2"')  # (JSON text)
    assert fields["u"] == "alice"


async def test_a_write_after_a_logout_does_not_bring_the_session_back(store: RedisStore) -> None:
    gates = Gates()
    async with await client(store, gates) as c:
        (await c.get("/login")).raise_for_status()
        (await c.get("/put?k=a&v=0")).raise_for_status()
        cookies = dict(c.cookies)
        slow = await held(c, gates, "/put?k=a&v=1&hold=1")
        (await c.get("/logout")).raise_for_status()
        gates.go.set()
        (await slow).raise_for_status()
    assert cookies
    assert keys_of(store, "s:*") == []


async def test_two_saves_and_a_parallel_write(store: RedisStore) -> None:
    """The second save of one session object goes from what the first wrote, which a
    parallel request has since changed: nothing of either is lost."""
    gates = Gates()
    async with await client(store, gates) as c:
        (await c.get("/login")).raise_for_status()
        slow = await held(c, gates, "/twice?hold=1")
        (await c.get("/put?k=z&v=9")).raise_for_status()
        gates.go.set()
        (await slow).raise_for_status()
    fields = stored(store)
    assert {k: v for k, v in fields.items() if k.startswith("d:")} == {
        "d:a": '"1"',
        "d:b": '"2"',
        "d:c": '"3"',
        "d:z": '"9"',
    }


@pytest.mark.parametrize(
    "query",
    ["idle=60", "idle=7200&persistent=1", "absolute=30", "absolute=100000&idle=50000"],
)
async def test_an_expiry_change_sets_the_ttl_of_the_fields_written(
    store: RedisStore, query: str
) -> None:
    gates = Gates()
    async with await client(store, gates) as c:
        (await c.get("/login")).raise_for_status()
        (await c.get("/remember?" + query)).raise_for_status()
        (await c.get("/put?k=a&v=1")).raise_for_status()
    fields = stored(store)
    expected = min(float(fields["ls"]) + float(fields["it"]), float(fields["ad"]))
    assert ttl_at(store) == pytest.approx(expected, abs=0.002)
    assert float(fields["ad"]) > time.time()


async def test_an_expiry_change_racing_a_write(store: RedisStore) -> None:
    """A shorter idle timeout committed while another request held the session: the
    other request's write keeps it (it does not touch the timeout), and the TTL follows
    the stored fields."""
    gates = Gates()
    async with await client(store, gates) as c:
        (await c.get("/login")).raise_for_status()
        slow = await held(c, gates, "/put?k=a&v=1&hold=1")
        (await c.get("/remember?idle=60")).raise_for_status()
        gates.go.set()
        (await slow).raise_for_status()
    fields = stored(store)
    assert float(fields["it"]) == 60
    expected = min(float(fields["ls"]) + float(fields["it"]), float(fields["ad"]))
    assert ttl_at(store) == pytest.approx(expected, abs=0.002)


# -- what a login records of the device (issue 12 reads the User-Agent alone, and the peer
# when no proxy is trusted) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted", "client_ip"), [((), "127.0.0.7"), (("127.0.0.0/8",), "203.0.113.9")]
)
@pytest.mark.parametrize("first", [True, False], ids=["first request", "with a session"])
async def test_a_login_records_the_user_agent_and_the_client(
    store: RedisStore, trusted: tuple[str, ...], client_ip: str, first: bool
) -> None:
    async def do_login(request: Request) -> Response:
        login(_session(request), "alice")
        return JSONResponse({})

    async def put(request: Request) -> Response:
        _session(request)["a"] = 1
        return JSONResponse({})

    app = SessionMiddleware(
        Starlette(routes=[Route("/login", do_login), Route("/put", put)]),
        store=store,
        secret_keys=[KEY],
        trusted_proxies=list(trusted),
    )
    transport = httpx.ASGITransport(app=app, client=("127.0.0.7", 5000))
    headers = [
        ("User-Agent", "Agent/1"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("user-agent", "Agent/2"),
    ]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        if not first:
            (await c.get("/put")).raise_for_status()
        (await c.get("/login", headers=headers)).raise_for_status()
    fields = stored(store)
    assert fields["u"] == "alice"
    assert (fields["ua"], fields["ip"]) == ("Agent/1, Agent/2", client_ip)
