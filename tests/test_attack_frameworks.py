"""Attacks on the framework integrations (Litestar, Falcon, Quart, aiohttp, the Django
devices app), each through the framework's own test client: what an outside attacker
tried, and the answer satchel must give."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

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
