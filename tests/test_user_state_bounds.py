"""A logged-in user cannot grow server-side state without limit, and every flow over a
user's sessions acts only on records of exactly that user. Real stores throughout: the
foreign records are written into a user's index directly in SQLite, Redis and MariaDB."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import FileStore, MemoryStore, Session, SQLiteStore, ids, login
from satchel.asgi import SessionMiddleware
from satchel.auth import arevoke, asessions_of
from satchel.engine import MAX_SESSIONS_PER_USER, Engine, RequestInfo, drive
from satchel.errors import ConfigurationError
from satchel.expiry import ExpiryPolicy
from satchel.stores.base import Store
from satchel.stores.capabilities import Countable
from satchel.user_sessions import INDEX_SLACK, UserSessions

from .conftest import KEY
from .helpers import CountingStore, do_login, session_of
from .services import port_open, unavailable

pytestmark = pytest.mark.anyio


async def me(request: Request) -> Response:
    return JSONResponse({"user": session_of(request).user_id, "handle": session_of(request).handle})


async def revoke(request: Request) -> Response:
    handle = (await request.body()).decode()
    return JSONResponse({"revoked": await arevoke(session_of(request), handle)})


async def sessions(request: Request) -> Response:
    return JSONResponse([i.handle for i in await asessions_of(session_of(request))])


ROUTES = [
    Route("/login", do_login),
    Route("/me", me),
    Route("/revoke", revoke, methods=["POST"]),
    Route("/sessions", sessions),
]


def make_app(store: Store, **options: Any) -> SessionMiddleware:
    return SessionMiddleware(
        Starlette(routes=ROUTES), store=store, secret_keys=[KEY], csrf=False, **options
    )


def client_for(app: SessionMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


@pytest.fixture(params=["memory", "sqlite", "file", "redis", "memcached"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store
    kind = request.param
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(tmp_path / "s.db")
    elif kind == "file":
        made = FileStore(tmp_path / "sessions")
    elif kind == "redis":
        from satchel.stores.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        made = RedisStore(url, prefix=f"lifecycle-{uuid.uuid4().hex[:8]}:")
    else:
        from satchel.stores.memcached import MemcachedStore

        server = request.getfixturevalue("memcached")
        made = MemcachedStore(
            [("127.0.0.1", server.port)], prefix=f"lifecycle-{uuid.uuid4().hex[:8]}:"
        )
    yield made
    await made.aclose()
    made.close()


def index_size(store: Store, user: str, now: float) -> int:
    """How many entries the store's per-user index holds for ``user``, read raw."""
    from satchel.stores.memcached import MemcachedStore
    from satchel.stores.redis import RedisStore

    if isinstance(store, RedisStore):
        return int(store.client.zcard(store.index_key(user)))
    if isinstance(store, MemcachedStore):
        return len(store._index(user)[0])
    if isinstance(store, FileStore):
        path = store._user_file(user)[1]
        return len(json.loads(path.read_bytes())) if path.exists() else 0
    assert isinstance(store, Countable)
    return store.count(now)  # SQL and memory: the index is the live records themselves


# -- revoking junk or foreign handles writes nothing ---------------------------------------------


async def test_revoking_junk_or_foreign_handles_writes_nothing(store: Store) -> None:
    counted = CountingStore(store)
    app = make_app(counted)
    async with client_for(app) as alice, client_for(app) as bob:
        await alice.get("/login")
        await bob.get("/login?user=bob")
        bob_handle = (await bob.get("/me")).json()["handle"]
        counted.reset()
        for junk in ("x" * 1_000_000, "h" * 13, "not a handle", "é" * 12, ""):
            assert (await alice.post("/revoke", content=junk.encode())).json() == {"revoked": False}
        assert counted.calls["list_user"] == 0  # refused before any store call
        for foreign in [bob_handle] + [ids.new_handle() for _ in range(50)]:
            response = await alice.post("/revoke", content=foreign.encode())
            assert response.json() == {"revoked": False}
        writes = {k: v for k, v in counted.calls.items() if k not in ("load", "list_user")}
        assert writes == {}  # listed, never written
        assert (await bob.get("/me")).json()["user"] == "bob"


def test_handles_have_one_exact_format() -> None:
    assert all(ids.is_handle(ids.new_handle()) for _ in range(200))
    for bad in ("", "a" * 11, "a" * 13, "a" * 11 + "=", "a" * 11 + "\n", "é" * 12, None, 12):
        assert not ids.is_handle(bad)


# -- the per-user index stays bounded ----------------------------------------------------------


async def test_many_logins_of_one_user_keep_the_index_bounded(store: Store) -> None:
    app = make_app(store)
    async with client_for(app) as c:
        for _ in range(60):  # each login regenerates: the old session ends
            await c.get("/login")
            assert index_size(store, "alice", time.time()) <= INDEX_SLACK + 1
        assert (await c.get("/me")).json()["user"] == "alice"
        assert len(await UserSessions(store).asessions("alice")) == 1


