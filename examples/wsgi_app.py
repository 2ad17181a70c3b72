"""satchel around a plain WSGI app: the session is in environ["satchel.session"].

Run: SECRET_KEYS=$(satchel keygen) gunicorn examples.wsgi_app:app
Then: GET /csrf for a token; POST /login (username, csrf_token); GET / counts your visits;
POST /logout (csrf_token). Every POST needs the token (form field or X-CSRF-Token header).
"""

import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from satchel import csrf_token, login, logout
from satchel.wsgi import SessionMiddleware


def reply(start_response: Any, body: object, status: str = "200 OK") -> Iterable[bytes]:
    start_response(status, [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = environ["satchel.session"]  # loaded from the store on first access
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/csrf":
        return reply(start_response, {"csrf_token": csrf_token(environ)})
    if (path, method) == ("/login", "POST"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(length).decode())
        username = form.get("username", [""])[0]
        if username not in ("alice", "bob"):  # check a password against your users
            return reply(start_response, {"error": "unknown user"}, "401 Unauthorized")
        login(session, username)  # new session ID, CSRF secret rotated
        return reply(start_response, {"user": username})
    if (path, method) == ("/logout", "POST"):
        logout(session)  # record deleted, cookie expired
        return reply(start_response, {"user": None})
    session["visits"] = session.get("visits", 0) + 1
    return reply(start_response, {"user": session.user_id, "visits": session["visits"]})


app = SessionMiddleware(
    hello,
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)
