"""Issue 15, "Errors that say what to do": the CSRF refusal (an app-replaceable handler on
every path; an HTML page with advice for browsers, JSON with a machine-readable reason for
API clients), plain http to a non-loopback host named as the cause (log warning once,
and on the refusal page), and a cookie that names no live session deleted from the
browser on the next response."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from flask import session as flask_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel import MemoryStore, csrf_failure
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.auth import login, logout
from satchel.cookie import CookieStore
from satchel.errors import CSRFError
from satchel.integrations.fastapi import CSRFProtected, csrf_exception_handler
from satchel.integrations.flask import Satchel
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import session_of

JSON = {"accept": "application/json"}


# -- the apps: the same routes on ASGI, WSGI and Flask ----------------------------------------


def _starlette() -> Starlette:
    async def form(request: Request) -> Response:
        from satchel.request import csrf_token

        return PlainTextResponse(csrf_token(request))

    async def do_login(request: Request) -> Response:
        login(session_of(request), "alice")
        return PlainTextResponse("in")

    async def do_logout(request: Request) -> Response:
        logout(session_of(request))
        return PlainTextResponse("out")

    async def me(request: Request) -> Response:
        return JSONResponse({"user": session_of(request).user_id})

    async def post(request: Request) -> Response:
        return PlainTextResponse("posted")

    return Starlette(
        routes=[
            Route("/form", form),
            Route("/login", do_login),
            Route("/logout", do_logout),
            Route("/me", me),
            Route("/post", post, methods=["POST"]),
        ]
    )


def asgi(base_url: str = "https://testserver", **options: Any) -> TestClient:
    options.setdefault("store", MemoryStore())
    app = SessionMiddleware(_starlette(), secret_keys=[KEY], **options)
    return TestClient(app, base_url=base_url)


def _wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    from satchel.request import csrf_token

    session = environ["satchel.session"]
    path = environ["PATH_INFO"]
    body = "posted"
    if path == "/form":
        body = csrf_token(environ)
    elif path == "/login":
        session.regenerate()
        session.bind_user("alice")
        body = "in"
    elif path == "/logout":
        session.destroy()
        body = "out"
    elif path == "/me":
        body = str(session.user_id)
    start_response("200 OK", [("content-type", "text/plain")])
    return [body.encode()]


def wsgi(base_url: str = "https://testserver", **options: Any) -> httpx.Client:
    options.setdefault("store", MemoryStore())
    app = WSGISessionMiddleware(_wsgi_app, secret_keys=[KEY], **options)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base_url)


def flask_app(handler: Callable[[CSRFError], Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SATCHEL_STORE="memory://", SATCHEL_SECRET_KEYS=[KEY])
    if handler is not None:
        app.register_error_handler(CSRFError, handler)
    Satchel(app)

    @app.get("/form")
    def form() -> str:
        from flask import request

        from satchel.request import csrf_token

        return csrf_token(request.environ)

    @app.post("/post")
    def post() -> str:
        return "posted"

    @app.get("/me")
    def me() -> str:
        return str(flask_session.get("x"))

    return app


def flask(base_url: str = "https://testserver") -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=flask_app()), base_url=base_url)


CLIENTS: dict[str, Callable[..., Any]] = {"asgi": asgi, "wsgi": wsgi, "flask": flask}


# -- the default refusal ----------------------------------------------------------------------


@pytest.mark.parametrize("path", list(CLIENTS))
def test_a_browser_gets_a_page_with_advice(path: str) -> None:
    client = CLIENTS[path]()
    response = client.post("/post", headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    assert "Go back, reload the form and submit it again" in text
    assert "logged out or logged in in another tab" in text
    assert "CSRF token missing" in text


@pytest.mark.parametrize("path", list(CLIENTS))
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "token_missing"),
        ({"x-csrf-token": "x" * 40}, "token_invalid"),
        ({"origin": "https://evil.example"}, "origin"),
        ({"sec-fetch-site": "cross-site"}, "fetch_site"),
    ],
)
def test_an_api_client_gets_json_with_a_reason(
    path: str, headers: dict[str, str], reason: str
) -> None:
    response = CLIENTS[path]().post("/post", headers={**JSON, **headers})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "csrf"
    assert body["reason"] == reason
    assert body["message"]
    assert "insecure_transport" not in body  # https here


def _custom_asgi(scope: Any, receive: Any, send: Any) -> Any:
    failure = scope["satchel.csrf_failure"]
    return PlainTextResponse(f"mine: {failure.reason}", status_code=419)(scope, receive, send)


def _custom_wsgi(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("419 Expired", [("content-type", "text/plain")])
    return [f"mine: {environ['satchel.csrf_failure'].reason}".encode()]


def test_the_refusal_is_replaceable_on_every_path() -> None:
    replies: list[Any] = [
        asgi(on_csrf_failure=_custom_asgi).post("/post"),
        wsgi(on_csrf_failure=_custom_wsgi).post("/post"),
    ]

    def flask_handler(exc: CSRFError) -> Any:
        return f"mine: {exc.failure.reason}", 419

    app = flask_app(flask_handler)
    replies.append(
        httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://t").post("/post")
    )
    for reply in replies:
        assert (reply.status_code, reply.text) == (419, "mine: token_missing")


def test_a_flask_handler_registered_after_the_extension_wins() -> None:
    app = flask_app()
    app.register_error_handler(CSRFError, lambda exc: ("later", 400))
    reply = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://t").post("/post")
    assert (reply.status_code, reply.text) == (400, "later")


def _fastapi(handler: bool) -> TestClient:
    api = FastAPI()

    @api.post("/checked", dependencies=[CSRFProtected])
    async def checked() -> dict[str, str]:
        return {"ok": "yes"}

    if handler:
        api.add_exception_handler(CSRFError, csrf_exception_handler)
    app = SessionMiddleware(api, store=MemoryStore(), secret_keys=[KEY], csrf=False)
    return TestClient(app, base_url="https://testserver")


def test_fastapi_dependency_refuses_with_a_reason_and_is_replaceable() -> None:
    plain = _fastapi(handler=False).post("/checked")
    assert plain.status_code == 403
    assert plain.json()["detail"]["reason"] == "token_missing"
    assert "CSRF token missing" in plain.text
    page = _fastapi(handler=True).post("/checked", headers={"accept": "text/html"})
    assert page.status_code == 403
    assert "Go back, reload the form" in page.text
    api = _fastapi(handler=True).post("/checked", headers=JSON)
    assert api.json()["reason"] == "token_missing"


# -- plain http to a host that is not loopback ------------------------------------------------


@pytest.fixture
def fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning is once per process: start each test before it."""
    import threading

    monkeypatch.setattr(csrf_failure, "_warned", threading.Event())


