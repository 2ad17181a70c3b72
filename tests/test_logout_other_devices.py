""" "Log out other devices" (the call made after a password change) and "log out
everywhere", through HTTP:

* on server-side stores the current session moves to a new ID, keeping user and data, so
  a thief holding a copy of the *current* cookie is logged out too (every store kind,
  ASGI and WSGI);
* on cookie sessions without a revocation store both calls are refused with a
  ConfigurationError naming ``revocation_store=`` instead of answering 0 and doing nothing
  for the other devices (ASGI, WSGI, Flask).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import FileStore, MemoryStore, Session, SQLiteStore, login
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.auth import (
    alogout_everywhere,
    alogout_other_devices,
    logout_everywhere,
    logout_other_devices,
)
from satchel.errors import ConfigurationError
from satchel.stores.base import Store
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import session_of
from .services import port_open, unavailable

pytestmark = pytest.mark.anyio
BASE = "https://testserver"


@pytest.fixture(params=["memory", "sqlite", "file", "redis", "memcached", "postgres", "mariadb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every server-side store kind, on its own prefix or table."""
    kind, name = request.param, f"satchel_test_{uuid.uuid4().hex[:10]}"
    made: Store
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(tmp_path / "sessions.db")
    elif kind == "file":
        made = FileStore(tmp_path / "sessions")
    elif kind == "redis":
        from satchel.stores.redis import RedisStore

        made = RedisStore(request.getfixturevalue("redis_url"), prefix=name + ":")
    elif kind == "memcached":
        from satchel.stores.memcached import MemcachedStore

        server = request.getfixturevalue("memcached")
        made = MemcachedStore([("127.0.0.1", server.port)], prefix=name + ":")
    elif kind == "postgres":
        if not port_open(5432):
            unavailable("PostgreSQL on 127.0.0.1:5432")
        from satchel.stores.postgres import PostgresStore

        made = PostgresStore("postgresql://postgres@127.0.0.1:5432/test", table=name)
    else:
        if not port_open(3306):
            unavailable("MariaDB on 127.0.0.1:3306")
        from satchel.stores.mysql import MySQLStore

        made = MySQLStore("mariadb://root@127.0.0.1:3306/test", table=name)
    yield made
    await made.aclose()
    made.close()
    if kind == "postgres":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {name}")
    elif kind == "mariadb":
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


async def do_login(request: Request) -> Response:
    login(session_of(request), "alice")
    request.session["theme"] = "dark"
    return PlainTextResponse("in")


async def me(request: Request) -> Response:
    return JSONResponse(
        {"user": session_of(request).user_id, "theme": request.session.get("theme")}
    )


async def others(request: Request) -> Response:
    return JSONResponse({"revoked": await alogout_other_devices(session_of(request))})


async def everywhere(request: Request) -> Response:
    return JSONResponse({"revoked": await alogout_everywhere(session_of(request))})


def asgi_app(store: Store | str) -> SessionMiddleware:
    routes = [
        Route("/login", do_login),
        Route("/me", me),
        Route("/others", others),
        Route("/everywhere", everywhere),
    ]
    return SessionMiddleware(Starlette(routes=routes), store=store, secret_keys=[KEY], csrf=False)


def wsgi_app(store: Store | str) -> WSGISessionMiddleware:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[ENVIRON_KEY]
        path = environ["PATH_INFO"]
        body: dict[str, object] = {}
        if path == "/login":
            login(session, "alice")
            session["theme"] = "dark"
        elif path == "/others":
            body = {"revoked": logout_other_devices(session)}
        elif path == "/everywhere":
            body = {"revoked": logout_everywhere(session)}
        else:
            body = {"user": session.user_id, "theme": session.get("theme")}
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps(body).encode()]

    return WSGISessionMiddleware(app, store=store, secret_keys=[KEY], csrf=False)


def cookie_of(client: httpx.Client | httpx.AsyncClient) -> str:
    return client.cookies["satchel"]


def header(cookie: str) -> dict[str, str]:
    return {"cookie": f"satchel={cookie}"}


