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
``GET /security``                  when and how the user last signed in; change
                                   the password (``POST /security/password``,
                                   needs a recent sign-in) -> 303 /security, which
                                   then offers to log out other devices
``GET /security/sensitive``        200 with a sign-in at most ``reauth_max_age``
                                   (``SATCHEL_REAUTH_MAX_AGE``, 300 s) old; else 303
                                   ``/reauth?next=/security/sensitive``; 403 while
                                   impersonating
``GET /reauth``, ``POST``          password -> 303 to ``next`` under a new session
                                   ID; 401 if wrong; 403 while impersonating
``POST /admin/impersonate``        username -> 303 /profile acting as that user
                                   (user ``admin``/``keyholder`` only, else 403;
                                   a sign-in older than ``reauth_max_age``: 303
                                   ``/reauth?next=/admin/impersonate``)
``POST /admin/stop-impersonating`` -> 303 /profile as the administrator again, no
                                   new login (403 unless impersonating)
``GET /api/me``                    ``{"username", "device_bound", "auth_time",
                                   "auth_level", "impersonator", "csrf_token"}`` or
                                   401 ``{"error"}``
``GET /api/csrf``                  ``{"csrf_token"}``
=================================  ===============================================

``POST /logout`` answers with ``Clear-Site-Data: "cookies"`` (and lands on
``/logged-out``, which writes the note for the login page).

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

import hashlib
import hmac
import logging
from html import escape
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..asgi import SessionMiddleware
from ..auth import (
    alogout_everywhere,
    alogout_other_devices,
    arevoke,
    asessions_of,
    impersonate,
    login,
    logout,
    reauthenticate,
    regenerate_on_privilege_change,
    stop_impersonating,
)
from ..dbsc import device_bound
from ..events import SessionEvent
from ..flash import flash, get_flashed_messages
from ..guard import configured_max_age, login_required, require_recent_auth, safe_next
from ..options import SessionOptions
from ..request import SCOPE_KEY, RequestContext, csrf_token, use_bearer_token
from ..session import Session
from ..stores.base import Store
from .display import device_html, when_html

USERS = {"alice": "wonderland", "bob": "builder", "admin": "keyholder"}
ADMINS = frozenset({"admin"})
"""Who may act as another user (``POST /admin/impersonate``)."""
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
    acting = ""
    if user:
        nav = (
            f'<nav><a href="/profile">Profile</a><a href="/settings">Settings</a>'
            f'<a href="/sessions">Your sessions</a><a href="/security">Security</a>'
            f'<form method="post" action="/logout"><input type="hidden" name="csrf_token" '
            f'value="{token}"><button class="link">Log out</button></form></nav>'
        )
        if session.impersonator is not None:
            acting = (
                f'<div class="acting" role="status">{escape(session.impersonator)}, you are '
                f"acting as <b>{escape(user)}</b>."
                f'<form method="post" action="/admin/stop-impersonating">'
                f'<input type="hidden" name="csrf_token" value="{token}">'
                f'<button class="link">Stop impersonating</button></form></div>'
            )
    else:
        nav = '<nav><a href="/login">Log in</a></nav>'
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · satchel demo</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body class="theme-{escape(theme)}"><header><a class="brand" href="/">satchel demo</a>{nav}</header>
<main>{acting}{_flashes(session)}<div class="card">{body}</div></main></body></html>"""
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


def check_password(request: Request, username: str, password: str) -> bool:
    """The demo's users and their passwords: this app's own copy of :data:`USERS` (a
    password change lasts as long as the process)."""
    expected = _passwords(request).get(username)
    # digests of equal length, compared whether or not the user exists: the time taken
    # tells neither the password's length nor whether the user exists
    given = hashlib.sha256(password.encode()).digest()
    wanted = hashlib.sha256((expected or "").encode()).digest()
    return hmac.compare_digest(given, wanted) and expected is not None


def _passwords(request: Request) -> dict[str, str]:
    passwords: dict[str, str] = request.app.state.passwords
    return passwords


async def login_submit(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if not check_password(request, username, password):
        return _login_form(request, "Unknown user or wrong password.", status=401)
    login(_session(request), username, methods=["pwd"], level="aal1")
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
<p><a href="/settings">Change the theme</a> · <a href="/sessions">Your sessions</a>
 · <a href="/security">Security</a></p>{_admin_html(request, session)}"""
    return _page(request, "Profile", body)


