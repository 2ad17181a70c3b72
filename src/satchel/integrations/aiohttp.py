"""aiohttp: satchel sessions behind an aiohttp middleware, with aiohttp-session's shape.

    from satchel.integrations.aiohttp import get_session, login, setup

    app = web.Application()
    setup(app, "redis://localhost:6379/0", secret_keys=[...])

    async def handler(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["visits"] = session.get("visits", 0) + 1
        ...

``setup(app, store, **options)`` takes the options of :class:`satchel.asgi.SessionMiddleware`.
The session is loaded on the store's async path before the handler runs (one store call
for a request with a session cookie, none without), and committed once, when the response
starts -- also for a response the handler raised (``raise web.HTTPFound(...)``), streamed
or upgraded to a WebSocket -- unless its status is 5xx or the handler raised anything else.
Unsafe requests must pass the CSRF check before the handler (``@csrf_exempt`` spares one);
a cross-site WebSocket handshake is refused; a store that is down gives 503. Sensitive
handlers take ``@require_recent_auth(max_age=300)`` ("sudo mode": :class:`satchel.guard.Policy`
decides, as on every path), with ``reauthenticate``, ``impersonate`` and
``stop_impersonating`` for the handlers that change the authentication.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, Unpack

from . import missing_framework

try:
    from aiohttp import hdrs, web
    from aiohttp.http_writer import StreamWriter
    from aiohttp.streams import StreamReader
    from aiohttp.typedefs import Handler, Middleware
    from multidict import CIMultiDict
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "aiohttp") from None

from .. import auth, csrf
from ..cookie import CookieStore
from ..csrf_failure import CSRFFailure
from ..errors import UNAVAILABLE_BODY, SessionStateError, StoreError
from ..guard import API_PREFIXES, DEFAULT_LOGIN_URL, DEFAULT_REAUTH_URL, Policy, RecentAuth
from ..log import logger
from ..options import DEFAULT_STORE, Runtime, SessionOptions, build
from ..printable import printable
from ..request import RequestContext
from ..session import Session
from ..stores.base import Store
from ..transport import RETRY_AFTER, header_map, plain_headers, with_session_headers, with_vary
from ..user_sessions import SessionInfo

__all__ = [
    "RUNTIME_KEY",
    "AiohttpSession",
    "csrf_exempt",
    "csrf_token",
    "get_session",
    "impersonate",
    "login",
    "login_required",
    "login_required_to",
    "logout",
    "logout_everywhere",
    "logout_other_devices",
    "new_session",
    "reauthenticate",
    "require_recent_auth",
    "revoke_session",
    "session_middleware",
    "sessions_of",
    "setup",
    "stop_impersonating",
]

F = TypeVar("F", bound=Callable[..., Any])
RUNTIME_KEY = web.AppKey("satchel.runtime", Runtime)
"""Where :func:`setup` keeps the store, backend and policy: ``app[RUNTIME_KEY]``."""

_RequestKey: Any = getattr(web, "RequestKey", None)  # aiohttp 3.14+; plain strings before


def _request_key(name: str, kind: type) -> Any:
    return name if _RequestKey is None else _RequestKey(name, kind)


SESSION_KEY = _request_key("satchel.session", Session)
_REFUSED = _request_key("satchel.refused", RequestContext)
CONTEXT_KEY = _request_key("satchel.context", RequestContext)
"""Where the middleware keeps the session and the request context in the request (the
context only while the handler's response is satchel's to commit)."""
_ENDS_AT_PREPARE = _request_key("satchel.ends_at_prepare", bool)
"""Set when the handler returned a response not prepared yet: the prepare hook ends the
request's context, after its commit."""
_EXEMPT = "__satchel_csrf_exempt__"


