"""The examples the README quotes run as written, and the README quotes them as written."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from .conftest import KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = EXAMPLES.parent / "README.md"


def load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str | None = None
) -> ModuleType:
    monkeypatch.setenv("SECRET_KEYS", KEY)
    monkeypatch.setenv("SESSION_STORE", store or f"sqlite:///{tmp_path}/s.db")
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
        assert (await c.get("/")).json() == {"user": None, "visits": 1}
        token = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/login", data={"username": "alice", "csrf_token": token})
        assert (await c.get("/")).json() == {"user": "alice", "visits": 2}
        token = (await c.get("/csrf")).json()["csrf_token"]
        assert (await c.post("/logout", headers={"x-csrf-token": token})).json() == {"user": None}
        assert (await c.get("/")).json() == {"user": None, "visits": 1}


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