# -- server-side stores: the current session moves to a new ID ----------------------------------


async def test_log_out_other_devices_also_ends_a_stolen_copy_of_the_current_cookie(
    store: Store,
) -> None:
    app = asgi_app(store)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE) as owner,
        httpx.AsyncClient(transport=transport, base_url=BASE) as laptop,
    ):
        await owner.get("/login")
        await laptop.get("/login")
        stolen = cookie_of(owner)
        assert (await owner.get("/me", headers=header(stolen))).json()["user"] == "alice"
        assert (await owner.get("/others")).json() == {"revoked": 1}
        assert cookie_of(owner) != stolen  # the owner got a new ID...
        assert (await owner.get("/me")).json() == {
            "user": "alice",
            "theme": "dark",
        }  # ...same session
        assert (await laptop.get("/me")).json()["user"] is None
        # the thief's copy of the current cookie names nothing any more
        thief = await owner.get("/me", headers=header(stolen))
        assert thief.json() == {"user": None, "theme": None}


async def test_wsgi_log_out_other_devices_also_ends_a_stolen_copy_of_the_current_cookie(
    store: Store,
) -> None:
    """(async only for the store fixture; the WSGI app and its client are synchronous)"""
    transport = httpx.WSGITransport(app=wsgi_app(store))
    with (
        httpx.Client(transport=transport, base_url=BASE) as owner,
        httpx.Client(transport=transport, base_url=BASE) as laptop,
    ):
        owner.get("/login")
        laptop.get("/login")
        stolen = cookie_of(owner)
        assert owner.get("/others").json() == {"revoked": 1}
        assert owner.get("/me").json() == {"user": "alice", "theme": "dark"}
        assert laptop.get("/me").json()["user"] is None
        assert owner.get("/me", headers=header(stolen)).json() == {"user": None, "theme": None}


# -- cookie sessions without a revocation store: refused, not a silent 0 ------------------------


@pytest.mark.parametrize("path", ["/others", "/everywhere"])
async def test_cookie_sessions_without_revocation_store_refuse_to_log_other_devices_out(
    path: str,
) -> None:
    transport = httpx.ASGITransport(app=asgi_app("cookie://"))
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE) as phone,
        httpx.AsyncClient(transport=transport, base_url=BASE) as laptop,
    ):
        await phone.get("/login")
        await laptop.get("/login")
        before = cookie_of(phone)
        with pytest.raises(ConfigurationError, match="revocation_store="):
            await phone.get(path)
        assert cookie_of(phone) == before  # nothing changed, this session included
        assert (await phone.get("/me")).json()["user"] == "alice"


@pytest.mark.parametrize("path", ["/others", "/everywhere"])
def test_wsgi_cookie_sessions_without_revocation_store_refuse_to_log_other_devices_out(
    path: str,
) -> None:
    transport = httpx.WSGITransport(app=wsgi_app("cookie://"))
    with httpx.Client(transport=transport, base_url=BASE) as phone:
        phone.get("/login")
        with pytest.raises(ConfigurationError, match="revocation_store="):
            phone.get(path)
        assert phone.get("/me").json()["user"] == "alice"


@pytest.mark.parametrize("call", ["logout_other_devices", "logout_everywhere"])
def test_flask_cookie_sessions_without_revocation_store_refuse_to_log_other_devices_out(
    call: str,
) -> None:
    from flask import Flask

    from satchel.integrations import flask as satchel_flask

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=KEY, SATCHEL_STORE="cookie://", SATCHEL_CSRF=False, TESTING=True
    )  # TESTING: the view's exception reaches the test instead of a 500 page
    satchel_flask.Satchel(app)

    @app.get("/login")
    def flask_login() -> str:
        satchel_flask.login_user("alice")
        return "in"

    @app.get("/call")
    def flask_call() -> str:
        return str(getattr(satchel_flask, call)())

    client = app.test_client()
    client.get("https://localhost/login")
    with pytest.raises(ConfigurationError, match="revocation_store="):
        client.get("https://localhost/call")
