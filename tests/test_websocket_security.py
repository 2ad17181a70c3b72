"""Issue 10: WebSockets. The origin check compares the browser's ``Origin`` (``http(s)://``)
with the site's own origin (0.1 computed ``ws://host`` and refused every browser), and the
auth guard guards WebSocket scopes (0.1 let an anonymous client read a guarded socket)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from satchel import MemoryStore, Session, login
from satchel._types import Message, Scope
from satchel.asgi import SessionMiddleware
from satchel.guard import RequireLogin, login_required

from .conftest import KEY
from .services import serve_asgi

# What Debian's Chromium sends on a same-origin `new WebSocket(...)` (recorded from a
# real handshake): an Origin with the page's http(s) scheme and no Sec-Fetch-* headers.
CHROMIUM_HEADERS = {
    "connection": "Upgrade",
    "pragma": "no-cache",
    "cache-control": "no-cache",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "accept-encoding": "gzip, deflate, br, zstd",
    "accept-language": "en-US,en;q=0.9",
    "sec-websocket-key": "MLE+2oRx0apBrkH0bIyCow==",
    "sec-websocket-extensions": "permessage-deflate; client_max_window_bits",
}


async def do_login(request: Request) -> Response:
    assert isinstance(request.session, Session)
    login(request.session, "alice")
    return PlainTextResponse("in")


async def page(request: Request) -> Response:
    """Opens a WebSocket to ``?to=<host>`` (default: this page's own host)."""
    return HTMLResponse(
        """<html><body><div id="out">pending</div><script>
        const host = new URLSearchParams(location.search).get('to') || location.host;
        const ws = new WebSocket('ws://' + host + '/ws');
        const out = document.getElementById('out');
        ws.onmessage = (e) => { out.textContent = e.data; };
        ws.onclose = (e) => { if (out.textContent === 'pending') out.textContent = 'closed'; };
        </script></body></html>"""
    )


async def echo_user(websocket: WebSocket) -> None:
    await websocket.accept()
    assert isinstance(websocket.session, Session)
    await websocket.send_text(f"hello {websocket.session.user_id}")
    await websocket.close()


@login_required
async def guarded_endpoint(websocket: WebSocket) -> None:
    await echo_user(websocket)


@login_required
async def guarded_raw(scope: Scope, receive: Any, send: Any) -> None:
    await echo_user(WebSocket(scope, receive, send))


def make_app(*, guard: bool = False, **options: Any) -> Any:
    routes = [
        Route("/login", do_login),
        Route("/", page),
        WebSocketRoute("/ws", echo_user),
        WebSocketRoute("/public/ws", echo_user),
        WebSocketRoute("/endpoint/ws", guarded_endpoint),
        Mount("/raw", guarded_raw),
    ]
    app: Any = Starlette(routes=routes)
    if guard:
        app = RequireLogin(app, public=["/login", "/", "/public/*"])
    options.setdefault("secret_keys", [KEY])
    return SessionMiddleware(app, store=MemoryStore(), **options)


def socket_url(client: TestClient, path: str) -> str:
    """The WebSocket URL for ``path`` on the client's site (wss for an https site); the
    test client's cookie jar does not send Secure cookies over wss, so cookies go as a
    header, as a browser sends them."""
    scheme = "wss" if str(client.base_url).startswith("https") else "ws"
    return f"{scheme}://testserver{path}"


def with_cookies(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return {**headers, "cookie": cookie} if cookie else headers


def receive_over(client: TestClient, path: str, headers: dict[str, str]) -> str:
    url, headers = socket_url(client, path), with_cookies(client, headers)
    with client.websocket_connect(url, headers=headers) as websocket:
        return websocket.receive_text()


def refused_code(client: TestClient, path: str, headers: dict[str, str]) -> int:
    url, headers = socket_url(client, path), with_cookies(client, headers)
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(url, headers=headers),
    ):
        pass
    return refused.value.code


# -- the origin check ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_browser_websocket_from_the_site_itself_is_accepted(scheme: str) -> None:
    client = TestClient(make_app(), base_url=f"{scheme}://testserver")
    headers = {**CHROMIUM_HEADERS, "origin": f"{scheme}://testserver"}
    assert receive_over(client, "/ws", headers) == "hello None"


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://testserver", "wss://testserver"]
)
def test_websocket_from_another_origin_is_refused(origin: str) -> None:
    """A page elsewhere (or the same host over the other scheme) cannot open the socket."""
    client = TestClient(make_app(), base_url="https://testserver")
    assert refused_code(client, "/ws", {**CHROMIUM_HEADERS, "origin": origin}) == 1008


