"""The Redis write's fast path (issue 12): when the hash still holds the version a request
read, the UPDATE script checks that one field and writes what the client worked out,
instead of reading eleven fields and merging in Lua. These tests check that it is taken
when it may be, that it writes exactly what the full write would, and that every case the
full write decides differently (a write in between, a logout, a 0.1 hash, an expired
session, a device binding, a fresh start, a base that is not the hash as read) goes the
full way. Which way a write went is told by ``INFO commandstats`` of a private server:
HGET for the fast path, HMGET for the full one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from satchel.ops import drive
from satchel.record import Change, Meta, Record
from satchel.stores.redis import RedisStore
from satchel.stores.redis.scripts import ReadMeta
from satchel.testing.conformance import _key, _meta, cookie_id, request

from .helpers import make_engine
from .services import RedisServer
from .test_redis_layout import create_old, hash_of

pytestmark = pytest.mark.anyio

BOUND = '{"k":{"kty":"EC"},"n":1}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server of this module's own: its commandstats count only these tests' commands."""
    server = RedisServer(tmp_path_factory.mktemp("redis-fast-write"))
    yield server
    server.stop()


@pytest.fixture
def store(server: RedisServer) -> Iterator[RedisStore]:
    store = RedisStore(server.url)
    store.client.flushall()
    yield store
    store.close()


