"""satchel behind FastAPI: request.session as usual, typed dependencies for the user.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.fastapi_app:app
Then: GET /csrf for a token; POST /login/alice; GET /me; POST /notes/<key>?value=...;
POST /logout. Every POST needs the token in the X-CSRF-Token header.
"""

import os

from fastapi import FastAPI, Request

from satchel import login, logout
from satchel.integrations.fastapi import CurrentSession, CurrentUser, csrf_token
from satchel.integrations.starlette import SessionMiddleware

app = FastAPI()
app.add_middleware(
    SessionMiddleware,
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)


@app.get("/csrf")
def csrf(request: Request) -> dict[str, str]:
    return {"csrf_token": csrf_token(request)}


@app.post("/login/{username}")
def log_in(username: str, session: CurrentSession) -> dict[str, str]:
    login(session, username)  # new session ID, CSRF secret rotated
    return {"user": username}


@app.post("/notes/{key}")
def note(key: str, value: str, user: CurrentUser, session: CurrentSession) -> dict[str, str]:
    session[key] = value
    return {"user": user, key: value}


@app.get("/me")
def me(user: CurrentUser, session: CurrentSession) -> dict[str, object]:
    return {"user": user, "data": dict(session)}


@app.post("/logout")
def log_out(session: CurrentSession) -> dict[str, bool]:
    logout(session)
    return {"ok": True}
