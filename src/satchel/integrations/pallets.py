"""What the Flask and Quart extensions share.

Quart is built on Flask's sans-I/O app: both have ``app.config``, ``app.extensions``,
before-request functions, error handlers and Jinja globals, and both hand sessions to a
``SessionInterface``. Everything that neither does I/O nor reaches for the framework's
context-local proxies is written here once: reading the configuration, the extension's
state, ``session.permanent``, the CSRF exemptions, the headers a response gets, the
default answers. :mod:`satchel.integrations.flask` and :mod:`satchel.integrations.quart`
add their framework's I/O (sync and async) and proxies. No framework is imported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import csrf
from .. import option_schema as schema
from ..conventions import flask_layers, flask_permanent_lifetime
from ..csrf_failure import CSRFFailure
from ..errors import UNAVAILABLE_BODY, CSRFError
from ..guard import API_PREFIXES, Policy, RecentAuth
from ..log import logger
from ..options import Runtime, SessionOptions, build
from ..request import RequestContext
from ..session import Session
from ..settings import Settings, load_settings
from ..transport import RETRY_AFTER, plain_headers, with_session_headers, with_vary

if TYPE_CHECKING:
    from flask.sansio.app import App
    from werkzeug.datastructures import Headers

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "satchel"
"""The extension's key in ``app.extensions``."""

CODE_ONLY = ("on_event", "clock")
"""Options only code can give (a callable): ``Satchel(app, on_event=...)``."""

Answer = tuple[bytes, int, list[tuple[str, str]]]
"""A view's return value both frameworks accept: (body, status, headers)."""


class PalletsSession(Session):
    """A satchel session shaped as Flask's ``SessionMixin`` expects (``permanent``,
    ``accessed``, ``modified``). ``permanent`` maps to a persistent cookie; with
    ``PERMANENT_SESSION_LIFETIME`` changed from the framework's default, a permanent
    session also ends on the server that long after it began (idle and absolute
    timeout), else satchel's timeouts hold. Subclasses say where the app's extension
    state is (:meth:`state`: through their framework's ``current_app``)."""

    __slots__ = ()

    @staticmethod
    def state() -> dict[str, Any] | None:
        """The extension's state of the current app (None outside an app context)."""
        raise NotImplementedError

    @property
    def permanent(self) -> bool:
        pending = self.pending_meta.get("persistent")
        if pending is not None:
            return bool(pending)
        meta = self.meta
        return bool(meta and meta.persistent)

    @permanent.setter
    def permanent(self, value: bool) -> None:
        state = self.state()
        lifetime = None if state is None else state["permanent_lifetime"]
        if state is None or lifetime is None:  # PERMANENT_SESSION_LIFETIME left as it was
            if value != self.permanent:
                self.set_expiry(persistent=bool(value))
            return
        meta = self.meta
        if value:  # the lifetime bounds the session on the server, not only the cookie
            idle = min(lifetime, state["idle_cap"] or lifetime)
            if not (self.permanent and meta is not None and meta.idle_timeout == idle):
                self.set_expiry(persistent=True, idle_timeout=idle, absolute_timeout=lifetime)
        elif self.permanent:  # back to the app's own timeouts and a browser-session cookie
            idle, absolute = state["timeouts"]
            self.set_expiry(persistent=False, idle_timeout=idle, absolute_timeout=absolute)

    # The frameworks mark the session accessed when the proxy is touched, and apps set
    # ``modified`` after mutating nested values; satchel compares encodings, so both only
    # hint. (``accessed`` is set on every use of the ``session`` proxy: kept cheap)
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


