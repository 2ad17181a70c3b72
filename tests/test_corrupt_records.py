"""A corrupt stored record is discarded with a ``satchel.security`` warning and a security
event, never a 500 on every request until it expires.

Each store's real backend is edited directly (memory, file, SQLite, Redis, PostgreSQL,
MariaDB, Memcached) to hold a record whose value has a bad tag or payload, nests deep
enough to blow the recursion limit, or whose metadata has a field of the wrong type; then
a request carries the valid cookie for it, through ASGI (async store path) and WSGI (sync
path). The cookie store gets the same with a correctly encrypted or signed cookie."""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from satchel import MemoryStore, Session, ids
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.cookie import CookieBackend, CookieStore
from satchel.events import SessionEvent as Event
from satchel.record import Meta, Record
from satchel.stores import FileStore, Listable, SQLiteStore, Store
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .helpers import set_cookie_value
from .services import MemcachedServer, port_open, unavailable

pytestmark = pytest.mark.anyio
BASE = "https://testserver"


# -- what goes wrong in a record ------------------------------------------------------------

Data = dict[str, str]
Corruption = Callable[[Data, dict[str, Any]], None]
DEEP = "[" * 100_000 + "]" * 100_000  # json.loads hits the recursion limit on this
# In place of a value's JSON text, the store's own document nests this deep (PostgreSQL's
# jsonb accepts it; every JSON decoder in Python hits its recursion limit).
DEEP_DOCUMENT = "[" * 5_000 + "]" * 5_000
_RAW = "\x00raw-document\x00"


def dumps(data: Any) -> str:
    """``json.dumps``, with a ``_RAW`` placeholder value replaced by ``DEEP_DOCUMENT``."""
    return json.dumps(data).replace(json.dumps(_RAW), DEEP_DOCUMENT)


def _value(text: str) -> Corruption:
    def corrupt(data: Data, meta: dict[str, Any]) -> None:
        data["who"] = text

    return corrupt


def _field(name: str, value: Any) -> Corruption:
    def corrupt(data: Data, meta: dict[str, Any]) -> None:
        meta[name] = value

    return corrupt


VALUE_CORRUPTIONS: dict[str, Corruption] = {
    "unknown-tag": _value('{"$t": "nope", "v": 1}'),
    "bad-uuid-payload": _value('{"$t": "uuid", "v": 5}'),
    "bad-bytes-payload": _value('{"$t": "bytes", "v": "!!"}'),
    "bad-set-payload": _value('{"$t": "set", "v": [[1]]}'),
    "deep-nesting": _value(DEEP),
    "nested-past-the-limit": _value("[" * 40 + "]" * 40),
    "lone-surrogate-escape": _value('"\\ud800"'),
}
META_CORRUPTIONS: dict[str, Corruption] = {
    "created-not-a-number": _field("created", "x"),
    "created-past-a-float": _field("created", 10**400),  # was an OverflowError: a 500
    "deadline-not-a-number": _field("absolute_deadline", "soon"),
    "idle-timeout-null": _field("idle_timeout", None),
    "user-id-not-text": _field("user_id", 5),
    "persistent-not-a-bool": _field("persistent", "yes"),
}
DOCUMENT_CORRUPTIONS: dict[str, Corruption] = {
    "deep-document": _value(_RAW),
    "value-not-text": lambda data, meta: data.update(who=5),  # type: ignore[call-overload]
    "surrogate-name": lambda data, meta: data.update({"\ud800": '"x"'}),  # JSON-escaped
}
ALL = {**VALUE_CORRUPTIONS, **META_CORRUPTIONS, **DOCUMENT_CORRUPTIONS}


# -- each backend, edited directly -------------------------------------------------------------


class Backend:
    """Reads and rewrites one stored record in the store's own backend, bypassing satchel."""

    def make_store(self) -> Store:
        raise NotImplementedError

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        raise NotImplementedError

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryBackend(Backend):
    """Memory holds the engine's own objects, never decoded metadata: values only."""

    def make_store(self) -> Store:
        self.store = MemoryStore()
        return self.store

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        record = self.store._records[key]
        return dict(record.data), record.meta._asdict()

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        self.store._records[key] = Record(data, Meta(**meta))


