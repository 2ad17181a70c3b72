"""Pure ASGI session middleware; the session lives in ``scope["session"]``, so Starlette's
and FastAPI's ``request.session`` work unchanged."""

from __future__ import annotations

from typing import Unpack

from .cookiestore import CookieStore
from .engine import Engine, InfoSource, RequestInfo, adrive
from .errors import StoreError
from .log import logger
from .options import DEFAULT_STORE, SessionOptions, build
from .session import Session
from .stores.base import Store
from .types import ASGIApp, Message, Receive, Scope, Send

_UNAVAILABLE_BODY = b"Service temporarily unavailable. Please try again shortly.\n"


async def store_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer when the store is down: a plain 503, no details, no traceback."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_UNAVAILABLE_BODY)).encode()),
                (b"retry-after", b"5"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _UNAVAILABLE_BODY})


def _request_info(scope: Scope) -> RequestInfo:
    user_agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:512]
    client = scope.get("client")
    return RequestInfo(user_agent=user_agent, client_ip=client[0] if client else None)


def _cookie_header(scope: Scope) -> str | None:
    values = [v for n, v in scope["headers"] if n == b"cookie"]
    if not values:
        return None
    return "; ".join(v.decode("latin-1") for v in values)


class SessionMiddleware:
    """``SessionMiddleware(app, store="sqlite:///satchel.db", secret_keys=[...], ...)``.

    A request with a well-formed, correctly signed session cookie has its session loaded
    before the app runs (one store call); any other request makes no store call. Changes
    are committed once, when the response starts, unless the status is 5xx or the app
    raised. ``on_store_unavailable`` is the ASGI app that answers when the store is down
    (default: a plain 503).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: str | Store | CookieStore = DEFAULT_STORE,
        *,
        on_store_unavailable: ASGIApp = store_unavailable,
        **options: Unpack[SessionOptions],
    ) -> None:
        self.app = app
        self.store, self.engine = build(store, options)
        self.on_store_unavailable = on_store_unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        engine, store = self.engine, self.store
        session_id, resign = engine.session_id_from_cookie(_cookie_header(scope))
        try:
            session = await adrive(engine.open(Session(), session_id, resign), store)
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            await self.on_store_unavailable(scope, receive, send)
            return

        def info() -> RequestInfo:
            return _request_info(scope)

        async def save(s: Session) -> None:
            await adrive(engine.commit(s, info), store)

        session._async_save_hook = save
        scope["session"] = session
        if kind == "websocket":
            await self._websocket(scope, receive, send, session, engine, info)
            return

        failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if message["type"] == "http.response.start":
                if message["status"] < 500 and session._needs_commit():
                    try:
                        await save(session)
                    except StoreError as exc:
                        failed = True
                        logger.error("session store unavailable while committing: %s", exc)
                        await self.on_store_unavailable(scope, receive, send)
                        return
                    message = _with_cookie(message, session)
            elif failed:
                return
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        session: Session,
        engine: Engine,
        info: InfoSource,
    ) -> None:
        async def send_with_session(message: Message) -> None:
            if message["type"] == "websocket.accept":
                await adrive(engine.commit(session, info), self.store)
                message = _with_cookie(message, session)
            await send(message)

        await self.app(scope, receive, send_with_session)
        if session.modified:  # changes made after the handshake: stored, no cookie possible
            await adrive(engine.commit(session, info), self.store)
            if session._outgoing_cookie is not None:
                logger.warning(
                    "a WebSocket handler created or regenerated a session after the "
                    "handshake; the browser cannot receive its cookie"
                )


def _with_cookie(message: Message, session: Session) -> Message:
    """The response start with the session cookie, ``Cache-Control: no-store`` (replacing
    any other policy) and ``Cookie`` in ``Vary``; headers stay bytes throughout."""
    cookie = session._outgoing_cookie
    if cookie is None:
        return message
    session._outgoing_cookie = None
    headers: list[tuple[bytes, bytes]] = []
    vary: list[bytes] = []
    for name, value in message.get("headers", ()):
        lower = name.lower()
        if lower == b"cache-control":
            continue
        if lower == b"vary":
            vary.extend(v.strip() for v in value.split(b",") if v.strip())
            continue
        headers.append((name, value))
    if not any(v.lower() in (b"cookie", b"*") for v in vary):
        vary.append(b"Cookie")
    headers += [
        (b"vary", b", ".join(vary)),
        (b"cache-control", b"no-store"),
        (b"set-cookie", cookie.encode("latin-1")),
    ]
    return {**message, "headers": headers}
