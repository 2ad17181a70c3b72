"""A small Starlette app showing satchel's login -> profile -> logout flow.

Routes (a stable contract for scripted clients):
``GET /login``, ``POST /login`` (username, password) -> 303 /profile or 401,
``GET /profile`` -> 200 or 303 /login, ``POST /logout`` -> 303 /login,
``GET /api/me`` -> ``{"username": ...}`` or 401 ``{"error": ...}``.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..asgi import SessionMiddleware
from ..auth import login, logout
from ..options import SessionOptions
from ..session import Session
from ..stores.base import Store

USERS = {"alice": "wonderland", "bob": "builder"}
_STATIC = Path(__file__).parent / "static"


def _page(title: str, body: str, *, user: str | None = None, status: int = 200) -> HTMLResponse:
    nav = (
        '<form method="post" action="/logout"><button class="link">Log out</button></form>'
        if user
        else '<a href="/login">Log in</a>'
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · satchel demo</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><header><a href="/">satchel demo</a>{nav}</header>
<main><div class="card">{body}</div></main></body></html>"""
    return HTMLResponse(html, status_code=status)


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def home(request: Request) -> Response:
    user = _session(request).user_id
    if user:
        body = f'<h1>Hello, {escape(user)}</h1><p><a href="/profile">Your profile</a></p>'
    else:
        body = (
            "<h1>satchel demo</h1><p>Server-side sessions, secure by default.</p>"
            '<p><a href="/login">Log in</a> as <b>alice</b> / <b>wonderland</b> '
            "or <b>bob</b> / <b>builder</b>.</p>"
        )
    return _page("Home", body, user=user)


def _login_form(error: str | None = None, status: int = 200) -> HTMLResponse:
    message = f'<p class="error">{escape(error)}</p>' if error else ""
    body = f"""<h1>Log in</h1>{message}
<form method="post" action="/login">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form>"""  # noqa: E501
    return _page("Log in", body, status=status)


async def login_page(request: Request) -> Response:
    if _session(request).user_id:
        return RedirectResponse("/profile", status_code=303)
    return _login_form()


def check_password(username: str, password: str) -> bool:
    expected = USERS.get(username, "")
    matches = hmac.compare_digest(expected.encode(), password.encode())
    return bool(expected) and matches


async def login_submit(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if not check_password(username, password):
        return _login_form("Unknown user or wrong password.", status=401)
    login(_session(request), username)
    return RedirectResponse("/profile", status_code=303)


async def profile(request: Request) -> Response:
    session = _session(request)
    user, meta = session.user_id, session.meta
    if not user or meta is None:
        return RedirectResponse("/login", status_code=303)
    body = f"""<h1>Welcome, {escape(user)}</h1>
<dl><dt>Session</dt><dd><code>{escape(meta.handle)}</code> (a public handle, not the ID)</dd>
<dt>Logged in</dt><dd>{_when(meta.created)}</dd>
<dt>Last seen</dt><dd>{_when(meta.last_seen)}</dd>
<dt>Expires</dt><dd>{_when(meta.expires_at)} unless used again</dd>
<dt>Device</dt><dd>{escape(meta.user_agent or "unknown")}</dd>
<dt>IP</dt><dd>{escape(meta.client_ip or "unknown")}</dd></dl>
<form method="post" action="/logout"><button>Log out</button></form>"""
    return _page("Profile", body, user=user)


async def logout_submit(request: Request) -> Response:
    logout(_session(request))
    return RedirectResponse("/login", status_code=303)


async def api_me(request: Request) -> Response:
    user = _session(request).user_id
    if not user:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    return JSONResponse({"username": user})


def create_app(store: str | Store, **options: Any) -> SessionMiddleware:
    """The demo as an ASGI app wrapped in satchel's middleware."""
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login_submit, methods=["POST"]),
            Route("/profile", profile),
            Route("/logout", logout_submit, methods=["POST"]),
            Route("/api/me", api_me),
            Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        ]
    )
    opts: SessionOptions = options  # type: ignore[assignment]
    return SessionMiddleware(app, store=store, **opts)
