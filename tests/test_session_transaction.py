"""satchel.testing.session_transaction on apps as they are written: satchel's middleware
added with ``app.add_middleware(...)`` to FastAPI and Starlette (whose middleware stack is
built on the first request), on ``memory://``, where a second store would see nothing."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from satchel import ConfigurationError, Session, login
from satchel.integrations.fastapi import CurrentSession, CurrentUser
from satchel.integrations.starlette import SessionMiddleware
from satchel.testing import find_middleware, session_transaction

from .conftest import KEY

BASE = "https://testserver"
pytestmark = pytest.mark.anyio


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store="memory://", secret_keys=[KEY])

    @app.get("/me")
    def me(user: CurrentUser, session: CurrentSession) -> dict[str, object]:
        return {"user": user, "cart": session.get("cart")}

    return app


def starlette_app() -> Starlette:
    async def me(request: Request) -> JSONResponse:
        session = request.session
        assert isinstance(session, Session)
        return JSONResponse({"user": session.user_id, "cart": session.get("cart")})

    app = Starlette(routes=[Route("/me", me)])
    app.add_middleware(SessionMiddleware, store="memory://", secret_keys=[KEY])
    return app


@pytest.mark.parametrize("make", [fastapi_app, starlette_app])
@pytest.mark.parametrize("requested_first", [False, True])
async def test_add_middleware_on_memory_store(make: object, requested_first: bool) -> None:
    app = make()  # type: ignore[operator]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        if requested_first:  # Starlette has built its stack: the helper finds it there
            assert (await client.get("/me")).status_code in (200, 401)
        with session_transaction(app, client) as session:
            login(session, "carol")
            session["cart"] = ["apple"]
        assert (await client.get("/me")).json() == {"user": "carol", "cart": ["apple"]}
        with session_transaction(app, client) as session:  # and reads what the app wrote
            assert session.user_id == "carol"
            session["cart"] = ["apple", "pear"]
        assert (await client.get("/me")).json() == {"user": "carol", "cart": ["apple", "pear"]}


def test_the_middleware_found_is_the_one_serving() -> None:
    app = starlette_app()
    middleware = find_middleware(app)
    assert find_middleware(middleware) is middleware
    assert find_middleware(app) is middleware  # the stack is built once, not again


def test_an_app_without_satchel_is_named() -> None:
    with pytest.raises(ConfigurationError, match="no satchel SessionMiddleware in Starlette"):
        find_middleware(Starlette())
