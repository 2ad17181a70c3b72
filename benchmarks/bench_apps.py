"""The apps that benchmarks/bench_table.py measures: the same four routes on every app.

Routes (all GET, so no app pays for a CSRF check the others do not make):

- ``/anonymous``: no cookie, the handler ignores the session;
- ``/read``: a live cookie, the handler reads one key;
- ``/write``: a live cookie, the handler increments a counter;
- ``/login``: no cookie, the handler sets a user ID (a new one on every request, so no
  user's index grows during a run).

The ASGI apps are Starlette apps and the WSGI apps Flask apps, each driven in process
through httpx's ``ASGITransport`` / ``WSGITransport``. ``build(name, redis_url, prefix)``
returns the app and a ``close`` callable; every Redis key an app writes starts with
``prefix``, so a run can clean up after itself. ``from_env()`` builds one for an HTTP server
(uvicorn ``--factory``, gunicorn ``'bench_apps:from_env()'``), as benchmarks/bench_http.py does.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from satchel import login as satchel_login  # here: an import in the handler costs ~5k a call

KEY = "benchmark-key-0123456789-0123456789-0123"
SCENARIOS = ("anonymous", "read", "write", "login")
USER_IDS = (f"user{n}" for n in itertools.count())


@dataclass(frozen=True)
class AppSpec:
    """One row of the tables: its label, whether it talks ASGI or WSGI, whether it keeps
    its sessions in Redis (and so has rows in the Redis tables)."""

    label: str
    kind: str  # "asgi" or "wsgi"
    redis: bool


APPS: dict[str, AppSpec] = {
    "bare": AppSpec("Starlette, no sessions", "asgi", False),
    "passthrough": AppSpec(
        "Starlette behind the least a session middleware does (finds the Cookie header, "
        "wraps send)",
        "asgi",
        False,
    ),
    "floor": AppSpec(
        "floor: no session layer, raw redis-py (read GET; write GET + SET; login SET)", "asgi", True
    ),
    "starlette-cookie": AppSpec("Starlette SessionMiddleware (signed cookie)", "asgi", False),
    "starsessions": AppSpec("starsessions + Redis", "asgi", True),
    "satchel-redis": AppSpec("satchel + Redis", "asgi", True),
    "satchel-cookie": AppSpec("satchel cookie store", "asgi", False),
    "flask-bare": AppSpec(
        "Flask, session untouched (its cookie interface still runs)", "wsgi", False
    ),
    "flask-cookie": AppSpec("Flask's own cookie session", "wsgi", False),
    "flask-session": AppSpec("Flask-Session + Redis", "wsgi", True),
    "flask-satchel": AppSpec("Flask + satchel + Redis", "wsgi", True),
}

Close = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def chosen(only: list[str]) -> list[str]:
    """The apps named by ``--only`` (repeatable, each a comma-separated list), in table
    order; all of them when none is named. A name of :data:`APPS` picks that app, any
    other word the apps whose name contains it (``satchel``: every satchel app). A word
    that picks nothing ends the run with the list of names."""
    words = [word for value in only for word in value.split(",") if word]
    picked: set[str] = set()
    for word in words:
        matches = [word] if word in APPS else [name for name in APPS if word in name]
        if not matches:
            raise SystemExit(f"no app is called {word!r}; the apps: {', '.join(APPS)}")
        picked.update(matches)
    return [name for name in APPS if not words or name in picked]


def build(name: str, redis_url: str, prefix: str) -> tuple[Any, Close]:
    """The app called ``name`` (a key of ``APPS``) and what closes its connections."""
    builders: dict[str, Callable[[str, str], tuple[Any, Close]]] = {
        "bare": _bare,
        "passthrough": _passthrough,
        "floor": _floor,
        "starlette-cookie": _starlette_cookie,
        "starsessions": _starsessions,
        "satchel-redis": _satchel_redis,
        "satchel-cookie": _satchel_cookie,
        "flask-bare": _flask_bare,
        "flask-cookie": _flask_cookie,
        "flask-session": _flask_session,
        "flask-satchel": _flask_satchel,
    }
    return builders[name](redis_url, prefix)


ENV_APP, ENV_REDIS_URL, ENV_PREFIX = "BENCH_APP", "BENCH_REDIS_URL", "BENCH_PREFIX"


def from_env() -> Any:
    """The app named by ``$BENCH_APP``, on ``$BENCH_REDIS_URL`` under ``$BENCH_PREFIX``: a
    factory for servers that import an app by name. Its connections close with the process."""
    app, _ = build(os.environ[ENV_APP], os.environ[ENV_REDIS_URL], os.environ[ENV_PREFIX])
    return app


# ASGI -------------------------------------------------------------------------------------


def _starlette(handlers: dict[str, Callable[..., Any]]) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route(f"/{name}", handlers[name]) for name in SCENARIOS])


def _session_handlers(log_in: Callable[[Any], None]) -> dict[str, Callable[..., Any]]:
    """Handlers that use ``request.session`` (a dict-like, whoever provides it)."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    async def anonymous(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("n", 0)))

    async def write(request: Request) -> Response:
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse("ok")

    async def login(request: Request) -> Response:
        log_in(request.session)
        return PlainTextResponse("ok")

    return {"anonymous": anonymous, "read": read, "write": write, "login": login}


def _set_user(session: Any) -> None:
    session["user_id"] = next(USER_IDS)


def _bare(redis_url: str, prefix: str) -> tuple[Any, Close]:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    return _starlette(dict.fromkeys(SCENARIOS, plain)), _nothing


