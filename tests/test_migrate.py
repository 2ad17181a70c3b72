"""Moving sessions between stores without logging anyone out: ``satchel sessions migrate``
in every direction between the real stores, resumed after an interruption, as a dry run;
and the read-through store, with requests arriving while ``migrate`` copies."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from satchel.asgi import SessionMiddleware
from satchel.cli import main
from satchel.errors import ConfigurationError, StoreUnavailable
from satchel.migration import Migration, migrate
from satchel.record import Change, Record
from satchel.redact import mask_url
from satchel.stores import MemoryStore, SQLiteStore, Store, store_from_url
from satchel.stores import base as store_base
from satchel.stores.readthrough import ReadThroughStore
from satchel.testing import FakeClock
from satchel.testing.conformance import StoreConformance
from satchel.testing.flows import make_meta, new_key

from .conftest import KEY
from .services import MemcachedServer, serve_asgi, store_url
from .test_asgi import ROUTES, make_app

KINDS = ("sqlite", "file", "postgres", "mysql", "redis", "cluster")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/test"


class Urls:
    """Fresh, private store URLs of each kind (a table, a key prefix, a file of the
    test's own), cleaned up afterwards."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path) -> None:
        self.request, self.tmp = request, tmp
        self.cleanups: list[Callable[[], None]] = []

    def __call__(self, kind: str) -> str:
        tag = uuid.uuid4().hex[:10]
        if kind == "sqlite":
            return f"sqlite:///{self.tmp}/{tag}.db"
        if kind == "file":
            return f"file://{self.tmp}/{tag}"
        if kind in ("postgres", "mysql"):
            table = f"satchel_mig_{tag}"
            url = store_url(f"{POSTGRES if kind == 'postgres' else MYSQL}?table={table}", self.tmp)
            self.cleanups.append(lambda: _drop(kind, table))
            return url
        if kind == "redis":
            base = self.request.getfixturevalue("redis_url")
            prefix = f"satchel-mig-{tag}:"
            self.cleanups.append(lambda: _flush(base, prefix))
            return f"{base}?prefix={prefix}"
        assert kind == "cluster"  # session-wide, stopped at the end: no cleanup
        cluster: str = self.request.getfixturevalue("redis_cluster")
        return f"{cluster}?prefix=satchel-mig-{tag}:"


def _drop(kind: str, table: str) -> None:
    if kind == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as pg:
            pg.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        import pymysql

        my = pymysql.connect(host="127.0.0.1", user="root", database="test")
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        my.close()


def _flush(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Urls]:
    made = Urls(request, tmp_path)
    yield made
    for cleanup in made.cleanups:
        cleanup()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports read 2 records at a time, so every test crosses page boundaries."""
    monkeypatch.setattr(store_base, "EXPORT_BATCH", 2)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["sessions", *args], catch_exceptions=False)


def _seed(store: Store, now: float, tag: str) -> dict[str, Record]:
    """Two users' sessions (``alice-<tag>`` has two), an anonymous one, a remembered one
    with a long deadline, and one that has already expired (never to be copied)."""
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    records = {
        new_key(): Record({"n": "1"}, make_meta(now, user_id=alice)),
        new_key(): Record({"n": "2", "cart": '["a"]'}, make_meta(now - 5, user_id=alice)),
        new_key(): Record({"n": "3"}, make_meta(now, user_id=bob, version=4)),
        new_key(): Record({"anon": "true"}, make_meta(now)),
        new_key(): Record(
            {"r": "1"},
            make_meta(now, idle_timeout=7 * 86400.0, absolute_deadline=now + 30 * 86400.0),
        ),
    }
    for key, record in records.items():
        if record.meta.user_id is None:
            store.create(key, record)
        else:
            store.create_indexed(key, record, record.meta.user_id)
    store.create(new_key(), Record({"old": "1"}, make_meta(now - 700)))  # idle 600: expired
    return records


def _assert_copied(target: Store, records: dict[str, Record], tag: str, now: float) -> None:
    for key, record in records.items():
        copy = target.load(key, now)
        assert copy is not None
        assert dict(copy.data) == dict(record.data)
        assert copy.meta == record.meta  # deadlines, last seen, version: the expiry kept
    for user in (f"alice-{tag}", f"bob-{tag}"):  # the per-user index came along
        assert {k for k, _ in target.list_user(user, now)} == {
            k for k, r in records.items() if r.meta.user_id == user
        }


# -- every direction --------------------------------------------------------------------------


def test_migrate_in_every_direction(urls: Urls, small_batches: None) -> None:
    """Each store seeded with sessions of its own, then ``migrate`` from each store into
    each other one (30 runs): every run hands over everything its source holds by then."""
    stores = {kind: (url, store_from_url(url)) for kind, url in ((k, urls(k)) for k in KINDS)}
    now = time.time()
    seeded = {kind: _seed(store, now, kind) for kind, (_, store) in stores.items()}
    try:
        for source_kind, (source_url, source) in stores.items():
            for target_kind, (target_url, target) in stores.items():
                if source_kind == target_kind:
                    continue
                holds = dict(source.iter_records(time.time()))  # type: ignore[attr-defined]
                result = _cli(
                    "migrate", "--from", source_url, "--to", target_url, "--json", "--workers", "2"
                )
                assert result.exit_code == 0, (source_kind, target_kind, result.output)
                report = json.loads(result.stdout)
                assert report["seen"] == report["source_live"] == len(holds)
                assert report["missing"] == report["kept_newer"] == report["vanished"] == 0
                assert seeded[source_kind].keys() <= holds.keys()
                for kind in KINDS:  # what the source got from earlier runs came along too
                    mine = {k: r for k, r in seeded[kind].items() if k in holds}
                    if mine:
                        _assert_copied(target, mine, kind, time.time())
        # a run again: nothing left to do, nothing overwritten
        again = _cli("migrate", "--from", stores["sqlite"][0], "--to", stores["redis"][0], "--json")
        report = json.loads(again.stdout)
        assert (report["copied"], report["present"]) == (0, report["seen"])
        assert report["seen"] == 6 * len(seeded["sqlite"])
    finally:
        for _, store in stores.values():
            store.close()


def test_redis_ttl_is_the_sessions_remaining_life(urls: Urls) -> None:
    import redis

    source_url, target_url = urls("sqlite"), urls("redis")
    source = SQLiteStore(source_url.removeprefix("sqlite:///"))
    now = time.time()
    key = new_key()
    source.create(key, Record({}, make_meta(now - 100)))  # idle 600: 500 s left
    assert _cli("migrate", "--from", source_url, "--to", target_url).exit_code == 0
    prefix = target_url.partition("prefix=")[2]
    client = redis.Redis.from_url(target_url.partition("?")[0])
    try:
        ttl = client.pttl(f"{prefix}s:{key}") / 1000
    finally:
        client.close()
    assert 490 < ttl <= 500


# -- through the middleware: a logged-in client stays logged in -------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [("sqlite", "redis"), ("sqlite", "postgres"), ("redis", "mysql"), ("postgres", "cluster")],
)
async def test_clients_stay_logged_in_with_the_same_cookie(
    urls: Urls, source_kind: str, target_kind: str
) -> None:
    source_url, target_url = urls(source_kind), urls(target_kind)
    users = ["alice", "alice", "bob"]
    cookies = []
    async with _client(source_url) as client:
        for user in users:
            client.cookies.clear()
            await client.get("/login", params={"user": user})
            await client.get("/incr")
            cookies.append(dict(client.cookies))
    result = _cli("migrate", "--from", source_url, "--to", target_url)
    assert result.exit_code == 0, result.output
    assert "copied 3 session(s)" in result.stdout
    async with _client(target_url) as client:
        for user, jar in zip(users, cookies, strict=True):
            client.cookies.clear()
            client.cookies.update(jar)
            assert (await client.get("/read")).json() == {"n": 1, "user": user}
    # the user index came along: list and revoke alice's sessions on the new store
    listed = _cli("list", "--store", target_url, "--user", "alice", "--json")
    assert len(json.loads(listed.stdout)) == 2
    assert _cli("revoke", "--store", target_url, "--user", "alice").exit_code == 0
    async with _client(target_url) as client:
        for user, jar in zip(users, cookies, strict=True):
            client.cookies.clear()
            client.cookies.update(jar)
            expected = None if user == "alice" else user
            assert (await client.get("/read")).json()["user"] == expected


@asynccontextmanager
async def _client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the test app on the store ``url`` names (closed afterwards)."""
    store = store_from_url(url)
    transport = httpx.ASGITransport(app=make_app(store))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            yield c
    finally:
        await store.aclose()


# -- interruption, resumption, changes between runs, dry run ----------------------------------


class FailingAfter(SQLiteStore):
    """An SQLite target that goes down after ``limit`` creates."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path)
        self.limit, self.created = limit, 0
        self.lock = threading.Lock()

    def create(self, key: str, record: Record) -> None:
        with self.lock:
            if self.created >= self.limit:
                raise StoreUnavailable("the target went away")
            self.created += 1
        super().create(key, record)


def test_an_interrupted_run_resumes(tmp_path: Path, small_batches: None) -> None:
    source = SQLiteStore(tmp_path / "source.db")
    now = time.time()
    records = {new_key(): Record({"i": str(i)}, make_meta(now)) for i in range(30)}
    for key, record in records.items():
        source.create(key, record)
    with pytest.raises(StoreUnavailable):
        migrate(source, FailingAfter(tmp_path / "target.db", 12), batch_size=5, workers=3)
    target = SQLiteStore(tmp_path / "target.db")
    assert sum(target.load(k, time.time()) is not None for k in records) == 12
    report = migrate(source, target, batch_size=5, workers=3)
    assert (report.present, report.copied, report.missing) == (12, 18, 0)
    assert all(target.load(k, time.time()) is not None for k in records)


def test_a_second_run_brings_changes_but_never_overwrites_newer(tmp_path: Path) -> None:
    """The app still on the source between two runs: a write there is brought over, a
    read (last seen) too; a write made in the target since is never overwritten."""
    clock = FakeClock()
    source, target = MemoryStore(), SQLiteStore(tmp_path / "t.db")
    written, seen, newer, deleted = (new_key() for _ in range(4))
    for key in (written, seen, newer, deleted):
        source.create(key, Record({"v": "1"}, make_meta(clock.now)))
    Migration(source, target, clock=clock).run()
    clock.advance(60)
    meta = make_meta(clock.now)
    source.update(written, Change(meta, {"v": "2"}), clock.now)
    source.touch(seen, clock.now, clock.now)
    target.update(newer, Change(meta, {"v": "target"}), clock.now)
    source.delete(deleted)
    report = Migration(source, target, clock=clock).run()
    assert (report.updated, report.kept_newer, report.present) == (2, 1, 0)
    assert dict(target.load(written, clock.now).data) == {"v": "2"}  # type: ignore[union-attr]
    assert target.load(seen, clock.now).meta.last_seen == clock.now  # type: ignore[union-attr]
    assert dict(target.load(newer, clock.now).data) == {"v": "target"}  # type: ignore[union-attr]


def _racing(target: Store, key: str, request: Callable[[Record, float], None]) -> None:
    """``request`` runs right after a run's read of the target's copy (version 1), once."""
    real_load = target.load

    def load_then_a_request(
        key_: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        record = real_load(key_, now, refresh_after)
        if key_ == key and record is not None and record.meta.version == 1:
            target.load = real_load  # type: ignore[method-assign]
            request(record, now)
        return record

    target.load = load_then_a_request  # type: ignore[method-assign,assignment]


@pytest.mark.parametrize("kind", KINDS)
def test_bringing_a_change_over_keeps_a_write_made_in_the_target_meanwhile(
    urls: Urls, kind: str
) -> None:
    """The app wrote the source (a worker not restarted yet) after a first run; a second
    run finds the target's copy older and brings the change over, while a worker on the
    read-through store writes the same session in the target, between the run's read of
    the copy and its write: both writes are kept (the run never drops the copy to make
    it again), and a third run leaves the result alone."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), store_from_url(urls(kind))
    key = new_key()
    source.create_indexed(
        key, Record({"n": "1", "gone": "x"}, make_meta(clock.now, user_id="u")), "u"
    )
    Migration(source, target, clock=clock).run()
    clock.advance(60)
    written = source.load(key, clock.now)
    assert written is not None
    source.update(
        key, Change(written.meta, {"n": "2"}, frozenset({"gone"}), base=written.meta), clock.now
    )

    def a_worker_writes(record: Record, now: float) -> None:
        app_store = ReadThroughStore(target, source)
        app_store.update(key, Change(record.meta, {"cart": "[1]"}, base=record.meta), now)

    _racing(target, key, a_worker_writes)
    try:
        report = Migration(source, target, clock=clock).run()
        assert (report.updated, report.vanished, report.missing) == (1, 0, 0)
        copy = target.load(key, clock.now)
        assert copy is not None
        assert dict(copy.data) == {"n": "2", "cart": "[1]"}
        assert [k for k, _ in target.list_user("u", clock.now)] == [key]
        again = Migration(source, target, clock=clock).run()
        assert (again.kept_newer, again.updated) == (1, 0)
        assert dict(target.load(key, clock.now).data) == {"n": "2", "cart": "[1]"}  # type: ignore[union-attr]
    finally:
        target.close()


def test_dry_run_reports_and_writes_nothing(urls: Urls) -> None:
    source_url, target_url = urls("sqlite"), urls("redis")
    source = store_from_url(source_url)
    records = _seed(source, time.time(), "dry")
    source.close()
    result = _cli("migrate", "--from", source_url, "--to", target_url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"dry run: {len(records)} live session(s) in the source; would copy 5" in result.stdout
    target = store_from_url(target_url)
    try:
        assert all(target.load(k, time.time()) is None for k in records)
    finally:
        target.close()


def test_dry_run_creates_no_target_file(urls: Urls, tmp_path: Path) -> None:
    source_url = urls("sqlite")
    source = store_from_url(source_url)
    _seed(source, time.time(), "dry")
    source.close()
    target = tmp_path / "new" / "sessions.db"
    result = _cli("migrate", "--from", source_url, "--to", f"sqlite:///{target}", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would copy 5" in result.stdout
    assert not target.exists()
    assert not target.parent.exists()


def test_memcached_cannot_be_a_source(tmp_path: Path, memcached: MemcachedServer) -> None:
    target = tmp_path / "target.db"
    result = _cli("migrate", "--from", memcached.url, "--to", f"sqlite:///{target}")
    assert result.exit_code == 1
    assert "cannot be the source of a migration" in result.output
    assert "readthrough+" in result.output
    assert not target.exists()
    with pytest.raises(ConfigurationError, match="Memcached has no way to enumerate"):
        Migration(store_from_url(memcached.url), MemoryStore())


def test_sessions_created_during_the_run_fail_the_final_check(tmp_path: Path) -> None:
    source = MemoryStore()
    for _ in range(3):
        source.create(new_key(), Record({}, make_meta(time.time())))

    class Late(MemoryStore):
        def create(self, key: str, record: Record) -> None:
            super().create(key, record)
            if not late:
                late.append(new_key())
                source.create(late[0], Record({}, make_meta(time.time())))

    late: list[str] = []
    report = migrate(source, Late(), workers=1)
    assert (report.copied, report.source_live, report.missing) == (3, 4, 1)


# -- the read-through store -------------------------------------------------------------------


class TestReadThroughConformance(StoreConformance):
    """The read-through store is a store like any other (here with nothing to copy)."""

    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def make_store(self) -> Store:
        return ReadThroughStore(SQLiteStore(self.tmp_path / "new.db"), MemoryStore())


def test_read_through_url(tmp_path: Path) -> None:
    old = f"sqlite:///{tmp_path}/old.db?timeout=2"
    store = store_from_url(f"readthrough+sqlite:///{tmp_path}/new.db?from={quote(old, safe='')}")
    assert isinstance(store, ReadThroughStore)
    assert isinstance(store.new, SQLiteStore)
    assert isinstance(store.old, SQLiteStore)
    assert (store.new.path, store.old.path, store.old.timeout) == (
        f"{tmp_path}/new.db",
        f"{tmp_path}/old.db",
        2.0,
    )
    store.close()
    with pytest.raises(ConfigurationError, match=r"needs the old store's URL"):
        store_from_url("readthrough+memory://")
    secret = quote("redis://:hunter2@127.0.0.1:6379/0", safe="")
    masked = mask_url(f"readthrough+postgresql://app:pw@db/app?from={secret}")
    assert "hunter2" not in masked
    assert ":pw@" not in masked
    assert masked.startswith("readthrough+postgresql://app:***@db/app?from=")


def test_read_through_copies_a_session_on_first_use_and_logout_sticks(tmp_path: Path) -> None:
    now = time.time()
    old, new = SQLiteStore(tmp_path / "old.db"), MemoryStore()
    store = ReadThroughStore(new, old)
    key = new_key()
    old.create_indexed(key, Record({"n": "1"}, make_meta(now, user_id="alice")), "alice")
    assert [k for k, _ in store.list_user("alice", now)] == [key]  # not copied yet: listed
    record = store.load(key, now)
    assert record is not None
    assert dict(record.data) == {"n": "1"}
    assert old.load(key, now) is not None  # a copy: the old store is never written
    assert new.load(key, now) is not None
    assert [k for k, _ in new.list_user("alice", now)] == [key]
    assert [k for k, _ in store.list_user("alice", now)] == [key]  # once, not twice
    assert store.delete(key)
    assert store.load(key, now) is None
    assert old.load(key, now) is None


def test_read_through_never_brings_back_a_session_destroyed_during_a_copy(
    tmp_path: Path,
) -> None:
    """A logout lands between the copy's read of the old record and its create in the new
    store: the copy's second read of the old store finds nothing, and undoes the create."""
    now = time.time()
    old = SQLiteStore(tmp_path / "old.db")
    key = new_key()
    old.create(key, Record({"n": "1"}, make_meta(now)))

    class LogoutFirst(MemoryStore):
        def create(self, key: str, record: Record) -> None:
            store.delete(key)  # the other request's logout, just before our create
            super().create(key, record)

    new = LogoutFirst()
    store = ReadThroughStore(new, old)
    assert store.load(key, now) is None
    assert new.load(key, now) is None
    assert old.load(key, now) is None


def test_migrate_never_brings_back_a_session_destroyed_during_its_copy(tmp_path: Path) -> None:
    now = time.time()
    old = SQLiteStore(tmp_path / "old.db")
    keys = [new_key() for _ in range(3)]
    for key in keys:
        old.create(key, Record({}, make_meta(now)))

    class LogoutFirst(MemoryStore):
        def create(self, key: str, record: Record) -> None:
            if key == keys[1]:
                app_store.delete(key)  # logged out through the app after migrate read it
            super().create(key, record)

    new = LogoutFirst()
    app_store = ReadThroughStore(new, old)
    report = migrate(old, new)
    assert (report.copied, report.vanished, report.missing) == (2, 1, 0)
    assert app_store.load(keys[1], now) is None


def test_a_shortened_life_removes_the_old_copy(tmp_path: Path) -> None:
    """After ``migrate`` copied a session (the old copy stays), a request shortens its
    idle timeout: when the new record expires, the old copy must not answer instead."""
    clock = FakeClock()
    old, new = SQLiteStore(tmp_path / "old.db"), SQLiteStore(tmp_path / "new.db")
    store = ReadThroughStore(new, old)
    key = new_key()
    meta = make_meta(clock.now)
    old.create(key, Record({"n": "1"}, meta))
    Migration(old, new, clock=clock).run()
    short = meta.with_changes(idle_timeout=60.0)
    assert store.update(key, Change(short, base=meta), clock.now) is not None
    clock.advance(61)
    assert store.load(key, clock.now) is None
    assert old.load(key, clock.now) is None


def test_requests_during_a_migration_through_a_real_server(urls: Urls) -> None:
    """The app runs on ``readthrough+<redis>?from=<sqlite>`` under uvicorn while
    ``migrate`` copies: clients keep reading and writing, some log out. Afterwards, on
    the new store alone, every client that stayed is logged in with all its writes, and
    no logged-out session is back."""
    old_url, new_url = urls("sqlite"), urls("redis")
    clients = 12
    jars: list[dict[str, str]] = []

    async def log_in_all() -> None:
        async with _client(old_url) as client:
            for i in range(clients):
                client.cookies.clear()
                await client.get("/login", params={"user": f"user{i % 6}"})
                jars.append(dict(client.cookies))

    asyncio.run(log_in_all())
    old = store_from_url(old_url)
    for _ in range(100):  # more to copy: the copy takes long enough to overlap the traffic
        old.create(new_key(), Record({}, make_meta(time.time())))
    old.close()
    read_through = f"readthrough+{new_url}&from={quote(old_url, safe='')}"
    app_store = store_from_url(read_through)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await app_store.aclose()  # on the server's loop, when it stops

    app = SessionMiddleware(
        Starlette(routes=ROUTES, lifespan=lifespan),
        store=app_store,
        secret_keys=[KEY],
    )
    counts = [0] * clients
    logged_out: set[int] = set()
    errors: list[BaseException] = []
    done, copying = threading.Event(), threading.Event()
    warm = threading.Barrier(clients + 1)  # the copy starts once every client is busy
    during_copy: list[int] = []

    def traffic(base: str, i: int) -> None:
        # the cookie by hand: it is Secure, and this server speaks plain HTTP on loopback
        cookie = {"cookie": "; ".join(f"{k}={v}" for k, v in jars[i].items())}
        try:
            with httpx.Client(base_url=base, headers=cookie) as c:
                rounds = 0
                while not done.is_set() or rounds < 3:
                    if i % 4 == 3 and rounds == 2:
                        assert c.get("/logout").status_code == 200
                        logged_out.add(i)
                        return
                    response = c.get("/incr")
                    assert response.status_code == 200, response.text
                    counts[i] = response.json()["n"]
                    rounds += 1
                    if rounds == 1:
                        warm.wait(30)
                    if copying.is_set() and not done.is_set():
                        during_copy.append(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    with serve_asgi(app, proxy_headers=False) as base:
        threads = [threading.Thread(target=traffic, args=(base, i)) for i in range(clients)]
        for t in threads:
            t.start()
        warm.wait(30)
        copying.set()
        result = _cli("migrate", "--from", old_url, "--to", new_url, "--workers", "4")
        done.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert result.exit_code == 0, result.output
    assert during_copy  # requests were served while the copy ran
    assert len(logged_out) == clients // 4

    async def check() -> None:
        async with _client(new_url) as client:  # the new store alone now
            for i in range(clients):
                client.cookies.clear()
                client.cookies.update(jars[i])
                body = (await client.get("/read")).json()
                if i in logged_out:
                    assert body == {"n": None, "user": None}
                else:
                    assert body == {"n": counts[i], "user": f"user{i % 6}"}

    asyncio.run(check())


def test_memcached_can_be_a_target(tmp_path: Path, memcached: MemcachedServer) -> None:
    """Into Memcached (which cannot be listed, so is no source): sessions, expiry and the
    per-user index arrive, and a second run changes nothing."""
    source_url = f"sqlite:///{tmp_path}/from.db"
    target_url = f"{memcached.url}?prefix=mig-{uuid.uuid4().hex[:8]}:"
    source, target = store_from_url(source_url), store_from_url(target_url)
    now = time.time()
    records = _seed(source, now, "mc")
    try:
        result = _cli("migrate", "--from", source_url, "--to", target_url, "--json")
        assert result.exit_code == 0, result.output
        _assert_copied(target, records, "mc", now)
        again = _cli("migrate", "--from", source_url, "--to", target_url, "--json")
        assert again.exit_code == 0, again.output
        _assert_copied(target, records, "mc", now)
    finally:
        source.close()
        target.close()
