"""Session tokens in a header (``Authorization: Bearer``, answered in ``X-Session-Token``)
for API and mobile clients: the same engine, stores and rules as the cookie, on the ASGI
and WSGI paths, SQLite and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import ConfigurationError, CookieStore, UserSessions, load_settings, login, logout
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.auth import regenerate_on_privilege_change, sessions_of
from satchel.request import use_bearer_token
from satchel.session import Session
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .test_demo_cli import _SyncASGI

BASE = "https://testserver"
TOKEN = "x-session-token"


# -- one app, two paths -------------------------------------------------------------------------


def _handle(session: Session, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The app's routes, shared by the ASGI and WSGI apps."""
    if path in ("/api/login", "/web/login"):
        if path == "/api/login" and query.get("bearer", "1") == "1":
            use_bearer_token(session)
        login(session, query.get("user", "alice"))
        return 200, {"user": query.get("user", "alice")}
    if path.endswith("/put"):
        session.update(query)
        return 200, dict(session)
    if path.endswith("/get"):
        return 200, {"data": dict(session), "user": session.user_id}
    if path.endswith("/logout"):
        logout(session)
        return 200, {}
    if path.endswith("/regenerate"):
        regenerate_on_privilege_change(session)
        return 200, {}
    if path.endswith("/sessions"):
        return 200, {"agents": sorted(i.user_agent or "" for i in sessions_of(session))}
    return 404, {}


async def asgi_endpoint(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    status, body = _handle(session, request.url.path, dict(request.query_params))
    return JSONResponse(body, status_code=status)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    status, body = _handle(environ[ENVIRON_KEY], environ["PATH_INFO"], query)
    start_response(f"{status} X", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


ROUTES = [Route("/{rest:path}", asgi_endpoint, methods=["GET", "POST"])]


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    url: str = request.getfixturevalue("redis_url")
    return url + f"?prefix=t{uuid.uuid4().hex[:12]}:"  # this test's own keys


@pytest.fixture(params=["asgi", "wsgi"])
def client(request: pytest.FixtureRequest, store_url: str) -> Iterator[httpx.Client]:
    options: dict[str, Any] = {"secret_keys": [KEY], "token_paths": ["/api/"]}
    if request.param == "asgi":
        app = ASGIMiddleware(Starlette(routes=ROUTES), store_url, **options)
        transport = _SyncASGI(httpx.ASGITransport(app=app))
        with httpx.Client(transport=transport, base_url=BASE) as c:
            yield c
            assert app.store is not None
            transport.runner.run(app.store.aclose())  # on the loop that opened it
    else:
        wsgi = WSGIMiddleware(wsgi_app, store_url, **options)
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE) as c:
            yield c
        assert wsgi.store is not None
        wsgi.store.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "user-agent": "satchel-mobile/1.0"}


def api_login(client: httpx.Client, user: str = "alice") -> str:
    response = client.post(f"/api/login?user={user}", headers={"user-agent": "satchel-mobile/1.0"})
    assert response.status_code == 200
    token = response.headers[TOKEN]
    assert token
    return token


# -- the transport ------------------------------------------------------------------------------


def test_a_login_answers_the_token_in_a_header_never_a_cookie(client: httpx.Client) -> None:
    response = client.post("/api/login", headers={"user-agent": "satchel-mobile/1.0"})
    assert response.status_code == 200
    assert response.headers[TOKEN]
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert "Authorization" in response.headers["vary"]
    assert not client.cookies


def test_the_bearer_token_opens_the_session(client: httpx.Client) -> None:
    token = api_login(client)
    client.post("/api/put?cart=book", headers=bearer(token))
    got = client.get("/api/get", headers=bearer(token)).json()
    assert got == {"data": {"cart": "book"}, "user": "alice"}
    assert client.get("/api/get").json()["user"] is None  # no token, no session


def test_a_token_in_the_query_string_is_never_accepted(client: httpx.Client) -> None:
    token = api_login(client)
    for query in (f"token={token}", f"access_token={token}", f"session={token}"):
        assert client.get(f"/api/get?{query}").json()["user"] is None


def test_a_forged_or_malformed_token_opens_nothing(client: httpx.Client) -> None:
    token = api_login(client)
    session_id, _, signature = token.partition(".")
    forged = f"{session_id}.{signature[::-1]}"
    for value in (forged, session_id, "x" * 50, "", "Bearer"):
        got = client.get("/api/get", headers={"authorization": f"Bearer {value}"})
        assert got.json()["user"] is None
    other_scheme = client.get("/api/get", headers={"authorization": f"Basic {token}"})
    assert other_scheme.json()["user"] is None