def _passthrough(redis_url: str, prefix: str) -> tuple[Any, Close]:
    """The bare app behind an ASGI middleware that does only what any session middleware
    must on a request without a session: look for the Cookie header, and hand the app a
    ``send`` of its own (through which a session's cookie would go out). Its cost over
    the bare app is the floor of the anonymous column."""
    app, close = _bare(redis_url, prefix)

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        cookie = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = value
        scope["session"] = cookie

        async def send_wrapper(message: Any) -> None:
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware, close


def _floor(redis_url: str, prefix: str) -> tuple[Any, Close]:
    """No session layer: the round trips a Redis session needs, made raw with redis-py
    (a JSON value under a random key named by a plain cookie)."""
    import redis.asyncio
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    client = redis.asyncio.Redis.from_url(redis_url)
    ttl = 3600

    def new_key(response: Response) -> str:
        sid = secrets.token_urlsafe(32)
        response.set_cookie("sid", sid, secure=True, httponly=True, samesite="lax")
        return sid

    async def anonymous(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        raw = await client.get(prefix + request.cookies.get("sid", ""))
        return PlainTextResponse(str(json.loads(raw or "{}").get("n", 0)))

    async def write(request: Request) -> Response:
        response = PlainTextResponse("ok")
        sid = request.cookies.get("sid")
        raw = await client.get(prefix + sid) if sid else None
        data = json.loads(raw or "{}")
        data["n"] = data.get("n", 0) + 1
        key = sid if raw and sid else new_key(response)
        await client.set(prefix + key, json.dumps(data), ex=ttl)
        return response

    async def login(request: Request) -> Response:
        response = PlainTextResponse("ok")
        data = json.dumps({"user_id": next(USER_IDS)})
        await client.set(prefix + new_key(response), data, ex=ttl)
        return response

    app = _starlette({"anonymous": anonymous, "read": read, "write": write, "login": login})
    return app, client.aclose


def _starlette_cookie(redis_url: str, prefix: str) -> tuple[Any, Close]:
    from starlette.middleware.sessions import SessionMiddleware

    app = SessionMiddleware(_starlette(_session_handlers(_set_user)), secret_key=KEY)
    return app, _nothing


def _starsessions(redis_url: str, prefix: str) -> tuple[Any, Close]:
    import redis.asyncio
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore

    client = redis.asyncio.Redis.from_url(redis_url)
    app = _starlette(_session_handlers(_set_user))
    app.add_middleware(SessionAutoloadMiddleware)
    app.add_middleware(
        SessionMiddleware,
        store=RedisStore(connection=client, prefix=prefix),
        cookie_https_only=True,
        lifetime=3600,
    )
    return app, client.aclose


def _satchel_login(session: Any) -> None:
    satchel_login(session, next(USER_IDS))


def _satchel_redis(redis_url: str, prefix: str) -> tuple[Any, Close]:
    from satchel.asgi import SessionMiddleware

    app = SessionMiddleware(
        _starlette(_session_handlers(_satchel_login)),
        store=f"{redis_url}?prefix={prefix}",
        secret_keys=[KEY],
    )
    store = app.store
    assert store is not None
    return app, store.aclose


def _satchel_cookie(redis_url: str, prefix: str) -> tuple[Any, Close]:
    from satchel.asgi import SessionMiddleware

    app = SessionMiddleware(
        _starlette(_session_handlers(_satchel_login)), store="cookie://", secret_keys=[KEY]
    )
    return app, _nothing


# WSGI -------------------------------------------------------------------------------------


def _flask(log_in: Callable[[Any], None], sessions: bool = True) -> Any:
    from flask import Flask, session

    app = Flask("bench")
    app.config["SECRET_KEY"] = KEY

    @app.get("/anonymous")
    def anonymous() -> str:
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("n", 0)) if sessions else "ok"

    @app.get("/write")
    def write() -> str:
        if sessions:
            session["n"] = session.get("n", 0) + 1
        return "ok"

    @app.get("/login")
    def login() -> str:
        if sessions:
            log_in(session)
        return "ok"

    return app


def _flask_bare(redis_url: str, prefix: str) -> tuple[Any, Close]:
    return _flask(_set_user, sessions=False), _nothing


def _flask_cookie(redis_url: str, prefix: str) -> tuple[Any, Close]:
    return _flask(_set_user), _nothing


def _flask_session(redis_url: str, prefix: str) -> tuple[Any, Close]:
    import redis
    from flask_session import Session  # type: ignore[import-untyped]

    client = redis.Redis.from_url(redis_url)
    app = _flask(_set_user)
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=client,
        SESSION_KEY_PREFIX=prefix,
        SESSION_COOKIE_SECURE=True,
    )
    Session(app)

    async def close() -> None:
        client.close()

    return app, close


def _flask_satchel(redis_url: str, prefix: str) -> tuple[Any, Close]:
    from satchel.integrations.flask import Satchel, login_user

    def log_in(session: Any) -> None:
        login_user(next(USER_IDS))

    app = _flask(log_in)
    app.config["SATCHEL_STORE"] = f"{redis_url}?prefix={prefix}"
    Satchel(app)

    async def close() -> None:
        store = Satchel.runtime(app).store
        assert store is not None
        store.close()

    return app, close


def asgi_scope(path: str, cookie: str | None) -> dict[str, Any]:
    """A GET request's ASGI scope, with the session cookie if given."""
    headers = [(b"host", b"bench"), (b"user-agent", b"bench/1")]
    if cookie:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 443),
    }
