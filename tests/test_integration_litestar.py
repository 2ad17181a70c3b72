"""Litestar through its own test clients (TestClient, AsyncTestClient), on SQLite and Redis:
examples/litestar_app.py, and Litestar's session conventions on satchel sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath
from litestar.testing import AsyncTestClient, TestClient

from satchel import MemoryStore, login
from satchel.integrations.litestar import (
    CurrentSession,
    SatchelPlugin,
    SatchelSessionConfig,
    csrf_input,
    csrf_token,
    login_user,
    session_of,
)
from satchel.testing import FakeClock, session_transaction

from .conftest import KEY
from .test_examples import load

BASE = "https://testserver.local"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str) -> ModuleType:
    return load("litestar_app", monkeypatch, tmp_path, store)


@pytest.fixture
def client(example: ModuleType) -> Iterator[TestClient[Litestar]]:
    with TestClient(example.app, base_url=BASE) as client:  # shutdown closes the store
        yield client


def token(client: TestClient[Litestar]) -> dict[str, str]:
    return {"x-csrf-token": client.get("/csrf").json()["csrf_token"]}


def log_in(client: TestClient[Litestar], user: str = "alice") -> None:
    form = {"username": user, "csrf_token": client.get("/csrf").json()["csrf_token"]}
    assert client.post("/login", data=form).json() == {"user": user}


def test_login_regenerates_the_id_and_logout_kills_replay(client: TestClient[Litestar]) -> None:
    assert client.get("/me").status_code == 401  # the user_id dependency: 401 when anonymous
    assert client.post("/notes/a?value=1", headers=token(client)).status_code == 401
    log_in(client)
    first = client.cookies["satchel"]
    log_in(client)
    second = client.cookies["satchel"]
    assert first != second
    assert client.get("/me").json() == {"user": "alice", "data": {}}
    assert client.post("/logout", headers=token(client)).json() == {"user": None}
    assert "satchel" not in client.cookies  # expired
    client.cookies.clear()
    for old in (first, second):
        assert client.get("/me", headers={"cookie": f"satchel={old}"}).status_code == 401


def test_csrf_refused_without_token(client: TestClient[Litestar]) -> None:
    log_in(client)
    refused = client.post("/notes/a?value=1")
    assert refused.status_code == 403
    assert "CSRF token missing" in refused.text
    assert client.post("/login", data={"username": "bob"}).status_code == 403
    assert client.get("/me").json() == {"user": "alice", "data": {}}


async def test_concurrent_disjoint_writes_persist(example: ModuleType) -> None:
    async with AsyncTestClient(example.app, base_url=BASE) as c:
        tok = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/login", data={"username": "alice", "csrf_token": tok})
        tok = (await c.get("/csrf")).json()["csrf_token"]
        responses = await asyncio.gather(
            *(c.post(f"/notes/k{i}?value={i}", headers={"x-csrf-token": tok}) for i in range(20))
        )
        assert all(r.status_code == 201 for r in responses)
        data = (await c.get("/me")).json()["data"]
    assert data == {f"k{i}": str(i) for i in range(20)}


# -- Litestar's conventions --------------------------------------------------------------------


@get("/read", sync_to_thread=False)
def read(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"data": dict(request.session), "csrf_token": csrf_token(request)}


@post("/replace", sync_to_thread=False)
def replace(request: Request[Any, Any, Any]) -> None:
    request.set_session({"b": 2, "c": [3]})


@post("/clear", sync_to_thread=False)
def clear(request: Request[Any, Any, Any]) -> None:
    request.clear_session()


@post("/write/{key:str}", sync_to_thread=False)
def write(key: FromPath[str], session: CurrentSession) -> None:  # the plugin's `session` dependency
    session[key] = 1


@get("/skipped", sync_to_thread=False, opt={"skip_session": True})
def skipped(request: Request[Any, Any, Any]) -> dict[str, bool]:
    return {"has_session": "session" in request.scope}


@get("/form", sync_to_thread=False)
def form(request: Request[Any, Any, Any]) -> str:
    return str(csrf_input(request))


def _app(**options: Any) -> Litestar:
    config = SatchelSessionConfig(MemoryStore(), secret_keys=[KEY], **options)
    return Litestar(
        route_handlers=[read, replace, clear, write, skipped, form],
        plugins=[SatchelPlugin(config)],
    )


def test_set_session_and_clear_session_act_on_the_satchel_session() -> None:
    with TestClient(_app(), base_url=BASE) as client:
        csrf = {"x-csrf-token": client.get("/read").json()["csrf_token"]}
        assert client.post("/write/a", headers=csrf).status_code == 201
        cookie = client.cookies["satchel"]
        assert client.post("/replace", headers=csrf).status_code == 201
        assert client.cookies["satchel"] == cookie  # the same session, its data replaced
        assert client.get("/read").json()["data"] == {"b": 2, "c": [3]}
        assert client.post("/clear", headers=csrf).status_code == 201
        assert "satchel" not in client.cookies  # the record deleted, the cookie expired
        client.cookies.clear()
        replayed = client.get("/read", headers={"cookie": f"satchel={cookie}"})
        assert replayed.json()["data"] == {}


def test_litestar_cookie_arguments_and_route_opt_out() -> None:
    app = _app(key="sid", max_age=600, samesite="strict", path="/", clock=FakeClock())
    with TestClient(app, base_url=BASE) as client:
        csrf = {"x-csrf-token": client.get("/read").json()["csrf_token"]}
        line = client.post("/write/a", headers=csrf).headers["set-cookie"]
        assert line.startswith("sid=")
        assert "Max-Age=600" in line
        assert "SameSite=Strict" in line
        assert client.get("/skipped").json() == {"has_session": False}
        assert 'name="csrf_token"' in client.get("/form").text
    with TestClient(_app(exclude=["^/form"]), base_url=BASE) as client:
        assert client.get("/form").status_code == 500  # no session, as with Litestar's own
        assert client.get("/read").status_code == 200


def test_litestar_csrf_config_instead_of_satchels() -> None:
    config = SatchelSessionConfig(MemoryStore(), secret_keys=[KEY], csrf=False)
    app = Litestar(
        route_handlers=[read, write],
        plugins=[SatchelPlugin(config)],
        csrf_config=CSRFConfig(secret=KEY),
    )
    with TestClient(app, base_url=BASE) as client:
        client.get("/read")
        assert client.post("/write/a").status_code == 403  # Litestar's CSRF refuses
        ok = client.post("/write/a", headers={"x-csrftoken": client.cookies["csrftoken"]})
        assert ok.status_code == 201
        assert client.get("/read").json()["data"] == {"a": 1}


def test_store_down_gives_503(tmp_path: Path) -> None:
    config = SatchelSessionConfig("redis://127.0.0.1:9/0", secret_keys=[KEY])
    app = Litestar(route_handlers=[read], plugins=[SatchelPlugin(config)])
    cookie = _app_cookie(tmp_path)
    with TestClient(app, base_url=BASE) as client:
        down = client.get("/read", headers={"cookie": f"satchel={cookie}"})
    assert down.status_code == 503
    assert "retry-after" in down.headers


def _app_cookie(tmp_path: Path) -> str:
    """A well-signed session cookie (from a working app on the same key)."""
    config = SatchelSessionConfig(f"sqlite:///{tmp_path}/cookie.db", secret_keys=[KEY])
    app = Litestar(route_handlers=[read, write], plugins=[SatchelPlugin(config)])
    with TestClient(app, base_url=BASE) as client:
        csrf = {"x-csrf-token": client.get("/read").json()["csrf_token"]}
        client.post("/write/a", headers=csrf)
        return str(client.cookies["satchel"])


def test_session_of_outside_satchel_raises() -> None:
    from satchel.errors import SessionStateError

    @get("/bare", sync_to_thread=False)
    def bare(request: Request[Any, Any, Any]) -> str:
        try:
            session_of(request)
        except SessionStateError as exc:
            return str(exc)
        return "no error"

    with TestClient(Litestar(route_handlers=[bare]), base_url=BASE) as client:
        assert "not installed" in client.get("/bare").text


@websocket("/ws")
async def ws_handler(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    session = session_of(socket)
    await socket.send_json({"user": session.user_id, "data": dict(session)})
    await socket.close()


@post("/login/{user:str}", sync_to_thread=False)
def login_as(user: FromPath[str], request: Request[Any, Any, Any]) -> None:
    login_user(request, user)


def test_websocket_routes_see_the_session() -> None:
    config = SatchelSessionConfig(MemoryStore(), secret_keys=[KEY])
    app = Litestar(
        route_handlers=[read, write, login_as, ws_handler], plugins=[SatchelPlugin(config)]
    )
    with TestClient(app, base_url=BASE) as client:
        csrf = {"x-csrf-token": client.get("/read").json()["csrf_token"]}
        client.post("/login/carol", headers=csrf)
        client.post("/write/a", headers={"x-csrf-token": client.get("/read").json()["csrf_token"]})
        cookie = {"cookie": f"satchel={client.cookies['satchel']}"}
        with client.websocket_connect("/ws", headers=cookie) as ws:
            assert ws.receive_json() == {"user": "carol", "data": {"a": 1}}
        foreign = {**cookie, "origin": "https://evil.example"}
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect("/ws", headers=foreign) as ws,
        ):
            ws.receive_json()  # cross-site WebSocket hijacking: refused


def test_session_transaction_edits_a_session_in_a_test() -> None:
    config = SatchelSessionConfig(MemoryStore(), secret_keys=[KEY])
    app = Litestar(route_handlers=[read], plugins=[SatchelPlugin(config)])
    with TestClient(app, base_url=BASE) as client:
        with session_transaction(config, client) as session:
            login(session, "carol")
            session["cart"] = ["apple"]
        assert client.get("/read").json()["data"] == {"cart": ["apple"]}


def test_a_litestar_name_with_the_satchel_option_it_sets_is_refused() -> None:
    from satchel.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="key="):
        SatchelSessionConfig(MemoryStore(), secret_keys=[KEY], key="a", cookie_name="b")


pytestmark = pytest.mark.anyio