def test_regeneration_returns_a_new_token_and_kills_the_old_one(client: httpx.Client) -> None:
    old = api_login(client)
    response = client.post("/api/regenerate", headers=bearer(old))
    new = response.headers[TOKEN]
    assert new
    assert new != old
    assert "set-cookie" not in response.headers
    assert client.get("/api/get", headers=bearer(new)).json()["user"] == "alice"
    assert client.get("/api/get", headers=bearer(old)).json()["user"] is None


def test_logout_returns_an_empty_token_and_the_token_is_dead(client: httpx.Client) -> None:
    token = api_login(client)
    response = client.post("/api/logout", headers=bearer(token))
    assert response.headers[TOKEN] == ""
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert client.get("/api/get", headers=bearer(token)).json()["user"] is None


def test_bearer_requests_need_no_csrf_token_but_cookie_requests_do(client: httpx.Client) -> None:
    token = api_login(client)
    # authenticated by the header alone: no CSRF token, a cross-site Origin is irrelevant
    assert client.post("/api/put?a=1", headers=bearer(token)).status_code == 200
    # the same request carrying a session cookie too: refused without a CSRF token
    client.cookies.set("satchel", "anything")
    refused = client.post("/api/put?a=2", headers=bearer(token))
    assert refused.status_code == 403
    client.cookies.clear()
    # on a cookie path an Authorization header switches nothing: CSRF still applies
    assert client.post("/web/put?a=3", headers=bearer(token)).status_code == 403


def test_off_unless_token_paths_says_where(store_url: str) -> None:
    app = ASGIMiddleware(Starlette(routes=ROUTES), store_url, secret_keys=[KEY], csrf=False)
    transport = _SyncASGI(httpx.ASGITransport(app=app))
    with httpx.Client(transport=transport, base_url=BASE) as c:
        response = c.get("/api/put?a=1", headers=bearer("x" * 43))
        assert TOKEN not in response.headers
        assert "satchel=" in response.headers["set-cookie"]  # the cookie, as always
        with pytest.raises(ConfigurationError, match="token_paths"):
            c.post("/api/login")
        assert app.store is not None
        transport.runner.run(app.store.aclose())


def test_header_sessions_are_listed_and_revoked_like_any_other(
    client: httpx.Client, store_url: str
) -> None:
    from satchel import store_from_url

    token = api_login(client, "carol")
    web = client.post("/web/login?user=carol", headers={"x-csrf-token": "x"})
    assert web.status_code == 403  # a browser login still needs its CSRF token
    agents = client.get("/api/sessions", headers=bearer(token)).json()["agents"]
    assert agents == ["satchel-mobile/1.0"]
    store = store_from_url(store_url)
    try:
        listed = UserSessions(store).sessions("carol")
        assert [i.user_agent for i in listed] == ["satchel-mobile/1.0"]
        assert UserSessions(store).revoke("carol", listed[0].handle)
    finally:
        store.close()
    assert client.get("/api/get", headers=bearer(token)).json()["user"] is None


# -- configuration ------------------------------------------------------------------------------


def test_token_paths_from_the_environment_and_refused_on_the_cookie_store(tmp_path: Path) -> None:
    settings = load_settings(
        env={"SATCHEL_TOKEN_PATHS": "/api/,/mobile/"}, use_file=False, validate=False
    )
    assert settings.token_paths == ("/api/", "/mobile/")
    with pytest.raises(ConfigurationError, match="must be a path"):
        ASGIMiddleware(Starlette(), "memory://", secret_keys=[KEY], token_paths=["api"])
    with pytest.raises(ConfigurationError, match="server-side store"):
        ASGIMiddleware(Starlette(), CookieStore(), secret_keys=[KEY], token_paths=["/api/"])


def test_token_paths_are_whole_segments_and_take_no_wildcards(store_url: str) -> None:
    app = ASGIMiddleware(
        Starlette(routes=ROUTES), store_url, secret_keys=[KEY], token_paths=["/api"], csrf=False
    )
    transport = _SyncASGI(httpx.ASGITransport(app=app))
    with httpx.Client(transport=transport, base_url=BASE) as c:
        assert TOKEN in c.get("/api/put?a=1").headers  # /api/...: header tokens
        apiary = c.get("/apiary/put?a=1")
        assert TOKEN not in apiary.headers
        assert "satchel=" in apiary.headers["set-cookie"]  # /apiary is not /api
        assert app.store is not None
        transport.runner.run(app.store.aclose())
    with pytest.raises(ConfigurationError, match="no wildcards"):
        ASGIMiddleware(Starlette(), "memory://", secret_keys=[KEY], token_paths=["/api/*"])
