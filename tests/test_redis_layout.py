"""The Redis store's hash layout: compact fields, hashes written by 0.1 still served (and
rewritten by their first update), and what ``index_add`` returns."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from satchel import CorruptRecord, KeyCollision, StoreError
from satchel.ids import user_key
from satchel.record import Change, Meta, Record
from satchel.stores.redis import CREATE, RedisStore, create_args
from satchel.stores.redis.scripts import number
from satchel.testing.conformance import _key, _meta

from .services import RedisServer

pytestmark = pytest.mark.anyio

# 0.1's create script and fields, verbatim: the metadata as JSON in ``m``, with ``ls``,
# ``it``, ``ad`` and ``v`` copied out.
OLD_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def old_fields(record: Record) -> list[str | bytes]:
    meta = record.meta
    flat: list[str | bytes] = [
        "m",
        meta.to_json(),
        "ls",
        repr(meta.last_seen),
        "it",
        repr(meta.idle_timeout),
        "ad",
        repr(meta.absolute_deadline),
        "v",
        str(meta.version),
    ]
    for name, value in record.data.items():
        flat += ["d:" + name, value]
    return flat


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    prefix = f"satchel-test-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    yield store
    for key in store.client.scan_iter(match=prefix + "*", count=10_000):
        store.client.delete(key)
    store.close()


def hash_of(store: RedisStore, key: str) -> dict[str, str]:
    raw: dict[bytes, bytes] = store.client.hgetall(store.hash_key(key))
    return {name.decode(): value.decode() for name, value in raw.items()}


def create_old(store: RedisStore, key: str, record: Record) -> None:
    expire_ms = str(int(record.meta.expires_at * 1000))
    script: Any = store.client.register_script(OLD_CREATE)
    assert script(keys=[store.hash_key(key)], args=[expire_ms, *old_fields(record)]) == 1


# -- the layout ---------------------------------------------------------------------------------


def test_one_short_field_per_metadata_field_and_nothing_twice(store: RedisStore) -> None:
    key = _key()
    meta = _meta(time.time(), user_id="alice", persistent=True)
    store.create(key, Record({"n": "1"}, meta))
    assert hash_of(store, key) == {
        "h": meta.handle,
        "c": repr(meta.created),
        "ls": repr(meta.last_seen),
        "ad": repr(meta.absolute_deadline),
        "it": "600",  # an integral float is stored as an integer
        "u": "alice",
        "ua": "ua",
        "ip": "127.0.0.1",
        "p": "1",
        "v": "1",
        "d:n": "1",
    }
    assert store.client.object("encoding", store.hash_key(key)) == b"listpack"
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert record.meta == meta
    assert type(record.meta.idle_timeout) is float


def test_none_and_false_are_absent_fields_and_an_update_removes_them(store: RedisStore) -> None:
    key = _key()
    meta = _meta(time.time(), user_id="alice", persistent=True)
    store.create(key, Record({"a": "1"}, meta))
    bare = meta.with_changes(user_id=None, user_agent=None, client_ip=None, persistent=False)
    assert store.update(key, Change(meta=bare, set={"b": "2"}), meta.last_seen) == 2
    assert set(hash_of(store, key)) == {"h", "c", "ls", "ad", "it", "v", "d:a", "d:b"}
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert record.meta == bare.with_changes(version=2)
    back = bare.with_changes(user_id="bob", client_ip="::1")
    assert store.update(key, Change(meta=back, delete=frozenset({"a"})), meta.last_seen) == 3
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert record.meta == back.with_changes(version=3)
    assert dict(record.data) == {"b": "2"}


def test_a_field_cleared_and_set_by_one_change_ends_up_set(store: RedisStore) -> None:
    key = _key()
    meta = _meta(time.time())
    store.create(key, Record({"a": "1", "b": "2"}, meta))
    store.update(key, Change(meta=meta, set={"a": "3"}, clear=True), meta.last_seen)
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert dict(record.data) == {"a": "3"}


def test_a_change_with_thousands_of_keys(store: RedisStore) -> None:
    """Lua's unpack() takes a few thousand values at most: the scripts send slices."""
    key = _key()
    meta = _meta(time.time())
    data = {f"k{i}": str(i) for i in range(3000)}
    store.create(key, Record(data, meta))
    more = {f"m{i}": str(i) for i in range(3000)}
    change = Change(meta=meta, set=more, delete=frozenset(data))
    assert store.update(key, change, meta.last_seen) == 2
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert dict(record.data) == more
    store.update(key, Change(meta=meta, set={"z": "1"}, clear=True), meta.last_seen)
    record = store.load(key, meta.last_seen)
    assert record is not None
    assert dict(record.data) == {"z": "1"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ls", "inf"),
        ("ad", "nan"),
        ("c", "x"),
        ("v", "1.5"),
        ("h", None),
        ("p", "yes"),
        ("d:\xff", None),
    ],
)
def test_a_damaged_hash_is_a_corrupt_record(
    store: RedisStore, field: str, value: str | None
) -> None:
    key = _key()
    meta = _meta(time.time())
    store.create(key, Record({"a": "1"}, meta))
    name = store.hash_key(key)
    if field == "d:\xff":
        store.client.hset(name, b"d:\xff", b"1")  # not UTF-8
    elif value is None:
        store.client.hdel(name, field)
    else:
        store.client.hset(name, field, value)
    with pytest.raises(CorruptRecord):
        store.load(key, meta.last_seen)