async def test_a_login_lists_the_users_sessions_only_when_its_index_may_pass_the_cap(
    store: Store,
) -> None:
    """Stores whose ``index_add`` counts the user's index (Redis, files, Memcached) spare
    a login the listing while the count proves the cap holds; the others list every time."""
    counting = CountingStore(store)
    cap = 3
    app = make_app(counting, max_sessions_per_user=cap)
    counts = store.index_add("nobody", "0" * 64, time.time() + 60) is not None
    clients = [client_for(app) for _ in range(cap + 2)]
    for n, c in enumerate(clients, 1):
        counting.reset()
        await c.get("/login")
        listed = counting.calls["list_user"]
        assert listed == (1 if n > cap or not counts else 0), n
    live = {(await c.get("/me")).json()["user"] for c in clients}
    assert len(await UserSessions(store).asessions("alice")) == cap  # the oldest were evicted
    assert live == {None, "alice"}
    for c in clients:
        await c.aclose()


def test_live_sessions_of_one_user_are_capped() -> None:
    store = MemoryStore()
    engine = Engine(secret_keys=[KEY], expiry=ExpiryPolicy())
    for _ in range(MAX_SESSIONS_PER_USER + 20):
        session = Session()
        login(session, "alice")
        drive(engine.commit(session, RequestInfo()), store)
    assert len(UserSessions(store).sessions("alice")) == MAX_SESSIONS_PER_USER
    with pytest.raises(ConfigurationError, match="max_sessions_per_user"):
        Engine(
            secret_keys=[KEY],
            expiry=ExpiryPolicy(),
            max_sessions_per_user=MAX_SESSIONS_PER_USER + 1,
        )


# -- every flow re-checks the user of each listed record -------------------------------------


async def _two_users(store: Store, **options: Any) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    app = make_app(store, **options)
    alice, bob = client_for(app), client_for(app)
    await alice.get("/login")
    await bob.get("/login?user=bob")
    return alice, bob


def _bob_key(store: Store, now: float) -> tuple[str, str]:
    [(key, meta)] = store.list_user("bob", now)
    return key, meta.handle


async def _check_foreign_record_is_ignored(
    store: Store, alice: httpx.AsyncClient, bob: httpx.AsyncClient, bob_handle: str
) -> None:
    admin = UserSessions(store)
    assert [i.user_id for i in admin.sessions("alice")] == ["alice"]
    assert len((await alice.get("/sessions")).json()) == 1
    assert admin.revoke("alice", bob_handle) is False
    assert (await alice.post("/revoke", content=bob_handle.encode())).json() == {"revoked": False}
    assert admin.revoke_all("alice") == 1  # alice's own session only
    assert (await bob.get("/me")).json()["user"] == "bob"


async def test_sqlite_row_filed_under_another_user_is_never_listed_or_revoked(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    alice, bob = await _two_users(store)
    try:
        bob_key, bob_handle = _bob_key(store, time.time())
        with sqlite3.connect(tmp_path / "s.db") as db:  # a corrupt index: bob's row under alice
            db.execute("UPDATE satchel_sessions SET user_id = 'alice' WHERE key = ?", (bob_key,))
        assert len(store.list_user("alice", time.time())) == 2  # the store does hand it back
        await _check_foreign_record_is_ignored(store, alice, bob, bob_handle)
    finally:
        await alice.aclose()
        await bob.aclose()
        store.close()


async def test_redis_index_entry_of_another_user_is_never_listed_or_revoked(
    redis_url: str,
) -> None:
    from satchel.stores.redis import RedisStore

    store = RedisStore(redis_url, prefix=f"lifecycle-{uuid.uuid4().hex[:8]}:")
    alice, bob = await _two_users(store)
    try:
        bob_key, bob_handle = _bob_key(store, time.time())
        store.client.zadd(store.index_key("alice"), {bob_key: time.time() + 3600})
        await _check_foreign_record_is_ignored(store, alice, bob, bob_handle)
    finally:
        await alice.aclose()
        await bob.aclose()
        await store.aclose()
        store.close()


async def test_session_cap_never_evicts_another_users_session(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    alice, bob = await _two_users(store, max_sessions_per_user=1)
    try:
        bob_key, _ = _bob_key(store, time.time())
        with sqlite3.connect(tmp_path / "s.db") as db:
            db.execute("UPDATE satchel_sessions SET user_id = 'alice' WHERE key = ?", (bob_key,))
        async with client_for(make_app(store, max_sessions_per_user=1)) as phone:
            await phone.get("/login")  # alice at her cap of 1: her oldest goes, not bob's
        assert (await bob.get("/me")).json()["user"] == "bob"
        assert (await alice.get("/me")).json()["user"] is None
    finally:
        await alice.aclose()
        await bob.aclose()
        store.close()


async def test_mariadb_user_ids_differing_by_trailing_spaces_stay_apart() -> None:
    """MariaDB's PAD SPACE collations compare 'alice ' equal to 'alice'; whatever the
    table's collation, no flow acts on the other user's sessions."""
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    from satchel.stores.mysql import MySQLStore

    table = f"satchel_test_{uuid.uuid4().hex[:10]}"
    store = MySQLStore("mariadb://root@127.0.0.1:3306/test", table=table)
    app = make_app(store)
    try:
        async with client_for(app) as alice, client_for(app) as impostor:
            await alice.get("/login?user=alice")
            await impostor.get("/login?user=alice%20")
            admin = UserSessions(store)
            assert [i.user_id for i in admin.sessions("alice ")] == ["alice "]
            assert admin.revoke_all("alice ") == 1
            assert (await alice.get("/me")).json()["user"] == "alice"
    finally:
        import pymysql

        await store.aclose()
        store.close()
        conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
