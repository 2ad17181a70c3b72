"""Issue 10: ``insecure_unsigned_cookies=True`` (no secret keys) keeps the CSRF checks that
need no key -- ``Sec-Fetch-Site`` and ``Origin`` -- on ASGI, WSGI and Flask; only the
token check, which needs a key, is skipped. 0.1 switched every check off."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel import MemoryStore
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.integrations.flask import Satchel
from satchel.options import build
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY

BASE = "https://testserver"


def asgi_client() -> Any:
    async def write(request: Request) -> Response:
        request.session["n"] = 1
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/write", write, methods=["POST"])])
    wrapped = SessionMiddleware(app, store=MemoryStore(), insecure_unsigned_cookies=True)
    return TestClient(wrapped, base_url=BASE)


def wsgi_client() -> Any:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["satchel.session"]["n"] = 1
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    wrapped = WSGISessionMiddleware(app, store=MemoryStore(), insecure_unsigned_cookies=True)
    return httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url=BASE)


def flask_client() -> Any:
    """The Flask settings offer no ``insecure_unsigned_cookies`` (it is a middleware
    option only), so the extension's runtime is rebuilt keyless, as the middlewares build
    it: the request then takes the Flask path (``Satchel._check_csrf``) without a key."""
    app = Flask(__name__)
    app.config.update(TESTING=True, SATCHEL_STORE="memory://", SECRET_KEY=KEY)
    Satchel(app)
    app.extensions["satchel"]["runtime"] = build(MemoryStore(), {"insecure_unsigned_cookies": True})

    @app.post("/write")
    def write() -> str:
        from flask import session

        session["n"] = 1
        return "ok"

    return app.test_client()


CLIENTS = {"asgi": asgi_client, "wsgi": wsgi_client, "flask": flask_client}

CROSS_SITE = {
    "sec-fetch-site cross-site": {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    "foreign origin": {"Origin": "https://evil.example"},
    "null origin": {"Origin": "null"},
    "sec-fetch-site same-site": {"Sec-Fetch-Site": "same-site"},
}


@pytest.mark.parametrize("headers", list(CROSS_SITE))
@pytest.mark.parametrize("path", list(CLIENTS))
def test_browser_metadata_checks_apply_without_keys(path: str, headers: str) -> None:
    client = CLIENTS[path]()
    response = client.post(f"{BASE}/write", headers=CROSS_SITE[headers], data={"a": "1"})
    assert response.status_code == 403
    assert "Forbidden" in response.text


@pytest.mark.parametrize("path", list(CLIENTS))
def test_same_origin_post_needs_no_token_without_keys(path: str) -> None:
    """Without a key there is no token to check: a same-origin request passes."""
    client = CLIENTS[path]()
    same = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"{BASE}/write", headers=same, data={"a": "1"}).status_code == 200
    assert client.post(f"{BASE}/write", data={"a": "1"}).status_code == 200  # no metadata


def test_csrf_token_without_keys_is_empty_not_a_500() -> None:
    """Templates that call csrf_token() keep rendering without keys: there is no token to
    make (only the browser-metadata checks apply), so the helper gives an empty string."""
    from satchel import csrf_token

    async def form(request: Request) -> Response:
        return PlainTextResponse(f"token=[{csrf_token(request)}]")

    app = Starlette(routes=[Route("/form", form)])
    wrapped = SessionMiddleware(app, store=MemoryStore(), insecure_unsigned_cookies=True)
    with TestClient(wrapped, base_url=BASE) as client:
        response = client.get("/form")
    assert (response.status_code, response.text) == (200, "token=[]")
