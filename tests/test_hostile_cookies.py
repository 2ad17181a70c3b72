"""Hostile cookie values never cause a 500: a malformed session cookie (non-ASCII after the
key ID, NUL, latin-1 bytes that look like UTF-8 surrogates, very long, too many dots) is
simply "no session", and a bad value tossed before a valid one (a sibling subdomain can set
a cookie of the same name) does not lock the victim out: the next value is still tried.

Checked through ASGI (Starlette, FastAPI), WSGI and Flask, with server-side sessions and
the cookie store; CSRF tokens and the pre-session cookie get the same treatment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from satchel import MemoryStore
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.cookie import CookieBackend
from satchel.cookies import CookieOptions
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.integrations.fastapi import CurrentSession
from satchel.keyring import PURPOSE_COOKIE, Keyring
from satchel.transport import CookieTransport
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .helpers import set_cookie_value
from .test_corrupt_records import ROUTES
from .test_corrupt_records import wsgi_app as put_and_read_wsgi

BASE = "https://testserver"
KID = Keyring([KEY]).current_kid


def crafted(valid: str) -> list[bytes]:
    """Malformed variants of a valid cookie value ``valid`` (``id.kid+mac`` or a cookie-store
    value), as the raw bytes a client can put in a Cookie header."""
    head, _, _ = valid.rpartition(".")
    return [
        f"{head}.{KID}é".encode("latin-1"),  # non-ASCII right after the key ID
        f"{head}.{KID}é".encode(),  # the same, UTF-8 on the wire
        f"{head}.{KID}{'é' * 22}".encode("latin-1"),  # the exact length, non-ASCII
        f"{head}.{KID}{'ü' * 22}".encode(),
        f"{head}.{KID}\x00{'A' * 21}".encode(),  # NUL
        f"{head}.{KID}".encode() + b"\xed\xa0\x80" * 7 + b"A",  # UTF-8 of a surrogate
        f"{head}.{KID}".encode() + b"\xff\xfe" * 11,
        valid.encode() + b"\x00",
        valid.encode() + b"A" * 20_000,  # very long
        f"{head}.{KID}{'A' * 22}.x.y.z".encode(),  # too many dots
        valid.encode().replace(b".", b"..", 1),
        b"." * 50,
        b"\xe9" * 60,
        b"",
    ]


def header(*values: bytes) -> bytes:
    return b"; ".join(b"satchel=" + v for v in values)


class Latin1WSGITransport(httpx.BaseTransport):
    """Calls a WSGI app as real servers do (PEP 3333): header bytes decoded as latin-1.
    (httpx's own WSGITransport decodes ASCII only, so it cannot send the bytes tested here.)"""

    def __init__(self, app: Any) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        import io

        body = request.read()
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": request.url.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": request.url.path,
            "QUERY_STRING": request.url.query.decode("ascii"),
            "SERVER_NAME": request.url.host,
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
        }
        for name, value in request.headers.raw:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = value.decode("latin-1")
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return httpx.Response(int(status[:3]), headers=headers, content=content)


# -- the apps -----------------------------------------------------------------------------


# /put?who= stores a value, /read shows it: the apps tests/test_corrupt_records.py uses


def asgi_app(store: Any) -> ASGIMiddleware:
    return ASGIMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[KEY], csrf=False)


def fastapi_app(store: Any) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/put")
    def put(session: CurrentSession, who: str) -> str:
        session["who"] = who
        return "ok"

    @app.get("/read")
    def read(session: CurrentSession) -> dict[str, Any]:
        return {"who": session.get("who"), "new": session.new}

    return ASGIMiddleware(app, store=store, secret_keys=[KEY], csrf=False)


def wsgi_app(store: Any) -> WSGIMiddleware:
    return WSGIMiddleware(put_and_read_wsgi, store=store, secret_keys=[KEY], csrf=False)


