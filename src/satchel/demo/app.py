"""The satchel demo: a small Starlette app on any satchel store.

HTTP contract, kept stable for scripted clients (every POST needs a ``csrf_token`` form
field or an ``X-CSRF-Token`` header, else 403):

=================================  ===============================================
``GET /login``                     form with a hidden ``csrf_token``
``POST /login``                    username, password -> 303 /profile; 401 if wrong
``GET /profile``                   200, or 303 /login
``GET /settings``, ``POST``        theme -> 303 /profile
``GET /sessions``                  the user's sessions
``POST /sessions/revoke``          session=<public handle> -> 303 /sessions
``POST /sessions/others``          log out other devices -> 303 /sessions
``POST /logout``                   -> 303 /login
``GET /logout-everywhere``         asks for confirmation (a form, no JavaScript)
``POST /logout-everywhere``        confirm=yes -> 303 /login; without it 303 back to
                                   the confirmation page
``GET /api/me``                    ``{"username", "device_bound", "csrf_token"}`` or
                                   401 ``{"error"}``
``GET /api/csrf``                  ``{"csrf_token"}``
=================================  ===============================================

API clients (mobile apps, scripts) use bearer tokens instead of the cookie, on every path
under ``/api/`` (``token_paths``): send ``Authorization: Bearer <token>``; a new or
rotated token comes back in the ``X-Session-Token`` response header, never in a cookie.
A request authenticated by the token alone needs no CSRF token; one that also carries the
session cookie still does.

Device-bound sessions (``SATCHEL_DBSC=true``, over HTTPS: ``satchel demo --tls``): a
login offers the browser to bind the session to a key it keeps; the middleware answers
the browser at ``/.satchel/dbsc/register`` and ``/.satchel/dbsc/refresh``; "Your
sessions" marks bound sessions "device-bound".

=================================  ===============================================
``POST /api/login``                JSON ``{"username", "password"}`` -> 200
                                   ``{"username"}``, token in ``X-Session-Token``;
                                   401 ``{"error"}`` if wrong
``GET /api/me``                    with the token: ``{"username", "device_bound"}`` (plus
                                   ``csrf_token`` when a cookie came too), else 401
``POST /api/logout``               ends the token's session -> 200 ``{"logged_out"}``
``POST /api/regenerate``           a new token in ``X-Session-Token``, the old one dead
=================================  ===============================================
"""

from __future__ import annotations

import hmac
import logging
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..asgi import SessionMiddleware
from ..auth import (
    alogout_everywhere,
    alogout_other_devices,
    arevoke,
    asessions_of,
    login,
    logout,
    regenerate_on_privilege_change,
)
from ..dbsc import device_bound
from ..events import SessionEvent
from ..flash import flash, get_flashed_messages
from ..guard import login_required, safe_next
from ..options import SessionOptions
from ..request import SCOPE_KEY, RequestContext, csrf_token, use_bearer_token
from ..session import Session
from ..stores.base import Store
from .display import device_html, when_html

USERS = {"alice": "wonderland", "bob": "builder"}
THEMES = ("light", "dark", "sepia")
_STATIC = Path(__file__).parent / "static"
events = logging.getLogger("satchel.demo.events")


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


ENDED = "Your session ended: you were signed out (perhaps from another device), or it expired."


def _flashes(session: Session) -> str:
    items = "".join(
        f'<p class="flash flash-{escape(category)}" role="status">{escape(message)}</p>'
        for category, message in get_flashed_messages(session)
    )
    return f'<div class="flashes">{items}</div>' if items else ""


def _page(request: Request, title: str, body: str, *, status: int = 200) -> HTMLResponse:
    session = _session(request)
    user = session.user_id
    theme = session.get("theme", "light") if user else "light"
    token = escape(csrf_token(request))
    if user:
        nav = (
            f'<nav><a href="/profile">Profile</a><a href="/settings">Settings</a>'
            f'<a href="/sessions">Your sessions</a>'
            f'<form method="post" action="/logout"><input type="hidden" name="csrf_token" '
            f'value="{token}"><button class="link">Log out</button></form></nav>'
        )
    else:
        nav = '<nav><a href="/login">Log in</a></nav>'
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · satchel demo</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body class="theme-{escape(theme)}"><header><a class="brand" href="/">satchel demo</a>{nav}</header>
<main>{_flashes(session)}<div class="card">{body}</div></main></body></html>"""
    return HTMLResponse(html, status_code=status)


def _hidden(request: Request) -> str:
    return f'<input type="hidden" name="csrf_token" value="{escape(csrf_token(request))}">'


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
    return _page(request, "Home", body)


def _login_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    target = escape(safe_next(request.query_params.get("next"), "/profile"))
    body = f"""<h1>Log in</h1>{message}
