"""Per-request cost of satchel's ASGI middleware against the same app without sessions
and against Starlette's SessionMiddleware, in one process and one run.

Apps are called in process (no HTTP server), as in ../shared/docs/performance-targets.md.
Routes (benchmarks/bench_apps.py): anonymous (no cookie, the handler ignores the
session), read (a live cookie, the handler reads one key), write (a live cookie, the
handler increments a counter), login (no cookie, the handler binds a user). Prints the
median microseconds per request.

    .venv/bin/python benchmarks/bench_asgi.py [--requests 2000] [--rounds 7] [--servers]

With --servers it adds satchel on the local Redis (127.0.0.1:6379) and PostgreSQL
(127.0.0.1:5432, database test), starsessions on the same Redis, and the time of one raw
driver round trip (redis-py asyncio GET, psycopg async SELECT 1) measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench_apps import SCENARIOS, _session_handlers, _starlette, asgi_scope
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessions
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from satchel import MemoryStore, Session, SQLiteStore, login
from satchel.asgi import SessionMiddleware

KEY = "benchmark-key-0123456789-0123456789-0123"


def _log_in(session: Any) -> None:
    if isinstance(session, Session):
        login(session, "alice")
    else:
        session["user"] = "alice"


def app_without_sessions() -> Starlette:
    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    return _starlette(dict.fromkeys(SCENARIOS, plain))  # type: ignore[no-any-return]


def app_with_sessions() -> Starlette:
    return _starlette(_session_handlers(_log_in))  # type: ignore[no-any-return]


async def call(app: Any, path: str, cookie: str | None) -> str | None:
    """One request; returns the name=value of a Set-Cookie, if any."""
    set_cookie: list[str] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            for name, value in message["headers"]:
                if name == b"set-cookie":
                    set_cookie.append(value.decode("latin-1").split(";", 1)[0])

    await app(asgi_scope(path, cookie), receive, send)
    return set_cookie[0] if set_cookie else None


async def measure(app: Any, route: str, requests: int, rounds: int) -> float:
    """Median over rounds of the mean microseconds per request."""
    cookie = await call(app, "/write", None)  # a live session for read and write
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(requests):
            if route in ("read", "write"):
                await call(app, "/" + route, cookie)
            else:
                await call(app, "/" + route, None)
        results.append((time.perf_counter() - start) / requests * 1e6)
    return statistics.median(results)


async def raw_round_trips(requests: int, rounds: int) -> dict[str, float]:
    """Median microseconds of one raw driver round trip, same loop, same run."""
    import psycopg
    import redis.asyncio

    client = redis.asyncio.Redis()
    await client.set("satchel-bench-raw", b"x")
    conn = await psycopg.AsyncConnection.connect(
        "postgresql://postgres@127.0.0.1:5432/test", autocommit=True
    )

    async def timed(op: Callable[[], Any]) -> float:
        results = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(requests):
                await op()
            results.append((time.perf_counter() - start) / requests * 1e6)
        return statistics.median(results)

    out = {
        "redis-py GET": await timed(lambda: client.get("satchel-bench-raw")),
        "psycopg SELECT 1": await timed(lambda: conn.execute("SELECT 1")),
    }
    await client.aclose()
    await conn.close()
    return out


def reset_servers() -> None:
    """Start from an empty benchmark table and no leftover benchmark keys."""
    import psycopg
    import redis

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS satchel_bench")
    client = redis.Redis()
    for key in client.scan_iter(match="satchel-bench:*", count=1000):
        client.delete(key)
    client.close()


def server_apps() -> dict[str, Callable[[], Any]]:
    from starsessions import SessionAutoloadMiddleware
    from starsessions import SessionMiddleware as StarSessions
    from starsessions.stores.redis import RedisStore as StarRedis

    from satchel.stores.postgres import PostgresStore
    from satchel.stores.redis import RedisStore

    def starsessions_app() -> Any:
        app = app_with_sessions()
        app.add_middleware(SessionAutoloadMiddleware)
        app.add_middleware(
            StarSessions, store=StarRedis(url="redis://127.0.0.1:6379/0"), cookie_https_only=False
        )
        return app

    return {
        "satchel + Redis": lambda: SessionMiddleware(
            app_with_sessions(),
            store=RedisStore("redis://127.0.0.1:6379/0", prefix="satchel-bench:"),
            secret_keys=[KEY],
        ),
        "satchel + PostgreSQL": lambda: SessionMiddleware(
            app_with_sessions(),
            store=PostgresStore("postgresql://postgres@127.0.0.1:5432/test", table="satchel_bench"),
            secret_keys=[KEY],
        ),
        "starsessions + Redis": starsessions_app,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--servers", action="store_true")
    parser.add_argument("--only", default="", help="run only apps whose name contains this")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    apps: dict[str, Callable[[], Any]] = {
        "Starlette, no sessions": app_without_sessions,
        "Starlette SessionMiddleware (signed cookie)": lambda: StarletteSessions(
            app_with_sessions(), secret_key=KEY
        ),
        "satchel + memory": lambda: SessionMiddleware(
            app_with_sessions(), store=MemoryStore(), secret_keys=[KEY]
        ),
        "satchel + SQLite": lambda: SessionMiddleware(
            app_with_sessions(), store=SQLiteStore(f"{tmp}/bench.db"), secret_keys=[KEY]
        ),
        "satchel cookie store (AES-GCM)": lambda: SessionMiddleware(
            app_with_sessions(),
            store="cookie://",
            secret_keys=[KEY],
            revocation_store=MemoryStore(),
        ),
        "satchel cookie store + SQLite revocation": lambda: SessionMiddleware(
            app_with_sessions(),
            store="cookie://",
            secret_keys=[KEY],
            revocation_store=SQLiteStore(f"{tmp}/revocation.db"),
        ),
    }
    if args.servers:
        reset_servers()
        apps.update(server_apps())
    routes = list(SCENARIOS)
    print(f"{'app':45} " + " ".join(f"{r:>10}" for r in routes) + "   (median us/request)")
    for name, factory in apps.items():
        if args.only.lower() not in name.lower():
            continue
        app = factory()
        row = [await measure(app, r, args.requests, args.rounds) for r in routes]
        print(f"{name:45} " + " ".join(f"{v:10.1f}" for v in row))
        store = getattr(app, "store", None)
        if store is not None:
            await store.aclose()
    if args.servers:
        for name, value in (await raw_round_trips(args.requests, args.rounds)).items():
            print(f"{'one raw round trip, ' + name:45} {value:10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
