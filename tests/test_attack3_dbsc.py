"""A third outside pass over device-bound sessions (DBSC), against the fixes of the second
(``tests/test_attack2_dbsc.py``): "no store replaces a stored binding by an unbound state
but in a fresh start", and "a regeneration carries the binding stored now".

Written as a review (branch ``attack3-dbsc``); each test failed when it was written."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import device_bound, login, require_device_binding
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.session import Session
from satchel.testing import FakeClock

from .conftest import KEY
from .dbsc_device import Device, registration_offer
from .services import store_url
from .test_attack2_dbsc import JSON_ACCEPT, LIFETIME, SETTLE, STORES


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


@pytest.mark.parametrize("store", STORES)
def test_a_stale_write_does_not_bring_back_a_binding_a_fresh_start_dropped(
    store: str, tmp_path: Any
) -> None:
    """A fresh start in place (``Session.start_over()``; Django's ``session.clear()``)
    drops the binding: the session is no longer the bound user's, and the browser's next
    refresh hears ``continue: false`` and ends its DBSC session. A request that loaded the
    session *before* the fresh start and commits after it with a device value that is a
    binding -- ``require_device_binding()`` (on a bound session it writes the loaded
    binding plus ``"q": 1``), or the same on a regeneration -- writes the old binding back:
    ``keeps_device`` is False (the value changed) and ``unbinds`` is False (it is a
    binding), so every store takes it over the fresh start's unbound state. The session is
    bound again to a key the browser has dropped: once the settle time is over every
    request is refused with 401 -- the logout page too, since the refusal runs before any
    view -- until the session expires. The user is stuck."""
    url = store_url(store, tmp_path)
    clock = FakeClock()
    entered, release = asyncio.Event(), asyncio.Event()

    async def login_view(request: Request) -> Response:
        login(_session(request), "alice")
        return JSONResponse({})

    async def slow(request: Request) -> Response:  # e.g. an admin page, or an upload
        session = _session(request)
        session.ensure_loaded()  # loaded while bound
        entered.set()
        await release.wait()
        require_device_binding(session)
        return JSONResponse({})

    async def reset(request: Request) -> Response:  # "sign out" by a fresh start in place
        _session(request).start_over()
        return JSONResponse({})

    async def me(request: Request) -> Response:
        return JSONResponse({"bound": device_bound(_session(request))})

    routes = [
        Route("/login", login_view),
        Route("/slow", slow),
        Route("/reset", reset, methods=["POST"]),
        Route("/me", me),
    ]
    app = ASGIMiddleware(
        Starlette(routes=routes), url, secret_keys=[KEY], dbsc=True, clock=clock,
        dbsc_cookie_lifetime=LIFETIME, csrf=False,
    )  # fmt: skip

    async def attack() -> tuple[int, str, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            offer = (await c.get("/login")).headers["secure-session-registration"]
            path, challenge = registration_offer(offer)
            proof = Device().proof(challenge, with_jwk=True)
            registered = await c.post(path, headers={"secure-session-response": proof})
            assert registered.status_code == 200
            assert (await c.get("/me")).json() == {"bound": True}
            page = asyncio.create_task(c.get("/slow"))
            await entered.wait()
            assert (await c.post("/reset")).status_code == 200  # the binding is dropped
            session_cookie = c.cookies["satchel"]
            after_reset = await c.get("/me", headers=JSON_ACCEPT)
            release.set()
            assert (await page).status_code == 200
            c.cookies.clear()
            only_session = {**JSON_ACCEPT, "cookie": f"satchel={session_cookie}"}
            after_stale = await c.get("/me", headers=only_session)  # (within the settle time)
            clock.advance(SETTLE + LIFETIME + 1)  # the browser ended its DBSC session
            alone = await c.get("/me", headers=only_session)
            return alone.status_code, after_reset.text + " " + after_stale.text, alone.text

    async def attack_then_close() -> tuple[int, str, str]:
        try:
            return await attack()
        finally:
            if app.store is not None:
                await app.store.aclose()
                app.store.close()

    status, after_reset, text = asyncio.run(attack_then_close())
    assert after_reset == '{"bound":false} {"bound":false}', after_reset
    assert status == 200, (status, text)