@pytest.mark.parametrize("path", list(CLIENTS))
def test_plain_http_to_a_named_host_is_named_as_the_cause(
    path: str, fresh_warning: None, caplog: pytest.LogCaptureFixture
) -> None:
    """TestClient's default base URL (``http://testserver``): the Secure cookies are
    dropped, so the form's post fails; the page and the log say why."""
    client = CLIENTS[path]("http://testserver")
    with caplog.at_level(logging.WARNING, logger="satchel"):
        token = client.get("/form").text  # sets the Secure pre-session cookie
        client.get("/form")
    warnings = [r for r in caplog.records if "plain-http" in r.getMessage()]
    assert len(warnings) == 1  # once per process
    assert "cookie_secure=False" in warnings[0].getMessage()
    assert "'testserver'" in warnings[0].getMessage()
    response = client.post("/post", headers={"x-csrf-token": token, "accept": "text/html"})
    assert response.status_code == 403
    assert "set cookie_secure=False" in response.text
    assert "serve the site over https" in response.text
    api = client.post("/post", headers={"x-csrf-token": token, **JSON}).json()
    assert api["insecure_transport"] is True
    assert "cookie_secure=False" in api["advice"]


@pytest.mark.parametrize("host", ["http://testserver", "http://192.168.1.20:8000", "http://web"])
def test_starlette_testclient_default_base_url(host: str, fresh_warning: None) -> None:
    client = TestClient(
        SessionMiddleware(_starlette(), store=MemoryStore(), secret_keys=[KEY]), base_url=host
    )
    client.get("/login")
    assert client.get("/me").json() == {"user": None}  # the Secure cookie never came back
    assert csrf_failure.warned_insecure_transport()


@pytest.mark.parametrize(
    "base", ["http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000", "https://web"]
)
def test_loopback_and_https_are_not_warned_about(base: str, fresh_warning: None) -> None:
    client = asgi(base)
    client.get("/login")
    assert not csrf_failure.warned_insecure_transport()
    assert client.post("/post", headers=JSON).json().get("insecure_transport") is None


