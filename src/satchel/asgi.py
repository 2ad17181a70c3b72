"""Pure ASGI session middleware; the session lives in ``scope["session"]``, so Starlette's
and FastAPI's ``request.session`` work unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Unpack

from . import csrf
from ._types import ASGIApp, Message, Receive, Scope, Send
from .conventions import StarletteOptions, from_starlette
from .cookie import CookieStore
from .errors import UNAVAILABLE_BODY, StoreError
from .log import logger
from .options import DEFAULT_STORE, build
from .printable import printable
from .request import SCOPE_KEY, RequestContext
from .session import Session
from .stores.base import Store
from .transport import RETRY_AFTER, header_map, plain_headers, with_session_headers, with_vary

__all__ = ["SCOPE_KEY", "SessionMiddleware", "store_unavailable"]


async def store_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer when the store is down: a plain 503, no details, no traceback."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await _plain(send, 503, UNAVAILABLE_BODY, RETRY_AFTER)


async def _plain(send: Send, status: int, body: bytes, *extra: tuple[str, str]) -> None:
    headers = [(n.encode(), v.encode()) for n, v in plain_headers(body, *extra)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
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

    A request with a well-formed, correctly signed session token has its session loaded
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
        self.runtime = build(store, from_starlette(options))
        self.store, self.backend, self.policy = self.runtime
        self.on_store_unavailable = on_store_unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        headers = header_map(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]
        )
        client = scope.get("client")
        path: str = scope.get("path", "/")
        root: str = scope.get("root_path", "")
        ctx = RequestContext.build(
            self.backend,
            self.policy,
            Session(),
            method=scope.get("method", "GET"),
            path=path,
            app_path=path[len(root) :] or "/" if root and path.startswith(root) else path,
            headers=headers,
            peer=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
        )
        try:
            await ctx.aopen()
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            await self.on_store_unavailable(scope, receive, send)
            return
        scope["session"] = ctx.session
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
            async def send_with_token(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = _with_session(message, ctx)
                await send(message)

            await self.on_store_unavailable(scope, receive, send_with_token)

        async def send_with_session(message: Message) -> None:
            nonlocal failed, started
            if message["type"] == "http.response.start":
                started = True
                if await ctx.afinish(message["status"]) is not None:
                    failed = True
                    await unavailable()
                    return
                message = _with_session(message, ctx)
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
        if self.policy.csrf.enabled and (ctx.transport.checks_csrf or ctx.carries_cookie):
            reason = csrf.origin_refusal(self.policy.csrf, ctx.headers, ctx.own_origin)
            if reason is not None:  # cross-site WebSocket hijacking
                logger.warning("WebSocket refused: %s", printable(reason))
                await send({"type": "websocket.close", "code": 1008})
                return

        async def send_with_session(message: Message) -> None:
            if message["type"] == "websocket.accept":
                if await ctx.afinish(200) is not None:
                    await self.on_store_unavailable(scope, receive, send)
                    return
                message = _with_session(message, ctx)
            await send(message)

        await self.app(scope, receive, send_with_session)
        if ctx.session.needs_commit:  # changes after the handshake: stored, no cookie possible
            await ctx.asave(ctx.session)
            if ctx.outgoing is not None:
                logger.warning(
                    "a WebSocket handler created or regenerated a session after the "
                    "handshake; the client cannot receive its token"
                )


def _with_session(message: Message, ctx: RequestContext) -> Message:
    """The response start (or WebSocket accept) with what the session must carry; the
    headers are converted only when there is something to add."""
    lines = ctx.session_lines()
    if not lines and not ctx.read_session:
        return message
    raw = message.get("headers", ())
    if not lines:  # a read only adds to Vary: the other headers stay as they are, in bytes
        others = [(n, v) for n, v in raw if n.lower() != b"vary"]
        varies = [("vary", v.decode("latin-1")) for n, v in raw if n.lower() == b"vary"]
        (_, vary), *_ = with_vary(varies, ctx.transport.vary)
        return {**message, "headers": [*others, (b"vary", vary.encode("latin-1"))]}
    decoded = ((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw)
    headers = with_session_headers(decoded, lines)
    encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    return {**message, "headers": encoded}
