"""Attacks on device-bound sessions (DBSC) from outside, over HTTP: a thief who copied the
victim's cookies (the session cookie, maybe a bound cookie that is still fresh) but not
the browser's key must lose access within ``dbsc_cookie_lifetime`` of the last proof, and
must never get the session unbound or re-bound. Each test states what the attacker does
and what must hold; the device signs as Chromium does (tests/dbsc_device.py).

These tests were written as a review of the DBSC implementation: each one failed when it
was written (see the report on branch ``attack-dbsc``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from satchel import device_bound, login, logout_other_devices, regenerate_on_privilege_change
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.dbsc.proof import thumbprint
from satchel.errors import ConfigurationError
from satchel.session import Session
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .dbsc_device import Device, challenge_of, registration_offer
from .services import store_url
from .test_demo_cli import _SyncASGI

LIFETIME = 60
JSON_ACCEPT = {"accept": "application/json"}
SETTLE = 10  # seconds after a binding during which a request without a bound cookie passes


# -- one app on three paths ------------------------------------------------------------------


def _route(session: Session, path: str) -> dict[str, Any]:
    if path == "/login":
        login(session, "alice")
    elif path == "/privilege":  # e.g. after sudo mode, a role change
        regenerate_on_privilege_change(session)
    elif path == "/others":  # "log out other devices" (after a password change)
        logout_other_devices(session)
    elif path == "/put":
        session["n"] = session.get("n", 0) + 1
    return {"user": session.user_id, "bound": device_bound(session)}


async def _asgi_view(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))  # (under a Mount)
    return JSONResponse(_route(session, path))


def _wsgi_view(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = _route(environ[ENVIRON_KEY], environ["PATH_INFO"])
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def _flask(options: dict[str, Any]) -> Any:
    from flask import Flask, session

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY)
    Satchel(app, store="memory://", secret_keys=[KEY], **options)

    @app.route("/<path:name>", methods=["GET", "POST"])
    def view(name: str) -> Any:
        return _route(session, "/" + name)  # type: ignore[arg-type]

    return app


class Site:
    """The app on one path (memory store), its clock, and the victim's browser."""

    def __init__(self, path: str, **options: Any) -> None:
        self.clock = FakeClock()
        options = {"dbsc": True, "dbsc_cookie_lifetime": LIFETIME, "clock": self.clock, **options}
        transport: httpx.BaseTransport
        if path == "asgi":
            routes = [Route("/{p:path}", _asgi_view, methods=["GET", "POST"])]
            app = ASGIMiddleware(
                Starlette(routes=routes), "memory://", secret_keys=[KEY], **options
            )
            transport = _SyncASGI(httpx.ASGITransport(app=app))
        elif path == "wsgi":
            wsgi = WSGIMiddleware(_wsgi_view, "memory://", secret_keys=[KEY], **options)
            transport = httpx.WSGITransport(app=wsgi)
        else:
            transport = httpx.WSGITransport(app=_flask(options))
        self.transport = transport
        self.http = httpx.Client(transport=transport, base_url="https://testserver")
        self.device = Device()

    def login_and_bind(self) -> None:
        response = self.http.get("/login")
        path, challenge = registration_offer(response.headers["secure-session-registration"])
        proof = self.device.proof(challenge, with_jwk=True)
        bound = self.http.post(path, headers={"secure-session-response": proof})
        assert bound.status_code == 200, bound.text

    def stolen(self) -> dict[str, str]:
        """What an info-stealer uploads: the browser's cookies, not its key."""
        return {c.name: c.value or "" for c in self.http.cookies.jar}

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()  # (and the transport: the ASGI path's event loop)


class Thief:
    """Another machine, replaying copied cookies (and keeping what responses set)."""

    def __init__(self, transport: httpx.BaseTransport, cookies: dict[str, str]) -> None:
        self.http = httpx.Client(transport=transport, base_url="https://testserver")
        self.jar = dict(cookies)

    def get(self, path: str) -> httpx.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        response = self.http.get(path, headers={**JSON_ACCEPT, "cookie": cookie})
        for line in response.headers.get_list("set-cookie"):
            name, _, value = line.split(";")[0].partition("=")
            self.jar[name] = value
        return response


# -- 1. a regeneration hands out a fresh bound cookie without any proof --------------------------


