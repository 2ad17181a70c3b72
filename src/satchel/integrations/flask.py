"""Flask: ``flask.session`` backed by a satchel store.

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)
    app.config["SATCHEL_STORE"] = "redis://localhost:6379/0"
    satchel = Satchel(app)          # or Satchel() ... satchel.init_app(app)

Configuration comes from ``app.config`` as ``SATCHEL_<SETTING>`` keys (the settings of
docs/configuration.md); ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` serve as
``secret_keys`` when ``SATCHEL_SECRET_KEYS`` is not set; explicit arguments to
``Satchel(...)`` win over ``app.config``. CSRF is checked before every view (exempt one
with ``@satchel.exempt``); templates get ``csrf_token()``; a store that is down gives 503.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import missing_framework

try:
    from flask import Flask, Response, current_app, g, request, session
    from flask.sessions import SessionInterface, SessionMixin
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "flask") from None

from .. import auth
from ..errors import CSRFError, StoreError
from ..guard import DEFAULT_REAUTH_URL, RecentAuth
from ..request import CONTEXT_KEY, RequestContext, context_of, csrf_token
from ..user_sessions import SessionInfo
from ..wsgi import open_lazily
from .pallets import (
    EXTENSION,
    Extension,
    PalletsSession,
    add_session_headers,
    check_csrf,
    csrf_answer,
    guard_refusal,
    reads_form,
    store_unavailable,
)

F = TypeVar("F", bound=Callable[..., Any])


class FlaskSession(PalletsSession, SessionMixin):  # type: ignore[override]
    """A satchel session that Flask accepts as ``flask.session``
    (:class:`~satchel.integrations.pallets.PalletsSession`: ``permanent`` and
    ``PERMANENT_SESSION_LIFETIME`` honoured)."""

    __slots__ = ()

    @staticmethod
    def state() -> dict[str, Any] | None:
        return current_app.extensions.get(EXTENSION)


class _Interface(SessionInterface):
    def open_session(self, app: Flask, req: Any) -> FlaskSession:
        _, backend, policy = app.extensions[EXTENSION]["runtime"]
        session = FlaskSession()
        open_lazily(backend, policy, session, req.environ)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        ctx = context_of(session)
        failure = ctx.finish(response.status_code)
        if failure is not None:  # answered by the app's error handler for StoreError
            answer = app.make_response(app.handle_user_exception(failure))
            response.status_code = answer.status_code
            response.set_data(answer.get_data())
            response.headers.clear()
            response.headers.extend(answer.headers)
        # every response, a 503 included, carries a token a commit issued (e.g. of a
        # record created before a later store call failed)
        add_session_headers(ctx, response.headers)
        if response.direct_passthrough:  # a file (send_file): nothing closes the response
            ctx.end()
        else:  # over once the server closes the response: after its body (a
            # stream_with_context generator too) and the teardown functions
            response.call_on_close(ctx.end)


class Satchel(Extension):
    """The Flask extension."""

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self.make_state(app)
        app.session_interface = _Interface()
        if app.extensions[EXTENSION]["runtime"].policy.device.enabled:
            # device-bound sessions: endpoints and refusals answer before any other
            # before_request function (the app's own included) and the CSRF check
            app.before_request_funcs.setdefault(None, []).insert(0, _check_device)
        app.before_request(self._check_csrf)
        app.jinja_env.globals["csrf_token"] = lambda: csrf_token(request.environ)
        app.register_error_handler(StoreError, store_unavailable)
        if CSRFError not in app.error_handler_spec[None][None]:  # the app's own wins
            app.register_error_handler(CSRFError, _csrf_failure)

    def _check_csrf(self) -> None:
        ctx: RequestContext = request.environ[CONTEXT_KEY]
        if not ctx.csrf_applies():  # most requests (a GET): no view looked up through proxies
            return
        if not self.checks_csrf(ctx, current_app.view_functions.get(request.endpoint or "")):
            return
        # the body stays cached for the view (request.form, request.get_data())
        body = request.get_data(cache=True) if reads_form(ctx, request.content_length) else None
        check_csrf(ctx, request.content_type, body)


def _check_device() -> Response | None:
    """The answer of a DBSC endpoint, or the refusal of a session that cannot prove its
    device, in place of the view (:meth:`RequestContext.device_answer`)."""
    ctx: RequestContext = request.environ[CONTEXT_KEY]
    answer = ctx.device_answer()
    if answer is None:
        return None
    response: Response = current_app.response_class(answer.body, status=answer.status)
    response.headers.extend(answer.headers)
    return response


def _csrf_failure(exc: CSRFError) -> tuple[bytes, int, list[tuple[str, str]]]:
    """satchel's default CSRF answer (register your own Flask error handler for
    :class:`~satchel.errors.CSRFError` to answer otherwise)."""
    return csrf_answer(request.environ[CONTEXT_KEY], exc.failure)


def _session() -> FlaskSession:
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, FlaskSession), "Satchel(app) is not set up on this app"
    return current


# -- helpers for views ---------------------------------------------------------------------------


def login_user(user_id: str, *, methods: Iterable[str] = (), level: str | None = None) -> None:
    """Log in: new session ID, user bound, device and authentication recorded, CSRF
    secret rotated (:func:`satchel.login`)."""
    auth.login(_session(), user_id, methods=methods, level=level)


def reauthenticate_user(*, methods: Iterable[str] = (), level: str | None = None) -> None:
    """The user proved who they are again (:func:`satchel.reauthenticate`)."""
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
    auth.logout(_session())


def current_user_id() -> str | None:
    return _session().user_id


def user_sessions() -> list[SessionInfo]:
    """The logged-in user's sessions, by public handle (this one marked ``current``)."""
    return auth.sessions_of(_session())


def revoke_session(handle: str) -> bool:
    return auth.revoke(_session(), handle)


def logout_everywhere() -> int:
    return auth.logout_everywhere(_session())


def logout_other_devices() -> int:
    """End the user's other sessions, e.g. after a password change."""
    return auth.logout_other_devices(_session())


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
    seconds old, at ``level`` or stronger (:class:`satchel.guard.RecentAuth`): else the
    browser goes to ``reauth_url?next=...``, an API client gets 401
    ``{"error": "reauthentication_required", ...}``. Pair it with
    :func:`reauthenticate_user` in the re-authentication view. While an administrator
    impersonates the user (:func:`satchel.impersonate`): 403, unless ``allow_impersonation``."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    return lambda view: _guarded(view, needs, reauth_url)


def _guarded(view: F, needs: RecentAuth | None, reauth_url: str) -> F:
    """``view`` behind the guard of :func:`satchel.integrations.pallets.guard_refusal`
    (shared with Quart: :class:`satchel.guard.Policy` decides, never cached)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current = _session()
        refusal = guard_refusal(current, request, needs, reauth_url)
        if refusal is not None:
            return refusal
        g.satchel_user = current.user_id
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
