"""Every example under the server its docstring names (uvicorn for ASGI, gunicorn for WSGI),
started as a user would start it, on a free loopback port, and driven over real HTTP:
log in, write, read, log out, and the old cookie replayed is refused.

The session cookies are Secure; browsers keep them on http://127.0.0.1, but httpx's jar
does not send them back over plain http, so this client keeps its own jar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import KEY
from .services import LOOPBACK, free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


class Browser:
    """An HTTP client with a cookie jar that, like a browser, keeps Secure cookies on
    loopback http."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=20)
        self.jar: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.jar:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        response = self.client.request(method, path, headers=headers, **kwargs)
        self.client.cookies.clear()  # this jar is the only one
        for line in response.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(line)
            for name, morsel in parsed.items():
                expired = morsel["max-age"] == "0" or "1970" in morsel["expires"]
                if expired or not morsel.value or morsel.value == '""':
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self.client.close()


def _command(server: str, target: str, port: int) -> list[str]:
    target = f"examples.{target}"
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, "--host", LOOPBACK, "--port", str(port)]
    if server == "hypercorn":
        return [sys.executable, "-m", "hypercorn", "--bind", f"{LOOPBACK}:{port}", target]
    if server == "aiohttp.web":  # aiohttp's own runner
        return [sys.executable, "-m", "aiohttp.web", "-H", LOOPBACK, "-P", str(port), target]
    return [sys.executable, "-m", "gunicorn", "--bind", f"{LOOPBACK}:{port}", target]


def _documented(name: str, server: str, target: str) -> None:
    """The run command the test uses is the one the example's docstring and README give."""
    assert f"{server} examples.{target}" in (EXAMPLES / f"{name}.py").read_text()
    assert f"{server} examples.{target}" in (ROOT / "README.md").read_text()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SECRET_KEYS": KEY,
        "SECRET_KEY": KEY,
        "SESSION_STORE": f"sqlite:///{tmp_path}/sessions.db",
        "DJANGO_DB": str(tmp_path / "django.sqlite3"),
    }


def _serve(server: str, target: str, env: dict[str, str], tmp_path: Path) -> Iterator[Browser]:
    port = free_port()
    log = (tmp_path / f"{server}.log").open("w")
    process = subprocess.Popen(
        _command(server, target, port), cwd=ROOT, env=env, stdout=log, stderr=log
    )
    browser = Browser(f"http://{LOOPBACK}:{port}")
    try:
        try:
            wait_for(lambda: process.poll() is not None or port_open(port), server, 60)
        finally:
            if process.poll() is not None:
                log.flush()
                pytest.fail(f"{server} exited:\n{(tmp_path / f'{server}.log').read_text()}")
        yield browser
    finally:
        browser.close()
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    servers: list[Iterator[Browser]] = []

    def start(name: str, server: str, target: str) -> Browser:
        _documented(name, server, target)
        running = _serve(server, target, env, tmp_path)
        servers.append(running)
        return next(running)

    yield start
    for running in servers:
        next(running, None)


def _replay(browser: Browser, name: str, old: str, path: str) -> httpx.Response:
    """A fresh client sending only the cookie from before logout."""
    replayer = Browser(str(browser.client.base_url))
    replayer.jar[name] = old
    try:
        return replayer.get(path)
    finally:
        replayer.close()


@pytest.mark.parametrize(
    ("name", "server"), [("starlette_app", "uvicorn"), ("wsgi_app", "gunicorn")]
)
def test_plain_asgi_and_wsgi(serve: Any, name: str, server: str) -> None:
    web = serve(name, server, f"{name}:app")
    token = web.get("/csrf").json()["csrf_token"]
    assert web.post("/login", data={"username": "alice", "csrf_token": token}).json() == {
        "user": "alice"
    }
    old = web.jar["satchel"]
    assert web.get("/").json() == {"user": "alice", "visits": 1}
    assert web.get("/").json() == {"user": "alice", "visits": 2}
    token = web.get("/csrf").json()["csrf_token"]
    assert web.post("/logout", data={"csrf_token": token}).json() == {"user": None}
    assert "satchel" not in web.jar  # the cookie was expired
    assert _replay(web, "satchel", old, "/").json() == {"user": None, "visits": 1}


def test_fastapi(serve: Any) -> None:
    web = serve("fastapi_app", "uvicorn", "fastapi_app:app")
    csrf = {"x-csrf-token": web.get("/csrf").json()["csrf_token"]}
    assert web.post("/login/alice", headers=csrf).json() == {"user": "alice"}
    old = web.jar["satchel"]
    csrf = {"x-csrf-token": web.get("/csrf").json()["csrf_token"]}
    saved = web.post("/notes/colour", params={"value": "blue"}, headers=csrf)
    assert saved.json() == {"user": "alice", "colour": "blue"}
    me = web.get("/me").json()
    assert (me["user"], me["data"]["colour"]) == ("alice", "blue")
    assert web.post("/logout", headers=csrf).json() == {"ok": True}
    assert web.get("/me").status_code == 401
    assert _replay(web, "satchel", old, "/me").status_code == 401


def test_api_tokens(serve: Any) -> None:
    """Bearer tokens, no cookies: the token comes back in X-Session-Token."""
    web = serve("api_tokens", "uvicorn", "api_tokens:app")
    ann = {"username": "ann", "password": "wonderland"}
    assert web.post("/api/login", json={**ann, "password": "x"}).status_code == 401
    login = web.post("/api/login", json=ann)
    assert login.json() == {"username": "ann"}
    assert "set-cookie" not in login.headers
    bearer = {"authorization": f"Bearer {login.headers['x-session-token']}"}
    assert web.get("/api/me", headers=bearer).json() == {"username": "ann"}
    assert web.get("/api/me").status_code == 401  # no token, no session
    logout = web.post("/api/logout", headers=bearer)  # no CSRF token: the header alone
    assert logout.json() == {"username": None}
    assert logout.headers["x-session-token"] == ""
    assert web.jar == {}  # never a cookie
    assert web.get("/api/me", headers=bearer).status_code == 401  # the old token is refused


