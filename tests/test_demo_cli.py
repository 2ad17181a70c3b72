"""The demo app (in process and over a real socket) and the satchel command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from satchel.cli import main
from satchel.demo import create_app

from .conftest import KEY


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[httpx.Client]:
    app = create_app(f"sqlite:///{tmp_path}/demo.db", secret_keys=[KEY])
    transport = httpx.ASGITransport(app=app)
    with httpx.Client(transport=_SyncASGI(transport), base_url="https://testserver") as c:
        yield c


class _SyncASGI(httpx.BaseTransport):
    """Runs httpx's ASGI transport from a sync client (the demo tests read better sync)."""

    def __init__(self, transport: httpx.ASGITransport) -> None:
        import asyncio

        self.transport = transport
        self.runner = asyncio.Runner()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            response = await self.transport.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self.runner.run(go())

    def close(self) -> None:
        self.runner.close()


def token(client: httpx.Client, page: str = "/login") -> str:
    """The csrf_token hidden in a page's form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match is not None
    return match.group(1)


def log_in(
    client: httpx.Client, user: str = "alice", password: str = "wonderland"
) -> httpx.Response:
    data = {"username": user, "password": password, "csrf_token": token(client)}
    return client.post("/login", data=data)


def test_demo_flow(demo: httpx.Client) -> None:
    assert demo.get("/").status_code == 200
    response = demo.get("/profile")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert 'name="username"' in demo.get("/login").text
    bad = demo.post(
        "/login", data={"username": "alice", "password": "nope", "csrf_token": token(demo)}
    )
    assert bad.status_code == 401
    assert demo.get("/api/me").status_code == 401
    assert demo.get("/api/me").json() == {"error": "not logged in"}
    good = log_in(demo)
    assert (good.status_code, good.headers["location"]) == (303, "/profile")
    cookie = demo.cookies["satchel"]
    assert "Welcome, alice" in demo.get("/profile").text
    me = demo.get("/api/me").json()
    assert me["username"] == "alice"
    out = demo.post("/logout", headers={"X-CSRF-Token": me["csrf_token"]})
    assert (out.status_code, out.headers["location"]) == (
        303,
        "/logged-out",
    )  # then /login, with the note
    demo.cookies.clear()
    assert demo.get("/api/me", headers={"cookie": f"satchel={cookie}"}).status_code == 401


def test_demo_login_needs_a_csrf_token(demo: httpx.Client) -> None:
    response = demo.post("/login", data={"username": "alice", "password": "wonderland"})
    assert response.status_code == 403
    assert "CSRF token missing" in response.text
    pre_login = demo.get("/api/csrf").json()["csrf_token"]
    assert log_in(demo).status_code == 303
    stale = demo.post("/settings", data={"theme": "dark", "csrf_token": pre_login})
    assert stale.status_code == 403  # a token from before login is refused after it


def test_demo_settings_and_sessions(demo: httpx.Client, tmp_path: Path) -> None:
    log_in(demo)
    response = demo.post(
        "/settings", data={"theme": "dark", "csrf_token": token(demo, "/settings")}
    )
    assert (response.status_code, response.headers["location"]) == (303, "/profile")
    assert '<dd id="theme">dark</dd>' in demo.get("/profile").text
    page = demo.get("/sessions").text
    assert "this device" in page
    assert page.count('<li class="device" data-handle=') == 1


def test_demo_login_issues_a_new_id(demo: httpx.Client) -> None:
    log_in(demo, "bob", "builder")
    first = demo.cookies["satchel"]
    demo.post("/logout", headers={"X-CSRF-Token": demo.get("/api/me").json()["csrf_token"]})
    log_in(demo, "bob", "builder")
    assert demo.cookies["satchel"] != first
    assert "Welcome, bob" in demo.get("/profile").text


def test_demo_serves_its_css_locally(demo: httpx.Client) -> None:
    page = demo.get("/login").text
    assert "/static/style.css" in page
    assert "http://" not in page
    assert "https://" not in page
    assert demo.get("/static/style.css").status_code == 200


def test_demo_escapes_user_input(demo: httpx.Client) -> None:
    response = demo.post(
        "/login", data={"username": "<script>", "password": "x", "csrf_token": token(demo)}
    )
    assert response.status_code == 401
    assert "<script>" not in response.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_satchel_demo_command_serves_over_http(tmp_path: Path) -> None:
    """`satchel demo` as the README runs it: a real server, a real socket, SQLite in the
    working directory, a random key with a warning."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATCHEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "satchel.cli", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=base) as c:
            page = c.get("/login")
            pre = re.search(r"satchel_csrf=([^;]+)", page.headers["set-cookie"])
            form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert pre is not None
            assert form_token is not None
            response = c.post(
                "/login",
                data={"username": "alice", "password": "wonderland", "csrf_token": form_token[1]},
                headers={"cookie": f"satchel_csrf={pre[1]}"},
            )
            assert response.status_code == 303
            cookie = re.match(r"satchel=([^;]+)", response.headers["set-cookie"])
            assert cookie is not None
            me = c.get("/api/me", headers={"cookie": f"satchel={cookie.group(1)}"})
            assert me.json()["username"] == "alice"
        assert (tmp_path / "satchel.db").exists()
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert "sessions will not survive a restart" in output
    assert "satchel demo on http://127.0.0.1" in output


