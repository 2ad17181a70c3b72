"""``end_user_sessions``: the account code's hook (issue 17; OWASP ASVS 5.0 7.4.2). An
account disabled, deleted or reset by someone else: every session of that user ends, on
every path and store, from outside any of them; other users' sessions stay.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import asgi, auth, wsgi
from satchel.errors import ConfigurationError
from satchel.events import SessionEvent
from satchel.session import Session
from satchel.testing import find_middleware

from .helpers import KEY
from .services import store_url

STORES = ["sqlite:///{tmp}/s.db", "redis://127.0.0.1:6379/0?prefix=eus-{prefix}:"]
HTTPS = "https://127.0.0.1"


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


def _url(template: str, tmp: Path) -> str:
    return store_url(template.replace("{prefix}", uuid.uuid4().hex[:8]), tmp)


def _starlette(store: str, events: list[SessionEvent], **options: Any) -> Starlette:
    async def login(request: Request) -> Response:
        auth.login(_s(request.session), request.query_params["user"])
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(_s(request.session).user_id or "-")

    middleware = Middleware(
        asgi.SessionMiddleware,
        store=store,
        secret_keys=[KEY],
        on_event=events.append,
        **options,
    )
    return Starlette(
        routes=[Route("/login", login), Route("/whoami", whoami)], middleware=[middleware]
    )


OPEN: list[httpx.AsyncClient] = []


async def _devices(app: Any, users: list[str]) -> list[httpx.AsyncClient]:
    """One client (one cookie jar) per user, all on this event loop (the store's async
    connections belong to one loop); closed by :func:`_closing`."""
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HTTPS) for _ in users
    ]
    OPEN.extend(clients)
    for client, user in zip(clients, users, strict=True):
        await client.get(f"/login?user={user}")
        assert (await client.get("/whoami")).text == user
    return clients


async def _closing(run: Any, app: Any) -> None:
    """Run, then close the clients and the store's connections of this event loop."""
    try:
        await run
    finally:
        while OPEN:
            await OPEN.pop().aclose()
        store = find_middleware(app).store
        if store is not None:
            await store.aclose()


async def _who(client: httpx.AsyncClient) -> str:
    return (await client.get("/whoami")).text


@pytest.mark.parametrize("store", STORES)
def test_every_session_of_the_user_ends_on_asgi(store: str, tmp_path: Path) -> None:
    events: list[SessionEvent] = []
    app = _starlette(_url(store, tmp_path), events)

    async def run() -> None:
        alice_1, alice_2, bob = await _devices(app, ["alice", "alice", "bob"])
        assert satchel.end_user_sessions(app, "alice", reason="account_disabled") == 2
        assert [await _who(c) for c in (alice_1, alice_2, bob)] == ["-", "-", "bob"]
        assert satchel.end_user_sessions(app, "alice") == 0  # nothing left

    asyncio.run(_closing(run(), app))
    revoked = [(e.user_id, e.reason) for e in events if e.kind == "revoked"]
    assert revoked == [("alice", "account_disabled")] * 2


@pytest.mark.parametrize("store", STORES)
def test_async_account_code(store: str, tmp_path: Path) -> None:
    app = _starlette(_url(store, tmp_path), [])

    async def run() -> None:
        (alice,) = await _devices(app, ["alice"])
        assert await satchel.aend_user_sessions(app, "alice", reason="deleted") == 1
        assert await _who(alice) == "-"

    asyncio.run(_closing(run(), app))


def test_wsgi_and_flask(tmp_path: Path) -> None:
    from flask import Flask

    from satchel.integrations import flask as satchel_flask

    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        if environ["PATH_INFO"] == "/login":
            auth.login(session, "alice")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [(session.user_id or "-").encode()]

    middleware = wsgi.SessionMiddleware(
        plain, store=f"sqlite:///{tmp_path}/w.db", secret_keys=[KEY]
    )
    flask_app = Flask(__name__)
    flask_app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=f"sqlite:///{tmp_path}/f.db")

    @flask_app.get("/login")
    def login() -> str:
        satchel_flask.login_user("alice")
        return "alice"

    @flask_app.get("/whoami")
    def whoami() -> str:
        return satchel_flask.current_user_id() or "-"

    satchel_flask.Satchel(flask_app)
    for app in (middleware, flask_app):
        client = WerkzeugClient(app)
        client.get("/login", base_url=HTTPS)
        assert client.get("/whoami", base_url=HTTPS).text == "alice"
        assert satchel.end_user_sessions(app, "alice") == 1
        assert client.get("/whoami", base_url=HTTPS).text == "-"


def test_cookie_sessions_with_a_revocation_store(tmp_path: Path) -> None:
    events: list[SessionEvent] = []
    app = _starlette("cookie://", events, revocation_store=f"sqlite:///{tmp_path}/revoked.db")

    async def run() -> None:
        alice_1, alice_2, bob = await _devices(app, ["alice", "alice", "bob"])
        assert satchel.end_user_sessions(app, "alice", reason="password_reset") is None
        assert [await _who(c) for c in (alice_1, alice_2, bob)] == ["-", "-", "bob"]
        (again,) = await _devices(app, ["alice"])  # alice can log in again afterwards
        assert await _who(again) == "alice"

    asyncio.run(_closing(run(), app))
    assert ("revoked", "alice", "password_reset") in [(e.kind, e.user_id, e.reason) for e in events]


def test_cookie_sessions_without_one_are_refused() -> None:
    app = _starlette("cookie://", [])
    with pytest.raises(ConfigurationError, match="revocation_store"):
        satchel.end_user_sessions(app, "alice")


def test_something_without_satchel_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no satchel SessionMiddleware"):
        satchel.end_user_sessions(Starlette(), "alice")
