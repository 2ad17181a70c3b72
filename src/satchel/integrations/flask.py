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
    from werkzeug.datastructures import Headers
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "flask") from None

from .. import auth, csrf
from .. import option_schema as schema
from ..conventions import flask_layers, flask_permanent_lifetime
from ..errors import UNAVAILABLE_BODY, CSRFError, StoreError
from ..guard import DEFAULT_REAUTH_URL, LOGIN_REQUIRED, Policy, RecentAuth
from ..log import logger
from ..options import Runtime, SessionOptions, build
from ..request import CONTEXT_KEY, RequestContext, context_of, csrf_token
from ..session import Session
from ..settings import Settings, load_settings
from ..transport import RETRY_AFTER, plain_headers, with_session_headers, with_vary
from ..user_sessions import SessionInfo
from ..wsgi import open_lazily

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "satchel"


class FlaskSession(Session, SessionMixin):  # type: ignore[override]
    """A satchel session that Flask accepts as ``flask.session``. ``permanent`` maps to a
    persistent cookie; with ``PERMANENT_SESSION_LIFETIME`` changed from Flask's default, a
    permanent session also ends on the server that long after it began (idle and absolute
    timeout), else satchel's timeouts hold."""

    __slots__ = ()

    @property
    def permanent(self) -> bool:
        pending = self.pending_meta.get("persistent")
        if pending is not None:
            return bool(pending)
        meta = self.meta
        return bool(meta and meta.persistent)

    @permanent.setter
    def permanent(self, value: bool) -> None:
        lifetime = _permanent_lifetime()
        if lifetime is None:  # PERMANENT_SESSION_LIFETIME left at Flask's default
            if value != self.permanent:
                self.set_expiry(persistent=bool(value))
            return
        meta = self.meta
        if value:  # the lifetime bounds the session on the server, not only the cookie
            idle = min(lifetime, current_app.extensions[EXTENSION]["idle_cap"] or lifetime)
            if not (self.permanent and meta is not None and meta.idle_timeout == idle):
                self.set_expiry(persistent=True, idle_timeout=idle, absolute_timeout=lifetime)
        elif self.permanent:  # back to the app's own timeouts and a browser-session cookie
            idle, absolute = current_app.extensions[EXTENSION]["timeouts"]
            self.set_expiry(persistent=False, idle_timeout=idle, absolute_timeout=absolute)

    # Flask marks the session accessed when the proxy is touched, and apps set ``modified``
    # after mutating nested values; satchel compares encodings, so both only hint.
    # (Flask sets ``accessed`` on every use of the ``flask.session`` proxy: kept cheap)
    @property
    def accessed(self) -> bool:
        return self._accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        if value:
            self._accessed = True

    @property
    def modified(self) -> bool:
        return Session.modified.fget(self)  # type: ignore[attr-defined,no-any-return]

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.mark_modified()


class _Interface(SessionInterface):
    def __init__(self, ext: Satchel) -> None:
        self.ext = ext

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
        _add_session_headers(ctx, response.headers)


def _add_session_headers(ctx: RequestContext, headers: Headers) -> None:
    """What the session adds to the response, in place: most responses carry no token
    and keep their headers as they are (one that read the session only joins ``Vary``);
    one that carries a token gets them rebuilt under the rule of
    :func:`~satchel.transport.session_headers`."""
    lines = ctx.session_lines()
    if lines:
        merged = with_session_headers(headers.items(), lines)
        headers.clear()
    elif ctx.read_session:
        varies = headers.getlist("vary")
        if not varies:  # (most responses)
            headers.add("vary", ctx.transport.vary)
            return
        headers.remove("vary")
        merged = with_vary([("vary", value) for value in varies], ctx.transport.vary)
    else:
        return
    for name, value in merged:
        headers.add(name, value)


_CODE_ONLY = ("on_event", "clock")
"""Options only code can give (a callable): ``Satchel(app, on_event=...)``."""


