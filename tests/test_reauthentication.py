"""How and when the user proved who they are (issue 17): ``login(..., methods, level)``
records the authentication in the session's metadata; ``reauthenticate`` replaces it,
regenerates the ID (ASVS 7.2.4), keeps the data and rotates the CSRF token; the app reads
``session.auth_time``, ``auth_age``, ``auth_methods``, ``auth_level``. Through HTTP on
ASGI, WSGI and Flask, on server-side stores and the cookie store.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import asgi, wsgi
from satchel.errors import ConfigurationError, SessionStateError
from satchel.request import csrf_token
from satchel.session import Session
from satchel.testing import FakeClock, find_middleware

from .helpers import KEY
from .services import store_url

HTTPS = "https://127.0.0.1"
STORES = [
    "memory://",
    "sqlite:///{tmp}/s.db",
    "redis://127.0.0.1:6379/0?prefix=reauth-{prefix}:",
    "postgresql://postgres@127.0.0.1:5432/test?table=satchel_reauth_test",
    "cookie://",
]


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


def _facts(session: Session) -> dict[str, Any]:
    return {
        "user": session.user_id,
        "time": session.auth_time,
        "age": session.auth_age,
        "methods": list(session.auth_methods),
        "level": session.auth_level,
        "cart": session.get("cart"),
    }


def _starlette(store: str, clock: FakeClock) -> TestClient:
    async def login(request: Request) -> Response:
        satchel.login(_s(request.session), "alice", methods=["pwd"], level="aal1")
        return JSONResponse(_facts(_s(request.session)))

    async def cart(request: Request) -> Response:
        _s(request.session)["cart"] = ["apple"]
        return PlainTextResponse("ok")

    async def step_up(request: Request) -> Response:
        level = request.query_params.get("level")
        satchel.reauthenticate(_s(request.session), methods=["pwd", "otp"], level=level)
        return JSONResponse(_facts(_s(request.session)))

    async def facts(request: Request) -> Response:
        return JSONResponse(_facts(_s(request.session)))

    async def token(request: Request) -> Response:
        return PlainTextResponse(csrf_token(request))

    async def post(request: Request) -> Response:
        return PlainTextResponse("posted")

    routes = [
        Route("/login", login),
        Route("/cart", cart),
        Route("/step-up", step_up),
        Route("/facts", facts),
        Route("/token", token),
        Route("/post", post, methods=["POST"]),
    ]
    app = asgi.SessionMiddleware(
        Starlette(routes=routes), store=store, secret_keys=[KEY], clock=clock
    )
    return TestClient(app, base_url=HTTPS)


@pytest.mark.parametrize("template", STORES)
def test_login_records_how_and_reauthentication_replaces_it(template: str, tmp_path: Path) -> None:
    store = store_url(template.replace("{prefix}", uuid.uuid4().hex[:8]), tmp_path)
    clock = FakeClock(1_800_000_000.0)
    with _starlette(store, clock) as client:
        client.get("/cart")
        signed_in = client.get("/login").json()
        assert signed_in == {
            "user": "alice",
            "time": clock.now,
            "age": 0.0,
            "methods": ["pwd"],
            "level": "aal1",
            "cart": ["apple"],
        }
        clock.advance(600)
        assert client.get("/facts").json()["age"] == 600.0  # stored, read back
        before = client.cookies.get("satchel")
        token = client.get("/token").text
        stepped = client.get("/step-up?level=aal2").json()
        assert (stepped["time"], stepped["age"]) == (clock.now, 0.0)
        assert (stepped["methods"], stepped["level"], stepped["cart"]) == (
            ["pwd", "otp"],
            "aal2",
            ["apple"],  # the data is kept
        )
        assert client.cookies.get("satchel") != before  # a new ID (ASVS 7.2.4)
        assert client.get("/facts").json()["level"] == "aal2"
        refused = client.post("/post", headers={"x-csrf-token": token, "origin": HTTPS})
        assert refused.status_code == 403  # the CSRF token rotated with the handle
        fresh = client.get("/token").text
        assert client.post("/post", headers={"x-csrf-token": fresh, "origin": HTTPS}).text == (
            "posted"
        )
        # a later authentication that gave less claims less: no level kept from before
        assert client.get("/step-up").json()["level"] is None
        if store != "cookie://":  # (a cookie session's old cookie: see docs/security.md)
            client.cookies.set("satchel", str(before), domain="127.0.0.1")
            assert client.get("/facts").json()["user"] is None  # the old ID is dead
        opened = find_middleware(client.app).store
        if opened is not None:  # its connections belong to the client's event loop
            client.portal.call(opened.aclose)  # type: ignore[union-attr]
            opened.close()


def test_reauthentication_needs_a_login_and_sane_names() -> None:
    session = Session()
    with pytest.raises(SessionStateError, match="logged-in"):
        satchel.reauthenticate(session)
    for methods, level in ((["pass word"], None), (["pwd"] * 9, None), (["pwd"], "aal 2")):
        if len(set(methods)) == 1 and len(methods) > 1:
            methods = [f"m{i}" for i in range(9)]
        with pytest.raises(ConfigurationError):
            satchel.login(Session(), "alice", methods=methods, level=level)


def test_anonymous_sessions_claim_no_authentication() -> None:
    session = Session()
    assert (session.auth, session.auth_time, session.auth_age) == (None, None, None)
    assert (session.auth_methods, session.auth_level) == ((), None)


@pytest.mark.parametrize("kind", ["wsgi", "flask"])
def test_wsgi_and_flask(kind: str, tmp_path: Path) -> None:
    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        if environ["PATH_INFO"] == "/login":
            satchel.login(session, "alice", methods=["hwk"], level="aal3")
        elif environ["PATH_INFO"] == "/step-up":
            satchel.reauthenticate(session, methods=["pwd"], level="aal1")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(_facts(session)).encode()]

    if kind == "wsgi":
        app: Any = wsgi.SessionMiddleware(
            plain, store=f"sqlite:///{tmp_path}/w.db", secret_keys=[KEY]
        )
    else:
        from flask import Flask, jsonify, session

        from satchel.integrations import flask as satchel_flask

        flask_app = Flask(__name__)
        flask_app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=f"sqlite:///{tmp_path}/f.db")

        @flask_app.get("/login")
        def login() -> Any:
            satchel_flask.login_user("alice", methods=["hwk"], level="aal3")
            return jsonify(_facts(_s(session)))

        @flask_app.get("/step-up")
        def step_up() -> Any:
            satchel.reauthenticate(_s(session), methods=["pwd"], level="aal1")
            return jsonify(_facts(_s(session)))

        @flask_app.get("/facts")
        def facts() -> Any:
            return jsonify(_facts(_s(session)))

        satchel_flask.Satchel(flask_app)
        app = flask_app
    client = WerkzeugClient(app)
    assert client.get("/login", base_url=HTTPS).json["level"] == "aal3"  # type: ignore[index]
    assert client.get("/facts", base_url=HTTPS).json["methods"] == ["hwk"]  # type: ignore[index]
    assert client.get("/step-up", base_url=HTTPS).json["level"] == "aal1"  # type: ignore[index]
    assert client.get("/facts", base_url=HTTPS).json["methods"] == ["pwd"]  # type: ignore[index]
