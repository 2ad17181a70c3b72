"""Device-bound sessions over HTTP, without a browser: the registration and refresh
endpoints, the bound cookie on every request, the events, on ASGI, WSGI and Flask and
on every store. The "device" signs its proofs as Chromium does (tests/dbsc_device.py);
tests/test_dbsc_browser.py runs the same protocol in Chromium itself."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import (
    SessionEvent,
    device_bound,
    end_user_sessions,
    login,
    logout,
    require_device_binding,
)
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.auth import logout_everywhere, sessions_of
from satchel.dbsc.proof import thumbprint
from satchel.dbsc.protocol import SETTLE_MS
from satchel.errors import ConfigurationError
from satchel.integrations.fastapi import CurrentSession
from satchel.session import Session
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .dbsc_device import Device, challenge_of, registration_offer
from .services import memcached, store_url  # noqa: F401  (memcached: a fixture)
from .test_demo_cli import _SyncASGI

REGISTER, REFRESH = "/.satchel/dbsc/register", "/.satchel/dbsc/refresh"
JSON_ACCEPT = {"accept": "application/json"}
LIFETIME = 60
SETTLE = SETTLE_MS / 1000


# -- one app, three paths ------------------------------------------------------------------------


def _route(session: Session, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if path == "/login":
        login(session, query.get("user", "alice"))
        if query.get("require"):
            require_device_binding(session)
    elif path == "/logout":
        logout(session)
        return 200, {"logged_out": True}
    elif path == "/everywhere":
        return 200, {"ended": logout_everywhere(session)}
    elif path == "/put":
        session["n"] = session.get("n", 0) + 1
    elif path == "/sessions":
        return 200, {"bound": [s.device_bound for s in sessions_of(session)]}
    return 200, {"user": session.user_id, "bound": device_bound(session), "n": session.get("n")}


async def asgi_view(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    status, body = _route(session, request.url.path, dict(request.query_params))
    return JSONResponse(body, status)


def wsgi_view(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    from urllib.parse import parse_qsl

    query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    status, body = _route(environ[ENVIRON_KEY], environ["PATH_INFO"], query)
    start_response(f"{status} OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def flask_app(store: str, options: dict[str, Any]) -> Any:
    from flask import Flask, request, session

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY)
    Satchel(app, store=store, secret_keys=[KEY], **options)

    @app.route("/<path:name>", methods=["GET", "POST"])
    def view(name: str) -> Any:
        status, body = _route(session, "/" + name, dict(request.args))  # type: ignore[arg-type]
        return body, status

    return app


def fastapi_app(store: str, options: dict[str, Any]) -> Any:
    app = FastAPI()
    app.add_middleware(ASGIMiddleware, store=store, secret_keys=[KEY], **options)

    @app.api_route("/{name:path}", methods=["GET", "POST"])
    async def view(name: str, request: FastAPIRequest, session: CurrentSession) -> Any:
        status, body = _route(session, "/" + name, dict(request.query_params))
        return JSONResponse(body, status)

    return app


PATHS = ["asgi", "wsgi", "flask", "fastapi"]


class World:
    """A client on one path and store, the server's events, and the clock."""

    def __init__(self, path: str, store: str, **options: Any) -> None:
        self.events: list[SessionEvent] = []
        self.clock = FakeClock()
        options = {
            "dbsc": True,
            "dbsc_cookie_lifetime": LIFETIME,
            "on_event": self.events.append,
            "clock": self.clock,
            **options,
        }
        self.path = path
        transport: httpx.BaseTransport
        self.asgi: ASGIMiddleware | None = None
        if path == "asgi":
            routes = [Route("/{p:path}", asgi_view, methods=["GET", "POST"])]
            self.asgi = asgi = ASGIMiddleware(
                Starlette(routes=routes), store, secret_keys=[KEY], **options
            )
            self.sync_asgi = _SyncASGI(httpx.ASGITransport(app=asgi))
            transport = self.sync_asgi
        elif path == "fastapi":
            self.sync_asgi = _SyncASGI(httpx.ASGITransport(app=fastapi_app(store, options)))
            transport = self.sync_asgi
        elif path == "wsgi":
            self.wsgi = wsgi = WSGIMiddleware(wsgi_view, store, secret_keys=[KEY], **options)
            transport = httpx.WSGITransport(app=wsgi)
        else:
            transport = httpx.WSGITransport(app=flask_app(store, options))
        self.http = httpx.Client(transport=transport, base_url="https://testserver")
        self.device = Device()
        self.user = f"alice-{uuid.uuid4().hex[:8]}"

    def close(self) -> None:
        """Close the store's connections (in the loop that opened them), then the client."""
        if self.asgi is not None and self.asgi.store is not None:
            store = self.asgi.store
            self.sync_asgi.runner.run(store.aclose())
            store.close()
        self.http.close()

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(e.kind, e.reason) for e in self.events if e.kind.startswith("device")]

    def me(self, cookie: bytes | None = None) -> httpx.Response:
        headers = [(k.encode(), v.encode()) for k, v in JSON_ACCEPT.items()]
        if cookie is not None:
            headers.append((b"cookie", cookie))
        return self.http.get("/me", headers=headers)

    def login_and_bind(self, user: str | None = None) -> dict[str, Any]:
        """Log in (a user of this world's own: stores outlive test runs) and bind."""
        response = self.http.get("/login", params={"user": user or self.user})
        assert response.status_code == 200
        path, challenge = registration_offer(response.headers["secure-session-registration"])
        assert path == REGISTER
        bound = self.http.post(
            path, headers={"secure-session-response": self.device.proof(challenge, with_jwk=True)}
        )
        assert bound.status_code == 200, bound.text
        assert "satchel_bound=" in bound.headers["set-cookie"]
        self.clock.advance(SETTLE)  # past the settle window of a new binding
        return dict(bound.json())

    def refresh(
        self, device: Device | None = None, identifier: str | None = None
    ) -> httpx.Response:
        """The browser's refresh: first without a proof, then with one for the challenge."""
        identifier = identifier or thumbprint(self.device.jwk)
        first = self.http.post(REFRESH, headers={"sec-secure-session-id": identifier})
        if first.status_code != 403:
            return first
        challenge, named = challenge_of(first.headers["secure-session-challenge"])
        assert named == identifier
        proof = (device or self.device).proof(challenge)
        return self.http.post(
            REFRESH, headers={"sec-secure-session-id": identifier, "secure-session-response": proof}
        )

    def drop_bound_cookie(self) -> None:
        self.http.cookies.delete("satchel_bound")