class Extension:
    """The configuration half of ``Satchel(app)``, the same on Flask and Quart: options
    given to the constructor, ``SATCHEL_*`` in ``app.config``, the framework's own session
    settings, and the views exempt from CSRF. Subclasses install it (:meth:`init_app`)."""

    def __init__(self, app: Any = None, **options: Any) -> None:
        valid = {*schema.FLASK_KEYS.values(), *CODE_ONLY}
        schema.refuse_unknown(options, valid, "Satchel(...)")
        self.options = options
        self._exempt: set[str] = set()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        raise NotImplementedError

    def make_state(self, app: App) -> dict[str, Any]:
        """What the extension keeps in ``app.extensions["satchel"]``."""
        settings = self._settings(app)
        return {
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

    def _middleware_options(self, settings: Settings) -> SessionOptions:
        options = settings.middleware_options()
        for name in CODE_ONLY:
            if name in self.options:
                options[name] = self.options[name]  # type: ignore[literal-required]
        return options

    def _settings(self, app: App) -> Settings:
        """Explicit arguments > ``SATCHEL_*`` in app.config > the framework's own
        settings the app changed from their defaults (``SESSION_COOKIE_*``; ``SECRET_KEY``
        and ``SECRET_KEY_FALLBACKS`` when ``SATCHEL_SECRET_KEYS`` is not set) > satchel's
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
            k: v for k, v in self.options.items() if k != "login_url" and k not in CODE_ONLY
        }
        return load_settings(env={}, use_file=False, layers=layers, **explicit)

    @staticmethod
    def runtime(app: Any) -> Runtime:
        runtime: Runtime = app.extensions[EXTENSION]["runtime"]
        return runtime

    def exempt(self, view: F) -> F:
        """Exempt a view from the CSRF check (e.g. a webhook with its own signature)."""
        self._exempt.add(f"{view.__module__}.{view.__name__}")
        return view

    def checks_csrf(self, ctx: RequestContext, view: Callable[..., Any] | None) -> bool:
        """Whether this request must pass the CSRF check before ``view`` runs."""
        if not ctx.csrf_applies():  # a safe method, an exempt path: nothing to check
            return False
        return view is None or f"{view.__module__}.{view.__name__}" not in self._exempt


def reads_form(ctx: RequestContext, length: int | None, *, unknown: bool = False) -> bool:
    """Whether the CSRF check should read the body for a form token: a form, with no
    token header, of a known length up to :data:`satchel.csrf.MAX_FORM_BYTES` -- or of
    no stated length with ``unknown`` (Quart, whose own ``MAX_CONTENT_LENGTH`` caps what
    it buffers; the token search stops at the cap all the same)."""
    if length is None:
        return unknown and ctx.wants_form_token()
    return 0 < length <= csrf.MAX_FORM_BYTES and ctx.wants_form_token()


def check_csrf(ctx: RequestContext, content_type: str | None, body: bytes | None) -> None:
    """Raise :class:`~satchel.errors.CSRFError` if the request fails the check (the
    form token searched in ``body`` by satchel's capped search, not a full form parse)."""
    form_token = None if body is None else csrf.token_from_form(content_type or "", body)
    _raise_failure(ctx, form_token)


async def acheck_csrf(ctx: RequestContext, content_type: str | None, body: bytes | None) -> None:
    """:func:`check_csrf` on the async paths: the search yields to the event loop between
    slices of the body."""
    form_token = None
    if body is not None:
        form_token, _ = await csrf.atoken_from_form(content_type or "", _chunks(body))
    _raise_failure(ctx, form_token)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _raise_failure(ctx: RequestContext, form_token: str | None) -> None:
    failure = ctx.csrf_check(form_token)
    if failure is not None:
        raise CSRFError(failure)


def add_session_headers(ctx: RequestContext, headers: Headers) -> None:
    """What the session adds to the response, in place (Werkzeug headers, as both
    frameworks' responses have): most responses carry no token and keep their headers as
    they are (one that read the session only joins ``Vary``); one that carries a token
    gets them rebuilt under the rule of :func:`~satchel.transport.with_session_headers`."""
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


def guard_refusal(
    session: PalletsSession, request: Any, needs: RecentAuth | None, reauth_url: str
) -> Answer | None:
    """The refusal of a guarded view, None when ``session`` passes: ``needs`` None, a
    logged-in user (``login_required``); else a recent authentication
    (``require_recent_auth``). Decided and worded by :class:`satchel.guard.Policy` (303 to
    the app's login URL or ``reauth_url`` with a local ``next``, 401 JSON for API clients,
    403 while impersonating), never cached. ``request``: Flask's or Quart's (``path``,
    ``query_string``, ``headers``: both are Werkzeug's)."""
    state = session.state()
    login_url = schema.default("login_url") if state is None else state["login_url"]
    policy = Policy(login_url, (), API_PREFIXES, reauth_url, needs).resolved(session)
    reason = policy.unmet(session)
    if reason is None:
        return None
    status, headers, body = policy.refusal(
        request.path,
        request.query_string.decode("latin-1"),
        request.headers.get("Accept", ""),
        reason,
    )
    return body, status, [*headers, ("cache-control", "no-store")]


def store_unavailable(exc: Exception) -> Answer:
    """The default answer when the store is down (register your own error handler for
    :class:`~satchel.errors.StoreError` to answer otherwise)."""
    logger.error("session store unavailable: %s", exc)
    return UNAVAILABLE_BODY, 503, plain_headers(UNAVAILABLE_BODY, RETRY_AFTER)


def csrf_answer(ctx: RequestContext, failure: CSRFFailure) -> Answer:
    """The default answer to a failed CSRF check: an HTML page with advice, JSON for API
    clients (register your own error handler for :class:`~satchel.errors.CSRFError` to
    answer otherwise)."""
    status, headers, body = ctx.csrf_answer(failure)
    return body, status, headers


def _capped(lifetime: float | None, settings: Settings) -> float | None:
    """``PERMANENT_SESSION_LIFETIME`` under an explicit ``absolute_timeout``: the
    operator's hard limit wins (satchel's setting over the framework's own)."""
    if lifetime is None or "absolute_timeout" not in settings.sources:
        return lifetime
    return min(lifetime, settings.absolute_timeout)
