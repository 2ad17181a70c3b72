"""``require_recent_auth`` ("sudo mode", issue 17): a sensitive route needs an
authentication no older than ``max_age`` and at ``level`` or stronger. A browser is sent to
the re-authentication page with a safe ``next``; an API client gets 401 JSON
``reauthentication_required`` with the level needed; nobody logged in is the login
guard's answer. The same rule on ASGI (Starlette endpoint), WSGI, FastAPI and Flask (Django:
tests/test_integration_django.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import asgi, wsgi
from satchel.guard import RecentAuth, require_recent_auth, require_recent_auth_wsgi
from satchel.integrations.fastapi import CurrentSession
from satchel.session import Session
from satchel.testing import FakeClock

from .helpers import KEY

HTTPS = "https://127.0.0.1"
JSON = {"accept": "application/json"}


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


class _Client:
    """One shape over Starlette's TestClient and Werkzeug's client."""

    def __init__(self, get: Callable[..., Any]) -> None:
        self._get = get

    def get(self, path: str, **headers: str) -> tuple[int, str, str]:
        response = self._get(path, headers)
        text = response.text if hasattr(response, "text") else response.get_data(as_text=True)
        text = text.strip('"')  # (FastAPI answers a str in JSON)
        return response.status_code, response.headers.get("location", ""), text


def _starlette(clock: FakeClock) -> _Client:
    async def login(request: Request) -> Response:
        level = request.query_params.get("level")
        satchel.login(_s(request.session), "alice", methods=["pwd"], level=level)
        return PlainTextResponse("ok")

    async def reauth(request: Request) -> Response:
        satchel.reauthenticate(_s(request.session), methods=["pwd", "otp"], level="aal2")
        return PlainTextResponse("ok")

    @require_recent_auth(max_age=300)
    async def sensitive(request: Request) -> Response:
        return PlainTextResponse("done")

    @require_recent_auth(max_age=300, level="aal2")
    async def very(request: Request) -> Response:
        return PlainTextResponse("done")

    routes = [
        Route("/login", login),
        Route("/reauth", reauth),
        Route("/sensitive", sensitive),
        Route("/api/very", very),
        Route("/very", very),
    ]
    app = asgi.SessionMiddleware(
        Starlette(routes=routes), store="memory://", secret_keys=[KEY], clock=clock
    )
    client = TestClient(app, base_url=HTTPS)
    return _Client(lambda path, headers: client.get(path, headers=headers, follow_redirects=False))


def _fastapi(clock: FakeClock) -> _Client:
    from satchel.integrations.fastapi import require_recent_auth as recent

    api = FastAPI()

    @api.get("/login")
    async def login(session: CurrentSession, level: str | None = None) -> str:
        satchel.login(session, "alice", methods=["pwd"], level=level)
        return "ok"

    @api.get("/reauth")
    async def reauth(session: CurrentSession) -> str:
        satchel.reauthenticate(session, methods=["pwd", "otp"], level="aal2")
        return "ok"

    @api.get("/sensitive", dependencies=[recent(max_age=300)])
    async def sensitive() -> str:
        return "done"

    @api.get("/very", dependencies=[recent(max_age=300, level="aal2")])
    async def very() -> str:
        return "done"

    @api.get("/api/very", dependencies=[recent(max_age=300, level="aal2")])
    async def api_very() -> str:
        return "done"

    app = asgi.SessionMiddleware(api, store="memory://", secret_keys=[KEY], clock=clock)
    client = TestClient(app, base_url=HTTPS)
    return _Client(lambda path, headers: client.get(path, headers=headers, follow_redirects=False))


def _wsgi(clock: FakeClock) -> _Client:
    def base(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        path = environ["PATH_INFO"]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/login":
            satchel.login(session, "alice", methods=["pwd"], level=query.get("level", [None])[0])
        elif path == "/reauth":
            satchel.reauthenticate(session, methods=["pwd", "otp"], level="aal2")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def done(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    sensitive = require_recent_auth_wsgi(done, max_age=300)
    very = require_recent_auth_wsgi(done, max_age=300, level="aal2")

    def router(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/sensitive":
            return sensitive(environ, start_response)
        if path in ("/very", "/api/very"):
            return very(environ, start_response)
        return base(environ, start_response)

    app = wsgi.SessionMiddleware(router, store="memory://", secret_keys=[KEY], clock=clock)
    client = WerkzeugClient(app)
    return _Client(lambda path, headers: client.get(path, base_url=HTTPS, headers=headers))


def _flask(clock: FakeClock) -> _Client:
    from flask import Flask, request

    from satchel.integrations import flask as satchel_flask

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")

    @app.get("/login")
    def login() -> str:
        satchel_flask.login_user("alice", methods=["pwd"], level=request.args.get("level"))
        return "ok"

    @app.get("/reauth")
    def reauth() -> str:
        satchel_flask.reauthenticate_user(methods=["pwd", "otp"], level="aal2")
        return "ok"

    @app.get("/sensitive")
    @satchel_flask.require_recent_auth(max_age=300)
    def sensitive() -> str:
        return "done"

    @app.get("/very")
    @app.get("/api/very")
    @satchel_flask.require_recent_auth(max_age=300, level="aal2")
    def very() -> str:
        return "done"

    satchel_flask.Satchel(app, clock=clock)
    client = WerkzeugClient(app)
    return _Client(lambda path, headers: client.get(path, base_url=HTTPS, headers=headers))


PATHS = {"asgi": _starlette, "fastapi": _fastapi, "wsgi": _wsgi, "flask": _flask}


def _next(location: str) -> tuple[str, str]:
    parts = urlsplit(location)
    return parts.path, parse_qs(parts.query)["next"][0]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_sensitive_routes_need_a_recent_authentication(path: str) -> None:
    clock = FakeClock(1_800_000_000.0)
    client = PATHS[path](clock)
    status, location, _ = client.get("/sensitive?x=1")
    assert status == 303  # nobody logged in: the login page
    assert _next(location) == ("/login", "/sensitive?x=1")
    client.get("/login")
    assert client.get("/sensitive")[::2] == (200, "done")
    clock.advance(301)
    status, location, _ = client.get("/sensitive?x=1")
    assert status == 303  # too old: the re-authentication page, back here after it
    assert _next(location) == ("/reauth", "/sensitive?x=1")
    status, _, body = client.get("/api/very", **JSON)
    assert status == 401
    assert '"reauthentication_required"' in body
    assert '"aal2"' in body  # the level needed, for the client to ask for
    client.get("/reauth")
    assert client.get("/sensitive")[::2] == (200, "done")
    assert client.get("/very")[::2] == (200, "done")  # aal2 now
    client.get("/login?level=aal1")  # a later, weaker authentication claims less
    status, location, _ = client.get("/very")
    assert (status, _next(location)[0]) == (303, "/reauth")


def test_levels() -> None:
    needs = RecentAuth(max_age=None, level="aal2")
    for have, ok in (("aal3", True), ("aal2", True), ("aal1", False), (None, False)):
        session = Session()
        satchel.login(session, "alice", level=have)
        assert (needs.unmet(session) is None) is ok, have
    custom = RecentAuth(max_age=None, level="hardware-key")
    session = Session()
    satchel.login(session, "alice", level="aal3")
    assert custom.unmet(session) == "reauthentication_required"  # app levels: exact
    satchel.login(session, "alice", level="hardware-key")
    assert custom.unmet(session) is None
    assert RecentAuth().unmet(Session()) == "login_required"
