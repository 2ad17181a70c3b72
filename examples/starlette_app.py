"""satchel behind Starlette: `request.session` as usual, stored server-side; log in and out.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.starlette_app:app
Then: GET /csrf for a token; POST /login (username, csrf_token); GET / counts your visits;
GET /devices lists your sessions; POST /logout (csrf_token). Every POST needs the token
(form field or X-CSRF-Token header).
"""

# --8<-- [start:setup]
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session, arevoke, asessions_of, csrf_token, login, logout
from satchel.asgi import SessionMiddleware


def session_of(request: Request) -> Session:
    session = request.session  # satchel's Session (Starlette types it as a dict)
    assert isinstance(session, Session)
    return session


# --8<-- [end:setup]


async def visits(request: Request) -> JSONResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"user": session_of(request).user_id, "visits": request.session["visits"]})


# --8<-- [start:csrf]
async def csrf(request: Request) -> JSONResponse:
    return JSONResponse({"csrf_token": csrf_token(request)})


# --8<-- [end:csrf]


# --8<-- [start:login]
async def log_in(request: Request) -> JSONResponse:
    username = str((await request.form()).get("username", ""))
    if username not in ("alice", "bob"):  # check a password against your users
        return JSONResponse({"error": "unknown user"}, status_code=401)
    login(session_of(request), username)  # new session ID, CSRF secret rotated
    return JSONResponse({"user": username})


async def log_out(request: Request) -> JSONResponse:
    logout(session_of(request))  # record deleted, cookie expired
    return JSONResponse({"user": None})


# --8<-- [end:login]


# --8<-- [start:devices]
async def devices(request: Request) -> JSONResponse:
    session = session_of(request)
    if session.user_id is None:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    return JSONResponse(  # "your devices": this one first, marked current
        [
            {
                "handle": s.handle,
                "user_agent": s.user_agent,
                "ip": s.client_ip,
                "current": s.current,
            }
            for s in await asessions_of(session)
        ]
    )


async def revoke_device(request: Request) -> JSONResponse:
    session = session_of(request)
    if session.user_id is None:
        return JSONResponse({"error": "not logged in"}, status_code=401)
    return JSONResponse({"revoked": await arevoke(session, request.path_params["handle"])})


# --8<-- [end:devices]


# --8<-- [start:app]
routes = [
    Route("/", visits),
    Route("/csrf", csrf),
    Route("/login", log_in, methods=["POST"]),
    Route("/logout", log_out, methods=["POST"]),
    Route("/devices", devices),
    Route("/devices/{handle}/revoke", revoke_device, methods=["POST"]),
]
app = SessionMiddleware(
    Starlette(routes=routes),
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
)
# --8<-- [end:app]