class FileBackend(Backend):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def make_store(self) -> Store:
        return FileStore(self.directory)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        doc = json.loads((self.directory / f"{key}.session").read_text())
        return doc["data"], doc["meta"]

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        doc = dumps({"data": data, "meta": meta})
        (self.directory / f"{key}.session").write_text(doc)


class SQLiteBackend(Backend):
    def __init__(self, path: Path) -> None:
        self.path = path

    def make_store(self) -> Store:
        return SQLiteStore(self.path)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        with sqlite3.connect(self.path) as db:
            data, meta = db.execute(
                "SELECT data, meta FROM satchel_sessions WHERE key = ?", (key,)
            ).fetchone()
        db.close()
        return json.loads(data), json.loads(meta)

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute(
                "UPDATE satchel_sessions SET data = ?, meta = ? WHERE key = ?",
                (dumps(data), json.dumps(meta), key),
            )
        db.close()


class RedisBackend(Backend):
    def __init__(self, url: str) -> None:
        import redis

        self.url, self.prefix = url, f"satchel-test-{uuid.uuid4().hex[:8]}:"
        self.client: Any = redis.Redis.from_url(url, decode_responses=True)

    def make_store(self) -> Store:
        from satchel.stores.redis import RedisStore

        return RedisStore(self.url, prefix=self.prefix)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        from satchel.stores.redis.scripts import meta_of

        fields = self.client.hgetall(f"{self.prefix}s:{key}")
        data = {name[2:]: value for name, value in fields.items() if name.startswith("d:")}
        meta = meta_of({name.encode(): value.encode() for name, value in fields.items()})
        return data, meta._asdict()

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        """The metadata as 0.1 stored it (JSON in ``m``, which the store still reads): the
        layout in which a field can hold a value of the wrong type."""
        fields = {"d:" + name: value for name, value in data.items()}
        self.client.hset(f"{self.prefix}s:{key}", mapping={**fields, "m": json.dumps(meta)})

    def close(self) -> None:
        for key in self.client.scan_iter(match=self.prefix + "*", count=10_000):
            self.client.delete(key)
        self.client.close()


class PostgresBackend(Backend):
    def __init__(self, url: str) -> None:
        self.url, self.table = url, f"satchel_test_{uuid.uuid4().hex[:10]}"

    def make_store(self) -> Store:
        from satchel.stores.postgres import PostgresStore

        return PostgresStore(self.url, table=self.table)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(f"SELECT data, meta FROM {self.table} WHERE key = %s", (key,))
            data, meta = row.fetchone()  # type: ignore[misc]
        return data, json.loads(meta)

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                f"UPDATE {self.table} SET data = %s::jsonb, meta = %s WHERE key = %s",
                (dumps(data), json.dumps(meta), key),
            )

    def close(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")


class MySQLBackend(Backend):
    def __init__(self, url: str) -> None:
        self.url, self.table = url, f"satchel_test_{uuid.uuid4().hex[:10]}"

    def _connect(self) -> Any:
        import pymysql

        return pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)

    def make_store(self) -> Store:
        from satchel.stores.mysql import MySQLStore

        return MySQLStore(self.url, table=self.table)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(f"SELECT data, meta FROM {self.table} WHERE skey = %s", (key,))
            data, meta = cur.fetchone()
        conn.close()
        return json.loads(data), json.loads(meta)

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(
                f"UPDATE {self.table} SET data = %s, meta = %s WHERE skey = %s",
                (dumps(data), json.dumps(meta), key),
            )
        conn.close()

    def close(self) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")
        conn.close()


