"""Quart: ``quart.session`` backed by a satchel store, the Flask extension on Quart.

    from satchel.integrations.quart import Satchel

    app = Quart(__name__)
    app.config["SATCHEL_STORE"] = "redis://localhost:6379/0"
    satchel = Satchel(app)          # or Satchel() ... satchel.init_app(app)

The same configuration as Flask's extension (``SATCHEL_*`` in ``app.config``,
``SECRET_KEY``, ``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``; explicit arguments
win), the same CSRF check before every view (``@satchel.exempt``), ``csrf_token()`` in
templates, login helpers, ``login_required``, ``require_recent_auth`` ("sudo mode") and
the impersonation helpers; shared with it in
:mod:`satchel.integrations.pallets`. Async throughout: the session is loaded on the store's
async path before the app's own ``before_request`` functions run, committed when the
response is finalised, and the helpers that reach the user's other sessions are
coroutines. A store that is down gives 503 (the app's error handler for
:class:`~satchel.errors.StoreError`); a WebSocket gets the session of its handshake, and
the cross-site handshake is refused.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from . import missing_framework

try:
    from quart import Quart, Response, current_app, g, request, session, websocket
    from quart.sessions import SessionInterface, SessionMixin
    from quart.wrappers import BaseRequestWebsocket
    from werkzeug.wrappers import Response as WerkzeugResponse
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "quart") from None

from .. import auth, csrf
from ..asgi import context_from_scope
from ..errors import CSRFError, StoreError
from ..guard import DEFAULT_REAUTH_URL, RecentAuth
from ..log import logger
from ..printable import printable
from ..request import SCOPE_KEY, RequestContext, context_of, csrf_token
from ..user_sessions import SessionInfo
from .pallets import (
    EXTENSION,
    Answer,
    Extension,
    PalletsSession,
    acheck_csrf,
    add_session_headers,
    csrf_answer,
    guard_refusal,
    reads_form,
    store_unavailable,
)

__all__ = [
    "QuartSession",
    "Satchel",
    "current_user_id",
    "impersonate_user",
    "login_required",
    "login_user",
    "logout_everywhere",
    "logout_other_devices",
    "logout_user",
    "reauthenticate_user",
    "require_recent_auth",
    "revoke_session",
    "stop_impersonating",
    "user_sessions",
]

F = TypeVar("F", bound=Callable[..., Any])
LOAD_FAILURE = "satchel.load_failure"
"""Where a store failure met while opening the session waits in the scope: it is raised
before the view, so the app's error handler answers it."""


class QuartSession(PalletsSession, SessionMixin):  # type: ignore[override]
    """A satchel session that Quart accepts as ``quart.session``
    (:class:`~satchel.integrations.pallets.PalletsSession`: ``permanent`` and
    ``PERMANENT_SESSION_LIFETIME`` honoured)."""

    __slots__ = ()

    @staticmethod
    def state() -> dict[str, Any] | None:
        return current_app.extensions.get(EXTENSION)


class _Interface(SessionInterface):
    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> QuartSession:
        _, backend, policy = app.extensions[EXTENSION]["runtime"]
        session = QuartSession()
        scope = _scope(request)
        ctx = context_from_scope(backend, policy, scope, session)
        scope[SCOPE_KEY] = ctx
        if ctx.ticket is not None:
            try:
                if backend.store is None:  # nothing to wait for (cookie sessions)
                    ctx.load(session)
                else:
                    await ctx.aopen()
            except StoreError as exc:  # answered before the view (_raise_load_failure)
                scope[LOAD_FAILURE] = exc
        return session

    async def save_session(
        self, app: Quart, session: SessionMixin, response: Response | WerkzeugResponse | None
    ) -> None:
        if not isinstance(session, QuartSession):
            return
        ctx = context_of(session)
        if response is None:  # a WebSocket, after its handler: no response to carry a token
            if session.needs_commit:
                await ctx.asave(session)
                if ctx.outgoing is not None:
                    logger.warning(
                        "a WebSocket handler created or regenerated a session; the client "
                        "cannot receive its token"
                    )
            return
        failure = await ctx.afinish(response.status_code)
        if failure is not None:  # answered by the app's error handler for StoreError
            answer = await app.make_response(await app.handle_user_exception(failure))
            response.status_code = answer.status_code
            data = answer.get_data()
            response.set_data(await data if inspect.isawaitable(data) else data)
            response.headers.clear()
            response.headers.extend(answer.headers)
        # every response, a 503 included, carries a token a commit issued (e.g. of a
        # record created before a later store call failed)
        add_session_headers(ctx, response.headers)


