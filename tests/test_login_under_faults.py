"""A login or a regeneration that fails half-way never destroys the session.

Each test cuts the link to a real store at one store call of a login (or of a
privilege-change regeneration) and checks what the client is left holding: the fault is
injected before the call (the connection is reset and refused) or after it (the server acts
on the request and its reply is dropped, so the client times out). Whatever the step, the
client's next request, with whatever cookies it now holds, finds its data and its user.

The networked stores (Redis, PostgreSQL, MariaDB, Memcached) are reached through a
:class:`~tests.services.TcpProxy` the test owns; the shared servers behind it are never
touched. The embedded stores get the fault that applies to them (SQLite: a write lock held
by another connection past the store's timeout).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import psycopg
import pymysql
import pytest
from fastapi import FastAPI, Request

from satchel._types import Receive, Scope, Send
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.auth import login, regenerate_on_privilege_change
from satchel.errors import StoreUnavailable
from satchel.record import Change, Meta, Record
from satchel.stores.base import Store
from satchel.stores.memcached import MemcachedStore
from satchel.stores.mysql import MySQLStore
from satchel.stores.postgres import PostgresStore
from satchel.stores.redis import RedisStore
from satchel.stores.registry import store_from_url
from satchel.stores.sqlite import SQLiteStore
from satchel.testing import FakeClock
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .helpers import KEY
from .services import MemcachedServer, TcpProxy, port_open, unavailable, wait_for

TIMEOUT = 0.3  # the stores' own timeouts, where they have one
HOLD = 0.3  # how long a dropped reply leaves a client without its own timeout waiting
CART = ["apple", "pear"]

# The store calls of each flow, in order, as the core makes them (checked below, so a
# change of order shows here first). "login": an anonymous session with data logs in as a
# user who already has another session, with max_sessions_per_user=1 (so the cap evicts);
# "regenerate": the logged-in user's session gets a new ID (regenerate_on_privilege_change).
FLOWS = {
    "login": ["load", "index_add", "create", "delete", "list_user", "delete"],
    "regenerate": ["load", "index_add", "create", "delete", "list_user"],
}


# -- a store that triggers a real fault at call N ------------------------------------------


@dataclass
class Fault:
    """What to break, and when: at store call ``at`` (1-based) of the armed request."""

    at: int = 0
    mode: str = "before"  # or "after"
    calls: list[str] = field(default_factory=list)  # names of the calls made
    done: list[str] = field(default_factory=list)  # names of the calls that returned
    failed: bool = False  # a call raised
    after: str = ""


class FaultyStore(Store):
    """Delegates every call to a real store, and at the armed call breaks the real link:
    ``inject(mode)`` runs just before it. Only the trigger lives here; the failure is the
    driver's own (a refused or reset connection, a timeout)."""

    def __init__(self, inner: Store, inject: Callable[[str], None], kind: str = "") -> None:
        self.inner, self.inject, self.kind = inner, inject, kind
        self.fault = Fault()

    def arm(self, at: int, mode: str, after: str = "") -> Fault:
        """Break the link before call ``at``; or, with ``after``, as soon as a call of
        that name has returned (e.g. "create": whatever the core does next fails)."""
        self.fault = Fault(at, mode, after=after)
        return self.fault

    def _enter(self, name: str) -> None:
        fault = self.fault
        fault.calls.append(name)
        if len(fault.calls) == fault.at:
            self.inject(fault.mode)

    def _call(self, name: str, fn: Callable[[], Any]) -> Any:
        self._enter(name)
        try:
            result = fn()
        except Exception:
            self.fault.failed = True
            raise
        self._leave(name)
        return result

    def _leave(self, name: str) -> None:
        fault = self.fault
        fault.done.append(name)
        if fault.after == name:
            fault.after = ""
            self.inject(fault.mode)

    async def _acall(self, name: str, fn: Callable[[], Any]) -> Any:
        self._enter(name)
        try:
            result = await fn()
        except Exception:
            self.fault.failed = True
            raise
        self._leave(name)
        return result

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        return self._call("load", lambda: self.inner.load(key, now, refresh_after))  # type: ignore[no-any-return]

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return self._call("touch", lambda: self.inner.touch(key, last_seen, now))  # type: ignore[no-any-return]

    def create(self, key: str, record: Record) -> None:
        self._call("create", lambda: self.inner.create(key, record))

    def update(self, key: str, change: Change, now: float) -> int | None:
        return self._call("update", lambda: self.inner.update(key, change, now))  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._call("delete", lambda: self.inner.delete(key))  # type: ignore[no-any-return]

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.inner.purge_expired(now, batch_size, on_batch)

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return self._call("index_add", lambda: self.inner.index_add(user_id, key, deadline))  # type: ignore[no-any-return]

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self._call("list_user", lambda: self.inner.list_user(user_id, now))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        return await self._acall("load", lambda: self.inner.aload(key, now, refresh_after))  # type: ignore[no-any-return]

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return await self._acall("touch", lambda: self.inner.atouch(key, last_seen, now))  # type: ignore[no-any-return]

    async def acreate(self, key: str, record: Record) -> None:
        await self._acall("create", lambda: self.inner.acreate(key, record))

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        return await self._acall("update", lambda: self.inner.aupdate(key, change, now))  # type: ignore[no-any-return]

    async def adelete(self, key: str) -> bool:
        return await self._acall("delete", lambda: self.inner.adelete(key))  # type: ignore[no-any-return]

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return await self._acall("index_add", lambda: self.inner.aindex_add(user_id, key, deadline))  # type: ignore[no-any-return]

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return await self._acall("list_user", lambda: self.inner.alist_user(user_id, now))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the app: the same few routes on ASGI and WSGI ------------------------------------------