def test_a_browser_user_agent_and_hash_max_listpack_value(private_redis: RedisServer) -> None:
    """A browser's user agent (100-150 bytes) is the one field of a typical session over
    Redis's default hash-max-listpack-value (64): the hash becomes a hashtable, about
    three times the memory; raising the setting keeps it a listpack (docs/stores.md)."""
    store = RedisStore(private_redis.url)
    sizes = {}
    for limit in ("64", "256"):
        store.client.config_set("hash-max-listpack-value", limit)
        key = _key()
        meta = _meta(time.time(), user_id="alice", user_agent=CHROME)
        store.create(key, Record({"n": "1"}, meta))
        name = store.hash_key(key)
        encoding = store.client.object("encoding", name)
        assert encoding == (b"hashtable" if limit == "64" else b"listpack")
        sizes[limit] = int(store.client.memory_usage(name, samples=0))
        record = store.load(key, meta.last_seen)
        assert record is not None
        assert record.meta == meta
    assert sizes["256"] < sizes["64"] * 2 / 3
    store.close()


# -- hashes written by 0.1 ----------------------------------------------------------------------


def old_session(store: RedisStore, **changes: Any) -> tuple[str, Meta]:
    key = _key()
    meta = _meta(time.time(), **changes)
    create_old(store, key, Record({"a": "1", "b": '"x"'}, meta))
    assert "m" in hash_of(store, key)
    return key, meta


async def test_a_0_1_hash_is_read_touched_and_listed(store: RedisStore) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    key, meta = old_session(store, user_id=user)
    store.index_add(user, key, meta.absolute_deadline)
    for record in (store.load(key, meta.last_seen), await store.aload(key, meta.last_seen)):
        assert record is not None
        assert record.meta == meta
        assert dict(record.data) == {"a": "1", "b": '"x"'}
    later = meta.last_seen + 100
    record = store.load(key, later, refresh_after=60)
    assert record is not None
    assert record.refreshed
    assert record.meta.last_seen == later
    assert store.touch(key, later + 1, later + 1)
    assert [(k, m.last_seen) for k, m in store.list_user(user, later)] == [(key, later + 1)]
    assert [k for k, _ in await store.alist_user(user, later)] == [key]
    listed = dict(store.iter_sessions(later))
    assert listed[key] == meta.with_changes(last_seen=later + 1)
    assert store.load(key, meta.expires_at + 200) is None  # expiry from 0.1's fields
    await store.aclose()


