"""satchel behind Starlette: `request.session` as usual, stored server-side; log in and out.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.starlette_app:app
Then: GET /csrf for a token; POST /login (username, csrf_token); GET / counts your visits;
POST /logout (csrf_token). Every POST needs the token (form field or X-CSRF-Token header).
"""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session, csrf_token, login, logout
from satchel.asgi import SessionMiddleware


def session_of(request: Request) -> Session:
    session = request.session  # satchel's Session (Starlette types it as a dict)
    assert isinstance(session, Session)
    return session


async def visits(request: Request) -> JSONResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"user": session_of(request).user_id, "visits": request.session["visits"]})


async def csrf(request: Request) -> JSONResponse:
    return JSONResponse({"csrf_token": csrf_token(request)})


async def log_in(request: Request) -> JSONResponse:
    username = str((await request.form()).get("username", ""))
    if username not in ("alice", "bob"):  # check a password against your users
        return JSONResponse({"error": "unknown user"}, status_code=401)
    login(session_of(request), username)  # new session ID, CSRF secret rotated
    return JSONResponse({"user": username})


async def log_out(request: Request) -> JSONResponse:
    logout(session_of(request))  # record deleted, cookie expired
    return JSONResponse({"user": None})


routes = [
    Route("/", visits),
    Route("/csrf", csrf),
    Route("/login", log_in, methods=["POST"]),
    Route("/logout", log_out, methods=["POST"]),
]
app = SessionMiddleware(
    Starlette(routes=routes),
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
)
