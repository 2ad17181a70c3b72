"""The ASGI middleware, driven through Starlette and httpx against real stores."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from satchel import (
    ConfigurationError,
    MemoryStore,
    Session,
    SQLiteStore,
    ids,
    login,
    logout,
)
from satchel.asgi import SessionMiddleware
from satchel.stores.base import Store
from satchel.stores.capabilities import Countable
from satchel.testing import FakeClock

from .conftest import KEY, OLD_KEY
from .helpers import CountingStore, set_cookie_value

pytestmark = pytest.mark.anyio


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


async def read(request: Request) -> Response:
    return JSONResponse({"n": request.session.get("n"), "user": _session(request).user_id})


async def untouched(request: Request) -> Response:
    return PlainTextResponse("hello")


async def incr(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse({"n": request.session["n"]})


async def put(request: Request) -> Response:
    for key, value in request.query_params.items():
        request.session[key] = value
    return PlainTextResponse("ok")


async def cart(request: Request) -> Response:
    request.session.setdefault("cart", []).append(request.query_params["item"])
    return JSONResponse(request.session["cart"])


async def do_login(request: Request) -> Response:
    login(_session(request), request.query_params.get("user", "alice"))
    return PlainTextResponse("in")


async def do_logout(request: Request) -> Response:
    logout(_session(request))
    return PlainTextResponse("out")


async def regen(request: Request) -> Response:
    _session(request).regenerate()
    return PlainTextResponse("regenerated")


async def fail(request: Request) -> Response:
    request.session["n"] = 999
    return PlainTextResponse("boom", status_code=500)


async def crash(request: Request) -> Response:
    request.session["n"] = 999
    raise RuntimeError("app crashed")


async def remember(request: Request) -> Response:
    _session(request).set_expiry(
        idle_timeout=7 * 86400, absolute_timeout=30 * 86400, persistent=True
    )
    request.session["remember"] = True
    return PlainTextResponse("remembered")


async def early_save(request: Request) -> Response:
    request.session["early"] = True
    await _session(request).asave()
    return PlainTextResponse("saved")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"n": websocket.session.get("n")})
    await websocket.close()


ROUTES = [
    Route("/read", read),
    Route("/untouched", untouched),
    Route("/incr", incr, methods=["GET", "POST"]),
    Route("/put", put),
    Route("/cart", cart),
    Route("/login", do_login),
    Route("/logout", do_logout),
    Route("/regen", regen),
    Route("/fail", fail),
    Route("/crash", crash),
    Route("/remember", remember),
    Route("/early", early_save),
    WebSocketRoute("/ws", ws),
]


def make_app(store: Store, **options: Any) -> SessionMiddleware:
    options.setdefault("secret_keys", [KEY])
    return SessionMiddleware(Starlette(routes=ROUTES), store=store, **options)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemoryStore())


@pytest.fixture
async def client(store: CountingStore, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(store, clock=clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def test_request_session_works_and_cookie_has_secure_attributes(
    client: httpx.AsyncClient,
) -> None:
    """Checklist 20, 24: secure defaults; no-store and Vary: Cookie when the cookie is set."""
    response = await client.get("/incr")
    assert response.json() == {"n": 1}
    header = response.headers["set-cookie"]
    assert header.endswith("; Path=/; Secure; HttpOnly; SameSite=Lax")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Cookie"
    assert (await client.get("/incr")).json() == {"n": 2}


async def test_untouched_and_read_only_requests_cost_nothing_extra(
    client: httpx.AsyncClient, store: CountingStore
) -> None:
    """No cookie: no store call. A live cookie: exactly one load. No Set-Cookie either way."""
    response = await client.get("/untouched")
    assert store.total == 0
    assert "set-cookie" not in response.headers
    await client.get("/incr")
    store.reset()
    response = await client.get("/read")
    assert response.json()["n"] == 1
    assert dict(store.calls) == {"load": 1}
    assert "set-cookie" not in response.headers
    assert "cache-control" not in response.headers
    store.reset()
    await client.get("/incr")
    assert dict(store.calls) == {"load": 1, "update": 1}


GARBAGE = [
    "A" * 10_240,
    "abc\x00def",
    "%00%00",
    "../../etc/passwd",
    "' OR '1'='1",
    "!!!not-base64!!!",
    "é" * 43,
]


@pytest.mark.parametrize("value", GARBAGE)
async def test_garbage_cookies_give_a_fresh_session_and_never_reach_the_store(
    store: CountingStore, clock: FakeClock, value: str
) -> None:
    """Checklist 6."""
    app = make_app(store, clock=clock)
    scope_headers = [(b"cookie", b"satchel=" + value.encode("utf-8"))]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/read",
        "raw_path": b"/read",
        "query_string": b"",
        "root_path": "",
        "headers": scope_headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 443),
    }
    await app(scope, receive, send)
    assert messages[0]["status"] == 200
    assert store.total == 0


async def test_forged_signature_costs_no_round_trip(
    client: httpx.AsyncClient, store: CountingStore
) -> None:
    await client.get("/incr")
    real = client.cookies["satchel"]
    sid, _, sig = real.partition(".")
    forged = sid + "." + sig[:-1] + ("A" if sig[-1] != "A" else "B")
    store.reset()
    client.cookies.clear()
    response = await client.get("/read", headers={"cookie": f"satchel={forged}"})
    assert response.json()["n"] is None
    assert store.total == 0
    response = await client.get(
        "/read", headers={"cookie": f"satchel={ids.new_session_id()}"}
    )  # unsigned
    assert store.total == 0


async def test_planted_id_is_never_adopted(store: CountingStore, clock: FakeClock) -> None:
    """Checklist 3: an attacker-chosen, correctly formatted and signed ID the server never
    issued: no record is created for it, and a write gets a fresh ID."""
    app = make_app(store, clock=clock)
    planted = ids.new_session_id()
    cookie = app.backend.token_for(planted)  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        response = await c.get("/read", headers={"cookie": f"satchel={cookie}"})
        # nothing issued for it; the cookie that names nothing is deleted (issue 15)
        assert "Max-Age=0" in response.headers["set-cookie"]
        assert set_cookie_value(response.headers) in (None, "")
        assert store.calls["create"] == 0
        response = await c.get("/incr", headers={"cookie": f"satchel={cookie}"})
        issued = set_cookie_value(response.headers)
        assert issued is not None
        assert not issued.startswith(planted)
    assert store.inner.load(ids.store_key(planted), clock.now) is None


async def test_ids_in_query_string_or_headers_are_ignored(client: httpx.AsyncClient) -> None:
    """Checklist 5."""
    await client.get("/incr")
    sid = client.cookies["satchel"]
    client.cookies.clear()
    response = await client.get(
        f"/read?satchel={sid}&session={sid}", headers={"X-Session": sid, "Authorization": sid}
    )
    assert response.json()["n"] is None


async def test_nested_change_is_saved(client: httpx.AsyncClient) -> None:
    await client.get("/cart?item=a")
    assert (await client.get("/cart?item=b")).json() == ["a", "b"]


async def test_5xx_and_exceptions_commit_nothing(
    client: httpx.AsyncClient, store: CountingStore
) -> None:
    await client.get("/incr")
    store.reset()
    response = await client.get("/fail")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    response = await client.get("/crash")
    assert response.status_code == 500
    assert store.calls["update"] == 0
    assert (await client.get("/read")).json()["n"] == 1


async def test_logout_expires_cookie_and_replay_is_anonymous(
    client: httpx.AsyncClient, store: CountingStore, clock: FakeClock
) -> None:
    """Checklist 9, 12, 14."""
    await client.get("/incr")
    pre_login = client.cookies["satchel"]
    await client.get("/login?user=alice")
    logged_in = client.cookies["satchel"]
    assert logged_in != pre_login
    assert (await client.get("/read", headers={"cookie": f"satchel={pre_login}"})).json()[
        "user"
    ] is None
    client.cookies.set("satchel", logged_in)
    assert (await client.get("/read")).json() == {"n": 1, "user": "alice"}
    response = await client.get("/logout")
    header = response.headers["set-cookie"]
    assert header.startswith("satchel=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0;")
    assert response.headers["cache-control"] == "no-store"
    client.cookies.clear()
    replay = await client.get("/read", headers={"cookie": f"satchel={logged_in}"})
    assert replay.json() == {"n": None, "user": None}
    assert isinstance(store.inner, Countable)
    assert store.inner.count(clock.now) == 0


async def test_login_records_device_and_restarts_absolute_timeout(
    client: httpx.AsyncClient, store: CountingStore, clock: FakeClock
) -> None:
    await client.get("/incr")
    clock.advance(60)
    await client.get("/login", headers={"User-Agent": "TestBrowser/1.0"})
    sid = client.cookies["satchel"].partition(".")[0]
    record = store.inner.load(ids.store_key(sid), clock.now)
    assert record is not None
    meta = record.meta
    assert meta.user_id == "alice"
    assert meta.user_agent == "TestBrowser/1.0"
    assert meta.client_ip == "127.0.0.1"
    assert meta.created == clock.now
    assert meta.absolute_deadline == clock.now + 12 * 3600


async def test_regenerate_keeps_data_and_kills_old_id(
    client: httpx.AsyncClient, store: CountingStore, clock: FakeClock
) -> None:
    """Checklist 10, 11."""
    await client.get("/incr")
    old = client.cookies["satchel"]
    await client.get("/regen")
    new = client.cookies["satchel"]
    assert new != old
    assert (await client.get("/read")).json()["n"] == 1
    client.cookies.clear()
    assert (await client.get("/read", headers={"cookie": f"satchel={old}"})).json()["n"] is None
    assert store.inner.load(ids.store_key(old.partition(".")[0]), clock.now) is None


async def test_concurrent_disjoint_writes_through_the_middleware(tmp_path: Path) -> None:
    """Checklist 36: 20 parallel requests on one session, each its own key: 20 of 20 kept."""
    app = make_app(SQLiteStore(tmp_path / "s.db"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/put?base=1")
        await asyncio.gather(*(c.get(f"/put?k{i}={i}") for i in range(20)))
        session_id = c.cookies["satchel"].partition(".")[0]
    assert app.store is not None
    record = app.store.load(ids.store_key(session_id), 0)
    assert record is not None
    assert {k for k in record.data if k.startswith("k")} == {f"k{i}" for i in range(20)}


async def test_in_flight_request_cannot_undo_logout(store: CountingStore) -> None:
    """Checklist 36: a slow request that loaded the session before logout cannot bring it
    back, and sets no cookie that could overwrite a newer one."""
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> Response:
        loaded.set()
        await release.wait()
        request.session["late"] = "write"
        return PlainTextResponse("slow")

    app = SessionMiddleware(
        Starlette(routes=[*ROUTES, Route("/slow", slow)]), store=store, secret_keys=[KEY]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/login")
        cookie = c.cookies["satchel"]
        pending = asyncio.create_task(c.get("/slow"))
        await loaded.wait()
        await c.get("/logout")
        release.set()
        slow_response = await pending
        assert "set-cookie" not in slow_response.headers
        c.cookies.clear()
        replay = await c.get("/read", headers={"cookie": f"satchel={cookie}"})
        assert replay.json() == {"n": None, "user": None}
    assert isinstance(store.inner, Countable)
    assert store.inner.count(0) == 0


async def test_idle_timeout_is_enforced_on_the_server(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Checklist 15, 17: whatever the cookie says, an idle session is gone."""
    await client.get("/incr")
    clock.advance(30 * 60 + 1)
    assert (await client.get("/read")).json()["n"] is None


