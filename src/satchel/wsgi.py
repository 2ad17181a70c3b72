"""WSGI session middleware; the session lives in ``environ["satchel.session"]`` and is
loaded from the store on first access, so a request that never looks costs nothing."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any, Unpack

from . import csrf
from ._types import Environ, ExcInfo, StartResponse, WSGIApp
from .backend import Backend
from .cookie import CookieStore
from .csrf_failure import FAILURE_KEY, CSRFFailure
from .dbsc.protocol import Answer
from .errors import UNAVAILABLE_BODY, SessionStateError, StoreError
from .log import logger
from .options import DEFAULT_STORE, SessionOptions, build
from .request import CONTEXT_KEY, ENVIRON_KEY, REQUEST_OVER, RequestContext, RequestPolicy
from .session import Session
from .stores.base import Store
from .transport import RETRY_AFTER, plain_headers

__all__ = ["CONTEXT_KEY", "ENVIRON_KEY", "SessionMiddleware", "csrf_failure", "open_lazily"]


def _answer(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    extra = (RETRY_AFTER,) if status.startswith("503") else ()
    start_response(status, plain_headers(body, *extra))
    return [body]


_UNAVAILABLE = "503 Service Unavailable"


def csrf_failure(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The default answer to a failed CSRF check (see :func:`satchel.asgi.csrf_failure`)."""
    failure: CSRFFailure = environ[FAILURE_KEY]
    ctx: RequestContext = environ[CONTEXT_KEY]
    status, headers, body = ctx.csrf_answer(failure)
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]


def answer_wsgi(answer: Answer) -> WSGIApp:
    """A WSGI app sending ``answer`` (a device-binding endpoint's, or a refusal)."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        headers = [*answer.headers, ("content-length", str(len(answer.body)))]
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", headers)
        return [answer.body]

    return app


class _Body:
    """The app's body with its first chunk already drawn (which makes generator apps call
    start_response, so the commit happens before any byte leaves); closing it ends the
    request's context."""

    def __init__(
        self,
        first: list[bytes],
        rest: Iterator[bytes],
        result: Iterable[bytes],
        ctx: RequestContext,
    ):
        self._first, self._rest, self._result, self._ctx = first, rest, result, ctx

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        try:
            _close(self._result)
        finally:
            self._ctx.end()


_HEADER_NAMES: dict[str, str] = {}
"""Environ keys by the header each names (``HTTP_USER_AGENT``: ``user-agent``; ``""``
for the others, ``PATH_INFO``): one lookup per key on every request. Bounded, as a
client chooses the headers it sends."""
_MAX_HEADER_NAMES = 512


def _header_name(key: str) -> str:
    name = key[5:].replace("_", "-").lower() if key.startswith("HTTP_") else ""
    if len(_HEADER_NAMES) < _MAX_HEADER_NAMES:
        _HEADER_NAMES[key] = name
    return name


def environ_headers(environ: Environ) -> dict[str, str]:
    """The request's headers by lower-case name, repeated ones joined (cookies with
    '; '), as :func:`~satchel.transport.header_map` joins them; built on every request,
    so in one pass over the environ."""
    out: dict[str, str] = {}
    names = _HEADER_NAMES
    for key in environ:
        try:
            name = names[key]
        except KeyError:
            name = _header_name(key)
        if not name:
            continue
        value = environ[key]
        if type(value) is not str:
            value = str(value)
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        content_type = str(content_type)
        old = out.get("content-type")
        out["content-type"] = content_type if old is None else f"{old}, {content_type}"
    return out


