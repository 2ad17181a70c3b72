"""Issue 11, second outside pass: the fixes of the first pass and their neighbourhood
(``use_bearer_token``, the one header rule, expiry limits, Flask's permanent lifetime).
Each test here fails on the code it was written against and states the behaviour a fix
must give."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from flask import Flask
from flask import session as flask_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from satchel import ConfigurationError, login
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.integrations.flask import Satchel, current_user_id, login_user
from satchel.request import csrf_token, use_bearer_token
from satchel.session import Session
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY, OLD_KEY
from .test_attack_issue11 import permanent_flask_app, run_django_probe

BASE = "https://testserver"
TOKEN = "x-session-token"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# -- 1. use_bearer_token() on a browser whose cookie session is due a token refresh -----------


async def _asgi_view(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    if request.url.path == "/web/login":
        login(session, "alice")
    elif request.url.path == "/api/login":  # an API login view, as docs/security.md says
        use_bearer_token(session)
        login(session, "bob")
    return JSONResponse({"user": session.user_id})


_ASGI_ROUTES = [Route(p, _asgi_view, methods=["GET", "POST"]) for p in ("/web/login", "/api/login")]


@pytest.mark.anyio
async def test_api_login_works_for_a_browser_whose_cookie_was_signed_by_a_retired_key(
    tmp_path: Path,
) -> None:
    """docs/security.md: "An API login view calls use_bearer_token(session) first: the
    session it creates is answered in the header even when the client also holds a
    browser cookie, whose session is left untouched." On ASGI the cookie session is opened
    before the app runs; when its token is due to be re-sent (made with a retired key
    after a rotation, or a persistent cookie whose lifetime moved), opening it queued the
    refresh, ``needs_commit`` is then true, and ``use_bearer_token()`` raises
    ``SessionStateError`` although the app changed nothing: every such browser gets a 500
    from the API login. The refresh belongs to the cookie session the request no longer
    sees; it must not count as a change by the app."""
    url = f"sqlite:///{tmp_path}/s.db"
    before = ASGIMiddleware(Starlette(routes=_ASGI_ROUTES), url, secret_keys=[OLD_KEY], csrf=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=before), base_url=BASE) as c:
        assert (await c.post("/web/login")).status_code == 200
        cookie = c.cookies["satchel"]
    assert before.store is not None
    await before.store.aclose()

    rotated = ASGIMiddleware(
        Starlette(routes=_ASGI_ROUTES),
        url,
        secret_keys=[KEY, OLD_KEY],
        token_paths=["/api/"],
        csrf=False,
    )
    transport = httpx.ASGITransport(app=rotated, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
        browser.cookies.set("satchel", cookie)
        response = await browser.post("/api/login")
    assert rotated.store is not None
    await rotated.store.aclose()
    assert response.status_code == 200
    assert response.json() == {"user": "bob"}
    assert response.headers.get(TOKEN)
    assert cookie.partition(".")[0] not in response.headers[TOKEN]
    assert "set-cookie" not in response.headers  # the browser's session is left as it is


def _wsgi_view(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    body: dict[str, Any] = {}
    if path == "/web/login":
        login(session, "alice")
        body = {"csrf": csrf_token(environ)}
    elif path == "/api/login":
        use_bearer_token(session)
        login(session, "bob")
        body = {"user": session.user_id}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def test_wsgi_api_login_works_for_a_browser_whose_persistent_cookie_is_due_a_refresh(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The same on WSGI: a browser holding a persistent session cookie posts to the API
    login with its CSRF token (a request that carries the cookie must pass CSRF, so the
    check opens the cookie session before the view). Some minutes after its last visit
    the open records the visit and queues the cookie's new Max-Age; ``use_bearer_token()``
    then raises and the login answers 500."""
    app = WSGIMiddleware(
        _wsgi_view,
        f"sqlite:///{tmp_path}/s.db",
        secret_keys=[KEY],
        token_paths=["/api/"],
        cookie_persistent=True,
        csrf_exempt=["/web/login"],
    )
    app.backend.clock = clock
    transport = httpx.WSGITransport(app=app, raise_app_exceptions=False)
    with httpx.Client(transport=transport, base_url=BASE) as browser:
        first = browser.post("/web/login")
        assert first.status_code == 200
        token = first.json()["csrf"]
        clock.advance(600)  # past the refresh interval (a tenth of the 30 min idle timeout)
        response = browser.post("/api/login", headers={"x-csrf-token": token, "origin": BASE})
    assert app.store is not None
    app.store.close()
    assert response.status_code == 200
    assert response.json() == {"user": "bob"}
    assert response.headers.get(TOKEN)