class AiohttpSession(Session):
    """A satchel session with the names aiohttp-session's ``Session`` has, for code moving
    over: ``invalidate()``, ``changed()``, ``created``, ``empty`` (``new`` and the mapping
    are satchel's own)."""

    __slots__ = ()

    def invalidate(self) -> None:
        """End the session: the record is deleted and the cookie expired (satchel's
        :func:`~satchel.auth.logout`)."""
        auth.logout(self)

    def changed(self) -> None:
        """Mark the session changed (after mutating a nested value in place; satchel
        compares what it stored, so this is only a hint)."""
        self.mark_modified()

    @property
    def created(self) -> int | None:
        """When the session was created (Unix seconds); None before it is stored."""
        meta = self.meta
        return None if meta is None else int(meta.created)

    @property
    def empty(self) -> bool:
        return not self


UnavailableHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""What answers when the store is down: ``async def answer(request) -> response``."""
CSRFFailureHandler = Callable[[web.Request, CSRFFailure], Awaitable[web.StreamResponse]]
"""What answers a failed CSRF check: ``async def answer(request, failure) -> response``
(``failure.reason``, ``failure.message``)."""


def setup(
    app: web.Application,
    store: str | Store | CookieStore = DEFAULT_STORE,
    *,
    on_store_unavailable: UnavailableHandler | None = None,
    on_csrf_failure: CSRFFailureHandler | None = None,
    **options: Unpack[SessionOptions],
) -> Runtime:
    """Install satchel on ``app``: its middleware first (every other middleware and
    handler sees the session), and the hook that commits a response the handler prepared
    itself (a stream, a WebSocket) before its headers go. ``store`` and ``options`` are
    those of :class:`satchel.asgi.SessionMiddleware`; ``on_store_unavailable`` and
    ``on_csrf_failure`` answer in place of satchel's plain 503 and 403 page. Returns the
    runtime (also at ``app[RUNTIME_KEY]``); the store is closed on the app's cleanup."""
    runtime = build(store, options)
    app[RUNTIME_KEY] = runtime
    app.middlewares.insert(0, session_middleware(runtime, on_store_unavailable, on_csrf_failure))
    app.on_response_prepare.append(_on_response_prepare)
    app.on_cleanup.append(_close_store)
    return runtime


async def _close_store(app: web.Application) -> None:
    store = app[RUNTIME_KEY].store
    if store is not None:
        await store.aclose()


