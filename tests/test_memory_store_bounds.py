"""The memory store's bounds hold under hostile traffic: a create at capacity costs the same
at 100,000 entries as at 10, anonymous traffic never evicts a logged-in user, and the
per-user index holds no more than the user's stored sessions.

Driven through the ASGI middleware (the store's async forms) and the WSGI middleware (its
sync forms), and through the store's own API where the property is the store's alone."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import MemoryStore, Session, StoreUnavailable, ids, login, logout
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.expiry import ExpiryPolicy
from satchel.record import Meta, Record
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY

pytestmark = pytest.mark.anyio


# -- two tiny apps: /put (anonymous write), /login?user=, /logout, /whoami ------------------


async def asgi_endpoint(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    path = request.url.path
    if path == "/put":
        session["n"] = 1
    elif path == "/login":
        login(session, request.query_params["user"])
    elif path == "/logout":
        logout(session)
    else:
        return JSONResponse({"user": session.user_id})
    return PlainTextResponse("ok")


def asgi_app(store: MemoryStore, clock: FakeClock) -> SessionMiddleware:
    routes = [Route(p, asgi_endpoint) for p in ("/put", "/login", "/logout", "/whoami")]
    return SessionMiddleware(Starlette(routes=routes), store=store, secret_keys=[KEY], clock=clock)


def wsgi_endpoint(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    body = b"ok"
    if path == "/put":
        session["n"] = 1
    elif path == "/login":
        login(session, environ["QUERY_STRING"].removeprefix("user="))
    elif path == "/logout":
        logout(session)
    else:
        body = json.dumps({"user": session.user_id}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


def wsgi_app(store: MemoryStore, clock: FakeClock) -> WSGISessionMiddleware:
    return WSGISessionMiddleware(wsgi_endpoint, store=store, secret_keys=[KEY], clock=clock)


class Browsers:
    """Independent clients (each its own cookie jar) on one app, sync or async alike."""

    def __init__(self, app: SessionMiddleware | WSGISessionMiddleware) -> None:
        self.app = app
        self.clients: list[httpx.AsyncClient | httpx.Client] = []

    def new(self) -> httpx.AsyncClient | httpx.Client:
        client: httpx.AsyncClient | httpx.Client
        if isinstance(self.app, SessionMiddleware):
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url="https://testserver")
        else:
            client = httpx.Client(transport=httpx.WSGITransport(app=self.app), base_url="https://t")
        self.clients.append(client)
        return client

    async def get(self, client: httpx.AsyncClient | httpx.Client, url: str) -> httpx.Response:
        if isinstance(client, httpx.AsyncClient):
            return await client.get(url)
        return client.get(url)

    async def anonymous(self, n: int) -> list[int]:
        """``n`` visitors without a cookie, each writing to a new session; their statuses."""
        client, statuses = self.new(), []
        for _ in range(n):
            client.cookies.clear()
            statuses.append((await self.get(client, "/put")).status_code)
        return statuses

    async def close(self) -> None:
        for client in self.clients:
            if isinstance(client, httpx.AsyncClient):
                await client.aclose()
            else:
                client.close()


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def browsers(kind: str) -> AsyncIterator[Callable[[MemoryStore, FakeClock], Browsers]]:
    made: list[Browsers] = []

    def make(store: MemoryStore, clock: FakeClock) -> Browsers:
        app = asgi_app(store, clock) if kind == "asgi" else wsgi_app(store, clock)
        made.append(Browsers(app))
        return made[-1]

    yield make
    for b in made:
        await b.close()


Make = Callable[[MemoryStore, FakeClock], Browsers]


async def test_anonymous_flood_at_capacity_never_evicts_a_logged_in_session(
    browsers: Make, clock: FakeClock
) -> None:
    """10 users log in among anonymous visitors in a store of 50; then 1,000 anonymous
    sessions are created (20 x capacity). Every user is still logged in. (0.1 evicted by
    plain LRU: the flood logged every user out.)"""
    store = MemoryStore(max_entries=50)
    b = browsers(store, clock)
    assert await b.anonymous(30) == [200] * 30
    users = {}
    for i in range(10):
        client = b.new()
        assert (await b.get(client, f"/login?user=user{i}")).status_code == 200
        users[f"user{i}"] = client
    assert await b.anonymous(1_000) == [200] * 1_000
    assert store.count(clock.now) == 50
    for user, client in users.items():
        assert (await b.get(client, "/whoami")).json() == {"user": user}


async def test_store_full_of_logged_in_users_refuses_an_anonymous_session_and_a_new_user(
    browsers: Make, clock: FakeClock
) -> None:
    """All 5 entries are logged-in users, each within their share (1 session): an anonymous
    create answers 503 instead of logging one out, and so does a new user's login. (0.1
    evicted user0 for the anonymous visitor; the first fix evicted user0 for the login.)"""
    store = MemoryStore(max_entries=5)
    b = browsers(store, clock)
    users = []
    for i in range(5):
        client = b.new()
        await b.get(client, f"/login?user=user{i}")
        users.append(client)
    assert await b.anonymous(20) == [503] * 20
    for i, client in enumerate(users):
        assert (await b.get(client, "/whoami")).json() == {"user": f"user{i}"}
    newcomer = b.new()
    assert (await b.get(newcomer, "/login?user=late")).status_code == 503
    for i, client in enumerate(users):
        assert (await b.get(client, "/whoami")).json() == {"user": f"user{i}"}


async def test_user_index_holds_only_live_sessions_after_logout_and_expiry(
    browsers: Make, clock: FakeClock
) -> None:
    """200 login/logout cycles leave the user's index empty; sessions that expire leave it
    too. (0.1 kept every logged-out key: 200 entries, growing forever.)"""
    store = MemoryStore()
    b = browsers(store, clock)
    for _ in range(200):
        client = b.new()
        await b.get(client, "/login?user=alice")
        await b.get(client, "/logout")
    assert store.index_size("alice") == 0
    assert store.list_user("alice", clock.now) == []
    kept = [b.new() for _ in range(3)]
    for client in kept:
        await b.get(client, "/login?user=alice")
    assert store.index_size("alice") == 3
    clock.advance(ExpiryPolicy().idle_timeout + 1)
    await b.anonymous(1)  # any write drops what has expired
    assert store.index_size("alice") == 0
    assert store.index_size() == 0


def _meta(now: float, user_id: str | None = None) -> Meta:
    return ExpiryPolicy().new_meta(ids.new_handle(), now).with_changes(user_id=user_id)


def test_user_index_shrinks_with_eviction_and_equals_the_live_sessions(clock: FakeClock) -> None:
    """A logged-in create into a store full of logged-in sessions evicts the least recently
    used one, and its user's index loses that key at once."""
    store = MemoryStore(max_entries=4)
    keys = []
    for user in ("bob", "bob", "carol", "carol"):
        key = ids.store_key(ids.new_session_id())
        meta = _meta(clock.now, user)
        store.create(key, Record({}, meta))
        store.index_add(user, key, meta.absolute_deadline)
        keys.append(key)
    store.load(keys[0], clock.now)  # bob's first session is now the most recently used
    store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, "dave")))
    assert store.load(keys[1], clock.now) is None  # evicted: bob's least recently used
    for user in ("bob", "carol", "dave"):
        assert store.index_size(user) == len(store.list_user(user, clock.now))
    assert store.index_size("bob") == 1
    assert store.index_size() == 4