# -- 2. cache directives that outrank Cache-Control --------------------------------------------


async def _accel_view(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    session["cart"] = ["book"]  # an API client's first call: its new session's token
    # nginx micro-caching of the API, as its docs show it
    return JSONResponse({"ok": True}, headers={"X-Accel-Expires": "60"})


@pytest.mark.anyio
async def test_a_response_carrying_a_token_drops_x_accel_expires(tmp_path: Path) -> None:
    """A response that carries a session token is made ``Cache-Control: no-store``, and
    the first pass dropped the CDN directives that outrank it. nginx's
    ``X-Accel-Expires`` outranks it too ("has priority over Expires and Cache-Control",
    nginx's proxy_cache_valid docs), and nginx refuses to cache only a response with
    ``Set-Cookie``: an ``X-Session-Token`` response is cached, and the next API client's
    first call is answered with the first client's session token."""
    app = ASGIMiddleware(
        Starlette(routes=[Route("/api/cart", _accel_view)]),
        f"sqlite:///{tmp_path}/s.db",
        secret_keys=[KEY],
        token_paths=["/api/"],
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        response = await c.get("/api/cart")
    assert app.store is not None
    await app.store.aclose()
    assert response.headers.get(TOKEN)
    assert response.headers["cache-control"] == "no-store"
    assert "x-accel-expires" not in response.headers


# -- 3. Django: the header rule's CDN directives --------------------------------------------------

_DJANGO_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("example_django_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # ROOT_URLCONF names it
spec.loader.exec_module(module)
from django.http import JsonResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

@csrf_exempt
def cached_note(request):
    request.session["colour"] = "blue"  # a new session: Set-Cookie: sessionid=...
    response = JsonResponse({"ok": True})
    response["CDN-Cache-Control"] = "public, max-age=600"
    response["Surrogate-Control"] = "max-age=600"
    response["Cache-Control"] = "public, max-age=600"
    return response

module.urlpatterns.append(path("cached-note", cached_note))
response = Client(HTTP_HOST="testserver").post("/cached-note", secure=True)
print(json.dumps({"status": response.status_code, "cookies": sorted(response.cookies),
                  "headers": {k.lower(): v for k, v in response.headers.items()}}))
"""


def test_django_responses_that_set_the_session_cookie_drop_cdn_cache_directives(
    tmp_path: Path,
) -> None:
    """The first pass's fix drops ``CDN-Cache-Control`` and ``Surrogate-Control`` on every
    path, and Django's ``DeviceMiddleware`` now applies the header rule -- but it copies
    back only ``Vary`` and ``Cache-Control`` from it: the CDN directives the rule dropped
    stay on the Django response, and the CDN caches the ``Set-Cookie: sessionid=...``."""
    response = run_django_probe(_DJANGO_PROBE, tmp_path)
    assert response["status"] == 200
    assert "sessionid" in response["cookies"]
    headers = response["headers"]
    assert headers["cache-control"] == "no-store"
    assert "cdn-cache-control" not in headers
    assert "surrogate-control" not in headers


# -- 4. finite timeouts no store can hold ---------------------------------------------------------


async def _long_expiry(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    login(session, f"user-{uuid.uuid4().hex}")
    try:  # e.g. "remember me for N days", N from a form
        session.set_expiry(idle_timeout=1e16, absolute_timeout=1e16, persistent=True)
    except ConfigurationError:
        return JSONResponse({"refused": True}, status_code=400)
    return JSONResponse({"user": session.user_id})


@pytest.mark.anyio
async def test_a_finite_timeout_the_redis_store_cannot_hold_is_refused_at_the_call(
    redis_url: str,
) -> None:
    """Timeouts must be "positive and finite: refused at the call and at configuration".
    ``set_expiry(idle_timeout=1e16)`` is finite and accepted, and the memory, SQLite, file,
    PostgreSQL and MariaDB stores hold it; Redis cannot (``PEXPIREAT`` in milliseconds
    overflows): every commit of that session fails, the login answers 503 and is lost,
    and the app never learns why. A limit every store can hold must be refused where the
    value enters (the call, and the settings), or the store must clamp the TTL."""
    prefix = f"attack2-{uuid.uuid4().hex[:8]}:"
    app = ASGIMiddleware(
        Starlette(routes=[Route("/login", _long_expiry, methods=["POST"])]),
        f"{redis_url}?prefix={prefix}",
        secret_keys=[KEY],
        csrf=False,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        response = await c.post("/login")
    assert app.store is not None
    await app.store.aclose()
    _drop_redis_keys(redis_url, prefix)
    assert response.status_code != 503
    if response.status_code == 200:  # stored after all: the session must then be there
        assert "satchel" in response.cookies


@pytest.mark.anyio
async def test_a_timeout_setting_the_redis_store_cannot_hold_is_refused_at_configuration(
    redis_url: str,
) -> None:
    """The same limit from configuration: ``idle_timeout``/``absolute_timeout`` of 1e16
    seconds pass the settings check, and then every new session on Redis fails with 503.
    Refuse it at start (as non-finite values are), or hold it."""
    prefix = f"attack2-{uuid.uuid4().hex[:8]}:"
    try:
        app = ASGIMiddleware(
            Starlette(routes=_ASGI_ROUTES),
            f"{redis_url}?prefix={prefix}",
            secret_keys=[KEY],
            csrf=False,
            idle_timeout=1e16,
            absolute_timeout=1e16,
        )
    except ConfigurationError:
        return  # refused at start: fine
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        response = await c.post("/web/login")
    assert app.store is not None
    await app.store.aclose()
    _drop_redis_keys(redis_url, prefix)
    assert response.status_code != 503


def _drop_redis_keys(redis_url: str, prefix: str) -> None:
    """Records stored once this is fixed would outlive the shared server's other users."""
    client = redis.Redis.from_url(redis_url)
    try:
        for name in client.scan_iter(match=f"{prefix}*"):
            client.delete(name)
    finally:
        client.close()


# -- 5. Flask: PERMANENT_SESSION_LIFETIME over an explicit idle timeout ----------------------------


def test_flask_permanent_lifetime_never_lifts_an_explicit_idle_timeout(
    tmp_path: Path, clock: FakeClock
) -> None:
    """docs/configuration.md: "Precedence, highest first: an argument of Satchel(...), a
    SATCHEL_* key in app.config, Flask's own setting, satchel's default." The first pass
    capped ``PERMANENT_SESSION_LIFETIME`` by an explicit ``absolute_timeout`` only: with
    the operator's ``SATCHEL_IDLE_TIMEOUT = 900`` (log out after 15 idle minutes) and a
    legacy ``PERMANENT_SESSION_LIFETIME = 7 days``, ``session.permanent = True`` makes the
    session's idle timeout the lifetime (capped at the absolute 12 h): left unattended for
    hours, it is still signed in. Either refuse the clash at start, or let the explicit
    idle timeout hold."""
    app = permanent_flask_app(
        tmp_path, clock, SATCHEL_IDLE_TIMEOUT=900, SATCHEL_ABSOLUTE_TIMEOUT=12 * 3600
    )
    if app is None:
        return  # refused loudly: fine
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        assert client.post("/login").status_code == 200
        clock.advance(3600)  # an hour unattended: four times the idle timeout
        after = client.get("/me").json()
    app.extensions["satchel"]["runtime"].store.close()
    assert after == {"user": None}


# -- 6. Django: expiry alone on an anonymous request ---------------------------------------------

_DJANGO_EXPIRY_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("example_django_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # ROOT_URLCONF names it
spec.loader.exec_module(module)
from django.http import HttpResponse
from django.test import Client
from django.urls import path

def public_page(request):
    request.session.set_expiry(0)  # "expire at browser close", set on every request
    return HttpResponse("a public page")

module.urlpatterns.append(path("public", public_page))
out = []
for _ in range(3):  # three visitors without a cookie
    response = Client(HTTP_HOST="testserver").get("/public", secure=True)
    out.append({"status": response.status_code, "cookies": sorted(response.cookies)})
print(json.dumps(out))
"""


def test_django_expiry_alone_stores_nothing_for_anonymous_visitors(tmp_path: Path) -> None:
    """The first pass's fix: "Expiry alone does not make a new session worth storing:
    data or a login does" (Flask's ``session.permanent = True`` on every request). On
    Django, ``request.session.set_expiry(0)`` on a cookie-less request still creates a
    store record, sets ``sessionid`` and makes the public page ``no-store``: one INSERT
    per anonymous GET, as before the fix on Flask. (Django's own backends store
    ``_session_expiry`` in the data and behave so too; satchel's ``is_empty`` counts a
    pending expiry choice as content.)"""
    responses = run_django_probe(_DJANGO_EXPIRY_PROBE, tmp_path)
    assert [r["status"] for r in responses] == [200] * 3
    assert [r["cookies"] for r in responses] == [[]] * 3
    with sqlite3.connect(tmp_path / "sessions.db") as db:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = sum(db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in tables)
    assert rows == 0


# -- 7. token_paths under a mount: ASGI and WSGI disagree ------------------------------------------


async def _mounted_asgi_login(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    login(session, "bob")
    return JSONResponse({"user": session.user_id})


def _mounted_wsgi_login(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    login(environ[ENVIRON_KEY], "bob")
    start_response("200 OK", [("content-type", "application/json")])
    return [b"{}"]


def _never(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    raise AssertionError("only /v1 is served")


async def _asgi_mounted_gets_header_token(token_paths: list[str]) -> bool:
    inner = ASGIMiddleware(
        Starlette(routes=[Route("/api/login", _mounted_asgi_login, methods=["POST"])]),
        "memory://",
        secret_keys=[KEY],
        token_paths=token_paths,
    )
    outer = Starlette(routes=[Mount("/v1", app=inner)])  # the app behind a /v1 prefix
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url=BASE) as c:
        response = await c.post("/v1/api/login")
    return response.status_code == 200 and TOKEN in response.headers


def _wsgi_mounted_gets_header_token(token_paths: list[str]) -> bool:
    app = WSGIMiddleware(
        _mounted_wsgi_login, "memory://", secret_keys=[KEY], token_paths=token_paths
    )
    outer = DispatcherMiddleware(_never, {"/v1": app})  # SCRIPT_NAME=/v1, PATH_INFO=/api/...
    with httpx.Client(transport=httpx.WSGITransport(app=outer), base_url=BASE) as client:
        response = client.post("/v1/api/login")
    return response.status_code == 200 and TOKEN in response.headers


@pytest.mark.anyio
@pytest.mark.parametrize("token_paths", [["/api"], ["/v1/api"]])
async def test_token_paths_mean_the_same_for_a_mounted_asgi_and_wsgi_app(
    token_paths: list[str],
) -> None:
    """An API client's first call (no cookie, no token) to ``/v1/api/login`` on an app
    served below ``/v1``. WSGI matches ``token_paths`` against ``PATH_INFO`` (relative to
    ``SCRIPT_NAME``: a dispatcher or gunicorn gives ``SCRIPT_NAME=/v1``,
    ``PATH_INFO=/api/login``), ASGI against ``scope["path"]``, which under a Starlette
    ``Mount`` and under ``uvicorn --root-path`` includes the prefix: the same setting
    that gives the WSGI app header tokens gives the ASGI app the cookie transport, so its
    API clients' first calls are refused by CSRF (403) and their bearer tokens are never
    read. One meaning on both (relative to the app's root, as ``PATH_INFO`` is), or a
    documented one that both follow."""
    asgi = await _asgi_mounted_gets_header_token(token_paths)
    wsgi = _wsgi_mounted_gets_header_token(token_paths)
    assert asgi == wsgi


def test_flask_api_login_with_the_permanent_idiom_works_for_a_browser_with_a_stale_cookie(
    tmp_path: Path,
) -> None:
    """The same root cause on Flask's everyday idiom, ``session.permanent = True`` in
    ``before_request``: for a browser whose cookie names a session the server no longer
    holds (it expired, or was revoked by "log out everywhere" on another device), the
    idiom queues an expiry change on the new, empty session before the view runs; the API
    login's ``use_bearer_token()`` then raises and answers 500 (and once the browser's
    persistent session is due a refresh, a live cookie does the same). The expiry the app
    queued for the browser's session has nothing to do with the header session the API
    login starts."""
    app = Flask(__name__)
    app.config.update(
        SATCHEL_STORE=f"sqlite:///{tmp_path}/flask.db",
        SATCHEL_SECRET_KEYS=[KEY],
        SATCHEL_TOKEN_PATHS=["/api"],
    )
    satchel = Satchel(app)

    @app.before_request
    def make_permanent() -> None:
        flask_session.permanent = True

    @app.post("/api/login")
    @satchel.exempt  # an API view, as the first pass's tests write it
    def api_login() -> dict[str, Any]:
        use_bearer_token(cast(Session, flask_session))
        login_user("bob")
        return {"user": current_user_id()}

    elsewhere = WSGIMiddleware(
        _wsgi_view, f"sqlite:///{tmp_path}/other.db", secret_keys=[KEY], csrf=False
    )
    with httpx.Client(transport=httpx.WSGITransport(app=elsewhere), base_url=BASE) as browser:
        browser.post("/web/login")
        stale = browser.cookies["satchel"]  # signed with the key, unknown to the Flask app
    assert elsewhere.store is not None
    elsewhere.store.close()

    transport = httpx.WSGITransport(app=app, raise_app_exceptions=False)
    with httpx.Client(transport=transport, base_url=BASE) as browser:
        browser.cookies.set("satchel", stale)
        response = browser.post("/api/login")
    app.extensions["satchel"]["runtime"].store.close()
    assert response.status_code == 200
    assert response.json() == {"user": "bob"}
    assert response.headers.get(TOKEN)
