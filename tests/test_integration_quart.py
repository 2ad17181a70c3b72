"""The Quart integration through Quart's own test client, on SQLite and Redis (https
scheme: the session cookie is Secure)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from quart import Quart, session
from quart.testing import QuartClient

from satchel.engine import Engine
from satchel.errors import ConfigurationError
from satchel.integrations.quart import QuartSession, Satchel

from .conftest import KEY
from .test_examples import load

pytestmark = pytest.mark.anyio

HTTPS = {"scheme": "https"}


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    url: str = request.getfixturevalue("redis_url")
    return url + f"?prefix=q{uuid.uuid4().hex[:12]}:"  # this test's own keys


@pytest.fixture
async def example(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str
) -> AsyncIterator[ModuleType]:
    monkeypatch.setenv("SECRET_KEY", KEY)
    module = load("quart_app", monkeypatch, tmp_path)
    module.app.config["SATCHEL_STORE"] = store
    Satchel(module.app)  # again, on this test's store
    yield module
    await close(module.app)


async def close(app: Quart) -> None:
    store = Satchel.runtime(app).store
    assert store is not None
    await store.aclose()


@pytest.fixture
def client(example: ModuleType) -> QuartClient:
    app: Quart = example.app
    return cast(QuartClient, app.test_client())


async def token(client: QuartClient) -> str:
    page = await (await client.get("/login", **HTTPS)).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def cookie(client: QuartClient) -> str | None:
    assert client.cookie_jar is not None
    return next((c.value for c in client.cookie_jar if c.name == "satchel"), None)


async def log_in(client: QuartClient, user: str = "alice") -> None:
    form = {"username": user, "csrf_token": await token(client)}
    response = await client.post("/login", form=form, **HTTPS)
    assert response.status_code == 200


def replaying(app: Quart, value: str) -> QuartClient:
    """A fresh client carrying only ``value`` as its session cookie."""
    other = cast(QuartClient, app.test_client())
    other.set_cookie("localhost", "satchel", value, secure=True)
    return other


async def test_quart_session_is_satchels(example: ModuleType) -> None:
    async with example.app.test_request_context("/", scheme="https"):
        current = session._get_current_object()  # type: ignore[attr-defined]
        assert type(current) is QuartSession
        current.permanent = True
        assert current.permanent


async def test_login_regenerates_the_id_and_logout_kills_replay(
    client: QuartClient, example: ModuleType
) -> None:
    await client.get("/login", **HTTPS)
    assert (await client.post("/cart", form={"item": "x"}, **HTTPS)).status_code == 403
    await log_in(client)
    first = cookie(client)
    assert first is not None
    await log_in(client)
    second = cookie(client)
    assert second is not None
    assert second != first
    me = await (await client.get("/me", **HTTPS)).get_json()
    assert (me["user"], me["devices"]) == ("alice", 1)
    # the first ID died with the second login
    old = await replaying(example.app, first).get("/me", headers={"Accept": "application/json"})
    assert old.status_code == 401
    out = await client.post("/logout", form={"csrf_token": await token(client)}, **HTTPS)
    assert out.status_code == 200
    assert cookie(client) is None  # expired
    replay = replaying(example.app, second)
    answer = await replay.get("/me", headers={"Accept": "application/json"}, **HTTPS)
    assert answer.status_code == 401


async def test_csrf_refused_without_token(client: QuartClient) -> None:
    await log_in(client)
    response = await client.post("/cart", form={"item": "a"}, **HTTPS)
    assert response.status_code == 403
    assert "CSRF token missing" in await response.get_data(as_text=True)
    ok = await client.post("/cart", form={"item": "a", "csrf_token": await token(client)}, **HTTPS)
    assert await ok.get_json() == {"cart": ["a"]}
    again = await client.post(
        "/cart", form={"item": "b"}, headers={"X-CSRF-Token": await token(client)}, **HTTPS
    )
    assert await again.get_json() == {"cart": ["a", "b"]}  # nested change saved


async def test_concurrent_disjoint_writes_persist(client: QuartClient, example: ModuleType) -> None:
    await log_in(client)
    value, tok = cookie(client), await token(client)
    assert value is not None

    async def write(i: int) -> int:
        own = replaying(example.app, value)
        response = await own.post(
            "/note", form={"key": f"k{i}", "value": str(i)}, headers={"X-CSRF-Token": tok}, **HTTPS
        )
        return response.status_code

    assert await asyncio.gather(*(write(i) for i in range(20))) == [200] * 20
    data = (await (await client.get("/me", **HTTPS)).get_json())["data"]
    assert {k: v for k, v in data.items() if k.startswith("k")} == {
        f"k{i}": str(i) for i in range(20)
    }


async def test_session_transaction_edits_a_session_in_a_test(client: QuartClient) -> None:
    """Quart's own test helper works on satchel sessions."""
    await log_in(client)
    async with client.session_transaction(scheme="https") as sess:
        assert isinstance(sess, QuartSession)
        assert sess.user_id == "alice"
        sess["cart"] = ["prefilled"]
    me = await (await client.get("/me", **HTTPS)).get_json()
    assert me["data"]["cart"] == ["prefilled"]


