"""The aiohttp integration through aiohttp's own test client and server
(``aiohttp.test_utils``), on SQLite and Redis. The session cookie is Secure: the client's
jar treats the loopback test server as a secure origin, as browsers do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar, DummyCookieJar, FormData, web
from aiohttp.test_utils import TestClient, TestServer

from satchel.errors import UNAVAILABLE_BODY
from satchel.integrations.aiohttp import (
    RUNTIME_KEY,
    AiohttpSession,
    csrf_exempt,
    csrf_token,
    get_session,
    new_session,
    setup,
)

from .conftest import KEY
from .services import LOOPBACK, free_port
from .test_examples import load

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    url: str = request.getfixturevalue("redis_url")
    return url + f"?prefix=a{uuid.uuid4().hex[:12]}:"  # this test's own keys


Client = TestClient[web.Request, web.Application]


async def serve(app: web.Application) -> Client:
    port = free_port()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[f"http://{LOOPBACK}:{port}"])
    client = TestClient(TestServer(app, host=LOOPBACK, port=port), cookie_jar=jar)
    await client.start_server()
    return client


async def replay(client: Client, value: str, path: str, **headers: str) -> ClientResponse:
    """``GET path`` from another client, carrying only ``value`` as its session cookie."""
    async with ClientSession(cookie_jar=DummyCookieJar()) as other:
        response = await other.get(
            client.make_url(path), headers={"Cookie": f"satchel={value}", **headers}
        )
        await response.read()
        return response


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str) -> ModuleType:
    monkeypatch.setenv("SESSION_STORE", store)
    module = load("aiohttp_app", monkeypatch, tmp_path)
    monkeypatch.setenv("SESSION_STORE", store)  # (load() set its own)
    return module


@pytest.fixture
async def client(example: ModuleType) -> AsyncIterator[Client]:
    client = await serve(example.init([]))
    yield client
    await client.close()  # the app's cleanup closes the store


async def token(client: Client) -> str:
    return str((await (await client.get("/csrf")).json())["csrf_token"])


def cookie(client: Client) -> str | None:
    return next((c.value for c in client.session.cookie_jar if c.key == "satchel"), None)


async def log_in(client: Client, user: str = "alice") -> None:
    response = await client.post(
        "/login", data={"username": user, "csrf_token": await token(client)}
    )
    assert response.status == 200


async def test_login_regenerates_the_id_and_logout_kills_replay(client: Client) -> None:
    assert (await client.post("/login", data={"username": "alice"})).status == 403  # no token
    await log_in(client)
    first = cookie(client)
    assert first is not None
    await log_in(client)
    second = cookie(client)
    assert second is not None
    assert second != first
    me = await (await client.get("/me")).json()
    assert (me["user"], me["devices"]) == ("alice", 1)
    old = await replay(client, first, "/me", Accept="application/json")
    assert old.status == 401  # the first ID died with the second login
    out = await client.post("/logout", data={"csrf_token": await token(client)})
    assert await out.json() == {"user": None}
    assert cookie(client) is None  # expired
    assert (await replay(client, second, "/me", Accept="application/json")).status == 401


async def test_csrf_refused_without_token(client: Client) -> None:
    await log_in(client)
    refused = await client.post("/notes/a", data={"value": "1"})
    assert refused.status == 403
    assert "CSRF token missing" in await refused.text()
    ok = await client.post(
        "/notes/a", data={"value": "1"}, headers={"X-CSRF-Token": await token(client)}
    )
    assert await ok.json() == {"ok": "saved"}


async def test_concurrent_disjoint_writes_persist(client: Client) -> None:
    await log_in(client)
    tok = await token(client)
    responses = await asyncio.gather(
        *(
            client.post(f"/notes/k{i}", data={"value": str(i)}, headers={"X-CSRF-Token": tok})
            for i in range(20)
        )
    )
    assert [r.status for r in responses] == [200] * 20
    data = (await (await client.get("/me")).json())["data"]
    assert data == {f"k{i}": str(i) for i in range(20)}


async def test_login_required_redirects_html_and_401s_json(client: Client) -> None:
    html = await client.get("/me?a=b", headers={"Accept": "text/html"}, allow_redirects=False)
    assert html.status == 303
    assert html.headers["Location"] == "/login?next=/me%3Fa%3Db"
    assert (await client.get("/me", headers={"Accept": "application/json"})).status == 401


def _app(store: str = "memory://") -> web.Application:
    app = web.Application()
    setup(app, store, secret_keys=[KEY])
    _with_token_route(app)
    return app


async def test_aiohttp_session_names_and_raised_responses_commit() -> None:
    app = _app()

    async def write(request: web.Request) -> web.Response:
        session = await get_session(request)
        assert isinstance(session, AiohttpSession)
        session.setdefault("cart", []).append("x")
        session.changed()
        raise web.HTTPFound("/read")  # a raised response commits too

    async def read(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response(
            {
                "cart": session.get("cart"),
                "created": session.created is not None,
                "new": session.new,
            }
        )

    async def fresh(request: web.Request) -> web.Response:
        session = await new_session(request)
        assert session.empty
        session["fresh"] = True
        return web.json_response({"ok": True})

    async def fail(request: web.Request) -> web.Response:
        (await get_session(request))["lost"] = True
        raise ValueError("boom")

    app.router.add_get("/write", write)
    app.router.add_get("/read", read)
    app.router.add_post("/fresh", fresh)
    app.router.add_get("/fail", fail)
    client = await serve(app)
    try:
        assert (await (await client.get("/write")).json()) == {
            "cart": ["x"],
            "created": True,
            "new": False,
        }
        before = cookie(client)
        tok = await _token_of(client)
        assert (await client.post("/fresh", headers={"X-CSRF-Token": tok})).status == 200
        assert cookie(client) not in (None, before)  # a new ID; the old record is gone
        gone = await replay(client, before or "", "/read")
        assert await gone.json() == {"cart": None, "created": False, "new": True}
        assert (await client.get("/fail")).status == 500
        assert "lost" not in (await (await client.get("/read")).json())
    finally:
        await client.close()


async def _token_of(client: Client) -> str:
    """A token from the test apps' own route (the helper, in a handler)."""
    return str((await (await client.get("/__token")).json())["csrf_token"])


