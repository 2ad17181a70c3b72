"""``Clear-Site-Data`` on logout (issue 17; OWASP ASVS 5.0 14.3.1).

The response that ends a logged-in user's session carries ``Clear-Site-Data: "cookies"``
by default, on every path (ASGI/FastAPI, WSGI, Flask; server-side stores and the cookie
store). Never on a response that only deletes a stale cookie, ends an anonymous session,
or answers a bearer-token client; and never with ``"cookies"`` when the same response sets
a cookie of its own (a session started after the logout, the pre-session CSRF cookie),
which Chromium would clear too (tests/test_browser.py shows it in the browser).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from satchel import asgi, auth, wsgi
from satchel.errors import ConfigurationError
from satchel.flash import flash, get_flashed_messages
from satchel.request import csrf_token
from satchel.session import Session

from .helpers import KEY
from .services import serve_asgi

BASE = "https://127.0.0.1"


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


def _starlette_app(**options: Any) -> Any:
    async def login(request: StarletteRequest) -> Response:
        auth.login(_s(request.session), "alice")
        return PlainTextResponse("ok")

    async def whoami(request: StarletteRequest) -> Response:
        return PlainTextResponse(_s(request.session).user_id or "-")

    async def logout(request: StarletteRequest) -> Response:
        auth.logout(_s(request.session))
        return PlainTextResponse("bye")

    async def logout_flash(request: StarletteRequest) -> Response:
        auth.logout(_s(request.session))
        flash(_s(request.session), "You are signed out")
        return PlainTextResponse("bye")

    async def logout_form(request: StarletteRequest) -> Response:
        auth.logout(_s(request.session))
        return PlainTextResponse(csrf_token(request))  # a login form on the logout page

    async def flashes(request: StarletteRequest) -> Response:
        return PlainTextResponse(" ".join(m for _, m in get_flashed_messages(_s(request.session))))

    async def anon(request: StarletteRequest) -> Response:
        _s(request.session)["cart"] = 1
        return PlainTextResponse("ok")

    async def clear_anon(request: StarletteRequest) -> Response:
        auth.logout(_s(request.session))
        return PlainTextResponse("ok")

    routes = [
        Route("/login", login),
        Route("/whoami", whoami),
        Route("/logout", logout),
        Route("/logout-flash", logout_flash),
        Route("/logout-form", logout_form),
        Route("/flashes", flashes),
        Route("/anon", anon),
        Route("/clear-anon", clear_anon),
    ]
    options.setdefault("store", "memory://")
    return asgi.SessionMiddleware(Starlette(routes=routes), secret_keys=[KEY], **options)


def _starlette(**options: Any) -> TestClient:
    return TestClient(_starlette_app(**options), base_url=BASE)


def _fastapi(**options: Any) -> TestClient:
    api = FastAPI()

    @api.get("/login")
    def login(request: Request) -> str:
        auth.login(_s(request.session), "alice")
        return "ok"

    @api.get("/logout")
    async def logout(request: Request) -> str:
        auth.logout(_s(request.session))
        return "bye"

    options.setdefault("store", "memory://")
    return TestClient(asgi.SessionMiddleware(api, secret_keys=[KEY], **options), base_url=BASE)


class _Wsgi:
    """Werkzeug's client around satchel's WSGI middleware, with the TestClient's shape."""

    def __init__(self, app: Any) -> None:
        self.client = WerkzeugClient(app)

    def get(self, path: str) -> Any:
        return self.client.get(path, base_url=BASE)


def _wsgi(**options: Any) -> _Wsgi:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        path = environ["PATH_INFO"]
        if path == "/login":
            auth.login(session, "alice")
        elif path == "/logout":
            auth.logout(session)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    options.setdefault("store", "memory://")
    return _Wsgi(wsgi.SessionMiddleware(app, secret_keys=[KEY], **options))


def _flask(**options: Any) -> _Wsgi:
    from flask import Flask

    from satchel.integrations import flask as satchel_flask

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=options.pop("store", "memory://"))
    app.config.update({f"SATCHEL_{k.upper()}": v for k, v in options.items()})

    @app.get("/login")
    def login() -> str:
        satchel_flask.login_user("alice")
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        satchel_flask.logout_user()
        return "bye"

    satchel_flask.Satchel(app)
    return _Wsgi(app)


PATHS: dict[str, Callable[..., Any]] = {
    "asgi": _starlette,
    "fastapi": _fastapi,
    "wsgi": _wsgi,
    "flask": _flask,
}
STORES = ["memory://", "sqlite:///{tmp}/s.db", "cookie://"]


def _revocation(store: str, tmp: Any) -> dict[str, Any]:
    """Cookie sessions revoke through a store here: without one, logout sets the signed
    tombstone cookie, which "cookies" would clear (tests/test_attack_17.py)."""
    return {"revocation_store": f"sqlite:///{tmp}/rev.db"} if store == "cookie://" else {}


def _header(response: Any) -> str | None:
    value = response.headers.get("clear-site-data")
    return None if value is None else str(value)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_logout_clears_the_sites_cookies(path: str, store: str, tmp_path: Any) -> None:
    client = PATHS[path](store=store.format(tmp=tmp_path), **_revocation(store, tmp_path))
    assert _header(client.get("/login")) is None
    response = client.get("/logout")
    assert _header(response) == '"cookies"'
    assert "max-age=0" in response.headers["set-cookie"].lower()  # and the cookie expired


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_directives_are_configurable_and_can_be_turned_off(path: str) -> None:
    client = PATHS[path](clear_site_data=["cookies", '"storage"'])
    client.get("/login")
    assert _header(client.get("/logout")) == '"cookies", "storage"'
    client = PATHS[path](clear_site_data=[])
    client.get("/login")
    assert _header(client.get("/logout")) is None