async def test_login_required_redirects_html_and_401s_json(client: QuartClient) -> None:
    html = await client.get("/me", query_string={"a": "b c"}, headers={"Accept": "text/html"})
    assert html.status_code == 303
    assert html.headers["Location"] == "/login?next=/me%3Fa%3Db%2Bc"
    json = await client.get("/me", headers={"Accept": "application/json"})
    assert json.status_code == 401


async def test_configuration_from_app_config_and_explicit_arguments(tmp_path: Path) -> None:
    app = Quart("configured")
    app.config.update(
        SECRET_KEY="x" * 40,
        SATCHEL_STORE=f"sqlite:///{tmp_path}/a.db",
        SATCHEL_COOKIE_NAME="from-config",
        SATCHEL_IDLE_TIMEOUT=60,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    Satchel(app, cookie_name="explicit")
    _, engine, policy = Satchel.runtime(app)
    assert policy.cookie.name == "explicit"  # explicit arguments win over app.config
    assert policy.cookie.samesite == "strict"  # Quart's own setting, as on Flask
    assert isinstance(engine, Engine)
    assert engine.expiry.idle_timeout == 60
    with pytest.raises(ConfigurationError, match=r"Satchel\(\.\.\.\): unknown option 'nonsense'"):
        Satchel(app, nonsense=1)


def _app(store: str = "memory://") -> tuple[Quart, Satchel]:
    app = Quart("small")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=store)
    return app, Satchel(app)


async def test_csrf_checks_unsafe_methods_only_and_honours_exempt_views() -> None:
    app, satchel = _app()

    @app.route("/form", methods=["GET", "POST", "OPTIONS"])
    async def form() -> str:
        return "ok"

    @app.post("/hook")
    @satchel.exempt
    async def hook() -> str:
        return "hooked"

    client = app.test_client()
    assert (await client.get("/form", **HTTPS)).status_code == 200
    assert (await client.options("/form", **HTTPS)).status_code == 200
    assert (await client.post("/form", form={"a": "1"}, **HTTPS)).status_code == 403
    hooked = await client.post("/hook", form={"a": "1"}, **HTTPS)
    assert await hooked.get_data(as_text=True) == "hooked"


async def test_a_multipart_form_token_is_found_and_the_view_still_reads_the_form() -> None:
    app, _ = _app()

    @app.get("/token")
    async def get_token() -> str:
        from quart import request

        from satchel import csrf_token

        return csrf_token(request)

    @app.post("/upload")
    async def upload() -> dict[str, Any]:
        from quart import request

        form = await request.form
        return {"name": form["name"], "files": sorted(await request.files)}

    client = app.test_client()
    tok = await (await client.get("/token", **HTTPS)).get_data(as_text=True)
    boundary = "xyz"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{tok}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post("/upload", data=body, headers=headers, **HTTPS)
    assert await response.get_json() == {"name": "ann", "files": []}