class MemcachedBackend(Backend):
    def __init__(self, server: MemcachedServer) -> None:
        from pymemcache.client.base import Client

        self.server, self.prefix = server, f"satchel-test-{uuid.uuid4().hex[:8]}:"
        self.client = Client(("127.0.0.1", server.port))

    def make_store(self) -> Store:
        from satchel.stores.memcached import MemcachedStore

        return MemcachedStore([("127.0.0.1", self.server.port)], prefix=self.prefix)

    def read(self, key: str) -> tuple[Data, dict[str, Any]]:
        doc = json.loads(self.client.get(f"{self.prefix}s:{key}"))
        return doc["data"], doc["meta"]

    def write(self, key: str, data: Data, meta: dict[str, Any]) -> None:
        doc = dumps({"data": data, "meta": meta})
        self.client.set(f"{self.prefix}s:{key}", doc.encode(), expire=3600, noreply=False)

    def close(self) -> None:
        self.client.close()


def _postgres() -> str:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    return "postgresql://postgres@127.0.0.1:5432/test"


def _mysql() -> str:
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    return "mariadb://root@127.0.0.1:3306/test"


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "memory": lambda request, tmp: MemoryBackend(),
    "file": lambda request, tmp: FileBackend(tmp / "sessions"),
    "sqlite": lambda request, tmp: SQLiteBackend(tmp / "sessions.db"),
    "redis": lambda request, tmp: RedisBackend(request.getfixturevalue("redis_url")),
    "postgres": lambda request, tmp: PostgresBackend(_postgres()),
    "mysql": lambda request, tmp: MySQLBackend(_mysql()),
    "memcached": lambda request, tmp: MemcachedBackend(request.getfixturevalue("memcached")),
}
CASES = [
    (backend, corruption)
    for backend in BACKENDS
    for corruption in ALL
    if not (backend == "memory" and corruption not in VALUE_CORRUPTIONS)
    # a Redis hash holds only strings, and no document around them
    and not (backend == "redis" and corruption in DOCUMENT_CORRUPTIONS)
    and not (backend == "postgres" and corruption == "surrogate-name")  # jsonb refuses it
]


# -- the apps --------------------------------------------------------------------------------


async def asgi_put(request: Request) -> Response:
    request.session["who"] = request.query_params["who"]
    return PlainTextResponse("ok")


