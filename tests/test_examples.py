"""The examples the README quotes run as written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from .conftest import KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("SECRET_KEYS", KEY)
    monkeypatch.setenv("SESSION_STORE", f"sqlite:///{tmp_path}/s.db")
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


async def test_starlette_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("starlette_app", monkeypatch, tmp_path).app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as c:
        assert (await c.get("/")).json() == {"visits": 1}
        assert (await c.get("/")).json() == {"visits": 2}


def test_wsgi_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("wsgi_app", monkeypatch, tmp_path).app
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://example") as c:
        assert c.get("/").text == "visit number 1\n"
        assert c.get("/").text == "visit number 2\n"


async def test_api_tokens_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("api_tokens", monkeypatch, tmp_path).app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as c:
        login = await c.post("/api/login", json={"username": "ann", "password": "wonderland"})
        assert login.json() == {"username": "ann"}
        assert "set-cookie" not in login.headers
        token = login.headers["x-session-token"]
        me = await c.get("/api/me", headers={"authorization": f"Bearer {token}"})
        assert me.json() == {"username": "ann"}
        assert (await c.get("/api/me")).status_code == 401
        await app.store.aclose()


pytestmark = pytest.mark.anyio