def session_middleware(
    runtime: Runtime,
    on_store_unavailable: UnavailableHandler | None = None,
    on_csrf_failure: CSRFFailureHandler | None = None,
) -> Middleware:
    """The middleware :func:`setup` installs (it needs the prepare hook :func:`setup`
    also installs: use :func:`setup`)."""
    _, backend, policy = runtime
    unavailable = on_store_unavailable or _unavailable
    refuse = on_csrf_failure or _csrf_failure

    @web.middleware
    async def satchel_session(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context(request)
        try:
            response = await serve(request, handler, ctx)
        except web.HTTPException:  # a raised response: its prepare hook commits, then ends
            request[_ENDS_AT_PREPARE] = True
            raise
        # (another exception leaves the context as it is: an error page may still ask it)
        if response.prepared or request.get(CONTEXT_KEY) is not ctx:
            ctx.end()  # (nothing of the session left to do)
        else:
            request[_ENDS_AT_PREPARE] = True  # its commit, in the prepare hook, comes first
        return response

    def context(request: web.Request) -> RequestContext:
        return RequestContext.build(
            backend,
            policy,
            AiohttpSession(),
            method=request.method,
            path=_routed_path(request),
            headers=header_map((name.lower(), value) for name, value in request.headers.items()),
            peer=request.remote,
            scheme=request.scheme,
        )

    async def serve(
        request: web.Request, handler: Handler, ctx: RequestContext
    ) -> web.StreamResponse:
        session = ctx.session
        try:
            if ctx.ticket is not None:
                if backend.store is None:  # nothing to wait for (cookie sessions)
                    ctx.load(session)
                else:
                    await ctx.aopen()
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            return await unavailable(request)
        request[SESSION_KEY] = session
        if policy.device.enabled:  # device-bound sessions: an endpoint, or a refusal
            answer = ctx.device_answer()
            if answer is not None:
                response = web.Response(
                    body=answer.body, status=answer.status, headers=CIMultiDict(answer.headers)
                )
                if not answer.commit:
                    return response
                request[CONTEXT_KEY] = ctx  # an endpoint: its session change is committed
                return await _respond(request, ctx, _answer(response), unavailable)
        try:
            refusal = await _refusal(request, ctx)
        except StoreError as exc:
            logger.error("session store unavailable: %s", exc)
            return await unavailable(request)
        if isinstance(refusal, CSRFFailure):
            request[_REFUSED] = ctx  # for the default answer
            return await refuse(request, refusal)
        if refusal is not None:
            return refusal
        request[CONTEXT_KEY] = ctx
        return await _respond(request, ctx, handler, unavailable)

    return satchel_session


def _routed_path(request: web.Request) -> str:
    """The path as aiohttp's router matches it: ``%2F`` (and ``%25``) still encoded. The
    decoded ``request.path`` would let ``/webhooks%2Fx/transfer`` match a ``/webhooks/*``
    exemption while it is routed to ``/{org}/transfer``."""
    path: str | None = getattr(request.rel_url, "path_safe", None)  # yarl 1.10+
    return request.rel_url.raw_path if path is None else path  # (older: all still encoded)


def _answer(response: web.StreamResponse) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return response

    return handler


async def _respond(
    request: web.Request, ctx: RequestContext, handler: Handler, unavailable: UnavailableHandler
) -> web.StreamResponse:
    raised = None
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a raised redirect is a response too
        response = raised = exc
    except StoreError as exc:  # the commit of a response the handler prepared, or its asave()
        if request.writer.output_size > 0:
            raise  # bytes went out: too late for a 503
        logger.error("session store unavailable: %s", exc)
        # the 503 goes on a writer of its own: the handler's response began to set this
        # request's up (chunking, length) before its commit failed
        request._payload_writer = StreamWriter(request.protocol, asyncio.get_running_loop())
        return await unavailable(request)
    except BaseException:
        del request[CONTEXT_KEY]  # the handler failed: nothing of its session is kept
        raise
    if not response.prepared:
        if await ctx.afinish(response.status) is not None:
            return await unavailable(request)  # it still carries a token the commit issued
    elif isinstance(response, web.WebSocketResponse) and ctx.session.needs_commit:
        # changes after the handshake: stored, no cookie possible
        await ctx.asave(ctx.session)
        if ctx.outgoing is not None:
            logger.warning(
                "a WebSocket handler created or regenerated a session after the handshake; "
                "the client cannot receive its token"
            )
    if raised is not None:
        raise raised
    return response


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Right before the headers go: commit what the handler changed if nobody has yet (a
    response it prepared itself: a stream, a WebSocket handshake), then add what the
    session must carry. A failed commit raises out of the handler's ``prepare()``: the
    middleware answers 503 instead."""
    ctx: RequestContext | None = request.get(CONTEXT_KEY)
    if ctx is None:
        return
    failure = await ctx.afinish(response.status)
    if failure is not None:
        raise failure
    lines = ctx.session_lines()
    if lines:
        merged = with_session_headers(response.headers.items(), lines)
    elif ctx.read_session:
        merged = with_vary(response.headers.items(), ctx.transport.vary)
    else:
        merged = None
    if merged is not None:
        response.headers.clear()
        response.headers.extend(merged)
    if request.get(_ENDS_AT_PREPARE):  # the handler has returned: the request is over
        ctx.end()


async def _unavailable(request: web.Request) -> web.StreamResponse:
    """The default store-unavailable answer: a plain 503, no details (a token a half-done
    commit issued is added by the prepare hook)."""
    headers = CIMultiDict(plain_headers(UNAVAILABLE_BODY, RETRY_AFTER))
    del headers[hdrs.CONTENT_LENGTH]  # aiohttp sets it from the body
    return web.Response(body=UNAVAILABLE_BODY, status=503, headers=headers)


# -- CSRF -----------------------------------------------------------------------------------------


async def _refusal(
    request: web.Request, ctx: RequestContext
) -> web.StreamResponse | CSRFFailure | None:
    """The refusal of a cross-site request before the handler (the answer to a WebSocket
    handshake, the failed CSRF check of anything else), or None."""
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        options = ctx.policy.csrf
        if options.enabled and (ctx.transport.checks_csrf or ctx.carries_cookie):
            reason = csrf.origin_refusal(options, ctx.headers, ctx.own_origin)
            if reason is not None:  # cross-site WebSocket hijacking
                logger.warning("WebSocket refused: %s", printable(reason))
                return web.Response(status=403, text="cross-site WebSocket refused")
        # (a handshake is a GET, which the check below spares; the header on an unsafe
        # method spares nothing)
    if not ctx.csrf_applies() or getattr(request.match_info.handler, _EXEMPT, False):
        return None
    form_token = await _form_token(request, ctx)
    return ctx.csrf_check(form_token)


async def _csrf_failure(request: web.Request, failure: CSRFFailure) -> web.StreamResponse:
    """The default answer to a failed CSRF check: 403, a small HTML page with advice for
    browsers, JSON with a machine-readable reason for API clients."""
    ctx: RequestContext = request[_REFUSED]
    status, headers, body = ctx.csrf_answer(failure)
    out = CIMultiDict(headers)
    out.popall(hdrs.CONTENT_LENGTH, None)
    return web.Response(body=body, status=status, headers=out)


async def _form_token(request: web.Request, ctx: RequestContext) -> str | None:
    """The form's token, found by satchel's capped search; the body stays readable for
    the handler (``await request.post()``, ``request.multipart()``)."""
    length = request.content_length
    if not (ctx.wants_form_token() and length is not None and 0 < length <= csrf.MAX_FORM_BYTES):
        return None
    body = await request.read()  # cached: request.read(), .text(), .post() see it again

    async def chunks() -> Any:
        yield body

    # the whole header: aiohttp's content_type drops the multipart boundary
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    token, _ = await csrf.atoken_from_form(content_type, chunks())
    if request.content_type == "multipart/form-data":
        # aiohttp parses multipart forms from the payload stream, not the cached body:
        # hand it a stream that replays the body
        replay = StreamReader(request.protocol, 2**16, loop=asyncio.get_running_loop())
        replay.feed_data(body)
        replay.feed_eof()
        request._payload = replay
    return token


def csrf_exempt(handler: F) -> F:
    """Exempt a handler from the CSRF check (e.g. a webhook with its own signature)."""
    setattr(handler, _EXEMPT, True)
    return handler


def csrf_token(request: web.Request) -> str:
    """A CSRF token for this request, masked afresh: put it in a hidden ``csrf_token``
    form field or send it as the ``X-CSRF-Token`` header."""
    return _context(request).csrf_token()


# -- the session and the helpers for handlers -------------------------------------------------


async def get_session(request: web.Request) -> AiohttpSession:
    """The request's session (aiohttp-session's ``get_session``); already loaded."""
    session = request.get(SESSION_KEY)
    if not isinstance(session, AiohttpSession):
        raise SessionStateError("satchel is not set up on this app: call setup(app, ...)")
    return session


async def new_session(request: web.Request) -> AiohttpSession:
    """aiohttp-session's ``new_session``, made safe: the current session is ended (its
    record deleted at commit, not left alive) and writes start a new one under a new ID.
    To log a user in, :func:`login` is the one to call: it keeps an anonymous visitor's
    data and rotates the ID."""
    session = await get_session(request)
    session.clear()
    return session


def _context(request: web.Request) -> RequestContext:
    ctx = request.get(CONTEXT_KEY)
    if not isinstance(ctx, RequestContext):
        raise SessionStateError("satchel is not set up on this app: call setup(app, ...)")
    return ctx


async def login(
    request: web.Request, user_id: str, *, methods: Iterable[str] = (), level: str | None = None
) -> AiohttpSession:
    """Log in: new session ID, user bound, device and authentication recorded, CSRF
    secret rotated (:func:`satchel.login`)."""
    session = await get_session(request)
    auth.login(session, user_id, methods=methods, level=level)
    return session


async def reauthenticate(
    request: web.Request, *, methods: Iterable[str] = (), level: str | None = None
) -> AiohttpSession:
    """The user proved who they are again (:func:`satchel.reauthenticate`): new session
    ID, fresh authentication facts; what :func:`require_recent_auth` asks for."""
    session = await get_session(request)
    auth.reauthenticate(session, methods=methods, level=level)
    return session


async def impersonate(request: web.Request, user_id: str) -> AiohttpSession:
    """The logged-in administrator acts as ``user_id`` (:func:`satchel.impersonate`: who
    may is the app's check, made first)."""
    session = await get_session(request)
    auth.impersonate(session, user_id)
    return session


async def stop_impersonating(request: web.Request) -> str:
    """Back to the administrator's own session without a new login
    (:func:`satchel.stop_impersonating`); the administrator's user ID."""
    return auth.stop_impersonating(await get_session(request))


async def logout(request: web.Request) -> None:
    """Log out: the record is deleted and the cookie expired when the response goes."""
    auth.logout(await get_session(request))


async def sessions_of(request: web.Request) -> list[SessionInfo]:
    """The logged-in user's sessions, by public handle (this one marked ``current``)."""
    return await auth.asessions_of(await get_session(request))


async def revoke_session(request: web.Request, handle: str) -> bool:
    return await auth.arevoke(await get_session(request), handle)


async def logout_everywhere(request: web.Request) -> int:
    return await auth.alogout_everywhere(await get_session(request))


async def logout_other_devices(request: web.Request) -> int:
    """End the user's other sessions, e.g. after a password change."""
    return await auth.alogout_other_devices(await get_session(request))


def login_required(handler: F) -> F:
    """Redirect to ``/login`` (HTML) or answer 401 JSON (API) without a logged-in user.
    Another login URL: ``login_required_to("/signin")``."""
    return login_required_to("/login")(handler)


def login_required_to(login_url: str) -> Callable[[F], F]:
    """:func:`login_required` with the login page at ``login_url``."""
    return _guarding(Policy(login_url, (), API_PREFIXES))


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    allow_impersonation: bool = False,
) -> Callable[[F], F]:
    """As :func:`login_required`, and the user's latest authentication at most ``max_age``
    seconds old (None: the ``reauth_max_age`` option, 300 s unless set), at ``level`` or
    stronger (:class:`satchel.guard.RecentAuth`): else a browser gets a 303 to
    ``reauth_url?next=...``, an API client (JSON ``Accept``, a path under ``/api/``) 401
    ``{"error": "reauthentication_required", "level": ..., "max_age": ...}``. While an
    administrator impersonates the user: 403, unless ``allow_impersonation``. Pair it
    with :func:`reauthenticate` in the re-authentication handler."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    return _guarding(Policy.recent_auth(login_url, reauth_url, needs))


def _guarding(policy: Policy) -> Callable[[F], F]:
    """The decorator of a guard: the handler runs when the session meets ``policy``;
    else the refusal :class:`satchel.guard.Policy` words, never cached."""

    def wrap(handler: F) -> F:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await get_session(request)
            resolved = policy.resolved(session)
            reason = resolved.unmet(session)
            if reason is not None:
                status, headers, body = resolved.refusal(
                    request.path,
                    request.rel_url.raw_query_string,
                    request.headers.get(hdrs.ACCEPT, ""),
                    reason,
                )
                out = CIMultiDict(headers)
                out[hdrs.CACHE_CONTROL] = "no-store"
                return web.Response(body=body, status=status, headers=out)
            response: web.StreamResponse = await handler(request)
            return response

        guarded.__name__, guarded.__doc__ = handler.__name__, handler.__doc__
        if getattr(handler, _EXEMPT, False):
            setattr(guarded, _EXEMPT, True)
        return guarded  # type: ignore[return-value]

    return wrap
