"""Cookie sessions: a revoked cookie stays revoked when its marker is lost or outlived,
"log out other devices" never extends the absolute deadline, and revoking junk or
foreign handles cannot grow the marker. Revocation stores are real (memory, SQLite,
Redis, Memcached); the clock is the app's FakeClock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import (
    MemoryStore,
    Session,
    SQLiteStore,
    ids,
    login,
    logout,
    regenerate_on_privilege_change,
)
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.auth import alogout_other_devices, arevoke, logout_other_devices
from satchel.cookie.revocation import HANDLE_PREFIX, MAX_REVOKED_HANDLES, marker_key
from satchel.record import Change
from satchel.stores.base import Store
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import CountingStore, do_login, session_of, set_cookie_value

pytestmark = pytest.mark.anyio
HOUR, DAY = 3600, 86_400


async def do_logout(request: Request) -> Response:
    logout(session_of(request))
    return PlainTextResponse("out")


async def remember(request: Request) -> Response:
    session_of(request).set_expiry(idle_timeout=7 * DAY, absolute_timeout=30 * DAY, persistent=True)
    return PlainTextResponse("remembered")


async def me(request: Request) -> Response:
    session = session_of(request)
    meta = session.meta
    return JSONResponse(
        {
            "user": session.user_id,
            "handle": session.handle,
            "deadline": None if meta is None else meta.absolute_deadline,
        }
    )


async def others(request: Request) -> Response:
    return JSONResponse({"revoked": await alogout_other_devices(session_of(request))})


async def regen(request: Request) -> Response:
    regenerate_on_privilege_change(session_of(request))  # e.g. entering sudo mode
    return PlainTextResponse("regenerated")


async def password_changed(request: Request) -> Response:
    """A password change: log the other devices out, then a privilege-change regeneration,
    in one request."""
    revoked = await alogout_other_devices(session_of(request))
    regenerate_on_privilege_change(session_of(request))
    return JSONResponse({"revoked": revoked})


async def revoke(request: Request) -> Response:
    handle = (await request.body()).decode()
    return JSONResponse({"revoked": await arevoke(session_of(request), handle)})


ROUTES = [
    Route("/login", do_login),
    Route("/logout", do_logout),
    Route("/remember", remember),
    Route("/me", me),
    Route("/others", others),
    Route("/revoke", revoke, methods=["POST"]),
    Route("/regen", regen),
    Route("/password-changed", password_changed),
]


def make_app(revocation: Store | None, clock: FakeClock, **options: Any) -> SessionMiddleware:
    return SessionMiddleware(
        Starlette(routes=ROUTES),
        store="cookie://",
        secret_keys=[KEY],
        revocation_store=revocation,
        clock=clock,
        csrf=False,
        **options,
    )


def client_for(app: SessionMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")


async def user(c: httpx.AsyncClient, cookie: str | None = None) -> str | None:
    headers = {"cookie": f"satchel={cookie}"} if cookie is not None else None
    kept = httpx.Cookies(c.cookies)
    response = await c.get("/me", headers=headers)
    if cookie is not None:  # a copy sent by hand: its answer (a deletion) is not this browser's
        c.cookies = kept
    return response.json()["user"]  # type: ignore[no-any-return]


@pytest.fixture(params=["memory", "sqlite", "redis", "memcached"])
async def revocation(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store
    prefix = f"lifecycle-{uuid.uuid4().hex[:8]}:"
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "revocation.db")
    elif request.param == "redis":
        from satchel.stores.redis import RedisStore

        store = RedisStore(request.getfixturevalue("redis_url"), prefix=prefix)
    else:
        from satchel.stores.memcached import MemcachedStore

        server = request.getfixturevalue("memcached")
        store = MemcachedStore([("127.0.0.1", server.port)], prefix=prefix)
    yield store
    await store.aclose()
    store.close()


# -- the marker lost or outlived ----------------------------------------------------------------


async def test_revoked_cookie_stays_revoked_when_the_marker_is_lost(
    revocation: Store, clock: FakeClock
) -> None:
    app = make_app(revocation, clock)
    async with client_for(app) as laptop, client_for(app) as phone:
        await laptop.get("/login")
        stolen = laptop.cookies["satchel"]
        await laptop.get("/logout")
        assert await user(laptop, stolen) is None
        assert revocation.delete(marker_key("alice"))  # evicted, flushed, restored...
        clock.advance(1)
        await phone.get("/login")  # the next login makes a new marker
        assert await user(phone) == "alice"
        assert await user(laptop, stolen) is None  # issued before the new marker: dead


async def test_remember_me_keeps_the_marker_alive_as_long_as_the_session(
    revocation: Store, clock: FakeClock
) -> None:
    app = make_app(revocation, clock)
    async with client_for(app) as laptop, client_for(app) as phone:
        await laptop.get("/login")  # marker made for the default 12 h
        await laptop.get("/remember")  # this session now lasts 30 days
        stolen = laptop.cookies["satchel"]
        await laptop.get("/logout")
        clock.advance(13 * HOUR)  # past the login's 12 h
        assert revocation.load(marker_key("alice"), clock()) is not None
        await phone.get("/login")
        assert await user(phone) == "alice"
        assert await user(laptop, stolen) is None


async def test_a_remember_me_session_revoked_from_another_device_stays_revoked(
    revocation: Store, clock: FakeClock
) -> None:
    """Its 30-day deadline is unknown to the device that revokes it: the handle stays
    listed as long as the marker, not for the default 12 hours."""
    app = make_app(revocation, clock)
    async with client_for(app) as laptop, client_for(app) as phone:
        await laptop.get("/login")
        await laptop.get("/remember")
        await phone.get("/login")
        laptop_handle = (await laptop.get("/me")).json()["handle"]
        assert (await phone.post("/revoke", content=laptop_handle.encode())).json() == {
            "revoked": True
        }
        assert await user(laptop) is None
        for _ in range(3):  # 3 x 6 h, past 12 h; later revocations prune expired entries
            clock.advance(6 * HOUR)
            await phone.get("/login")
            await phone.post("/revoke", content=ids.new_handle().encode())
            assert await user(laptop) is None


async def test_a_logged_out_cookie_stays_revoked_in_a_copy_extended_by_remember_me(
    revocation: Store, clock: FakeClock
) -> None:
    """The copy that logs out knows only its own deadline; a thief's copy of the same
    cookie extended by "remember me" lives longer. The handle stays listed as long as the
    marker (which outlives every session of the user), so later logouts of the user,
    which prune listings that have passed, never bring the thief's copy back."""
    app = make_app(revocation, clock)
    async with client_for(app) as victim, client_for(app) as thief:
        await victim.get("/login")  # 12 h
        stolen = victim.cookies["satchel"]
        remembered = await thief.get("/remember", headers={"cookie": f"satchel={stolen}"})
        copy = set_cookie_value(remembered.headers)  # the thief's copy: 30 days
        assert copy is not None
        assert await user(thief, copy) == "alice"
        await victim.get("/logout")  # the victim's copy: 12 h
        assert await user(thief, copy) is None
        clock.advance(13 * HOUR)  # past the victim's copy's deadline
        assert await user(thief, copy) is None
        await victim.get("/login")
        await victim.get("/logout")  # prunes listings that have passed
        assert await user(thief, copy) is None
        clock.advance(20 * DAY)
        await victim.get("/login")
        await victim.get("/logout")
        assert await user(thief, copy) is None


