"""Issue 5: login/logout, CSRF, trusted proxies, the auth guard, a user's sessions, events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from satchel import MemoryStore, Session, ids
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.auth import (
    alogout_everywhere,
    alogout_other_devices,
    arevoke,
    asessions_of,
    login,
)
from satchel.events import SessionEvent
from satchel.guard import RequireLogin, RequireLoginWSGI, login_required, safe_next
from satchel.origin import parse_trusted, resolve
from satchel.request import csrf_token
from satchel.testing import FakeClock
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY
from .helpers import CountingStore, do_login, session_of

pytestmark = pytest.mark.anyio


async def token(request: Request) -> Response:
    return JSONResponse({"csrf_token": csrf_token(request)})


async def write(request: Request) -> Response:
    async with request.form() as form:
        value = str(form.get("value", request.query_params.get("value", "")))
    request.session["value"] = value
    return JSONResponse({"ok": True, "user": session_of(request).user_id})


async def me(request: Request) -> Response:
    return JSONResponse({"user": session_of(request).user_id, "data": dict(request.session)})


async def sessions(request: Request) -> Response:
    infos = await asessions_of(session_of(request))
    return JSONResponse(
        [{"handle": i.handle, "current": i.current, "ua": i.user_agent} for i in infos]
    )


async def revoke(request: Request) -> Response:
    form = await request.form()
    return JSONResponse({"revoked": await arevoke(session_of(request), str(form["session"]))})


async def others(request: Request) -> Response:
    return JSONResponse({"revoked": await alogout_other_devices(session_of(request))})


async def everywhere(request: Request) -> Response:
    return JSONResponse({"revoked": await alogout_everywhere(session_of(request))})


async def clear(request: Request) -> Response:
    request.session.clear()
    return PlainTextResponse("cleared")


async def puzzle(request: Request) -> Response:
    """App code writing keys that look like the library's own."""
    for name in ("user_id", "_user", "csrf", "handle", "meta"):
        request.session[name] = "mallory"
    return JSONResponse({"user": session_of(request).user_id})