class _Exchange:
    """One request's response start, held back until the app's first chunk or its first
    ``write()``: then the session commits, and the server gets the headers."""

    __slots__ = ("ctx", "failed", "pending", "sent", "server_start", "server_write")

    def __init__(self, ctx: RequestContext, server_start: StartResponse) -> None:
        self.ctx, self.server_start = ctx, server_start
        self.pending: tuple[str, list[tuple[str, str]], ExcInfo | None] | None = None
        self.sent = self.failed = False  # failed: answered by on_store_unavailable
        self.server_write: Any = None

    def start(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None, /
    ) -> Any:
        """The ``start_response`` the app gets."""
        if exc_info is not None and self.sent and exc_info[1] is not None:
            raise exc_info[1].with_traceback(exc_info[2])  # too late: headers went out
        self.pending = (status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:  # PEP 3333's legacy write(): it starts the response
        if not self.sent:
            self.send_start()
        if not self.failed:
            self.server_write(data)

    def send_start(self) -> None:
        assert self.pending is not None, "write() before start_response()"
        status, headers, exc_info = self.pending
        self.sent = True
        ctx = self.ctx
        if exc_info is None and ctx.finish(int(status[:3])) is not None:
            self.failed = True
            return
        headers = ctx.response_headers(headers)
        if exc_info is None:
            self.server_write = self.server_start(status, headers)
        else:
            self.server_write = self.server_start(status, headers, exc_info)


class SessionMiddleware:
    """``SessionMiddleware(app, store="sqlite:///satchel.db", secret_keys=[...], ...)``;
    the same options as :class:`satchel.asgi.SessionMiddleware`; ``on_store_unavailable``
    and ``on_csrf_failure`` are WSGI apps here (the failure is in
    ``environ["satchel.csrf_failure"]``)."""

    def __init__(
        self,
        app: WSGIApp,
        store: str | Store | CookieStore = DEFAULT_STORE,
        *,
        on_store_unavailable: WSGIApp | None = None,
        on_csrf_failure: WSGIApp = csrf_failure,
        **options: Unpack[SessionOptions],
    ) -> None:
        self.app = app
        self.runtime = build(store, options)
        self.store, self.backend, self.policy = self.runtime
        self.on_store_unavailable = on_store_unavailable
        self.on_csrf_failure = on_csrf_failure

    def _unavailable(
        self, environ: Environ, start_response: StartResponse, ctx: RequestContext
    ) -> Iterable[bytes]:
        # a commit that failed half-way issued the new record's token: send it
        def start_with_token(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None, /
        ) -> Any:
            headers = ctx.response_headers(headers)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        if self.on_store_unavailable is not None:
            return self.on_store_unavailable(environ, start_with_token)
        return _answer(start_with_token, _UNAVAILABLE, UNAVAILABLE_BODY)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        ctx = open_lazily(self.backend, self.policy, Session(), environ)
        # (an exception leaves the context as it is: an error page outside may still ask it)
        result = self._respond(environ, start_response, ctx)
        # the request is over: now for a list (its start_response came before it was
        # returned), else when the server closes the body (the app's own: a _Body already)
        if type(result) is list or type(result) is tuple:
            ctx.end()
            return result
        if type(result) is _Body:
            return result
        return _Body([], iter(result), result, ctx)

    def _respond(
        self, environ: Environ, start_response: StartResponse, ctx: RequestContext
    ) -> Iterable[bytes]:
        app, answer = self.app, None
        try:
            if self.policy.device.enabled:  # device-bound sessions: an endpoint, or a refusal
                answer = ctx.device_answer()
            refusal = None if answer is not None else self._csrf(environ, ctx)
        except StoreError as exc:
            logger.error("session store unavailable while loading: %s", exc)
            return self._unavailable(environ, start_response, ctx)
        if refusal is not None:
            environ[FAILURE_KEY] = refusal
            return self.on_csrf_failure(environ, start_response)
        if answer is not None:
            if not answer.commit:
                return answer_wsgi(answer)(environ, start_response)
            app = answer_wsgi(answer)  # an endpoint: its session change is committed

        # WSGI's start_response sends nothing: an app may call it and then fail (the
        # server answers 500). The commit waits for the app's first chunk -- or its first
        # write() -- so an app that raised commits nothing, as on every other path.
        exchange = _Exchange(ctx, start_response)
        result: Iterable[bytes] = ()
        try:
            result = app(environ, exchange.start)
            chunks = iter(result)
            first = next(chunks, None)
            if exchange.pending is not None and not exchange.sent:
                exchange.send_start()
        except StoreError as exc:
            _close(result)
            if exchange.sent and not exchange.failed:
                raise
            logger.error("session store unavailable: %s", exc)
            return self._unavailable(environ, start_response, ctx)
        except BaseException:
            _close(result)
            raise
        if exchange.failed:
            _close(result)
            return self._unavailable(environ, start_response, ctx)
        if type(result) is list or type(result) is tuple:
            return result  # (most apps: nothing to close, and a list iterates again from its start)
        return _Body([] if first is None else [first], chunks, result, ctx)

    @staticmethod
    def _csrf(environ: Environ, ctx: RequestContext) -> CSRFFailure | None:
        """Check CSRF before the app runs; a form body read here is put back for the app."""
        if not ctx.csrf_applies():  # a safe method, an exempt path: nothing to check
            return None
        form_token = None
        if ctx.wants_form_token():
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if 0 < length <= csrf.MAX_FORM_BYTES:
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)
                form_token = csrf.token_from_form(environ.get("CONTENT_TYPE", ""), body)
        return ctx.csrf_check(form_token)