@pytest.mark.parametrize("known_base", [False, True], ids=["whole", "changes-only"])
async def test_an_update_rewrites_a_0_1_hash_in_the_new_layout(
    store: RedisStore, known_base: bool
) -> None:
    """Also when the change names its base (the engine's writes): a write of only the
    changed fields meets the old layout, and the whole metadata follows."""
    key, meta = old_session(store, user_id="alice", persistent=True)
    later = meta.last_seen + 10
    base = meta if known_base else None
    change = Change(meta=meta.with_changes(last_seen=later), set={"a": "2"}, base=base)
    assert await store.aupdate(key, change, later) == 2
    fields = hash_of(store, key)
    assert "m" not in fields
    assert fields["u"] == "alice"
    assert fields["p"] == "1"
    for record in (store.load(key, later), await store.aload(key, later)):
        assert record is not None
        assert record.meta == meta.with_changes(last_seen=later, version=2)
        assert dict(record.data) == {"a": "2", "b": '"x"'}
    expire_at = store.client.pexpiretime(store.hash_key(key)) / 1000
    assert abs(expire_at - min(later + meta.idle_timeout, meta.absolute_deadline)) < 0.01
    await store.aclose()


def test_an_update_of_an_expired_or_deleted_0_1_hash_writes_nothing(store: RedisStore) -> None:
    key, meta = old_session(store)
    late = meta.expires_at + 1
    assert store.update(key, Change(meta=meta, set={"a": "2"}), late) is None
    assert hash_of(store, key)["d:a"] == "1"
    store.delete(key)
    assert store.update(key, Change(meta=meta, set={"a": "2"}), meta.last_seen) is None
    assert hash_of(store, key) == {}


# -- index_add's count --------------------------------------------------------------------------


async def test_index_add_returns_how_many_sessions_the_index_holds(store: RedisStore) -> None:
    """The count the core compares with the per-user cap: members past their deadline are
    dropped first; sessions deleted before it still count (an upper bound) until a listing
    prunes them."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    now = time.time()
    keys = [_key() for _ in range(4)]
    assert store.index_add(user, keys[0], now + 100) == 1
    assert await store.aindex_add(user, keys[1], now + 200) == 2
    assert store.index_add(user, keys[1], now + 200) == 2  # the same session again
    assert store.index_add(user + "-other", keys[2], now + 100) == 1
    index = store.index_key(user)
    assert index == f"{store.prefix}u:{user_key(user)}"
    store.client.zadd(index, {"expired": now - 1})
    assert store.client.zcard(index) == 3
    assert store.index_add(user, keys[3], now + 300) == 3  # "expired" dropped
    assert store.client.zscore(index, "expired") is None
    expire_at = store.client.pexpiretime(index) / 1000
    assert abs(expire_at - (now + 300)) < 0.01
    assert store.index_add(user, _key(), now - 5) == 3  # past its deadline: not kept
    await store.aclose()


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_login_files_the_same_hash_and_index_entry(store: RedisStore, path: str) -> None:
    """A login's script takes the record's numbers as one argument and the optional
    fields by position (issue 12: fewer arguments to pack); what it writes is the
    layout every other write reads: the same fields as a plain create, in the same
    order, the index entry scored by the absolute deadline, members past their deadline
    at "last seen" dropped, and the TTLs."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    now = time.time()
    meta = _meta(now, user_id=user, auth='{"t":1.5,"m":["pwd"]}', device='{"s":1}')
    meta = meta.with_changes(last_seen=now + 0.25, idle_timeout=1800.5, version=7)
    index = store.index_key(user)
    store.client.zadd(index, {"gone": now, "live": now + 60})
    key, plain = _key(), _key()
    record = Record({"a": "1", "b": '"x y"'}, meta)
    if path == "sync":
        assert store.create_indexed(key, record, user) == 2
    else:
        assert await store.acreate_indexed(key, record, user) == 2
    store.create(plain, record)
    raw = store.client.hgetall(store.hash_key(key))
    assert list(raw.items()) == list(store.client.hgetall(store.hash_key(plain)).items())
    assert [name.decode() for name in raw] == [
        "h", "c", "ls", "ad", "it", "u", "ua", "ip", "dv", "au", "v", "d:a", "d:b"
    ]  # fmt: skip
    assert raw[b"c"] == repr(meta.created).encode()
    assert raw[b"v"] == b"7"
    loaded = store.load(key, meta.last_seen)
    assert loaded is not None
    assert loaded.meta == meta
    assert dict(loaded.data) == record.data
    assert store.client.zscore(index, key) == meta.absolute_deadline
    assert store.client.zscore(index, "gone") is None
    assert store.client.zscore(index, "live") == now + 60
    expire_at = store.client.pexpiretime(store.hash_key(key)) / 1000
    assert abs(expire_at - meta.expires_at) < 0.01
    with pytest.raises(KeyCollision):
        store.create_indexed(key, record, user)
    await store.aclose()