def test_no_warning_without_secure_cookies(fresh_warning: None) -> None:
    client = asgi("http://testserver", cookie_secure=False)
    client.get("/login")
    assert client.get("/me").json() == {"user": "alice"}
    assert not csrf_failure.warned_insecure_transport()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("app.localhost:3000", True),
        ("127.0.0.1:8000", True),
        ("127.9.9.9", True),
        ("[::1]:8000", True),
        ("::1", True),
        ("testserver", False),
        ("10.0.0.5:8000", False),
        ("[2001:db8::1]", False),
        ("localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert csrf_failure.is_loopback(host) is loopback


# -- a cookie that names no live session is deleted -------------------------------------------


def _deleted(response: Any) -> bool:
    return any(
        line.startswith("satchel=;") and "Max-Age=0" in line
        for line in response.headers.get_list("set-cookie")
    )


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
@pytest.mark.parametrize("store", ["server", "cookie"])
def test_a_logged_out_cookie_is_deleted_on_the_next_response(path: str, store: str) -> None:
    revocations = MemoryStore()
    options: dict[str, Any] = {}
    if store == "cookie":
        options = {"store": CookieStore(), "revocation_store": revocations}
    client = CLIENTS[path](**options)
    client.get("/login")
    old = client.cookies["satchel"]
    client.get("/logout")
    # the browser kept a copy (or the logout's deletion was lost): it is deleted again
    client.cookies.clear()
    response = client.get("/me", headers={"cookie": f"satchel={old}"})
    assert response.text in ('{"user":null}', "None")
    assert _deleted(response)


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
def test_a_background_request_never_deletes_the_cookie(path: str) -> None:
    """A page's fetch or polling request still carrying the cookie a login in another tab
    has just replaced must not delete the new one: only a page load (or a client that sends
    no Sec-Fetch-Mode) deletes a dead cookie."""
    client = CLIENTS[path]()
    client.get("/login")
    old = client.cookies["satchel"]
    client.get("/logout")
    client.cookies.clear()
    for mode in ("cors", "same-origin", "no-cors", "websocket"):
        response = client.get("/me", headers={"cookie": f"satchel={old}", "sec-fetch-mode": mode})
        assert not _deleted(response), mode
    page = client.get("/me", headers={"cookie": f"satchel={old}", "sec-fetch-mode": "navigate"})
    assert _deleted(page)


def test_a_revoked_cookie_session_is_deleted(security_log: pytest.LogCaptureFixture) -> None:
    """Cookie sessions with a revocation store: a copy made before "log out everywhere"
    is deleted by the next response, so it is not presented (and logged) again."""
    revocations = MemoryStore()
    app = SessionMiddleware(
        _starlette(), store=CookieStore(), secret_keys=[KEY], revocation_store=revocations
    )
    laptop = TestClient(app, base_url="https://testserver")
    laptop.get("/login")
    stolen = laptop.cookies["satchel"]
    laptop.get("/logout")  # writes the user's revocation marker
    phone = TestClient(app, base_url="https://testserver")
    response = phone.get("/me", headers={"cookie": f"satchel={stolen}"})
    assert response.json() == {"user": None}
    assert _deleted(response)


def test_an_expired_cookie_is_deleted_and_a_login_replaces_it(clock: Any) -> None:
    client = asgi(idle_timeout=60, absolute_timeout=600, clock=clock)
    client.get("/login")
    clock.advance(61)
    response = client.get("/me")
    assert response.json() == {"user": None}
    assert _deleted(response)
    assert "satchel" not in client.cookies
    # a request that stores a new session sends its token, not a deletion
    client.get("/login")
    clock.advance(61)
    client.cookies.clear()
    stale = client.get("/login")
    assert not _deleted(stale)


def test_flask_deletes_a_stale_cookie(clock: Any) -> None:
    app = flask_app()

    @app.get("/set")
    def set_() -> str:
        flask_session["x"] = 1
        return "set"

    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://testserver")
    client.get("/set")
    cookie = client.cookies["satchel"]
    store = app.extensions["satchel"]["runtime"].store
    for key, _ in list(store.iter_sessions(0)):
        store.delete(key)
    response = client.get("/me", headers={"cookie": f"satchel={cookie}"})
    assert response.text == "None"
    assert _deleted(response)


_DJANGO = """
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="x" * 50,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    SESSION_ENGINE="satchel.integrations.django",
    SATCHEL={"store": "memory://"},
)
django.setup()
from django.http import HttpResponse
from django.urls import path

def set_(request):
    request.session["x"] = 1
    return HttpResponse("set")

def read(request):
    return HttpResponse(str(request.session.get("x")))

urlpatterns = [path("set", set_), path("read", read)]
from django.test import Client
from satchel.integrations.django_config import runtime

client = Client()
client.get("/set")
store, _ = runtime()
for key, _ in list(store.iter_sessions(0)):
    store.delete(key)  # revoked elsewhere
response = client.get("/read")
print(response.content.decode(), response.cookies["sessionid"]["max-age"])
"""


def test_django_deletes_a_stale_cookie_too() -> None:
    """Django's own SessionMiddleware deletes the cookie of a session that loads empty:
    satchel's engine reports a missing record as an empty session, so it does."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _DJANGO], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "None 0", done.stderr
