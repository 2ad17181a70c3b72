"""Django: a store outage answers 503 within the store's timeout, never a hang, a 500 or a
busy loop; and one user's logins keep the per-user index bounded.

Django retries ``SessionBase.create`` for as long as the backend raises ``CreateError``; a
store error turned into ``CreateError`` would spin every worker at full CPU for the whole
outage. Each test breaks a real server (a private redis-server stopped or frozen, a private
memcached stopped, PostgreSQL behind a loopback proxy that is cut) and sends the three
requests that touch the store: an anonymous write (create), a request with a cookie (load)
and a login (cycle_key). A wrapper counts the store calls each request makes.

Django's settings are process-wide: this module reuses the example app configured by
tests/test_integration_django.py when that module ran first, and configures it otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from .conftest import KEY
from .services import MemcachedServer, RedisServer, TcpProxy, port_open, unavailable

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 1.0
BOUND = TIMEOUT * 1.5 + 0.5  # the store's timeout, with room for a loaded machine
MAX_CALLS = 3  # store calls a failing request may make (no retry loop)


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    name = "example_django_app"
    if name not in sys.modules:
        directory = tmp_path_factory.mktemp("django")
        os.environ["SECRET_KEYS"] = KEY
        os.environ["SESSION_STORE"] = f"sqlite:///{directory}/sessions.db"
        os.environ["DJANGO_DB"] = str(directory / "django.sqlite3")
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / "django_app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    if not User.objects.filter(username="carol").exists():
        User.objects.create_user("carol", password="outage")
    return sys.modules[name]


class Counting:
    """A real store, with a count of the calls made through it."""

    def __init__(self, store: Any) -> None:
        self.store, self.calls = store, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return call


@pytest.fixture
def use_store(
    django_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Counting]]:
    """Point the Django session engine at a store URL for one test."""
    from satchel.integrations import django as integration
    from satchel.options import build
    from satchel.stores.registry import store_from_url

    made: list[Any] = []

    def use(url: str) -> Counting:
        store = store_from_url(url)
        made.append(store)
        counting = Counting(store)
        engine = build(
            "memory://",
            {
                "idle_timeout": 1800,
                "absolute_timeout": 86400,
                "refresh_interval": 60,
                "insecure_unsigned_cookies": True,
            },
        )[1]
        monkeypatch.setattr(integration, "runtime", lambda: (counting, engine))
        return counting

    yield use
    for store in made:
        with contextlib.suppress(Exception):  # the server may be gone for good
            store.close()


def client() -> Any:
    from django.test import Client

    return Client(HTTP_HOST="testserver", HTTP_REFERER="https://testserver/")


def csrf(c: Any) -> str:
    return str(c.get("/csrf", secure=True).json()["csrf_token"])


def timed(counting: Counting, send: Callable[[], Any]) -> tuple[Any, float, int]:
    counting.calls = 0
    started = time.monotonic()
    response = send()
    return response, time.monotonic() - started, counting.calls


def check_outage(counting: Counting, break_store: Callable[[], None], bound: float = BOUND) -> None:
    """Sessions made while the store works; then the store breaks and each kind of request
    must get a plain 503 within the timeout, after a bounded number of store calls."""
    with_cookie = client()
    with_cookie.post("/notes/a", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(with_cookie))
    assert "sessionid" in with_cookie.cookies
    anonymous, login = client(), client()
    tokens = {id(c): csrf(c) for c in (anonymous, login)}
    break_store()

    requests: dict[str, Callable[[], Any]] = {
        "create": lambda: anonymous.post(
            "/notes/b", {"value": "2"}, secure=True, HTTP_X_CSRFTOKEN=tokens[id(anonymous)]
        ),
        "load": lambda: with_cookie.get("/me", secure=True),
        "login": lambda: login.post(
            "/login",
            {"username": "carol", "password": "outage"},
            secure=True,
            HTTP_X_CSRFTOKEN=tokens[id(login)],
        ),
    }
    for what, send in requests.items():
        response, elapsed, calls = timed(counting, send)
        assert response.status_code == 503, (what, response.status_code)
        assert response["Retry-After"] == "5"
        assert b"Traceback" not in response.content
        assert "sessionid" not in response.cookies  # nothing was saved: no new cookie
        assert elapsed < bound, (what, elapsed, calls)
        assert 1 <= calls <= MAX_CALLS, (what, calls)


def test_redis_stopped_gives_503(private_redis: RedisServer, use_store: Any) -> None:
    counting = use_store(private_redis.url + f"?socket_timeout={TIMEOUT}&connect_timeout={TIMEOUT}")
    check_outage(counting, private_redis.stop)


def test_redis_frozen_gives_503(private_redis: RedisServer, use_store: Any) -> None:
    counting = use_store(private_redis.url + f"?socket_timeout={TIMEOUT}&connect_timeout={TIMEOUT}")
    try:
        check_outage(counting, private_redis.pause)  # one socket_timeout, never retried
    finally:
        private_redis.resume()


def test_memcached_stopped_gives_503(private_memcached: MemcachedServer, use_store: Any) -> None:
    counting = use_store(private_memcached.url + f"?timeout={TIMEOUT}")
    check_outage(counting, private_memcached.stop)


def test_postgres_cut_gives_503(use_store: Any) -> None:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    table = f"satchel_test_{uuid.uuid4().hex[:10]}"
    proxy = TcpProxy(5432)
    try:
        counting = use_store(
            f"postgresql://postgres@127.0.0.1:{proxy.port}/test?table={table}&timeout={TIMEOUT}"
        )
        check_outage(counting, proxy.cut)
    finally:
        proxy.close()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {table}")


def test_real_key_collision_is_retried_with_a_new_key(
    django_app: ModuleType, use_store: Any
) -> None:
    """Only a real collision becomes Django's CreateError (a fresh key is tried)."""
    from satchel import ids
    from satchel.integrations.django import SessionStore

    counting = use_store("memory://")
    taken = ids.new_session_id()
    first = SessionStore()
    first._get_new_session_key = lambda: taken  # type: ignore[method-assign]
    first["a"] = 1
    first.save()
    keys = iter([taken, ids.new_session_id()])
    second = SessionStore()
    second._get_new_session_key = lambda: next(keys)  # type: ignore[method-assign]
    second["b"] = 2
    second.save()
    assert second.session_key not in (None, taken)
    assert counting.calls >= 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asgi_redis_stopped_gives_503(
    private_redis: RedisServer, use_store: Any, anyio_backend: str
) -> None:
    """The same under Django's ASGI handler (AsyncClient): DeviceMiddleware runs in
    Django's sync thread, the failure still reaches it."""
    from django.test import AsyncClient

    counting = use_store(private_redis.url + f"?socket_timeout={TIMEOUT}&connect_timeout={TIMEOUT}")
    c = AsyncClient(HTTP_HOST="testserver", HTTP_REFERER="https://testserver/")
    token = (await c.get("/csrf", secure=True)).json()["csrf_token"]
    assert (
        await c.post("/notes/a", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=token)
    ).status_code == 200
    private_redis.stop()
    fresh = AsyncClient(HTTP_HOST="testserver", HTTP_REFERER="https://testserver/")
    fresh.cookies["csrftoken"] = c.cookies["csrftoken"].value
    sends: dict[str, Callable[[], Any]] = {
        "load": lambda: c.get("/me", secure=True),
        "create": lambda: fresh.post(
            "/notes/b", {"value": "2"}, secure=True, HTTP_X_CSRFTOKEN=token
        ),
    }
    for what, send in sends.items():
        counting.calls = 0
        started = time.monotonic()
        response = await send()
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (what, response.status_code)
        assert elapsed < BOUND, (what, elapsed)
        assert 1 <= counting.calls <= MAX_CALLS, (what, counting.calls)


