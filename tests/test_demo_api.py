"""The demo's API for bearer-token clients (``/api/login``, ``/api/me``, ``/api/logout``,
``/api/regenerate``), with and without a browser cookie in the same client."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from satchel.demo import create_app

from .conftest import KEY
from .test_demo_cli import _SyncASGI, log_in

TOKEN = "x-session-token"
MOBILE = {"user-agent": "satchel-mobile/1.0"}


@pytest.fixture(params=["sqlite", "redis"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path}/demo.db"
    else:
        store = request.getfixturevalue("redis_url") + f"?prefix=t{uuid.uuid4().hex[:12]}:"
    app = create_app(store, secret_keys=[KEY])
    transport = _SyncASGI(httpx.ASGITransport(app=app))
    with httpx.Client(transport=transport, base_url="https://testserver") as c:
        yield c
        assert app.store is not None
        transport.runner.run(app.store.aclose())


@pytest.fixture(params=["without a cookie", "with a cookie"])
def client(request: pytest.FixtureRequest, demo: httpx.Client) -> httpx.Client:
    """The API client; in the second case it is also logged in as bob in the browser."""
    if request.param == "with a cookie":
        assert log_in(demo, "bob", "builder").status_code == 303
        assert "satchel" in demo.cookies
    return demo


def csrf_for(client: httpx.Client) -> dict[str, str]:
    """What a client that carries the session cookie adds to its POSTs: every request
    with a cookie needs a CSRF token, whatever other headers it has."""
    if "satchel" not in client.cookies:
        return {}
    token = client.get("/api/csrf").json()["csrf_token"]
    return {"x-csrf-token": token}


def api_login(client: httpx.Client) -> httpx.Response:
    return client.post(
        "/api/login",
        json={"username": "alice", "password": "wonderland"},
        headers={**MOBILE, **csrf_for(client)},
    )


def bearer(token: str, client: httpx.Client | None = None) -> dict[str, str]:
    extra = csrf_for_bearer(client, token) if client is not None else {}
    return {"authorization": f"Bearer {token}", **MOBILE, **extra}


def csrf_for_bearer(client: httpx.Client, token: str) -> dict[str, str]:
    if "satchel" not in client.cookies:
        return {}
    answer = client.get("/api/csrf", headers={"authorization": f"Bearer {token}"}).json()
    return {"x-csrf-token": answer["csrf_token"]}


def test_api_login_returns_the_token_in_a_header_and_sets_no_cookie(client: httpx.Client) -> None:
    cookie_before = client.cookies.get("satchel")
    response = api_login(client)
    assert response.status_code == 200
    assert response.json() == {"username": "alice"}
    assert response.headers[TOKEN]
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert client.cookies.get("satchel") == cookie_before  # the browser's session untouched


def test_api_login_refuses_bad_credentials_with_401_json(client: httpx.Client) -> None:
    response = client.post(
        "/api/login",
        json={"username": "alice", "password": "nope"},
        headers={**MOBILE, **csrf_for(client)},
    )
    assert response.status_code == 401
    assert "error" in response.json()
    assert TOKEN not in response.headers or response.headers[TOKEN] == ""
    assert "set-cookie" not in response.headers


def test_api_me_with_and_without_the_token(client: httpx.Client) -> None:
    token = api_login(client).headers[TOKEN]
    me = client.get("/api/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"  # the token's user, not the browser's
    if "satchel" not in client.cookies:
        assert client.get("/api/me").status_code == 401
    else:
        assert client.get("/api/me").json()["username"] == "bob"  # the browser's own


def test_api_logout_kills_the_token_everywhere(client: httpx.Client) -> None:
    token = api_login(client).headers[TOKEN]
    out = client.post("/api/logout", headers=bearer(token, client))
    assert out.status_code == 200
    assert out.headers[TOKEN] == ""
    assert "set-cookie" not in out.headers
    assert client.get("/api/me", headers=bearer(token)).status_code == 401
    assert client.post("/api/regenerate", headers=bearer(token, client)).status_code == 401
    if "satchel" in client.cookies:  # the browser's session lives on
        assert client.get("/api/me").json()["username"] == "bob"


def test_api_regenerate_rotates_the_token(client: httpx.Client) -> None:
    old = api_login(client).headers[TOKEN]
    response = client.post("/api/regenerate", headers=bearer(old, client))
    assert response.status_code == 200
    new = response.headers[TOKEN]
    assert new
    assert new != old
    assert client.get("/api/me", headers=bearer(new)).json()["username"] == "alice"
    assert client.get("/api/me", headers=bearer(old)).status_code == 401


def test_a_cookie_carrying_api_post_needs_a_csrf_token(demo: httpx.Client) -> None:
    log_in(demo, "bob", "builder")
    token = demo.post(
        "/api/login", json={"username": "alice", "password": "wonderland"}, headers=csrf_for(demo)
    ).headers[TOKEN]
    refused = demo.post("/api/logout", headers={"authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    demo.cookies.clear()
    assert demo.post("/api/logout", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_browser_and_api_sessions_of_one_user_both_show(demo: httpx.Client) -> None:
    assert log_in(demo).status_code == 303  # alice in the browser
    token = api_login(demo).headers[TOKEN]
    page = demo.get("/sessions").text
    assert page.count('<li class="device" data-handle=') == 2
    assert "satchel-mobile/1.0" in page
    handles = re.findall(r'data-handle="([^"]+)">(?:(?!</li>).)*satchel-mobile', page, re.S)
    assert len(handles) == 1
    revoke = demo.post(
        "/sessions/revoke",
        data={"session": handles[0], "csrf_token": csrf_for(demo)["x-csrf-token"]},
    )
    assert revoke.status_code == 303
    assert demo.get("/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 401
