"""satchel behind aiohttp: `await get_session(request)` as with aiohttp-session, stored
server-side per key; log in and out, CSRF checked before every handler.

Run: SECRET_KEYS=$(satchel keygen) python -m aiohttp.web examples.aiohttp_app:init
Then: GET /csrf for a token; POST /login (username, csrf_token); GET / counts your visits;
POST /notes/{key} (value, csrf_token); GET /me; POST /logout (csrf_token).
"""

import os

from aiohttp import web

from satchel.integrations.aiohttp import (
    csrf_token,
    get_session,
    login,
    login_required,
    logout,
    sessions_of,
    setup,
)

routes = web.RouteTableDef()


@routes.get("/")
async def visits(request: web.Request) -> web.Response:
    session = await get_session(request)  # loaded before the handler ran
    session["visits"] = session.get("visits", 0) + 1
    return web.json_response({"user": session.user_id, "visits": session["visits"]})


@routes.get("/csrf")
async def csrf(request: web.Request) -> web.Response:
    return web.json_response({"csrf_token": csrf_token(request)})


@routes.post("/login")
async def log_in(request: web.Request) -> web.Response:
    username = str((await request.post()).get("username", ""))
    if username not in ("alice", "bob"):  # check a password against your users
        return web.json_response({"error": "unknown user"}, status=401)
    await login(request, username)  # new session ID, CSRF secret rotated
    return web.json_response({"user": username})


@routes.post("/notes/{key}")
@login_required
async def note(request: web.Request) -> web.Response:
    session = await get_session(request)
    session[request.match_info["key"]] = str((await request.post())["value"])
    return web.json_response({"ok": "saved"})


@routes.get("/me")
@login_required
async def me(request: web.Request) -> web.Response:
    session = await get_session(request)
    devices = await sessions_of(request)  # this user's sessions, by public handle
    return web.json_response(
        {"user": session.user_id, "data": dict(session), "devices": len(devices)}
    )


@routes.post("/logout")
async def log_out(request: web.Request) -> web.Response:
    await logout(request)  # record deleted, cookie expired
    return web.json_response({"user": None})


def init(argv: list[str] | None = None) -> web.Application:
    app = web.Application()
    app.add_routes(routes)
    setup(
        app,
        store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
        secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
    )
    return app
