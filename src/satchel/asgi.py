"""Pure ASGI session middleware; the session lives in ``scope["session"]``, so Starlette's
and FastAPI's ``request.session`` work unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Unpack

from . import csrf
from ._types import ASGIApp, Message, Receive, Scope, Send
from .backend import Backend
from .conventions import StarletteOptions, from_starlette
from .cookie import CookieStore
from .csrf_failure import FAILURE_KEY, CSRFFailure
from .dbsc.protocol import Answer
from .errors import UNAVAILABLE_BODY, StoreError
from .log import logger
from .options import DEFAULT_STORE, build
from .printable import printable
from .request import SCOPE_KEY, RequestContext, RequestPolicy, scope_credentials
from .session import Session
from .stores.base import Store
from .transport import RETRY_AFTER, plain_headers, raw_session_headers, raw_with_vary

__all__ = [
    "SCOPE_KEY",
    "SessionMiddleware",
    "context_from_scope",
    "csrf_failure",
    "store_unavailable",
]


async def store_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer when the store is down: a plain 503, no details, no traceback."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await _plain(send, 503, UNAVAILABLE_BODY, RETRY_AFTER)


async def csrf_failure(scope: Scope, receive: Receive, send: Send) -> None:
    """The default answer to a failed CSRF check: 403, a small HTML page with advice for
    browsers, JSON with a machine-readable reason for API clients."""
    failure: CSRFFailure = scope[FAILURE_KEY]
    ctx: RequestContext = scope[SCOPE_KEY]
    status, headers, body = ctx.csrf_answer(failure)
    raw = [(n.encode(), v.encode()) for n, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


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


async def _nothing() -> None:
    """What the app awaits for a message that is not sent (the store failed at commit)."""


class _Disconnected(Exception):
    """The client went away before its body was read."""


async def _send_answer(send: Send, answer: Answer) -> None:
    headers = [(n.encode(), v.encode()) for n, v in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _answer_app(answer: Answer) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _send_answer(send, answer)

    return app


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
    a plain 503); ``on_csrf_failure`` the ASGI app that answers a failed CSRF check (it
    finds the :class:`~satchel.csrf_failure.CSRFFailure` in ``scope["satchel.csrf_failure"]``;
    default: :func:`csrf_failure`). Starlette's ``SessionMiddleware`` arguments (``secret_key``,
    ``session_cookie``, ``max_age``, ...) work too (:func:`satchel.conventions.from_starlette`).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: str | Store | CookieStore = DEFAULT_STORE,
        *,
        on_store_unavailable: ASGIApp = store_unavailable,
        on_csrf_failure: ASGIApp = csrf_failure,
        **options: Unpack[StarletteOptions],
    ) -> None:
        self.app = app
        self.runtime = build(store, from_starlette(options))
        self.store, self.backend, self.policy = self.runtime
        self.on_store_unavailable = on_store_unavailable
        self.on_csrf_failure = on_csrf_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        bearer = policy.token_paths
        cookie = authorization = None
        for name, value in scope["headers"]:  # (request.scope_credentials, inlined)
            if name == b"cookie":
                text = value.decode("latin-1")
                cookie = text if cookie is None else f"{cookie}; {text}"
            elif bearer and name == b"authorization":
                text = value.decode("latin-1")
                authorization = text if authorization is None else f"{authorization}, {text}"
        app = self.app
        # A safe request that carries no session token (most anonymous traffic) gets a
        # pending context: it reads the scope only if the app, or a CSRF token, asks.
        # Not with device binding: its endpoints need the context first.
        pending = (
            kind == "http"
            and (cookie is None or policy.cookie.name not in cookie)
            and authorization is None
            and scope.get("method", "GET") in csrf.SAFE_METHODS  # (unsafe: CSRF-checked)
            and not policy.device.enabled
        )
        if pending:
            ctx, session = RequestContext.pending(self.backend, policy, scope, cookie or "")
            scope["session"] = session
            scope[SCOPE_KEY] = ctx
        else:
            ctx = _context(
                self.backend, policy, scope, Session(), cookie or "", authorization or ""
            )
            session = ctx.session
        ends = True
        try:  # (every way out ends the context, but an exception's)
            if not pending:
                if ctx.ticket is not None:
                    try:
                        if self.backend.store is None:  # nothing to wait for (cookie sessions)
                            ctx.load(session)
                        else:
                            await ctx.aopen()
                    except StoreError as exc:
                        logger.error("session store unavailable while loading: %s", exc)
                        await self.on_store_unavailable(scope, receive, send)
                        return
                if policy.device.enabled:  # device-bound sessions: an endpoint, or a refusal
                    answer = ctx.device_answer()
                    if answer is not None:
                        if kind == "websocket":
                            await send({"type": "websocket.close", "code": 1008})
                            return
                        if not answer.commit:
                            await _send_answer(send, answer)
                            return
                        app = _answer_app(answer)  # an endpoint: its session change is committed
                scope["session"] = session
                scope[SCOPE_KEY] = ctx
                if kind == "websocket":
                    await self._websocket(scope, receive, send, ctx)
                    return
                if app is self.app and ctx.method not in csrf.SAFE_METHODS:  # (safe: unchecked)
                    checked = await self._csrf(scope, receive, send, ctx)
                    if checked is None:  # refused: answered
                        return
                    receive = checked

            out = _Response()  # (a slotted object, not a closure: fewer objects per request)
            out.middleware, out.scope, out.receive, out.send = self, scope, receive, send
            out.ctx, out.session, out.started, out.failed = ctx, session, False, False
            try:
                await app(scope, receive, out.start)
            except StoreError as exc:  # e.g. an explicit `await session.asave()` in the app
                if out.started:
                    raise
                logger.error("session store unavailable: %s", exc)
                await self._unavailable(scope, receive, send, ctx)
        except BaseException:
            ends = False  # an error page outside (Starlette's 500 handler) may still ask it
            raise
        finally:
            if ends:
                ctx.end()

    async def _csrf(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext
    ) -> Receive | None:
        """Check CSRF before the app runs: the ``receive`` the app gets (a form body read
        here is put back), or None when the request was refused (and answered)."""
        form_token = None
        if ctx.wants_form_token():
            try:
                form_token, body = await csrf.atoken_from_form(
                    ctx.headers.get("content-type", ""), _body_chunks(receive)
                )
            except _Disconnected:  # refused below: no token
                body = None
            if body is not None:
                receive = _replay(body, receive)
        failure = ctx.csrf_check(form_token)
        if failure is None:
            return receive
        scope[FAILURE_KEY] = failure
        await self.on_csrf_failure(scope, receive, send)
        return None

    async def _unavailable(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext
    ) -> None:
        """The store-unavailable answer; it still carries a token a half-done commit
        issued."""

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_session(message, ctx)
            await send(message)

        await self.on_store_unavailable(scope, receive, send_with_token)

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


class _Response:
    """The ``send`` the app gets: the response start carries what the session must
    (committed first), the rest passes on. Its method hands back an awaitable: no
    coroutine of its own per message, and a request that never touched its session
    passes straight on."""

    __slots__ = ("ctx", "failed", "middleware", "receive", "scope", "send", "session", "started")
    middleware: SessionMiddleware
    scope: Scope
    receive: Receive
    send: Send
    ctx: RequestContext
    session: Session
    started: bool
    failed: bool  # the commit failed: the store-unavailable answer went out instead

    def start(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.started = True
            session = self.session
            if session.untouched:  # a pending context, never asked: nothing to add
                return self.send(message)
            ctx = self.ctx
            if (
                ctx.outgoing is None
                and not (ctx.new_presession or ctx.csrf_made)
                and session.idle()
            ):
                return self.send(message)
            if not session.needs_commit:
                return self.send(_with_session(message, ctx))
            if ctx.backend.store is None:  # a commit with nothing to wait for
                if ctx.finish(message["status"]) is None:
                    return self.send(_with_session(message, ctx))
                self.failed = True
                return self.middleware._unavailable(self.scope, self.receive, self.send, ctx)
            return self._commit_then_send(message)
        if self.failed:
            return _nothing()
        return self.send(message)

    async def _commit_then_send(self, message: Message) -> None:
        ctx = self.ctx
        if await ctx.afinish(message["status"]) is not None:
            self.failed = True
            await self.middleware._unavailable(self.scope, self.receive, self.send, ctx)
            return
        await self.send(_with_session(message, ctx))


def context_from_scope(
    backend: Backend, policy: RequestPolicy, scope: Scope, session: Session
) -> RequestContext:
    """The context of the request in ``scope`` (the ASGI middleware's, and Quart's, whose
    requests carry their scope), its token checked (no I/O). Only the ``Cookie`` header
    (and ``Authorization`` where bearer tokens are accepted) is looked at now: the
    header map is made if something asks for it."""
    cookie, authorization = scope_credentials(scope, bool(policy.token_paths))
    return _context(backend, policy, scope, session, cookie, authorization)


def _context(
    backend: Backend,
    policy: RequestPolicy,
    scope: Scope,
    session: Session,
    cookie: str,
    authorization: str,
) -> RequestContext:
    bearer = bool(policy.token_paths)
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    app_path = path[len(root) :] or "/" if root and path.startswith(root) else path
    if bearer:
        transport = policy.transport_of(app_path, cookie, authorization)
    else:
        transport = policy.cookie_transport
    client = scope.get("client")
    ctx = RequestContext(
        backend,
        policy,
        session,
        scope.get("method", "GET"),
        path,
        None,
        client[0] if client else None,
        scope.get("scheme", "http"),
        transport,
        cookie,
        scope["headers"],
    )
    if root:
        ctx.mount, ctx.app_path = root, app_path
    if bearer or policy.cookie.name in cookie:
        ctx.read_token(cookie, authorization)
    else:  # no token to read
        ctx.session.bind(ctx)
    return ctx


def _with_session(message: Message, ctx: RequestContext) -> Message:
    """The response start (or WebSocket accept) with what the session must carry; the
    other headers stay as they are, in bytes."""
    lines = ctx.session_lines()
    if not lines and not ctx.read_session:
        return message
    raw = message.get("headers", ())
    if not lines:  # a read only adds to Vary
        return {**message, "headers": raw_with_vary(raw, ctx.transport.vary)}
    return {**message, "headers": raw_session_headers(raw, lines)}