def test_anonymous_creates_through_the_store_api_never_evict_logged_in_users(
    clock: FakeClock,
) -> None:
    store = MemoryStore(max_entries=100)
    logged_in = []
    for i in range(100):
        key = ids.store_key(ids.new_session_id())
        store.create(key, Record({}, _meta(clock.now, f"user{i}" if i % 2 else None)))
        if i % 2:
            logged_in.append(key)
    for _ in range(10_000):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now)))
    assert all(store.load(key, clock.now) is not None for key in logged_in)
    anonymous_only = MemoryStore(max_entries=1)
    anonymous_only.create("a" * 64, Record({}, _meta(clock.now, "alice")))
    with pytest.raises(StoreUnavailable):
        anonymous_only.create("b" * 64, Record({}, _meta(clock.now)))


def fill(store: MemoryStore, now: float) -> None:
    """``max_entries`` live sessions, half of them logged in, all due to expire later."""
    anonymous, user = _meta(now), _meta(now, "someone")
    for i in range(store.max_entries):
        meta = user._replace(user_id=f"user{i % 1000}") if i % 2 else anonymous
        store.create(ids.store_key(ids.new_session_id()), Record({}, meta))


def test_create_at_capacity_does_not_scan_the_store(clock: FakeClock) -> None:
    """100 creates into a full store of 100,000 live sessions. 0.1 scanned every entry for
    expired ones on each create: 40-125 ms each, 4-12.6 s in all. Now each costs a few
    microseconds; the bound (1 s for all 100) separates a scan from none on any machine."""
    store = MemoryStore(max_entries=100_000)
    fill(store, clock.now)
    records = [Record({}, _meta(clock.now)) for _ in range(100)]
    keys = [ids.store_key(ids.new_session_id()) for _ in records]
    start = time.perf_counter()
    for key, record in zip(keys, records, strict=True):
        store.create(key, record)
    elapsed = time.perf_counter() - start
    assert store.count(clock.now) == 100_000
    assert elapsed < 1.0, f"100 creates at capacity took {elapsed:.2f} s"


