"""Cookie sessions without a revocation store: a request in flight during logout must not
log the browser back in when its response arrives after the logout's. Two overlapping
requests, their responses applied to one client's cookie jar in order (ASGI and WSGI)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import Session, login, logout
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.cookie import TOMBSTONE_SUFFIX
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import session_of, set_cookie_value

pytestmark = pytest.mark.anyio
TOMBSTONE = "satchel" + TOMBSTONE_SUFFIX


def asgi_app(clock: FakeClock, entered: asyncio.Event, release: asyncio.Event) -> Starlette:
    async def do_login(request: Request) -> Response:
        login(session_of(request), request.query_params.get("user", "alice"))
        return PlainTextResponse("in")

    async def do_logout(request: Request) -> Response:
        logout(session_of(request))
        return PlainTextResponse("out")

    async def slow(request: Request) -> Response:
        request.session["n"] = request.session.get("n", 0) + 1  # writes: sets the cookie
        entered.set()
        await release.wait()
        return JSONResponse({"n": request.session["n"]})

    async def me(request: Request) -> Response:
        return JSONResponse({"user": session_of(request).user_id, "n": request.session.get("n")})

    routes = [Route("/login", do_login), Route("/logout", do_logout), Route("/slow", slow)]
    return Starlette(routes=[*routes, Route("/me", me)])


async def test_a_request_in_flight_during_logout_cannot_log_the_browser_back_in(
    clock: FakeClock,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    app = SessionMiddleware(
        asgi_app(clock, entered, release), store="cookie://", secret_keys=[KEY], clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/login")
        clock.advance(1)
        in_flight = asyncio.create_task(c.get("/slow"))
        await entered.wait()
        logged_out = await c.get("/logout")
        release.set()
        late = await in_flight  # answers after the logout, with the logged-in cookie
        assert set_cookie_value(late.headers) == c.cookies["satchel"]
        assert (await c.get("/me")).json() == {"user": None, "n": None}
        assert set_cookie_value(logged_out.headers, TOMBSTONE) == c.cookies[TOMBSTONE]
        clock.advance(1)
        await c.get("/login")  # a later login is not affected
        assert (await c.get("/me")).json()["user"] == "alice"


async def test_the_tombstone_is_signed_and_stops_only_the_browser_that_logged_out(
    clock: FakeClock,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    app = SessionMiddleware(
        asgi_app(clock, entered, release), store="cookie://", secret_keys=[KEY], clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        await c.get("/login")
        copy = c.cookies["satchel"]
        forged = {"cookie": f"satchel={copy}; {TOMBSTONE}=99999999999999.AAAAAAAAAAAAAAAA"}
        assert (await c.get("/me", headers=forged)).json()["user"] == "alice"
        await c.get("/logout")
        tombstone = c.cookies[TOMBSTONE]
        both = {"cookie": f"satchel={copy}; {TOMBSTONE}={tombstone}"}
        assert (await c.get("/me", headers=both)).json()["user"] is None
        # the documented limit: a copy without the tombstone (a thief's) still works
        # until it expires; stopping that needs a revocation store
        assert (await c.get("/me", headers={"cookie": f"satchel={copy}"})).json()["user"] == (
            "alice"
        )


def test_wsgi_request_in_flight_during_logout_cannot_log_the_browser_back_in(
    clock: FakeClock,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[ENVIRON_KEY]
        path = environ["PATH_INFO"]
        if path == "/login":
            login(session, "alice")
        elif path == "/logout":
            logout(session)
        elif path == "/slow":
            session["n"] = session.get("n", 0) + 1
            entered.set()
            assert release.wait(10)
        body = json.dumps({"user": session.user_id}).encode()
        start_response("200 OK", [("content-type", "application/json")])
        return [body]

    wrapped = WSGISessionMiddleware(app, store="cookie://", secret_keys=[KEY], clock=clock)
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        c.get("/login")
        clock.advance(1)
        late: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: late.append(c.get("/slow")))
        worker.start()
        assert entered.wait(10)
        c.get("/logout")
        release.set()
        worker.join(10)
        assert set_cookie_value(late[0].headers) == c.cookies["satchel"]
        assert c.get("/me").json() == {"user": None}


def test_flask_late_response_after_logout_does_not_log_the_browser_back_in() -> None:
    """Flask's test client cannot overlap requests: a second client carries the browser's
    cookie as it was when the slow request left, and its late response is then applied to
    the browser's jar, after the logout's."""
    from flask import Flask
    from flask import session as flask_session

    from satchel.integrations.flask import Satchel, login_user, logout_user

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="cookie://", SATCHEL_CSRF=False)
    Satchel(app)

    @app.get("/login")
    def flask_login() -> str:
        login_user("alice")
        return "in"

    @app.get("/logout")
    def flask_logout() -> str:
        logout_user()
        return "out"

    @app.get("/slow")
    def flask_slow() -> str:
        flask_session["n"] = flask_session.get("n", 0) + 1
        return "done"

    @app.get("/me")
    def flask_me() -> dict[str, object]:
        return {"user": getattr(flask_session, "user_id", None), "n": flask_session.get("n")}

    browser, in_flight = app.test_client(), app.test_client()
    base = "https://localhost"
    browser.get(f"{base}/login")
    found = browser.get_cookie("satchel", domain="localhost")
    assert found is not None
    in_flight.set_cookie("satchel", found.value, domain="localhost", secure=True)
    browser.get(f"{base}/logout")
    in_flight.get(f"{base}/slow")
    late = in_flight.get_cookie("satchel", domain="localhost")
    assert late is not None
    assert late.value != found.value  # the late response set the logged-in cookie again
    browser.set_cookie("satchel", late.value, domain="localhost", secure=True)
    assert browser.get(f"{base}/me").get_json() == {"user": None, "n": None}


# -- the tombstone is bound to the user who logged out -----------------------------------------


async def test_another_users_tossed_tombstone_logs_nobody_else_out(clock: FakeClock) -> None:
    """Mallory logs in and out on her own account and tosses her genuine, signed
    tombstone into alice's browser (a sibling subdomain can set cookies for the parent
    domain): it governs only mallory's sessions."""
    entered, release = asyncio.Event(), asyncio.Event()
    app = SessionMiddleware(
        asgi_app(clock, entered, release), store="cookie://", secret_keys=[KEY], clock=clock
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as alice,
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as mallory,
    ):
        await alice.get("/login?user=alice")
        clock.advance(1)
        await mallory.get("/login?user=mallory")  # logged in after alice
        mallorys_session = mallory.cookies["satchel"]
        await mallory.get("/logout")
        tossed = mallory.cookies[TOMBSTONE]
        with_toss = {"cookie": f"satchel={alice.cookies['satchel']}; {TOMBSTONE}={tossed}"}
        assert (await alice.get("/me", headers=with_toss)).json()["user"] == "alice"
        # it still governs mallory's own logged-out session
        own = {"cookie": f"satchel={mallorys_session}; {TOMBSTONE}={tossed}"}
        assert (await alice.get("/me", headers=own)).json()["user"] is None


def test_wsgi_another_users_tossed_tombstone_logs_nobody_else_out(clock: FakeClock) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[ENVIRON_KEY]
        path = environ["PATH_INFO"]
        if path == "/login":
            login(session, environ["QUERY_STRING"].partition("=")[2])
        elif path == "/logout":
            logout(session)
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"user": session.user_id}).encode()]

    wrapped = WSGISessionMiddleware(app, store="cookie://", secret_keys=[KEY], clock=clock)
    transport = httpx.WSGITransport(app=wrapped)
    with (
        httpx.Client(transport=transport, base_url="https://testserver") as alice,
        httpx.Client(transport=transport, base_url="https://testserver") as mallory,
    ):
        alice.get("/login?user=alice")
        clock.advance(1)
        mallory.get("/login?user=mallory")
        mallory.get("/logout")
        tossed = mallory.cookies[TOMBSTONE]
        with_toss = {"cookie": f"satchel={alice.cookies['satchel']}; {TOMBSTONE}={tossed}"}
        assert alice.get("/me", headers=with_toss).json() == {"user": "alice"}