async def test_a_remember_me_in_flight_during_logout_stays_revoked(
    revocation: Store, clock: FakeClock
) -> None:
    """A "remember me" request of the thief's copy that was already running when the
    victim logged out grows the marker *after* the logout listed the handle: it grows
    the listing too, so the listing never passes while that copy lives."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_remember(request: Request) -> Response:
        session_of(request).set_expiry(idle_timeout=7 * DAY, absolute_timeout=30 * DAY)
        entered.set()
        await release.wait()
        return PlainTextResponse("remembered")

    app = SessionMiddleware(
        Starlette(routes=[*ROUTES, Route("/slow-remember", slow_remember)]),
        store="cookie://",
        secret_keys=[KEY],
        revocation_store=revocation,
        clock=clock,
        csrf=False,
    )
    async with client_for(app) as victim, client_for(app) as thief:
        await victim.get("/login")
        stolen = {"cookie": f"satchel={victim.cookies['satchel']}"}
        in_flight = asyncio.create_task(thief.get("/slow-remember", headers=stolen))
        await entered.wait()
        await victim.get("/logout")
        release.set()
        copy = set_cookie_value((await in_flight).headers)  # 30 days, of the revoked handle
        assert copy is not None
        assert await user(thief, copy) is None
        clock.advance(13 * HOUR)
        await victim.get("/login")
        await victim.get("/logout")
        assert await user(thief, copy) is None


class LogoutBetweenReadAndWrite(CountingStore):
    """A revocation store that, at the marker write growing it to 30 days (the thief's
    "remember me"), first lets the victim's logout run to the end: the logout lands
    between that flow's read of the marker and its write."""

    def __init__(self, inner: Store, logout: Callable[[], Awaitable[object]]) -> None:
        super().__init__(inner)
        self.logout: Callable[[], Awaitable[object]] | None = logout

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        if self.logout is not None and change.meta.absolute_deadline > now + 20 * DAY:
            logout, self.logout = self.logout, None
            await logout()
        return await super().aupdate(key, change, now)