@pytest.fixture(params=PATHS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(request.param, "memory://")
    yield w
    w.close()


# -- the whole protocol, on every path --------------------------------------------------------


def test_login_binds_refreshes_and_logout_ends_the_binding(world: World) -> None:
    assert world.me().json() == {"user": None, "bound": False, "n": None}
    instructions = world.login_and_bind()
    key_id = thumbprint(world.device.jwk)
    assert instructions == {
        "session_identifier": key_id,
        "refresh_url": REFRESH,
        "scope": {"origin": "https://testserver", "include_site": False},
        "credentials": [
            {
                "type": "cookie",
                "name": "satchel_bound",
                "attributes": "Path=/; Secure; HttpOnly; SameSite=Lax",
            }
        ],
    }
    assert world.me().json()["bound"] is True
    assert world.http.get("/sessions").json() == {"bound": [True]}
    assert world.kinds() == [("device_bound", None)]

    # no bound cookie: refused, and the app never ran (a write would have counted)
    world.drop_bound_cookie()
    refused = world.http.get("/put", headers=JSON_ACCEPT)
    assert refused.status_code == 401
    assert refused.json() == {"error": "device_unverified"}
    assert "set-cookie" not in refused.headers
    page = world.http.get("/put")
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert world.kinds()[-1] == ("device_refused", "unverified_request")

    # the browser refreshes with a proof: a new bound cookie, and the next challenge
    refreshed = world.refresh()
    assert refreshed.status_code == 200
    assert refreshed.json()["session_identifier"] == key_id
    assert world.http.get("/put").json()["n"] == 1
    assert world.kinds()[-1] == ("device_refreshed", None)

    # the challenge it was given is good for one refresh, in one round trip
    cached, _ = challenge_of(refreshed.headers["secure-session-challenge"])
    headers = {"sec-secure-session-id": key_id}
    proof = world.device.proof(cached)
    once = world.http.post(REFRESH, headers={**headers, "secure-session-response": proof})
    assert once.status_code == 200
    again = world.http.post(REFRESH, headers={**headers, "secure-session-response": proof})
    assert again.status_code == 403  # replayed: asked for a new one
    assert "secure-session-challenge" in again.headers
    assert world.kinds()[-1] == ("device_refused", "reused_challenge")

    # logout ends it: the bound cookie goes, the browser's refresh hears "continue": false
    out = world.http.get("/logout")
    assert any(
        c.startswith("satchel_bound=;") and "Max-Age=0" in c
        for c in out.headers.get_list("set-cookie")
    )
    assert ("device_unbound", "logout") in world.kinds()
    ended = world.http.post(REFRESH, headers=headers)
    assert ended.status_code == 200
    assert ended.json() == {"continue": False}


def test_logging_out_everywhere_ends_the_binding(world: World) -> None:
    """Revocation ends a binding as a logout does: the browser's next refresh hears
    "continue": false (issue 13)."""
    world.login_and_bind()
    headers = {"sec-secure-session-id": thumbprint(world.device.jwk)}
    assert world.http.get("/everywhere").json() == {"ended": 1}
    assert ("device_unbound", "logout") in world.kinds()
    ended = world.http.post(REFRESH, headers=headers)
    assert (ended.status_code, ended.json()) == (200, {"continue": False})


def test_ending_the_users_sessions_ends_the_binding() -> None:
    """``end_user_sessions`` from the account code (another device, no request of the
    user's): a ``device_unbound`` event with the app's reason, then "continue": false."""
    world = World("wsgi", "memory://")
    try:
        world.login_and_bind()
        headers = {"sec-secure-session-id": thumbprint(world.device.jwk)}
        assert end_user_sessions(world.wsgi, world.user, reason="account_disabled") == 1
        assert ("device_unbound", "account_disabled") in world.kinds()
        ended = world.http.post(REFRESH, headers=headers)
        assert (ended.status_code, ended.json()) == (200, {"continue": False})
        assert world.me().json()["user"] is None
    finally:
        world.close()


def test_a_copied_pair_of_cookies_dies_with_the_bound_cookie(world: World) -> None:
    world.login_and_bind()
    thief = httpx.Client(transport=world.http._transport, base_url="https://testserver")
    for cookie in world.http.cookies.jar:
        thief.cookies.set(cookie.name, cookie.value or "")
    assert thief.get("/me", headers=JSON_ACCEPT).json()["bound"] is True  # works, for now
    world.clock.advance(LIFETIME + 1)
    assert thief.get("/me", headers=JSON_ACCEPT).status_code == 401
    # without the key, no refresh: any other key's proof is refused and reported
    stolen = World.refresh(world, device=Device())  # (the world's client, a foreign key)
    assert stolen.status_code == 403
    assert stolen.json() == {"continue": False}
    assert any(e.kind == "security" and e.reason == "device_key" for e in world.events)
    assert world.kinds()[-1] == ("device_refused", "wrong_key")
    # the owner's key still refreshes
    assert world.refresh().status_code == 200
    assert world.me().status_code == 200


def test_the_bound_cookie_expires_and_a_refresh_renews_it(world: World) -> None:
    world.login_and_bind()
    world.clock.advance(LIFETIME - SETTLE - 1)
    assert world.me().status_code == 200
    world.clock.advance(2)
    assert world.me().status_code == 401  # the expiry is inside its MAC: Max-Age aside
    assert world.refresh().status_code == 200
    assert world.me().status_code == 200


def test_requests_racing_the_registration_are_let_through_for_a_moment(world: World) -> None:
    """The browser does not hold its requests while it registers: the page a login
    redirects to often arrives after the binding, without the bound cookie."""
    login = world.http.get("/login")
    path, challenge = registration_offer(login.headers["secure-session-registration"])
    proof = world.device.proof(challenge, with_jwk=True)
    assert world.http.post(path, headers={"secure-session-response": proof}).status_code == 200
    world.drop_bound_cookie()
    world.clock.advance(SETTLE - 1)
    assert world.me().json()["bound"] is True
    world.clock.advance(2)
    assert world.me().status_code == 401


def test_a_relogin_keeps_the_binding_under_a_new_handle_with_a_new_bound_cookie(
    world: World,
) -> None:
    world.login_and_bind()
    again = world.http.get("/login", params={"user": world.user})  # a new ID and handle
    assert "secure-session-registration" not in again.headers
    assert any(c.startswith("satchel_bound=") for c in again.headers.get_list("set-cookie"))
    assert world.me().json()["bound"] is True
    assert world.refresh().status_code == 200  # the same key, the same identifier


def test_a_login_by_another_user_drops_the_binding_and_offers_a_new_one(world: World) -> None:
    world.login_and_bind()
    other = world.http.get("/login", params={"user": "bob"})
    assert "secure-session-registration" in other.headers
    assert world.me().json() == {"user": "bob", "bound": False, "n": None}


# -- refusals: always a clean answer ------------------------------------------------------------


def _offer(world: World) -> str:  # a registration challenge, after a login
    response = world.http.get("/login")
    return registration_offer(response.headers["secure-session-registration"])[1]


def test_registration_refuses_every_bad_proof_with_a_clean_4xx(world: World) -> None:
    challenge = _offer(world)
    device = world.device
    bad = {
        "no proof": None,
        "garbage": "not.a.jwt",
        "alg none": _unsigned(challenge, device.jwk),
        "no jwk": device.proof(challenge),
        "wrong typ": device.proof(challenge, with_jwk=True, typ="JWT"),
        "other challenge": device.proof(challenge[:-2] + "xx", with_jwk=True),
        "huge": "a" * 20000,
    }
    if world.path == "asgi":  # (httpx's WSGI transport sends ASCII only)
        bad["non-ascii"] = "é".encode() * 10  # type: ignore[assignment]
    for name, proof in bad.items():
        headers = {} if proof is None else {"secure-session-response": proof}
        response = world.http.post(REGISTER, headers=headers)
        assert response.status_code == 403, name
        assert response.json() == {"continue": False}
    assert world.me().json()["bound"] is False
    assert {r for k, r in world.kinds()} == {"bad_proof"}
    # a refresh challenge (anyone with the cookie can get one) never registers a key
    world.login_and_bind()
    world.drop_bound_cookie()
    first = world.http.post(REFRESH, headers={"sec-secure-session-id": thumbprint(device.jwk)})
    refresh_challenge, _ = challenge_of(first.headers["secure-session-challenge"])
    other = Device()
    response = world.http.post(
        REGISTER, headers={"secure-session-response": other.proof(refresh_challenge, with_jwk=True)}
    )
    assert response.status_code == 403
    assert world.kinds()[-1] == ("device_refused", "already_bound")


def test_a_bound_session_is_never_bound_again(world: World) -> None:
    """A thief holding the session cookie (but not the key) cannot re-register it with a
    key of their own, even with a registration challenge made for it."""
    challenge = _offer(world)
    first = world.http.post(
        REGISTER, headers={"secure-session-response": world.device.proof(challenge, with_jwk=True)}
    )
    assert first.status_code == 200
    thief = Device()
    second = world.http.post(
        REGISTER, headers={"secure-session-response": thief.proof(challenge, with_jwk=True)}
    )
    assert second.status_code == 403
    assert world.kinds()[-1] == ("device_refused", "already_bound")


def test_registration_needs_a_logged_in_session_within_the_grace_period(world: World) -> None:
    challenge = _offer(world)
    world.clock.advance(301)
    late = world.http.post(
        REGISTER, headers={"secure-session-response": world.device.proof(challenge, with_jwk=True)}
    )
    assert late.status_code == 403
    assert world.kinds()[-1] == ("device_refused", "too_late")
    world.http.get("/logout")
    anonymous = world.http.post(REGISTER, headers={"secure-session-response": "x"})
    assert anonymous.status_code == 403
    assert world.kinds()[-1] == ("device_refused", "no_session")
    assert world.http.get(REGISTER).status_code == 405
    assert world.http.get(REFRESH).status_code == 405


def test_refresh_refuses_crafted_input_with_a_clean_answer(world: World) -> None:
    world.login_and_bind()
    key_id = thumbprint(world.device.jwk)
    for headers in (
        {},
        {"sec-secure-session-id": "x" * 5000},
        {"sec-secure-session-id": '"' + key_id + '"', "secure-session-response": "garbage"},
        {"sec-secure-session-id": key_id, "secure-session-response": _unsigned("c", {})},
        {"sec-secure-session-id": key_id, "secure-session-response": world.device.proof("1.a.b")},
    ):
        response = world.http.post(REFRESH, headers=headers)
        assert response.status_code in (200, 403), headers
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert "access-control-allow-origin" not in response.headers
    for value in ("", "1.x", "9" * 20 + ".x", "1" * 13 + "." + "A" * 43):
        world.drop_bound_cookie()
        world.http.cookies.set("satchel_bound", value)
        assert world.me().status_code == 401
    if world.path == "asgi":  # a Cookie header no browser sends (latin-1, not UTF-8)
        session_cookie = world.http.cookies["satchel"]
        world.http.cookies.clear()
        crafted = f"satchel={session_cookie}; satchel_bound=\u00e9\xff"
        assert world.me(cookie=crafted.encode("latin-1")).status_code == 401


def test_a_stale_challenge_is_answered_with_a_new_one(world: World) -> None:
    world.login_and_bind()
    key_id = thumbprint(world.device.jwk)
    first = world.http.post(REFRESH, headers={"sec-secure-session-id": key_id})
    challenge, _ = challenge_of(first.headers["secure-session-challenge"])
    world.clock.advance(300 + LIFETIME + 1)
    headers = {"sec-secure-session-id": key_id}
    stale = world.http.post(
        REFRESH, headers={**headers, "secure-session-response": world.device.proof(challenge)}
    )
    assert stale.status_code == 403
    assert world.kinds()[-1] == ("device_refused", "stale_challenge")
    assert world.refresh().status_code == 200


# -- what is offered, and when -----------------------------------------------------------------


def test_no_offer_over_plain_http_or_after_the_grace_period(world: World) -> None:
    plain = httpx.Client(transport=world.http._transport, base_url="http://testserver")
    assert "secure-session-registration" not in plain.get("/login").headers
    assert "secure-session-registration" in world.http.get("/login").headers
    assert "secure-session-registration" not in world.me().headers  # not on every response
    world.clock.advance(301)
    assert "secure-session-registration" not in world.me().headers


def test_a_required_binding_refuses_the_session_after_the_grace_period(world: World) -> None:
    world.http.get("/login", params={"require": "1"})
    assert world.me().status_code == 200  # within the grace period: let through
    world.clock.advance(301)
    refused = world.me()
    assert refused.status_code == 401
    assert world.kinds()[-1] == ("device_refused", "binding_required")


@pytest.mark.parametrize("path", PATHS)
def test_dbsc_required_asks_it_of_every_logged_in_session(path: str) -> None:
    world = World(path, "memory://", dbsc_required=True, dbsc_grace=30, dbsc_redirect="/login")
    world.login_and_bind()
    world.http.get("/login", params={"user": "bob"})  # bob's browser does not bind
    world.clock.advance(31)
    assert world.me().status_code == 401
    page = world.http.get("/me")
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    world.close()


def test_dbsc_needs_keys_and_a_sane_configuration() -> None:
    with pytest.raises(ConfigurationError, match="secret_keys"):
        ASGIMiddleware(Starlette(), "memory://", dbsc=True, insecure_unsigned_cookies=True)
    for bad in (
        {"dbsc_path": "/"},
        {"dbsc_path": "x"},
        {"dbsc_cookie_lifetime": 0},
        {"dbsc_redirect": "//evil.example/login"},
        {"dbsc_redirect": "/\\evil.example"},
        {"dbsc_redirect": "https://evil.example/"},
    ):
        with pytest.raises(ConfigurationError, match="dbsc"):
            ASGIMiddleware(Starlette(), "memory://", secret_keys=[KEY], dbsc=True, **bad)


# -- every store ---------------------------------------------------------------------------------


STORES = [
    "sqlite:///{tmp}/s.db",
    "file://{tmp}/files",
    "redis://127.0.0.1:6379/0",
    "postgresql://postgres@127.0.0.1:5432/test",
    "mysql://root@127.0.0.1:3306/test",
    "memcached",
]


@pytest.mark.parametrize("store", STORES)
def test_binding_works_on_every_store(
    store: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    url = store_url(store, tmp_path)
    if store == "memcached":
        url = request.getfixturevalue("memcached").url
    world = World("asgi", url)
    try:
        test_login_binds_refreshes_and_logout_ends_the_binding(world)
    finally:
        world.close()


def _unsigned(challenge: str, jwk: dict[str, str]) -> str:
    import base64

    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = {"typ": "dbsc+jwt", "alg": "none", "jwk": jwk}
    return f"{part(header)}.{part({'jti': challenge})}."


def test_a_websocket_of_a_bound_session_needs_the_bound_cookie_too() -> None:
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo_user(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(websocket.session.get("n")))
        await websocket.close()

    clock = FakeClock()
    app = ASGIMiddleware(
        Starlette(
            routes=[
                Route("/{p:path}", asgi_view, methods=["GET", "POST"]),
                WebSocketRoute("/ws", echo_user),
            ]
        ),
        "memory://",
        secret_keys=[KEY],
        dbsc=True,
        clock=clock,
    )
    device = Device()
    with TestClient(app, base_url="https://testserver") as client:
        login = client.get("/login")
        path, challenge = registration_offer(login.headers["secure-session-registration"])
        proof = device.proof(challenge, with_jwk=True)
        assert client.post(path, headers={"secure-session-response": proof}).status_code == 200
        client.get("/put")
        clock.advance(SETTLE)
        origin = {"origin": "https://testserver"}
        with client.websocket_connect("wss://testserver/ws", headers=origin) as ws:
            assert ws.receive_text() == "1"
        client.cookies.delete("satchel_bound")
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("wss://testserver/ws", headers=origin) as ws,
        ):
            ws.receive_text()
        assert closed.value.code == 1008


def test_flask_checks_the_device_before_the_apps_own_before_request_functions() -> None:
    """A hook the app registered before ``Satchel(app)`` that answers (a maintenance page, a
    redirect) must not serve a bound session that cannot prove its device."""
    from flask import Flask, session

    from satchel.integrations.flask import Satchel

    clock = FakeClock()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY)

    @app.before_request
    def early() -> Any:
        if "n" in session:
            return {"early": session["n"]}
        return None

    Satchel(app, store="memory://", secret_keys=[KEY], dbsc=True, clock=clock)

    @app.route("/<path:name>", methods=["GET", "POST"])
    def view(name: str) -> Any:
        status, body = _route(session, "/" + name, {})  # type: ignore[arg-type]
        return body, status

    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://testserver") as c:
        login = c.get("/login")
        path, challenge = registration_offer(login.headers["secure-session-registration"])
        proof = Device().proof(challenge, with_jwk=True)
        assert c.post(path, headers={"secure-session-response": proof}).status_code == 200
        assert c.get("/put").json()["n"] == 1
        assert c.get("/me").json() == {"early": 1}
        clock.advance(SETTLE)
        c.cookies.delete("satchel_bound")
        assert c.get("/me", headers=JSON_ACCEPT).status_code == 401
