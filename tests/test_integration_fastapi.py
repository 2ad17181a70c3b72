"""FastAPI/Starlette through Starlette's TestClient (and httpx for parallel requests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.templating import Jinja2Templates
from starlette.testclient import TestClient

from satchel import MemoryStore
from satchel.integrations.fastapi import CSRFProtected
from satchel.integrations.starlette import SessionMiddleware, csrf_input, csrf_token

from .conftest import KEY
from .test_examples import load

BASE = "https://testserver"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    return load("fastapi_app", monkeypatch, tmp_path)


@pytest.fixture
def client(example: ModuleType) -> TestClient:
    return TestClient(example.app, base_url=BASE)


def token(client: TestClient) -> str:
    return str(client.get("/csrf").json()["csrf_token"])


def test_login_regenerates_the_id_and_logout_kills_replay(client: TestClient) -> None:
    client.post("/notes/a?value=1", headers={"X-CSRF-Token": token(client)})
    assert client.get("/me").status_code == 401  # CurrentUser: 401 without a login
    assert client.post("/login/alice").status_code == 403  # no CSRF token
    assert client.post("/login/alice", headers={"X-CSRF-Token": token(client)}).status_code == 200
    first = client.cookies["satchel"]
    client.post("/login/alice", headers={"X-CSRF-Token": token(client)})
    second = client.cookies["satchel"]
    assert first != second
    assert client.get("/me").json() == {"user": "alice", "data": {}}
    client.post("/logout", headers={"X-CSRF-Token": token(client)})
    client.cookies.clear()
    assert client.get("/me", headers={"cookie": f"satchel={second}"}).status_code == 401


def test_csrf_refused_without_token(client: TestClient) -> None:
    client.post("/login/alice", headers={"X-CSRF-Token": token(client)})
    refused = client.post("/notes/a?value=1")
    assert refused.status_code == 403
    assert "CSRF token missing" in refused.text


async def test_concurrent_disjoint_writes_persist(example: ModuleType) -> None:
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        tok = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/login/alice", headers={"X-CSRF-Token": tok})
        tok = (await c.get("/csrf")).json()["csrf_token"]
        responses = await asyncio.gather(
            *(c.post(f"/notes/k{i}?value={i}", headers={"X-CSRF-Token": tok}) for i in range(20))
        )
        assert all(r.status_code == 200 for r in responses)
        data = (await c.get("/me")).json()["data"]
    assert data == {f"k{i}": str(i) for i in range(20)}


def test_csrf_dependency_and_template_helper(tmp_path: Path) -> None:
    (tmp_path / "form.html").write_text('<form method="post">{{ csrf_input(request) }}</form>')
    templates = Jinja2Templates(directory=str(tmp_path))
    templates.env.globals.update(csrf_token=csrf_token, csrf_input=csrf_input)
    app = FastAPI()

    @app.get("/form")
    def form(request: Request):  # type: ignore[no-untyped-def]
        return templates.TemplateResponse(request, "form.html")

    @app.post("/protected", dependencies=[CSRFProtected])
    def protected() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(SessionMiddleware, store=MemoryStore(), secret_keys=[KEY], csrf=False)
    client = TestClient(app, base_url=BASE)
    page = client.get("/form").text
    assert 'name="csrf_token" value="' in page
    value = page.split('value="')[1].split('"')[0]
    assert client.post("/protected").status_code == 403  # the dependency checks on demand
    assert client.post("/protected", data={"csrf_token": value}).status_code == 200


def test_starlette_drop_in_replacement() -> None:
    """The same request.session API as starlette.middleware.sessions.SessionMiddleware."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def counter(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        request.session.update({"seen": True})
        return JSONResponse(dict(request.session))

    app = Starlette(routes=[Route("/", counter)])
    app.add_middleware(SessionMiddleware, store=MemoryStore(), secret_keys=[KEY])
    client = TestClient(app, base_url=BASE)
    assert client.get("/").json() == {"n": 1, "seen": True}
    assert client.get("/").json() == {"n": 2, "seen": True}


pytestmark = pytest.mark.anyio


def test_session_transaction_helper(example: ModuleType) -> None:
    from satchel import login
    from satchel.testing import session_transaction

    middleware = example.app.build_middleware_stack()
    while not hasattr(middleware, "backend"):
        middleware = middleware.app
    client = TestClient(example.app, base_url=BASE)
    with session_transaction(middleware, client) as session:
        login(session, "carol")
        session["cart"] = ["apple"]
    assert client.get("/me").json() == {"user": "carol", "data": {"cart": ["apple"]}}
    with session_transaction(middleware, client) as session:
        session["cart"].append("pear")
    assert client.get("/me").json()["data"] == {"cart": ["apple", "pear"]}


def test_plain_http_base_url_loses_secure_cookies(example: ModuleType) -> None:
    """The documented pitfall: over http the client keeps the Secure cookies but never
    sends them back, so the pre-session behind the CSRF token is missing."""
    client = TestClient(example.app, base_url="http://testserver")
    response = client.get("/csrf")
    assert "Secure" in response.headers["set-cookie"]
    refused = client.post("/login/alice", headers={"X-CSRF-Token": response.json()["csrf_token"]})
    assert refused.status_code == 403
    assert "invalid" in refused.text
