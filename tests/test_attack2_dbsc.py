"""A second outside pass over device-bound sessions (DBSC), after the fixes of issue 13
(commit 34d373e): a thief who copied the victim's cookies but not the browser's key must
lose access within ``dbsc_cookie_lifetime`` of the last proof, must never get the session
unbound or re-bound to a key of theirs, and nothing crafted gets a 500.

These tests were written as a review (branch ``attack2-dbsc``); each one failed when it
was written. Django's findings are at the end of tests/test_integration_django.py (its
settings are process-wide)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import device_bound, login, regenerate_on_privilege_change, require_device_binding
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.session import Session
from satchel.testing import FakeClock

from .conftest import KEY
from .dbsc_device import Device, registration_offer
from .services import store_url

LIFETIME = 60
JSON_ACCEPT = {"accept": "application/json"}
SETTLE = 10  # seconds after a binding during which a request without a bound cookie passes

STORES = [
    "memory://",
    "sqlite:///{tmp}/s.db",
    "file://{tmp}/files",
    "redis://127.0.0.1:6379/0",
    "postgresql://postgres@127.0.0.1:5432/test",
    "mysql://root@127.0.0.1:3306/test",
]


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


def _race(
    url: str, landing_write: Callable[[Session], None], **options: Any
) -> tuple[FakeClock, Callable[[Callable[[httpx.AsyncClient, str], Awaitable[Any]]], Any]]:
    """An app whose ``/landing`` page (the page a login redirects to) loads the session,
    waits while the browser registers its key, then does ``landing_write``. Returns the
    clock and a runner: it logs in, binds during the landing request, then hands the
    client and the pre-binding session cookie to ``then``."""
    clock = FakeClock()
    entered, release = asyncio.Event(), asyncio.Event()

    async def login_view(request: Request) -> Response:
        login(_session(request), "alice")
        return JSONResponse({})

    async def landing(request: Request) -> Response:
        session = _session(request)
        session.ensure_loaded()  # (it loaded before the registration)
        entered.set()
        await release.wait()
        landing_write(session)
        return JSONResponse({})

    async def me(request: Request) -> Response:
        return JSONResponse({"bound": device_bound(_session(request))})

    routes = [Route("/login", login_view), Route("/landing", landing), Route("/me", me)]
    app = ASGIMiddleware(
        Starlette(routes=routes), url, secret_keys=[KEY], dbsc=True, clock=clock,
        dbsc_cookie_lifetime=LIFETIME, **options,
    )  # fmt: skip

    def run(then: Callable[[httpx.AsyncClient, str], Awaitable[Any]]) -> Any:
        async def attack() -> Any:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
                offer = (await c.get("/login")).headers["secure-session-registration"]
                copied = c.cookies["satchel"]  # the thief's copy, taken before the binding
                path, challenge = registration_offer(offer)
                page = asyncio.create_task(c.get("/landing"))
                await entered.wait()
                proof = Device().proof(challenge, with_jwk=True)
                registered = await c.post(path, headers={"secure-session-response": proof})
                assert registered.status_code == 200
                release.set()
                assert (await page).status_code == 200
                return await then(c, copied)

        async def attack_then_close() -> Any:
            try:
                return await attack()
            finally:
                if app.store is not None:
                    await app.store.aclose()
                    app.store.close()

        return asyncio.run(attack_then_close())

    return clock, run


# -- 1. require_device_binding() on a page loaded before the binding wipes the binding ----------


@pytest.mark.parametrize("store", STORES)
def test_require_device_binding_loaded_before_the_binding_does_not_drop_it(
    store: str, tmp_path: Any
) -> None:
    """The fix of issue 13 keeps the stored binding only when a write did not touch the
    device field (``Change.keeps_device``). ``require_device_binding(session)`` does touch
    it: called on the page a login redirects to (an admin console asking it of every admin
    page: it looks idempotent), which loaded the session before the registration's answer,
    it writes ``{"q": 1}`` -- "must bind, not bound yet" -- over the binding the
    registration stored meanwhile. The session is unbound again with its ID unchanged: a
    copy of the session cookie taken before the binding works alone (within the grace
    period), and its holder can now bind the session to a key of their own -- the owner's
    browser hears ``continue: false`` at its next refresh and is locked out."""
    url = store_url(store, tmp_path)
    clock, run = _race(url, require_device_binding, refresh_interval=0)

    async def then(c: httpx.AsyncClient, copied: str) -> tuple[int, str, int]:
        clock.advance(SETTLE + 1)
        c.cookies.clear()
        thief = {**JSON_ACCEPT, "cookie": f"satchel={copied}"}
        alone = await c.get("/me", headers=thief)
        # the thief takes the session over with a key of their own, if the offer came
        offer = alone.headers.get("secure-session-registration")
        rebound = 0
        if offer is not None:
            path, challenge = registration_offer(offer)
            proof = Device().proof(challenge, with_jwk=True)
            bound = await c.post(path, headers={**thief, "secure-session-response": proof})
            rebound = bound.status_code
        return alone.status_code, alone.text, rebound

    status, text, rebound = run(then)
    assert (status, rebound) == (401, 0), (status, text, rebound)


# -- 2. a regeneration on a page loaded before the binding drops it -----------------------------


@pytest.mark.parametrize("store", ["memory://", "redis://127.0.0.1:6379/0"])
def test_a_regeneration_loaded_before_the_binding_does_not_drop_it(
    store: str, tmp_path: Any
) -> None:
    """The same race with a regeneration (``regenerate_on_privilege_change``, "log out
    other devices", a same-user login, Django's ``cycle_key``): the new record is created
    from the metadata the request loaded -- unbound -- and the bound record is deleted.
    The docs promise that a regeneration keeps the binding and that a write loaded before
    the binding leaves it alone; here the session silently ends up unbound (and is
    offered to bind again, to whoever holds its new cookie)."""
    url = store_url(store, tmp_path)
    clock, run = _race(url, regenerate_on_privilege_change)

    async def then(c: httpx.AsyncClient, copied: str) -> tuple[int, Any]:
        clock.advance(SETTLE + 1)
        new_cookie = c.cookies["satchel"]
        assert new_cookie != copied  # regenerated
        c.cookies.clear()
        alone = await c.get("/me", headers={**JSON_ACCEPT, "cookie": f"satchel={new_cookie}"})
        return alone.status_code, alone.text

    status, text = run(then)
    assert status == 401, text