async def test_a_logout_between_a_remember_mes_read_and_write_stays_revoked(
    revocation: Store, clock: FakeClock
) -> None:
    victim_client: list[httpx.AsyncClient] = []
    store = LogoutBetweenReadAndWrite(revocation, lambda: victim_client[0].get("/logout"))
    app = make_app(store, clock)
    async with client_for(app) as victim, client_for(app) as thief:
        victim_client.append(victim)
        await victim.get("/login")
        stolen = {"cookie": f"satchel={victim.cookies['satchel']}"}
        copy = set_cookie_value((await thief.get("/remember", headers=stolen)).headers)
        assert copy is not None
        assert store.logout is None  # the logout ran inside the remember-me's commit
        assert await user(thief, copy) is None
        clock.advance(13 * HOUR)
        await victim.get("/login")
        await victim.get("/logout")
        assert await user(thief, copy) is None


async def test_sessions_issued_before_a_lost_marker_stay_logged_out(clock: FakeClock) -> None:
    """The price of the rule above, said in the docs: losing the marker logs every
    device of the user out for good, not only until the next login."""
    revocation = MemoryStore()
    app = make_app(revocation, clock)
    async with client_for(app) as one, client_for(app) as two:
        await one.get("/login")
        revocation.delete(marker_key("alice"))
        clock.advance(1)
        await two.get("/login")
        assert await user(one) is None
        assert await user(two) == "alice"


async def test_logins_on_servers_with_skewed_clocks_both_survive_the_new_marker(
    clock: FakeClock,
) -> None:
    """A login whose clock reads earlier than the marker's creation time lowers it: two
    first logins racing on two servers both stay logged in."""
    revocation = MemoryStore()
    ahead = FakeClock(clock() + 5)
    fast, slow = make_app(revocation, ahead), make_app(revocation, clock)
    async with client_for(fast) as one, client_for(slow) as two:
        await one.get("/login")  # makes the marker at t + 5
        await two.get("/login")  # logged in at t
        assert await user(two) == "alice"
        assert await user(one) == "alice"


# -- "log out other devices" never extends the deadline --------------------------------------