def _route(session: Any, path: str, query: str) -> bytes:
    user = parse_qs(query).get("user", ["alice"])[0]
    if path == "/cart":
        session["cart"] = CART
    elif path == "/login":
        login(session, user)
    elif path == "/sudo":
        regenerate_on_privilege_change(session)
    return json.dumps({"user": session.user_id, "cart": session.get("cart")}).encode()


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = _route(scope["session"], scope["path"], scope["query_string"].decode())
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["satchel.session"]
    body = _route(session, environ["PATH_INFO"], environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


OPTIONS: dict[str, Any] = {"secret_keys": [KEY], "csrf": False, "max_sessions_per_user": 1}
BASE_URL = "https://testserver"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mariadb://root@127.0.0.1:3306/test"


def session_cookie(response: httpx.Response) -> str | None:
    """The session cookie this response sets ("" when it deletes it), or None."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("satchel="):
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


# -- the scenario, on either path ------------------------------------------------------------


class Client:
    """One browser: a cookie jar and a way to send requests, sync or async alike."""

    def __init__(self, send: Callable[[str, str, dict[str, str] | None], Any]) -> None:
        self._send = send
        self.jar: dict[str, str] = {}

    async def request(self, method: str, url: str, cookie: str | None = None) -> httpx.Response:
        value = cookie if cookie is not None else self.jar.get("satchel")
        headers = {"cookie": f"satchel={value}"} if value else None
        response: httpx.Response = await self._send(method, url, headers)
        new = session_cookie(response)
        if new is not None:
            if new:
                self.jar["satchel"] = new
            else:
                self.jar.pop("satchel", None)
        return response


class SyncClient(Client):
    """A browser on the WSGI app (its requests block: there is no loop to share)."""


async def answer_once_up(client: Client, url: str) -> httpx.Response:
    """The first answer that is not a 503: after the link comes back, a pool may still hand
    out a connection the fault broke (and drop it). A 503 resets no cookie."""
    for _ in range(20):
        response = await client.request("GET", url)
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"the store did not come back: {response.status_code}")


async def scenario(
    client: Client, other: Client, store: FaultyStore, flow: str, at: int, mode: str, user: str
) -> None:
    kind = store.kind
    """Set up the flow's starting state, break the link at call ``at``, then check."""
    sync = isinstance(client, SyncClient)
    assert (await client.request("POST", "/cart")).status_code == 200
    assert (await other.request("POST", f"/login?user={user}")).status_code == 200
    if flow == "regenerate":
        assert (await client.request("POST", f"/login?user={user}")).json()["user"] == user
    before = client.jar["satchel"]

    fault = store.arm(at, mode)
    path = "/login" if flow == "login" else "/sudo"
    response = await client.request("POST", f"{path}?user={user}")
    restore = store.inject
    restore("restore")
    store.arm(0, "none")
    where = f"fault {mode} call {at} ({FLOWS[flow][at - 1] if at else '-'})"
    created = "create" in fault.done
    # a 503 when a call failed (a fault armed before a call that does no I/O meets the
    # next one that does; on SQLite, reads do not wait for the write lock)
    assert response.status_code == (503 if fault.failed else 200), where
    # (a blip may pass unnoticed when the driver retries)
    assert fault.failed or not at or kind == "sqlite" or mode == "blip", f"{where}: no fault"
    after = await answer_once_up(client, "/whoami")
    expected = user if created or flow == "regenerate" else None
    assert after.json() == {"user": expected, "cart": CART}, f"{where}: session reset"
    if created:  # the new record exists: the response carried its cookie
        assert client.jar["satchel"] != before, f"{where}: no cookie for the new record"
    else:  # it does not: the old cookie stays, untouched
        assert session_cookie(response) is None, f"{where}: the old cookie was touched"
    if expected is not None:  # the session the client holds is in the user's index
        key, now = _store_key(client.jar["satchel"]), time.time()
        for attempt in range(20):  # a pool may hand out a connection the fault broke, once
            try:
                if sync:
                    listed, mine = store.inner.list_user(user, now), store.inner.load(key, now)
                else:
                    listed, mine = (
                        await store.inner.alist_user(user, now),
                        await store.inner.aload(key, now),
                    )
                break
            except StoreUnavailable:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.05)
        assert mine is not None, where
        assert mine.meta.handle in {meta.handle for _, meta in listed}, f"{where}: not indexed"
    if "delete" in fault.done or not at:  # the old ID resolves to nothing
        old = await client.request("GET", "/whoami", cookie=before)
        assert old.json() == {"user": None, "cart": None}, f"{where}: the old ID still works"
    # the calls are the ones FLOWS names (the SQL stores' index_add does no I/O: there,
    # the call after it meets a fault armed for it)
    assert fault.calls[: at or None] == FLOWS[flow][: at or None], where


