"""``cookie_persistent=True``: new sessions get a cookie whose Max-Age follows the
session's own expiry and rolls forward as the session is used; ``set_expiry(persistent=
False)`` still makes one session a browser-session cookie. Server-side and cookie
sessions, on ASGI and WSGI."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from satchel import asgi, wsgi
from satchel.session import Session
from satchel.testing import FakeClock

from .conftest import KEY

IDLE, ABSOLUTE = 1800, 4000


def _session(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


async def put(request: Request) -> Response:
    _session(request.session)["n"] = request.query_params.get("n", "1")
    if "forget" in request.query_params:
        _session(request.session).set_expiry(persistent=False)
    return PlainTextResponse("ok")


async def read(request: Request) -> Response:
    return PlainTextResponse(str(_session(request.session).get("n")))


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = _session(environ["satchel.session"])
    if environ["PATH_INFO"] == "/put":
        session["n"] = "1"
        if "forget" in environ.get("QUERY_STRING", ""):
            session.set_expiry(persistent=False)
    body = str(session.get("n")).encode()  # read before the response starts
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def _max_age(cookies: list[str]) -> int | str | None:
    session = [c for c in cookies if c.startswith("satchel=")]
    if not session:
        return "no cookie"
    found = re.search(r"Max-Age=(\d+)", session[0])
    return int(found[1]) if found else None


def _client(kind: str, store: str, clock: FakeClock, persistent: bool) -> Any:
    options: dict[str, Any] = {
        "secret_keys": [KEY],
        "clock": clock,
        "idle_timeout": IDLE,
        "absolute_timeout": ABSOLUTE,
        "refresh_interval": 60,
        "cookie_persistent": persistent,
    }
    if kind == "asgi":
        app = Starlette(routes=[Route("/put", put), Route("/read", read)])
        client = TestClient(
            asgi.SessionMiddleware(app, store=store, **options), base_url="https://testserver"
        )
        return lambda path: list(client.get(path).headers.get_list("set-cookie"))
    wclient = WerkzeugClient(wsgi.SessionMiddleware(wsgi_app, store=store, **options))
    return lambda path: list(
        wclient.get(path, base_url="https://testserver").headers.getlist("Set-Cookie")
    )


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("store", ["memory://", "cookie://"])
def test_persistent_cookie_follows_the_session_expiry(
    kind: str, store: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    get = _client(kind, store, clock, persistent=True)
    assert _max_age(get("/put")) == IDLE
    clock.advance(1000)  # past the refresh interval: the read records "last seen"
    assert _max_age(get("/read")) == IDLE  # rolled forward with the session
    clock.advance(1000)
    assert _max_age(get("/read")) == IDLE
    clock.advance(1000)  # now the absolute timeout is nearer than the idle one
    assert _max_age(get("/read")) == ABSOLUTE - 3000
    assert _max_age(get("/put?forget=1")) is None  # this session opted out


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("store", ["memory://", "cookie://"])
def test_default_is_a_browser_session_cookie(
    kind: str, store: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    get = _client(kind, store, clock, persistent=False)
    assert _max_age(get("/put")) is None