def test_repeated_collisions_end_in_an_error_not_a_loop(
    django_app: ModuleType, use_store: Any
) -> None:
    """Even a store that reports a collision on every create is tried a few times only."""
    from satchel import ids
    from satchel.errors import KeyCollision
    from satchel.integrations.django import SessionStore

    counting = use_store("memory://")
    taken = ids.new_session_id()
    first = SessionStore()
    first._get_new_session_key = lambda: taken  # type: ignore[method-assign]
    first["a"] = 1
    first.save()
    stuck = SessionStore()
    stuck._get_new_session_key = lambda: taken  # type: ignore[method-assign]
    stuck["b"] = 2
    counting.calls = 0
    with pytest.raises(KeyCollision):
        stuck.save()
    assert counting.calls == 3


def test_one_users_repeated_logins_keep_the_index_bounded(redis_url: str, use_store: Any) -> None:
    """Each logout leaves the ended session's index entry behind (Django deletes the
    record only); the core's per-user cap flow runs after Django logins too and prunes them
    once the index holds more than ``INDEX_SLACK`` entries (Redis: the index is a sorted
    set kept until each dead session's deadline; 0.1 held 8 entries after 8 logins)."""
    import redis

    prefix = f"satchel-test-{uuid.uuid4().hex[:8]}:"
    counting = use_store(f"{redis_url}?prefix={prefix}")
    c = client()
    from satchel.user_sessions import INDEX_SLACK

    for _ in range(INDEX_SLACK + 4):  # log out (the record goes, its entry stays), log in
        c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        response = c.post(
            "/login",
            {"username": "carol", "password": "outage"},
            secure=True,
            HTTP_X_CSRFTOKEN=csrf(c),
        )
        assert response.status_code == 200
    from django.contrib.auth.models import User

    user = str(User.objects.get(username="carol").pk)  # Django indexes by primary key
    server = redis.Redis.from_url(redis_url)
    try:
        assert server.zcard(counting.store.index_key(user)) <= INDEX_SLACK + 1
    finally:
        server.close()