async def test_absolute_timeout_holds_under_constant_use(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Checklist 16, 19."""
    await client.get("/incr")
    for _ in range(int(12 * 3600 / (15 * 60))):
        clock.advance(15 * 60)
        await client.get("/read")
    clock.advance(15 * 60)
    assert (await client.get("/read")).json()["n"] is None


async def test_remember_me_gives_persistent_rolling_cookie(
    client: httpx.AsyncClient, store: CountingStore, clock: FakeClock
) -> None:
    response = await client.get("/remember")
    header = response.headers["set-cookie"]
    assert "Max-Age=604800" in header
    clock.advance(3600)  # past the idle timeout of ordinary sessions
    store.reset()
    response = await client.get("/read")
    assert response.status_code == 200
    assert dict(store.calls) == {"load": 1, "touch": 1}
    assert "Max-Age=604800" in response.headers["set-cookie"]  # rolled forward


async def test_explicit_save_commits_early(client: httpx.AsyncClient, store: CountingStore) -> None:
    response = await client.get("/early")
    assert response.status_code == 200
    assert store.calls["create"] == 1
    assert store.calls["update"] == 0  # nothing left to commit at response start
    assert "set-cookie" in response.headers


async def test_key_rotation_for_server_side_cookies(store: CountingStore) -> None:
    """A cookie signed with an older listed key is accepted and re-signed with the newest;
    once the key is removed it is rejected without a store call. Three keys."""
    third = "third-key-0123456789-0123456789-0123"
    app1 = make_app(store, secret_keys=[OLD_KEY])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app1), base_url="https://testserver"
    ) as c:
        await c.get("/incr")
        old_cookie = c.cookies["satchel"]
    app3 = make_app(store, secret_keys=[third, KEY, OLD_KEY])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app3), base_url="https://testserver"
    ) as c:
        response = await c.get("/read", headers={"cookie": f"satchel={old_cookie}"})
        assert response.json()["n"] == 1
        resigned = set_cookie_value(response.headers)
        assert resigned is not None
        assert resigned.partition(".")[0] == old_cookie.partition(".")[0]
        assert resigned != old_cookie
    retired = make_app(store, secret_keys=[third, KEY])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=retired), base_url="https://testserver"
    ) as c:
        store.reset()
        response = await c.get("/read", headers={"cookie": f"satchel={old_cookie}"})
        assert response.json()["n"] is None
        assert store.total == 0
        assert (await c.get("/read", headers={"cookie": f"satchel={resigned}"})).json()["n"] == 1


def test_websocket_gets_its_session_at_connect(store: CountingStore) -> None:
    app = make_app(store)
    with TestClient(app, base_url="https://testserver") as client:
        cookie = client.get("/incr").cookies["satchel"]
        with client.websocket_connect("/ws", headers={"cookie": f"satchel={cookie}"}) as websocket:
            assert websocket.receive_json() == {"n": 1}


async def test_other_scopes_pass_through(store: CountingStore) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert "session" not in scope

    app = SessionMiddleware(inner, store=store, secret_keys=[KEY])
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_keys_are_required_unless_explicitly_waived(store: CountingStore) -> None:
    with pytest.raises(ConfigurationError, match="secret_keys is required"):
        SessionMiddleware(Starlette(), store=store)
    with pytest.raises(ConfigurationError, match="shorter than 32"):
        SessionMiddleware(Starlette(), store=store, secret_keys=["short"])
    with pytest.raises(ConfigurationError, match="unknown option"):
        SessionMiddleware(Starlette(), store=store, secret_keys=[KEY], idle=5)  # type: ignore[call-arg]
    SessionMiddleware(Starlette(), store=store, insecure_unsigned_cookies=True)


async def test_logs_never_show_a_raw_id(
    client: httpx.AsyncClient, security_log: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    """Checklist 8."""
    await client.get("/incr")
    first = client.cookies["satchel"]
    await client.get("/login")
    second = client.cookies["satchel"]
    await client.get("/logout")
    clock.advance(10**6)
    await client.get("/read", headers={"cookie": f"satchel={second}"})
    text = "\n".join(r.getMessage() for r in security_log.records)
    assert security_log.records
    for cookie in (first, second):
        assert cookie.partition(".")[0] not in text


# -- store failures: real faults, no mocks ---------------------------------------------------


def _locking(path: Path) -> sqlite3.Connection:
    """Another connection holding SQLite's write lock, like a stuck writer in another
    process: the store's writers time out. (WAL readers are not blocked, by design.)"""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE satchel_sessions SET version = version")
    return db


async def test_store_down_gives_clean_503_then_recovers(
    tmp_path: Path, security_log: pytest.LogCaptureFixture
) -> None:
    """Checklist 38: fail closed with a plain 503, no traceback, no anonymous session;
    recover by itself when the store is back. Here: the SQLite write lock is held."""
    path = tmp_path / "s.db"
    app = make_app(SQLiteStore(path, timeout=0.05))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        blocker = _locking(path)
        try:
            down = await c.get("/incr")
            assert down.status_code == 503
            assert "Traceback" not in down.text
            assert down.headers["retry-after"] == "5"
            assert "set-cookie" not in down.headers
            assert (await c.get("/read")).json()["n"] == 1  # WAL readers carry on
            fresh = await c.get("/incr", headers={"cookie": "other=1"})
            assert fresh.status_code == 503  # a new session cannot commit: no silent session
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        back = await c.get("/incr")
        assert back.status_code == 200
        assert back.json()["n"] == 2
    assert any("unavailable" in r.getMessage() for r in security_log.records)


async def test_store_unreadable_gives_503_on_load_then_recovers(tmp_path: Path) -> None:
    """The load path: the file store's directory disappears under it, then comes back."""
    from satchel import FileStore

    directory = tmp_path / "sessions"
    app = make_app(FileStore(directory))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        directory.rename(tmp_path / "moved")
        directory.write_text("not a directory")
        try:
            down = await c.get("/read")
            assert down.status_code == 503
            assert "set-cookie" not in down.headers
        finally:
            directory.unlink()
            (tmp_path / "moved").rename(directory)
        assert (await c.get("/read")).json()["n"] == 1


async def test_custom_unavailable_handler(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def sorry(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("maintenance", status_code=503)(scope, receive, send)

    app = SessionMiddleware(
        Starlette(routes=ROUTES),
        store=SQLiteStore(path, timeout=0.05),
        secret_keys=[KEY],
        on_store_unavailable=sorry,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        blocker = _locking(path)
        try:
            response = await c.get("/incr")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    assert (response.status_code, response.text) == (503, "maintenance")


async def test_corrupt_record_gives_empty_session_and_security_warning(
    tmp_path: Path, security_log: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    app = make_app(SQLiteStore(path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        with sqlite3.connect(path) as db:
            db.execute('UPDATE satchel_sessions SET data = \'{"n": "{not json"}\'')
        response = await c.get("/read")
        assert response.status_code == 200
        assert response.json()["n"] is None
    warnings = [r for r in security_log.records if r.name == "satchel.security"]
    assert any("corrupt" in r.getMessage() for r in warnings)
    assert all(r.levelno >= logging.INFO for r in warnings)


async def test_sqlite_busy_lock_moves_the_call_off_the_event_loop(tmp_path: Path) -> None:
    """A writer holding the lock briefly: the request waits in a worker thread (the loop
    keeps serving) and then succeeds; no 503 within the store's timeout."""
    import threading

    path = tmp_path / "s.db"
    app = make_app(SQLiteStore(path, timeout=5))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/incr")
        blocker = _locking(path)
        timer = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
        timer.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while timer.is_alive():
                ticks += 1
                await asyncio.sleep(0.01)

        response, _ = await asyncio.gather(c.get("/incr"), ticker())
        timer.join()
        blocker.close()
    assert response.json() == {"n": 2}
    assert ticks > 10  # the event loop was never blocked while the write waited
