"""One response phase on every path: what a store outage answers, and that a response
carrying a session token is never cached, whatever the app said."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.errors import UNAVAILABLE_BODY
from satchel.session import Session
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .test_demo_cli import _SyncASGI

DEAD = "redis://127.0.0.1:1/0?socket_timeout=0.5&connect_timeout=0.5"
CACHED = {"cache-control": "public, max-age=600", "vary": "Accept-Encoding"}


async def put(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    session["n"] = 1
    return PlainTextResponse("ok", headers=CACHED)


def wsgi_put(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ[ENVIRON_KEY]["n"] = 1
    start_response("200 OK", [("content-type", "text/plain"), *CACHED.items()])
    return [b"ok"]


def flask_app(store: str) -> Any:
    from flask import Flask, session

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=store)
    Satchel(app)

    @app.get("/put")
    def flask_put() -> Any:
        session["n"] = 1
        return "ok", 200, CACHED

    return app


def client_for(path: str, store: str) -> httpx.Client:
    transport: httpx.BaseTransport
    if path == "asgi":
        app = ASGIMiddleware(Starlette(routes=[Route("/put", put)]), store, secret_keys=[KEY])
        transport = _SyncASGI(httpx.ASGITransport(app=app))
    elif path == "wsgi":
        transport = httpx.WSGITransport(app=WSGIMiddleware(wsgi_put, store, secret_keys=[KEY]))
    else:
        transport = httpx.WSGITransport(app=flask_app(store))
    return httpx.Client(transport=transport, base_url="https://testserver")


@pytest.mark.parametrize("path", ["asgi", "wsgi", "flask"])
def test_a_response_carrying_the_token_is_never_cached(path: str) -> None:
    with client_for(path, "memory://") as c:
        response = c.get("/put")
    assert response.status_code == 200
    assert "satchel=" in response.headers["set-cookie"]
    assert response.headers["cache-control"] == "no-store"
    assert [v.strip() for v in response.headers["vary"].split(",")] == ["Accept-Encoding", "Cookie"]


@pytest.mark.parametrize("path", ["asgi", "wsgi", "flask"])
def test_every_path_answers_the_same_503_when_the_store_is_down(path: str) -> None:
    with client_for(path, DEAD) as c:
        response = c.get("/put")
    assert response.status_code == 503
    assert response.content == UNAVAILABLE_BODY
    assert response.headers["retry-after"] == "5"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_flasks_own_error_handler_answers_a_failed_commit_too() -> None:
    """On Flask the one configurable handler is the app's error handler for StoreError:
    it answers a store that fails while the view reads and one that fails at commit."""
    from satchel.errors import StoreError

    app = flask_app(DEAD)

    def outage(exc: Exception) -> Any:
        return "custom", 503

    app.register_error_handler(StoreError, outage)

    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://t") as c:
        response = c.get("/put")  # no cookie: nothing to load, the commit fails
    assert (response.status_code, response.text) == (503, "custom")


async def read_only(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    return PlainTextResponse(str(session.get("n")), headers=CACHED)


def test_a_response_that_only_read_the_session_varies_on_its_cookie() -> None:
    """No token to send: the app's headers stay (its caching policy included) and Vary
    gains the header that carried the session."""
    app = ASGIMiddleware(
        Starlette(routes=[Route("/put", put), Route("/read", read_only)]),
        "memory://",
        secret_keys=[KEY],
    )
    with httpx.Client(
        transport=_SyncASGI(httpx.ASGITransport(app=app)), base_url="https://testserver"
    ) as c:
        c.get("/put")
        response = c.get("/read")
    assert response.text == "1"
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "public, max-age=600"
    assert [v.strip() for v in response.headers["vary"].split(",")] == ["Accept-Encoding", "Cookie"]
