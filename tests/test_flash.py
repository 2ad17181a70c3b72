"""satchel.flash: one-time messages in the session, on the ASGI, WSGI and Flask paths.
Each test writes a message in one request and reads it, once, in the next."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask import session as flask_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session, flash, get_flashed_messages, logout
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.flash import FLASH_KEY, MAX_LENGTH, MAX_MESSAGES, peek_flashed_messages
from satchel.integrations.flask import Satchel, login_user, logout_user
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY

BASE = "https://example"


def test_bounded_and_json_safe() -> None:
    session: dict[str, Any] = {}
    for n in range(MAX_MESSAGES + 5):
        flash(session, f"message {n}" + "x" * MAX_LENGTH, "warning")
    assert json.loads(json.dumps(session)) == session
    waiting = peek_flashed_messages(session)
    assert len(waiting) == MAX_MESSAGES
    assert waiting[0][1].startswith("message 5")  # the oldest went first
    assert all(len(message) == MAX_LENGTH for _, message in waiting)
    assert get_flashed_messages(session) == waiting
    assert get_flashed_messages(session) == []
    assert FLASH_KEY not in session


def test_a_hand_edited_value_is_ignored_not_raised() -> None:
    session: dict[str, Any] = {FLASH_KEY: [["info", "ok"], "junk", [1, 2], ["a", "b", "c"]]}
    assert get_flashed_messages(session) == [("info", "ok")]
    with pytest.raises(TypeError):
        flash(session, 42)  # type: ignore[arg-type]


def _asgi_app() -> ASGIMiddleware:
    async def write(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        session["user"] = "ann"
        flash(session, "Saved.", "success")
        flash(session, "Second.")
        return JSONResponse({})

    async def bye(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        logout(session)
        flash(session, "Logged out.")  # lands in the new, anonymous session
        return JSONResponse({})

    async def read(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        return JSONResponse(get_flashed_messages(session))

    routes = [Route("/write", write), Route("/bye", bye), Route("/read", read)]
    return ASGIMiddleware(Starlette(routes=routes), store="memory://", secret_keys=[KEY])


@pytest.mark.anyio
async def test_asgi() -> None:
    transport = httpx.ASGITransport(app=_asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        assert (await client.get("/read")).json() == []
        await client.get("/write")
        assert (await client.get("/read")).json() == [["success", "Saved."], ["info", "Second."]]
        assert (await client.get("/read")).json() == []
        await client.get("/bye")
        assert (await client.get("/read")).json() == [["info", "Logged out."]]


def test_wsgi(tmp_path: Path) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = environ["satchel.session"]
        if environ["PATH_INFO"] == "/write":
            flash(session, "Saved.", "success")
            body: object = {}
        else:
            body = get_flashed_messages(session)
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps(body).encode()]

    wrapped = WSGIMiddleware(app, store=f"sqlite:///{tmp_path}/s.db", secret_keys=[KEY])
    with httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url=BASE) as client:
        client.get("/write")
        assert client.get("/read").json() == [["success", "Saved."]]
        assert client.get("/read").json() == []


def test_flask(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=f"sqlite:///{tmp_path}/s.db", TESTING=True)
    Satchel(app)

    @app.get("/in")
    def log_in() -> str:
        login_user("ann")
        flash(flask_session, "Welcome back.", "success")  # satchel's, on flask.session
        return "ok"

    @app.get("/out")
    def log_out() -> str:
        logout_user()
        flash(flask_session, "Logged out.")
        return "ok"

    @app.get("/read")
    def read() -> list[tuple[str, str]]:
        return get_flashed_messages(flask_session)

    client = app.test_client()
    client.get("https://localhost/in")
    assert client.get("https://localhost/read").json == [["success", "Welcome back."]]
    assert client.get("https://localhost/read").json == []
    client.get("https://localhost/out")
    assert client.get("https://localhost/read").json == [["info", "Logged out."]]
