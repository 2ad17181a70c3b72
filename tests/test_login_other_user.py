"""A login by another user starts from empty data (as Django's does); a login from an
anonymous session, or by the same user again, keeps it. Every path: ASGI (Starlette,
server and cookie stores), WSGI, Flask's ``login_user``; Django's lives in
test_integration_django.py (Django settings are process-wide)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import MemoryStore, Session, SQLiteStore, login
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import session_of
from .test_examples import load
from .test_integration_flask import BASE, log_in, token

pytestmark = pytest.mark.anyio
DAY = 86_400


async def do_login(request: Request) -> Response:
    login(session_of(request), request.query_params["user"])
    return PlainTextResponse("in")


async def put(request: Request) -> Response:
    for key, value in request.query_params.items():
        request.session[key] = value
    return PlainTextResponse("ok")


async def remember(request: Request) -> Response:
    session_of(request).set_expiry(idle_timeout=7 * DAY, absolute_timeout=30 * DAY, persistent=True)
    return PlainTextResponse("remembered")


async def state(request: Request) -> Response:
    meta = session_of(request).meta
    return JSONResponse(
        {
            "user": session_of(request).user_id,
            "data": dict(request.session),
            "lifetime": None if meta is None else meta.absolute_deadline - meta.created,
            "persistent": None if meta is None else meta.persistent,
        }
    )


ROUTES = [
    Route("/login", do_login),
    Route("/put", put),
    Route("/remember", remember),
    Route("/state", state),
]


def asgi_app(kind: str, tmp_path: Path) -> SessionMiddleware:
    app = Starlette(routes=ROUTES)
    if kind == "memory":
        return SessionMiddleware(app, store=MemoryStore(), secret_keys=[KEY])
    if kind == "sqlite":
        return SessionMiddleware(app, store=SQLiteStore(tmp_path / "s.db"), secret_keys=[KEY])
    revocation = MemoryStore() if kind == "cookie+revocation" else None
    return SessionMiddleware(app, store="cookie://", secret_keys=[KEY], revocation_store=revocation)


KINDS = ["memory", "sqlite", "cookie+revocation", "cookie"]


@pytest.mark.parametrize("kind", KINDS)
async def test_another_users_login_starts_from_empty_data_and_default_expiry(
    kind: str, tmp_path: Path
) -> None:
    app = asgi_app(kind, tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as c:
        await c.get("/login?user=bob")
        await c.get("/put?theme=dark&cart=book")
        await c.get("/remember")
        bob = (await c.get("/state")).json()
        assert bob["data"] == {"theme": "dark", "cart": "book"}
        assert (bob["lifetime"], bob["persistent"]) == (30 * DAY, True)
        response = await c.get("/login?user=alice")  # alice, on bob's browser
        assert "Max-Age" not in response.headers["set-cookie"]  # bob's remember-me is gone
        alice = (await c.get("/state")).json()
        assert alice == {"user": "alice", "data": {}, "lifetime": 12 * 3600, "persistent": False}


@pytest.mark.parametrize("kind", KINDS)
async def test_anonymous_and_same_user_logins_keep_the_data(kind: str, tmp_path: Path) -> None:
    app = asgi_app(kind, tmp_path)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as c:
        await c.get("/put?cart=book")
        await c.get("/login?user=alice")  # anonymous -> alice: the cart stays
        assert (await c.get("/state")).json()["data"] == {"cart": "book"}
        await c.get("/put?theme=dark")
        await c.get("/login?user=alice")  # alice again (re-authentication): kept
        assert (await c.get("/state")).json()["data"] == {"cart": "book", "theme": "dark"}


def wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/login":
        login(session, query.partition("=")[2])
    elif path == "/put":
        key, _, value = query.partition("=")
        session[key] = value
    body = json.dumps({"user": session.user_id, "data": dict(session)}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


@pytest.mark.parametrize("store", ["memory", "cookie"])
def test_wsgi_another_users_login_starts_from_empty_data(store: str) -> None:
    options: dict[str, Any] = {"store": MemoryStore()}
    if store == "cookie":
        options = {"store": "cookie://", "revocation_store": MemoryStore()}
    app = WSGISessionMiddleware(wsgi_app, secret_keys=[KEY], **options)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://testserver") as c:
        c.get("/put?cart=book")
        c.get("/login?user=bob")
        assert c.get("/put?theme=dark").json()["data"] == {"cart": "book", "theme": "dark"}
        c.get("/login?user=bob")
        assert c.get("/state").json()["data"] == {"cart": "book", "theme": "dark"}
        assert c.get("/login?user=alice").json() == {"user": "alice", "data": {}}
        assert c.get("/state").json() == {"user": "alice", "data": {}}


@pytest.fixture
def flask_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("SECRET_KEY", KEY)
    return load("flask_app", monkeypatch, tmp_path)


def test_flask_login_user_of_another_user_starts_from_empty_data(
    flask_example: ModuleType,
) -> None:
    flask_app: Flask = flask_example.app
    flask_app.config["TESTING"] = True
    client = flask_app.test_client()
    log_in(client, "bob")
    client.post(f"{BASE}/note", data={"key": "theme", "value": "dark", "csrf_token": token(client)})
    assert client.get(f"{BASE}/me").get_json()["data"] == {"theme": "dark"}
    log_in(client, "bob")  # the same user again: kept
    assert client.get(f"{BASE}/me").get_json()["data"] == {"theme": "dark"}
    log_in(client, "alice")
    me = client.get(f"{BASE}/me").get_json()
    assert (me["user"], me["data"]) == ("alice", {})


def test_fastapi_another_users_login_starts_from_empty_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    example = load("fastapi_app", monkeypatch, tmp_path)
    client = TestClient(example.app, base_url="https://testserver")

    def post(path: str) -> Any:
        tok = client.get("/csrf").json()["csrf_token"]
        return client.post(path, headers={"X-CSRF-Token": tok})

    post("/login/bob")
    post("/notes/theme?value=dark")
    assert client.get("/me").json()["data"] == {"theme": "dark"}
    post("/login/bob")
    assert client.get("/me").json()["data"] == {"theme": "dark"}
    post("/login/alice")
    me = client.get("/me").json()
    assert (me["user"], me["data"]) == ("alice", {})