async def test_store_down_gives_503(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.db"
    app, _ = _app(f"sqlite:///{path}?timeout=0.05")

    @app.get("/w")
    async def w() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert await (await client.get("/w", **HTTPS)).get_data(as_text=True) == "1"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # committing fails
    try:
        down = await client.get("/w", **HTTPS)
        assert down.status_code == 503
        assert down.headers["Retry-After"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await (await client.get("/w", **HTTPS)).get_data(as_text=True) == "2"
    await close(app)


async def test_a_response_that_carries_the_token_is_never_cached() -> None:
    app, _ = _app()

    @app.get("/write")
    async def write() -> Any:
        session["n"] = 1
        return "ok", 200, [("Cache-Control", "public, max-age=60"), ("Vary", "Accept-Encoding")]

    @app.get("/read")
    async def read() -> Any:
        return str(session.get("n")), 200, [("Cache-Control", "public, max-age=60")]

    @app.get("/untouched")
    async def untouched() -> Any:
        return "ok", 200, [("Cache-Control", "public, max-age=60")]

    client = app.test_client()
    written = await client.get("/write", **HTTPS)
    assert written.headers["Cache-Control"] == "no-store"
    assert written.headers["Vary"] == "Accept-Encoding, Cookie"
    assert written.headers["Set-Cookie"].startswith("satchel=")
    looked = await client.get("/read", **HTTPS)
    assert (looked.headers["Vary"], looked.headers["Cache-Control"]) == (
        "Cookie",
        "public, max-age=60",
    )
    assert "Set-Cookie" not in looked.headers
    plain = await client.get("/untouched", **HTTPS)
    assert "Vary" not in plain.headers


async def test_a_cross_site_websocket_handshake_is_refused() -> None:
    app, _ = _app()

    @app.get("/write")
    async def write() -> str:
        session["user"] = "ann"
        return "ok"

    @app.websocket("/ws")
    async def ws() -> None:
        from quart import websocket

        await websocket.accept()
        await websocket.send(str(session.get("user")))

    client = app.test_client()
    await client.get("/write", **HTTPS)
    async with client.websocket("/ws", scheme="wss") as socket:
        assert await socket.receive() == "ann"  # the handshake's session
    from quart.testing.connections import WebsocketResponseError

    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket(
            "/ws", scheme="wss", headers={"Origin": "https://evil.example"}
        ) as socket:
            await socket.receive()
    assert refused.value.response.status_code == 403


async def test_quarts_own_flash_and_a_permanent_session() -> None:
    from datetime import timedelta

    from quart import flash, get_flashed_messages

    app, _ = _app()
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=2)
    Satchel(app)  # again: the lifetime is read when the extension is set up

    @app.get("/save")
    async def save() -> str:
        session.permanent = True
        await flash("Theme saved.", "success")
        return "ok"

    @app.get("/show")
    async def show() -> dict[str, Any]:
        return {"messages": get_flashed_messages(with_categories=True)}

    client = app.test_client()
    saved = await client.get("/save", **HTTPS)
    assert "Max-Age=7200" in saved.headers["Set-Cookie"]
    shown = await client.get("/show", **HTTPS)
    assert await shown.get_json() == {"messages": [["success", "Theme saved."]]}
    again = await client.get("/show", **HTTPS)
    assert await again.get_json() == {"messages": []}


async def test_a_store_down_while_loading_gives_503() -> None:
    from .services import LOOPBACK, free_port

    up, _ = _app()

    @up.get("/w")
    async def w() -> str:
        session["n"] = 1
        return "ok"

    client = cast(QuartClient, up.test_client())
    await client.get("/w", **HTTPS)
    value = cookie(client)
    assert value is not None
    down, _ = _app(f"redis://{LOOPBACK}:{free_port()}/0")  # nothing listens there

    @down.get("/w")
    async def never() -> str:
        raise AssertionError("the view runs without its session")

    answer = await replaying(down, value).get("/w", **HTTPS)
    assert answer.status_code == 503
    await close(down)
