"""Protect routes: unauthenticated requests are sent to the login page (HTML) or get a 401
(JSON/API). The return-to URL passed along is checked to be local, so the login page
cannot be turned into an open redirect.

ASGI: ``RequireLogin(app, public=["/login", "/static/*"])`` or ``@login_required`` on an
endpoint (a Starlette-style ``request -> response`` function or a raw ASGI app).
WSGI: ``RequireLoginWSGI(app, ...)`` or ``@login_required_wsgi`` on a WSGI app.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote, urlsplit

from ._types import ASGIApp, Environ, Receive, Scope, Send, StartResponse, WSGIApp
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


class _Policy:
    def __init__(self, login_url: str, public: Iterable[str], api_prefixes: Iterable[str]) -> None:
        self.login_url = login_url
        self.public = tuple(public) or (login_url,)
        self.api_prefixes = tuple(api_prefixes)

    def is_public(self, path: str) -> bool:
        return any(fnmatchcase(path, p) for p in self.public)

    def refusal(
        self, path: str, query: str, accept: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        return login_refusal(self.login_url, path, query, accept, self.api_prefixes)


def login_refusal(
    login_url: str, path: str, query: str, accept: str, api_prefixes: Sequence[str] = ("/api/",)
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The answer to a request that needs a logged-in user and has none: a JSON 401 for
    API clients (paths under ``api_prefixes``, or ``Accept`` asking for JSON), else a 303
    to ``login_url`` with the local return-to path in ``next``. (status, headers, body),
    for any framework to send."""
    if _wants_json(accept, path, api_prefixes):
        body = json.dumps({"error": "authentication required"}).encode()
        return 401, [("content-type", "application/json")], body
    location = _login_location(login_url, path, query)
    return 303, [("location", location), ("content-type", "text/plain")], b"Log in first.\n"


def _user(session: Any) -> str | None:
    return getattr(session, "user_id", None) if session is not None else None


# -- ASGI ---------------------------------------------------------------------------------------


async def _asgi_refuse(policy: _Policy, scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":  # closed before accept: the handshake fails with 403
        await send({"type": "websocket.close", "code": 1008})
        return
    accept = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"accept"), "")
    status, headers, body = policy.refusal(
        scope.get("path", "/"), scope.get("query_string", b"").decode("latin-1"), accept
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
        api_prefixes: Iterable[str] = ("/api/",),
    ) -> None:
        self.app = app
        self.policy = _Policy(login_url, public, api_prefixes)

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
    api_prefixes: Iterable[str] = ("/api/",),
) -> Any:
    """Decorate a Starlette-style endpoint (``async def view(request)``, or a WebSocket
    endpoint ``async def ws(websocket)``) or a raw ASGI app; an unauthenticated WebSocket
    is closed with 1008 before it is accepted."""
    policy = _Policy(login_url, (), api_prefixes)

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters)
        if len(params) == 3:  # an ASGI app

            @functools.wraps(fn)
            async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
                if _user(scope.get("session")) is None:
                    await _asgi_refuse(policy, scope, send)
                    return
                await fn(scope, receive, send)

            return asgi

        @functools.wraps(fn)
        async def view(request: Any, *args: Any, **kwargs: Any) -> Any:
            scope = request.scope
            if _user(scope.get("session")) is None:
                if scope["type"] == "websocket":
                    await request.close(code=1008)
                    return None
                from starlette.responses import Response

                accept = request.headers.get("accept", "")
                status, headers, body = policy.refusal(
                    scope.get("path", "/"), scope.get("query_string", b"").decode("latin-1"), accept
                )
                return Response(body, status_code=status, headers=dict(headers))
            result = fn(request, *args, **kwargs)
            return await result if isinstance(result, Awaitable) else result

        return view

    return wrap(endpoint) if endpoint is not None else wrap


# -- WSGI ---------------------------------------------------------------------------------------


def _wsgi_guard(
    policy: _Policy, app: WSGIApp, environ: Environ, start_response: StartResponse
) -> Iterable[bytes]:
    if _user(environ.get(ENVIRON_KEY)) is None:
        status, headers, body = policy.refusal(
            environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_ACCEPT", ""),
        )
        reason = {303: "See Other", 401: "Unauthorized"}[status]
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
        api_prefixes: Iterable[str] = ("/api/",),
    ) -> None:
        self.app = app
        self.policy = _Policy(login_url, public, api_prefixes)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.policy.is_public(environ.get("PATH_INFO", "/")):
            return self.app(environ, start_response)
        return _wsgi_guard(self.policy, self.app, environ, start_response)


def login_required_wsgi(
    app: WSGIApp | None = None,
    *,
    login_url: str = DEFAULT_LOGIN_URL,
    api_prefixes: Iterable[str] = ("/api/",),
) -> Any:
    """Decorate a WSGI app so it needs a logged-in user."""
    policy = _Policy(login_url, (), api_prefixes)

    def wrap(inner: WSGIApp) -> WSGIApp:
        @functools.wraps(inner)
        def guarded(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            return _wsgi_guard(policy, inner, environ, start_response)

        return guarded

    return wrap(app) if app is not None else wrap
