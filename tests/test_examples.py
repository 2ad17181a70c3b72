"""The examples the README quotes run as written, and the README quotes them as written."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import httpx
import pytest

from .conftest import KEY

if TYPE_CHECKING:
    from flask.testing import FlaskClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = EXAMPLES.parent / "README.md"


def load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str | None = None
) -> ModuleType:
    monkeypatch.setenv("SECRET_KEYS", KEY)
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("SESSION_STORE", store or f"sqlite:///{tmp_path}/s.db")
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


# --8<-- [start:asgi]
async def test_starlette_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("starlette_app", monkeypatch, tmp_path).app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as c:
        assert (await c.get("/")).json() == {"user": None, "visits": 1}
        token = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/login", data={"username": "alice", "csrf_token": token})
        assert (await c.get("/")).json() == {"user": "alice", "visits": 2}
        token = (await c.get("/csrf")).json()["csrf_token"]
        assert (await c.post("/logout", headers={"x-csrf-token": token})).json() == {"user": None}
        assert (await c.get("/")).json() == {"user": None, "visits": 1}


async def test_starlette_example_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("starlette_app", monkeypatch, tmp_path).app
    transport = httpx.ASGITransport(app=app)
    https = "https://example"  # the cookie is Secure
    async with (
        httpx.AsyncClient(transport=transport, base_url=https) as laptop,
        httpx.AsyncClient(transport=transport, base_url=https) as phone,
    ):
        for c in (laptop, phone):
            token = (await c.get("/csrf")).json()["csrf_token"]
            await c.post("/login", data={"username": "alice", "csrf_token": token})
        devices = (await laptop.get("/devices")).json()
        assert [d["current"] for d in devices] == [True, False]
        token = (await laptop.get("/csrf")).json()["csrf_token"]  # a new one after login
        revoke = f"/devices/{devices[1]['handle']}/revoke"
        assert (await laptop.post(revoke, headers={"x-csrf-token": token})).json() == {
            "revoked": True
        }
        assert (await phone.get("/devices")).status_code == 401


# --8<-- [end:asgi]


# --8<-- [start:wsgi]
def test_wsgi_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("wsgi_app", monkeypatch, tmp_path).app
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://example") as c:
        assert c.get("/").json() == {"user": None, "visits": 1}
        token = c.get("/csrf").json()["csrf_token"]
        assert c.post("/login", data={"username": "bob", "csrf_token": token}).json() == {
            "user": "bob"
        }
        assert c.get("/").json() == {"user": "bob", "visits": 2}
        token = c.get("/csrf").json()["csrf_token"]
        assert c.post("/logout", headers={"x-csrf-token": token}).json() == {"user": None}
        assert c.get("/").json() == {"user": None, "visits": 1}


def test_wsgi_example_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("wsgi_app", monkeypatch, tmp_path).app
    transport = httpx.WSGITransport(app=app)
    with (
        httpx.Client(transport=transport, base_url="https://example") as laptop,
        httpx.Client(transport=transport, base_url="https://example") as phone,
    ):
        for c in (laptop, phone):
            token = c.get("/csrf").json()["csrf_token"]
            c.post("/login", data={"username": "bob", "csrf_token": token})
        devices = laptop.get("/devices").json()
        assert [d["current"] for d in devices] == [True, False]
        token = laptop.get("/csrf").json()["csrf_token"]  # a new one after login
        revoke = {"handle": devices[1]["handle"], "csrf_token": token}
        assert laptop.post("/devices/revoke", data=revoke).json() == {"revoked": True}
        assert phone.get("/devices").status_code == 401


# --8<-- [end:wsgi]


# --8<-- [start:flask]
def form_token(client: FlaskClient) -> str:
    """The csrf_token of the login form, as a browser would read it."""
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_flask_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = load("flask_app", monkeypatch, tmp_path).app
    browser = app.test_client()  # the cookie is Secure: use https URLs
    laptop = app.test_client()
    for client in (browser, laptop):
        login = {"username": "alice", "csrf_token": form_token(client)}
        assert client.post("https://localhost/login", data=login).text == "logged in"
    # a JavaScript client: a new token after login (the login rotated the CSRF secret)
    token = browser.get("https://localhost/csrf").json["csrf_token"]
    headers = {"X-CSRF-Token": token}
    saved = browser.post("https://localhost/note", data={"key": "k", "value": "v"}, headers=headers)
    assert saved.json == {"ok": "saved"}
    assert browser.get("https://localhost/me").json["data"] == {"k": "v"}
    # your devices: two sessions, this one first; revoke the laptop's
    devices = browser.get("https://localhost/devices").json["devices"]
    assert [d["current"] for d in devices] == [True, False]
    revoke = f"https://localhost/devices/{devices[1]['handle']}/revoke"
    assert browser.post(revoke, headers=headers).json == {"revoked": True}
    assert (
        laptop.get("https://localhost/me", headers={"Accept": "application/json"}).status_code
        == 401
    )
    # a post without a token is refused; logging out ends the session
    assert browser.post("https://localhost/logout").status_code == 403
    assert browser.post("https://localhost/logout", headers=headers).text == "logged out"
    assert browser.get("https://localhost/me").status_code == 303  # to the login page


# --8<-- [end:flask]


# --8<-- [start:fastapi]
def test_fastapi_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = load("fastapi_app", monkeypatch, tmp_path).app
    with (
        TestClient(app, base_url="https://testserver") as browser,  # https: the cookie is Secure
        TestClient(app, base_url="https://testserver") as phone,
    ):
        for client in (browser, phone):
            token = client.get("/csrf").json()["csrf_token"]
            assert client.post("/login/alice", headers={"X-CSRF-Token": token}).status_code == 200
        # after login, a new token: the login rotated the session's CSRF secret
        csrf = {"X-CSRF-Token": browser.get("/csrf").json()["csrf_token"]}
        assert browser.post("/notes/colour?value=blue", headers=csrf).status_code == 200
        assert browser.get("/me").json() == {"user": "alice", "data": {"colour": "blue"}}
        devices = browser.get("/devices").json()
        assert [d["current"] for d in devices] == [True, False]
        revoked = browser.post(f"/devices/{devices[1]['handle']}/revoke", headers=csrf)
        assert revoked.json() == {"revoked": True}
        assert phone.get("/me").status_code == 401
        # the page's form carries its own token in a hidden field
        page = browser.get("/").text
        assert "alice is logged in" in page
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match is not None
        assert browser.post("/logout").status_code == 403  # no token: refused
        assert browser.post("/logout", data={"csrf_token": match.group(1)}).json() == {"ok": True}
        assert browser.get("/me").status_code == 401


# --8<-- [end:fastapi]


def _quoted() -> list[tuple[str, str]]:
    """(example, snippet) for every python block of the README that follows a link to an
    example."""
    text = README.read_text()
    pairs = []
    for match in re.finditer(r"\]\(examples/(\w+)\.py\)\)?:?\n\n```python\n(.*?)```", text, re.S):
        pairs.append((match.group(1), match.group(2)))
    return pairs


def _code(line: str) -> str:
    """A line without its comment, spaces and trailing comma: settings quoted as
    ``NAME = value`` match the example's ``NAME=value,``."""
    return re.sub(r"\s+", "", line.split("  #")[0]).rstrip(",")