class Satchel(Extension):
    """The Quart extension."""

    def init_app(self, app: Quart) -> None:
        app.extensions[EXTENSION] = self.make_state(app)
        app.session_interface = _Interface()  # type: ignore[assignment]
        first: list[Callable[[], Any]] = [_raise_load_failure]
        if app.extensions[EXTENSION]["runtime"].policy.device.enabled:
            # device-bound sessions: endpoints and refusals answer before any other
            # before_request function (the app's own included) and the CSRF check
            first.append(_check_device)
        app.before_request_funcs.setdefault(None, [])[0:0] = first
        app.before_request(self._check_csrf)
        app.before_websocket_funcs.setdefault(None, []).insert(0, _check_websocket)
        app.asgi_app = _ending(app.asgi_app)  # type: ignore[method-assign]
        app.jinja_env.globals["csrf_token"] = lambda: csrf_token(request)
        app.register_error_handler(StoreError, _store_unavailable)
        if CSRFError not in app.error_handler_spec[None][None]:  # the app's own wins
            app.register_error_handler(CSRFError, _csrf_failure)

    async def _check_csrf(self) -> None:
        ctx: RequestContext = _scope(request)[SCOPE_KEY]
        if not self.checks_csrf(ctx, current_app.view_functions.get(request.endpoint or "")):
            return
        body = None
        if reads_form(ctx, request.content_length, unknown=True):
            # the body stays cached for the view (await request.form, request.get_data())
            body = await request.get_data(True, False, False)
        await acheck_csrf(ctx, request.content_type, body)


def _scope(connection: BaseRequestWebsocket) -> dict[str, Any]:
    """The ASGI scope of a Quart request or WebSocket (satchel keeps its context there)."""
    return cast(dict[str, Any], connection.scope)


async def _raise_load_failure() -> None:
    failure: StoreError | None = _scope(request).get(LOAD_FAILURE)
    if failure is not None:
        raise failure


async def _check_device() -> Response | None:
    """The answer of a DBSC endpoint, or the refusal of a session that cannot prove its
    device, in place of the view (:meth:`RequestContext.device_answer`)."""
    ctx: RequestContext = _scope(request)[SCOPE_KEY]
    answer = ctx.device_answer()
    if answer is None:
        return None
    response: Response = current_app.response_class(answer.body, status=answer.status)
    response.headers.extend(answer.headers)
    return response


def _ending(asgi_app: Callable[[Any, Any, Any], Awaitable[None]]) -> Any:
    """``asgi_app``, the request's context ended when it returns: after the response's
    body and the teardown functions (copied contexts and streams run before)."""

    async def ending(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await asgi_app(scope, receive, send)
        finally:
            ctx: RequestContext | None = scope.get(SCOPE_KEY)
            if ctx is not None:
                ctx.end()

    return ending


async def _check_websocket() -> Response | None:
    """A WebSocket handshake whose session could not be loaded answers 503; one of a
    device-bound session that cannot prove its device, or a cross-site one (cross-site
    WebSocket hijacking: the browser sends the cookie), is refused 403."""
    scope = _scope(websocket)
    failure: StoreError | None = scope.get(LOAD_FAILURE)
    if failure is not None:
        raise failure
    ctx: RequestContext = scope[SCOPE_KEY]
    if ctx.policy.device.enabled and ctx.device_answer() is not None:
        # a bound session that cannot prove its device (or a device-binding endpoint,
        # which is no WebSocket): refused, as the ASGI middleware closes it
        return current_app.response_class("device not verified", status=403)
    options = ctx.policy.csrf
    if options.enabled and (ctx.transport.checks_csrf or ctx.carries_cookie):
        reason = csrf.origin_refusal(options, ctx.headers, ctx.own_origin)
        if reason is not None:
            logger.warning("WebSocket refused: %s", printable(reason))
            return current_app.response_class("cross-site WebSocket refused", status=403)
    return None


async def _store_unavailable(exc: StoreError) -> Answer:
    return store_unavailable(exc)


async def _csrf_failure(exc: CSRFError) -> Answer:
    """satchel's default CSRF answer (register your own Quart error handler for
    :class:`~satchel.errors.CSRFError` to answer otherwise)."""
    return csrf_answer(_scope(request)[SCOPE_KEY], exc.failure)


def _session() -> QuartSession:
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, QuartSession), "Satchel(app) is not set up on this app"
    return current


