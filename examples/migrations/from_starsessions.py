"""Moving a Starlette app from starsessions (sessions in Redis) to satchel: before and after.

The views keep ``request.session``; the autoload middleware and ``load_session`` go (satchel
opens the session before the app runs), ``regenerate_session_id`` at login becomes
``login()``, and posts carry a CSRF token. starsessions' records stay in Redis under its
own keys: satchel cannot read them, so users log in once more after the switch
(docs/migrating/starsessions.md says why). tests/test_migrations.py runs both apps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from satchel.stores import Store


def session_of(request: Request) -> Session:
    session = request.session  # satchel's Session (Starlette types it as a dict)
    assert isinstance(session, Session)
    return session


async def me(request: Request) -> JSONResponse:  # unchanged
    return JSONResponse(
        {"user": request.session.get("user"), "theme": request.session.get("theme")}
    )


async def theme(request: Request) -> JSONResponse:  # unchanged
    request.session["theme"] = (await request.form())["theme"]
    return JSONResponse({"ok": True})


# --8<-- [start:before]
def before(redis: Redis) -> Starlette:
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware, regenerate_session_id
    from starsessions.stores.redis import RedisStore

    async def log_in(request: Request) -> JSONResponse:
        regenerate_session_id(request)
        request.session["user"] = (await request.form())["username"]
        return JSONResponse({"ok": True})

    async def log_out(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({"ok": True})

    routes = [
        Route("/login", log_in, methods=["POST"]),
        Route("/me", me),
        Route("/theme", theme, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                store=RedisStore(connection=redis, prefix="starsessions."),
                lifetime=3600 * 8,  # seconds; 0 would be a browser-session cookie
                rolling=True,  # each request extends it
                cookie_name="session",
                cookie_https_only=True,
            ),
            Middleware(SessionAutoloadMiddleware),
        ],
    )


# --8<-- [end:before]


# --8<-- [start:after]
def after(store: str | Store, secret_key: str) -> Starlette:
    from satchel import csrf_token, login, logout
    from satchel.integrations.starlette import SessionMiddleware

    async def csrf(request: Request) -> JSONResponse:  # new: posts send this token back
        return JSONResponse({"csrf_token": csrf_token(request)})

    async def log_in(request: Request) -> JSONResponse:
        user = str((await request.form())["username"])
        login(session_of(request), user)  # a new session ID, the user bound
        request.session["user"] = user  # kept so the unchanged views still find it
        return JSONResponse({"ok": True})

    async def log_out(request: Request) -> JSONResponse:
        logout(session_of(request))  # the record deleted
        return JSONResponse({"ok": True})

    routes = [
        Route("/csrf", csrf),
        Route("/login", log_in, methods=["POST"]),
        Route("/me", me),
        Route("/theme", theme, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                store=store,  # a URL ("redis://cache:6379/0") or a store object
                secret_keys=[secret_key],  # signs the cookie; starsessions' was unsigned
                idle_timeout=3600 * 8,  # lifetime + rolling: ends 8 h after the last request
                cookie_persistent=True,  # lifetime > 0: the cookie outlives the browser
                cookie_name="session",
            ),
        ],
    )


# --8<-- [end:after]
