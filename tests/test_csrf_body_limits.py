"""Issue 10: finding the CSRF token in a form body costs bounded, linear work.

0.1 parsed multipart bodies with ``email.parser``: a body of about 1 MB whose one
``Content-Disposition`` header carries thousands of parameters, or made of thousands of
tiny parts, held the event loop for seconds (tens of seconds for the first). Every path
now goes through :class:`satchel.csrf.FormTokenFinder` (python-multipart, capped); the
bounds asserted here are generous: they separate "answers" from "hangs".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from flask import Flask
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel import MemoryStore, csrf
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.integrations.fastapi import CSRFProtected
from satchel.integrations.flask import Satchel
from satchel.request import csrf_token
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .services import serve_asgi

BOUNDARY = "satchel-attack-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
ATTACK_SIZE = 1_000_000  # just under csrf.MAX_FORM_BYTES: the largest body that is read
BOUND = 2.0  # seconds; 0.1 took 2.5 s (tiny parts) to 30 s (parameters) on these bodies


def disposition_params(size: int = ATTACK_SIZE) -> bytes:
    """One part whose Content-Disposition carries thousands of parameters."""
    params = "".join(f"; p{i}=v" for i in range(size // 8))
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"'
    tail = f"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    return (head + params[: size - len(head) - len(tail)] + tail).encode()


def tiny_parts(size: int = ATTACK_SIZE) -> bytes:
    """Tens of thousands of parts of a few bytes each."""
    part = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n".encode()
    end = f"--{BOUNDARY}--\r\n".encode()
    return part * ((size - len(end)) // len(part)) + end


ATTACKS = {"disposition_params": disposition_params, "tiny_parts": tiny_parts}


def multipart(fields: Iterable[tuple[str, str]], file_size: int = 0) -> bytes:
    """A browser-like multipart body: optionally a file first, then the fields."""
    out = []
    if file_size:
        out.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="upload"; '
            f'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + "z" * file_size
            + "\r\n"
        )
    for name, value in fields:
        out.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n')
        out.append(f"{value}\r\n")
    out.append(f"--{BOUNDARY}--\r\n")
    return "".join(out).encode()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


# -- the apps, one per path ----------------------------------------------------------------------


async def asgi_token(request: Request) -> Response:
    return PlainTextResponse(csrf_token(request))


async def asgi_form(request: Request) -> Response:
    body = await request.body()  # what the app sees after satchel read the body
    return JSONResponse({"size": len(body)})


def asgi_app() -> Any:
    routes = [Route("/token", asgi_token), Route("/form", asgi_form, methods=["POST"])]
    return SessionMiddleware(Starlette(routes=routes), store=MemoryStore(), secret_keys=[KEY])


def wsgi_app() -> Any:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/token":
            body = csrf_token(environ).encode()
        else:
            body = b'{"size": %d}' % len(environ["wsgi.input"].read())
        start_response("200 OK", [("content-type", "application/json")])
        return [body]

    return WSGISessionMiddleware(app, store=MemoryStore(), secret_keys=[KEY])


def flask_app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SATCHEL_STORE="memory://", SECRET_KEY=KEY)
    Satchel(app)

    @app.get("/token")
    def token() -> str:
        return csrf_token(flask_request.environ)

    @app.post("/form")
    def form() -> dict[str, Any]:  # the view still reads the form and the whole body
        return {"size": len(flask_request.get_data()), "fields": len(flask_request.form)}

    return app


def fastapi_app(*, dependency: bool) -> FastAPI:
    """CSRF by the middleware, or (``dependency=True``) by ``CSRFProtected`` on the route
    of an app whose middleware runs with ``csrf=False``."""
    app = FastAPI()

    @app.get("/token")
    async def token(request: Request) -> Response:
        return PlainTextResponse(csrf_token(request))

    @app.post("/form", dependencies=[CSRFProtected] if dependency else [])
    async def form(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.add_middleware(
        SessionMiddleware, store=MemoryStore(), secret_keys=[KEY], csrf=not dependency
    )
    return app


def client_for(path: str) -> Any:
    """A sync HTTP client for one path, each through its own framework's test client."""
    base = "https://testserver"
    if path == "asgi":
        return TestClient(asgi_app(), base_url=base)
    if path == "wsgi":
        return httpx.Client(transport=httpx.WSGITransport(app=wsgi_app()), base_url=base)
    if path == "flask":
        return flask_app().test_client()
    return TestClient(fastapi_app(dependency=path == "fastapi-dependency"), base_url=base)


PATHS = ["asgi", "wsgi", "flask", "fastapi", "fastapi-dependency"]


def post(client: Any, body: bytes, content_type: str = MULTIPART) -> Any:
    url = "https://testserver/form"
    if isinstance(client, httpx.Client | TestClient):
        return client.post(url, content=body, headers={"content-type": content_type})
    return client.post(url, data=body, headers={"content-type": content_type})


