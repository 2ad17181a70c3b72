"""The event hook of docs/logging-and-events.md, as the page shows it, sees what the page
says: a login, a logout, a tampered cookie and a CSRF refusal."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import Session, SessionEvent, csrf_token, login, logout
from satchel.asgi import SessionMiddleware

from .conftest import KEY

pytestmark = pytest.mark.anyio


# --8<-- [start:hook]
audit = logging.getLogger("myapp.sessions")


def on_event(event: SessionEvent) -> None:
    """Lifecycle events as info, security events as warnings (route those to alerting).
    Events carry the public handle, the user and an 8-hex-digit reference: never an ID."""
    level = logging.WARNING if event.kind == "security" else logging.INFO
    audit.log(
        level,
        "session %s: %s user=%s handle=%s ref=%s",
        event.kind,
        event.reason or "-",
        event.user_id or "-",
        event.handle or "-",
        event.ref or "-",
    )


# --8<-- [end:hook]


def app(tmp_path: object) -> SessionMiddleware:
    async def log_in(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        login(session, "alice")
        return JSONResponse({})

    async def log_out(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        logout(session)
        return JSONResponse({})

    async def csrf(request: Request) -> JSONResponse:
        return JSONResponse({"csrf_token": csrf_token(request)})

    routes = [
        Route("/csrf", csrf),
        Route("/login", log_in, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
    return SessionMiddleware(
        Starlette(routes=routes),
        store="memory://",
        secret_keys=[KEY],
        # --8<-- [start:wire]
        on_event=on_event,  # any callable taking a SessionEvent
        # --8<-- [end:wire]
    )


async def test_the_documented_hook_sees_logins_logouts_and_attacks(
    caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    caplog.set_level(logging.INFO, logger="myapp.sessions")
    transport = httpx.ASGITransport(app=app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
        token = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/login", headers={"x-csrf-token": token})
        token = (await c.get("/csrf")).json()["csrf_token"]
        await c.post("/logout", headers={"x-csrf-token": token})
        await c.post("/logout")  # no token: refused
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as forger:
        await forger.get("/csrf", headers={"cookie": "satchel=" + "A" * 43 + "." + "B" * 30})
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "myapp.sessions"]
    kinds = [message.split(":")[0] for _, message in lines]
    assert "session created" in kinds
    assert "session destroyed" in kinds
    warnings = [message for level, message in lines if level == "WARNING"]
    assert any("csrf_failure" in w for w in warnings)
    assert any("tampered_cookie" in w for w in warnings)
    assert all("user=alice" in m for _, m in lines if m.startswith("session created"))