<form method="post" action="/login?next={target}">{_hidden(request)}
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form>"""
    return _page(request, "Log in", body, status=status)


async def login_page(request: Request) -> Response:
    if _session(request).user_id:
        return RedirectResponse("/profile", status_code=303)
    return _login_form(request)


def check_password(username: str, password: str) -> bool:
    expected = USERS.get(username, "")
    matches = hmac.compare_digest(expected.encode(), password.encode())
    return bool(expected) and matches


async def login_submit(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if not check_password(username, password):
        return _login_form(request, "Unknown user or wrong password.", status=401)
    login(_session(request), username)
    flash(_session(request), f"Logged in as {username}.", "success")
    return RedirectResponse(safe_next(request.query_params.get("next"), "/profile"), 303)


@login_required
async def profile(request: Request) -> Response:
    session = _session(request)
    meta = session.meta
    assert meta is not None
    theme = escape(session.get("theme", "light"))
    body = f"""<h1>Welcome, {escape(session.user_id or "")}</h1>
<dl><dt>Theme</dt><dd id="theme">{theme}</dd>
<dt>Session</dt><dd><code>{escape(meta.handle)}</code> (a public handle, not the ID)</dd>
<dt>Logged in</dt><dd>{when_html(meta.created)}</dd>
<dt>Last seen</dt><dd>{when_html(meta.last_seen)}</dd>
<dt>Expires</dt><dd>{when_html(meta.expires_at)} unless used again</dd>
<dt>Device</dt><dd>{device_html(meta.user_agent)}</dd>
<dt>IP</dt><dd>{escape(meta.client_ip or "unknown")}</dd></dl>
<p><a href="/settings">Change the theme</a> · <a href="/sessions">Your sessions</a></p>"""
    return _page(request, "Profile", body)


@login_required
async def settings_page(request: Request) -> Response:
    current = _session(request).get("theme", "light")
    options = "".join(
        f'<option value="{t}"{" selected" if t == current else ""}>{t}</option>' for t in THEMES
    )
    body = f"""<h1>Settings</h1>
<form method="post" action="/settings">{_hidden(request)}
<label for="theme">Theme</label><select id="theme" name="theme">{options}</select>
<button type="submit">Save</button></form>"""
    return _page(request, "Settings", body)


@login_required
async def settings_submit(request: Request) -> Response:
    theme = str((await request.form()).get("theme", ""))
    if theme not in THEMES:
        return _page(request, "Settings", "<p class='error'>Unknown theme.</p>", status=400)
    _session(request)["theme"] = theme
    flash(_session(request), f"Theme saved: {theme}.", "success")
    return RedirectResponse("/profile", status_code=303)


@login_required
async def sessions_page(request: Request) -> Response:
    session = _session(request)
    cards = []
    for info in await asessions_of(session):
        mark = ' <span class="badge">this device</span>' if info.current else ""
        if info.device_bound:
            mark += ' <span class="badge bound">device-bound</span>'
        action = (
            ""
            if info.current
            else f'<form method="post" action="/sessions/revoke">{_hidden(request)}'
            f'<input type="hidden" name="session" value="{escape(info.handle)}">'
            f'<button class="danger">Revoke</button></form>'
        )
        cards.append(
            f'<li class="device" data-handle="{escape(info.handle)}">'
            f'<div class="device-head">{device_html(info.user_agent)}{mark}</div>'
            f'<dl class="facts"><dt>IP</dt><dd>{escape(info.client_ip or "unknown")}</dd>'
            f"<dt>Signed in</dt><dd>{when_html(info.created)}</dd>"
            f"<dt>Last seen</dt><dd>{when_html(info.last_seen)}</dd></dl>{action}</li>"
        )
    note = ""
    ctx: RequestContext = request.scope[SCOPE_KEY]
    if not ctx.backend.lists_other_sessions:
        note = (
            '<p class="muted">This demo keeps sessions in encrypted cookies, so the server '
            "holds no list of your other devices: only this one is shown. "
            "“Log out everywhere” still ends them all.</p>"
        )
    body = f"""<h1>Your sessions</h1>{note}
<ul class="devices">{"".join(cards)}</ul>
<div class="actions"><form method="post" action="/sessions/others">{_hidden(request)}
<button>Log out other devices</button></form>
<a class="button danger" href="/logout-everywhere">Log out everywhere…</a></div>"""
    return _page(request, "Your sessions", body)


@login_required
async def revoke_submit(request: Request) -> Response:
    session = _session(request)
    handle = str((await request.form()).get("session", ""))
    if await arevoke(session, handle):
        flash(session, "Session revoked: that device is signed out.", "success")
    else:
        flash(session, "Nothing to revoke: that session had already ended.", "info")
    return RedirectResponse("/sessions", status_code=303)


@login_required
async def others_submit(request: Request) -> Response:
    session = _session(request)
    await alogout_other_devices(session)
    flash(session, "Other devices logged out: only this one is still signed in.", "success")
    return RedirectResponse("/sessions", status_code=303)


async def logout_submit(request: Request) -> Response:
    session = _session(request)
    logout(session)
    flash(session, "You have been logged out.", "success")  # lands in a new, anonymous session
    return RedirectResponse("/login", status_code=303)


@login_required
async def logout_everywhere_page(request: Request) -> Response:
    body = f"""<h1>Log out everywhere?</h1>