def _with_token_route(app: web.Application) -> None:
    async def give(request: web.Request) -> web.Response:
        return web.json_response({"csrf_token": csrf_token(request)})

    app.router.add_get("/__token", give)


async def test_csrf_exempt_multipart_and_streamed_responses() -> None:
    app = _app()

    @csrf_exempt
    async def hook(request: web.Request) -> web.Response:
        return web.Response(text="hooked")

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        (await get_session(request))["name"] = str(form["name"])
        return web.json_response({"name": form["name"]})

    async def stream(request: web.Request) -> web.StreamResponse:
        (await get_session(request))["streamed"] = True
        response = web.StreamResponse()
        await response.prepare(request)  # the session is committed before the headers go
        await response.write(b"chunk")
        return response

    async def read(request: web.Request) -> web.Response:
        return web.json_response(dict(await get_session(request)))

    app.router.add_post("/hook", hook)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/read", read)
    client = await serve(app)
    try:
        streamed = await client.get("/stream")  # the session is created by a stream
        assert await streamed.read() == b"chunk"
        assert streamed.headers["Cache-Control"] == "no-store"
        assert streamed.headers["Set-Cookie"].startswith("satchel=")
        assert await (await client.post("/hook", data={"a": "1"})).text() == "hooked"
        tok = await _token_of(client)
        form = FormData()
        form.add_field("csrf_token", tok)
        form.add_field("name", "ann")
        form.add_field("file", b"bytes", filename="f.txt")  # multipart
        assert await (await client.post("/upload", data=form)).json() == {"name": "ann"}
        assert await (await client.get("/read")).json() == {"name": "ann", "streamed": True}
    finally:
        await client.close()


