"""Attacks on the framework integrations (Litestar, Falcon, Quart, aiohttp, the Django
devices app), each through the framework's own test client: what an outside attacker
tried, and the answer satchel must give."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from satchel.integrations.aiohttp import csrf_token, get_session, setup

from .conftest import KEY
from .test_integration_aiohttp import serve

pytestmark = pytest.mark.anyio


# -- aiohttp ---------------------------------------------------------------------------------------


async def test_aiohttp_an_upgrade_header_does_not_skip_the_csrf_token(tmp_path: Path) -> None:
    """A POST that merely says ``Upgrade: websocket`` is no WebSocket handshake (those are
    GET): it must still pass the token check, not only the Origin check."""
    app = web.Application()
    setup(app, f"sqlite:///{tmp_path}/s.db", secret_keys=[KEY])

    async def login(request: web.Request) -> web.Response:
        (await get_session(request))["user"] = "alice"
        return web.json_response({"csrf_token": csrf_token(request)})

    async def transfer(request: web.Request) -> web.Response:
        (await get_session(request))["moved"] = True
        return web.Response(text="moved")

    app.router.add_get("/login", login)
    app.router.add_post("/transfer", transfer)
    client = await serve(app)
    try:
        assert (await client.get("/login")).status == 200
        plain = await client.post("/transfer")
        assert plain.status == 403  # no token: refused
        upgraded = await client.post(
            "/transfer", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
        )
        assert upgraded.status == 403, await upgraded.text()
    finally:
        await client.close()


async def test_aiohttp_an_encoded_slash_does_not_reach_a_csrf_exempt_path(tmp_path: Path) -> None:
    """aiohttp routes on the path with ``%2F`` still encoded (``rel_url.path_safe``): the
    exemptions must see that path, not the decoded one, or ``/webhooks%2Facme/transfer``
    (which a browser sends as written, from a cross-site form) matches ``/webhooks/*``
    while it reaches ``/{org}/transfer`` with the victim's session."""
    app = web.Application()
    setup(app, f"sqlite:///{tmp_path}/s.db", secret_keys=[KEY], csrf_exempt=["/webhooks/*"])

    async def login(request: web.Request) -> web.Response:
        (await get_session(request))["user"] = "alice"
        return web.Response(text="in")

    async def transfer(request: web.Request) -> web.Response:
        return web.Response(text=f"moved for {(await get_session(request)).get('user')}")

    async def hook(request: web.Request) -> web.Response:
        return web.Response(text="hooked")

    app.router.add_get("/login", login)
    app.router.add_post("/webhooks/{name}", hook)
    app.router.add_post("/{org}/transfer", transfer)
    client = await serve(app)
    try:
        assert (await client.get("/login")).status == 200
        assert (await client.post("/acme/transfer")).status == 403
        assert await (await client.post("/webhooks/stripe")).text() == "hooked"  # exempt
        for raw in ("/webhooks%2Facme/transfer", "/webhooks%2F..%2Facme/transfer"):
            sneaked = await client.post(URL(raw, encoded=True))
            assert sneaked.status == 403, (raw, await sneaked.text())
    finally:
        await client.close()


# -- Quart -----------------------------------------------------------------------------------------


async def test_quart_a_websocket_of_a_bound_session_needs_the_bound_cookie_too() -> None:
    """A device-bound session's main cookie, stolen without the device's bound cookie, is
    refused on HTTP routes; a WebSocket route must refuse it too (as the ASGI middleware
    does), not hand the thief the session."""
    from quart import Quart, session, websocket
    from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

    from satchel import login
    from satchel.integrations.quart import Satchel
    from satchel.testing import FakeClock

    from .dbsc_device import Device, registration_offer
    from .test_dbsc_http import SETTLE

    clock = FakeClock()
    app = Quart("bound")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://", SATCHEL_DBSC=True)
    Satchel(app, clock=clock)

    @app.get("/login")
    async def log_in() -> str:
        login(session._get_current_object(), "alice")  # type: ignore[attr-defined]
        return "in"

    @app.get("/me")
    async def me() -> str:
        return str(session.user_id)  # type: ignore[attr-defined]

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.accept()
        await websocket.send(str(session.user_id))  # type: ignore[attr-defined]

    client = app.test_client()
    offer = (await client.get("/login", scheme="https")).headers["secure-session-registration"]
    path, challenge = registration_offer(offer)
    proof = Device().proof(challenge, with_jwk=True)
    registered = await client.post(path, headers={"secure-session-response": proof}, scheme="https")
    assert registered.status_code == 200
    clock.advance(SETTLE)
    assert await (await client.get("/me", scheme="https")).get_data(as_text=True) == "alice"
    assert client.cookie_jar is not None
    stolen = next(c.value or "" for c in client.cookie_jar if c.name == "satchel")
    thief = app.test_client()
    thief.set_cookie("localhost", "satchel", stolen, secure=True)
    refused = await thief.get("/me", scheme="https")
    assert await refused.get_data(as_text=True) != "alice"  # HTTP: no device, no session
    origin = {"Origin": "https://localhost"}
    async with client.websocket("/ws", scheme="wss", headers=origin) as socket:
        assert await socket.receive() == "alice"  # the device itself: both cookies
    got = None
    try:
        async with thief.websocket("/ws", scheme="wss", headers=origin) as socket:
            got = await socket.receive()
    except (WebsocketResponseError, WebsocketDisconnectError):
        pass
    assert got != "alice"