def test_demo_refuses_invalid_combination(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["demo", "--store", "memory://"],
        env={"SATCHEL_COOKIE_NAME": "__Host-x", "SATCHEL_COOKIE_SECURE": "false"},
    )
    assert result.exit_code == 1
    assert "__Host- prefix" in result.output


def test_keygen() -> None:
    result = CliRunner().invoke(main, ["keygen"])
    key = result.output.strip()
    assert result.exit_code == 0
    assert len(key) >= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key)


def test_db_init(tmp_path: Path) -> None:
    import uuid

    import psycopg

    table = f"satchel_init_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://postgres@127.0.0.1:5432/test?table={table}"
    result = CliRunner().invoke(main, ["db", "init", "--store", url])
    assert (result.exit_code, result.stdout.strip()) == (0, "session table ready (PostgresStore)")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,)
        conn.execute(f"DROP TABLE {table}")
    memory = CliRunner().invoke(main, ["db", "init", "--store", "memory://"])
    assert memory.stdout.strip() == "MemoryStore needs no schema: nothing to do"
    sqlite = CliRunner().invoke(main, ["db", "init", "--store", f"sqlite:///{tmp_path}/x.db"])
    assert sqlite.exit_code == 0
    assert (tmp_path / "x.db").exists()
    down = CliRunner().invoke(
        main, ["db", "init", "--store", "postgresql://postgres@127.0.0.1:1/test?timeout=1"]
    )
    assert down.exit_code == 3  # the store is unavailable
    assert "unavailable" in down.output


def test_demo_on_the_cookie_store_revokes_replayed_cookies(tmp_path: Path) -> None:
    """`satchel demo --store cookie://` keeps revocation records in its SQLite file, so
    its logout kills a replayed cookie; the sessions page says why it lists one device."""
    app = create_app(
        "cookie://", secret_keys=[KEY], revocation_store=f"sqlite:///{tmp_path}/satchel.db"
    )
    transport = httpx.ASGITransport(app=app)
    with httpx.Client(transport=_SyncASGI(transport), base_url="https://testserver") as c:
        assert log_in(c).status_code == 303
        stolen = c.cookies["satchel"]
        assert stolen.startswith("e1.")
        assert "holds no list of your other devices" in c.get("/sessions").text
        c.post("/logout", headers={"X-CSRF-Token": c.get("/api/me").json()["csrf_token"]})
        c.cookies.clear()
        assert c.get("/api/me", headers={"cookie": f"satchel={stolen}"}).status_code == 401
    assert (tmp_path / "satchel.db").exists()
