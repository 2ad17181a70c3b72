"""Values no store can hold are refused when assigned, with satchel's ``SessionDataError``,
not at commit: lone surrogates (in values, in dict keys, in session keys, nested) and
nesting deeper than ``codec.MAX_DEPTH`` (32 levels). A value changed in place after it was
read (``session["cart"].append("\\ud800")``) cannot be checked at assignment: its commit
raises a ``SessionDataError`` naming the key, before anything reaches the store."""

from __future__ import annotations

import json
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
from starlette.testclient import TestClient

from satchel import Session, SessionDataError, SQLiteStore
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.auth import login
from satchel.codec import MAX_DEPTH, decode, encode
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY

BASE = "https://testserver"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# What an app might try to store: (name, how it is assigned).
UNSTORABLE: dict[str, Callable[[Session], object]] = {
    "lone-surrogate": lambda s: s.__setitem__("k", "\ud800"),
    "low-surrogate-in-text": lambda s: s.__setitem__("k", "abc\udfff"),
    "surrogate-in-a-list": lambda s: s.__setitem__("k", ["ok", "\udc80"]),
    "surrogate-dict-key": lambda s: s.__setitem__("k", {"\ud800": 1}),
    "surrogate-in-a-tuple-in-a-set": lambda s: s.__setitem__("k", {("\ud800",)}),
    "surrogate-session-key": lambda s: s.__setitem__("\ud800", 1),
    "nul-session-key": lambda s: s.__setitem__("k\x00", 1),
    "nul-key-by-update": lambda s: s.update({"k\x00": 1}),
    "login-nul-user": lambda s: login(s, "alice\x00"),
    "login-surrogate-user": lambda s: login(s, "alice\ud800"),
    "login-user-too-long": lambda s: login(s, "é" * 511),  # 1,022 bytes: past MariaDB's column
    "too-deep": lambda s: s.__setitem__("k", nested(MAX_DEPTH + 1)),
    "too-deep-in-a-dict": lambda s: s.__setitem__("k", {"a": nested(MAX_DEPTH)}),
    "too-deep-tuples": lambda s: s.__setitem__("k", nested(MAX_DEPTH + 1, ()).copy()),
    "a-cycle": lambda s: s.__setitem__("k", _cycle()),
    "update": lambda s: s.update({"ok": 1, "k": "\ud800"}),
    "update-kwargs": lambda s: s.update(k=nested(MAX_DEPTH + 1)),
    "setdefault": lambda s: s.setdefault("k", ["\ud800"]),
    "in-place-or": lambda s: s.__ior__({"k": "\udbff"}),
}


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize("assign", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_values_are_refused_at_assignment(assign: Callable[[Session], object]) -> None:
    session = Session()
    with pytest.raises(SessionDataError):
        assign(session)
    assert "k" not in session
    assert "\ud800" not in session
    assert "k\x00" not in session
    assert session.user_id is None


def test_the_depth_limit_is_exact_and_the_same_both_ways() -> None:
    session = Session()
    deepest = {"a": nested(MAX_DEPTH - 3, ("t", {"$t": "x"}))}  # 32 levels; tags count once
    session["k"] = deepest
    assert decode(encode(deepest)) == deepest
    with pytest.raises(SessionDataError):
        session["k"] = [deepest]
    with pytest.raises(ValueError, match="levels deep"):
        decode("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert decode("[" * MAX_DEPTH + "]" * MAX_DEPTH) == nested(MAX_DEPTH - 1, [])
    with pytest.raises(SessionDataError):  # in a Python str, even a "pair" is two lone ones
        session["pair"] = "\ud83d\ude00"
    assert decode('"\\ud83d\\ude00"') == "\U0001f600"  # in JSON, a pair is one character
    session["emoji"] = "\U0001f600"


def test_a_value_broken_in_place_after_reading_fails_its_commit_naming_the_key() -> None:
    session = Session()
    session["cart"] = ["book"]
    session["cart"].append("\ud800")
    with pytest.raises(SessionDataError, match=r"session\['cart'\] cannot be stored"):
        session.encoded()


# -- through HTTP: ASGI and WSGI, on a store that encodes UTF-8 ------------------------------


def _assign(session: Session, kind: str) -> tuple[int, str]:
    try:
        UNSTORABLE[kind](session)
    except SessionDataError as exc:
        return 400, str(exc)
    return 200, "stored"


async def asgi_put(request: Request) -> Response:
    status, text = _assign(request.session, request.query_params["kind"])  # type: ignore[arg-type]
    return JSONResponse(text, status_code=status)


async def asgi_cart(request: Request) -> Response:
    session = request.session
    cart = session.setdefault("cart", [])
    if "item" in request.query_params:
        cart.append(request.query_params["item"])
    else:
        cart.append("\ud800")  # a nested change assignment cannot see
    return JSONResponse(len(cart))


async def asgi_read(request: Request) -> Response:
    return JSONResponse({k: repr(v) for k, v in request.session.items()})


def wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    status, body = 200, ""
    result: Any = None
    if environ["PATH_INFO"] == "/put":
        status, body = _assign(session, query["kind"])
    elif environ["PATH_INFO"] == "/cart":
        cart = session.setdefault("cart", [])
        cart.append(query.get("item", "\ud800"))
        result = len(cart)
    else:
        result = {k: repr(v) for k, v in session.items()}
    start_response(f"{status} X", [("content-type", "application/json")])
    return [json.dumps(body if result is None else result).encode()]


@pytest.fixture(params=["asgi", "wsgi"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store = SQLiteStore(tmp_path / "sessions.db")
    if request.param == "asgi":
        routes = [Route("/put", asgi_put), Route("/cart", asgi_cart), Route("/read", asgi_read)]
        app = ASGIMiddleware(Starlette(routes=routes), store=store, secret_keys=[KEY], csrf=False)
        with TestClient(app, base_url=BASE) as c:
            yield c
    else:
        wsgi = WSGIMiddleware(wsgi_app, store=store, secret_keys=[KEY], csrf=False)
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE) as c:
            yield c
    store.close()


@pytest.mark.parametrize("kind", UNSTORABLE, ids=UNSTORABLE.keys())
def test_unstorable_values_are_refused_at_assignment_over_http(client: Any, kind: str) -> None:
    response = client.get("/put", params={"kind": kind})
    assert response.status_code == 400, response.text
    assert client.get("/read").status_code == 200


def test_a_nested_change_after_reading_fails_at_commit_with_satchels_error(
    client: Any,
) -> None:
    assert client.get("/cart", params={"item": "book"}).json() == 1
    with pytest.raises(SessionDataError, match=r"session\['cart'\] cannot be stored"):
        client.get("/cart")
    assert client.get("/read").json() == {"cart": "['book']"}  # nothing was written
