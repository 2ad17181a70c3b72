"""``require_recent_auth`` ("sudo mode") and impersonation (issue 17) on Litestar, Falcon
(WSGI and ASGI), Quart and aiohttp, and on Flask, which shares its guard with Quart
(``satchel.integrations.pallets``): each framework's own guard (a Litestar guard, a Falcon
hook, a Quart/Flask or aiohttp decorator) answers exactly what ``satchel.guard.Policy``
decides -- the same status, ``Location``, content type and body, never cached -- and each
framework's helpers log in, re-authenticate (a new session ID), impersonate and stop.
The ASGI, WSGI, FastAPI and Flask paths: tests/test_recent_auth.py and
tests/test_impersonation.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from satchel.guard import IMPERSONATING, LOGIN_REQUIRED, REAUTHENTICATION_REQUIRED, Policy
from satchel.guard import RecentAuth as Needs
from satchel.testing import FakeClock

from .conftest import KEY
from .services import LOOPBACK, free_port

pytestmark = pytest.mark.anyio

BASE = "https://testserver.local"
JSON = {"accept": "application/json"}
START = 1_800_000_000.0
SENSITIVE = Needs(max_age=300)
VERY = Needs(max_age=300, level="aal2")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    text: str


class Client:
    """One shape over each framework's client: ``await get(path, **headers)``, and the
    session cookie the client holds."""

    def __init__(
        self, get: Callable[[str, dict[str, str]], Awaitable[Answer]], cookie: Callable[[], str]
    ) -> None:
        self._get, self.cookie = get, cookie

    async def get(self, path: str, **headers: str) -> Answer:
        return await self._get(path, headers)

    async def text(self, path: str) -> str:
        answer = await self.get(path)
        assert answer.status == 200, (path, answer)
        return answer.text


def _httpx(response: httpx.Response) -> Answer:
    return Answer(response.status_code, dict(response.headers), response.text)


def _async_httpx(client: httpx.AsyncClient) -> Client:
    async def get(path: str, headers: dict[str, str]) -> Answer:
        return _httpx(await client.get(path, headers=headers, follow_redirects=False))

    return Client(get, lambda: client.cookies.get("satchel") or "")


def _sync_httpx(client: httpx.Client) -> Client:
    async def get(path: str, headers: dict[str, str]) -> Answer:
        return _httpx(client.get(path, headers=headers, follow_redirects=False))

    return Client(get, lambda: client.cookies.get("satchel") or "")


# -- the apps: the same routes on each framework ----------------------------------------------
#
# /login?user=&level=  /reauth  /impersonate?user=  /stop  /me ("user impersonator")
# /sensitive, /api/sensitive: max_age=300       /very, /api/very: max_age=300, level aal2
# /default, /api/default: no max_age (the reauth_max_age option)
# /support: max_age=300, allow_impersonation

Builder = Callable[[FakeClock, dict[str, Any]], AbstractAsyncContextManager[Client]]


@asynccontextmanager
async def _litestar(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    from litestar import Litestar, MediaType, Request, get
    from litestar.testing import AsyncTestClient

    from satchel.integrations import litestar as sl

    text = MediaType.TEXT

    @get("/login", media_type=text)
    async def login(request: Request[Any, Any, Any]) -> str:
        query = request.query_params
        user, level = query.get("user", "alice"), query.get("level")
        sl.login_user(request, user, methods=["pwd"], level=level)
        return "ok"

    @get("/reauth", media_type=text)
    async def reauth(request: Request[Any, Any, Any]) -> str:
        sl.reauthenticate_user(request, methods=["pwd", "otp"], level="aal2")
        return "ok"

    @get("/impersonate", media_type=text)
    async def impersonate(request: Request[Any, Any, Any]) -> str:
        sl.impersonate_user(request, request.query_params["user"])
        return "ok"

    @get("/stop", media_type=text)
    async def stop(request: Request[Any, Any, Any]) -> str:
        return sl.stop_impersonating(request)

    @get("/me", media_type=text)
    async def me(request: Request[Any, Any, Any]) -> str:
        session = sl.session_of(request)
        return f"{session.user_id} {session.impersonator}"

    def done(paths: list[str], **needs: Any) -> Any:
        @get(paths, guards=[sl.require_recent_auth(**needs)], media_type=text)
        async def guarded() -> str:
            return "done"

        return guarded

    handlers = [
        login,
        reauth,
        impersonate,
        stop,
        me,
        done(["/sensitive", "/api/sensitive"], max_age=300),
        done(["/very", "/api/very"], max_age=300, level="aal2"),
        done(["/default", "/api/default"]),
        done(["/support"], max_age=300, allow_impersonation=True),
    ]
    config = sl.SatchelSessionConfig("memory://", secret_keys=[KEY], clock=clock, **options)
    app = Litestar(route_handlers=handlers, plugins=[sl.SatchelPlugin(config)])
    async with AsyncTestClient(app, base_url=BASE) as client:
        yield _async_httpx(client)


def _falcon_app(clock: FakeClock, options: dict[str, Any], asgi: bool) -> Any:
    import falcon
    import falcon.asgi

    from satchel.integrations import falcon as sf

    def act(req: falcon.Request) -> str:
        path = req.path
        if path == "/login":
            level = req.get_param("level")
            sf.login_user(req, req.get_param("user") or "alice", methods=["pwd"], level=level)
        elif path == "/reauth":
            sf.reauthenticate_user(req, methods=["pwd", "otp"], level="aal2")
        elif path == "/impersonate":
            sf.impersonate_user(req, req.get_param("user", required=True))
        elif path == "/stop":
            return sf.stop_impersonating(req)
        elif path == "/me":
            session = sf.session_of(req)
            return f"{session.user_id} {session.impersonator}"
        return "ok"

    def answer(resp: falcon.Response, text: str) -> None:
        resp.content_type, resp.text = falcon.MEDIA_TEXT, text

    class Act:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            answer(resp, act(req))

    class AsyncAct:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            answer(resp, act(req))

    def done(**needs: Any) -> object:
        if asgi:

            class AsyncDone:
                @falcon.before(sf.arequire_recent_auth(**needs))
                async def on_get(
                    self, req: falcon.asgi.Request, resp: falcon.asgi.Response
                ) -> None:
                    answer(resp, "done")

            return AsyncDone()

        class Done:
            @falcon.before(sf.require_recent_auth(**needs))
            def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
                answer(resp, "done")

        return Done()

    sessions = sf.SatchelMiddleware("memory://", secret_keys=[KEY], clock=clock, **options)
    app: Any = (falcon.asgi.App if asgi else falcon.App)(middleware=[sessions])
    acts = AsyncAct() if asgi else Act()
    for path in ("/login", "/reauth", "/impersonate", "/stop", "/me"):
        app.add_route(path, acts)
    for paths, needs in (
        (("/sensitive", "/api/sensitive"), {"max_age": 300}),
        (("/very", "/api/very"), {"max_age": 300, "level": "aal2"}),
        (("/default", "/api/default"), {}),
        (("/support",), {"max_age": 300, "allow_impersonation": True}),
    ):
        resource = done(**needs)
        for path in paths:
            app.add_route(path, resource)
    return app


@asynccontextmanager
async def _falcon_wsgi(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    app = _falcon_app(clock, options, asgi=False)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        yield _sync_httpx(client)


@asynccontextmanager
async def _falcon_asgi(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    app = _falcon_app(clock, options, asgi=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield _async_httpx(client)


def _pallets_routes(app: Any, module: Any, request: Any, session: Any, is_async: bool) -> None:
    """The routes on Flask or Quart: the two share their guard (pallets.py)."""

    def act() -> str:
        path = request.path
        if path == "/login":
            level = request.args.get("level")
            module.login_user(request.args.get("user", "alice"), methods=["pwd"], level=level)
        elif path == "/reauth":
            module.reauthenticate_user(methods=["pwd", "otp"], level="aal2")
        elif path == "/impersonate":
            module.impersonate_user(request.args["user"])
        elif path == "/stop":
            return str(module.stop_impersonating())
        elif path == "/me":
            return f"{session.user_id} {session.impersonator}"
        return "ok"

    async def async_act() -> str:
        return act()

    view = async_act if is_async else act
    for path in ("/login", "/reauth", "/impersonate", "/stop", "/me"):
        app.add_url_rule(path, path, view)
    for name, paths, needs in (
        ("sensitive", ("/sensitive", "/api/sensitive"), {"max_age": 300}),
        ("very", ("/very", "/api/very"), {"max_age": 300, "level": "aal2"}),
        ("default", ("/default", "/api/default"), {}),
        ("support", ("/support",), {"max_age": 300, "allow_impersonation": True}),
    ):

        def done() -> str:
            return "done"

        async def async_done() -> str:
            return "done"

        guarded = module.require_recent_auth(**needs)(async_done if is_async else done)
        for path in paths:
            app.add_url_rule(path, f"{name}{path}", guarded)


@asynccontextmanager
async def _quart(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    from quart import Quart, request, session

    from satchel.integrations import quart as sq

    app = Quart(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    _pallets_routes(app, sq, request, session, is_async=True)
    sq.Satchel(app, clock=clock, **options)
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield _async_httpx(client)


@asynccontextmanager
async def _flask(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    from flask import Flask, request, session

    from satchel.integrations import flask as sfl

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    _pallets_routes(app, sfl, request, session, is_async=False)
    sfl.Satchel(app, clock=clock, **options)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        yield _sync_httpx(client)


@asynccontextmanager
async def _aiohttp(clock: FakeClock, options: dict[str, Any]) -> AsyncIterator[Client]:
    from aiohttp import CookieJar, web
    from aiohttp.test_utils import TestClient, TestServer

    from satchel.integrations import aiohttp as sa

    async def act(request: web.Request) -> web.Response:
        path, query = request.path, request.query
        text = "ok"
        if path == "/login":
            level = query.get("level")
            await sa.login(request, query.get("user", "alice"), methods=["pwd"], level=level)
        elif path == "/reauth":
            await sa.reauthenticate(request, methods=["pwd", "otp"], level="aal2")
        elif path == "/impersonate":
            await sa.impersonate(request, query["user"])
        elif path == "/stop":
            text = await sa.stop_impersonating(request)
        elif path == "/me":
            session = await sa.get_session(request)
            text = f"{session.user_id} {session.impersonator}"
        return web.Response(text=text)

    def done(**needs: Any) -> Any:
        @sa.require_recent_auth(**needs)
        async def guarded(request: web.Request) -> web.Response:
            return web.Response(text="done")

        return guarded

    app = web.Application()
    sa.setup(app, "memory://", secret_keys=[KEY], clock=clock, **options)
    routes = [web.get(p, act) for p in ("/login", "/reauth", "/impersonate", "/stop", "/me")]
    for paths, needs in (
        (("/sensitive", "/api/sensitive"), {"max_age": 300}),
        (("/very", "/api/very"), {"max_age": 300, "level": "aal2"}),
        (("/default", "/api/default"), {}),
        (("/support",), {"max_age": 300, "allow_impersonation": True}),
    ):
        handler = done(**needs)
        routes += [web.get(path, handler) for path in paths]
    app.add_routes(routes)
    port = free_port()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[f"http://{LOOPBACK}:{port}"])
    client = TestClient(TestServer(app, host=LOOPBACK, port=port), cookie_jar=jar)
    await client.start_server()

    async def get(path: str, headers: dict[str, str]) -> Answer:
        response = await client.get(path, headers=headers, allow_redirects=False)
        body = await response.text()
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, body)

    def cookie() -> str:
        return next((c.value for c in client.session.cookie_jar if c.key == "satchel"), "")

    try:
        yield Client(get, cookie)
    finally:
        await client.close()


FRAMEWORKS: dict[str, Builder] = {
    "litestar": _litestar,
    "falcon-wsgi": _falcon_wsgi,
    "falcon-asgi": _falcon_asgi,
    "quart": _quart,
    "aiohttp": _aiohttp,
    "flask": _flask,
}


# -- what every framework must answer -----------------------------------------------------------


def _policy_says(
    answer: Answer,
    reason: str,
    target: str,
    needs: Needs | None = None,
    accept: str = "",
) -> None:
    """``answer`` is exactly the refusal of ``satchel.guard.Policy`` for ``target``."""
    path, _, query = target.partition("?")
    policy = Policy("/login", (), ("/api/",), "/reauth", needs)
    status, headers, body = policy.refusal(path, query, accept, reason)
    assert answer.status == status, answer
    assert answer.text == body.decode(), answer
    for name, value in headers:
        assert answer.headers.get(name) == value, (name, answer)
    assert answer.headers.get("cache-control") == "no-store", answer


def _next(answer: Answer) -> tuple[str, str]:
    parts = urlsplit(answer.headers["location"])
    return parts.path, parse_qs(parts.query)["next"][0]


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
async def test_a_sensitive_route_needs_a_recent_authentication(framework: str) -> None:
    clock = FakeClock(START)
    async with FRAMEWORKS[framework](clock, {}) as client:
        anonymous = await client.get("/sensitive?x=1")
        _policy_says(anonymous, LOGIN_REQUIRED, "/sensitive?x=1", SENSITIVE)
        assert _next(anonymous) == ("/login", "/sensitive?x=1")

        await client.text("/login")
        assert await client.text("/sensitive") == "done"  # a fresh login passes
        clock.advance(200)
        assert await client.text("/default") == "done"  # the default: 300 s
        clock.advance(101)

        browser = await client.get("/sensitive?x=1")  # too old: to the reauth page, and back
        _policy_says(browser, REAUTHENTICATION_REQUIRED, "/sensitive?x=1", SENSITIVE)
        assert _next(browser) == ("/reauth", "/sensitive?x=1")
        api = await client.get("/api/sensitive")  # under /api/: 401 JSON
        _policy_says(api, REAUTHENTICATION_REQUIRED, "/api/sensitive", SENSITIVE)
        assert json.loads(api.text) == {
            "error": "reauthentication_required",
            "level": None,
            "max_age": 300,
        }
        asks = await client.get("/sensitive", **JSON)  # Accept: JSON: 401 JSON too
        _policy_says(asks, REAUTHENTICATION_REQUIRED, "/sensitive", SENSITIVE, JSON["accept"])
        stronger = await client.get("/api/very", **JSON)  # the level needed, to ask for
        _policy_says(stronger, REAUTHENTICATION_REQUIRED, "/api/very", VERY, JSON["accept"])
        assert json.loads(stronger.text)["level"] == "aal2"
        default = await client.get("/api/default")
        _policy_says(default, REAUTHENTICATION_REQUIRED, "/api/default", Needs(300.0))

        before = client.cookie()
        await client.text("/reauth")
        assert client.cookie() not in ("", before)  # re-authenticated under a new ID
        assert await client.text("/sensitive") == "done"
        assert await client.text("/very") == "done"  # aal2 now
        assert await client.text("/default") == "done"
        await client.text("/login?level=aal1")  # a later, weaker authentication claims less
        weaker = await client.get("/very")
        _policy_says(weaker, REAUTHENTICATION_REQUIRED, "/very", VERY)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
async def test_the_reauth_max_age_option_is_the_default(framework: str) -> None:
    clock = FakeClock(START)
    async with FRAMEWORKS[framework](clock, {"reauth_max_age": 60}) as client:
        await client.text("/login")
        assert await client.text("/default") == "done"
        clock.advance(61)
        browser = await client.get("/default")
        _policy_says(browser, REAUTHENTICATION_REQUIRED, "/default", Needs(60.0))
        api = await client.get("/api/default")
        _policy_says(api, REAUTHENTICATION_REQUIRED, "/api/default", Needs(60.0))
        assert json.loads(api.text)["max_age"] == 60
        assert await client.text("/sensitive") == "done"  # a guard's own max_age wins


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
async def test_no_sensitive_action_while_impersonating(framework: str) -> None:
    clock = FakeClock(START)
    async with FRAMEWORKS[framework](clock, {}) as client:
        await client.text("/login?user=admin&level=aal2")
        assert await client.text("/sensitive") == "done"
        admin_cookie = client.cookie()

        clock.advance(60)
        await client.text("/impersonate?user=alice")
        assert await client.text("/me") == "alice admin"
        acting_cookie = client.cookie()
        assert acting_cookie not in ("", admin_cookie)  # a new session ID
        browser = await client.get("/sensitive")
        _policy_says(browser, IMPERSONATING, "/sensitive", SENSITIVE)
        assert "stop impersonating" in browser.text
        api = await client.get("/api/sensitive", **JSON)
        _policy_says(api, IMPERSONATING, "/api/sensitive", SENSITIVE, JSON["accept"])
        assert json.loads(api.text) == {"error": "impersonating"}
        asks = await client.get("/sensitive", **JSON)
        assert (asks.status, json.loads(asks.text)) == (403, {"error": "impersonating"})
        assert await client.text("/support") == "done"  # a guard that allows it

        clock.advance(60)
        assert await client.text("/stop") == "admin"
        assert await client.text("/me") == "admin None"
        assert client.cookie() not in ("", admin_cookie, acting_cookie)
        assert await client.text("/sensitive") == "done"  # the admin's own, 120 s old


async def test_litestar_without_the_plugin() -> None:
    """With the middleware alone, the app registers the guard's answer itself; without
    it, Litestar's own handler still refuses (the same status, Location, no-store)."""
    from litestar import Litestar, MediaType, get
    from litestar.testing import AsyncTestClient

    from satchel.integrations import litestar as sl

    @get("/sensitive", guards=[sl.require_recent_auth()], media_type=MediaType.TEXT)
    async def sensitive() -> str:
        return "done"

    config = sl.SatchelSessionConfig("memory://", secret_keys=[KEY])
    handlers: dict[int | type[Exception], Any] = {sl.GuardRefusal: sl.guard_refusal_handler}
    for registered in (handlers, {}):
        app = Litestar([sensitive], middleware=[config.middleware], exception_handlers=registered)
        async with AsyncTestClient(app, base_url=BASE) as http:
            answer = _httpx(await http.get("/sensitive?x=1", follow_redirects=False))
        if registered:
            _policy_says(answer, LOGIN_REQUIRED, "/sensitive?x=1", Needs())
        else:
            assert answer.status == 303
            assert answer.headers["cache-control"] == "no-store"
            assert _next(answer) == ("/login", "/sensitive?x=1")
