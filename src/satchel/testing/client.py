"""Open and edit a session from a test, like Flask's ``session_transaction``::

    with session_transaction(app, client) as session:
        session["cart"] = ["apple"]
        login(session, "alice")
    response = client.get("/cart")       # the client now carries the edited session

``app`` is satchel's ASGI or WSGI middleware, or an app that holds it: a Starlette or
FastAPI app given it with ``app.add_middleware(SessionMiddleware, ...)``, or any wrapper
whose ``.app`` chain leads to it. The session is opened and saved through that middleware's
own store object, so ``memory://`` works. ``client`` is an httpx client or Starlette's
TestClient (anything with a ``.cookies`` jar).
Flask's own ``client.session_transaction()`` and Django's ``client.session`` work on
satchel sessions as they are.

Test clients and Secure cookies: satchel's cookie is Secure by default, and a Secure cookie
is not sent back over plain http. Give the client an ``https://`` base URL
(``TestClient(app, base_url="https://testserver")``), or build the app under test with
``cookie_secure=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..backend import DeviceInfo
from ..locate import find_middleware
from ..ops import drive
from ..session import Session


@contextmanager
def session_transaction(app: Any, client: Any) -> Iterator[Session]:
    middleware = find_middleware(app)
    backend, name = middleware.backend, middleware.policy.cookie.name
    current = client.cookies.get(name)
    ticket, refresh = backend.read([current] if current else [])
    session = drive(backend.open(Session(), ticket, refresh), backend.store)
    yield session
    action = drive(backend.commit(session, DeviceInfo(user_agent="satchel-test")), backend.store)
    if action is not None and not action.withdrawn:
        if name in client.cookies:
            client.cookies.delete(name)
        if action.token:
            client.cookies.set(name, action.token)