def _admin_html(request: Request, session: Session) -> str:
    """An administrator's "log in as" form (admin only, not while impersonating)."""
    if session.user_id not in ADMINS or session.impersonator is not None:
        return ""
    others = [name for name in _passwords(request) if name not in ADMINS]
    options = "".join(f'<option value="{escape(n)}">{escape(n)}</option>' for n in others)
    return f"""<h2>Administration</h2>
<form method="post" action="/admin/impersonate">{_hidden(request)}
<label for="impersonate">Act as</label><select id="impersonate" name="username">{options}
</select><button type="submit">Impersonate</button></form>"""


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
        if info.impersonator:
            mark += f' <span class="badge acting">{escape(info.impersonator)} acting as you</span>'
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


LOGGED_OUT = {
    "": "You have been logged out.",
    "everywhere": "You have been logged out on every device.",
}


async def logout_submit(request: Request) -> Response:
    logout(_session(request))
    # The note is written by the next request: a session started in this response would
    # set a cookie, and the response's Clear-Site-Data: "cookies" is then left out
    # (Chromium applies it after the response's own Set-Cookie).
    return RedirectResponse("/logged-out", status_code=303)


async def logged_out(request: Request) -> Response:
    """Where a logout lands: the note for the login page, then the login page."""
    message = LOGGED_OUT.get(request.query_params.get("from", ""), LOGGED_OUT[""])
    flash(_session(request), message, "success")  # lands in a new, anonymous session
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
    return RedirectResponse("/logged-out?from=everywhere", status_code=303)


# -- how and when the user proved who they are (docs/security.md, issue 17) ----------------------


def _auth_html(session: Session) -> str:
    methods = ", ".join(session.auth_methods) or "unknown"
    when = session.auth_time
    return (
        f'<dl class="facts"><dt>Authenticated</dt><dd id="auth-time">'
        f"{when_html(when) if when is not None else 'unknown'}</dd>"
        f'<dt>How</dt><dd id="auth-methods">{escape(methods)}</dd>'
        f'<dt>Level</dt><dd id="auth-level">{escape(session.auth_level or "none")}</dd></dl>'
    )


@login_required
async def security_page(request: Request) -> Response:
    session = _session(request)
    changed = ""
    if session.pop("credential_changed", None):  # (one time: the offer after a change)
        changed = f"""<div class="notice" id="password-changed"><p>Your password is changed.
Other devices still signed in with the old one stay signed in until you log them out.</p>
<form method="post" action="/sessions/others">{_hidden(request)}
<button>Log out other devices</button></form></div>"""
    body = f"""<h1>Security</h1>{changed}
<h2>Your latest sign-in</h2>{_auth_html(session)}
<p><a href="/security/sensitive">A sensitive action</a> asks for your password again when
your latest sign-in is more than {int(configured_max_age(session))} seconds old.</p>
<h2>Change your password</h2>
<form method="post" action="/security/password">{_hidden(request)}
<label for="new-password">New password</label>
<input id="new-password" name="password" type="password" autocomplete="new-password"
minlength="8" required><button type="submit">Change password</button></form>"""
    return _page(request, "Security", body)


@require_recent_auth
async def sensitive_page(request: Request) -> Response:
    """Stands for a sensitive action: needs a sign-in at most ``reauth_max_age`` old (the
    ``SATCHEL_REAUTH_MAX_AGE`` setting, 300 s unless set); 403 while impersonating."""
    body = f"""<h1>Sensitive action</h1>
<p id="sensitive-ok">You confirmed it is you recently enough to do this.</p>
{_auth_html(_session(request))}<p><a href="/security">Back to security</a></p>"""
    return _page(request, "Sensitive action", body)


@require_recent_auth
async def password_submit(request: Request) -> Response:
    session = _session(request)
    password = str((await request.form()).get("password", ""))
    if len(password) < 8:
        body = "<p class='error'>At least 8 characters.</p>"
        return _page(request, "Security", body, status=400)
    _passwords(request)[session.user_id or ""] = password
    session["credential_changed"] = "1"
    return RedirectResponse("/security", status_code=303)


