"""Where each path ends its request: never while the app still uses the session.

What runs before the end keeps its session whole (loads, saves, logs out): Starlette's
background tasks and streamed bodies, Flask's copied request contexts and
``stream_with_context`` bodies, Quart's copied contexts, streams and WebSockets. What
runs after it (Flask's ``with client:``, a Falcon middleware listed before satchel's)
still reads the session, loading it if nothing did. Each found by an outside review of
the change that added the end (tests/test_request_end.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import falcon
import falcon.asgi
import httpx
from flask import Flask, Response, copy_current_request_context, send_file, stream_with_context
from flask import session as flask_session
from quart import Quart, copy_current_websocket_context, websocket
from quart import copy_current_request_context as quart_copy
from quart import session as quart_session
from quart import stream_with_context as quart_stream
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel import MemoryStore, Session, login
from satchel.asgi import SessionMiddleware
from satchel.integrations import flask as satchel_flask
from satchel.integrations import quart as satchel_quart
from satchel.integrations.falcon import SatchelMiddleware, session_of
from satchel.request import csrf_token

from .conftest import KEY

HTTPS = "https://localhost"

# -- Starlette: the end comes after background tasks and streamed bodies --------------------


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


def _starlette() -> Starlette:
    async def log_in(request: Request) -> PlainTextResponse:
        login(_session(request), "alice")
        request.session["n"] = 1
        return PlainTextResponse("ok")

    async def show(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{request.session.get('n')}/{request.session.get('bg')}")

    async def later(request: Request) -> PlainTextResponse:
        async def task() -> None:
            request.session["bg"] = "done"
            await _session(request).asave()

        return PlainTextResponse("ok", background=BackgroundTask(task))

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"x"
            request.session["n"] += 1
            await _session(request).asave()
            yield b"y"

        return StreamingResponse(body())

    routes = [Route(f"/{f.__name__}", f) for f in (log_in, show, later, stream)]
    store = MemoryStore()
    return Starlette(
        routes=routes, middleware=[Middleware(SessionMiddleware, store=store, secret_keys=[KEY])]
    )


def test_starlette_background_tasks_and_streams_still_save() -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=_starlette())
        async with httpx.AsyncClient(transport=transport, base_url=HTTPS) as client:
            await client.get("/log_in")
            assert (await client.get("/later")).status_code == 200
            assert (await client.get("/stream")).text == "xy"
            assert (await client.get("/show")).text == "2/done"

    asyncio.run(run())


# -- Flask: the end comes when the server closes the response ------------------------------


def _flask() -> Flask:
    app = Flask("ends")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    satchel_flask.Satchel(app)

    @app.get("/login")
    def log_in() -> str:
        satchel_flask.login_user("alice")
        flask_session["n"] = 1
        return "ok"

    @app.get("/n")
    def show() -> str:
        return str(flask_session.get("n"))

    @app.get("/page")
    def page() -> str:
        return "page"  # never touches the session

    @app.get("/logout")
    def log_out() -> str:
        satchel_flask.logout_user()

        @copy_current_request_context
        def audit() -> None:  # (pushing and popping a copy runs the teardown functions)
            pass

        audit()
        return "bye"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "n="
            yield str(flask_session.get("n"))  # (nothing loaded it before)
            flask_session["n"] = flask_session["n"] + 1
            flask_session.save()  # type: ignore[attr-defined]

        return Response(stream_with_context(body()))

    return app


def _get(client: Any, path: str) -> Any:
    response = client.get(path, base_url=HTTPS)
    body = response.get_data(as_text=True)
    response.close()  # (as a server closes it)
    return response.status_code, body


def test_flask_copied_contexts_and_streams_keep_the_session() -> None:
    client = _flask().test_client()
    _get(client, "/login")
    assert _get(client, "/stream") == (200, "n=1")
    assert _get(client, "/n") == (200, "2")
    assert _get(client, "/logout") == (200, "bye")
    assert _get(client, "/n") == (200, "None")  # the logout committed


def test_flask_with_client_reads_the_session_after_the_request() -> None:
    app = _flask()
    client = app.test_client()
    _get(client, "/login")
    with client:
        _get(client, "/page")  # closed: the request is over
        assert flask_session.get("n") == 1  # (Flask's testing idiom: loaded now)


# -- Quart: the end comes when its ASGI call returns -----------------------------------------


def _quart() -> Quart:
    app = Quart("ends")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    satchel_quart.Satchel(app)

    @app.get("/login")
    async def log_in() -> str:
        satchel_quart.login_user("alice")
        quart_session["n"] = 1
        return "ok"

    @app.get("/n")
    async def show() -> str:
        return str(quart_session.get("n"))

    @app.get("/logout")
    async def log_out() -> str:
        satchel_quart.logout_user()

        @quart_copy
        async def audit() -> None:
            pass

        await asyncio.gather(audit())
        return "bye"

    @app.get("/stream")
    async def stream() -> Any:
        @quart_stream
        async def body() -> AsyncIterator[bytes]:
            yield b"a"
            quart_session["n"] += 1
            await quart_session.asave()  # type: ignore[attr-defined]
            yield b"b"

        return body()

    @app.websocket("/socket")
    async def socket() -> None:
        @copy_current_websocket_context
        async def helper() -> None:
            pass

        await helper()
        quart_session["n"] = 9  # after the handshake: stored, no cookie
        await websocket.send("ok")

    return app


def test_quart_copied_contexts_streams_and_websockets_keep_the_session() -> None:
    async def run() -> None:
        client = _quart().test_client()

        async def text(path: str) -> str:
            return await (await client.get(path, scheme="https")).get_data(as_text=True)

        await text("/login")
        assert await text("/stream") == "ab"
        assert await text("/n") == "2"
        async with client.websocket("/socket", scheme="wss") as connection:
            assert await connection.receive() == "ok"
        await asyncio.sleep(0.05)
        assert await text("/n") == "9"
        assert await text("/logout") == "bye"
        assert await text("/n") == "None"  # the logout committed

    asyncio.run(run())


# -- Falcon: the end comes at satchel's process_response -----------------------------------


class _Login:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        login(session_of(req), "alice")
        resp.text = "ok"


class _Page:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = session_of(req)  # (never loaded in the responder)

        def body() -> Iterator[bytes]:
            yield b"user="
            yield str(session.user_id).encode()

        resp.stream = body()


class _AccessLog:
    """Listed before satchel: its process_response runs after satchel's."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        self.seen.append(session_of(req).user_id)