ROUTES = [
    Route("/login", do_login, methods=["GET", "POST"]),
    Route("/token", token),
    Route("/write", write, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/webhook/in", write, methods=["POST"]),
    Route("/me", me),
    Route("/sessions", sessions),
    Route("/sessions/revoke", revoke, methods=["POST"]),
    Route("/sessions/others", others, methods=["POST"]),
    Route("/everywhere", everywhere, methods=["POST"]),
    Route("/clear", clear, methods=["POST"]),
    Route("/puzzle", puzzle, methods=["POST"]),
]


def make_app(store: Any = None, **options: Any) -> SessionMiddleware:
    options.setdefault("secret_keys", [KEY])
    return SessionMiddleware(Starlette(routes=ROUTES), store=store or MemoryStore(), **options)


def client_for(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver", **kwargs
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as c:
        yield c


async def get_token(c: httpx.AsyncClient) -> str:
    return str((await c.get("/token")).json()["csrf_token"])


# -- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_unsafe_methods_without_token_get_403(client: httpx.AsyncClient, method: str) -> None:
    """Checklist 29."""
    response = await client.request(method, "/write?value=x")
    assert response.status_code == 403
    assert "CSRF token missing" in response.text
    assert (await client.get("/write?value=x")).status_code == 200  # safe methods pass
    assert (await client.head("/me")).status_code == 200


async def test_token_from_form_field_or_header(client: httpx.AsyncClient) -> None:
    tok = await get_token(client)
    assert (await client.post("/write", data={"value": "a", "csrf_token": tok})).status_code == 200
    assert (await client.post("/write?value=b", headers={"X-CSRF-Token": tok})).status_code == 200
    bad = await client.post("/write", data={"value": "c", "csrf_token": tok[:-2] + "AA"})
    assert bad.status_code == 403
    assert "invalid" in bad.text
    multipart = await client.post(
        "/write", data={"value": "m", "csrf_token": tok}, files={"f": ("a.txt", b"hi")}
    )
    assert multipart.status_code == 200
    assert (await client.get("/me")).json()["data"]["value"] == "m"  # the body reached the app


async def test_tokens_are_masked_per_response_and_bound_to_the_session(
    client: httpx.AsyncClient,
) -> None:
    """Checklist 30: a fresh mask each time; another session's token is refused."""
    await client.get("/login")
    first, second = await get_token(client), await get_token(client)
    assert first != second
    assert (await client.post("/write?value=1", headers={"X-CSRF-Token": first})).status_code == 200
    assert (
        await client.post("/write?value=2", headers={"X-CSRF-Token": second})
    ).status_code == 200
    async with client_for(client._transport.app) as other:  # type: ignore[attr-defined]
        await other.get("/login?user=bob")
        foreign = await get_token(other)
    refused = await client.post("/write?value=3", headers={"X-CSRF-Token": foreign})
    assert refused.status_code == 403


async def test_token_rotates_on_login_and_pre_login_token_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Checklist 30, 32: the login form is protected by a pre-session token; login replaces
    the pre-session, and the old token no longer works."""
    response = await client.get("/token")
    assert "satchel_csrf=" in response.headers["set-cookie"]
    pre = response.json()["csrf_token"]
    login_response = await client.post("/login", headers={"X-CSRF-Token": pre})
    assert login_response.status_code == 200
    cookies = login_response.headers.get_list("set-cookie")
    assert any(c.startswith("satchel_csrf=;") and "Max-Age=0" in c for c in cookies)
    refused = await client.post("/write?value=x", headers={"X-CSRF-Token": pre})
    assert refused.status_code == 403
    fresh = await get_token(client)
    assert (await client.post("/write?value=x", headers={"X-CSRF-Token": fresh})).status_code == 200


async def test_login_form_protection_writes_no_store_record() -> None:
    store = CountingStore(MemoryStore())
    async with client_for(make_app(store)) as c:
        for _ in range(5):
            tok = await get_token(c)
        assert (await c.post("/write?value=x", headers={"X-CSRF-Token": tok})).status_code == 200
        assert store.calls["create"] == 1  # only the write above made a record
        store.reset()
        c.cookies.clear()
        for _ in range(5):
            await get_token(c)
        assert store.total == 0


async def test_cross_site_and_foreign_origin_are_refused(client: httpx.AsyncClient) -> None:
    """Checklist 31."""
    tok = await get_token(client)
    headers = {"X-CSRF-Token": tok}
    cross = await client.post("/write?v=1", headers={**headers, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert "cross-site" in cross.text
    same_site = await client.post("/write?v=1", headers={**headers, "Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403
    foreign = await client.post("/write?v=1", headers={**headers, "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "foreign Origin" in foreign.text
    null = await client.post("/write?v=1", headers={**headers, "Origin": "null"})
    assert null.status_code == 403
    ok = await client.post(
        "/write?v=1",
        headers={**headers, "Origin": "https://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 200


async def test_same_site_policy_trusted_origins_and_exemptions() -> None:
    app = make_app(
        csrf_allow_same_site=True,
        csrf_trusted_origins=["https://admin.example"],
        csrf_exempt=["/webhook/*"],
    )
    async with client_for(app) as c:
        tok = await get_token(c)
        headers = {"X-CSRF-Token": tok}
        assert (
            await c.post("/write?v=1", headers={**headers, "Sec-Fetch-Site": "same-site"})
        ).status_code == 200
        assert (
            await c.post("/write?v=1", headers={**headers, "Origin": "https://admin.example"})
        ).status_code == 200
        assert (await c.post("/webhook/in", data={"value": "w"})).status_code == 200
    async with client_for(make_app(csrf=False)) as c:
        assert (await c.post("/write?value=x")).status_code == 200


def test_wsgi_csrf() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["satchel.session"]
        if environ["PATH_INFO"] == "/token":
            body = csrf_token(environ).encode()
        else:
            session["posted"] = environ["wsgi.input"].read().decode()
            body = b"ok"
        start_response("200 OK", [("content-type", "text/plain")])
        return [body]

    wrapped = WSGISessionMiddleware(app, store=MemoryStore(), secret_keys=[KEY])
    with httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="https://t") as c:
        assert c.post("/post", data={"a": "1"}).status_code == 403
        tok = c.get("/token").text
        response = c.post("/post", data={"a": "1", "csrf_token": tok})
        assert response.status_code == 200
        assert c.post("/post", headers={"X-CSRF-Token": tok}, content=b"raw").status_code == 200


# -- trusted proxies ---------------------------------------------------------------------------


def test_forwarded_headers_count_only_from_trusted_proxies() -> None:
    trusted = parse_trusted(["10.0.0.0/8", "127.0.0.1"])
    spoofed = resolve("203.0.113.9", "http", {"x-forwarded-for": "1.2.3.4", "host": "a"}, trusted)
    assert spoofed.client_ip == "203.0.113.9"
    via_proxy = resolve(
        "10.0.0.5",
        "http",
        {
            "x-forwarded-for": "1.2.3.4, 198.51.100.7, 10.0.0.9",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "app.example",
            "host": "internal",
        },
        trusted,
    )
    assert via_proxy.client_ip == "198.51.100.7"  # the client may have forged 1.2.3.4
    assert via_proxy.url == "https://app.example"
    forwarded = resolve(
        "127.0.0.1",
        "http",
        {"forwarded": 'for="[2001:db8::1]:443";proto=https;host=app.example, for=10.0.0.3'},
        trusted,
    )
    assert (forwarded.client_ip, forwarded.url) == ("2001:db8::1", "https://app.example")
    with pytest.raises(ValueError, match="trusted_proxies"):
        parse_trusted(["not-an-ip"])


@pytest.mark.parametrize(
    "header",
    [
        {"x-forwarded-for": "\x1b[8m6.6.6.6"},
        {"x-forwarded-for": "1.2.3.4, <script>"},
        {"forwarded": "for=unknown"},
        {"forwarded": 'for="_hidden";proto=https'},
        {"forwarded": 'for="[evil]:443"'},
    ],
)
def test_a_forwarded_hop_that_is_not_an_ip_never_becomes_the_client_ip(
    header: dict[str, str],
) -> None:
    """A trusted proxy passes on what the client wrote; only real addresses count."""
    trusted = parse_trusted(["10.0.0.0/8"])
    origin = resolve("10.0.0.9", "http", {**header, "host": "a"}, trusted)
    assert origin.client_ip == "10.0.0.9"


async def test_client_ip_and_origin_behind_a_trusted_proxy() -> None:
    store = MemoryStore()
    app = make_app(store, trusted_proxies=["127.0.0.1"])
    async with client_for(app) as c:
        headers = {
            "X-Forwarded-For": "198.51.100.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example",
        }
        tok = str((await c.get("/token", headers=headers)).json()["csrf_token"])
        response = await c.post(
            "/login", headers={**headers, "X-CSRF-Token": tok, "Origin": "https://app.example"}
        )
        assert response.status_code == 200
        sid = c.cookies["satchel"].partition(".")[0]
    record = store.load(ids.store_key(sid), time.time())
    assert record is not None
    assert record.meta.client_ip == "198.51.100.7"


# -- the guard ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/profile?tab=1", "/profile?tab=1"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_safe_next_keeps_redirects_local(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


async def test_guard_middleware_redirects_html_and_401s_api() -> None:
    async def private(request: Request) -> Response:
        return PlainTextResponse("secret")

    inner = RequireLogin(
        Starlette(routes=[*ROUTES, Route("/private", private), Route("/api/data", private)]),
        public=["/login", "/token"],
    )
    app = SessionMiddleware(inner, store=MemoryStore(), secret_keys=[KEY])
    async with client_for(app) as c:
        html = await c.get("/private?x=1", headers={"Accept": "text/html"})
        assert html.status_code == 303
        assert html.headers["location"] == "/login?next=/private%3Fx%3D1"
        api = await c.get("/api/data")
        assert (api.status_code, api.json()) == (401, {"error": "authentication required"})
        json_client = await c.get("/private", headers={"Accept": "application/json"})
        assert json_client.status_code == 401
        tok = await get_token(c)
        await c.post("/login", headers={"X-CSRF-Token": tok})
        assert (await c.get("/private")).text == "secret"


async def test_guard_decorator_on_endpoint_and_asgi_app() -> None:
    @login_required
    async def view(request: Request) -> Response:
        return PlainTextResponse("view")

    @login_required
    async def raw(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("raw")(scope, receive, send)

    app = make_app()
    app.app.router.routes += [Route("/view", view), Mount("/raw", raw)]  # type: ignore[attr-defined]
    async with client_for(app) as c:
        assert (await c.get("/view")).status_code == 303
        assert (await c.get("/raw/")).status_code == 303
        await c.post("/login", headers={"X-CSRF-Token": await get_token(c)})
        assert (await c.get("/view")).text == "view"
        assert (await c.get("/raw/")).text == "raw"


async def test_guard_decorator_redirects_a_query_that_is_not_utf8() -> None:
    """A raw query byte that is not UTF-8 (some ASGI servers pass them through) gets the
    login redirect, not a 500; the byte travels on in ``next``, percent-encoded."""

    @login_required
    async def view(request: Request) -> Response:
        return PlainTextResponse("view")

    app = make_app()
    app.app.router.routes += [Route("/view", view)]  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 5000),
        "path": "/view",
        "raw_path": b"/view",
        "root_path": "",
        "query_string": b"a=\xff",  # as such servers hand it over: not UTF-8
        "headers": [(b"host", b"testserver")],
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode("latin-1") for k, v in start["headers"]}
    assert start["status"] == 303
    assert headers["location"].startswith("/login?next=/view%3Fa%3D")


def test_wsgi_guard() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ["satchel.session"]
        if environ["PATH_INFO"] == "/login":
            login(session, "alice")
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"page"]

    wrapped = WSGISessionMiddleware(
        RequireLoginWSGI(app), store=MemoryStore(), secret_keys=[KEY], csrf=False
    )
    with httpx.Client(transport=httpx.WSGITransport(app=wrapped), base_url="https://t") as c:
        response = c.get("/private")
        assert (response.status_code, response.headers["location"]) == (303, "/login?next=/private")
        assert c.get("/api/x").status_code == 401
        c.get("/login")
        assert c.get("/private").text == "page"


# -- login, clear, namespacing -----------------------------------------------------------------


async def test_clear_unbinds_the_user_and_retires_the_id(client: httpx.AsyncClient) -> None:
    """session.clear() is how many apps log out: it must behave like a logout."""
    await client.post("/login", headers={"X-CSRF-Token": await get_token(client)})
    logged_in = client.cookies["satchel"]
    tok = await get_token(client)
    await client.post("/clear", headers={"X-CSRF-Token": tok})
    client.cookies.clear()
    replay = await client.get("/me", headers={"cookie": f"satchel={logged_in}"})
    assert replay.json()["user"] is None


async def test_app_keys_cannot_overwrite_library_keys(client: httpx.AsyncClient) -> None:
    """Checklist 37: user, CSRF and metadata live outside app data."""
    await client.post("/login", headers={"X-CSRF-Token": await get_token(client)})
    tok = await get_token(client)
    response = await client.post("/puzzle", headers={"X-CSRF-Token": tok})
    assert response.json()["user"] == "alice"
    me_response = (await client.get("/me")).json()
    assert me_response["user"] == "alice"
    assert me_response["data"]["user_id"] == "mallory"  # just app data
    assert (await client.post("/write?value=1", headers={"X-CSRF-Token": tok})).status_code == 200


# -- a user's sessions -------------------------------------------------------------------------


async def _device(app: Any, agent: str, user: str = "alice") -> httpx.AsyncClient:
    c = client_for(app, headers={"User-Agent": agent})
    await c.post(f"/login?user={user}", headers={"X-CSRF-Token": await get_token(c)})
    return c


async def test_list_revoke_and_log_out_other_devices() -> None:
    """Checklist 33, 34: list with metadata and public handles only; revoke one; end all
    others (after a password change); revoking another user's handle does nothing."""
    app = make_app()
    phone, laptop, tablet = [await _device(app, ua) for ua in ("Phone/1", "Laptop/1", "Tablet/1")]
    bob = await _device(app, "Bob/1", "bob")
    try:
        listed = (await phone.get("/sessions")).json()
        assert sorted(s["ua"] for s in listed) == ["Laptop/1", "Phone/1", "Tablet/1"]
        assert [s["ua"] for s in listed if s["current"]] == ["Phone/1"]
        cookie_ids = [c.cookies["satchel"].partition(".")[0] for c in (phone, laptop, tablet)]
        assert not any(i in str(listed) for i in cookie_ids)
        laptop_handle = next(s["handle"] for s in listed if s["ua"] == "Laptop/1")
        bob_handle = (await bob.get("/sessions")).json()[0]["handle"]
        tok = await get_token(phone)
        refused = await phone.post(
            "/sessions/revoke", data={"session": bob_handle, "csrf_token": tok}
        )
        assert refused.json() == {"revoked": False}
        assert (await bob.get("/me")).json()["user"] == "bob"
        done = await phone.post(
            "/sessions/revoke", data={"session": laptop_handle, "csrf_token": tok}
        )
        assert done.json() == {"revoked": True}
        assert (await laptop.get("/me")).json()["user"] is None
        others_response = await phone.post("/sessions/others", headers={"X-CSRF-Token": tok})
        assert others_response.json() == {"revoked": 1}
        assert (await tablet.get("/me")).json()["user"] is None
        assert (await phone.get("/me")).json()["user"] == "alice"
        # the current session moved to a new ID and handle, so its CSRF token did too
        tok = await get_token(phone)
        everywhere_response = await phone.post("/everywhere", headers={"X-CSRF-Token": tok})
        assert everywhere_response.json() == {"revoked": 1}
        assert (await phone.get("/me")).json()["user"] is None
    finally:
        for c in (phone, laptop, tablet, bob):
            await c.aclose()


async def test_session_cap_evicts_oldest_device(clock: FakeClock) -> None:
    """Checklist 35."""
    app = make_app(max_sessions_per_user=2, clock=clock)
    devices = []
    for agent in ("one", "two", "three"):
        clock.advance(1)
        devices.append(await _device(app, agent))
    try:
        assert (await devices[0].get("/me")).json()["user"] is None
        assert (await devices[2].get("/me")).json()["user"] == "alice"
    finally:
        for c in devices:
            await c.aclose()


async def test_cookie_sessions_logout_everywhere_and_other_devices() -> None:
    app = make_app("cookie://", revocation_store=MemoryStore())
    phone, laptop = await _device(app, "Phone"), await _device(app, "Laptop")
    try:
        listed = (await phone.get("/sessions")).json()
        assert [s["ua"] for s in listed] == ["Phone"]  # the browser holds the others
        tok = await get_token(phone)
        await phone.post("/sessions/others", headers={"X-CSRF-Token": tok})
        assert (await laptop.get("/me")).json()["user"] is None
        assert (await phone.get("/me")).json()["user"] == "alice"
        await phone.post("/everywhere", headers={"X-CSRF-Token": await get_token(phone)})
        assert (await phone.get("/me")).json()["user"] is None
    finally:
        await phone.aclose()
        await laptop.aclose()


# -- events ------------------------------------------------------------------------------------


async def test_events_cover_the_lifecycle_without_raw_ids(clock: FakeClock) -> None:
    seen: list[SessionEvent] = []
    app = make_app(on_event=seen.append, clock=clock)
    async with client_for(app) as c:
        await c.get("/write?value=1")  # created
        first = c.cookies["satchel"]
        await c.post("/login", headers={"X-CSRF-Token": await get_token(c)})  # regenerated
        second = c.cookies["satchel"]
        await c.post("/write?value=2")  # csrf failure
        c.cookies.clear()
        await c.get("/me", headers={"cookie": f"satchel={first}"})  # regenerated away
        await c.get("/me", headers={"cookie": "satchel=" + "A" * 40})  # tampered
        c.cookies.set("satchel", second)
        await c.post("/clear", headers={"X-CSRF-Token": await get_token(c)})  # destroyed
    async with client_for(app) as c:
        await c.get("/write?value=1")
        clock.advance(10**5)
        await c.get("/me")  # expired
    kinds = {(e.kind, e.reason) for e in seen}
    assert ("created", None) in kinds
    assert ("regenerated", None) in kinds
    assert ("destroyed", None) in kinds
    assert ("expired", "not_found") in kinds
    assert ("security", "csrf_failure") in kinds
    assert ("security", "tampered_cookie") in kinds
    assert [e.user_id for e in seen if e.kind == "regenerated"] == ["alice"]
    assert not any(first.partition(".")[0] in repr(e) for e in seen)


async def test_a_failing_event_hook_never_breaks_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(event: SessionEvent) -> None:
        raise RuntimeError("hook bug")

    async with client_for(make_app(on_event=explode)) as c:
        assert (await c.get("/write?value=1")).status_code == 200
    assert any("event hook failed" in r.getMessage() for r in caplog.records)


async def test_other_cookies_sharing_the_name_prefix_raise_no_alarm() -> None:
    """`satchel_csrf` (or any cookie whose name contains ours) is not a tampered session."""
    seen: list[SessionEvent] = []
    for store in (None, "cookie://"):
        app = make_app(
            store, on_event=seen.append, revocation_store=MemoryStore() if store else None
        )
        async with client_for(app) as c:
            await c.get(
                "/me", headers={"cookie": "satchel_csrf=abcdefghijklmnopqrstuvwxyz; xsatchel=1"}
            )
    assert seen == []
