"""Falcon through its own test client (falcon.testing), WSGI (examples/falcon_app.py) and
ASGI (examples/falcon_asgi_app.py), on SQLite and Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import falcon
import falcon.asgi
import falcon.testing
import httpx
import pytest

from satchel import MemoryStore, login
from satchel.integrations.falcon import SatchelMiddleware, csrf_token, session_of
from satchel.testing import session_transaction

from .conftest import KEY
from .test_examples import load

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture(params=["falcon_app", "falcon_asgi_app"])
def example(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str
) -> Iterator[ModuleType]:
    module = load(request.param, monkeypatch, tmp_path, store)
    yield module
    module.sessions.store.close()


class Browser:
    """falcon.testing's client with a cookie jar (it keeps none itself)."""

    def __init__(self, app: Any) -> None:
        self.client = falcon.testing.TestClient(app)
        self.jar: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        result = falcon.testing.simulate_request(
            self.client.app, method, path, protocol="https", cookies=self.jar, **kwargs
        )
        self.keep(result)
        return result

    def keep(self, result: falcon.testing.Result) -> None:
        for name, cookie in result.cookies.items():
            if cookie.max_age == 0 or not cookie.value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = cookie.value

    def csrf(self) -> dict[str, str]:
        return {"x-csrf-token": self.request("GET", "/csrf").json["csrf_token"]}

    def log_in(self, user: str = "alice") -> falcon.testing.Result:
        token = self.request("GET", "/csrf").json["csrf_token"]
        return self.request(
            "POST", "/login", body=f"username={user}&csrf_token={token}", headers=FORM
        )


def test_login_regenerates_the_id_and_logout_kills_replay(example: ModuleType) -> None:
    web = Browser(example.app)
    assert web.request("GET", "/me").status_code == 401
    assert web.log_in().json == {"user": "alice"}  # the form's token, found and put back
    first = web.jar["satchel"]
    web.log_in()
    second = web.jar["satchel"]
    assert first != second
    assert web.request("GET", "/me").json == {"user": "alice", "data": {}}
    assert web.request("POST", "/logout", headers=web.csrf()).json == {"user": None}
    assert "satchel" not in web.jar  # expired
    for old in (first, second):
        replay = falcon.testing.simulate_get(
            example.app, "/me", protocol="https", cookies={"satchel": old}
        )
        assert replay.status_code == 401


def test_csrf_refused_without_token(example: ModuleType) -> None:
    web = Browser(example.app)
    web.log_in()
    refused = web.request("POST", "/notes/a", params={"value": "1"})
    assert refused.status_code == 403
    assert "CSRF token missing" in refused.text
    assert web.request("POST", "/login", body="username=bob", headers=FORM).status_code == 403
    assert web.request("GET", "/me").json == {"user": "alice", "data": {}}


def test_concurrent_disjoint_writes_persist(example: ModuleType) -> None:
    web = Browser(example.app)
    web.log_in()
    csrf = web.csrf()
    if isinstance(example.app, falcon.asgi.App):

        async def parallel() -> list[int]:
            async with falcon.testing.ASGIConductor(example.app) as conductor:
                results = await asyncio.gather(
                    *(
                        conductor.simulate_post(
                            f"/notes/k{i}",
                            params={"value": str(i)},
                            headers=csrf,
                            cookies=web.jar,
                            protocol="https",
                        )
                        for i in range(20)
                    )
                )
            return [r.status_code for r in results]

        statuses = asyncio.run(parallel())
    else:
        statuses = []

        def write(i: int) -> None:
            result = falcon.testing.simulate_post(
                example.app,
                f"/notes/k{i}",
                params={"value": str(i)},
                headers=csrf,
                cookies=web.jar,
                protocol="https",
            )
            statuses.append(result.status_code)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 20
    data = web.request("GET", "/me").json["data"]
    assert data == {f"k{i}": str(i) for i in range(20)}


# -- the middleware's edges ----------------------------------------------------------------


class Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"data": dict(session_of(req)), "csrf_token": csrf_token(req)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.session["body"] = req.bounded_stream.read().decode()
        resp.media = {"ok": True}


class AsyncEcho:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"data": dict(session_of(req)), "csrf_token": csrf_token(req)}

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.session["body"] = (await req.stream.read()).decode()
        resp.media = {"ok": True}


def _apps(store: Any) -> list[Any]:
    apps: list[Any] = []
    for kind, resource in ((falcon.App, Echo()), (falcon.asgi.App, AsyncEcho())):
        sessions = SatchelMiddleware(store, secret_keys=[KEY])
        app = kind(middleware=[sessions])
        sessions.add_error_handlers(app)
        app.add_route("/", resource)
        apps.append(app)
    return apps


@pytest.mark.parametrize("which", [0, 1], ids=["wsgi", "asgi"])
def test_the_form_body_reaches_the_responder_and_the_token_response_is_never_cached(
    which: int,
) -> None:
    app = _apps(MemoryStore())[which]
    web = Browser(app)
    first = web.request("GET", "/")
    assert "satchel" not in first.cookies  # no session yet: nothing stored, no cookie
    token = first.json["csrf_token"]
    saved = web.request("POST", "/", body=f"csrf_token={token}&x=1", headers=FORM)
    assert saved.status_code == 200
    assert saved.headers["cache-control"] == "no-store"
    assert "Cookie" in saved.headers["vary"]
    assert web.request("GET", "/").json["data"] == {"body": f"csrf_token={token}&x=1"}


@pytest.mark.parametrize("which", [0, 1], ids=["wsgi", "asgi"])
def test_store_down_gives_503(which: int, tmp_path: Path) -> None:
    working = Browser(_apps(f"sqlite:///{tmp_path}/s.db")[which])
    token = working.request("GET", "/").json["csrf_token"]
    working.request("POST", "/", body=f"csrf_token={token}", headers=FORM)
    down = falcon.testing.simulate_get(
        _apps("redis://127.0.0.1:9/0")[which], "/", protocol="https", cookies=working.jar
    )
    assert down.status_code == 503
    assert "retry-after" in down.headers


def test_session_transaction_through_an_httpx_client() -> None:
    sessions = SatchelMiddleware(MemoryStore(), secret_keys=[KEY])
    app = falcon.App(middleware=[sessions])
    app.add_route("/", Echo())
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="https://testserver") as client:
        with session_transaction(sessions, client) as session:
            login(session, "carol")
            session["cart"] = ["apple"]
        assert client.get("/").json()["data"] == {"cart": ["apple"]}