<p>This ends every session of <b>{escape(_session(request).user_id or "")}</b>: this browser
and all your other devices. Each will have to log in again.</p>
<div class="actions"><form method="post" action="/logout-everywhere">{_hidden(request)}
<input type="hidden" name="confirm" value="yes">
<button class="danger">Yes, log out everywhere</button></form>
<a class="button secondary" href="/sessions">Cancel</a></div>"""
    return _page(request, "Log out everywhere?", body)


async def logout_everywhere_submit(request: Request) -> Response:
    session = _session(request)
    if (await request.form()).get("confirm") != "yes":
        return RedirectResponse("/logout-everywhere", status_code=303)
    if session.user_id:
        await alogout_everywhere(session)
    else:
        logout(session)
    flash(session, "You have been logged out on every device.", "success")
    return RedirectResponse("/login", status_code=303)


class EndedSessionNotice:
    """Tells a person whose session cookie opens nothing (revoked from another device,
    logged out everywhere, expired) why they are at the login page. The server keeps nothing
    about ended sessions, so the note cannot say which of these it was."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["path"].startswith(("/static/", "/api/"))
        ):
            ctx = scope.get(SCOPE_KEY)
            session = scope.get("session")
            if (
                isinstance(ctx, RequestContext)
                and isinstance(session, Session)
                and ctx.carries_cookie
                and session.new
            ):
                flash(session, ENDED, "info")
        await self.app(scope, receive, send)


def _not_logged_in() -> Response:
    return JSONResponse({"error": "not logged in"}, status_code=401)


async def api_me(request: Request) -> Response:
    user = _session(request).user_id
    if not user:
        return _not_logged_in()
    ctx: RequestContext = request.scope[SCOPE_KEY]
    me: dict[str, Any] = {"username": user, "device_bound": device_bound(_session(request))}
    if ctx.transport.checks_csrf or ctx.carries_cookie:  # a cookie came: its POSTs need one
        me["csrf_token"] = csrf_token(request)
    return JSONResponse(me)


async def api_login(request: Request) -> Response:
    session = _session(request)
    use_bearer_token(session)  # the token goes in X-Session-Token, never in a cookie
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"error": "send JSON: {username, password}"}, status_code=400)
    username, password = body.get("username"), body.get("password")
    if not (
        isinstance(username, str)
        and isinstance(password, str)
        and check_password(username, password)
    ):
        return JSONResponse({"error": "unknown user or wrong password"}, status_code=401)
    login(session, username)
    return JSONResponse({"username": username})


async def api_logout(request: Request) -> Response:
    session = _session(request)
    if not session.user_id:
        return _not_logged_in()
    logout(session)
    return JSONResponse({"logged_out": True})


async def api_regenerate(request: Request) -> Response:
    session = _session(request)
    if not session.user_id:
        return _not_logged_in()
    regenerate_on_privilege_change(session)
    return JSONResponse({"username": session.user_id})


async def api_csrf(request: Request) -> Response:
    return JSONResponse({"csrf_token": csrf_token(request)})


def log_event(event: SessionEvent) -> None:
    events.info(
        "%s%s user=%s handle=%s",
        event.kind,
        f" ({event.reason})" if event.reason else "",
        event.user_id,
        event.handle,
    )


def create_app(store: str | Store, **options: Any) -> SessionMiddleware:
    """The demo as an ASGI app wrapped in satchel's middleware. With the cookie store,
    revocation records go to ``revocation_store`` (the demo passes its SQLite file)."""
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login_submit, methods=["POST"]),
            Route("/profile", profile),
            Route("/settings", settings_page, methods=["GET"]),
            Route("/settings", settings_submit, methods=["POST"]),
            Route("/sessions", sessions_page),
            Route("/sessions/revoke", revoke_submit, methods=["POST"]),
            Route("/sessions/others", others_submit, methods=["POST"]),
            Route("/logout", logout_submit, methods=["POST"]),
            Route("/logout-everywhere", logout_everywhere_page, methods=["GET"]),
            Route("/logout-everywhere", logout_everywhere_submit, methods=["POST"]),
            Route("/api/me", api_me),
            Route("/api/csrf", api_csrf),
            Route("/api/login", api_login, methods=["POST"]),
            Route("/api/logout", api_logout, methods=["POST"]),
            Route("/api/regenerate", api_regenerate, methods=["POST"]),
            Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        ]
    )
    app.add_middleware(EndedSessionNotice)
    options.setdefault("on_event", log_event)
    if not options.get("token_paths") and not str(store).startswith("cookie:"):
        options["token_paths"] = ["/api/"]  # bearer tokens for API clients (server stores)
    opts: SessionOptions = options  # type: ignore[assignment]
    return SessionMiddleware(app, store=store, **opts)