def test_a_create_with_malformed_numbers_writes_nothing(store: RedisStore) -> None:
    """The script refuses numbers it cannot split (a space inside one, a bad mask)
    before it writes anything."""
    key = _key()
    good = create_args(Record({}, _meta(time.time())))
    for numbers in (good[0] + " 1", good[0][:-1], good[0].replace(" ", "  ", 1)):
        with pytest.raises(StoreError, match="malformed record"):
            store._write(CREATE, [store.hash_key(key)], [numbers, *good[1:]])
    assert not store.client.exists(store.hash_key(key))


def test_numbers_are_exact_and_read_as_repr_would_write_them() -> None:
    """:func:`number` writes most fractions with msgspec (faster than ``repr``): the
    same text, and the same float back; integral values as integers."""
    rng = random.Random(12)
    values = [time.time() + rng.random() * 1e6 for _ in range(2000)]
    values += [rng.uniform(-1e4, 1e4) for _ in range(2000)] + [0.1, -2.5, 1e-4, 1e-7, 1 / 3]
    values += [10 ** rng.uniform(-6, 15) for _ in range(2000)]
    for value in values:
        text = number(value)
        assert float(text) == value
        assert text == (str(int(value)) if value % 1 == 0 else repr(value))
    assert [number(v) for v in (1800.0, 1800, -3.0, 0.0)] == ["1800", "1800", "-3", "0"]
    for value in (1e15, 1e300, math.inf, -math.inf, math.nan, 2.5e16):
        assert number(value) == repr(value)


# -- writes of only the metadata that changed ----------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_write_sends_only_the_metadata_it_changes(store: RedisStore, path: str) -> None:
    """Two requests load the same session; one turns it persistent with a later deadline,
    the other writes a key. Each writes only what it changed, so both survive (a write of
    the whole metadata would undo the first), and the TTL follows the fields as written."""
    key, meta = _key(), _meta(time.time())
    store.create(key, Record({"n": "1"}, meta))
    now = meta.last_seen + 5
    longer = meta.with_changes(
        last_seen=now,
        persistent=True,
        absolute_deadline=meta.absolute_deadline + 86400,
        idle_timeout=meta.idle_timeout * 10,
    )
    plain = meta.with_changes(last_seen=now + 1)
    first = Change(longer, base=meta)
    second = Change(plain, set={"n": "2"}, base=meta)
    if path == "sync":
        assert store.update(key, first, now) == 2
        assert store.update(key, second, now + 1) == 3
    else:
        assert await store.aupdate(key, first, now) == 2
        assert await store.aupdate(key, second, now + 1) == 3
    record = store.load(key, now + 1)
    assert record is not None
    assert dict(record.data) == {"n": "2"}
    assert record.meta == longer.with_changes(last_seen=now + 1, version=3)
    expire_at = store.client.pexpiretime(store.hash_key(key)) / 1000
    expected = min(now + 1 + longer.idle_timeout, longer.absolute_deadline)
    assert abs(expire_at - expected) < 0.01
    await store.aclose()