class Paths:
    """Counts the fast (HGET) and full (HMGET) writes since the last :meth:`reset`."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.reset()

    def reset(self) -> None:
        self.client.config_resetstat()

    def taken(self) -> tuple[int, int]:
        stats: dict[str, Any] = self.client.info("commandstats")
        fast = stats.get("cmdstat_hget", {}).get("calls", 0)
        full = stats.get("cmdstat_hmget", {}).get("calls", 0)
        return fast, full


@pytest.fixture
def paths(store: RedisStore) -> Paths:
    return Paths(store.client)


def loaded(store: RedisStore, key: str, now: float) -> ReadMeta:
    record = store.load(key, now)
    assert record is not None
    assert isinstance(record.meta, ReadMeta)
    return record.meta


def ttl_ms(store: RedisStore, key: str) -> int:
    return int(store.client.pexpiretime(store.hash_key(key)))


def twins(store: RedisStore, meta: Meta, data: dict[str, str]) -> tuple[str, str]:
    """Two sessions holding the same record."""
    keys = _key(), _key()
    for key in keys:
        store.create(key, Record(data, meta))
    return keys


# -- taken, and writing what the full write writes ----------------------------------------------


CHANGES: dict[str, dict[str, Any]] = {
    "a key": {"set": {"n": "2"}},
    "a key deleted": {"delete": frozenset({"a"})},
    "a key deleted and set": {"set": {"a": "9"}, "delete": frozenset({"a"})},
    "login": {"meta": {"user_id": "alice", "auth": '{"m":["pwd"]}'}, "set": {"n": "3"}},
    "user agent and IP gone": {"meta": {"user_agent": None, "client_ip": None}},
    "persistent, later deadline": {
        "meta": {"persistent": True, "absolute_deadline": 1.5, "idle_timeout": 2.0}
    },
    "shorter idle timeout": {"meta": {"idle_timeout": 0.25}},
    "bound": {"meta": {"device": BOUND}},
    "new handle and created": {"meta": {"handle": "h2", "created": 0.5}},
}


@pytest.mark.parametrize("what", list(CHANGES))
@pytest.mark.parametrize("path", ["sync", "async"])
async def test_the_fast_path_writes_what_the_full_write_writes(
    store: RedisStore, paths: Paths, what: str, path: str
) -> None:
    """The same change from the same record, once with the hash as read as its base (the
    fast path) and once with an equal plain Meta (the full write): the same hash, the same
    TTL to the millisecond, the same version."""
    now = time.time()
    meta = _meta(now, user_id="bob", persistent=False)
    fast_key, full_key = twins(store, meta, {"a": "1", "n": "1"})
    spec = CHANGES[what]
    later = now + 7.123456
    changes = dict(spec.get("meta", {}))
    for name in ("absolute_deadline", "idle_timeout", "created"):
        if name in changes:  # factors of the record's own, so they stay in the future
            changes[name] = getattr(meta, name) * changes[name]
    versions = []
    for key, fast in ((fast_key, True), (full_key, False)):
        read = loaded(store, key, now)
        base: Meta = read if fast else Meta(*read)
        change = Change(
            meta=base._replace(last_seen=later, **changes),
            set=spec.get("set", {}),
            delete=spec.get("delete", frozenset()),
            base=base,
        )
        paths.reset()
        if path == "sync":
            versions.append(store.update(key, change, later))
        else:
            versions.append(await store.aupdate(key, change, later))
        assert paths.taken() == ((1, 0) if fast else (0, 1))
    assert versions == [2, 2]
    assert hash_of(store, fast_key) == hash_of(store, full_key)
    assert ttl_ms(store, fast_key) == ttl_ms(store, full_key)
    record = store.load(fast_key, later)
    assert record is not None
    assert record.meta.version == 2
    await store.aclose()


def test_a_request_s_write_takes_the_fast_path(store: RedisStore, paths: Paths) -> None:
    """Through the engine: a request that loads the session and writes a key; the round
    trips stay the read and the script."""
    engine = make_engine()
    _, cookie = drive(request(engine, None, a=1), store)
    sid = cookie_id(cookie)
    paths.reset()
    drive(request(engine, sid, b=2), store)
    assert paths.taken() == (1, 0)
    stats = store.client.info("commandstats")
    assert stats["cmdstat_hgetall"]["calls"] == 1
    assert stats["cmdstat_evalsha"]["calls"] == 1


def test_a_refreshed_read_is_still_the_hash_as_read(store: RedisStore, paths: Paths) -> None:
    """A load whose "last seen" refresh was due (TOUCH) hands back the hash as it now is."""
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    later = meta.last_seen + 120
    record = store.load(key, later, refresh_after=60)
    assert record is not None
    assert record.refreshed
    assert isinstance(record.meta, ReadMeta)
    assert record.meta.last_seen == later
    paths.reset()
    change = Change(
        meta=record.meta._replace(last_seen=later + 1), set={"a": "2"}, base=record.meta
    )
    assert store.update(key, change, later + 1) == 2
    assert paths.taken() == (1, 0)


# -- the full write when the client cannot vouch for the hash -------------------------------------


def test_a_write_after_another_write_merges(store: RedisStore, paths: Paths) -> None:
    """Two requests load the session; the second to write finds another version and
    merges (the full write): both keys and both metadata changes survive."""
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1"}, meta))
    first, second = loaded(store, key, now), loaded(store, key, now)
    paths.reset()
    persistent = first._replace(last_seen=now + 1, persistent=True)
    assert store.update(key, Change(persistent, set={"b": "2"}, base=first), now + 1) == 2
    assert paths.taken() == (1, 0)
    paths.reset()
    plain = second._replace(last_seen=now + 2)
    assert store.update(key, Change(plain, set={"c": "3"}, base=second), now + 2) == 3
    assert paths.taken() == (1, 1)  # the version checked, then the full write
    record = store.load(key, now + 2)
    assert record is not None
    assert dict(record.data) == {"a": "1", "b": "2", "c": "3"}
    assert record.meta.persistent
    assert record.meta.version == 3


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_write_after_a_logout_finds_the_session_gone(
    store: RedisStore, paths: Paths, path: str
) -> None:
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1"}, meta))
    base = loaded(store, key, now)
    assert store.delete(key)
    change = Change(base._replace(last_seen=now + 1), set={"a": "2"}, base=base)
    paths.reset()
    if path == "sync":
        assert store.update(key, change, now + 1) is None
    else:
        assert await store.aupdate(key, change, now + 1) is None
    assert paths.taken() == (1, 1)
    assert not store.client.exists(store.hash_key(key))  # not brought back, not even empty
    await store.aclose()


def test_a_write_racing_a_touch(store: RedisStore, paths: Paths) -> None:
    """A TOUCH (another request's refresh) moves "last seen" and the TTL later after this
    request read the hash: the version is the same, so the fast path writes, and as the
    full write would, the write's own "last seen" and the TTL that follows from it."""
    now = time.time()
    meta = _meta(now)
    fast_key, full_key = twins(store, meta, {"a": "1"})
    bases = {}
    for key in (fast_key, full_key):
        bases[key] = loaded(store, key, now)
        assert store.touch(key, now + 50, now + 50)
    paths.reset()
    for key, base in ((fast_key, bases[fast_key]), (full_key, Meta(*bases[full_key]))):
        change = Change(base._replace(last_seen=now + 10), set={"a": "2"}, base=base)
        assert store.update(key, change, now + 10) == 2
    assert paths.taken() == (1, 1)
    assert hash_of(store, fast_key) == hash_of(store, full_key)
    assert ttl_ms(store, fast_key) == ttl_ms(store, full_key)


def test_a_write_onto_a_0_1_hash(store: RedisStore, paths: Paths) -> None:
    """A hash of 0.1's layout is read as a plain Meta: its write is the full one (which
    asks for the whole metadata and rewrites the hash in this layout); the next write,
    from a read of the new layout, is fast."""
    now = time.time()
    key, meta = _key(), _meta(now, user_id="alice")
    create_old(store, key, Record({"a": "1"}, meta))
    record = store.load(key, now)
    assert record is not None
    assert not isinstance(record.meta, ReadMeta)
    paths.reset()
    change = Change(record.meta._replace(last_seen=now + 1), set={"a": "2"}, base=record.meta)
    assert store.update(key, change, now + 1) == 2
    assert paths.taken() == (0, 2)  # the partial write refused (-1), then the whole
    assert "m" not in hash_of(store, key)
    base = loaded(store, key, now + 1)
    paths.reset()
    assert store.update(key, Change(base._replace(last_seen=now + 2), base=base), now + 2) == 3
    assert paths.taken() == (1, 0)


def test_an_expired_session_is_left_to_the_full_write(store: RedisStore, paths: Paths) -> None:
    """The client's clock says the session it read has expired: the full write decides
    (on the stored fields), and finds it expired."""
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1"}, meta))
    base = loaded(store, key, now)
    late = base.expires_at + 1
    paths.reset()
    assert store.update(key, Change(base._replace(last_seen=late), base=base), late) is None
    assert paths.taken() == (0, 1)


def test_a_fresh_start_is_the_full_write(store: RedisStore, paths: Paths) -> None:
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1", "b": "2"}, meta))
    base = loaded(store, key, now)
    paths.reset()
    change = Change(base._replace(last_seen=now + 1), set={"c": "3"}, clear=True, base=base)
    assert store.update(key, change, now + 1) == 2
    assert paths.taken() == (0, 1)
    record = store.load(key, now + 1)
    assert record is not None
    assert dict(record.data) == {"c": "3"}


@pytest.mark.parametrize("unbound", ['{"q":1}', None])
def test_a_device_binding_is_never_replaced_by_an_unbound_state(
    store: RedisStore, paths: Paths, unbound: str | None
) -> None:
    """Read bound, written unbound (not a fresh start): the full write keeps the binding."""
    now = time.time()
    key, meta = _key(), _meta(now, device=BOUND)
    store.create(key, Record({"a": "1"}, meta))
    base = loaded(store, key, now)
    paths.reset()
    change = Change(base._replace(last_seen=now + 1, device=unbound), set={"a": "2"}, base=base)
    assert store.update(key, change, now + 1) == 2
    assert paths.taken() == (0, 1)
    record = store.load(key, now + 1)
    assert record is not None
    assert record.meta.device == BOUND
    assert dict(record.data) == {"a": "2"}
    # a binding refreshed (bound to bound) goes the fast way
    base = loaded(store, key, now + 1)
    refreshed = BOUND.replace('"n":1', '"n":2')
    paths.reset()
    change = Change(base._replace(last_seen=now + 2, device=refreshed), base=base)
    assert store.update(key, change, now + 2) == 3
    assert paths.taken() == (1, 0)
    assert hash_of(store, key)["dv"] == refreshed


def test_a_committed_meta_is_not_the_hash_as_read(store: RedisStore, paths: Paths) -> None:
    """After a write that merged, a session's metadata is what it wrote, not the hash (a
    binding made meanwhile is in the hash, not in it): a second write of the same session
    object, from that metadata, is the full write, which keeps the binding. (A fast write
    would trust the version and write the unbound state over it.)"""
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1"}, meta))
    mine, theirs = loaded(store, key, now), loaded(store, key, now)
    bound = theirs._replace(last_seen=now + 1, device=BOUND)
    assert store.update(key, Change(bound, base=theirs), now + 1) == 2
    written = mine._replace(last_seen=now + 2)
    version = store.update(key, Change(written, set={"a": "2"}, base=mine), now + 2)
    assert version == 3
    committed = written.with_changes(version=version)  # what the engine keeps
    assert not isinstance(committed, ReadMeta)
    paths.reset()
    change = Change(committed._replace(last_seen=now + 3, device='{"q":1}'), base=committed)
    assert store.update(key, change, now + 3) == 4
    assert paths.taken() == (0, 1)
    assert hash_of(store, key)["dv"] == BOUND


def test_what_is_derived_from_a_read_is_a_plain_meta(store: RedisStore) -> None:
    now = time.time()
    key, meta = _key(), _meta(now)
    store.create(key, Record({"a": "1"}, meta))
    base = loaded(store, key, now)
    assert base == meta
    for derived in (base._replace(last_seen=now + 1), base.with_changes(version=5)):
        assert type(derived) is Meta
    with pytest.raises(ValueError, match="unexpected field"):
        base._replace(nope=1)
    seen = base.seen(now + 1)
    assert isinstance(seen, ReadMeta)
    assert seen == meta._replace(last_seen=now + 1)


def test_a_write_with_thousands_of_keys(store: RedisStore, paths: Paths) -> None:
    """Lua's unpack() takes a few thousand values at most: the fast path sends slices too."""
    now = time.time()
    key, meta = _key(), _meta(now)
    data = {f"k{i}": str(i) for i in range(3000)}
    store.create(key, Record(data, meta))
    base = loaded(store, key, now)
    more = {f"m{i}": str(i) for i in range(3000)}
    paths.reset()
    change = Change(base._replace(last_seen=now + 1), set=more, delete=frozenset(data), base=base)
    assert store.update(key, change, now + 1) == 2
    assert paths.taken() == (1, 0)
    record = store.load(key, now + 1)
    assert record is not None
    assert dict(record.data) == more


# -- a server that lost its scripts ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_server_without_the_script_runs_the_write_once(
    store: RedisStore, paths: Paths, path: str
) -> None:
    """A restarted or new primary has no scripts: the refused EVALSHA ran nothing, so the
    write goes once more with the script's source (EVAL), and is applied once."""
    now = time.time()
    key = _key()
    store.create(key, Record({"n": "1"}, _meta(now)))
    base = loaded(store, key, now)
    store.client.script_flush()
    paths.reset()
    change = Change(base._replace(last_seen=now + 1), {"n": "2"}, base=base)
    if path == "sync":
        version = store.update(key, change, now + 1)
    else:
        version = await store.aupdate(key, change, now + 1)
        await store.aclose()
    assert version == base.version + 1
    stats: dict[str, Any] = store.client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1  # refused
    assert stats["cmdstat_eval"]["calls"] == 1  # run, once
    after = store.load(key, now + 1)
    assert after is not None
    assert after.data == {"n": "2"}
    assert after.meta.version == base.version + 1
