"""Every path ends its request: the context and the session let go of each other, so a
request leaves no reference cycle of satchel's for the garbage collector (each one cost
about 8 collections per 1,000 requests and a pause of tens of milliseconds every 10,000
or so), and a session used after its request says so instead of loading or saving.

Each test drives real requests through the path's public interface (an ASGI or WSGI
call, the framework's own test client or a served app) and looks for satchel objects in
the cyclic garbage: :data:`gc.DEBUG_SAVEALL` keeps what the collector would free.
(Django's session engine binds no request context: no cycle of satchel's to break. Its
own request and test client's response refer to each other, with the session in tow.)"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import falcon
import falcon.asgi
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as AiohttpClient
from aiohttp.test_utils import TestServer
from flask import Flask
from flask import session as flask_session
from litestar import Litestar, get
from litestar import Request as LitestarRequest
from litestar.testing import TestClient as LitestarClient
from quart import Quart
from quart import session as quart_session
from quart import websocket as quart_websocket

from satchel import MemoryStore, Session, SessionStateError, login
from satchel._types import Receive, Scope, Send
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.integrations import aiohttp as satchel_aiohttp
from satchel.integrations.falcon import SatchelMiddleware, session_of
from satchel.integrations.flask import Satchel as FlaskSatchel
from satchel.integrations.litestar import SatchelPlugin, SatchelSessionConfig
from satchel.integrations.quart import Satchel as QuartSatchel
from satchel.request import csrf_token
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .services import LOOPBACK, free_port

DOWN = "redis://127.0.0.1:9/0"  # nothing listens: every store call fails
OPTIONS: dict[str, Any] = {"secret_keys": [KEY], "cookie_secure": False}


def satchel_garbage(run: Callable[..., object], *args: Any) -> list[str]:
    """The satchel types left in reference cycles by ``run(*args)``. Logging is off
    meanwhile: pytest keeps the records it captures, and with them what their arguments
    hold (a store error's traceback: the request's frames), which would hide a cycle."""
    _collecting()
    try:
        run(*args)
        return _found()
    finally:
        _done()


def _collecting() -> None:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    logging.disable(logging.CRITICAL)


def _found() -> list[str]:
    gc.collect()
    return sorted({type(o).__qualname__ for o in gc.garbage if _ours(o)})


def _done() -> None:
    logging.disable(logging.NOTSET)
    gc.garbage.clear()
    gc.set_debug(0)
    gc.enable()


async def asatchel_garbage(pending: Awaitable[object]) -> list[str]:
    """The satchel types left in reference cycles once ``pending`` is done."""
    _collecting()
    try:
        await pending
        await asyncio.sleep(0.01)  # (a served request's last callbacks)
        return _found()
    finally:
        _done()


def _ours(thing: object) -> bool:
    return type(thing).__module__.startswith("satchel")


def _use(session: Any, kind: str) -> None:
    """What a request does with its session: nothing, read, write, log in."""
    if kind == "read":
        session.get("n")
    elif kind == "write":
        session["n"] = session.get("n", 0) + 1
    elif kind == "login":
        login(session, "alice")


KINDS = ["untouched", "read", "write", "login"]


# -- ASGI ------------------------------------------------------------------------------------------


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await receive()
        scope["session"]["socket"] = True  # (after the handshake: stored, no cookie)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    _use(scope["session"], scope["path"].strip("/"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _asgi_call(
    app: Any, path: str, cookie: str | None = None, method: str = "GET", kind: str = "http"
) -> tuple[list[dict[str, Any]], str | None]:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "scheme": "http" if kind == "http" else "ws",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    connect = {"type": "websocket.connect"} if kind == "websocket" else None

    async def receive() -> dict[str, Any]:
        if connect is not None:
            return connect
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    for name, value in sent[0].get("headers", []):
        if name == b"set-cookie":
            return sent, value.decode().split(";")[0]
    return sent, cookie


@pytest.mark.parametrize("kind", KINDS)
def test_an_asgi_request_leaves_no_cycle(kind: str) -> None:
    app = ASGIMiddleware(_asgi_app, MemoryStore(), **OPTIONS)
    _, cookie = asyncio.run(_asgi_call(app, "/write"))
    assert cookie is not None
    for carried in (None, cookie):  # a pending session, and one the cookie names
        assert satchel_garbage(asyncio.run, _asgi_call(app, f"/{kind}", carried)) == []


def test_asgi_refusals_and_outages_leave_no_cycle() -> None:
    app = ASGIMiddleware(_asgi_app, MemoryStore(), **OPTIONS)
    down = ASGIMiddleware(_asgi_app, DOWN, **OPTIONS)

    async def run() -> None:
        _, cookie = await _asgi_call(app, "/write")

        async def refused() -> None:  # CSRF: a POST without a token
            sent, _ = await _asgi_call(app, "/write", cookie, method="POST")
            assert sent[0]["status"] == 403

        async def socket() -> None:
            sent, _ = await _asgi_call(app, "/socket", cookie, kind="websocket")
            assert sent[0]["type"] == "websocket.accept"

        async def outage() -> None:  # (the store error's traceback holds the request too)
            sent, _ = await _asgi_call(down, "/read", cookie)
            assert sent[0]["status"] == 503

        await outage()  # (the first: the store sets up what it keeps per event loop)
        for attempt in (refused, socket, outage):
            assert await asatchel_garbage(attempt()) == []

    asyncio.run(run())


# -- WSGI ------------------------------------------------------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    _use(environ["satchel.session"], environ["PATH_INFO"].strip("/").removesuffix("-stream"))
    start_response("200 OK", [("content-type", "text/plain")])
    if environ["PATH_INFO"].endswith("-stream"):
        return iter([b"o", b"k"])  # (an iterator: the server closes the middleware's body)
    return [b"ok"]


def _wsgi_call(
    app: Any, path: str, cookie: str | None = None, method: str = "GET"
) -> tuple[str, str | None]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    started: list[tuple[str, list[tuple[str, str]]]] = []
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
    try:
        b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    for name, value in headers:
        if name.lower() == "set-cookie":
            return status, value.split(";")[0]
    return status, cookie


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", ["list", "stream"])
def test_a_wsgi_request_leaves_no_cycle(kind: str, body: str) -> None:
    app = WSGIMiddleware(_wsgi_app, MemoryStore(), **OPTIONS)
    _, cookie = _wsgi_call(app, "/write")
    suffix = "-stream" if body == "stream" else ""
    for carried in (None, cookie):
        assert satchel_garbage(_wsgi_call, app, f"/{kind}{suffix}", carried) == []


def test_a_wsgi_refusal_leaves_no_cycle() -> None:
    """(Not a sync Redis outage: redis-py's connect keeps each failed attempt's error in a
    local of a frame its traceback holds, a cycle that holds every calling frame, the
    request's too, until the collector runs. The async client's frames do not link to
    their callers: its outage is tested above.)"""
    app = WSGIMiddleware(_wsgi_app, MemoryStore(), **OPTIONS)
    _, cookie = _wsgi_call(app, "/write")
    assert satchel_garbage(_refused, app, cookie) == []


def _refused(app: Any, cookie: str | None) -> None:
    assert _wsgi_call(app, "/write", cookie, method="POST")[0].startswith("403")


# -- after the request --------------------------------------------------------------------------


def test_a_session_used_after_its_request_reads_but_cannot_save() -> None:
    """A session the app kept past its request (an outer middleware, a test): what it
    loaded stays readable, one nothing loaded still loads on first use, a pending one
    reads as the empty session it was; none can be saved, and the request's context
    answers nothing more."""
    kept: dict[str, Session] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = environ["satchel.session"]
        if environ["PATH_INFO"] == "/read":
            session.get("n")
        kept[environ["PATH_INFO"]] = session
        start_response("200 OK", [])
        return [b"ok"]

    wsgi = WSGIMiddleware(_wsgi_app, MemoryStore(), **OPTIONS)
    _, cookie = _wsgi_call(wsgi, "/write")
    wsgi.app = app
    _wsgi_call(wsgi, "/read", cookie)
    _wsgi_call(wsgi, "/lazy", cookie)
    assert kept["/read"]["n"] == 1
    assert repr(kept["/lazy"]) == "<Session not loaded keys=[]>"  # (a repr never loads)
    assert kept["/lazy"]["n"] == 1  # loaded now
    for session in kept.values():
        session["n"] = 2
        with pytest.raises(SessionStateError, match="request is over"):
            session.save()

    async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
        kept["scope"] = scope  # type: ignore[assignment]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(_asgi_call(ASGIMiddleware(asgi_app, MemoryStore(), **OPTIONS), "/"))
    scope: Any = kept["scope"]
    pending = scope["session"]
    assert dict(pending) == {}
    assert pending.new
    assert pending.user_id is None
    with pytest.raises(SessionStateError, match="request is over"):
        asyncio.run(pending.asave())
    with pytest.raises(SessionStateError, match="this request is over"):
        csrf_token(scope)  # (its pending context never read the scope; now it cannot)


def test_an_outer_wsgi_middleware_still_reads_the_session() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/login":
            login(environ["satchel.session"], "alice")
        start_response("200 OK", [])
        return [b"ok"]

    inner = WSGIMiddleware(app, MemoryStore(), **OPTIONS)
    seen: list[str | None] = []

    def access_log(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = inner(environ, start_response)
        seen.append(environ["satchel.session"].user_id)  # after the request: loads it
        return body

    _, cookie = _wsgi_call(access_log, "/login")
    _wsgi_call(access_log, "/page", cookie)
    assert seen == ["alice", "alice"]


def _ignore(status: str, headers: list[tuple[str, str]], exc_info: Any = None, /) -> Any:
    return None


def test_a_body_closed_twice_ends_its_request_once() -> None:
    app = WSGIMiddleware(_wsgi_app, MemoryStore(), **OPTIONS)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/write-stream", "wsgi.input": io.BytesIO()}
    body: Any = app(environ, _ignore)
    assert b"".join(body) == b"ok"
    body.close()
    body.close()  # (werkzeug's test client does)


# -- frameworks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_flask_request_leaves_no_cycle(kind: str) -> None:
    app = Flask("cycles")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    late: list[Any] = []

    @app.teardown_request
    def teardown(exc: BaseException | None) -> None:  # (registered after: it runs first)
        late.append(flask_session.get("n"))

    FlaskSatchel(app)

    @app.get("/<kind>")
    def view(kind: str) -> str:
        _use(flask_session, kind)
        return "ok"

    anonymous, carrying = app.test_client(), app.test_client()
    carrying.get("/write", base_url="https://localhost")
    for client in (anonymous, carrying):
        assert satchel_garbage(_flask_get, client, f"/{kind}") == []
    assert late[-1] is not None  # a teardown function still loads and reads the session


def _flask_get(client: Any, path: str) -> None:
    response = client.get(path, base_url="https://localhost")
    _ok(response)
    response.close()  # (as a server closes the body: werkzeug's test client leaves it open)


@pytest.mark.parametrize("kind", KINDS)
def test_a_quart_request_and_websocket_leave_no_cycle(kind: str) -> None:
    app = Quart("cycles")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    QuartSatchel(app)

    @app.get("/<kind>")
    async def view(kind: str) -> str:
        _use(quart_session, kind)
        return "ok"

    @app.websocket("/socket")
    async def socket() -> None:
        await quart_websocket.send(str(quart_session.get("n")))

    async def run() -> None:
        client = app.test_client()
        await client.get("/write", scheme="https")
        assert await asatchel_garbage(client.get(f"/{kind}", scheme="https")) == []

        async def talk() -> None:
            async with client.websocket("/socket", scheme="wss") as connection:
                assert await connection.receive() != "None"  # (the session loaded)

        assert await asatchel_garbage(talk()) == []

    asyncio.run(run())


class _Resource:
    def on_get(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        _use(session_of(req), kind)
        resp.text = "ok"


class _AsyncResource:
    async def on_get(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        _use(session_of(req), kind)
        resp.text = "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_a_falcon_request_leaves_no_cycle(kind: str) -> None:
    wsgi = falcon.App(middleware=[SatchelMiddleware(MemoryStore(), secret_keys=[KEY])])
    wsgi.add_route("/{kind}", _Resource())
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="https://t") as client:
        client.get("/write")
        assert satchel_garbage(_get, client, f"/{kind}") == []

    asgi = falcon.asgi.App(middleware=[SatchelMiddleware(MemoryStore(), secret_keys=[KEY])])
    asgi.add_route("/{kind}", _AsyncResource())

    async def run() -> None:
        transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            await client.get("/write")
            assert await asatchel_garbage(_aok(client.get(f"/{kind}"))) == []

    asyncio.run(run())


def _ok(response: Any) -> None:
    assert response.status_code == 200


def _get(client: Any, path: str) -> None:
    _ok(client.get(path))


async def _aok(pending: Awaitable[httpx.Response]) -> None:
    _ok(await pending)


@pytest.mark.parametrize("kind", [*KINDS, "stream", "socket"])
def test_an_aiohttp_request_leaves_no_cycle(kind: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        session = request[satchel_aiohttp.SESSION_KEY]
        if kind == "stream":  # prepared by the handler: the session is still its own
            response = web.StreamResponse()
            await response.prepare(request)
            session["n"] = 7
            await session.asave()  # (after the headers: stored, no new cookie needed)
            await response.write(b"ok")
            return response
        if kind == "socket":
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            await socket.send_str(str(session.get("n")))
            await socket.close()
            return socket
        _use(session, kind)
        return web.Response(text="ok")

    async def run() -> None:
        app = web.Application()
        satchel_aiohttp.setup(app, "memory://", **OPTIONS)
        app.router.add_get("/write-first", _write_first)
        app.router.add_get("/", handler)
        client = AiohttpClient(TestServer(app, host=LOOPBACK, port=free_port()))
        await client.start_server()
        try:
            (await client.get("/write-first")).release()

            async def request() -> None:
                if kind == "socket":
                    socket = await client.ws_connect("/")
                    assert (await socket.receive()).data == "1"
                    await socket.close()
                else:
                    response = await client.get("/")
                    assert response.status == 200
                    await response.read()

            assert await asatchel_garbage(request()) == []
            if kind == "stream":
                response = await client.get("/write-first")
                assert await response.text() == "8"  # the stream's asave() stored 7
        finally:
            await client.close()

    asyncio.run(run())


async def _write_first(request: web.Request) -> web.StreamResponse:
    session = request[satchel_aiohttp.SESSION_KEY]
    session["n"] = session.get("n", 0) + 1
    return web.Response(text=str(session["n"]))


@get([f"/{kind}" for kind in KINDS], sync_to_thread=False)
def _litestar_view(request: LitestarRequest[Any, Any, Any]) -> str:
    _use(request.scope["session"], request.url.path.strip("/"))
    return "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_a_litestar_request_leaves_no_cycle(kind: str) -> None:
    config = SatchelSessionConfig(MemoryStore(), secret_keys=[KEY])
    app = Litestar(route_handlers=[_litestar_view], plugins=[SatchelPlugin(config)])
    with LitestarClient(app, base_url="https://testserver.local") as client:
        client.get("/write")
        assert satchel_garbage(_get, client, f"/{kind}") == []