def _store_key(cookie: str) -> str:
    from satchel import ids

    return ids.store_key(cookie.partition(".")[0])


def drive_clients(
    path: str,
    store: FaultyStore,
    check: Callable[..., Awaitable[None]],
    clients: int = 1,
    apps: tuple[Any, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Run ``check(*clients)`` against ``store`` through the ASGI or the WSGI middleware
    (``apps``: the ASGI and the WSGI app, default this module's), each client with a jar
    of its own; the store is closed afterwards."""
    asgi, wsgi = apps or (asgi_app, wsgi_app)
    options = OPTIONS if options is None else options

    async def main() -> None:
        if path == "asgi":
            app = ASGIMiddleware(asgi, store=store, **options)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:

                async def send(method: str, url: str, headers: dict[str, str] | None) -> Any:
                    http.cookies.clear()  # each Client keeps its own jar
                    return await http.request(method, url, headers=headers)

                try:
                    await check(*(Client(send) for _ in range(clients)))
                finally:
                    await store.aclose()
        else:
            app_w = WSGIMiddleware(wsgi, store=store, **options)
            with httpx.Client(transport=httpx.WSGITransport(app=app_w), base_url=BASE_URL) as h:

                async def send_sync(method: str, url: str, headers: dict[str, str] | None) -> Any:
                    h.cookies.clear()  # each Client keeps its own jar
                    return h.request(method, url, headers=headers)

                try:
                    await check(*(SyncClient(send_sync) for _ in range(clients)))
                finally:
                    store.close()

    asyncio.run(main())


def run(path: str, store: FaultyStore, flow: str, at: int, mode: str) -> None:
    """Run the scenario through the ASGI or the WSGI middleware."""
    user = f"user-{uuid.uuid4().hex[:8]}"

    async def check(client: Client, other: Client) -> None:
        await scenario(client, other, store, flow, at, mode, user)

    drive_clients(path, store, check, clients=2)


# -- the stores ----------------------------------------------------------------------------------


def proxied(
    proxy: TcpProxy, inner: Store, hold: float | None, last_request: bytes = b""
) -> FaultyStore:
    """``inner`` reached through ``proxy``: "before" cuts the link, "after" drops the reply
    (of ``last_request``, for a call made of several round trips; resetting the link
    ``hold`` seconds later for a driver without a timeout of its own), "blip" drops the
    reply and mends the link 0.1 s later (before the client's timeout: the link that lost
    the reply is reset, the next connection works), "restore" mends it."""

    def inject(mode: str) -> None:
        if mode == "before":
            proxy.cut()
        elif mode == "after":
            proxy.drop_replies(reset_after=hold, from_request=last_request)
        elif mode == "blip":
            proxy.drop_replies(from_request=last_request)
            threading.Timer(0.1, proxy.restore).start()
        elif mode == "restore":
            proxy.restore()

    return FaultyStore(inner, inject)


@pytest.fixture(scope="module")
def postgres_table() -> Iterator[str]:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    name = f"satchel_faults_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(PG_URL, table=name)  # once, before the stores race for it
    store.init_schema()
    store.close()
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def mysql_table() -> Iterator[str]:
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    name = f"satchel_faults_{uuid.uuid4().hex[:10]}"
    store = MySQLStore(MYSQL_URL, table=name)
    store.init_schema()
    store.close()
    yield name
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    conn.close()


@pytest.fixture
def make_store(
    request: pytest.FixtureRequest, memcached: MemcachedServer
) -> Iterator[Callable[[str], FaultyStore]]:
    proxies: list[TcpProxy] = []

    def make(kind: str) -> FaultyStore:
        if kind == "redis":
            if not port_open(6379):
                unavailable("Redis on 127.0.0.1:6379")
            proxy = TcpProxy(6379)
            prefix = f"satchel-faults-{uuid.uuid4().hex[:8]}:"
            inner: Store = RedisStore(
                f"redis://127.0.0.1:{proxy.port}/0",
                prefix=prefix,
                socket_timeout=TIMEOUT,
                connect_timeout=TIMEOUT,
            )
            hold = None
        elif kind == "memcached":
            proxy = TcpProxy(memcached.port)
            inner = MemcachedStore(
                [("127.0.0.1", proxy.port)],
                prefix=f"sf{uuid.uuid4().hex[:8]}:",
                timeout=TIMEOUT,
            )
            hold = None
        elif kind == "postgres":
            table = request.getfixturevalue("postgres_table")
            proxy = TcpProxy(5432)
            url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
            inner = PostgresStore(url, table=table, timeout=1, create_table=False)
            hold = HOLD
        else:
            table = request.getfixturevalue("mysql_table")
            proxy = TcpProxy(3306)
            url = f"mariadb://root@127.0.0.1:{proxy.port}/test"
            inner = MySQLStore(url, table=table, timeout=1, create_table=False)
            proxies.append(proxy)
            # each call is a statement, then a COMMIT: the reply lost is the COMMIT's
            return proxied(proxy, inner, HOLD, last_request=b"COMMIT")
        proxies.append(proxy)
        return proxied(proxy, inner, hold)

    yield make
    for proxy in proxies:
        proxy.close()


def each_fault(
    make_store: Callable[[str], FaultyStore],
    kind: str,
    path: str,
    flow: str,
    modes: tuple[str, ...] = ("before", "after"),
) -> list[str]:
    """Run the flow once per (store call, mode), each run with a link and a store of its
    own, all at once (they mostly wait for timeouts); what went wrong, per run."""
    cases = [(at, mode) for at in range(1, len(FLOWS[flow]) + 1) for mode in modes]
    stores = [make_store(kind) for _ in cases]

    def one(case: tuple[int, str], store: FaultyStore) -> str | None:
        try:
            run(path, store, flow, *case)
        except Exception as exc:
            return f"{kind}/{path}/{flow} {str(exc).splitlines()[0]}"
        return None

    with ThreadPoolExecutor(len(cases)) as pool:
        outcomes = list(pool.map(one, cases, stores))
    return [failure for failure in outcomes if failure is not None]


@pytest.mark.parametrize("flow", list(FLOWS))
@pytest.mark.parametrize("path", ["asgi", "wsgi"])
@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql", "memcached"])
def test_a_fault_at_any_store_call_of_a_login_leaves_a_working_cookie(
    make_store: Callable[[str], FaultyStore], kind: str, path: str, flow: str
) -> None:
    failures = each_fault(make_store, kind, path, flow)
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("redis", "wsgi"),
        ("redis", "asgi"),
        ("postgres", "wsgi"),
        ("postgres", "asgi"),
        ("mysql", "wsgi"),
        ("mysql", "asgi"),
        ("memcached", "wsgi"),
        ("memcached", "asgi"),
    ],
)
def test_a_reply_lost_once_at_any_store_call_of_a_login_leaves_a_working_cookie(
    make_store: Callable[[str], FaultyStore], kind: str, path: str
) -> None:
    """The reply to one call is lost and the link is back before the client's timeout: a
    driver that retried the call would see its second answer (a DEL's "nothing deleted"
    reads as a concurrent logout), so writes are sent once."""
    failures = []
    for flow in FLOWS:
        failures += each_fault(make_store, kind, path, flow, modes=("blip",))
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
@pytest.mark.parametrize("flow", list(FLOWS))
def test_the_flows_make_the_store_calls_this_file_breaks(
    make_store: Callable[[str], FaultyStore], path: str, flow: str
) -> None:
    run(path, make_store("redis"), flow, 0, "none")


@pytest.fixture
def make_sqlite(tmp_path: Path) -> Iterator[Callable[[str], FaultyStore]]:
    """SQLite stores (a file each) whose fault is another connection holding the write
    lock (BEGIN IMMEDIATE) past the store's timeout, until the test restores it."""
    holders: list[sqlite3.Connection] = []

    def make(kind: str) -> FaultyStore:
        path = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
        inner = SQLiteStore(path, timeout=TIMEOUT)
        holder: list[sqlite3.Connection] = []

        def inject(mode: str) -> None:
            if mode == "before":
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                db.execute("BEGIN IMMEDIATE")
                holder.append(db)
                holders.append(db)
            elif mode == "restore" and holder:
                holder.pop().close()  # closing rolls back and releases the lock

        return FaultyStore(inner, inject, kind="sqlite")

    yield make
    for db in holders:
        db.close()


@pytest.mark.parametrize("flow", list(FLOWS))
@pytest.mark.parametrize("path", ["asgi", "wsgi"])
def test_sqlite_locked_at_any_store_call_of_a_login_leaves_a_working_cookie(
    make_sqlite: Callable[[str], FaultyStore], path: str, flow: str
) -> None:
    """Reads do not wait for a writer on SQLite (WAL), so a lock taken before a read fails
    the next write instead; a lock taken before the last read fails nothing (a 200)."""
    failures = each_fault(make_sqlite, "sqlite", path, flow, modes=("before",))
    assert failures == [], "\n".join(failures)


# -- every way a 503 is answered carries the cookie of a half-done login ----------------------
# The write lock is taken as soon as the new record is created: the next write (the delete
# of the old record; on 0.1, the cap's eviction of the user's other session) fails.


def custom_asgi_503(body: bytes) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def custom_wsgi_503(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("content-type", "text/plain")])
    return [b"custom"]


async def saving_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Logs in and commits early (``await session.asave()``), as a streaming view would."""
    session = scope["session"]
    if scope["path"] == "/login":
        login(session, "alice")
        await session.asave()
    await asgi_app(scope, receive, send)


def saving_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["satchel.session"]
    if environ["PATH_INFO"] == "/login":
        login(session, "alice")
        session.save()
    return wsgi_app(environ, start_response)


def half_done_login(make: Callable[[], Any], store: FaultyStore) -> tuple[httpx.Response, Any]:
    """cart, then a login whose delete of the old record fails; then the next request."""

    async def main() -> tuple[httpx.Response, Any]:
        async with make() as http:

            async def send(method: str, url: str, headers: dict[str, str] | None) -> Any:
                http.cookies.clear()
                response = http.request(method, url, headers=headers)
                return await response if asyncio.iscoroutine(response) else response

            client = Client(send)
            await Client(send).request("POST", "/login")  # alice's other session
            await client.request("POST", "/cart")
            store.arm(0, "before", after="create")
            failed = await client.request("POST", "/login")
            store.inject("restore")
            store.arm(0, "none")
            return failed, (await client.request("GET", "/whoami")).json()

    return asyncio.run(main())


class _SyncAsAsync:
    """An httpx.Client usable in ``async with`` (the WSGI transport is sync)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cookies = client.cookies

    async def __aenter__(self) -> httpx.Client:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        self.client.close()


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_asgi_503_of_a_half_done_login_carries_the_new_cookie(
    make_sqlite: Callable[[str], FaultyStore], variant: str
) -> None:
    store = make_sqlite("sqlite")
    kwargs: dict[str, Any] = {}
    if variant == "custom":
        kwargs["on_store_unavailable"] = custom_asgi_503(b"custom")
    app = ASGIMiddleware(asgi_app, store=store, **OPTIONS, **kwargs)
    failed, after = half_done_login(
        lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL),
        store,
    )
    assert failed.status_code == 503
    assert variant == "default" or failed.text == "custom"
    assert session_cookie(failed)
    assert after == {"user": "alice", "cart": CART}


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_wsgi_503_of_a_half_done_login_carries_the_new_cookie(
    make_sqlite: Callable[[str], FaultyStore], variant: str
) -> None:
    store = make_sqlite("sqlite")
    kwargs: dict[str, Any] = {}
    if variant == "custom":
        kwargs["on_store_unavailable"] = custom_wsgi_503
    app = WSGIMiddleware(wsgi_app, store=store, **OPTIONS, **kwargs)
    transport = httpx.WSGITransport(app=app)
    failed, after = half_done_login(
        lambda: _SyncAsAsync(httpx.Client(transport=transport, base_url=BASE_URL)), store
    )
    assert failed.status_code == 503
    assert variant == "default" or failed.text == "custom"
    assert session_cookie(failed)
    assert after == {"user": "alice", "cart": CART}


def test_an_early_save_that_fails_half_way_answers_503_with_the_new_cookie(
    make_sqlite: Callable[[str], FaultyStore],
) -> None:
    """``session.save()`` / ``await session.asave()`` in the app: the StoreError leaves the
    app, and the middleware's 503 carries the cookie all the same (ASGI and WSGI)."""
    store = make_sqlite("sqlite")
    asgi = ASGIMiddleware(saving_asgi_app, store=store, **OPTIONS)
    failed, after = half_done_login(
        lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE_URL),
        store,
    )
    assert (failed.status_code, bool(session_cookie(failed))) == (503, True)
    assert after == {"user": "alice", "cart": CART}

    store = make_sqlite("sqlite")
    wsgi = WSGIMiddleware(saving_wsgi_app, store=store, **OPTIONS)
    transport = httpx.WSGITransport(app=wsgi)
    failed, after = half_done_login(
        lambda: _SyncAsAsync(httpx.Client(transport=transport, base_url=BASE_URL)), store
    )
    assert (failed.status_code, bool(session_cookie(failed))) == (503, True)
    assert after == {"user": "alice", "cart": CART}


