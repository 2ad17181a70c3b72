"""Litestar: satchel sessions behind Litestar's session interface (``request.session``,
``request.set_session``, ``request.clear_session``).

    config = SatchelSessionConfig(store="redis://localhost:6379/0", secret_keys=[...])
    app = Litestar(route_handlers=[...], plugins=[SatchelPlugin(config)])
    # or, without the plugin: Litestar(..., middleware=[config.middleware])

The middleware is satchel's ASGI middleware (:class:`satchel.asgi.SessionMiddleware`),
built once per app and shared by every route. Litestar's session-config arguments work:
``key`` (the cookie's name), ``max_age``, ``path``, ``domain``, ``secure``, ``httponly``,
``samesite``, ``exclude``, ``exclude_opt_key`` and ``scopes``. CSRF is satchel's, checked
before the handler; pass ``csrf=False`` to use Litestar's ``CSRFConfig`` instead.

The plugin also registers two dependencies, ``session`` (the request's
:class:`~satchel.session.Session`) and ``user_id`` (the logged-in user, else a 401), and
closes the store on shutdown. Name them in a handler by parameter name, typed with the
aliases :data:`CurrentSession` and :data:`CurrentUser`::

    @get("/me")
    async def me(user_id: CurrentUser, session: CurrentSession) -> dict[str, Any]: ...

A sensitive route takes a guard, ``@post("/transfer", guards=[require_recent_auth(max_age=300)])``
("sudo mode": :class:`satchel.guard.Policy` decides, as on every path; the plugin answers
its refusal); ``reauthenticate_user``, ``impersonate_user`` and ``stop_impersonating`` are
the handlers' side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape
from typing import Any, Literal, TypeAlias, Unpack, cast

from . import missing_framework

try:
    from litestar.config.app import AppConfig
    from litestar.connection import ASGIConnection
    from litestar.di import NamedDependency, Provide
    from litestar.enums import ScopeType
    from litestar.exceptions import HTTPException, NotAuthorizedException
    from litestar.handlers.base import BaseRouteHandler
    from litestar.middleware import ASGIMiddleware
    from litestar.plugins import InitPluginProtocol
    from litestar.response import Response
    from litestar.serialization import decode_json, encode_json
    from litestar.types import ASGIApp, Empty, Receive, Scope, Send
    from litestar.utils import get_serializer_from_scope
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "litestar") from None

from .. import asgi as satchel_asgi
from .. import auth
from .._types import ASGIApp as SatchelASGIApp
from .._types import Message
from .._types import Receive as SatchelReceive
from .._types import Scope as SatchelScope
from .._types import Send as SatchelSend
from ..conventions import StarletteOptions, from_starlette
from ..cookie import CookieStore
from ..errors import ConfigurationError, SessionStateError
from ..guard import DEFAULT_LOGIN_URL, DEFAULT_REAUTH_URL, Policy, RecentAuth
from ..options import DEFAULT_STORE, Runtime, SessionOptions, build
from ..request import SCOPE_KEY, RequestContext, csrf_token
from ..session import Session
from ..stores.base import Store

__all__ = [
    "CurrentSession",
    "CurrentUser",
    "GuardRefusal",
    "SatchelMiddleware",
    "SatchelPlugin",
    "SatchelSessionConfig",
    "csrf_input",
    "csrf_token",
    "guard_refusal_handler",
    "impersonate_user",
    "login_user",
    "logout_user",
    "provide_session",
    "provide_user_id",
    "reauthenticate_user",
    "require_recent_auth",
    "session_of",
    "stop_impersonating",
]

# Litestar's session-config argument -> (the Starlette name satchel already maps, through
# satchel.conventions.from_starlette: one mapping of cookie settings, not two; the satchel
# options it sets)
LITESTAR = {
    "key": ("session_cookie", ("cookie_name",)),
    "max_age": ("max_age", ("cookie_persistent", "absolute_timeout")),
    "path": ("path", ("cookie_path",)),
    "domain": ("domain", ("cookie_domain",)),
    "secure": ("https_only", ("cookie_secure",)),
    "samesite": ("same_site", ("cookie_samesite",)),
    "httponly": ("cookie_httponly", ("cookie_httponly",)),
}


class LitestarOptions(SessionOptions, total=False):
    """satchel's options plus the cookie arguments of Litestar's session configs."""

    key: str
    max_age: int | None
    path: str
    domain: str | None
    secure: bool
    httponly: bool
    samesite: Literal["lax", "strict", "none"]


def from_litestar(options: Mapping[str, Any]) -> SessionOptions:
    """``options`` with Litestar's names replaced by satchel's (``max_age`` as for
    Starlette: a persistent cookie and both server timeouts; not given, satchel's
    defaults, not Litestar's one day)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in LITESTAR:
            out[name] = value
            continue
        starlette, ours = LITESTAR[name]
        for option in (starlette, *ours):
            if option in options and option != name:
                raise ConfigurationError(
                    f"{name}= (Litestar's name) and {option}= set the same thing: pass one"
                )
        out[starlette] = value
    return from_starlette(StarletteOptions(**out))  # type: ignore[typeddict-item]


class SatchelSessionConfig:
    """The session configuration of a Litestar app: the store and satchel's options
    (docs/configuration.md), plus Litestar's own names (:data:`LITESTAR`). The store and
    keys are set up once, here; :attr:`middleware` goes in ``Litestar(middleware=[...])``.
    ``on_store_unavailable`` and ``on_csrf_failure`` are ASGI apps, as for
    :class:`satchel.asgi.SessionMiddleware`."""

    def __init__(
        self,
        store: str | Store | CookieStore = DEFAULT_STORE,
        *,
        exclude: str | list[str] | None = None,
        exclude_opt_key: str | None = "skip_session",
        scopes: tuple[ScopeType, ...] = (ScopeType.HTTP, ScopeType.WEBSOCKET),
        on_store_unavailable: SatchelASGIApp = satchel_asgi.store_unavailable,
        on_csrf_failure: SatchelASGIApp = satchel_asgi.csrf_failure,
        **options: Unpack[LitestarOptions],
    ) -> None:
        self.runtime: Runtime = build(store, from_litestar(options))
        self.store, self.backend, self.policy = self.runtime  # (session_transaction finds them)
        self.exclude = exclude
        self.exclude_opt_key = exclude_opt_key
        self.scopes = scopes
        self.on_store_unavailable = on_store_unavailable
        self.on_csrf_failure = on_csrf_failure

    @property
    def middleware(self) -> SatchelMiddleware:
        """For ``Litestar(middleware=[config.middleware])``."""
        return SatchelMiddleware(self)

    async def aclose(self) -> None:
        """Close the store's connections (the plugin calls it on shutdown)."""
        if self.store is not None:
            await self.store.aclose()


class _Bound(satchel_asgi.SessionMiddleware):
    """satchel's ASGI middleware around one route's app, sharing the config's runtime."""

    def __init__(self, app: ASGIApp, config: SatchelSessionConfig) -> None:
        self.app = _adopting(cast(SatchelASGIApp, app))
        self.runtime = config.runtime
        self.store, self.backend, self.policy = config.runtime
        self.on_store_unavailable = config.on_store_unavailable
        self.on_csrf_failure = config.on_csrf_failure


class SatchelMiddleware(ASGIMiddleware):
    """Litestar middleware (one instance per app): each route's app is wrapped once in
    satchel's ASGI middleware; Litestar's ``exclude``, ``exclude_opt_key`` and ``scopes``
    skip it (``request.session`` then raises, as with Litestar's own)."""

    def __init__(self, config: SatchelSessionConfig) -> None:
        self.config = config
        self.scopes = config.scopes
        self.exclude_opt_key = config.exclude_opt_key
        exclude = config.exclude
        self.exclude_path_pattern = tuple(exclude) if isinstance(exclude, list) else exclude
        self._bound: dict[ASGIApp, _Bound] = {}

    def __call__(self, app: ASGIApp) -> ASGIApp:
        self._bound[app] = _Bound(app, self.config)
        return super().__call__(app)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        await self._bound[next_app](scope, receive, send)  # type: ignore[arg-type]


def _adopting(app: SatchelASGIApp) -> SatchelASGIApp:
    """``app`` with Litestar's ``request.set_session`` and ``request.clear_session``
    carried into the satchel session before the response starts."""

    async def adopting(scope: SatchelScope, receive: SatchelReceive, send: SatchelSend) -> None:
        async def send_adopting(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                _adopt(scope)
            await send(message)

        await app(scope, receive, send_adopting)
        _adopt(scope)  # (a WebSocket's changes after the handshake)

    return adopting


def _adopt(scope: SatchelScope) -> None:
    ctx = scope.get(SCOPE_KEY)
    value = scope.get("session")
    if not isinstance(ctx, RequestContext) or value is ctx.session:
        return
    session = ctx.session
    scope["session"] = session
    if value is Empty or value is None:  # request.clear_session(): satchel's logout
        session.clear()
        return
    if not isinstance(value, Mapping):  # a dataclass, a msgspec Struct, a pydantic model
        serializer = get_serializer_from_scope(cast(Scope, scope))
        value = decode_json(encode_json(value, serializer))
    for name in [name for name in session if name not in value]:
        del session[name]  # per key: concurrent requests keep each other's other keys
    for name, item in value.items():
        if session.get(name, Empty) != item:
            session[name] = item


class SatchelPlugin(InitPluginProtocol):
    """``Litestar(plugins=[SatchelPlugin(config)])``: the middleware, the ``session`` and
    ``user_id`` dependencies, the answer of :func:`require_recent_auth`'s refusals
    (:func:`guard_refusal_handler`), and the store closed on shutdown."""

    def __init__(self, config: SatchelSessionConfig) -> None:
        self.config = config

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(self.config.middleware)
        app_config.dependencies.setdefault(
            "session", Provide(provide_session, sync_to_thread=False)
        )
        app_config.dependencies.setdefault(
            "user_id", Provide(provide_user_id, sync_to_thread=False)
        )
        app_config.exception_handlers.setdefault(GuardRefusal, guard_refusal_handler)
        app_config.on_shutdown.append(self.config.aclose)
        return app_config


CurrentSession: TypeAlias = NamedDependency[Session]
"""A handler's ``session`` parameter: the plugin's ``session`` dependency."""
CurrentUser: TypeAlias = NamedDependency[str]
"""A handler's ``user_id`` parameter: the logged-in user's ID, else a 401."""


def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Session:
    """The request's satchel session (``request.session``, typed)."""
    session = connection.scope.get("session")
    if not isinstance(session, Session):
        raise SessionStateError("satchel's middleware is not installed on this route")
    return session


def provide_session(request: ASGIConnection[Any, Any, Any, Any]) -> Session:
    """The ``session`` dependency."""
    return session_of(request)


def provide_user_id(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The ``user_id`` dependency: the logged-in user's ID, else a 401."""
    user = session_of(request).user_id
    if user is None:
        raise NotAuthorizedException("authentication required")
    return user


def login_user(
    request: ASGIConnection[Any, Any, Any, Any],
    user_id: str,
    *,
    methods: Iterable[str] = (),
    level: str | None = None,
) -> None:
    """Log in: new session ID, user bound, device and authentication recorded, CSRF
    secret rotated (:func:`satchel.login`)."""
    auth.login(session_of(request), user_id, methods=methods, level=level)


def reauthenticate_user(
    request: ASGIConnection[Any, Any, Any, Any],
    *,
    methods: Iterable[str] = (),
    level: str | None = None,
) -> None:
    """The user proved who they are again (:func:`satchel.reauthenticate`): new session
    ID, fresh authentication facts; what :func:`require_recent_auth` asks for."""
    auth.reauthenticate(session_of(request), methods=methods, level=level)


def impersonate_user(request: ASGIConnection[Any, Any, Any, Any], user_id: str) -> None:
    """The logged-in administrator acts as ``user_id`` (:func:`satchel.impersonate`: who
    may is the app's check, made first)."""
    auth.impersonate(session_of(request), user_id)


def stop_impersonating(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Back to the administrator's own session without a new login
    (:func:`satchel.stop_impersonating`); the administrator's user ID."""
    return auth.stop_impersonating(session_of(request))


def logout_user(request: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Log out: the record deleted, the cookie expired (``request.clear_session()`` does
    the same)."""
    auth.logout(session_of(request))


def csrf_input(request: ASGIConnection[Any, Any, Any, Any]) -> Any:
    """A hidden ``csrf_token`` input for templates, marked safe for Jinja."""
    html = f'<input type="hidden" name="csrf_token" value="{escape(csrf_token(request))}">'
    try:
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - Jinja always brings markupsafe
        return html
    return Markup(html)  # noqa: S704 - the token is escaped above


class GuardRefusal(HTTPException):
    """What :func:`require_recent_auth`'s guard raises: the refusal
    :class:`satchel.guard.Policy` words (``answer``: status, headers, body), which
    :func:`guard_refusal_handler` sends as it is. (Without that handler, Litestar's own
    answers it: the same status, ``Location`` and ``Cache-Control``, Litestar's JSON
    body.)"""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        extra = {name: value for name, value in headers if name != "content-type"}
        super().__init__(detail=body.decode(), status_code=status, headers=extra)
        self.answer = (status, headers, body)


def guard_refusal_handler(request: Any, exc: Exception) -> Response[bytes]:
    """The exception handler of :class:`GuardRefusal` (the plugin registers it; without
    the plugin: ``Litestar(exception_handlers={GuardRefusal: guard_refusal_handler})``)."""
    assert isinstance(exc, GuardRefusal)
    status, headers, body = exc.answer
    return Response(body, status_code=status, headers=dict(headers))


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    allow_impersonation: bool = False,
) -> Guard:
    """A guard for sensitive routes (``guards=[require_recent_auth(max_age=300)]``, on a
    handler, controller, router or the app): the user's latest authentication at most
    ``max_age`` seconds old (None: the ``reauth_max_age`` option, 300 s unless set), at
    ``level`` or stronger (:class:`satchel.guard.RecentAuth`). Else :class:`GuardRefusal`:
    a browser gets a 303 to ``reauth_url?next=...`` (to ``login_url`` when nobody is
    logged in), an API client (JSON ``Accept``, a path under ``/api/``) 401 ``{"error":
    "reauthentication_required", "level": ..., "max_age": ...}``, a session an
    administrator impersonates 403 unless ``allow_impersonation``; never cached."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    policy = Policy.recent_auth(login_url, reauth_url, needs)

    def recent_auth(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        session = session_of(connection)
        resolved = policy.resolved(session)
        reason = resolved.unmet(session)
        if reason is None:
            return
        scope = connection.scope
        status, headers, body = resolved.refusal(
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            connection.headers.get("accept", ""),
            reason,
        )
        raise GuardRefusal(status, [*headers, ("cache-control", "no-store")], body)

    return recent_auth
