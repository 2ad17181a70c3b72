"""ASGI requests without a session token: the middleware reads nothing of such a request
until the app (or a CSRF token) first uses its session or its context. Whatever the app
touches first, the response is the one a fully built context gives."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from satchel import Session, csrf_token, login, use_bearer_token
from satchel.asgi import SCOPE_KEY, SessionMiddleware
from satchel.request import RequestContext, context_of

from .conftest import KEY

BASE = "https://testserver"
Handler = Callable[[Request], Response]


def client(handler: Handler, *, mount: str = "", token_paths: tuple[str, ...] = ()) -> TestClient:
    async def endpoint(request: Request) -> Response:
        return handler(request)

    async def take_form(request: Request) -> Response:
        return PlainTextResponse("posted")

    routes = [
        Route("/{name}", endpoint, methods=["GET", "HEAD"]),
        Route("/form/post", take_form, methods=["POST"]),
    ]
    inner = SessionMiddleware(
        Starlette(routes=routes),
        store="memory://",
        secret_keys=[KEY],
        token_paths=list(token_paths),
    )
    app = Starlette(routes=[Mount(mount, app=inner)]) if mount else inner
    return TestClient(app, base_url=BASE)


def _session(request: Request) -> Session:
    session = request.session
    assert isinstance(session, Session)
    return session


def test_an_untouched_anonymous_response_carries_nothing() -> None:
    response = client(lambda request: PlainTextResponse("hi")).get("/page")
    assert response.status_code == 200
    for name in ("set-cookie", "vary", "cache-control"):
        assert name not in response.headers


def test_the_context_and_the_session_are_bound_before_first_use() -> None:
    def handler(request: Request) -> Response:
        ctx = request.scope[SCOPE_KEY]
        session = _session(request)
        assert isinstance(ctx, RequestContext)
        assert context_of(session) is ctx
        assert ctx.session is session
        return JSONResponse({"new": session.new, "method": ctx.method, "path": ctx.path})

    response = client(handler).get("/page")
    assert response.json() == {"new": True, "method": "GET", "path": "/page"}
    assert response.headers["vary"] == "Cookie"  # the page read its session
    assert "set-cookie" not in response.headers


def test_a_csrf_token_made_for_an_anonymous_visitor_sets_the_presession_cookie() -> None:
    http = client(lambda request: PlainTextResponse(csrf_token(request)))
    response = http.get("/form")
    assert response.headers["set-cookie"].startswith("satchel_csrf=")  # the pre-session cookie
    assert response.headers["vary"] == "Cookie"
    refused = http.post("/form/post", headers={"origin": BASE})
    assert refused.status_code == 403
    accepted = http.post("/form/post", headers={"origin": BASE, "x-csrf-token": response.text})
    assert accepted.status_code == 200


def test_asking_the_context_first_then_logging_in() -> None:
    def handler(request: Request) -> Response:
        ctx = request.scope[SCOPE_KEY]
        seen = {"client": ctx.origin.client_ip, "host": ctx.origin.host, "app_path": ctx.app_path}
        login(_session(request), "alice")
        return JSONResponse(seen)

    response = client(handler, mount="/app").get("/app/login", headers={"host": "example.org"})
    assert response.json() == {"client": "testclient", "host": "example.org", "app_path": "/login"}
    assert response.headers["set-cookie"].startswith("satchel=")
    assert response.headers["cache-control"] == "no-store"


def test_looking_at_the_session_state_first_then_writing() -> None:
    def handler(request: Request) -> Response:
        session = _session(request)
        assert session.stored_user_id is None
        session["n"] = 1
        return PlainTextResponse("ok")

    http = client(handler)
    response = http.get("/write")
    assert response.headers["set-cookie"].startswith("satchel=")
    assert http.cookies.get("satchel")


def test_a_bearer_login_on_a_token_path_without_any_token() -> None:
    def handler(request: Request) -> Response:
        use_bearer_token(_session(request))
        login(_session(request), "bob")
        return PlainTextResponse("ok")

    response = client(handler, token_paths=("/api",)).get("/api")
    assert response.headers["x-session-token"]
    assert "set-cookie" not in response.headers
    assert response.headers["vary"] == "Authorization"
