"""Pure ASGI session middleware; the session lives in ``scope["session"]``, so Starlette's
and FastAPI's ``request.session`` work unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Unpack

from . import csrf
from .context import RequestContext, header_map
from .conventions import StarletteOptions, from_starlette
from .cookiestore import CookieStore
from .engine import adrive
from .errors import UNAVAILABLE_BODY, StoreError
from .log import logger
from .options import DEFAULT_STORE, build
from .printable import printable
from .session import Session
from .stores.base import Store
from .types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "satchel"


async def store_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer when the store is down: a plain 503, no details, no traceback."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await _plain(send, 503, UNAVAILABLE_BODY, [(b"retry-after", b"5")])


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive; stops early if the client goes away."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class _Disconnected(Exception):
    """The client went away before its body was read."""


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class SessionMiddleware:
    """``SessionMiddleware(app, store="sqlite:///satchel.db", secret_keys=[...], ...)``.

    A request with a well-formed, correctly signed session cookie has its session loaded
    before the app runs (one store call); any other request makes no store call. Changes
    are committed once, when the response starts, unless the status is 5xx or the app
    raised. Unsafe requests must pass the CSRF check (``csrf=False`` turns it off).
    ``on_store_unavailable`` is the ASGI app that answers when the store is down (default:
    a plain 503). Starlette's ``SessionMiddleware`` arguments (``secret_key``,
    ``session_cookie``, ``max_age``, ...) work too (:func:`satchel.conventions.from_starlette`).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: str | Store | CookieStore = DEFAULT_STORE,
        *,
        on_store_unavailable: ASGIApp = store_unavailable,
        **options: Unpack[StarletteOptions],
    ) -> None:
        self.app = app
        self.store, self.engine, self.settings = build(store, from_starlette(options))
        self.on_store_unavailable = on_store_unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        engine, store = self.engine, self.store
        headers = header_map(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]
        )
        session_id, resign = engine.session_id_from_cookie(headers.get("cookie"))
        try:
            session = await adrive(engine.open(Session(), session_id, resign), store)
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            await self.on_store_unavailable(scope, receive, send)
            return
        client = scope.get("client")
        ctx = RequestContext.build(
            engine,
            store,
            self.settings,
            session,
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            headers=headers,
            peer=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
        )
        info = ctx.request_info

        async def save(s: Session) -> None:
            await adrive(engine.commit(s, info), store)

        session._async_save_hook = save
        scope["session"] = session
        scope[SCOPE_KEY] = ctx
        if kind == "websocket":
            await self._websocket(scope, receive, send, ctx)
            return

        form_token = None
        if ctx.wants_form_token():
            try:
                form_token, body = await csrf.atoken_from_form(
                    headers.get("content-type", ""), _body_chunks(receive)
                )
            except _Disconnected:  # refused below: no token
                body = None
            if body is not None:
                receive = _replay(body, receive)
        refusal = ctx.csrf_refusal(form_token)
        if refusal is not None:
            await _plain(send, 403, f"Forbidden: {refusal}\n".encode())
            return

        failed = started = False

        async def unavailable() -> None:
            # a commit that failed half-way recorded the new record's cookie: send it
            cookies = ctx.response_cookies()

            async def send_with_cookies(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = _with_cookies(message, cookies)
                await send(message)

            await self.on_store_unavailable(scope, receive, send_with_cookies)

        async def send_with_session(message: Message) -> None:
            nonlocal failed, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] < 500 and session._needs_commit():
                    try:
                        await save(session)
                    except StoreError as exc:
                        failed = True
                        logger.error("session store unavailable while committing: %s", exc)
                        await unavailable()
                        return
                message = _with_cookies(message, ctx.response_cookies())
            elif failed:
                return
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        except StoreError as exc:  # e.g. an explicit `await session.asave()` in the app
            if started:
                raise
            logger.error("session store unavailable: %s", exc)
            await unavailable()

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext
    ) -> None:
        session, engine, store = ctx.session, self.engine, self.store
        if self.settings.csrf.enabled:
            reason = csrf.origin_refusal(self.settings.csrf, ctx.headers, ctx.own_origin)
            if reason is not None:  # cross-site WebSocket hijacking
                logger.warning("WebSocket refused: %s", printable(reason))
                await send({"type": "websocket.close", "code": 1008})
                return

        async def send_with_session(message: Message) -> None:
            if message["type"] == "websocket.accept":
                await adrive(engine.commit(session, ctx.request_info), store)
                message = _with_cookies(message, ctx.response_cookies())
            await send(message)

        await self.app(scope, receive, send_with_session)
        if session.modified:  # changes made after the handshake: stored, no cookie possible
            await adrive(engine.commit(session, ctx.request_info), store)
            if session._outgoing_cookie is not None:
                logger.warning(
                    "a WebSocket handler created or regenerated a session after the "
                    "handshake; the browser cannot receive its cookie"
                )


def _with_cookies(message: Message, cookies: list[str]) -> Message:
    """The response start with the cookies, ``Cache-Control: no-store`` (replacing any
    other policy) and ``Cookie`` in ``Vary``; headers stay bytes throughout."""
    if not cookies:
        return message
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
    headers += [(b"vary", b", ".join(vary)), (b"cache-control", b"no-store")]
    headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
    return {**message, "headers": headers}