def test_expired_sessions_make_room_before_any_live_one_is_evicted(clock: FakeClock) -> None:
    """Expired sessions go first, even a logged-in one ahead of a live anonymous one."""
    store = MemoryStore(max_entries=3)
    short = _meta(clock.now, "alice")._replace(idle_timeout=10)
    store.create("a" * 64, Record({}, short))
    store.create("b" * 64, Record({}, _meta(clock.now)))
    store.create("c" * 64, Record({}, _meta(clock.now)))
    clock.advance(11)
    store.create("d" * 64, Record({}, _meta(clock.now)))
    assert store.load("a" * 64, clock.now) is None
    assert store.index_size("alice") == 0
    assert all(store.load(k * 64, clock.now) is not None for k in "bcd")


# -- fair shares (attack finding f01) --------------------------------------------------------


async def test_one_account_logging_in_again_and_again_never_logs_out_another_user(
    browsers: Make, clock: FakeClock
) -> None:
    """In a store of 500 (logged-in budget 450, share 5 per user), 10 users log in on 3
    devices each among 100 anonymous visitors; then one account logs in from 1,000 fresh
    clients. Every login answers 200 (the account replaces its own sessions once logged-in
    sessions fill their budget), all 30 devices stay logged in, anonymous visitors still
    get sessions, and a new user still gets in (taking the hog's place). (Before: each
    login past capacity evicted the least recently used logged-in session, anyone's: every
    user was logged out, and then every anonymous write was a 503.)"""
    store = MemoryStore(max_entries=500)
    b = browsers(store, clock)
    assert await b.anonymous(100) == [200] * 100
    devices = {}
    for i in range(10):
        for _device in range(3):
            client = b.new()
            assert (await b.get(client, f"/login?user=user{i}")).status_code == 200
            devices[client] = f"user{i}"
    attacker = b.new()
    codes = set()
    for _ in range(1_000):
        attacker.cookies.clear()
        codes.add((await b.get(attacker, "/login?user=mallory")).status_code)
    assert codes == {200}
    assert (await b.get(attacker, "/whoami")).json() == {"user": "mallory"}
    for client, user in devices.items():
        assert (await b.get(client, "/whoami")).json() == {"user": user}
    assert await b.anonymous(100) == [200] * 100
    newcomer = b.new()
    assert (await b.get(newcomer, "/login?user=late")).status_code == 200
    assert (await b.get(newcomer, "/whoami")).json() == {"user": "late"}
    for client, user in devices.items():
        assert (await b.get(client, "/whoami")).json() == {"user": user}
    assert store.index_size("mallory") <= store.logged_in_budget - 31


def test_a_user_within_their_share_is_never_evicted_by_others(clock: FakeClock) -> None:
    """Logged-in sessions at their budget: a login of a user holding a full share replaces
    that user's own least recently used session; one of a user without sessions takes the
    place of a user holding more than a share; with every user within their share, it is
    refused (503) naming max_entries."""
    store = MemoryStore(max_entries=200)  # budget 180, share 2
    assert (store.logged_in_budget, store.user_share) == (180, 2)
    alice = [ids.store_key(ids.new_session_id()) for _ in range(2)]
    for key in alice:
        store.create(key, Record({}, _meta(clock.now, "alice")))
    for _ in range(178):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, "hog")))
    store.load(alice[0], clock.now)  # alice[1] is now alice's least recently used
    store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, "alice")))
    assert store.load(alice[0], clock.now) is not None
    assert store.load(alice[1], clock.now) is None  # her own, not the hog's
    assert store.index_size("hog") == 178
    for i in range(88):  # newcomers take the hog's places, two each
        for _ in range(2):
            store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, f"n{i}")))
    assert store.index_size("hog") == 2
    assert store.index_size("alice") == 2
    with pytest.raises(StoreUnavailable, match="max_entries"):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, "late")))
    assert store.count(clock.now) == 180
    for _ in range(50):  # anonymous visitors still have the 20 entries kept for them
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now)))
    assert store.count(clock.now) == 200


# -- bounded expiry work per call (attack finding f08) ---------------------------------------


