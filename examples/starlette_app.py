"""satchel behind Starlette: `request.session` as usual, stored server-side."""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel.asgi import SessionMiddleware


async def visits(request: Request) -> JSONResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse({"visits": request.session["visits"]})


app = SessionMiddleware(
    Starlette(routes=[Route("/", visits)]),
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
)