def flask_app(store: Any) -> Any:
    from flask import Flask, jsonify, request, session

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)

    @app.get("/put")
    def put() -> str:
        session["who"] = request.args["who"]
        return "ok"

    @app.get("/read")
    def read() -> Any:
        current = session._get_current_object()  # type: ignore[attr-defined]
        return jsonify(who=session.get("who"), new=current.new)

    Satchel(app, store=store, secret_keys=[KEY], csrf=False)
    return app


Kind = tuple[str, Callable[[Any], Any], bool]
APPS: list[Kind] = [
    ("asgi", asgi_app, True),
    ("fastapi", fastapi_app, True),
    ("wsgi", wsgi_app, False),
    ("flask", flask_app, False),
]
STORES = {"memory": "memory://", "cookie": "cookie://", "signed-cookie": "cookie://?signed=1"}


@pytest.fixture(params=[(a, s) for a in APPS for s in STORES], ids=lambda p: f"{p[0][0]}-{p[1]}")
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    (_, make_app, is_asgi), store_name = request.param
    app = make_app(STORES[store_name])
    if is_asgi:
        from starlette.testclient import TestClient

        with TestClient(app, base_url=BASE) as c:
            yield c
    else:
        with httpx.Client(transport=Latin1WSGITransport(app), base_url=BASE) as c:
            yield c


def open_session(client: httpx.Client, who: str = "victim") -> str:
    response = client.get("/put", params={"who": who})
    assert response.status_code == 200
    value = set_cookie_value(response.headers)
    assert value is not None
    client.cookies.clear()
    return value


def read(client: httpx.Client, cookie: bytes) -> Any:
    response = client.get("/read", headers={b"cookie": cookie})
    assert response.status_code == 200, response.text
    return response.json()


# -- the tests ----------------------------------------------------------------------------


def test_malformed_cookie_values_give_a_fresh_session_never_a_500(
    client: httpx.Client, security_log: pytest.LogCaptureFixture
) -> None:
    valid = open_session(client)
    assert read(client, header(valid.encode())) == {"who": "victim", "new": False}
    for bad in crafted(valid):
        assert read(client, header(bad)) == {"who": None, "new": True}, bad[:80]
    assert any(r.name == "satchel.security" for r in security_log.records)


def test_a_tossed_bad_cookie_before_a_valid_one_does_not_lock_the_victim_out(
    client: httpx.Client,
) -> None:
    valid = open_session(client)
    for bad in crafted(valid):
        assert read(client, header(bad, valid.encode())) == {"who": "victim", "new": False}
        assert read(client, header(bad, bad, valid.encode(), bad))["who"] == "victim"


def test_keyring_verify_never_raises_and_checks_the_exact_format() -> None:
    keyring = Keyring([KEY])
    message = "m" * 43
    signature = keyring.sign(PURPOSE_COOKIE, message)
    assert keyring.verify(PURPOSE_COOKIE, message, signature)
    for bad in [
        signature[:8] + "é",
        signature[:8] + "é" * 22,
        signature + "\x00",
        signature[:-1] + "\udc80",
        signature[:-1] + "B",  # not the canonical encoding of 16 bytes
        signature + "A",
        signature[:8],
        "",
    ]:
        assert not keyring.verify(PURPOSE_COOKIE, message, bad), bad
    assert not keyring.verify(PURPOSE_COOKIE, "é" * 43, signature)


# -- CSRF tokens and the pre-session cookie ---------------------------------------------


async def form(request: Request) -> Response:
    from satchel.integrations.starlette import csrf_token

    return PlainTextResponse(csrf_token(request))


async def post(request: Request) -> Response:
    return PlainTextResponse("posted")


FORM = {"content-type": "application/x-www-form-urlencoded"}
TOKENS = [
    "é" * 86,
    "A" * 85 + "é",
    "\x00" * 86,
    "\udc80" * 86,
    "A" * 10_000,
    "....",
    "A" * 86 + ".A",
]


