"""satchel around a plain WSGI app: the session is in environ["satchel.session"]."""

import os
from collections.abc import Iterable
from typing import Any

from satchel.wsgi import SessionMiddleware


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = environ["satchel.session"]  # loaded from the store on first access
    session["visits"] = session.get("visits", 0) + 1
    start_response("200 OK", [("content-type", "text/plain")])
    return [f"visit number {session['visits']}\n".encode()]


app = SessionMiddleware(
    hello,
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)