@pytest.mark.parametrize("route", ["/privilege", "/others"])
@pytest.mark.parametrize("path", ["asgi", "wsgi", "flask"])
def test_a_regeneration_does_not_renew_a_stolen_bound_cookie(path: str, route: str) -> None:
    """The thief copied both cookies. Before the bound cookie expires, they ask for a
    regeneration the app offers to any logged-in session ("log out other devices", a
    privilege change): the response sets a bound cookie for the new handle with a whole
    new lifetime, though no proof of the key was given. Repeated every few minutes, the
    copy never dies (and "log out other devices" even logs the victim out). A bound cookie
    made for a new handle must not outlive the one the request presented."""
    with Site(path) as site:
        site.login_and_bind()
        thief = Thief(site.transport, site.stolen())
        site.clock.advance(LIFETIME - 5)
        assert thief.get(route).status_code == 200  # the copied bound cookie is still fresh
        site.clock.advance(10)  # LIFETIME + 5 s after the last proof of the key
        assert thief.get("/me").status_code == 401


# -- 2. a request loaded before the binding wipes it when it commits -----------------------------


@pytest.mark.parametrize(
    "store",
    [
        "memory://",
        "sqlite:///{tmp}/s.db",
        "file://{tmp}/files",
        "redis://127.0.0.1:6379/0",
        "postgresql://postgres@127.0.0.1:5432/test",
        "mysql://root@127.0.0.1:3306/test",
    ],
)
def test_a_write_loaded_before_the_binding_does_not_drop_it(store: str, tmp_path: Any) -> None:
    """The page a login redirects to is asked for before the registration's answer
    arrives (why the settle window exists). When that page writes to the session (pops a
    flash message, counts a visit), its commit writes the metadata it loaded -- unbound --
    over the binding the registration stored meanwhile. The session silently loses its
    binding: the browser's next refresh hears "continue": false, and a copied session
    cookie works alone from then on. (A WebSocket or any slow request opened before the
    binding does the same; a thief holding a pre-binding copy can do it on purpose.)"""
    url = store_url(store, tmp_path)
    clock = FakeClock()
    entered, release = asyncio.Event(), asyncio.Event()

    async def login_view(request: Request) -> Response:
        session = request.session
        assert isinstance(session, Session)
        login(session, "alice")
        return JSONResponse({})

    async def landing(request: Request) -> Response:
        entered.set()
        await release.wait()  # (the registration happens while this request runs)
        request.session.pop("flash", None)
        request.session["visits"] = 1
        return JSONResponse({})

    async def me(request: Request) -> Response:
        session = request.session
        assert isinstance(session, Session)
        return JSONResponse({"bound": device_bound(session)})

    routes = [Route("/login", login_view), Route("/landing", landing), Route("/me", me)]
    app = ASGIMiddleware(
        Starlette(routes=routes), url, secret_keys=[KEY], dbsc=True, clock=clock,
        dbsc_cookie_lifetime=LIFETIME,
    )  # fmt: skip

    async def attack() -> tuple[int, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            offer = (await c.get("/login")).headers["secure-session-registration"]
            path, challenge = registration_offer(offer)
            page = asyncio.create_task(c.get("/landing"))
            await entered.wait()
            proof = Device().proof(challenge, with_jwk=True)
            registered = await c.post(path, headers={"secure-session-response": proof})
            assert registered.status_code == 200
            release.set()
            assert (await page).status_code == 200
            clock.advance(SETTLE + 1)
            session_cookie = c.cookies["satchel"]
            c.cookies.clear()  # a thief's copy of the session cookie alone
            alone = await c.get(
                "/me", headers={**JSON_ACCEPT, "cookie": f"satchel={session_cookie}"}
            )
            return alone.status_code, alone.text

    async def attack_then_close() -> tuple[int, str]:
        try:
            return await attack()
        finally:
            if app.store is not None:
                await app.store.aclose()
                app.store.close()

    status, text = asyncio.run(attack_then_close())
    assert status == 401, text


# -- 3. cookie sessions: the cookie from before the binding is still good -----------------------


def test_a_cookie_session_cannot_be_bound() -> None:
    """With ``store="cookie://"`` the binding would live in the cookie, and every cookie
    issued before it stays valid until it expires: the login response's cookie carries no
    binding at all. Whoever holds it (a copy taken between login and binding, a proxy or
    debugging log of the login response, or the browser itself when the landing page's
    response overwrote the bound cookie) would need neither a bound cookie nor the key,
    for the session's whole lifetime. (Written as an attack on 0.2's first DBSC build,
    which bound cookie sessions; they are refused now, at start.)"""
    with pytest.raises(ConfigurationError, match=r"dbsc .* server-side store"):
        ASGIMiddleware(Starlette(), "cookie://", secret_keys=[KEY], dbsc=True)
    with pytest.raises(ConfigurationError, match=r"dbsc .* server-side store"):
        ASGIMiddleware(
            Starlette(), "cookie://", secret_keys=[KEY], dbsc=True, revocation_store="memory://"
        )


# -- 4. under a mount the browser is sent to paths that do not reach the middleware --------------


def _mounted_asgi() -> tuple[httpx.BaseTransport, str]:
    routes = [Route("/{p:path}", _asgi_view, methods=["GET", "POST"])]
    inner = ASGIMiddleware(Starlette(routes=routes), "memory://", secret_keys=[KEY], dbsc=True)
    outer = Starlette(routes=[Mount("/app", app=inner)])
    return _SyncASGI(httpx.ASGITransport(app=outer)), "/app"


def _mounted_wsgi() -> tuple[httpx.BaseTransport, str]:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    def root(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("404 Not Found", [("content-type", "text/plain")])
        return [b"not the app"]

    inner = WSGIMiddleware(_wsgi_view, "memory://", secret_keys=[KEY], dbsc=True)
    return httpx.WSGITransport(app=DispatcherMiddleware(root, {"/app": inner})), "/app"


@pytest.mark.parametrize("mounted", [_mounted_asgi, _mounted_wsgi], ids=["asgi", "wsgi"])
def test_binding_works_for_an_app_mounted_below_the_root(
    mounted: Callable[[], tuple[httpx.BaseTransport, str]],
) -> None:
    """An app mounted at ``/app`` (Starlette ``Mount``, uvicorn ``--root-path``, WSGI
    ``SCRIPT_NAME``): the offer's ``path`` and the instructions' ``refresh_url`` are
    ``/.satchel/dbsc/...`` at the host's root, outside the app, so the browser's
    registration and refreshes never reach the middleware (on ASGI the endpoints are not
    even recognised at ``/app/.satchel/dbsc/...``, where the request is CSRF-checked and
    handed to the app). DBSC silently never binds -- and with ``dbsc_required`` every
    user is locked out after the grace period."""
    transport, prefix = mounted()
    with httpx.Client(transport=transport, base_url="https://testserver") as http:
        offer = http.get(prefix + "/login").headers["secure-session-registration"]
        path, challenge = registration_offer(offer)
        device = Device()
        registered = http.post(
            path, headers={"secure-session-response": device.proof(challenge, with_jwk=True)}
        )
        assert registered.status_code == 200, (path, registered.status_code, registered.text[:80])
        refresh_url = registered.json()["refresh_url"]
        asked = http.post(refresh_url, headers={"sec-secure-session-id": thumbprint(device.jwk)})
        assert asked.status_code == 403
        assert "secure-session-challenge" in asked.headers
        challenge_of(asked.headers["secure-session-challenge"])


# -- 5. cookie tossing: four planted bound cookies hide the real one -------------------------------


def test_planted_bound_cookies_do_not_lock_the_owner_out() -> None:
    """Only the first four ``satchel_bound`` values of the Cookie header are looked at. An
    attacker who can set cookies for the site's domain (a sibling subdomain: cookie
    tossing) plants four junk ``satchel_bound`` cookies, which browsers send before the
    real one (a longer Path, or created earlier): the owner's every request is refused,
    and refreshing does not help, since the planted ones stay first. A junk value costs
    nothing to skip (format and length are checked before any MAC)."""
    with Site("asgi") as site:
        site.login_and_bind()
        cookies = site.stolen()
        planted = "; ".join(f"satchel_bound=1{i}" for i in range(4))
        real = cookies["satchel_bound"]
        header = f"satchel={cookies['satchel']}; {planted}; satchel_bound={real}"
        site.http.cookies.clear()  # (the owner's browser sends exactly this header)
        site.clock.advance(SETTLE + 1)  # (past the settle window after the binding)
        response = site.http.get("/me", headers={**JSON_ACCEPT, "cookie": header})
        assert response.status_code == 200, response.text