def test_flask_503_of_a_half_done_login_carries_the_new_cookie(
    make_sqlite: Callable[[str], FaultyStore], tmp_path: Path
) -> None:
    from flask import Flask, session

    from satchel.integrations.flask import Satchel, login_user

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_CSRF=False, SATCHEL_MAX_SESSIONS_PER_USER=1)
    app.config["SATCHEL_STORE"] = f"sqlite:///{tmp_path / 'flask.db'}"
    Satchel(app)
    store = make_sqlite("sqlite")  # the faulty store serves the app
    runtime = app.extensions["satchel"]["runtime"]
    runtime.backend.store = store
    app.extensions["satchel"]["runtime"] = runtime._replace(store=store)

    @app.post("/cart")
    def cart() -> dict[str, Any]:
        session["cart"] = CART
        return {}

    @app.post("/login")
    def log_in() -> dict[str, Any]:
        login_user("alice")
        return {}

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        return {"user": session.user_id, "cart": session.get("cart")}  # type: ignore[attr-defined]

    base = "https://localhost"
    app.test_client().post(f"{base}/login")  # alice's other session
    client = app.test_client()
    client.post(f"{base}/cart")
    store.arm(0, "before", after="create")
    failed = client.post(f"{base}/login")
    store.inject("restore")
    store.arm(0, "none")
    assert failed.status_code == 503
    assert any(h.startswith("satchel=") for h in failed.headers.getlist("Set-Cookie"))
    assert client.get(f"{base}/whoami").json == {"user": "alice", "cart": CART}