async def test_store_down_gives_503(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.db"
    app = _app(f"sqlite:///{path}?timeout=0.05")

    async def count(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.Response(text=str(session["n"]))

    async def stream(request: web.Request) -> web.StreamResponse:
        session = await get_session(request)
        session["streams"] = session.get("streams", 0) + 1
        response = web.StreamResponse()
        await response.prepare(request)  # the commit fails here: the 503 goes instead
        await response.write(b"never sent")
        return response

    app.router.add_get("/n", count)
    app.router.add_get("/stream", stream)
    client = await serve(app)
    try:
        assert await (await client.get("/stream")).read() == b"never sent"
        assert await (await client.get("/n")).text() == "1"
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # committing fails
        try:
            down = await client.get("/n")
            assert down.status == 503
            assert down.headers["Retry-After"]
            streamed = await client.get("/stream")
            assert (streamed.status, await streamed.read()) == (503, UNAVAILABLE_BODY)
            blocker.execute("ROLLBACK")
            blocker.execute("BEGIN EXCLUSIVE")
            assert (await client.get("/n")).status == 503
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await (await client.get("/n")).text() == "2"
    finally:
        await client.close()


async def test_a_cross_site_websocket_handshake_is_refused() -> None:
    app = _app()

    async def write(request: web.Request) -> web.Response:
        (await get_session(request))["user"] = "ann"
        return web.Response(text="ok")

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(str((await get_session(request)).get("user")))
        await ws.close()
        return ws

    app.router.add_get("/write", write)
    app.router.add_get("/ws", socket)
    client = await serve(app)
    try:
        await client.get("/write")
        async with client.ws_connect("/ws") as ws:
            assert await ws.receive_str() == "ann"
        from aiohttp import WSServerHandshakeError

        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        assert RUNTIME_KEY in app
    finally:
        await client.close()


def test_setup_refuses_unknown_options() -> None:
    from satchel.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        setup(web.Application(), "memory://", secret_keys=[KEY], nonsense=1)  # type: ignore[call-arg]


async def test_own_answers_to_a_failed_csrf_check_and_a_store_outage(tmp_path: Path) -> None:
    import sqlite3

    from satchel.csrf_failure import CSRFFailure

    async def refused(request: web.Request, failure: CSRFFailure) -> web.StreamResponse:
        return web.json_response({"refused": failure.reason}, status=403)

    async def down(request: web.Request) -> web.StreamResponse:
        return web.Response(text="try later", status=503)

    path = tmp_path / "s.db"
    app = web.Application()
    setup(
        app,
        f"sqlite:///{path}?timeout=0.05",
        secret_keys=[KEY],
        on_csrf_failure=refused,
        on_store_unavailable=down,
    )

    async def write(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.Response(text="ok")

    app.router.add_route("*", "/w", write)
    client = await serve(app)
    try:
        assert await (await client.post("/w")).json() == {"refused": "token_missing"}
        assert await (await client.get("/w")).text() == "ok"
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            assert await (await client.get("/w")).text() == "try later"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    finally:
        await client.close()


async def test_a_store_down_while_loading_gives_503() -> None:
    up = _app()

    async def write(request: web.Request) -> web.Response:
        (await get_session(request))["n"] = 1
        return web.Response(text="ok")

    up.router.add_get("/w", write)
    client = await serve(up)
    try:
        await client.get("/w")
        value = cookie(client)
        assert value is not None
    finally:
        await client.close()
    down = _app(f"redis://{LOOPBACK}:{free_port()}/0")  # nothing listens there

    async def never(request: web.Request) -> web.Response:
        raise AssertionError("the handler runs without its session")

    down.router.add_get("/w", never)
    other = await serve(down)
    try:
        assert (await replay(other, value, "/w")).status == 503
    finally:
        await other.close()