class Satchel:
    """The Flask extension."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        valid = {*schema.FLASK_KEYS.values(), *_CODE_ONLY}
        schema.refuse_unknown(options, valid, "Satchel(...)")
        self.options = options
        self._exempt: set[str] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = self._settings(app)
        app.extensions[EXTENSION] = {
            "ext": self,
            "runtime": build(settings.store, self._middleware_options(settings)),
            "login_url": self.options.get("login_url")
            or app.config.get("SATCHEL_LOGIN_URL", schema.default("login_url")),
            # seconds of a permanent session (session.permanent = True); None: satchel's
            "permanent_lifetime": _capped(
                flask_permanent_lifetime(app.config, app.default_config), settings
            ),
            "timeouts": (settings.idle_timeout, settings.absolute_timeout),
            # an explicit idle_timeout also bounds a permanent session's (satchel's wins)
            "idle_cap": settings.idle_timeout if "idle_timeout" in settings.sources else None,
        }
        app.session_interface = _Interface(self)
        if app.extensions[EXTENSION]["runtime"].policy.device.enabled:
            # device-bound sessions: endpoints and refusals answer before any other
            # before_request function (the app's own included) and the CSRF check
            app.before_request_funcs.setdefault(None, []).insert(0, _check_device)
        app.before_request(self._check_csrf)
        app.jinja_env.globals["csrf_token"] = lambda: csrf_token(request.environ)
        app.register_error_handler(StoreError, _store_unavailable)
        if CSRFError not in app.error_handler_spec[None][None]:  # the app's own wins
            app.register_error_handler(CSRFError, _csrf_failure)

    def _middleware_options(self, settings: Settings) -> SessionOptions:
        options = settings.middleware_options()
        for name in _CODE_ONLY:
            if name in self.options:
                options[name] = self.options[name]  # type: ignore[literal-required]
        return options

    def _settings(self, app: Flask) -> Settings:
        """Explicit arguments > ``SATCHEL_*`` in app.config > Flask's own settings the app
        changed from Flask's defaults (``SESSION_COOKIE_*``; ``SECRET_KEY`` and
        ``SECRET_KEY_FALLBACKS`` when ``SATCHEL_SECRET_KEYS`` is not set) > satchel's
        defaults (docs/configuration.md, "Framework conventions")."""
        given = [k for k in app.config if k.startswith(schema.ENV_PREFIX)]
        schema.refuse_unknown(given, schema.FLASK_KEYS, "app.config")
        from_config = {
            name: app.config[key]
            for key, name in schema.FLASK_KEYS.items()
            if key in app.config and name in schema.SETTINGS
        }
        if "secret_keys" not in from_config and app.config.get("SECRET_KEY"):
            from_config["secret_keys"] = [
                app.config["SECRET_KEY"],
                *(app.config.get("SECRET_KEY_FALLBACKS") or []),
            ]
        layers = {**flask_layers(app.config, app.default_config), "app.config": from_config}
        explicit = {
            k: v for k, v in self.options.items() if k != "login_url" and k not in _CODE_ONLY
        }
        return load_settings(env={}, use_file=False, layers=layers, **explicit)

    @staticmethod
    def runtime(app: Flask) -> Runtime:
        runtime: Runtime = app.extensions[EXTENSION]["runtime"]
        return runtime

    def exempt(self, view: F) -> F:
        """Exempt a view from the CSRF check (e.g. a webhook with its own signature)."""
        self._exempt.add(f"{view.__module__}.{view.__name__}")
        return view

    def _check_csrf(self) -> None:
        ctx: RequestContext = request.environ[CONTEXT_KEY]
        if not ctx.csrf_applies():  # a safe method, an exempt path: nothing to check
            return
        view = current_app.view_functions.get(request.endpoint or "")
        if view is not None and f"{view.__module__}.{view.__name__}" in self._exempt:
            return
        form_token = None
        length = request.content_length
        if ctx.wants_form_token() and length is not None and 0 < length <= csrf.MAX_FORM_BYTES:
            # satchel's capped search, not Werkzeug's full form parse; the body stays
            # cached for the view (request.form, request.get_data())
            body = request.get_data(cache=True)
            form_token = csrf.token_from_form(request.content_type or "", body)
        failure = ctx.csrf_check(form_token)
        if failure is not None:
            raise CSRFError(failure)


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


def _capped(lifetime: float | None, settings: Settings) -> float | None:
    """``PERMANENT_SESSION_LIFETIME`` under an explicit ``absolute_timeout``: the
    operator's hard limit wins (satchel's setting over Flask's own)."""
    if lifetime is None or "absolute_timeout" not in settings.sources:
        return lifetime
    return min(lifetime, settings.absolute_timeout)


def _permanent_lifetime() -> float | None:
    state = current_app.extensions.get(EXTENSION)  # (a session lives in a request)
    return None if state is None else state["permanent_lifetime"]


def _store_unavailable(exc: Exception) -> tuple[bytes, int, list[tuple[str, str]]]:
    """The default answer when the store is down (register your own Flask error handler
    for :class:`~satchel.errors.StoreError` to answer otherwise)."""
    logger.error("session store unavailable: %s", exc)
    return UNAVAILABLE_BODY, 503, plain_headers(UNAVAILABLE_BODY, RETRY_AFTER)


def _csrf_failure(exc: CSRFError) -> tuple[bytes, int, list[tuple[str, str]]]:
    """The default answer to a failed CSRF check: an HTML page with advice, JSON for API
    clients (register your own Flask error handler for
    :class:`~satchel.errors.CSRFError` to answer otherwise)."""
    ctx: RequestContext = request.environ[CONTEXT_KEY]
    status, headers, body = ctx.csrf_answer(exc.failure)
    return body, status, headers


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

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _session().user_id is None:
            return _refusal(LOGIN_REQUIRED, None, DEFAULT_REAUTH_URL)
        g.satchel_user = _session().user_id
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def require_recent_auth(
    *, max_age: float | None = 300.0, level: str | None = None, reauth_url: str = DEFAULT_REAUTH_URL
) -> Callable[[F], F]:
    """As :func:`login_required`, and the user's latest authentication at most ``max_age``
    seconds old, at ``level`` or stronger (:class:`satchel.guard.RecentAuth`): else the
    browser goes to ``reauth_url?next=...``, an API client gets 401
    ``{"error": "reauthentication_required", ...}``. Pair it with
    :func:`reauthenticate_user` in the re-authentication view."""
    needs = RecentAuth(max_age, level)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            reason = needs.unmet(_session())
            if reason is not None:
                return _refusal(reason, needs, reauth_url)
            g.satchel_user = _session().user_id
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def _refusal(reason: str, needs: RecentAuth | None, reauth_url: str) -> Any:
    """The refusal of :mod:`satchel.guard` (JSON 401 for API clients, else a 303 with a
    local ``next``), as a Flask response."""
    login_url = current_app.extensions[EXTENSION]["login_url"]
    policy = Policy(login_url, (), ("/api/",), reauth_url, needs)
    status, headers, body = policy.refusal(
        request.path, request.query_string.decode("latin-1"), request.headers.get("Accept", ""),
        reason,
    )  # fmt: skip
    return current_app.response_class(body, status=status, headers=[*headers])