async def test_log_out_other_devices_keeps_the_absolute_deadline(clock: FakeClock) -> None:
    """(Without a revocation store the call is refused: test_logout_other_devices.py.)"""
    app = make_app(MemoryStore(), clock, idle_timeout=6 * HOUR, absolute_timeout=12 * HOUR)
    async with client_for(app) as thief, client_for(app) as owner:
        await thief.get("/login")
        await owner.get("/login")
        deadline = (await thief.get("/me")).json()["deadline"]
        for _ in range(2):  # every 5 hours, the thief "logs out the other devices"
            clock.advance(5 * HOUR)
            before = thief.cookies["satchel"]
            await thief.get("/others")
            assert thief.cookies["satchel"] != before  # re-issued, under a new handle
            assert (await thief.get("/me")).json()["deadline"] == deadline
        clock.advance(5 * HOUR)
        assert await user(thief) is None  # 15 hours after a login of at most 12
        assert await user(owner) is None


async def test_the_reissued_cookie_survives_the_epoch_it_wrote(clock: FakeClock) -> None:
    """No time passes between the epoch and the re-issued cookie (one FakeClock instant)."""
    app = make_app(MemoryStore(), clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await phone.get("/login")
        await laptop.get("/login")
        await phone.get("/others")
        assert await user(phone) == "alice"
        assert await user(laptop) is None
        clock.advance(1)
        await phone.get("/others")  # again: the earlier re-issue is spared no more
        assert await user(phone) == "alice"


async def test_a_privilege_change_after_logging_out_other_devices_keeps_the_user_in(
    revocation: Store, clock: FakeClock
) -> None:
    """The spare ("log out other devices") follows the spared session to its new handle;
    the handle it leaves is listed, and no other session survives."""
    app = make_app(revocation, clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await phone.get("/login")
        await laptop.get("/login")
        before_others = phone.cookies["satchel"]
        await phone.get("/others")
        spared = phone.cookies["satchel"]
        await phone.get("/regen")  # sudo mode: a new handle, same login time
        assert phone.cookies["satchel"] != spared
        assert await user(phone) == "alice"
        assert await user(laptop) is None
        assert await user(phone, spared) is None  # the handle it left
        assert await user(phone, before_others) is None
        clock.advance(1)
        await phone.get("/regen")  # again, later
        assert await user(phone) == "alice"
        await phone.get("/others")  # and "log out other devices" once more
        assert await user(phone) == "alice"
        await phone.get("/regen")
        assert await user(phone) == "alice"
        assert await user(laptop) is None


async def test_log_out_other_devices_then_a_regeneration_in_one_request_keeps_the_user_in(
    revocation: Store, clock: FakeClock
) -> None:
    """Both calls in one request: the regeneration keeps the handle the first one chose
    (one new ID per commit), so the spare names the handle the browser gets."""
    app = make_app(revocation, clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await phone.get("/login")
        await laptop.get("/login")
        before = phone.cookies["satchel"]
        assert (await phone.get("/password-changed")).status_code == 200
        assert await user(phone) == "alice"
        assert await user(laptop) is None
        assert await user(phone, before) is None


async def test_another_devices_privilege_change_does_not_take_the_spare(
    revocation: Store, clock: FakeClock
) -> None:
    """Only the spared session moves the spare: an older session regenerating after
    "log out other devices" is revoked already and stays so."""
    app = make_app(revocation, clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await phone.get("/login")
        await laptop.get("/login")
        await phone.get("/others")
        await laptop.get("/regen")
        assert await user(laptop) is None
        assert await user(phone) == "alice"


# -- revoking junk or foreign handles cannot grow the marker ------------------------------------


def marker_size(store: Store, now: float) -> tuple[int, int]:
    record = store.load(marker_key("alice"), now)
    assert record is not None
    listed = sum(1 for name in record.data if name.startswith(HANDLE_PREFIX))
    return len(record.to_document()), listed


async def test_revoking_junk_or_foreign_handles_keeps_the_marker_bounded(
    revocation: Store, clock: FakeClock
) -> None:
    app = make_app(revocation, clock)
    async with client_for(app) as c:
        await c.get("/login")
        empty, _ = marker_size(revocation, clock())
        for junk in ("x" * 1_000_000, "h" * 13, "not a handle", "é" * 12, ""):
            assert (await c.post("/revoke", content=junk.encode())).json() == {"revoked": False}
        assert marker_size(revocation, clock()) == (empty, 0)  # nothing was written
        for _ in range(3 * MAX_REVOKED_HANDLES):  # well-formed, nobody's handles
            response = await c.post("/revoke", content=ids.new_handle().encode())
            assert response.json() == {"revoked": True}
        size, listed = marker_size(revocation, clock())
        assert listed <= MAX_REVOKED_HANDLES
        assert size < 6_000
        assert await user(c) == "alice"  # the caller's own session survives the fold


async def test_revoked_sessions_stay_revoked_when_the_handles_fold_into_the_epoch(
    clock: FakeClock,
) -> None:
    revocation = MemoryStore()
    app = make_app(revocation, clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await laptop.get("/login")
        await phone.get("/login")
        laptop_handle = (await laptop.get("/me")).json()["handle"]
        await phone.post("/revoke", content=laptop_handle.encode())
        assert await user(laptop) is None
        for _ in range(MAX_REVOKED_HANDLES + 1):
            await phone.post("/revoke", content=ids.new_handle().encode())
        assert marker_size(revocation, clock())[1] <= MAX_REVOKED_HANDLES
        assert await user(laptop) is None
        assert await user(phone) == "alice"


# -- the same rules on WSGI (one core; the sync store calls) --------------------------------------


def wsgi_client(revocation: Store, clock: FakeClock) -> httpx.Client:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[ENVIRON_KEY]
        path = environ["PATH_INFO"]
        if path == "/login":
            login(session, "alice")
        elif path == "/logout":
            logout(session)
        elif path == "/remember":
            session.set_expiry(idle_timeout=7 * DAY, absolute_timeout=30 * DAY, persistent=True)
        elif path == "/others":
            logout_other_devices(session)
        elif path == "/regen":
            regenerate_on_privilege_change(session)
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"user": session.user_id}).encode()]

    wrapped = WSGISessionMiddleware(
        app, store="cookie://", secret_keys=[KEY], revocation_store=revocation, clock=clock
    )
    return httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver")


def wsgi_user(c: httpx.Client, cookie: str | None = None) -> str | None:
    headers = {"cookie": f"satchel={cookie}"} if cookie is not None else None
    return c.get("/me", headers=headers).json()["user"]  # type: ignore[no-any-return]


async def test_wsgi_a_logged_out_cookie_stays_revoked_in_a_copy_extended_by_remember_me(
    revocation: Store, clock: FakeClock
) -> None:
    """(async only for the store fixture; the WSGI app and its client are synchronous)"""
    with wsgi_client(revocation, clock) as victim, wsgi_client(revocation, clock) as thief:
        victim.get("/login")
        stolen = {"cookie": f"satchel={victim.cookies['satchel']}"}
        copy = set_cookie_value(thief.get("/remember", headers=stolen).headers)
        assert copy is not None
        victim.get("/logout")
        assert wsgi_user(thief, copy) is None
        clock.advance(13 * HOUR)
        victim.get("/login")
        victim.get("/logout")
        assert wsgi_user(thief, copy) is None


async def test_wsgi_a_privilege_change_after_logging_out_other_devices_keeps_the_user_in(
    revocation: Store, clock: FakeClock
) -> None:
    with wsgi_client(revocation, clock) as phone, wsgi_client(revocation, clock) as laptop:
        phone.get("/login")
        laptop.get("/login")
        phone.get("/others")
        spared = phone.cookies["satchel"]
        phone.get("/regen")
        assert wsgi_user(phone) == "alice"
        assert wsgi_user(phone, spared) is None
        assert wsgi_user(laptop) is None
