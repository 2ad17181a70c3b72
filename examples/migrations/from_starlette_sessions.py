"""Moving a Starlette app from Starlette's own SessionMiddleware (the session in a signed
cookie) to satchel: before and after.

satchel's SessionMiddleware takes Starlette's arguments unchanged (``secret_key``,
``max_age``, ``https_only``, ...), so the switch is one import and a store; logging in and out
become satchel's calls, and posts carry a CSRF token. satchel does not read Starlette's
cookie, so without more a user logs in once more; ``CarryOverLogins`` below reads it (with
the same secret key, as Starlette did) for as long as old cookies live, so users stay
logged in. tests/test_migrations.py runs both apps.
"""

from __future__ import annotations

import json
from base64 import b64decode

from itsdangerous import BadData, TimestampSigner
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from satchel import Session, csrf_token, login, logout


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
def before(secret_key: str) -> Starlette:
    from starlette.middleware.sessions import SessionMiddleware

    async def log_in(request: Request) -> JSONResponse:
        request.session.clear()
        request.session["user"] = (await request.form())["username"]
        return JSONResponse({"ok": True})

    async def log_out(request: Request) -> JSONResponse:
        request.session.clear()  # the browser's copy is emptied; a copy taken earlier still works
        return JSONResponse({"ok": True})

    routes = [
        Route("/login", log_in, methods=["POST"]),
        Route("/me", me),
        Route("/theme", theme, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
    session = Middleware(SessionMiddleware, secret_key=secret_key, max_age=14 * 24 * 3600)
    return Starlette(routes=routes, middleware=[session])


# --8<-- [end:before]


# --8<-- [start:after]
def after(secret_key: str, store: str, carry_over: bool = True) -> Starlette:
    from satchel.integrations.starlette import SessionMiddleware

    async def csrf(request: Request) -> JSONResponse:  # new: posts send this token back
        return JSONResponse({"csrf_token": csrf_token(request)})

    async def log_in(request: Request) -> JSONResponse:
        user = str((await request.form())["username"])
        login(session_of(request), user)  # a new session ID, the user bound
        request.session["user"] = user  # kept so the unchanged views still find it
        return JSONResponse({"ok": True})

    async def log_out(request: Request) -> JSONResponse:
        logout(session_of(request))  # every copy of the cookie stops working
        return JSONResponse({"ok": True})

    routes = [
        Route("/csrf", csrf),
        Route("/login", log_in, methods=["POST"]),
        Route("/me", me),
        Route("/theme", theme, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
    middleware = [
        # Starlette's arguments, unchanged; the cookie is now named "satchel"
        Middleware(SessionMiddleware, store=store, secret_key=secret_key, max_age=14 * 24 * 3600)
    ]
    if carry_over:  # optional: keeps users logged in; remove once old cookies have expired
        middleware.append(Middleware(CarryOverLogins, secret_key=secret_key))
    return Starlette(routes=routes, middleware=middleware)


# --8<-- [end:after]


# --8<-- [start:carry_over]
class CarryOverLogins:
    """While old cookies live (Starlette's ``max_age``): a request that still carries
    Starlette's signed "session" cookie logs its user in to satchel (a new satchel session;
    nothing else of the old one is kept) and has the old cookie deleted, so it is read once.
    Goes inside satchel's middleware."""

    OLD_COOKIE = "session"

    def __init__(self, app: ASGIApp, secret_key: str, max_age: int = 14 * 24 * 3600) -> None:
        self.app, self.signer, self.max_age = app, TimestampSigner(secret_key), max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        old = (
            HTTPConnection(scope).cookies.get(self.OLD_COOKIE) if scope["type"] == "http" else None
        )
        if old is None:
            await self.app(scope, receive, send)
            return
        session: Session = scope["session"]
        if session.user_id is None and isinstance(user := self.old_user(old), str):
            login(session, user)
            session["user"] = user

        async def send_deleting_old_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                expired = f"{self.OLD_COOKIE}=; path=/; Max-Age=0; httponly; samesite=lax"
                MutableHeaders(scope=message).append("set-cookie", expired)
            await send(message)

        await self.app(scope, receive, send_deleting_old_cookie)

    def old_user(self, cookie: str) -> object:
        try:  # as Starlette reads it: signed and timestamped base64 JSON
            data = json.loads(b64decode(self.signer.unsign(cookie, max_age=self.max_age)))
        except (BadData, ValueError):  # forged, tampered with, too old: ignored
            return None
        return data.get("user") if isinstance(data, dict) else None


# --8<-- [end:carry_over]