def test_falcon_outer_middleware_and_streams_read_the_session() -> None:
    log = _AccessLog()
    middleware: list[Any] = [log, SatchelMiddleware(MemoryStore(), secret_keys=[KEY])]
    app = falcon.App(middleware=middleware)
    app.add_route("/login", _Login())
    app.add_route("/page", _Page())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=HTTPS) as client:
        client.get("/login")
        assert client.get("/page").text == "user=alice"
    assert log.seen == ["alice", "alice"]


# -- found by a second outside review ----------------------------------------------------------


def test_starlette_error_page_outside_the_middleware_still_asks_the_context() -> None:
    """Starlette runs its 500 handler outside every middleware: an exception leaves the
    request's context as it is (the collector frees it), so a page with a CSRF token in
    its layout still renders for an anonymous visitor."""

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("a bug in the view")

    async def error_page(request: Request, exc: Exception) -> PlainTextResponse:
        return PlainTextResponse(f"sorry {len(csrf_token(request))}", status_code=500)

    middleware = [Middleware(SessionMiddleware, store=MemoryStore(), secret_keys=[KEY])]
    app = Starlette(
        routes=[Route("/boom", boom)], middleware=middleware, exception_handlers={500: error_page}
    )
    with TestClient(app, base_url=HTTPS, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.text.startswith("sorry ")


class _StreamSave:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = session_of(req)

        def body() -> Iterator[bytes]:
            yield b"a"
            session["n"] = 7
            session.save()  # (while the body streams: after process_response)
            yield b"b"

        resp.stream = body()


class _Show:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = str(session_of(req).get("n"))


class _Scheduled:
    async def on_get(self, req: Any, resp: Any) -> None:
        session = session_of(req)

        async def later() -> None:
            session["n"] = 42
            await session.asave()

        resp.text = "ok"
        resp.schedule(later)


class _AsyncLogin:
    async def on_get(self, req: Any, resp: Any) -> None:
        login(session_of(req), "alice")
        resp.text = "ok"


class _AsyncShow:
    async def on_get(self, req: Any, resp: Any) -> None:
        resp.text = str(session_of(req).get("n"))


def test_falcon_streams_and_scheduled_tasks_still_save() -> None:
    app = falcon.App(middleware=[SatchelMiddleware(MemoryStore(), secret_keys=[KEY])])
    app.add_route("/login", _Login())
    app.add_route("/stream", _StreamSave())
    app.add_route("/n", _Show())
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=HTTPS) as client:
        client.get("/login")
        assert client.get("/stream").text == "ab"
        assert client.get("/n").text == "7"

    asgi = falcon.asgi.App(middleware=[SatchelMiddleware(MemoryStore(), secret_keys=[KEY])])
    asgi.add_route("/login", _AsyncLogin())
    asgi.add_route("/later", _Scheduled())
    asgi.add_route("/n", _AsyncShow())

    async def run() -> None:
        transport = httpx.ASGITransport(app=asgi)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=HTTPS) as client:
            await client.get("/login")
            await client.get("/later")
            await asyncio.sleep(0.05)  # (Falcon runs the task once the response is sent)
            assert (await client.get("/n")).text == "42"

    asyncio.run(run())


def test_a_flask_file_response_leaves_no_cycle() -> None:
    """``send_file`` answers with a passthrough response, which nothing closes."""
    from .test_request_end import satchel_garbage

    app = _flask()

    @app.get("/file")
    def file() -> Response:
        flask_session.get("n")
        return send_file(io.BytesIO(b"data"), mimetype="text/plain")

    client = app.test_client()
    _get(client, "/login")
    assert satchel_garbage(_get, client, "/file") == []