async def asgi_read(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    return JSONResponse({"who": session.get("who"), "new": session.new})


def wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/put":
        session["who"] = parse_qs(environ["QUERY_STRING"])["who"][0]
        body = b'"ok"'
    else:
        body = json.dumps({"who": session.get("who"), "new": session.new}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


ROUTES = [Route("/put", asgi_put), Route("/read", asgi_read)]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = BACKENDS[request.param](request, tmp_path)
    yield made
    made.close()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture(params=["asgi", "wsgi"])
async def client(
    request: pytest.FixtureRequest, backend: Backend, events: list[Event]
) -> AsyncIterator[Any]:
    store = backend.make_store()
    options: dict[str, Any] = {"secret_keys": [KEY], "csrf": False, "on_event": events.append}
    if request.param == "asgi":
        app = ASGIMiddleware(Starlette(routes=ROUTES), store=store, **options)
        transport: Any = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            yield c
    else:
        wsgi = WSGIMiddleware(wsgi_app, store=store, **options)
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE) as sync:
            yield _Async(sync)
    store.close()
    await store.aclose()


class _Async:
    """The WSGI client behind the same awaitable ``get`` as the ASGI one."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cookies = client.cookies

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, **kwargs)


def _security_warnings(log: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in log.records
        if r.name == "satchel.security" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize(
    ("backend", "corruption"), CASES, indirect=["backend"], ids=[f"{b}-{c}" for b, c in CASES]
)
async def test_corrupt_record_is_discarded_with_a_warning_never_a_500(
    client: Any,
    backend: Backend,
    corruption: str,
    events: list[Event],
    security_log: pytest.LogCaptureFixture,
) -> None:
    response = await client.get("/put", params={"who": "victim"})
    cookie = set_cookie_value(response.headers)
    assert response.status_code == 200
    assert cookie is not None
    client.cookies.clear()
    key = ids.store_key(cookie.split(".")[0])
    data, meta = backend.read(key)
    ALL[corruption](data, meta)
    backend.write(key, data, meta)
    headers = {"cookie": f"satchel={cookie}"}

    response = await client.get("/read", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"who": None, "new": True}
    assert any("corrupt record discarded" in m for m in _security_warnings(security_log))
    assert any(e.kind == "security" and e.reason == "corrupt_record" for e in events)
    response = await client.get("/read", headers=headers)  # discarded: gone for good
    assert response.json() == {"who": None, "new": True}


# -- the cookie store: authentic cookies whose payload is corrupt --------------------------------


def _cookie_payloads(engine: CookieBackend) -> dict[str, str]:
    now = engine.clock()
    meta = engine.expiry.new_meta(ids.new_handle(), now)
    good = dict(meta._asdict())
    out = {}
    cases = {**VALUE_CORRUPTIONS, **META_CORRUPTIONS}
    cases["value-not-text"] = DOCUMENT_CORRUPTIONS["value-not-text"]
    for name, corrupt in cases.items():
        data: Data = {"who": '"victim"'}
        fields = dict(good)
        corrupt(data, fields)
        out[name] = engine.encode(data, Meta(**fields))
    return out


@pytest.mark.parametrize("signed", [False, True], ids=["encrypted", "signed"])
@pytest.mark.parametrize("path", ["asgi", "wsgi"])
async def test_authentic_cookie_with_a_corrupt_payload_gives_a_fresh_session(
    signed: bool, path: str, security_log: pytest.LogCaptureFixture
) -> None:
    events: list[Event] = []
    options: dict[str, Any] = {"secret_keys": [KEY], "csrf": False, "on_event": events.append}
    store = CookieStore(signed=signed)
    if path == "asgi":
        app = ASGIMiddleware(Starlette(routes=ROUTES), store=store, **options)
        engine = app.backend
        client: Any = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    else:
        wsgi = WSGIMiddleware(wsgi_app, store=store, **options)
        engine = wsgi.backend
        client = _Async(httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url=BASE))
    assert isinstance(engine, CookieBackend)
    for name, value in _cookie_payloads(engine).items():
        security_log.clear()
        events.clear()
        response = await client.get("/read", headers={"cookie": f"satchel={value}"})
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {"who": None, "new": True}, name
        assert _security_warnings(security_log), name
        assert "corrupt_record" in [e.reason for e in events if e.kind == "security"], name
    if path == "asgi":
        await client.aclose()
    else:
        client.client.close()


# -- one corrupt record in a user's listing ------------------------------------------------------

LISTING_CASES = [b for b in BACKENDS if b != "memory"]  # memory holds objects, not documents


@pytest.mark.parametrize("backend", LISTING_CASES, indirect=True)
async def test_a_corrupt_record_never_fails_the_users_listing_or_their_next_login(
    backend: Backend, security_log: pytest.LogCaptureFixture
) -> None:
    """Every login lists the user's sessions (the per-user cap): one record whose metadata
    is corrupt must be left out of the listing, not make every later login a 503."""
    from satchel.engine import Engine, adrive, drive
    from satchel.testing.conformance import login_request
    from satchel.user_sessions import UserSessions

    from .helpers import make_engine

    store = backend.make_store()
    engine: Engine = make_engine()
    user = f"user-{uuid.uuid4().hex[:8]}"
    broken = drive(login_request(engine, user), store)
    kept = drive(login_request(engine, user), store)
    assert broken._key is not None
    assert kept._key is not None
    data, meta = backend.read(broken._key)
    META_CORRUPTIONS["created-not-a-number"](data, meta)
    backend.write(broken._key, data, meta)

    import time

    now = time.time()
    assert [k for k, _ in store.list_user(user, now)] == [kept._key]
    assert [k for k, _ in await store.alist_user(user, now)] == [kept._key]
    if not isinstance(backend, MemcachedBackend):  # memcached cannot list all sessions
        assert isinstance(store, Listable)
        assert broken._key not in {k for k, _ in store.iter_sessions(now)}
    assert [s.handle for s in UserSessions(store).sessions(user)] == [kept.handle]
    assert drive(login_request(engine, user), store).user_id == user  # not a 503
    assert (await adrive(login_request(engine, user), store)).user_id == user
    if not isinstance(backend, MemcachedBackend | FileBackend):  # these drop it unlogged
        assert any("corrupt record" in m for m in _security_warnings(security_log))
    store.close()
    await store.aclose()
