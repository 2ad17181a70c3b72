"""The migration guides' before/after examples (examples/migrations/from_*.py): the same
journey (log in, write, read, log out) works on the peer and on satchel, through the
framework's test client, and a cookie the peer issued is, or is not, a login under satchel
exactly as docs/migrating/ says."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "migrations"
HTTPS = "https://localhost"  # the cookies are Secure


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def no_token() -> dict[str, str]:
    return {}


def satchel_token(client: Any) -> Callable[[], dict[str, str]]:
    """A fresh CSRF token before each post (a login rotates it)."""
    return lambda: {"csrf_token": client.get(f"{HTTPS}/csrf").json["csrf_token"]}


def flask_journey(client: Any, token: Callable[[], dict[str, str]]) -> None:
    assert client.post(f"{HTTPS}/login", data={"username": "alice", **token()}).text == (
        "logged in"
    )
    assert client.post(f"{HTTPS}/theme", data={"theme": "dark", **token()}).text == "saved"
    assert client.get(f"{HTTPS}/me").json == {"user": "alice", "theme": "dark"}
    assert client.post(f"{HTTPS}/logout", data=token()).text == "logged out"
    assert client.get(f"{HTTPS}/me").json == {"user": None, "theme": None}


def with_cookie(app: Any, name: str, value: str) -> Any:
    client = app.test_client()
    client.set_cookie(name, value, domain="localhost")
    return client


# -- Flask-Session ---------------------------------------------------------------------------


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    import redis

    yield redis_url
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match="session:*"):
        client.delete(key)
    client.close()


def _forged(value: str) -> str:
    """``value`` with its signature altered: a character well inside it replaced by another
    (replacing the last two with a fixed "xx" left it unchanged now and then: the last
    base64 character carries padding bits, and the rest may already read "xx")."""
    at = len(value) - 5
    return value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1 :]


# --8<-- [start:flask_session]
def test_flask_session_before_and_after(redis_db: str) -> None:
    migrate = example("from_flask_session")
    old_app, new_app = migrate.before(redis_db, KEY), migrate.after(redis_db, KEY)
    flask_journey(old_app.test_client(), no_token)
    new = new_app.test_client()
    flask_journey(new, satchel_token(new))


def test_flask_session_users_log_in_again(redis_db: str) -> None:
    migrate = example("from_flask_session")
    old_app, new_app = migrate.before(redis_db, KEY), migrate.after(redis_db, KEY)
    old = old_app.test_client()
    old.post(f"{HTTPS}/login", data={"username": "alice"})
    cookie = old.get_cookie("session")
    assert cookie is not None
    # the same cookie, sent to the app on satchel: not a login (another cookie name, and
    # an ID satchel never issued); the user logs in again
    assert with_cookie(new_app, "session", cookie.value).get(f"{HTTPS}/me").json == {
        "user": None,
        "theme": None,
    }


# --8<-- [end:flask_session]


# -- Flask's cookie sessions -----------------------------------------------------------------


# --8<-- [start:flask_cookies]
def test_flask_cookies_before_and_after(tmp_path: Path) -> None:
    migrate = example("from_flask_cookies")
    old_app = migrate.before(KEY)
    new_app = migrate.after(KEY, f"sqlite:///{tmp_path}/s.db")
    flask_journey(old_app.test_client(), no_token)
    new = new_app.test_client()
    flask_journey(new, satchel_token(new))


def test_flask_cookie_logins_are_carried_over_once(tmp_path: Path) -> None:
    migrate = example("from_flask_cookies")
    old_app = migrate.before(KEY)
    new_app = migrate.after(KEY, f"sqlite:///{tmp_path}/s.db")
    old = old_app.test_client()
    old.post(f"{HTTPS}/login", data={"username": "alice"})
    cookie = old.get_cookie("session")
    assert cookie is not None
    browser = with_cookie(new_app, "session", cookie.value)
    first = browser.get(f"{HTTPS}/me")
    assert first.json == {"user": "alice", "theme": None}  # still logged in
    assert browser.get_cookie("session") is None  # the old cookie was deleted
    assert browser.get_cookie("satchel") is not None  # a satchel session instead
    assert browser.get(f"{HTTPS}/me").json == {"user": "alice", "theme": None}
    # a cookie signed with another key, or tampered with, is no login
    forged = with_cookie(new_app, "session", _forged(cookie.value))
    assert forged.get(f"{HTTPS}/me").json == {"user": None, "theme": None}


def test_flask_cookie_without_carry_over_is_no_login(tmp_path: Path) -> None:
    migrate = example("from_flask_cookies")
    old = migrate.before(KEY).test_client()
    old.post(f"{HTTPS}/login", data={"username": "alice"})
    cookie = old.get_cookie("session")
    assert cookie is not None
    new_app = migrate.after(KEY, f"sqlite:///{tmp_path}/s.db", carry_over=False)
    me = with_cookie(new_app, "session", cookie.value).get(f"{HTTPS}/me")
    assert me.json == {"user": None, "theme": None}


# --8<-- [end:flask_cookies]


# -- Starlette's SessionMiddleware and starsessions ------------------------------------------


def starlette_client(app: Any, cookies: dict[str, str] | None = None) -> Any:
    from starlette.testclient import TestClient

    return TestClient(app, base_url="https://testserver", cookies=cookies)


def starlette_journey(client: Any, token: Callable[[], dict[str, str]]) -> None:
    assert client.post("/login", data={"username": "alice", **token()}).json() == {"ok": True}
    assert client.post("/theme", data={"theme": "dark", **token()}).json() == {"ok": True}
    assert client.get("/me").json() == {"user": "alice", "theme": "dark"}
    assert client.post("/logout", data=token()).json() == {"ok": True}
    assert client.get("/me").json() == {"user": None, "theme": None}


def starlette_token(client: Any) -> Callable[[], dict[str, str]]:
    return lambda: {"csrf_token": client.get("/csrf").json()["csrf_token"]}


# --8<-- [start:starlette]
def test_starlette_sessions_before_and_after(tmp_path: Path) -> None:
    migrate = example("from_starlette_sessions")
    with starlette_client(migrate.before(KEY)) as old:
        starlette_journey(old, no_token)
    with starlette_client(migrate.after(KEY, f"sqlite:///{tmp_path}/s.db")) as new:
        starlette_journey(new, starlette_token(new))


def test_starlette_logins_are_carried_over_once(tmp_path: Path) -> None:
    migrate = example("from_starlette_sessions")
    with starlette_client(migrate.before(KEY)) as old:
        old.post("/login", data={"username": "alice"})
        cookie = old.cookies["session"]
    store = f"sqlite:///{tmp_path}/s.db"
    with starlette_client(migrate.after(KEY, store), cookies={"session": cookie}) as browser:
        first = browser.get("/me")
        assert first.json() == {"user": "alice", "theme": None}  # still logged in
        set_cookies = first.headers.get_list("set-cookie")
        assert any(c.startswith("session=;") and "Max-Age=0" in c for c in set_cookies)
        assert "satchel" in browser.cookies  # a satchel session instead
        assert browser.get("/me").json() == {"user": "alice", "theme": None}
    forged = {"session": _forged(cookie)}
    with starlette_client(migrate.after(KEY, store), cookies=forged) as attacker:
        assert attacker.get("/me").json() == {"user": None, "theme": None}
    app = migrate.after(KEY, store, carry_over=False)
    with starlette_client(app, cookies={"session": cookie}) as without:
        assert without.get("/me").json() == {"user": None, "theme": None}


# --8<-- [end:starlette]


async def async_journey(client: Any, csrf: bool) -> None:
    async def token() -> dict[str, str]:
        return {"csrf_token": (await client.get("/csrf")).json()["csrf_token"]} if csrf else {}

    login = {"username": "alice", **(await token())}
    assert (await client.post("/login", data=login)).json() == {"ok": True}
    theme = {"theme": "dark", **(await token())}
    assert (await client.post("/theme", data=theme)).json() == {"ok": True}
    assert (await client.get("/me")).json() == {"user": "alice", "theme": "dark"}
    assert (await client.post("/logout", data=await token())).json() == {"ok": True}
    assert (await client.get("/me")).json() == {"user": None, "theme": None}


@pytest.fixture
async def starsessions_redis(redis_url: str) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    yield redis
    async for key in redis.scan_iter(match="starsessions.*"):
        await redis.delete(key)
    await redis.aclose()


@pytest.fixture
async def satchel_redis(redis_url: str) -> AsyncIterator[Any]:
    from satchel import store_from_url

    store = store_from_url(redis_url)
    yield store
    await store.aclose()


def asgi_client(app: Any, cookies: dict[str, str] | None = None) -> Any:
    import httpx

    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="https://testserver", cookies=cookies)


# --8<-- [start:starsessions]
@pytest.mark.anyio
async def test_starsessions_before_and_after(starsessions_redis: Any, satchel_redis: Any) -> None:
    migrate = example("from_starsessions")
    async with asgi_client(migrate.before(starsessions_redis)) as old:
        await async_journey(old, csrf=False)
    async with asgi_client(migrate.after(satchel_redis, KEY)) as new:
        await async_journey(new, csrf=True)


@pytest.mark.anyio
async def test_starsessions_users_log_in_again(starsessions_redis: Any, satchel_redis: Any) -> None:
    migrate = example("from_starsessions")
    async with asgi_client(migrate.before(starsessions_redis)) as old:
        await old.post("/login", data={"username": "alice"})
        cookie = old.cookies["session"]
        assert (await old.get("/me")).json()["user"] == "alice"
    # the same cookie name, but an ID satchel never issued: no store call, no login
    new_app = migrate.after(satchel_redis, KEY)
    async with asgi_client(new_app, cookies={"session": cookie}) as new:
        assert (await new.get("/me")).json() == {"user": None, "theme": None}


# --8<-- [end:starsessions]
