"""Impersonation ("log in as", issue 17): an administrator acts as another user. The session
records who is impersonating (``session.impersonator``, events, the user's session list);
it cannot pass ``require_recent_auth`` as that user (403, unless the guard allows it);
``stop_impersonating`` returns to the administrator without a new login, with the
administrator's own authentication facts and no later deadline; each switch is a new
session ID and empty data. The same on ASGI (Starlette), FastAPI, WSGI and Flask, and on
every store (Django: tests/test_integration_django.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import asgi, wsgi
from satchel.errors import SessionStateError
from satchel.events import SessionEvent
from satchel.guard import require_recent_auth, require_recent_auth_wsgi
from satchel.integrations.fastapi import CurrentSession
from satchel.session import Session
from satchel.testing import FakeClock

from .helpers import KEY, set_cookie_value
from .services import store_url

HTTPS = "https://127.0.0.1"
JSON = {"accept": "application/json"}
START = 1_800_000_000.0


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


def _me(session: Session) -> dict[str, Any]:
    return {
        "user": session.user_id,
        "impersonator": session.impersonator,
        "auth_time": session.auth_time,
        "auth_level": session.auth_level,
        "theme": session.get("theme"),
        "deadline": None if session.meta is None else session.meta.absolute_deadline,
        "sessions": [[i.user_id, i.impersonator, i.current] for i in satchel.sessions_of(session)]
        if session.user_id and session.meta is not None
        else [],
    }


def _act(session: Session, path: str, query: dict[str, str]) -> str:
    """The routes every app shares: what each does to the session."""
    if path == "/login":
        satchel.login(session, query["user"], methods=["pwd"], level="aal2")
    elif path == "/theme":
        session["theme"] = "dark"
    elif path == "/impersonate":
        satchel.impersonate(session, query["user"])
    elif path == "/stop":
        return satchel.stop_impersonating(session)
    return "ok"


class _Client:
    def __init__(self, get: Callable[[str, dict[str, str]], Any], cookie: Callable[[], str]):
        self._get, self.cookie = get, cookie

    def get(self, path: str, **headers: str) -> tuple[int, str]:
        response = self._get(path, headers)
        text = response.text if hasattr(response, "text") else response.get_data(as_text=True)
        return response.status_code, text

    def me(self) -> dict[str, Any]:
        status, text = self.get("/me")
        assert status == 200, text
        me: dict[str, Any] = json.loads(text)
        return me


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _starlette(store: str, clock: FakeClock, events: list[SessionEvent], **options: Any) -> Any:
    async def act(request: Request) -> Response:
        return PlainTextResponse(_act(_s(request.session), request.url.path, _query(request)))

    async def me(request: Request) -> Response:
        return JSONResponse(_me(_s(request.session)))

    async def others(request: Request) -> Response:
        return PlainTextResponse(str(satchel.logout_other_devices(_s(request.session))))

    @require_recent_auth(max_age=300)
    async def sensitive(request: Request) -> Response:
        return PlainTextResponse("done")

    @require_recent_auth(max_age=300, allow_impersonation=True)
    async def support(request: Request) -> Response:
        return PlainTextResponse("done")

    routes = [Route(p, act) for p in ("/login", "/theme", "/impersonate", "/stop")]
    routes += [
        Route("/me", me),
        Route("/others", others),
        Route("/sensitive", sensitive),
        Route("/api/sensitive", sensitive),
        Route("/support", support),
    ]
    return asgi.SessionMiddleware(
        Starlette(routes=routes),
        store=store,
        secret_keys=[KEY],
        clock=clock,
        on_event=events.append,
        **options,
    )


def _fastapi(store: str, clock: FakeClock, events: list[SessionEvent]) -> Any:
    from satchel.integrations.fastapi import require_recent_auth as recent

    api = FastAPI()
    for path in ("/login", "/theme", "/impersonate", "/stop"):

        async def act(request: Request, session: CurrentSession) -> Response:
            return PlainTextResponse(_act(session, request.url.path, _query(request)))

        api.get(path)(act)

    @api.get("/me")
    async def me(session: CurrentSession) -> dict[str, Any]:
        return _me(session)

    @api.get("/sensitive", dependencies=[recent(max_age=300)])
    @api.get("/api/sensitive", dependencies=[recent(max_age=300)])
    async def sensitive() -> Response:
        return PlainTextResponse("done")

    @api.get("/support", dependencies=[recent(max_age=300, allow_impersonation=True)])
    async def support() -> Response:
        return PlainTextResponse("done")

    return asgi.SessionMiddleware(
        api, store=store, secret_keys=[KEY], clock=clock, on_event=events.append
    )


def _starlette_client(app: Any) -> _Client:
    client = TestClient(app, base_url=HTTPS)
    return _Client(
        lambda path, headers: client.get(path, headers=headers, follow_redirects=False),
        lambda: client.cookies.get("satchel") or "",
    )


def _wsgi(
    store: str, clock: FakeClock, events: list[SessionEvent], **options: Any
) -> tuple[_Client, wsgi.SessionMiddleware]:
    from urllib.parse import parse_qsl

    def base(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        path, query = environ["PATH_INFO"], dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if path == "/me":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(_me(session)).encode()]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [_act(session, path, query).encode()]

    def done(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    sensitive = require_recent_auth_wsgi(done, max_age=300)
    support = require_recent_auth_wsgi(done, max_age=300, allow_impersonation=True)

    def router(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path in ("/sensitive", "/api/sensitive"):
            return sensitive(environ, start_response)
        if path == "/support":
            return support(environ, start_response)
        return base(environ, start_response)

    app = wsgi.SessionMiddleware(
        router, store=store, secret_keys=[KEY], clock=clock, on_event=events.append, **options
    )
    return _werkzeug(app), app


def _werkzeug(app: Any) -> _Client:
    client = WerkzeugClient(app)

    def cookie() -> str:
        found = client.get_cookie("satchel", domain="127.0.0.1")
        return "" if found is None else found.value

    return _Client(lambda path, headers: client.get(path, base_url=HTTPS, headers=headers), cookie)


def _flask(store: str, clock: FakeClock, events: list[SessionEvent]) -> _Client:
    from flask import Flask, request

    from satchel.integrations import flask as satchel_flask

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=store)

    @app.get("/login")
    def login() -> str:
        satchel_flask.login_user(request.args["user"], methods=["pwd"], level="aal2")
        return "ok"

    @app.get("/theme")
    def theme() -> str:
        satchel_flask._session()["theme"] = "dark"
        return "ok"

    @app.get("/impersonate")
    def impersonate() -> str:
        satchel_flask.impersonate_user(request.args["user"])
        return "ok"

    @app.get("/stop")
    def stop() -> str:
        return satchel_flask.stop_impersonating()

    @app.get("/me")
    def me() -> Any:
        return _me(satchel_flask._session())

    @app.get("/sensitive")
    @app.get("/api/sensitive")
    @satchel_flask.require_recent_auth(max_age=300)
    def sensitive() -> str:
        return "done"

    @app.get("/support")
    @satchel_flask.require_recent_auth(max_age=300, allow_impersonation=True)
    def support() -> str:
        return "done"

    satchel_flask.Satchel(app, clock=clock, on_event=events.append)
    return _werkzeug(app)


def _client(path: str, store: str, clock: FakeClock, events: list[SessionEvent]) -> _Client:
    if path == "asgi":
        return _starlette_client(_starlette(store, clock, events))
    if path == "fastapi":
        return _starlette_client(_fastapi(store, clock, events))
    if path == "wsgi":
        return _wsgi(store, clock, events)[0]
    return _flask(store, clock, events)


def _walk(client: _Client, clock: FakeClock, events: list[SessionEvent]) -> None:
    """The whole story, on any path and store."""
    client.get("/login?user=admin")
    client.get("/theme")
    admin = client.me()
    assert (admin["user"], admin["impersonator"], admin["theme"]) == ("admin", None, "dark")
    assert client.get("/sensitive") == (200, "done")
    admin_cookie = client.cookie()

    clock.advance(60)
    assert client.get("/impersonate?user=alice")[0] == 200
    acting = client.me()
    assert (acting["user"], acting["impersonator"]) == ("alice", "admin")
    assert acting["theme"] is None  # the administrator's data does not follow
    # the administrator's own authentication, not a fresh one, and no later deadline
    assert (acting["auth_time"], acting["auth_level"]) == (admin["auth_time"], "aal2")
    assert acting["deadline"] <= admin["deadline"]
    assert client.cookie() not in ("", admin_cookie)  # a new session ID
    # shown in the session lists (this one, as alice's, marked)
    assert ["alice", "admin", True] in acting["sessions"]
    # no sensitive action as the user: 403 to a browser and to an API client alike
    status, text = client.get("/sensitive")
    assert (status, "stop impersonating" in text) == (403, True)
    status, text = client.get("/api/sensitive", **JSON)
    answer = json.loads(text)
    answer = answer.get("detail", answer)  # (FastAPI's HTTPException wraps it)
    assert (status, answer) == (403, {"error": "impersonating"})
    assert client.get("/support") == (200, "done")  # a guard that allows it
    impersonating_cookie = client.cookie()
    started = [e for e in events if e.kind == "impersonation"]
    assert [(e.reason, e.user_id, e.impersonator) for e in started] == [
        ("started", "alice", "admin")
    ]
    assert any(e.kind == "regenerated" and e.impersonator == "admin" for e in events)

    clock.advance(60)
    assert client.get("/stop") == (200, "admin")
    back = client.me()
    assert (back["user"], back["impersonator"], back["theme"]) == ("admin", None, None)
    assert (back["auth_time"], back["auth_level"]) == (admin["auth_time"], "aal2")
    assert back["deadline"] <= admin["deadline"]
    assert client.cookie() not in ("", admin_cookie, impersonating_cookie)
    assert client.get("/sensitive") == (200, "done")  # the admin's auth is 120 s old
    stopped = [e for e in events if e.kind == "impersonation"][-1]
    assert (stopped.reason, stopped.user_id, stopped.impersonator) == ("stopped", "alice", "admin")


PATHS = ["asgi", "fastapi", "wsgi", "flask"]


@pytest.mark.parametrize("path", PATHS)
def test_impersonation_on_every_path(path: str) -> None:
    clock, events = FakeClock(START), list[SessionEvent]()
    _walk(_client(path, "memory://", clock, events), clock, events)


STORES = {
    "sqlite": "sqlite:///{tmp}/s.db",
    "filesystem": "file://{tmp}/sessions",
    "redis": "redis://127.0.0.1:6379/0?prefix=imp-{prefix}:",
    "postgresql": "postgresql://127.0.0.1:5432/test?table=imp_{prefix}",
    "mysql": "mysql://root@127.0.0.1:3306/test?table=imp_{prefix}",
    "cookie": "cookie://",
}


@pytest.mark.parametrize("store", sorted(STORES))
def test_impersonation_on_every_store(store: str, tmp_path: Path) -> None:
    url = store_url(STORES[store].replace("{prefix}", uuid.uuid4().hex[:8]), tmp_path)
    options: dict[str, Any] = {}
    if store == "cookie":  # revocation (needed to list and revoke) in SQLite
        options["revocation_store"] = f"sqlite:///{tmp_path}/revocation.db"
    clock, events = FakeClock(START), list[SessionEvent]()
    client, app = _wsgi(url, clock, events, **options)
    try:
        _walk(client, clock, events)
    finally:
        assert app.store is not None
        app.store.close()


def test_the_user_sees_and_revokes_the_impersonated_session() -> None:
    """Listed and revoked like any other: alice's own device lists the administrator's
    session as hers, marked, and ending it (or all of hers) ends the impersonation."""
    clock, events = FakeClock(START), list[SessionEvent]()
    app = _starlette("memory://", clock, events)
    alice, admin = _starlette_client(app), _starlette_client(app)
    alice.get("/login?user=alice")
    admin.get("/login?user=admin")
    admin.get("/impersonate?user=alice")
    mine = alice.me()["sessions"]
    assert mine == [["alice", None, True], ["alice", "admin", False]]  # this one first
    assert admin.me()["user"] == "alice"
    # alice logs out her other devices: the impersonation ends with them
    assert alice.get("/others") == (200, "1")
    assert admin.me()["user"] is None  # the impersonating session is gone
    revoked = [e for e in events if e.kind == "revoked"]
    assert [(e.user_id, e.impersonator) for e in revoked] == [("alice", "admin")]


def test_refusals() -> None:
    session = Session()
    with pytest.raises(SessionStateError, match="logged-in"):
        satchel.impersonate(session, "alice")
    satchel.login(session, "admin")
    with pytest.raises(SessionStateError, match="not impersonating"):
        satchel.stop_impersonating(session)
    with pytest.raises(SessionStateError, match="themselves"):
        satchel.impersonate(session, "admin")
    satchel.impersonate(session, "alice")
    assert session.impersonator == "admin"
    with pytest.raises(SessionStateError, match="stop_impersonating"):
        satchel.impersonate(session, "bob")  # no chains: stop first
    satchel.reauthenticate(session, methods=["pwd"])  # still impersonated after
    assert (session.user_id, session.impersonator) == ("alice", "admin")
    satchel.login(session, "bob")  # a real login ends it
    assert session.impersonator is None
    assert session.user_id == "bob"


def test_a_store_record_cannot_claim_an_impersonator_of_the_wrong_type() -> None:
    from satchel.auth_facts import AuthFacts

    assert AuthFacts.from_json('{"t": 1, "i": 5}') is None
    assert AuthFacts.from_json('{"t": 1, "i": ""}') is None
    facts = AuthFacts.from_json('{"t": 1, "i": "admin"}')
    assert facts is not None
    assert facts.impersonator == "admin"


def test_old_cookies_die(tmp_path: Path) -> None:
    """Each switch is a new session ID: the administrator's pre-impersonation cookie and
    the impersonating cookie open nothing afterwards."""
    clock, events = FakeClock(START), list[SessionEvent]()
    app = _starlette(f"sqlite:///{tmp_path}/s.db", clock, events)
    client = TestClient(app, base_url=HTTPS)
    client.get("/login?user=admin")
    before = client.cookies.get("satchel")
    response = client.get("/impersonate?user=alice")
    during = set_cookie_value(response.headers)
    client.get("/stop")
    for old in (before, during):
        stale = TestClient(app, base_url=HTTPS)
        stale.cookies.set("satchel", old or "")
        assert stale.get("/me").json()["user"] is None
