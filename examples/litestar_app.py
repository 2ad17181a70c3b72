"""satchel behind Litestar: request.session as usual, stored server-side; a `session`
dependency, and a `user_id` dependency that answers 401 to anonymous requests.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.litestar_app:app
Then: GET /csrf for a token; POST /login (form: username, csrf_token); GET /me;
POST /notes/<key>?value=...; POST /logout. Every POST needs the token (form field or
X-CSRF-Token header).
"""

import os
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, FromQuery, URLEncodedBody

from satchel.integrations.litestar import (
    CurrentSession,
    CurrentUser,
    SatchelPlugin,
    SatchelSessionConfig,
    csrf_token,
    login_user,
    logout_user,
)


@get("/csrf")
async def csrf(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"csrf_token": csrf_token(request)}


@post("/login")
async def log_in(
    request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]
) -> dict[str, str]:
    username = data.get("username", "")
    if username not in ("alice", "bob"):  # check a password against your users
        raise NotAuthorizedException("unknown user")
    login_user(request, username)  # new session ID, CSRF secret rotated
    return {"user": username}


@post("/notes/{key:str}")
async def note(
    key: FromPath[str], value: FromQuery[str], user_id: CurrentUser, session: CurrentSession
) -> dict[str, str]:
    session[key] = value  # only this key is written: parallel requests keep theirs
    return {"user": user_id, key: value}


@get("/me")
async def me(user_id: CurrentUser, session: CurrentSession) -> dict[str, object]:
    return {"user": user_id, "data": dict(session)}  # (CurrentUser: a 401 if anonymous)


@post("/logout")
async def log_out(request: Request[Any, Any, Any]) -> dict[str, None]:
    logout_user(request)  # record deleted, cookie expired
    return {"user": None}


session_config = SatchelSessionConfig(
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
)
app = Litestar(
    route_handlers=[csrf, log_in, note, me, log_out],
    plugins=[SatchelPlugin(session_config)],
)