# -- helpers for views ---------------------------------------------------------------------------


def login_user(user_id: str, *, methods: Iterable[str] = (), level: str | None = None) -> None:
    """Log in: new session ID, user bound, device and authentication recorded, CSRF
    secret rotated (:func:`satchel.login`)."""
    auth.login(_session(), user_id, methods=methods, level=level)


def reauthenticate_user(*, methods: Iterable[str] = (), level: str | None = None) -> None:
    """The user proved who they are again (:func:`satchel.reauthenticate`): new session
    ID, fresh authentication facts; what :func:`require_recent_auth` asks for."""
    auth.reauthenticate(_session(), methods=methods, level=level)


def impersonate_user(user_id: str) -> None:
    """The logged-in administrator acts as ``user_id`` (:func:`satchel.impersonate`: who
    may is the app's check, made first)."""
    auth.impersonate(_session(), user_id)


def stop_impersonating() -> str:
    """Back to the administrator's own session without a new login
    (:func:`satchel.stop_impersonating`); the administrator's user ID."""
    return auth.stop_impersonating(_session())


def logout_user() -> None:
    """Log out: the record is deleted and the cookie expired when the response goes."""
    auth.logout(_session())


def current_user_id() -> str | None:
    return _session().user_id


async def user_sessions() -> list[SessionInfo]:
    """The logged-in user's sessions, by public handle (this one marked ``current``)."""
    return await auth.asessions_of(_session())


async def revoke_session(handle: str) -> bool:
    return await auth.arevoke(_session(), handle)


async def logout_everywhere() -> int:
    return await auth.alogout_everywhere(_session())


async def logout_other_devices() -> int:
    """End the user's other sessions, e.g. after a password change."""
    return await auth.alogout_other_devices(_session())


def login_required(view: F) -> F:
    """Redirect to the login URL (HTML) or answer 401 JSON (API) without a logged-in user."""
    return _guarded(view, None, DEFAULT_REAUTH_URL)


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    allow_impersonation: bool = False,
) -> Callable[[F], F]:
    """As :func:`login_required`, and the user's latest authentication at most ``max_age``
    seconds old (None: the ``reauth_max_age`` option, 300 s unless set), at ``level`` or
    stronger (:class:`satchel.guard.RecentAuth`): else the browser goes to
    ``reauth_url?next=...``, an API client gets 401 ``{"error":
    "reauthentication_required", ...}``. Pair it with :func:`reauthenticate_user` in the
    re-authentication view. While an administrator impersonates the user: 403, unless
    ``allow_impersonation``."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    return lambda view: _guarded(view, needs, reauth_url)


def _guarded(view: F, needs: RecentAuth | None, reauth_url: str) -> F:
    @functools.wraps(view)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        current = _session()
        refusal = guard_refusal(current, request, needs, reauth_url)
        if refusal is not None:
            return refusal
        g.satchel_user = current.user_id
        return await current_app.ensure_async(view)(*args, **kwargs)

    return guarded  # type: ignore[return-value]