def _imported(line: str, source: str) -> bool:
    """``from m import a, b`` quoted: the example imports each name from ``m``."""
    match = re.fullmatch(r"from ([\w.]+) import (.+)", line.strip())
    if match is None or f"from {match.group(1)} import" not in source:
        return False
    return all(re.search(rf"\b{name.strip()}\b", source) for name in match.group(2).split(","))


def test_readme_snippets_are_taken_from_the_examples() -> None:
    quoted = _quoted()
    assert {name for name, _ in quoted} == {p.stem for p in EXAMPLES.glob("*.py")}
    for name, snippet in quoted:
        text = (EXAMPLES / f"{name}.py").read_text()
        source = {_code(line) for line in text.splitlines()}
        missing = [
            line
            for line in snippet.splitlines()
            if _code(line) not in source
            and line.strip() not in ("", "...")
            and not _imported(line, text)
        ]
        assert missing == [], name


def test_every_example_has_its_run_command_in_docstring_and_readme() -> None:
    readme = README.read_text()
    for path in EXAMPLES.glob("*.py"):
        commands = re.findall(
            r"(?:uvicorn|gunicorn|hypercorn|aiohttp\.web) examples\.\w+:\w+", path.read_text()
        )
        assert commands, path.name
        assert all(command in readme for command in commands), path.name


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
