"""WSGI session middleware; the session lives in ``environ["satchel.session"]`` and is
loaded from the store on first access, so a request that never looks costs nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Unpack

from .cookiestore import CookieStore
from .engine import RequestInfo, drive, response_headers
from .errors import StoreError
from .log import logger
from .options import DEFAULT_STORE, SessionOptions, build
from .session import Session
from .stores.base import Store
from .types import Environ, ExcInfo, StartResponse, WSGIApp

ENVIRON_KEY = "satchel.session"
_UNAVAILABLE_BODY = b"Service temporarily unavailable. Please try again shortly.\n"
_UNAVAILABLE_HEADERS = [
    ("content-type", "text/plain; charset=utf-8"),
    ("content-length", str(len(_UNAVAILABLE_BODY))),
    ("retry-after", "5"),
    ("cache-control", "no-store"),
]


class _Body:
    """The app's body with its first chunk already drawn (which makes generator apps call
    start_response, so the commit happens before any byte leaves)."""

    def __init__(self, first: list[bytes], rest: Iterator[bytes], result: Iterable[bytes]):
        self._first, self._rest, self._result = first, rest, result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        yield from self._rest

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class SessionMiddleware:
    """``SessionMiddleware(app, store="sqlite:///satchel.db", secret_keys=[...], ...)``;
    the same options as :class:`satchel.asgi.SessionMiddleware`."""

    def __init__(
        self,
        app: WSGIApp,
        store: str | Store | CookieStore = DEFAULT_STORE,
        **options: Unpack[SessionOptions],
    ) -> None:
        self.app = app
        self.store, self.engine = build(store, options)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        engine, store = self.engine, self.store
        session = Session()
        session_id, resign = engine.session_id_from_cookie(environ.get("HTTP_COOKIE"))
        if session_id is not None:

            def load() -> None:
                drive(engine.open(session, session_id, resign), store)

            session._loader = load

        def info() -> RequestInfo:
            return RequestInfo(
                user_agent=(environ.get("HTTP_USER_AGENT") or "")[:512] or None,
                client_ip=environ.get("REMOTE_ADDR"),
            )

        def save(s: Session) -> None:
            drive(engine.commit(s, info), store)

        session._save_hook = save
        environ[ENVIRON_KEY] = session
        state: dict[str, Any] = {"started": False, "failed": False}

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None, /
        ) -> Any:
            state["started"] = True
            if (
                exc_info is None
                and int(status[:3]) < 500
                and session._loader is None
                and session._needs_commit()
            ):
                try:
                    save(session)
                except StoreError as exc:
                    logger.error("session store unavailable while committing: %s", exc)
                    state["failed"] = True
                    return start_response("503 Service Unavailable", list(_UNAVAILABLE_HEADERS))
                cookie = session._outgoing_cookie
                if cookie is not None:
                    session._outgoing_cookie = None
                    headers = response_headers(headers, cookie)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        result: Iterable[bytes] = ()
        try:
            result = self.app(environ, start)
            chunks = iter(result)
            first = [chunk for chunk in [next(chunks, None)] if chunk is not None]
        except StoreError as exc:
            _close(result)
            if state["started"]:
                raise
            logger.error("session store unavailable while loading: %s", exc)
            start_response("503 Service Unavailable", list(_UNAVAILABLE_HEADERS))
            return [_UNAVAILABLE_BODY]
        if state["failed"]:
            _close(result)
            return [_UNAVAILABLE_BODY]
        return _Body(first, chunks, result)


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()
