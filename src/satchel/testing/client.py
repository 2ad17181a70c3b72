"""Open and edit a session from a test, like Flask's ``session_transaction``::

    with session_transaction(app, client) as session:
        session["cart"] = ["apple"]
        login(session, "alice")
    response = client.get("/cart")       # the client now carries the edited session

``app`` is satchel's ASGI or WSGI middleware (anything with ``.engine`` and ``.store``);
``client`` is an httpx client or Starlette's TestClient (anything with a ``.cookies`` jar).
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

from ..engine import RequestInfo, drive
from ..session import Session


@contextmanager
def session_transaction(app: Any, client: Any) -> Iterator[Session]:
    engine, store = app.engine, app.store
    name = engine.cookie.name
    current = client.cookies.get(name)
    session_id, resign = engine.session_id_from_cookie(f"{name}={current}" if current else None)
    session = drive(engine.open(Session(), session_id, resign), store)
    yield session
    drive(engine.commit(session, RequestInfo(user_agent="satchel-test")), store)
    cookie = session._outgoing_cookie
    session._outgoing_cookie = None
    if cookie is not None:
        value = cookie.split(";", 1)[0].split("=", 1)[1]
        if name in client.cookies:
            client.cookies.delete(name)
        if value:
            client.cookies.set(name, value)