# -- no resurrection: a regeneration that loses the race to a logout undoes itself --------------


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
@pytest.mark.parametrize(
    "kind", ["memory", "sqlite", "file", "redis", "postgres", "mysql", "memcached"]
)
def test_a_regeneration_racing_a_logout_does_not_bring_the_session_back(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, kind: str, path: str
) -> None:
    """The logout lands between the regeneration's create and its delete of the old record
    (the delete then finds nothing): the new record is deleted again, no cookie is sent,
    and the user has no session left."""
    from satchel.stores.filesystem import FileStore
    from satchel.stores.memory import MemoryStore

    if kind == "memory":
        inner: Store = MemoryStore()
    elif kind == "sqlite":
        inner = SQLiteStore(tmp_path / "race.db")
    elif kind == "file":
        inner = FileStore(tmp_path / "race")
    elif kind == "redis":
        inner = RedisStore(redis_url, prefix=f"satchel-race-{uuid.uuid4().hex[:8]}:")
    elif kind == "postgres":
        inner = PostgresStore(PG_URL, table=request.getfixturevalue("postgres_table"))
    elif kind == "mysql":
        inner = MySQLStore(MYSQL_URL, table=request.getfixturevalue("mysql_table"))
    else:
        server: MemcachedServer = request.getfixturevalue("memcached")
        inner = MemcachedStore([("127.0.0.1", server.port)], prefix=f"r{uuid.uuid4().hex[:8]}:")
    old: list[str] = []

    def logout_elsewhere(mode: str) -> None:  # what a concurrent logout does to the store
        if mode == "logout" and old:
            assert inner.delete(_store_key(old[0]))

    store = FaultyStore(inner, logout_elsewhere)
    user = f"user-{uuid.uuid4().hex[:8]}"

    async def check(client: Client) -> None:
        await client.request("POST", "/cart")
        await client.request("POST", f"/login?user={user}")
        old.append(client.jar["satchel"])
        store.arm(0, "logout", after="create")
        raced = await client.request("POST", "/sudo")
        assert raced.status_code == 200
        assert session_cookie(raced) is None  # the regeneration lost: no cookie
        assert "create" in store.fault.done  # it had created its record...
        now = time.time()
        if isinstance(client, SyncClient):
            assert store.inner.list_user(user, now) == []  # ...and deleted it again
        else:
            assert await store.inner.alist_user(user, now) == []
        after = await client.request("GET", "/whoami")
        assert after.json() == {"user": None, "cart": None}

    drive_clients(path, store, check)


