"""Bearer session tokens for API and mobile clients, beside browser cookies.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.api_tokens:app
Then: POST /api/login with JSON {"username": "ann", "password": "wonderland"}; send the
X-Session-Token it answers as ``Authorization: Bearer <token>`` to GET /api/me, and to
POST /api/logout to end the session (the token is refused afterwards).
"""

from __future__ import annotations

# --8<-- [start:app]
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session, login, logout, use_bearer_token
from satchel.asgi import SessionMiddleware


def session_of(request: Request) -> Session:
    session = request.session  # satchel's Session (Starlette types it as a dict)
    assert isinstance(session, Session)
    return session


async def api_login(request: Request) -> JSONResponse:
    session = session_of(request)
    use_bearer_token(session)  # the token goes in X-Session-Token, not a cookie
    body = await request.json()
    if body.get("password") != "wonderland":  # check it against your users
        return JSONResponse({"error": "wrong password"}, status_code=401)
    login(session, body["username"])
    return JSONResponse({"username": body["username"]})


async def api_me(request: Request) -> JSONResponse:  # Authorization: Bearer <token>
    user = session_of(request).user_id
    if user is None:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    return JSONResponse({"username": user})


async def api_logout(request: Request) -> JSONResponse:  # the token is dead afterwards
    logout(session_of(request))
    return JSONResponse({"username": None})


routes = [
    Route("/api/login", api_login, methods=["POST"]),
    Route("/api/me", api_me),
    Route("/api/logout", api_logout, methods=["POST"]),
]
app = SessionMiddleware(
    Starlette(routes=routes),
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
    token_paths=["/api/"],  # where bearer tokens are accepted; cookies everywhere else
)
# --8<-- [end:app]