def test_a_burst_of_expired_sessions_is_removed_a_batch_per_call(clock: FakeClock) -> None:
    """18,000 logged-in sessions made together expire together (2,000 anonymous ones made a
    10 s later do not yet). The next load removes 100 of them (SWEEP_BATCH), not all
    18,000 under the lock (before: one request removed every one: 0.33-0.43 s at 100,000,
    on the event loop); later calls remove the rest, and an expired record not removed yet
    is never returned or listed."""
    store = MemoryStore(max_entries=20_000)
    keys = []
    for i in range(18_000):
        key = ids.store_key(ids.new_session_id())
        store.create(key, Record({}, _meta(clock.now, f"user{i % 100}")))
        keys.append(key)
    clock.advance(10)
    for _ in range(2_000):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now)))
    clock.advance(ExpiryPolicy().idle_timeout - 5)
    assert store.load("f" * 64, clock.now) is None
    assert store.index_size() == 18_000 - 100
    assert store.load(keys[-1], clock.now) is None  # met before its turn: removed now
    assert store.index_size() == 18_000 - 201
    assert store.list_user("user7", clock.now) == []  # a batch, and user7's met ones
    assert store.index_size("user7") == 0
    assert len(list(store.iter_sessions(clock.now))) == 2_000
    before = store.index_size()
    fresh = ids.store_key(ids.new_session_id())
    store.create(fresh, Record({}, _meta(clock.now, "bob")))
    assert store.index_size() == before - 100 + 1
    for _ in range(200):
        store.load("f" * 64, clock.now)
    assert store.index_size() == 1
    assert store.count(clock.now) == 2_001
    assert store.load(fresh, clock.now) is not None


async def test_a_burst_of_expired_sessions_costs_the_async_path_one_batch(
    clock: FakeClock,
) -> None:
    store = MemoryStore(max_entries=5_000)
    for i in range(4_500):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now, f"u{i}")))
    clock.advance(ExpiryPolicy().absolute_timeout + 1)
    assert await store.aload("f" * 64, clock.now) is None
    assert store.index_size() == 4_500 - 100
    assert await store.alist_user("u1", clock.now) == []
    assert store.count(clock.now) == 0
    assert store.index_size() == 0


def test_a_regeneration_with_the_login_budget_full_never_logs_the_user_out() -> None:
    """With the logged-in budget full and every user within their share, a privilege
    change of a user holding one session must not evict that very session to make room
    for its successor (the regeneration would then read it as logged out and undo itself).
    It is refused instead (a 503), and the session the browser holds still opens."""
    import contextlib

    from satchel.auth import regenerate_on_privilege_change
    from satchel.errors import StoreError
    from satchel.ops import drive
    from satchel.testing.flows import INFO, login_request

    from .helpers import make_engine

    engine, store = make_engine(), MemoryStore(max_entries=20)
    alice, *_ = [drive(login_request(engine, f"user{i}"), store) for i in range(18)]
    session = drive(engine.open(Session(), alice._session_id), store)
    regenerate_on_privilege_change(session)
    with contextlib.suppress(StoreError):  # refused: the browser keeps the old cookie
        drive(engine.commit(session, INFO), store)
    for sid in {alice._session_id, session._session_id} - {None}:
        reopened = drive(engine.open(Session(), sid), store)
        if reopened.user_id == "user0":
            break
    else:
        raise AssertionError("user0 was logged out by their own privilege change")


def test_logins_made_by_an_update_keep_to_the_logged_in_budget() -> None:
    """Django logs in by an update (its session is created anonymous, then gets its user):
    that path keeps to the same budget and shares as a logged-in create, so one account
    cannot fill the store and lock visitors and other users out."""
    from satchel.record import Change

    store = MemoryStore(max_entries=20)
    now = time.time()
    policy = ExpiryPolicy()

    def meta(user: str | None) -> Meta:
        return policy.new_meta(ids.new_handle(), now).with_changes(user_id=user)

    others = [ids.store_key(ids.new_session_id()) for _ in range(10)]
    for i, key in enumerate(others):
        store.create(key, Record({}, meta(f"user{i}")))
    for _ in range(30):  # one account logging in again and again, Django's way
        key = ids.store_key(ids.new_session_id())
        anonymous = meta(None)
        store.create(key, Record({}, anonymous))
        store.update(key, Change(meta=anonymous.with_changes(user_id="mallory")), now)
    assert all(store.load(key, now) is not None for key in others)
    store.create(ids.store_key(ids.new_session_id()), Record({"cart": "[]"}, meta(None)))