def _reauth_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    target = escape(safe_next(request.query_params.get("next"), "/security"), quote=True)
    user = escape(_session(request).user_id or "")
    body = f"""<h1>Confirm it is you</h1>{message}
<p>Enter the password of <b>{user}</b> to continue.</p>
<form method="post" action="/reauth?next={target}">{_hidden(request)}
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Confirm</button></form>"""
    return _page(request, "Confirm it is you", body, status=status)


def _reauth_refused(request: Request) -> Response | None:
    session = _session(request)
    if not session.user_id:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    if session.impersonator is not None:  # the user's password is not the admin's to use
        body = "<h1>Not while acting as another user</h1><p>Stop impersonating first.</p>"
        return _page(request, "Not allowed", body, status=403)
    return None


async def reauth_page(request: Request) -> Response:
    return _reauth_refused(request) or _reauth_form(request)


async def reauth_submit(request: Request) -> Response:
    refused = _reauth_refused(request)
    if refused is not None:
        return refused
    session = _session(request)
    password = str((await request.form()).get("password", ""))
    if not check_password(request, session.user_id or "", password):
        return _reauth_form(request, "Wrong password.", status=401)
    reauthenticate(session, methods=["pwd"], level="aal1")  # a new session ID, data kept
    return RedirectResponse(safe_next(request.query_params.get("next"), "/security"), 303)


# -- impersonation ("log in as"): admin only --------------------------------------------------


def _forbidden() -> Response:
    return PlainTextResponse("Forbidden.\n", status_code=403)


@require_recent_auth  # acting as someone else is a sensitive action of its own
async def impersonate_submit(request: Request) -> Response:
    session = _session(request)
    if session.user_id not in ADMINS or session.impersonator is not None:
        return _forbidden()
    target = str((await request.form()).get("username", ""))
    if target not in _passwords(request) or target == session.user_id:
        return _page(request, "Impersonate", "<p class='error'>No such user.</p>", status=404)
    impersonate(session, target)
    flash(session, f"You are acting as {target}. Stop impersonating to return.", "info")
    return RedirectResponse("/profile", status_code=303)


async def impersonate_page(request: Request) -> Response:
    """Where a re-authentication for ``POST /admin/impersonate`` returns: the form."""
    return RedirectResponse("/profile", status_code=303)


async def stop_impersonating_submit(request: Request) -> Response:
    session = _session(request)
    if session.impersonator not in ADMINS:
        return _forbidden()
    admin = stop_impersonating(session)
    flash(session, f"Back to your own session, {admin}.", "success")
    return RedirectResponse("/profile", status_code=303)


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
            and not scope["path"].startswith(("/static/", "/api/", "/logged-out"))
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
    session = _session(request)
    me: dict[str, Any] = {
        "username": user,
        "device_bound": device_bound(session),
        "auth_time": session.auth_time,
        "auth_level": session.auth_level,
        "impersonator": session.impersonator,
    }
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
        and check_password(request, username, password)
    ):
        return JSONResponse({"error": "unknown user or wrong password"}, status_code=401)
    login(session, username, methods=["pwd"], level="aal1")
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
            Route("/logged-out", logged_out, methods=["GET"]),
            Route("/security", security_page, methods=["GET"]),
            Route("/security/sensitive", sensitive_page, methods=["GET"]),
            Route("/security/password", password_submit, methods=["POST"]),
            Route("/reauth", reauth_page, methods=["GET"]),
            Route("/reauth", reauth_submit, methods=["POST"]),
            Route("/admin/impersonate", impersonate_submit, methods=["POST"]),
            Route("/admin/impersonate", impersonate_page, methods=["GET"]),
            Route("/admin/stop-impersonating", stop_impersonating_submit, methods=["POST"]),
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
    app.state.passwords = dict(USERS)
    app.add_middleware(EndedSessionNotice)
    options.setdefault("on_event", log_event)
    if not options.get("token_paths") and not str(store).startswith("cookie:"):
        options["token_paths"] = ["/api/"]  # bearer tokens for API clients (server stores)
    opts: SessionOptions = options  # type: ignore[assignment]
    return SessionMiddleware(app, store=store, **opts)
