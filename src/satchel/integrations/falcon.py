"""Falcon: one middleware component for ``falcon.App`` (WSGI, the stores' sync path) and
``falcon.asgi.App`` (ASGI, their async path); the session is ``req.context.session``.

    sessions = SatchelMiddleware(store="redis://localhost:6379/0", secret_keys=[...])
    app = falcon.App(middleware=[sessions])        # or falcon.asgi.App(middleware=[sessions])
    sessions.add_error_handlers(app)              # 503 when the store fails in a responder

On WSGI the session loads on first access (a request that never looks costs no store
call); on ASGI it loads before the responder, so reading it there never blocks. CSRF is
checked before the responder on unsafe methods (the ``csrf_token`` form field, found by
satchel's capped search and put back for the responder, or the ``X-CSRF-Token`` header);
a refusal is satchel's 403. Changes are committed when the responder is done, unless the
status is 5xx.

Sensitive responders take a hook, ``@falcon.before(require_recent_auth(max_age=300))``
(``arequire_recent_auth`` on ASGI): a user whose latest authentication is older or weaker
is sent to ``/reauth?next=...`` (401 JSON for API clients; 403 while an administrator
impersonates the user), as :class:`satchel.guard.Policy` decides on every path;
``reauthenticate_user(req)``, ``impersonate_user(req, user_id)`` and
``stop_impersonating(req)`` are the views' side.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Unpack

from . import missing_framework

try:
    import falcon
    import falcon.asgi
    from falcon.asgi.stream import BoundedStream
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "falcon") from None

from .. import auth, csrf
from ..cookie import CookieStore
from ..dbsc.protocol import Answer
from ..errors import UNAVAILABLE_BODY, SessionStateError, StoreError
from ..guard import DEFAULT_LOGIN_URL, DEFAULT_REAUTH_URL, Policy, RecentAuth
from ..log import logger
from ..options import DEFAULT_STORE, SessionOptions, build
from ..request import RequestContext, context_of
from ..session import Session
from ..stores.base import Store
from ..transport import RETRY_AFTER, plain_headers, with_session_headers
from ..wsgi import open_lazily

__all__ = [
    "SatchelMiddleware",
    "arequire_login",
    "arequire_recent_auth",
    "csrf_token",
    "impersonate_user",
    "login_user",
    "logout_user",
    "reauthenticate_user",
    "require_login",
    "require_recent_auth",
    "session_of",
    "stop_impersonating",
]

_ANSWERED = "satchel_answered"
"""``req.context`` flag: satchel answered the request itself (a CSRF refusal, a store
outage while loading, a device-binding refusal): nothing to commit."""


class SatchelMiddleware:
    """``SatchelMiddleware(store="sqlite:///satchel.db", secret_keys=[...], ...)``: the
    options of :class:`satchel.asgi.SessionMiddleware` (docs/configuration.md). One
    instance serves one app, WSGI or ASGI."""

    def __init__(
        self, store: str | Store | CookieStore = DEFAULT_STORE, **options: Unpack[SessionOptions]
    ) -> None:
        self.runtime = build(store, options)
        self.store, self.backend, self.policy = self.runtime

    def add_error_handlers(self, app: falcon.App[Any, Any]) -> None:
        """Answer a :class:`~satchel.errors.StoreError` raised in a responder (the store
        went down while the session loaded or saved) with a plain 503, as the middleware
        does; without it Falcon answers 500."""
        if isinstance(app, falcon.asgi.App):
            app.add_error_handler(StoreError, _astore_unavailable)
        else:
            app.add_error_handler(StoreError, _store_unavailable)

    # -- WSGI ---------------------------------------------------------------------------------

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = open_lazily(self.backend, self.policy, Session(), req.env)
        req.context.session = ctx.session
        try:
            if self._answered_by_device(req, resp, ctx):
                return
            failure = ctx.csrf_check(self._form_token(req, ctx)) if ctx.csrf_applies() else None
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            _unavailable(resp)
            _answer(req, resp, None)
            return
        if failure is not None:
            _answer(req, resp, ctx.csrf_answer(failure))

    @staticmethod
    def _form_token(req: falcon.Request, ctx: RequestContext) -> str | None:
        """The form's token (satchel's capped search); the body read is put back for the
        responder (``req.stream``, ``req.get_media()``)."""
        if not ctx.wants_form_token():
            return None
        length = req.content_length or 0
        if not 0 < length <= csrf.MAX_FORM_BYTES:
            return None
        body = req.stream.read(length)
        req.stream = req.env["wsgi.input"] = io.BytesIO(body)
        return csrf.token_from_form(req.content_type or "", body)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        ctx = _context(req)
        if ctx is not None:
            if ctx.finish(resp.status_code) is not None:
                _unavailable(resp)
            _session_headers(ctx, resp)
        _end(req, resp)

    # -- ASGI ---------------------------------------------------------------------------------

    async def process_request_async(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        scope = req.scope  # (its raw headers may be an iterator Falcon has consumed)
        root: str = scope.get("root_path", "")
        path: str = scope.get("path", "/")
        client = scope.get("client")
        ctx = RequestContext.build(
            self.backend,
            self.policy,
            Session(),
            method=req.method,
            path=path,
            headers=dict(req.headers),
            peer=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            app_path=path[len(root) :] or "/" if root and path.startswith(root) else None,
        )
        ctx.mount = root
        req.context.session = ctx.session
        try:
            if ctx.ticket is not None:
                await ctx.aopen()
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            _unavailable(resp)
            _answer(req, resp, None)
            return
        if self._answered_by_device(req, resp, ctx):
            return
        if ctx.csrf_applies():
            failure = ctx.csrf_check(await _aform_token(req, ctx))
            if failure is not None:
                _answer(req, resp, ctx.csrf_answer(failure))

    async def process_response_async(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        ctx = _context(req)
        if ctx is not None:
            if await ctx.afinish(resp.status_code) is not None:
                _unavailable(resp)
            _session_headers(ctx, resp)
        _end(req, resp)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        """ASGI lifespan shutdown: the store's connections are closed."""
        if self.store is not None:
            await self.store.aclose()

    # -- both ---------------------------------------------------------------------------------

    def _answered_by_device(
        self, req: falcon.Request, resp: falcon.Response, ctx: RequestContext
    ) -> bool:
        """A device-binding endpoint's answer, or the refusal of a session that cannot
        prove its device, in place of the responder (:meth:`RequestContext.device_answer`)."""
        if not self.policy.device.enabled:
            return False
        answer: Answer | None = ctx.device_answer()
        if answer is None:
            return False
        _respond(resp, answer.status, answer.headers, answer.body)
        resp.complete = True
        if not answer.commit:
            setattr(req.context, _ANSWERED, True)
        return True