def _flask_token(web: Browser) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
    assert match is not None
    return match.group(1)


def test_flask(serve: Any) -> None:
    web = serve("flask_app", "gunicorn", "flask_app:app")
    login = web.post("/login", data={"username": "alice", "csrf_token": _flask_token(web)})
    assert login.text == "logged in"
    old = web.jar["satchel"]
    note = {"key": "colour", "value": "blue", "csrf_token": _flask_token(web)}
    assert web.post("/note", data=note).json() == {"ok": "saved"}
    me = web.get("/me").json()
    assert (me["user"], me["data"]["colour"]) == ("alice", "blue")
    assert web.post("/logout", data={"csrf_token": _flask_token(web)}).text == "logged out"
    assert web.get("/me", follow_redirects=False).status_code in (302, 303, 401)
    replayed = _replay(web, "satchel", old, "/me")
    assert replayed.status_code in (302, 303, 401)


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "django_app.py"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize(("server", "target"), [("gunicorn", "application"), ("uvicorn", "asgi")])
def test_django(serve: Any, env: dict[str, str], server: str, target: str) -> None:
    assert "django_app.py migrate" in (EXAMPLES / "django_app.py").read_text()
    _manage(env, "migrate", "--verbosity", "0")
    create = (
        "from django.contrib.auth.models import User; "
        "User.objects.create_user('alice', password='wonderland')"
    )
    _manage(env, "shell", "-c", create)
    web = serve("django_app", server, f"django_app:{target}")

    def token() -> dict[str, str]:
        return {"csrfmiddlewaretoken": web.get("/csrf").json()["csrf_token"]}

    login = web.post("/login", data={"username": "alice", "password": "wonderland", **token()})
    assert login.json() == {"user": "alice"}
    old = web.jar["sessionid"]
    assert web.post("/notes/colour", data={"value": "blue", **token()}).json() == {"colour": "blue"}
    assert web.get("/me").json() == {
        "user": "alice",
        "data": {"colour": "blue"},
        "impersonator": None,
    }
    assert web.post("/logout", data=token()).json() == {"ok": True}
    assert web.get("/me").status_code == 401
    assert _replay(web, "sessionid", old, "/me").status_code == 401


@pytest.mark.parametrize(
    ("name", "server"),
    [("litestar_app", "uvicorn"), ("falcon_app", "gunicorn"), ("falcon_asgi_app", "uvicorn")],
)
def test_litestar_and_falcon(serve: Any, name: str, server: str) -> None:
    web = serve(name, server, f"{name}:app")
    assert web.get("/me").status_code == 401
    token = web.get("/csrf").json()["csrf_token"]
    assert web.post("/login", data={"username": "alice", "csrf_token": token}).json() == {
        "user": "alice"
    }
    old = web.jar["satchel"]
    csrf = {"x-csrf-token": web.get("/csrf").json()["csrf_token"]}
    assert web.post("/notes/colour", params={"value": "blue"}).status_code == 403  # no token
    saved = web.post("/notes/colour", params={"value": "blue"}, headers=csrf)
    assert saved.json() == {"user": "alice", "colour": "blue"}
    assert web.get("/me").json() == {"user": "alice", "data": {"colour": "blue"}}
    logout = web.post("/logout", headers=csrf)
    assert logout.json() == {"user": None}
    assert logout.headers["clear-site-data"] == '"cookies"'  # issue 17, on these paths too
    assert "satchel" not in web.jar  # the cookie was expired
    assert web.get("/me").status_code == 401
    assert _replay(web, "satchel", old, "/me").status_code == 401


@pytest.mark.parametrize(
    ("name", "server", "target"),
    [
        ("quart_app", "hypercorn", "quart_app:app"),
        ("aiohttp_app", "aiohttp.web", "aiohttp_app:init"),
    ],
)
def test_quart_and_aiohttp(serve: Any, name: str, server: str, target: str) -> None:
    web: Browser = serve(name, server, target)
    if name == "quart_app":
        login = web.post("/login", data={"username": "alice", "csrf_token": _flask_token(web)})
        assert login.text == "logged in"

        def token() -> str:
            return _flask_token(web)

        def note() -> httpx.Response:
            data = {"key": "colour", "value": "blue", "csrf_token": token()}
            return web.post("/note", data=data)
    else:

        def token() -> str:
            return str(web.get("/csrf").json()["csrf_token"])

        login = web.post("/login", data={"username": "alice", "csrf_token": token()})
        assert login.json() == {"user": "alice"}

        def note() -> httpx.Response:
            return web.post("/notes/colour", data={"value": "blue", "csrf_token": token()})

    old = web.jar["satchel"]
    assert note().json() == {"ok": "saved"}
    me = web.get("/me").json()
    assert (me["user"], me["data"]["colour"], me["devices"]) == ("alice", "blue", 1)
    logout = web.post("/logout", data={"csrf_token": token()})
    assert logout.status_code == 200
    assert logout.headers["clear-site-data"] == '"cookies"'  # issue 17, on these paths too
    assert "satchel" not in web.jar  # the cookie was expired
    json = {"accept": "application/json"}
    assert web.get("/me", headers=json).status_code == 401
    replayer = Browser(str(web.client.base_url))
    replayer.jar["satchel"] = old
    try:
        assert replayer.get("/me", headers=json).status_code == 401
    finally:
        replayer.close()
