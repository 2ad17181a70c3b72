"""Protect routes: unauthenticated requests are sent to the login page (HTML) or get a 401
(JSON/API). The return-to URL passed along is checked to be local, so the login page
cannot be turned into an open redirect.

ASGI: ``RequireLogin(app, public=["/login", "/static/*"])`` or ``@login_required`` on an
endpoint (a Starlette-style ``request -> response`` function or a raw ASGI app).
WSGI: ``RequireLoginWSGI(app, ...)`` or ``@login_required_wsgi`` on a WSGI app.

A sensitive action also needs a recent authentication ("sudo mode"):
``@require_recent_auth(max_age=300, level="aal2")`` (ASGI) and
``@require_recent_auth_wsgi(...)`` send a browser to the re-authentication page
(``reauth_url?next=...``) and answer an API client 401 JSON
``{"error": "reauthentication_required", "level": ..., "max_age": ...}`` when the user's
latest authentication is older or weaker (see :class:`RecentAuth`). Flask, FastAPI and
Django have theirs in their integrations, on the same rule.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from http import HTTPStatus
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlsplit

from ._types import ASGIApp, Environ, Receive, Scope, Send, StartResponse, WSGIApp
from .errors import ConfigurationError
from .request import ENVIRON_KEY

DEFAULT_LOGIN_URL = "/login"


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default``. Refuses absolute and
    scheme-relative URLs (``//evil``), backslash tricks (``/\\evil``), control characters
    and anything with a scheme or host."""
    if not target or len(target) > 2048 or not target.startswith("/"):
        return default
    if target.startswith(("//", "/\\")) or any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _wants_json(accept: str, path: str, api_prefixes: Sequence[str]) -> bool:
    if any(path.startswith(p) for p in api_prefixes):
        return True
    accept = accept.lower()
    return "application/json" in accept and "text/html" not in accept


def _login_location(login_url: str, path: str, query: str) -> str:
    target = path + (f"?{query}" if query else "")
    return f"{login_url}?next={quote(safe_next(target), safe='/')}"


LOGIN_REQUIRED = "login_required"
REAUTHENTICATION_REQUIRED = "reauthentication_required"
IMPERSONATING = "impersonating"
"""Refused because an administrator acts as the user (:func:`satchel.impersonate`): no
re-authentication can meet it, so the answer is 403, not a trip to the reauth page."""
DEFAULT_REAUTH_URL = "/reauth"
API_PREFIXES: tuple[str, ...] = ("/api/",)
"""Where a guard takes requests for an API client's by default: refused with a JSON 401,
not a redirect to a login page."""
_LEVELS = ("aal1", "aal2", "aal3")
"""NIST SP 800-63B-4's assurance levels, weakest first: a stronger one meets a weaker
requirement. Levels an app names otherwise meet only themselves."""


DEFAULT_REAUTH_MAX_AGE = 300.0
"""The ``reauth_max_age`` option's default: five minutes."""


@dataclass(frozen=True, slots=True)
class RecentAuth:
    """What a sensitive action needs of the user's latest authentication: made at most
    ``max_age`` seconds ago (None: the middleware's ``reauth_max_age`` option, 300 s unless
    set; ``math.inf``: any age), at ``level`` or stronger (None: any); by a session no
    administrator impersonates, unless ``allow_impersonation`` (the impersonator's own
    authentication is then what is checked)."""

    max_age: float | None = None
    level: str | None = None
    allow_impersonation: bool = False

    def __post_init__(self) -> None:
        # Checked where every framework's guard is made: NaN would let every user through
        # (no age is greater than NaN), text would fail on the first request.
        age = self.max_age
        if age is not None and (
            isinstance(age, bool) or not isinstance(age, int | float) or not age >= 0
        ):
            raise ConfigurationError(
                f"require_recent_auth max_age={age!r}: seconds, 0 or more (math.inf: any "
                "age; None: the reauth_max_age option)"
            )

    def resolved(self, configured: float) -> RecentAuth:
        """With ``max_age`` the ``configured`` one unless the guard named its own."""
        return self if self.max_age is not None else replace(self, max_age=configured)

    def unmet(self, session: Any) -> str | None:
        """None when ``session`` meets it; else why not (:data:`LOGIN_REQUIRED`,
        :data:`IMPERSONATING`, or :data:`REAUTHENTICATION_REQUIRED` for a logged-in user)."""
        if _user(session) is None:
            return LOGIN_REQUIRED
        if not self.allow_impersonation and getattr(session, "impersonator", None) is not None:
            return IMPERSONATING
        age = getattr(session, "auth_age", None)
        limit = DEFAULT_REAUTH_MAX_AGE if self.max_age is None else self.max_age
        if age is None or age > limit:
            return REAUTHENTICATION_REQUIRED
        if self.level is not None and not _meets(session.auth_level, self.level):
            return REAUTHENTICATION_REQUIRED
        return None