def handshake(app: Any, *, peer: str, headers: dict[str, str]) -> str:
    """Drive one WebSocket handshake through the raw ASGI interface: the first message the
    app sends (``websocket.accept`` or ``websocket.close``)."""
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": (peer, 40000),
        "server": ("10.0.0.5", 8000),
        "subprotocols": [],
    }
    sent: list[Message] = []
    connected = False

    async def receive() -> Message:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return str(sent[0]["type"])


@pytest.mark.parametrize("forwarded_proto", ["https", "wss"])
def test_websocket_behind_a_trusted_proxy_uses_the_forwarded_origin(forwarded_proto: str) -> None:
    """A TLS proxy talks plain ws to the app; the browser's Origin is ``https://`` the public
    host. Forwarding headers count only from a trusted proxy, as for HTTP."""
    app = make_app(trusted_proxies=["10.0.0.0/8"])
    headers = {
        **CHROMIUM_HEADERS,
        "host": "10.0.0.5:8000",
        "origin": "https://app.example",
        "x-forwarded-proto": forwarded_proto,
        "x-forwarded-host": "app.example",
        "x-forwarded-for": "203.0.113.7",
    }
    assert handshake(app, peer="10.0.0.2", headers=headers) == "websocket.accept"
    assert handshake(app, peer="203.0.113.7", headers=headers) == "websocket.close"


# -- the guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/endpoint/ws", "/raw/"])
def test_guard_refuses_anonymous_websockets_until_login(path: str) -> None:
    """``RequireLogin`` guards ``/ws``; ``@login_required`` guards a WebSocket endpoint and a
    raw ASGI app."""
    client = TestClient(make_app(guard=path == "/ws"), base_url="https://testserver")
    headers = {**CHROMIUM_HEADERS, "origin": "https://testserver"}
    assert refused_code(client, path, headers) == 1008
    client.get("/login")
    assert receive_over(client, path, headers) == "hello alice"


def test_guard_honours_public_websocket_paths() -> None:
    client = TestClient(make_app(guard=True), base_url="https://testserver")
    headers = {**CHROMIUM_HEADERS, "origin": "https://testserver"}
    assert receive_over(client, "/public/ws", headers) == "hello None"


def test_guarded_websocket_handshake_fails_with_403_on_a_real_server() -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with serve_asgi(make_app(guard=True, csrf=False)) as base:
        url = base.replace("http://", "ws://")
        with pytest.raises(InvalidStatus) as refused, connect(f"{url}/ws", open_timeout=5):
            pass
        assert refused.value.response.status_code == 403
        with connect(f"{url}/public/ws", open_timeout=5) as websocket:
            assert websocket.recv(timeout=5) == "hello None"


# -- real Chromium ------------------------------------------------------------------------------


def socket_result(chromium: Any, url: str) -> str:
    context = chromium.new_context()
    try:
        tab = context.new_page()
        tab.goto(url)
        tab.wait_for_function("document.getElementById('out').textContent !== 'pending'")
        return str(tab.text_content("#out"))
    finally:
        context.close()


def test_real_chromium_opens_a_same_origin_websocket_and_not_a_cross_origin_one(
    chromium: Any,
) -> None:
    """CSRF on (the default). The page at 127.0.0.1 opens its own socket; the same page
    served as ``localhost`` (another origin) is refused when it opens 127.0.0.1's."""
    with serve_asgi(make_app()) as base:
        port = base.rsplit(":", 1)[1]
        assert socket_result(chromium, f"{base}/") == "hello None"
        other_origin = f"http://localhost:{port}/?to=127.0.0.1:{port}"
        assert socket_result(chromium, other_origin) == "closed"