async def _aform_token(req: falcon.asgi.Request, ctx: RequestContext) -> str | None:
    """The async twin of ``_form_token``: the body is read from the ASGI stream and a
    stream over the same bytes is given back to the request."""
    if not ctx.wants_form_token():
        return None

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in req.stream:
            yield chunk

    token, body = await csrf.atoken_from_form(req.content_type or "", chunks())
    if body is not None:
        req._stream = BoundedStream(_replay(body), content_length=len(body))
    return token


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _end(req: falcon.Request, resp: falcon.Response) -> None:
    """The request is over (process_response is the last hook): its context ends, unless
    the app still runs after it (a streamed body, a scheduled task): Falcon has no later
    hook, so that context waits for the garbage collector."""
    if resp.stream is not None or getattr(resp, "sse", None) is not None:
        return
    if getattr(resp, "_registered_callbacks", None):  # (resp.schedule(): no public view)
        return
    session = getattr(req.context, "session", None)
    if session is not None and isinstance(session.binding, RequestContext):
        session.binding.end()


def _context(req: falcon.Request) -> RequestContext | None:
    if getattr(req.context, _ANSWERED, False):
        return None
    session = getattr(req.context, "session", None)
    return None if session is None else context_of(session)


def _answer(
    req: falcon.Request,
    resp: falcon.Response,
    answer: tuple[int, list[tuple[str, str]], bytes] | None,
) -> None:
    """satchel answers in place of the responder; nothing is committed."""
    if answer is not None:
        _respond(resp, *answer)
    setattr(req.context, _ANSWERED, True)
    resp.complete = True