@pytest.fixture
def csrf_client() -> Iterator[Any]:
    from starlette.testclient import TestClient

    routes = [Route("/form", form), Route("/post", post, methods=["POST"])]
    app = ASGIMiddleware(Starlette(routes=routes), store=MemoryStore(), secret_keys=[KEY])
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_malformed_csrf_tokens_are_refused_never_a_500(csrf_client: httpx.Client) -> None:
    token = csrf_client.get("/form").text
    assert csrf_client.post("/post", headers={"x-csrf-token": token}).status_code == 200
    for bad in TOKENS:
        raw = bad.encode("utf-8", "surrogatepass")
        response = csrf_client.post("/post", headers={b"x-csrf-token": raw})
        assert response.status_code == 403, bad[:20]
        form_body = b"csrf_token=" + quote_from_bytes(raw).encode()
        response = csrf_client.post(
            "/post",
            content=form_body,
            headers=FORM,
        )
        assert response.status_code == 403, bad[:20]
        response = csrf_client.post(
            "/post",
            content=b"csrf_token=" + raw,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 403, bad[:20]
        response = csrf_client.post(
            "/post", files={"csrf_token": (None, raw)}, headers={b"x-csrf-token": b""}
        )
        assert response.status_code == 403, bad[:20]


def test_malformed_presession_cookies_are_replaced_never_a_500(
    csrf_client: httpx.Client,
) -> None:
    for bad in [b"\xe9" * 30, b"\x00" * 30, b"\xed\xa0\x80" * 10, b"A" * 5000, b"a.b.c" * 6]:
        csrf_client.cookies.clear()
        response = csrf_client.get("/form", headers={b"cookie": b"satchel_csrf=" + bad})
        assert response.status_code == 200
        token = response.text
        pre = set_cookie_value(response.headers, "satchel_csrf")
        headers = {"x-csrf-token": token}
        if pre is not None:
            headers["cookie"] = f"satchel_csrf={pre}"
        else:  # the value was kept: it works as a pre-session, and only for this token
            headers["cookie"] = "satchel_csrf=" + bad.decode("latin-1")
        csrf_client.cookies.clear()
        assert csrf_client.post("/post", headers=headers).status_code == 200


# -- property: no Cookie header value makes cookie parsing raise -------------------------

ENGINES: list[Engine | CookieBackend] = [
    Engine(secret_keys=[KEY], expiry=ExpiryPolicy()),
    CookieBackend(
        secret_keys=[KEY],
        cookie=CookieOptions(),
        expiry=ExpiryPolicy(),
        revocation_store=MemoryStore(),
    ),
    CookieBackend(
        secret_keys=[KEY],
        cookie=CookieOptions(),
        expiry=ExpiryPolicy(),
        signed=True,
        compress=True,
        revocation_store=MemoryStore(),
    ),
]
COOKIE = CookieTransport(CookieOptions())
_TEXT = st.text(max_size=30) | st.sampled_from(["é", "\x00", "\udc80", "A" * 22, '"', ".", ""])
_KIDS = st.just(KID) | st.text(min_size=8, max_size=8)
# Values shaped like ours (an ID, a version, the real key ID), with anything in the parts.
_VALUES = st.one_of(
    st.tuples(st.just("A" * 43), _KIDS, _TEXT).map(lambda t: f"{t[0]}.{t[1]}{t[2]}"),
    st.tuples(st.sampled_from(["e1", "e1z", "s1", "s1z"]), _KIDS, _TEXT, _TEXT).map(".".join),
    st.tuples(st.sampled_from(["e1", "s1"]), _KIDS, _TEXT).map(".".join),
    _TEXT,
)
_HEADERS = st.lists(_VALUES, max_size=4).map(lambda vs: "; ".join(f"satchel={v}" for v in vs))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_HEADERS | st.text(max_size=80))
def test_no_cookie_header_makes_cookie_parsing_raise(cookie_header: str) -> None:
    logging.getLogger("satchel").disabled = True
    try:
        for engine in ENGINES:
            tokens = COOKIE.tokens({"cookie": cookie_header})
            assert engine.read(tokens, cookie_header) == (None, False)
    finally:
        logging.getLogger("satchel").disabled = False
