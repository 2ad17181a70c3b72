"""satchel around a plain WSGI app: the session is in environ["satchel.session"].

Run: SECRET_KEYS=$(satchel keygen) gunicorn examples.wsgi_app:app
Then: GET /csrf for a token; POST /login (username, csrf_token); GET / counts your visits;
GET /devices lists your sessions; POST /devices/revoke (handle, csrf_token);
POST /logout (csrf_token). Every POST needs the token (form field or X-CSRF-Token header).
"""

# --8<-- [start:setup]
import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from satchel import csrf_token, login, logout, revoke, sessions_of
from satchel.wsgi import SessionMiddleware


def reply(start_response: Any, body: object, status: str = "200 OK") -> Iterable[bytes]:
    start_response(status, [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def form(environ: dict[str, Any]) -> dict[str, str]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(length).decode()).items()}


# --8<-- [end:setup]


# --8<-- [start:app]
def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = environ["satchel.session"]  # loaded from the store on first access
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/csrf":
        return reply(start_response, {"csrf_token": csrf_token(environ)})
    if (path, method) == ("/login", "POST"):
        username = form(environ).get("username", "")
        if username not in ("alice", "bob"):  # check a password against your users
            return reply(start_response, {"error": "unknown user"}, "401 Unauthorized")
        login(session, username)  # new session ID, CSRF secret rotated
        return reply(start_response, {"user": username})
    if (path, method) == ("/logout", "POST"):
        logout(session)  # record deleted, cookie expired
        return reply(start_response, {"user": None})
    if path.startswith("/devices"):
        return devices(environ, start_response, session)
    session["visits"] = session.get("visits", 0) + 1
    return reply(start_response, {"user": session.user_id, "visits": session["visits"]})


# --8<-- [end:app]


# --8<-- [start:devices]
def devices(environ: dict[str, Any], start_response: Any, session: Any) -> Iterable[bytes]:
    if session.user_id is None:
        return reply(start_response, {"error": "not logged in"}, "401 Unauthorized")
    if environ["REQUEST_METHOD"] == "POST":  # /devices/revoke, handle=...
        return reply(start_response, {"revoked": revoke(session, form(environ)["handle"])})
    return reply(  # "your devices": this one first, marked current; handles are public
        start_response,
        [
            {
                "handle": s.handle,
                "user_agent": s.user_agent,
                "ip": s.client_ip,
                "current": s.current,
            }
            for s in sessions_of(session)
        ],
    )


# --8<-- [end:devices]


# --8<-- [start:middleware]


app = SessionMiddleware(
    hello,
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)
# --8<-- [end:middleware]