class _EnvironContext(RequestContext):
    """A WSGI request's context: its header map (:func:`environ_headers`) is made from the
    environ on first use. Most requests only need their ``Cookie`` and ``Authorization``
    headers, read from the environ's ``HTTP_COOKIE`` and ``HTTP_AUTHORIZATION`` (as
    werkzeug reads them); the map costs a pass over the whole environ (about 280
    bytecodes for a request of 19 keys)."""

    __slots__ = ("_environ",)

    _environ: Environ

    @property
    def headers(self) -> dict[str, str]:
        headers = self._headers
        if headers is None:
            headers = self._headers = environ_headers(self._environ)
        return headers

    def end(self) -> None:
        super().end()
        self._environ = _ENDED  # (the environ holds the context: another cycle)

    def _header(self, name: bytes) -> str | None:
        """One header (lower-case name) from its environ key (``user-agent``:
        ``HTTP_USER_AGENT``, as werkzeug reads it), without making the header map."""
        if self._headers is not None or name == b"content-type":  # (CONTENT_TYPE too)
            return self.headers.get(name.decode("latin-1"))
        value = self._environ.get("HTTP_" + name.decode("latin-1").upper().replace("-", "_"))
        return None if value is None else _text(value)


class _Ended(dict[str, Any]):
    """The environ of a context whose request is over: asking it anything says so."""

    def __missing__(self, key: str) -> Any:
        raise SessionStateError(REQUEST_OVER)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


_ENDED: Environ = _Ended()


def _text(value: Any) -> str:
    return value if type(value) is str else str(value)  # (as environ_headers converts)


def _header(environ: Environ, key: str) -> str:
    value = environ.get(key)
    return "" if value is None else _text(value)


def open_lazily(
    backend: Backend, policy: RequestPolicy, session: Session, environ: Environ
) -> RequestContext:
    """The sync paths (WSGI, Flask): the session is bound to its request, loaded on first
    access, and committed through ``session.save()`` or at response start. As
    :meth:`RequestContext.build` with ``lazy``, the header map made on first use."""
    path = environ.get("PATH_INFO", "/") or "/"
    cookie = _header(environ, "HTTP_COOKIE")
    authorization = _header(environ, "HTTP_AUTHORIZATION")
    ctx = _EnvironContext(
        backend,
        policy,
        session,
        environ.get("REQUEST_METHOD", "GET").upper(),
        path,
        None,
        environ.get("REMOTE_ADDR"),
        environ.get("wsgi.url_scheme", "http"),
        policy.transport_of(path, cookie, authorization),
        cookie_header=cookie,
    )
    ctx._environ = environ
    ctx.read_token(cookie, authorization, lazy=True)
    ctx.mount = environ.get("SCRIPT_NAME", "") or ""
    environ[ENVIRON_KEY] = session
    environ[CONTEXT_KEY] = ctx
    return ctx


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()
