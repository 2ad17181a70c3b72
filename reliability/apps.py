"""The apps under test, one per framework path and peer, with the same routes:

- ``POST /login?user=U``: log ``U`` in (satchel regenerates the ID; the peers set a key);
- ``POST /incr?key=K``: add 1 to the session's counter ``K`` (default ``n``);
- ``GET /count``: ``{"user": ..., "counters": {K: n}}``;
- ``GET /anon``: no session use;
- ``POST /flood``: write one value into the session (a new anonymous session per cookieless
  request);
- ``GET /stats``: the worker's pid, its RSS (kB) and, on the memory store, its entry count;
- ``GET /health``: ``ok``.

Every reply is JSON; ``user`` is ``null`` in an anonymous session, which is how the load
generator sees a silent reset. Apps are built from the environment (``from_env``), for
uvicorn ``--factory reliability.apps:asgi_from_env`` and gunicorn
``'reliability.apps:wsgi_from_env()'``: ``RELIABILITY_APP`` (a key of :data:`APPS`),
``RELIABILITY_STORE`` (a satchel store URL, or the Redis URL of a peer) and
``RELIABILITY_PREFIX`` (the peers' Redis key prefix). CSRF is off (the load is not about
it) and cookies are not ``Secure`` (plain http on loopback).
"""

from __future__ import annotations

import os
import time
from typing import Any

KEY = "reliability-key-0123456789-0123456789-0123"
ENV_APP, ENV_STORE, ENV_PREFIX = "RELIABILITY_APP", "RELIABILITY_STORE", "RELIABILITY_PREFIX"
PREFIX = "c:"  # counters are session keys c:<name>

# name -> (kind, label)
APPS: dict[str, tuple[str, str]] = {
    "satchel-asgi": ("asgi", "satchel, Starlette (uvicorn)"),
    "satchel-flask": ("wsgi", "satchel, Flask (gunicorn)"),
    "starsessions": ("asgi", "starsessions, Starlette (uvicorn)"),
    "flask-session": ("wsgi", "Flask-Session (gunicorn)"),
}


def rss_kb() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _counters(session: Any) -> dict[str, int]:
    return {k[len(PREFIX) :]: int(v) for k, v in session.items() if k.startswith(PREFIX)}


def _entries(store: Any) -> int | None:
    from satchel.stores.memory import MemoryStore

    return store.count(time.time()) if isinstance(store, MemoryStore) else None


# ASGI ------------------------------------------------------------------------------------


def asgi_from_env() -> Any:
    name, store = os.environ[ENV_APP], os.environ[ENV_STORE]
    if name == "satchel-asgi":
        return _satchel_asgi(store)
    if name == "starsessions":
        return _starsessions(store, os.environ[ENV_PREFIX])
    raise SystemExit(f"not an ASGI app: {name}")


def _starlette(log_in: Any, user_of: Any, store_of: Any = None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def login(request: Request) -> Response:
        log_in(request.session, request.query_params["user"])
        return JSONResponse({"user": user_of(request.session)})

    async def incr(request: Request) -> Response:
        key = PREFIX + request.query_params.get("key", "n")
        value = int(request.session.get(key, 0)) + 1
        request.session[key] = value
        return JSONResponse({"user": user_of(request.session), "value": value})

    async def count(request: Request) -> Response:
        session = request.session
        return JSONResponse({"user": user_of(session), "counters": _counters(session)})

    async def anon(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def flood(request: Request) -> Response:
        request.session["x"] = 1
        return PlainTextResponse("ok")

    async def stats(request: Request) -> Response:
        store = None if store_of is None else store_of()
        entries = None if store is None else _entries(store)
        return JSONResponse({"pid": os.getpid(), "rss_kb": rss_kb(), "entries": entries})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/incr", incr, methods=["POST"]),
            Route("/count", count),
            Route("/anon", anon),
            Route("/flood", flood, methods=["POST"]),
            Route("/stats", stats),
            Route("/health", anon),
        ]
    )


def _satchel_asgi(store_url: str) -> Any:
    from satchel import login
    from satchel.asgi import SessionMiddleware

    def user_of(session: Any) -> str | None:
        user: str | None = session.user_id
        return user

    holder: dict[str, Any] = {}  # the store, known once the middleware is built
    inner = _starlette(login, user_of, lambda: holder.get("store"))
    app = SessionMiddleware(
        inner, store=store_url, secret_keys=[KEY], csrf=False, cookie_secure=False
    )
    holder["store"] = app.store
    return app


def _starsessions(redis_url: str, prefix: str) -> Any:
    import redis.asyncio
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore

    def log_in(session: Any, user: str) -> None:
        session["user"] = user

    app = _starlette(log_in, lambda session: session.get("user"))
    app.add_middleware(SessionAutoloadMiddleware)
    app.add_middleware(
        SessionMiddleware,
        store=RedisStore(connection=redis.asyncio.Redis.from_url(redis_url), prefix=prefix),
        cookie_https_only=False,
        lifetime=3600,
    )
    return app


# WSGI ------------------------------------------------------------------------------------


def wsgi_from_env() -> Any:
    name, store = os.environ[ENV_APP], os.environ[ENV_STORE]
    if name == "satchel-flask":
        return _satchel_flask(store)
    if name == "flask-session":
        return _flask_session(store, os.environ[ENV_PREFIX])
    raise SystemExit(f"not a WSGI app: {name}")


def _flask(log_in: Any, user_of: Any, store_of: Any = None) -> Any:
    from flask import Flask, jsonify, request, session

    app = Flask("reliability")
    app.config["SECRET_KEY"] = KEY

    @app.post("/login")
    def login() -> Any:
        log_in(request.args["user"])
        return jsonify(user=user_of())

    @app.post("/incr")
    def incr() -> Any:
        key = PREFIX + request.args.get("key", "n")
        value = int(session.get(key, 0)) + 1
        session[key] = value
        return jsonify(user=user_of(), value=value)

    @app.get("/count")
    def count() -> Any:
        return jsonify(user=user_of(), counters=_counters(session))

    @app.get("/anon")
    @app.get("/health")
    def anon() -> str:
        return "ok"

    @app.post("/flood")
    def flood() -> str:
        session["x"] = 1
        return "ok"

    @app.get("/stats")
    def stats() -> Any:
        store = None if store_of is None else store_of(app)
        entries = None if store is None else _entries(store)
        return jsonify(pid=os.getpid(), rss_kb=rss_kb(), entries=entries)

    return app


def _satchel_flask(store_url: str) -> Any:
    from satchel.integrations.flask import Satchel, current_user_id, login_user

    def store_of(app: Any) -> Any:
        return Satchel.runtime(app).store

    app = _flask(login_user, current_user_id, store_of)
    app.config.update(SATCHEL_STORE=store_url, SATCHEL_CSRF=False, SATCHEL_COOKIE_SECURE=False)
    Satchel(app)
    return app


def _flask_session(redis_url: str, prefix: str) -> Any:
    import redis
    from flask import session
    from flask_session import Session  # type: ignore[import-untyped]

    def log_in(user: str) -> None:
        session["user"] = user

    app = _flask(log_in, lambda: session.get("user"))
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SESSION_KEY_PREFIX=prefix,
        SESSION_COOKIE_SECURE=False,
    )
    Session(app)
    return app
