"""A WSGI server whose process kills itself (SIGKILL) at one store call: a worker killed in
the middle of a login, for tests/test_login_under_faults.py.

    python -m tests.killable_app STORE_URL PORT_FILE AT MODE

It serves the same routes as the tests' app (/cart, /login?user=..., /sudo, /whoami) on a
free loopback port, written to PORT_FILE once it listens. Store calls are counted from the
first request on; call number AT kills the process just before it runs (MODE "before") or
just after it returned (MODE "after").
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from satchel.auth import login, regenerate_on_privilege_change
from satchel.record import Change, Meta, Record
from satchel.stores.base import Store
from satchel.stores.registry import store_from_url
from satchel.wsgi import SessionMiddleware

KEY = "test-key-0123456789-0123456789-0123456789"


class KillingStore(Store):
    """Delegates to a real store; SIGKILLs its own process at call ``at``."""

    def __init__(self, inner: Store, at: int, mode: str) -> None:
        self.inner, self.at, self.mode, self.calls = inner, at, mode, 0

    def _call(self, fn: Callable[[], Any]) -> Any:
        self.calls += 1
        if self.calls == self.at and self.mode == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = fn()
        if self.calls == self.at and self.mode == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        return self._call(lambda: self.inner.load(key, now, refresh_after))  # type: ignore[no-any-return]

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return self._call(lambda: self.inner.touch(key, last_seen, now))  # type: ignore[no-any-return]

    def create(self, key: str, record: Record) -> None:
        self._call(lambda: self.inner.create(key, record))

    def update(self, key: str, change: Change, now: float) -> int | None:
        return self._call(lambda: self.inner.update(key, change, now))  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._call(lambda: self.inner.delete(key))  # type: ignore[no-any-return]

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.inner.purge_expired(now, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return self._call(lambda: self.inner.index_add(user_id, key, deadline))  # type: ignore[no-any-return]

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self._call(lambda: self.inner.list_user(user_id, now))  # type: ignore[no-any-return]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["satchel.session"]
    path = environ["PATH_INFO"]
    user = parse_qs(environ.get("QUERY_STRING", "")).get("user", ["alice"])[0]
    if path == "/cart":
        session["cart"] = ["apple", "pear"]
    elif path == "/login":
        login(session, user)
    elif path == "/sudo":
        regenerate_on_privilege_change(session)
    body = json.dumps({"user": session.user_id, "cart": session.get("cart")}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    url, port_file, at, mode = sys.argv[1:5]
    store = KillingStore(store_from_url(url), int(at), mode)
    wrapped = SessionMiddleware(
        app, store=store, secret_keys=[KEY], csrf=False, max_sessions_per_user=1
    )
    server = make_server("127.0.0.1", 0, wrapped, handler_class=Quiet)
    ready = Path(port_file + ".tmp")
    ready.write_text(str(server.server_port))
    ready.replace(port_file)  # whole, or not there
    server.serve_forever()


if __name__ == "__main__":
    main()