def _respond(
    resp: falcon.Response, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    resp.status = status
    resp.text = resp.media = resp.stream = None
    resp.data = body
    for name, value in headers:
        if name.lower() != "content-length":  # Falcon counts the body itself
            resp.set_header(name, value)


def _unavailable(resp: falcon.Response) -> None:
    """The store-unavailable answer: a plain 503, no details."""
    for name in resp.headers:
        resp.delete_header(name)
    _respond(resp, 503, plain_headers(UNAVAILABLE_BODY, RETRY_AFTER), UNAVAILABLE_BODY)


def _store_unavailable(
    req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any
) -> None:
    logger.error("session store unavailable: %s", ex)
    _unavailable(resp)


async def _astore_unavailable(
    req: falcon.asgi.Request,
    resp: falcon.asgi.Response | None,
    ex: Exception,
    params: Any,
    ws: falcon.asgi.WebSocket | None = None,
) -> None:
    if resp is None:  # a WebSocket route (it has no session of satchel's)
        logger.error("session store unavailable: %s", ex)
        if ws is not None:
            await ws.close(1011)
        return
    _store_unavailable(req, resp, ex, params)


def _session_headers(ctx: RequestContext, resp: falcon.Response) -> None:
    """What the session adds to the response: a token under the rule of
    :func:`~satchel.transport.with_session_headers` (never cached), or ``Vary`` for a
    response that read the session."""
    lines = ctx.session_lines()
    if lines:
        before = resp.headers
        for name in before:
            resp.delete_header(name)
        for name, value in with_session_headers(before.items(), lines):
            resp.append_header(name, value)
    elif ctx.read_session:
        resp.append_header("vary", ctx.transport.vary)


# -- helpers for responders -----------------------------------------------------------------------


def session_of(req: falcon.Request) -> Session:
    """The request's satchel session (``req.context.session``, typed)."""
    session = getattr(req.context, "session", None)
    if not isinstance(session, Session):
        raise SessionStateError("satchel's SatchelMiddleware is not installed on this app")
    return session


def csrf_token(req: falcon.Request) -> str:
    """A CSRF token for this request, masked afresh: for a hidden ``csrf_token`` form field
    or the ``X-CSRF-Token`` header."""
    return context_of(session_of(req)).csrf_token()


def login_user(
    req: falcon.Request, user_id: str, *, methods: Iterable[str] = (), level: str | None = None
) -> None:
    """Log in: new session ID, user bound, device and authentication recorded, CSRF
    secret rotated (:func:`satchel.login`)."""
    auth.login(session_of(req), user_id, methods=methods, level=level)


def reauthenticate_user(
    req: falcon.Request, *, methods: Iterable[str] = (), level: str | None = None
) -> None:
    """The user proved who they are again (:func:`satchel.reauthenticate`): new session
    ID, fresh authentication facts; what :func:`require_recent_auth` asks for."""
    auth.reauthenticate(session_of(req), methods=methods, level=level)


def impersonate_user(req: falcon.Request, user_id: str) -> None:
    """The logged-in administrator acts as ``user_id`` (:func:`satchel.impersonate`: who
    may is the app's check, made first)."""
    auth.impersonate(session_of(req), user_id)


def stop_impersonating(req: falcon.Request) -> str:
    """Back to the administrator's own session without a new login
    (:func:`satchel.stop_impersonating`); the administrator's user ID."""
    return auth.stop_impersonating(session_of(req))


def logout_user(req: falcon.Request) -> None:
    """Log out: the record deleted, the cookie expired."""
    auth.logout(session_of(req))


def require_login(req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
    """A ``@falcon.before(require_login)`` hook for WSGI responders: 401 without a
    logged-in user (``arequire_login`` on ASGI)."""
    if session_of(req).user_id is None:
        raise falcon.HTTPUnauthorized(title="authentication required")


async def arequire_login(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, params: Any
) -> None:
    """``@falcon.before(arequire_login)`` on ASGI responders."""
    require_login(req, resp, resource, params)


Hook = Callable[[falcon.Request, falcon.Response, Any, Any], None]
AsyncHook = Callable[[falcon.asgi.Request, falcon.asgi.Response, Any, Any], Awaitable[None]]


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    allow_impersonation: bool = False,
) -> Hook:
    """A hook for sensitive WSGI responders, ``@falcon.before(require_recent_auth(...))``
    (:func:`arequire_recent_auth` on ASGI): the user's latest authentication at most
    ``max_age`` seconds old (None: the ``reauth_max_age`` option, 300 s unless set), at
    ``level`` or stronger (:class:`satchel.guard.RecentAuth`). Else the responder does not
    run: a browser gets a 303 to ``reauth_url?next=...`` (to ``login_url`` when nobody is
    logged in), an API client (JSON ``Accept``, a path under ``/api/``) 401
    ``{"error": "reauthentication_required", "level": ..., "max_age": ...}``, and a session
    an administrator impersonates 403 unless ``allow_impersonation``; never cached."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    policy = Policy.recent_auth(login_url, reauth_url, needs)

    def recent_auth(req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        _check(policy, req)

    return recent_auth


def arequire_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    allow_impersonation: bool = False,
) -> AsyncHook:
    """``@falcon.before(arequire_recent_auth(...))`` on ASGI responders
    (:func:`require_recent_auth`)."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    policy = Policy.recent_auth(login_url, reauth_url, needs)

    async def recent_auth(
        req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, params: Any
    ) -> None:
        _check(policy, req)

    return recent_auth


def _check(policy: Policy, req: falcon.Request) -> None:
    """Raise :class:`falcon.HTTPStatus` (the responder skipped, the middleware's
    ``process_response`` still run) with the refusal :class:`satchel.guard.Policy` words,
    when the session does not meet it."""
    session = session_of(req)
    resolved = policy.resolved(session)
    reason = resolved.unmet(session)
    if reason is None:
        return
    status, headers, body = resolved.refusal(
        req.path, req.query_string, req.get_header("accept") or "", reason
    )
    raise falcon.HTTPStatus(
        status, headers=[*headers, ("cache-control", "no-store")], text=body.decode()
    )