# -- a worker killed mid-login (SIGKILL), on the stores that outlive it ----------------------------

REPO = Path(__file__).resolve().parent.parent


def killed_login(url: str, at: int, mode: str, directory: Path) -> dict[str, Any]:
    """Cart, another session of the user, then a login served by a worker that is killed at
    store call ``at``; what the browser's unchanged cookie opens afterwards (served by this
    process, on the same store)."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    app = WSGIMiddleware(wsgi_app, store=store_from_url(url), **OPTIONS)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as http:

        def send(url_: str, cookie: str | None = None) -> httpx.Response:
            http.cookies.clear()
            headers = {"cookie": f"satchel={cookie}"} if cookie else {}
            return http.post(url_, headers=headers)

        cookie = session_cookie(send("/cart"))
        send(f"/login?user={user}")  # the user's other session (the cap evicts it)
        port_file = directory / f"port-{at}-{mode}"
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.killable_app", url, str(port_file), str(at), mode],
            cwd=REPO,
        )
        try:
            wait_for(port_file.exists, "the worker", timeout=30)
            with pytest.raises(httpx.TransportError):  # killed: no answer at all
                httpx.post(
                    f"http://127.0.0.1:{port_file.read_text()}/login?user={user}",
                    headers={"cookie": f"satchel={cookie}"},
                    timeout=30,
                )
            assert worker.wait(30) == -signal.SIGKILL
        finally:
            worker.kill()
            worker.wait()
        return send("/whoami", cookie).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_worker_killed_mid_login_leaves_the_session_until_the_old_record_is_deleted(
    tmp_path: Path, kind: str
) -> None:
    """Killed before or after any store call up to the create, or before the delete of the
    old record: the browser keeps its old cookie, which still opens the session. Killed
    after that delete, before the answer: the old cookie names nothing (the one loss
    that cannot be helped, docs/stores.md)."""
    cases = [(at, mode) for at in range(1, len(FLOWS["login"]) + 1) for mode in ("before", "after")]

    def one(case: tuple[int, str]) -> str | None:
        at, mode = case
        where = tmp_path / f"{at}-{mode}"
        where.mkdir()
        url = f"sqlite:///{where / 's.db'}" if kind == "sqlite" else f"file://{where / 'd'}"
        after = killed_login(url, at, mode, where)
        deleted = at > 4 or (at, mode) == (4, "after")  # the old record's delete ran
        expected = {"user": None, "cart": None if deleted else CART}
        return None if after == expected else f"{kind} killed {mode} call {at}: {after}"

    with ThreadPoolExecutor(6) as pool:
        failures = [f for f in pool.map(one, cases) if f is not None]
    assert failures == [], "\n".join(failures)


# -- "remember me" during a fault: the index never forgets a session before it ends ---------------

LONG = 30 * 86400


def _remember(session: Any) -> None:
    session.set_expiry(idle_timeout=LONG, absolute_timeout=LONG, persistent=True)


async def remember_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/remember":
        _remember(scope["session"])
    await asgi_app(scope, receive, send)


def remember_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/remember":
        _remember(environ["satchel.session"])
    return wsgi_app(environ, start_response)


def extend_under_fault(store: FaultyStore, path: str, at: int, mode: str) -> None:
    """Logged in, then "remember me" (a later absolute deadline) with a fault at call
    ``at``; once the longer deadline is stored, the session stays listed past the old one."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    options = {**OPTIONS, "clock": clock}
    sync = path == "wsgi"

    async def check(client: Client) -> None:
        await client.request("POST", "/cart")
        await client.request("POST", f"/login?user={user}")
        key = _store_key(client.jar["satchel"])
        store.arm(at, mode)
        await client.request("POST", "/remember")
        store.inject("restore")
        store.arm(0, "none")
        record = (
            store.inner.load(key, clock.now) if sync else await store.inner.aload(key, clock.now)
        )
        assert record is not None
        if record.meta.absolute_deadline - record.meta.created < LONG:
            return  # the update did not land: nothing more to keep
        clock.advance(13 * 3600)  # past the first absolute deadline (12 h)
        after = await answer_once_up(client, "/whoami")
        assert after.json() == {"user": user, "cart": CART}, f"{mode} call {at}: session lost"
        listed = (
            store.inner.list_user(user, clock.now)
            if sync
            else await store.inner.alist_user(user, clock.now)
        )
        assert key in [k for k, _ in listed], f"{mode} call {at}: no longer listed"

    drive_clients(path, store, check, apps=(remember_app, remember_wsgi_app), options=options)


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_a_fault_during_remember_me_never_drops_the_session_from_its_users_index(
    make_store: Callable[[str], FaultyStore], kind: str, path: str
) -> None:
    """The stores whose index is separate from the record (Redis, Memcached): a longer
    absolute deadline is filed in the index before the record gets it, so a fault between
    the two cannot leave a live session the index has forgotten (unlistable, unrevocable;
    refused outright on Memcached)."""
    cases = [(at, mode) for at in (2, 3) for mode in ("before", "after")]
    stores = [make_store(kind) for _ in cases]

    def one(case: tuple[int, str], store: FaultyStore) -> str | None:
        try:
            extend_under_fault(store, path, *case)
        except AssertionError as exc:
            return f"{kind}/{path} {str(exc).splitlines()[0]}"
        return None

    with ThreadPoolExecutor(len(cases)) as pool:
        failures = [f for f in pool.map(one, cases, stores) if f is not None]
    assert failures == [], "\n".join(failures)


def test_fastapi_503_of_a_half_done_login_carries_the_new_cookie(
    make_sqlite: Callable[[str], FaultyStore],
) -> None:
    """FastAPI (and Starlette under it) run satchel's ASGI middleware: the same answer."""
    store = make_sqlite("sqlite")
    app = FastAPI()
    app.add_middleware(ASGIMiddleware, store=store, **OPTIONS)

    @app.post("/cart")
    async def cart(request: Request) -> dict[str, Any]:
        request.session["cart"] = CART
        return {}

    @app.post("/login")
    async def log_in(request: Request) -> dict[str, Any]:
        login(request.session, "alice")  # type: ignore[arg-type]
        return {}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        session = request.session
        return {"user": session.user_id, "cart": session.get("cart")}  # type: ignore[attr-defined]

    failed, after = half_done_login(
        lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL),
        store,
    )
    assert (failed.status_code, bool(session_cookie(failed))) == (503, True)
    assert after == {"user": "alice", "cart": CART}