def configured_max_age(session: Any) -> float:
    """The ``reauth_max_age`` of the middleware that loaded ``session``."""
    policy = getattr(getattr(session, "binding", None), "policy", None)
    value = getattr(policy, "reauth_max_age", None)
    return DEFAULT_REAUTH_MAX_AGE if value is None else float(value)


def _meets(have: str | None, need: str) -> bool:
    if have == need:
        return True
    if have in _LEVELS and need in _LEVELS:
        return _LEVELS.index(have) >= _LEVELS.index(need)
    return False


def _is_logged_in(session: Any) -> str | None:
    return LOGIN_REQUIRED if _user(session) is None else None


class Policy:
    """Where a guard sends a refused request, and what it answers (shared by every
    framework's guard)."""

    def __init__(
        self,
        login_url: str,
        public: Iterable[str],
        api_prefixes: Iterable[str],
        reauth_url: str = DEFAULT_REAUTH_URL,
        needs: RecentAuth | None = None,
    ) -> None:
        self.login_url, self.reauth_url = login_url, reauth_url
        self.public = tuple(public) or (login_url,)
        self.api_prefixes = tuple(api_prefixes)
        self.needs = needs
        self._resolved: dict[float, Policy] = {}

    @classmethod
    def recent_auth(cls, login_url: str, reauth_url: str, needs: RecentAuth) -> Policy:
        """The policy of every framework's ``require_recent_auth`` guard: the user sent to
        ``reauth_url`` (``login_url`` when nobody is logged in) unless ``needs`` is met."""
        return cls(login_url, (), API_PREFIXES, reauth_url, needs)

    def is_public(self, path: str) -> bool:
        return any(fnmatchcase(path, p) for p in self.public)

    def unmet(self, session: Any) -> str | None:
        return _is_logged_in(session) if self.needs is None else self.needs.unmet(session)

    def resolved(self, session: Any) -> Policy:
        """This policy with the ``reauth_max_age`` of ``session``'s middleware, unless its
        guard named its own ``max_age``."""
        needs = self.needs
        if needs is None or needs.max_age is not None:
            return self
        configured = configured_max_age(session)
        policy = self._resolved.get(configured)  # (one per setting, not one per request)
        if policy is None:
            policy = Policy(self.login_url, self.public, self.api_prefixes, self.reauth_url)
            policy.needs = needs.resolved(configured)
            self._resolved[configured] = policy
        return policy

    def refusal(
        self, path: str, query: str, accept: str, reason: str = LOGIN_REQUIRED
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer to a request refused for ``reason``: 401 JSON to an API client, a
        303 to the login (or re-authentication) page with a local ``next`` otherwise;
        403 to both while impersonating (:data:`IMPERSONATING`)."""
        if reason == IMPERSONATING:
            if _wants_json(accept, path, self.api_prefixes):
                body = json.dumps({"error": IMPERSONATING}).encode()
                return 403, [("content-type", "application/json")], body
            text = b"Not while acting as another user: stop impersonating first.\n"
            return 403, [("content-type", "text/plain")], text
        if _wants_json(accept, path, self.api_prefixes):
            if reason == LOGIN_REQUIRED:
                document: dict[str, Any] = {"error": "authentication required"}
            else:
                needs = self.needs or RecentAuth()
                limit = needs.max_age
                if limit is not None and math.isinf(limit):
                    limit = None  # (any age: JSON has no infinity)
                document = {"error": reason, "level": needs.level, "max_age": limit}
            return 401, [("content-type", "application/json")], json.dumps(document).encode()
        if reason == LOGIN_REQUIRED:
            location, text = _login_location(self.login_url, path, query), b"Log in first.\n"
        else:
            location = _login_location(self.reauth_url, path, query)
            text = b"Confirm it is you first.\n"
        return 303, [("location", location), ("content-type", "text/plain")], text


def login_refusal(
    login_url: str, path: str, query: str, accept: str, api_prefixes: Sequence[str] = API_PREFIXES
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The answer to a request that needs a logged-in user and has none (:class:`Policy`):
    a JSON 401 for API clients, else a 303 to ``login_url`` with a local ``next``.
    (status, headers, body), for any framework to send."""
    return Policy(login_url, (), api_prefixes).refusal(path, query, accept)


def _user(session: Any) -> str | None:
    return getattr(session, "user_id", None) if session is not None else None


# -- ASGI ---------------------------------------------------------------------------------------


async def _asgi_refuse(
    policy: Policy, scope: Scope, send: Send, reason: str = LOGIN_REQUIRED
) -> None:
    if scope["type"] == "websocket":  # closed before accept: the handshake fails with 403
        await send({"type": "websocket.close", "code": 1008})
        return
    accept = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"accept"), "")
    status, headers, body = policy.refusal(
        scope.get("path", "/"), scope.get("query_string", b"").decode("latin-1"), accept, reason
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(n.encode(), v.encode()) for n, v in headers]
            + [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequireLogin:
    """ASGI middleware (inside satchel's SessionMiddleware): every HTTP and WebSocket path
    needs a logged-in user except those matching ``public`` (fnmatch patterns; default: the
    login URL). Paths under ``api_prefixes`` (default ``/api/``) get a JSON 401; a
    WebSocket is closed with 1008 before it is accepted (the handshake fails with 403)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        login_url: str = DEFAULT_LOGIN_URL,
        public: Iterable[str] = (),
        api_prefixes: Iterable[str] = API_PREFIXES,
    ) -> None:
        self.app = app
        self.policy = Policy(login_url, public, api_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] in ("http", "websocket")
            and not self.policy.is_public(scope.get("path", "/"))
            and _user(scope.get("session")) is None
        ):
            await _asgi_refuse(self.policy, scope, send)
            return
        await self.app(scope, receive, send)


def login_required(
    endpoint: Callable[..., Any] | None = None,
    *,
    login_url: str = DEFAULT_LOGIN_URL,
    api_prefixes: Iterable[str] = API_PREFIXES,
) -> Any:
    """Decorate a Starlette-style endpoint (``async def view(request)``, or a WebSocket
    endpoint ``async def ws(websocket)``) or a raw ASGI app; an unauthenticated WebSocket
    is closed with 1008 before it is accepted."""
    policy = Policy(login_url, (), api_prefixes)
    return _guarding(policy)(endpoint) if endpoint is not None else _guarding(policy)


_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def require_recent_auth(
    endpoint: _F,
    *,
    max_age: float | None = ...,
    level: str | None = ...,
    reauth_url: str = ...,
    login_url: str = ...,
    api_prefixes: Iterable[str] = ...,
    allow_impersonation: bool = ...,
) -> _F: ...


@overload
def require_recent_auth(
    endpoint: None = None,
    *,
    max_age: float | None = ...,
    level: str | None = ...,
    reauth_url: str = ...,
    login_url: str = ...,
    api_prefixes: Iterable[str] = ...,
    allow_impersonation: bool = ...,
) -> Callable[[_F], _F]: ...


def require_recent_auth(
    endpoint: Callable[..., Any] | None = None,
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    api_prefixes: Iterable[str] = API_PREFIXES,
    allow_impersonation: bool = False,
) -> Any:
    """As :func:`login_required`, and the user's latest authentication must be at most
    ``max_age`` seconds old and at ``level`` or stronger (:class:`RecentAuth`): else a
    browser is sent to ``reauth_url?next=...`` and an API client gets 401
    ``{"error": "reauthentication_required", "level": ..., "max_age": ...}``. A session
    an administrator impersonates gets 403 (``{"error": "impersonating"}``) unless
    ``allow_impersonation``."""
    policy = Policy(
        login_url, (), api_prefixes, reauth_url, RecentAuth(max_age, level, allow_impersonation)
    )
    return _guarding(policy)(endpoint) if endpoint is not None else _guarding(policy)


def _guarding(policy: Policy) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters)
        if len(params) == 3:  # an ASGI app

            @functools.wraps(fn)
            async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
                resolved = policy.resolved(scope.get("session"))
                reason = resolved.unmet(scope.get("session"))
                if reason is not None:
                    await _asgi_refuse(resolved, scope, send, reason)
                    return
                await fn(scope, receive, send)

            return asgi

        @functools.wraps(fn)
        async def view(request: Any, *args: Any, **kwargs: Any) -> Any:
            scope = request.scope
            session = scope.get("session")
            resolved = policy.resolved(session)
            reason = resolved.unmet(session)
            if reason is not None:
                if scope["type"] == "websocket":
                    await request.close(code=1008)
                    return None
                from starlette.responses import Response

                accept = request.headers.get("accept", "")
                status, headers, body = resolved.refusal(
                    scope.get("path", "/"),
                    scope.get("query_string", b"").decode("latin-1"),
                    accept,
                    reason,
                )
                return Response(body, status_code=status, headers=dict(headers))
            result = fn(request, *args, **kwargs)
            return await result if isinstance(result, Awaitable) else result

        return view

    return wrap


# -- WSGI ---------------------------------------------------------------------------------------


def _wsgi_guard(
    policy: Policy, app: WSGIApp, environ: Environ, start_response: StartResponse
) -> Iterable[bytes]:
    session = environ.get(ENVIRON_KEY)
    policy = policy.resolved(session)
    reason = policy.unmet(session)
    if reason is not None:
        status, headers, body = policy.refusal(
            environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_ACCEPT", ""),
            reason,
        )
        reason = HTTPStatus(status).phrase
        start_response(f"{status} {reason}", [*headers, ("cache-control", "no-store")])
        return [body]
    return app(environ, start_response)


class RequireLoginWSGI:
    """The WSGI twin of :class:`RequireLogin` (inside satchel's WSGI SessionMiddleware)."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        login_url: str = DEFAULT_LOGIN_URL,
        public: Iterable[str] = (),
        api_prefixes: Iterable[str] = API_PREFIXES,
    ) -> None:
        self.app = app
        self.policy = Policy(login_url, public, api_prefixes)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.policy.is_public(environ.get("PATH_INFO", "/")):
            return self.app(environ, start_response)
        return _wsgi_guard(self.policy, self.app, environ, start_response)


def login_required_wsgi(
    app: WSGIApp | None = None,
    *,
    login_url: str = DEFAULT_LOGIN_URL,
    api_prefixes: Iterable[str] = API_PREFIXES,
) -> Any:
    """Decorate a WSGI app so it needs a logged-in user."""
    return _wsgi_guarding(Policy(login_url, (), api_prefixes), app)


def require_recent_auth_wsgi(
    app: WSGIApp | None = None,
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    api_prefixes: Iterable[str] = API_PREFIXES,
    allow_impersonation: bool = False,
) -> Any:
    """The WSGI twin of :func:`require_recent_auth`."""
    policy = Policy(
        login_url, (), api_prefixes, reauth_url, RecentAuth(max_age, level, allow_impersonation)
    )
    return _wsgi_guarding(policy, app)


def _wsgi_guarding(policy: Policy, app: WSGIApp | None) -> Any:
    def wrap(inner: WSGIApp) -> WSGIApp:
        @functools.wraps(inner)
        def guarded(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            return _wsgi_guard(policy, inner, environ, start_response)

        return guarded

    return wrap(app) if app is not None else wrap