# -- the attacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("path", PATHS)
def test_crafted_multipart_body_is_refused_quickly(path: str, attack: str) -> None:
    client = client_for(path)
    body = ATTACKS[attack]()
    assert len(body) <= csrf.MAX_FORM_BYTES
    response, elapsed = timed(lambda: post(client, body))
    assert response.status_code == 403
    assert elapsed < BOUND, f"{attack} on {path} took {elapsed:.1f} s"


@pytest.mark.parametrize("path", PATHS)
def test_token_is_found_after_a_file_and_the_app_still_gets_the_body(path: str) -> None:
    client = client_for(path)
    tok = client.get("https://testserver/token").text
    body = multipart([("title", "hello"), ("csrf_token", tok)], file_size=300_000)
    response = post(client, body)
    assert response.status_code == 200, response.text
    assert json.loads(response.text)["size"] == len(body)
    encoded = f"a=1&csrf_token={tok}&b=2".encode()
    response = post(client, encoded, "application/x-www-form-urlencoded")
    assert (response.status_code, json.loads(response.text)["size"]) == (200, len(encoded))


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
def test_token_past_the_field_cap_is_not_looked_for(path: str) -> None:
    client = client_for(path)
    tok = client.get("https://testserver/token").text
    fields = [("f", "x")] * (csrf.MAX_FORM_FIELDS - 1)
    assert post(client, multipart([*fields, ("csrf_token", tok)])).status_code == 200
    assert post(client, multipart([*fields, ("g", "y"), ("csrf_token", tok)])).status_code == 403
    encoded = "&".join(["f=x"] * csrf.MAX_FORM_FIELDS) + f"&csrf_token={tok}"
    urlencoded = "application/x-www-form-urlencoded"
    assert post(client, encoded.encode(), urlencoded).status_code == 403


@pytest.mark.parametrize("cap", ["too-many-parameters", "too-long"])
def test_part_header_caps(cap: str) -> None:
    if cap == "too-many-parameters":
        params = (f"p{i}=v" for i in range(csrf.MAX_DISPOSITION_PARAMS + 1))
        header = "form-data; " + "; ".join(params)
    else:
        header = 'form-data; name="csrf_token"; x="' + "y" * csrf.MAX_PART_HEADER_BYTES + '"'
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: {header}\r\n\r\nx\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\ntok\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()
    assert csrf.token_from_form(MULTIPART, body) is None
    fine = body.replace(header.encode(), b'form-data; name="a"')
    assert csrf.token_from_form(MULTIPART, fine) == "tok"


def test_the_costliest_body_within_the_caps_is_still_searched_quickly() -> None:
    """Every part as costly as the caps allow (a 1 KB Content-Disposition with the most
    semicolons, quoted), the token last: found, in well under the bound."""
    quoted = '";"' + "q" * 55
    disposition = ('form-data; name="a"; x="' + quoted * 14)[: csrf.MAX_PART_HEADER_BYTES - 30]
    disposition += '"'
    assert disposition.count(";") == csrf.MAX_DISPOSITION_PARAMS
    part = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n"
    body = multipart([("csrf_token", "tok")])
    body = (part * (csrf.MAX_FORM_FIELDS - 1)).encode() + body
    assert len(body) <= csrf.MAX_FORM_BYTES
    token, elapsed = timed(lambda: csrf.token_from_form(MULTIPART, body))
    assert token == "tok"
    assert elapsed < BOUND / 4, f"{elapsed:.2f} s"


def test_get_during_the_attack_answers_promptly() -> None:
    """A real uvicorn server: GETs sent while attack requests are being parsed answer
    promptly (0.1 held the whole event loop for each attack request)."""
    body = disposition_params()
    results: dict[str, Any] = {}
    with serve_asgi(asgi_app()) as base:

        def attack(n: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                start = time.perf_counter()
                try:
                    status = c.post(
                        "/form", content=body, headers={"content-type": MULTIPART}
                    ).status_code
                except httpx.TimeoutException:
                    status = None
                results[f"attack{n}"] = (status, time.perf_counter() - start)

        attackers = [threading.Thread(target=attack, args=(n,)) for n in range(3)]
        for thread in attackers:
            thread.start()
        time.sleep(0.2)  # the attack bodies are on their way or being parsed
        with httpx.Client(base_url=base, timeout=BOUND) as c:
            get, elapsed = timed(lambda: c.get("/token"))
        for thread in attackers:
            thread.join(35)
    assert get.status_code == 200
    assert elapsed < 1.0, f"GET took {elapsed:.2f} s during the attack"
    for n in range(3):
        status, took = results[f"attack{n}"]
        assert status == 403
        assert took < BOUND, f"attack request took {took:.1f} s"