@pytest.mark.parametrize("store", STORES)
def test_no_header_without_a_logout(store: str, tmp_path: Any) -> None:
    """A stale cookie deleted, an anonymous session ended, a plain write: no header."""
    client = _starlette(store=store.format(tmp=tmp_path))
    assert _header(client.get("/anon")) is None
    assert _header(client.get("/clear-anon")) is None  # anonymous: nothing of a user's
    client.get("/login")
    stale = client.cookies.get("satchel")
    client.get("/logout")
    client.cookies.set("satchel", str(stale), domain="127.0.0.1")
    response = client.get("/anon")  # a logged-out cookie replayed: a new session, no header
    assert _header(response) is None


@pytest.mark.parametrize("store", STORES)
def test_a_logout_that_sets_a_cookie_keeps_it(store: str, tmp_path: Any) -> None:
    """A flash message after the logout (a new session) or a login form on the logout
    page (the pre-session CSRF cookie): "cookies" would clear them too; the other
    directives are still sent."""
    url, more = store.format(tmp=tmp_path), _revocation(store, tmp_path)
    client = _starlette(store=url, clear_site_data=["cookies", "cache"], **more)
    client.get("/login")
    response = client.get("/logout-flash")
    assert _header(response) == '"cache"'
    assert client.get("/flashes").text == "You are signed out"  # the new session kept
    client.get("/login")
    response = client.get("/logout-form")
    assert _header(response) == '"cache"'
    assert "satchel_csrf=" in response.headers["set-cookie"]
    only_star = _starlette(store=url, clear_site_data=["*"], **more)
    only_star.get("/login")
    assert _header(only_star.get("/logout-flash")) is None
    only_star.get("/login")
    assert _header(only_star.get("/logout")) == '"*"'


def test_bearer_token_clients_get_no_header() -> None:
    client = _starlette(token_paths=["/"])
    token = client.get("/login").headers["x-session-token"]
    response = client.get("/logout", headers={"authorization": f"Bearer {token}"})
    assert _header(response) is None


@pytest.mark.parametrize(
    "value", [["cookie"], ["cookies", "everything"], "cookies", [""]], ids=repr
)
def test_unknown_directives_are_refused_at_start(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="clear_site_data"):
        _starlette(clear_site_data=value)


def test_the_setting_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from satchel.settings import load_settings

    monkeypatch.setenv("SATCHEL_SECRET_KEYS", KEY)
    monkeypatch.setenv("SATCHEL_CLEAR_SITE_DATA", "cookies,storage")
    assert load_settings(use_file=False).clear_site_data == ("cookies", "storage")
    monkeypatch.setenv("SATCHEL_CLEAR_SITE_DATA", "cookies,nonsense")
    with pytest.raises(ConfigurationError, match="clear_site_data"):
        load_settings(use_file=False).validate()


def test_in_chromium(chromium: Any) -> None:
    """The browser obeys it: after a logout the site's other cookies are gone; after a
    logout that stored a flash message (no "cookies" directive), the flash is there."""
    with serve_asgi(_starlette_app(clear_site_data=["cookies"])) as base:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(f"{base}/login")
        context.add_cookies([{"name": "theme", "value": "dark", "url": base}])
        assert page.goto(f"{base}/whoami").text() == "alice"
        page.goto(f"{base}/logout")
        assert context.cookies() == []  # satchel's expired, and the app's own cleared
        page.goto(f"{base}/login")
        context.add_cookies([{"name": "theme", "value": "dark", "url": base}])
        page.goto(f"{base}/logout-flash")
        assert {c["name"] for c in context.cookies()} == {"satchel", "theme"}
        assert page.goto(f"{base}/flashes").text() == "You are signed out"
        context.close()


def test_a_host_http_prefixed_cookie_works_in_chromium(chromium: Any) -> None:
    """``__Host-Http-`` (the prefix the docs recommend for new apps): Chromium keeps the
    session cookie, and its pre-session CSRF cookie, and sends them back."""
    app = _starlette_app(cookie_name="__Host-Http-sid")
    with serve_asgi(app) as base:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(f"{base}/logout-form")  # the pre-session cookie of a login form
        assert {c["name"] for c in context.cookies()} == {"__Host-Http-sid_csrf"}
        page.goto(f"{base}/login")
        assert page.goto(f"{base}/whoami").text() == "alice"
        names = {c["name"] for c in context.cookies()}
        assert names == {"__Host-Http-sid"}  # (the pre-session cookie ends with the login)
        context.close()


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_logout_response_varies_on_the_cookie_alone(path: str) -> None:
    """The session lines of a logout (the cookie's expiry, Clear-Site-Data) depend on the
    Cookie header only: Clear-Site-Data is not a bearer token, so no ``Authorization`` in
    Vary (each cache would keep a copy per token otherwise)."""
    client = PATHS[path]()
    client.get("/login")
    response = client.get("/logout")
    assert _header(response) == '"cookies"'
    varies = {v.strip().lower() for v in response.headers.get("vary", "").split(",")}
    assert varies == {"cookie"}
