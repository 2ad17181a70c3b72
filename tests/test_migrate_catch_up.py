"""``satchel sessions migrate`` bringing an older copy in the target up to date (a run
after the app kept writing the old store), on the real stores: the copy takes the
source's version, so what the app writes in the target afterwards is never undone by a
later run; "last seen" never moves back; a device binding refreshed in the target is kept;
the user's index is told of a new user or a later deadline; a session the source started
over starts over in the target.

Each test is a sequence an operator meets in the documented procedure (run migrate while
the app still runs on the old store, switch the app to the read-through store, run
migrate again), or a request racing a run through the read-through store, as
tests/test_migrate.py races them (a store method wrapped)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from satchel.dbsc.state import DeviceState
from satchel.migration import Migration
from satchel.record import Change, Record
from satchel.stores import MemoryStore, Store, store_from_url
from satchel.stores.readthrough import ReadThroughStore
from satchel.testing import FakeClock
from satchel.testing.flows import make_meta, new_key

from .test_migrate import Urls, _cli, _client, urls  # noqa: F401 - the fixture, used by name

TARGETS = ("sqlite", "file", "postgres", "mysql", "redis", "memcached")
INDEXED_BY_A_SCRIPT = ("redis",)
"""The store whose per-user index is kept apart from the records and filed in the same
atomic script as a login's create (CREATE_INDEXED: nothing written on a collision). The
SQL and memory stores read the user from the record itself; the filesystem, Memcached and
Redis Cluster file the index entry before a create that may then collide, so the run's
first attempt (a create, refused: the target holds the key) files it by accident."""


@pytest.fixture
def target_of(urls: Urls, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Store]]:  # noqa: F811
    """A fresh, private store of each kind (Memcached under a prefix of its own)."""
    made: list[Store] = []

    def make(kind: str) -> Store:
        if kind == "memcached":
            server = request.getfixturevalue("memcached")
            url = f"{server.url}?prefix=atk-{uuid.uuid4().hex[:8]}:"
        else:
            url = urls(kind)
        store = store_from_url(url)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _write(
    store: Store,
    key: str,
    now: float,
    set_: dict[str, str] | None = None,
    delete: frozenset[str] = frozenset(),
    **meta: Any,
) -> int:
    """One request's write, as the engine makes it: from the record as loaded, "last
    seen" moved to now, only the given keys and metadata fields changed."""
    record = store.load(key, now)
    assert record is not None
    change = Change(
        record.meta._replace(last_seen=now, **meta), set_ or {}, delete, base=record.meta
    )
    version = store.update(key, change, now)
    assert version is not None
    return version


def _run(source: Store, target: Store, clock: FakeClock) -> Any:
    return Migration(source, target, clock=clock, workers=1).run()


# -- the copy takes the source's version: later runs compare it right ------------------------


def _caught_up_behind(
    kind: str, target_of: Callable[[str], Store], record: Record, writes: int = 3
) -> tuple[MemoryStore, Store, str, FakeClock]:
    """Run 1 copies ``record``; the app, still on the source, writes it ``writes`` times
    (version 1 -> 1 + writes); run 2 brings that over. The target's copy now holds the
    source's data under version 2 (assigned by the target's update), the source's under
    version 1 + writes."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    if record.meta.user_id is None:
        source.create(key, record)
    else:
        source.create_indexed(key, record, record.meta.user_id)
    assert _run(source, target, clock).copied == 1
    for n in range(1, writes + 1):
        clock.advance(1)
        _write(source, key, clock.now, {"n": str(n)})
    clock.advance(1)
    assert _run(source, target, clock).updated == 1
    return source, target, key, clock


@pytest.mark.parametrize("kind", TARGETS)
def test_a_write_made_in_the_target_after_a_catch_up_is_never_undone(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """After run 2 the app moves to the read-through store, and a request drops the
    session's sudo flag and fills its cart, in the target. Run 3 (the doc: "run it again
    as often as you like") finds the target's version (3) below the source's (4), calls
    the copy older, and brings the source "up to date" over it: the cart is deleted
    (a key of the copy the source lacks) and the dropped sudo flag is set again (a key
    the source holds that the copy lacks). The request wrote after the run read nothing:
    no race at all. Before 0510a50 the copy kept the source's version (4), the request
    made it 5, and run 3 kept it as newer."""
    record = Record({"n": "0", "sudo": "1"}, make_meta(time.time()))
    source, target, key, clock = _caught_up_behind(kind, target_of, record)
    app = ReadThroughStore(target, source)
    clock.advance(1)
    _write(app, key, clock.now, {"cart": "[1]"}, frozenset({"sudo"}))
    clock.advance(1)
    report = _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert dict(copy.data) == {"n": "3", "cart": "[1]"}
    assert (report.kept_newer, report.updated) == (1, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_the_short_switch_run_again_keeps_what_the_app_wrote_since(
    urls: Urls,  # noqa: F811
    kind: str,
) -> None:
    """The same through the app and the real command: the short switch of
    docs/migrating-stores.md with the command run again after it. The app on SQLite:
    a login, a write (n=1); ``migrate``; three more writes on the old store (n=4);
    ``migrate`` again (brought up to date); the app moves to the new store and the
    user writes once (n=5); ``migrate`` once more. The user's write is undone (n=4)."""
    source_url, target_url = urls("sqlite"), urls(kind)

    def migrate() -> dict[str, Any]:
        result = _cli("migrate", "--from", source_url, "--to", target_url, "--json")
        assert result.exit_code == 0, result.output
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    async with _client(source_url) as client:
        await client.get("/login", params={"user": "alice"})
        await client.get("/incr")
        jar = dict(client.cookies)
    assert migrate()["copied"] == 1
    async with _client(source_url) as client:
        client.cookies.update(jar)
        for _ in range(3):
            await client.get("/incr")
    assert migrate()["updated"] == 1
    async with _client(target_url) as client:  # the switch: the new store alone
        client.cookies.update(jar)
        assert (await client.get("/incr")).json() == {"n": 5}
    migrate()
    async with _client(target_url) as client:
        client.cookies.update(jar)
        assert (await client.get("/read")).json() == {"n": 5, "user": "alice"}


@pytest.mark.parametrize("kind", TARGETS)
def test_a_device_binding_refreshed_in_the_target_is_never_rolled_back(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """A DBSC-bound session: after run 2, a refresh on the read-through store answers
    the challenge issued at 200 ms (``answered_ms`` 100 -> 200: that proof is never
    accepted again, dbsc/protocol.py ``issued <= state.answered_ms``). Run 3 calls the
    copy older (version 3 < 4) and writes the source's binding over it: ``answered_ms``
    goes back to 100 and the captured proof for the 200 ms challenge is accepted again
    (a replay). Before 0510a50 run 3 kept the refreshed copy as newer."""
    jwk = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}
    bound = DeviceState(jwk, "thumb", answered_ms=100, bound_ms=50).encode()
    record = Record({"n": "0"}, make_meta(time.time(), device=bound))
    source, target, key, clock = _caught_up_behind(kind, target_of, record)
    app = ReadThroughStore(target, source)
    clock.advance(1)
    refreshed = DeviceState(jwk, "thumb", answered_ms=200, bound_ms=50).encode()
    _write(app, key, clock.now, device=refreshed)
    clock.advance(1)
    _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).answered_ms == 200


@pytest.mark.parametrize("kind", TARGETS)
def test_a_device_binding_refreshed_in_the_target_before_a_catch_up_is_kept(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """The other order: the binding is refreshed in the target (``answered_ms`` 100 ->
    200) while the app, still on the source, writes the session there (a higher version);
    the run that brings the source's writes over keeps the target's binding."""
    jwk = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}
    bound = DeviceState(jwk, "thumb", answered_ms=100, bound_ms=50).encode()
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    source.create(key, Record({"n": "0"}, make_meta(clock.now, device=bound)))
    assert _run(source, target, clock).copied == 1
    clock.advance(1)
    refreshed = DeviceState(jwk, "thumb", answered_ms=200, bound_ms=50).encode()
    _write(ReadThroughStore(target, source), key, clock.now, device=refreshed)
    for n in range(1, 4):
        clock.advance(1)
        _write(source, key, clock.now, {"n": str(n)})
    clock.advance(1)
    assert _run(source, target, clock).updated == 1
    copy = target.load(key, clock.now)
    assert copy is not None
    assert dict(copy.data) == {"n": "3"}
    assert DeviceState.decode(copy.meta.device).answered_ms == 200


@pytest.mark.parametrize("kind", TARGETS)
def test_a_read_in_the_target_after_a_catch_up_keeps_the_session_alive(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """After run 2 the app moves to the read-through store and the user keeps reading
    (each read moves "last seen" in the target, no new version). Run 3, made while the
    source's copy still lives, calls the target's copy older (2 < 4) and writes the
    source's "last seen" over it: the session's idle timeout now counts from the last
    request made on the old store, and the user is logged out while active. Before
    0510a50 the copy held the source's version, so run 3 saw it "the same" and left it."""
    record = Record({"n": "0"}, make_meta(time.time(), idle_timeout=1800.0))
    source, target, key, clock = _caught_up_behind(kind, target_of, record)
    app = ReadThroughStore(target, source)
    for _ in range(2):  # reads, ten minutes apart
        clock.advance(600)
        assert app.touch(key, clock.now, clock.now)
    last_read = clock.now
    clock.advance(50)  # run 3, while the source's copy (seen last 1,250 s ago) still lives
    _run(source, target, clock)
    copy = target.load(key, last_read + 700)  # 700 s after the user's last read
    assert copy is not None
    assert copy.meta.last_seen == last_read


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_a_run_after_a_catch_up_with_nothing_new_finds_it_present(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """Nothing written anywhere since run 2: run 3 must find the copy present, and
    write nothing. The copy's version (2) is below the source's (4), so it is brought
    "up to date" again (an empty update, counted as updated), and again on run 4, until
    the target's counter happens to reach the source's."""
    record = Record({"n": "0"}, make_meta(time.time()))
    source, target, _, clock = _caught_up_behind(kind, target_of, record)
    clock.advance(1)
    report = _run(source, target, clock)
    assert (report.present, report.updated) == (1, 0)


@pytest.mark.parametrize("kind", TARGETS)
def test_a_session_started_over_in_the_source_loses_its_binding_in_the_target(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """Alice's session is bound to her device (DBSC) when run 1 copies it. The app, still
    on the source, starts the session over (Django's ``session.clear()``: no data, no
    user, no binding; only a fresh start drops a binding in place). Run 2 brings that
    over as an update without ``clear``: every store keeps a stored binding against an
    unbound state but in a fresh start, so the target's record is the source's anonymous
    session still bound to alice's device key, unlike the source's. Before 0510a50 the
    copy was made again from the source's record: unbound, as the source."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    bound = DeviceState({"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}, "thumb", 100, 50)
    meta = make_meta(clock.now, user_id="alice", device=bound.encode())
    source.create_indexed(key, Record({"n": "0"}, meta), "alice")
    assert _run(source, target, clock).copied == 1
    clock.advance(10)
    fresh = make_meta(clock.now)._replace(handle=meta.handle)
    assert source.update(key, Change(fresh, {"theme": "dark"}, clear=True, base=meta), clock.now)
    clock.advance(1)
    assert _run(source, target, clock).updated == 1
    copy, original = target.load(key, clock.now), source.load(key, clock.now)
    assert copy is not None
    assert original is not None
    assert dict(copy.data) == dict(original.data) == {"theme": "dark"}
    assert (copy.meta.user_id, copy.meta.device) == (original.meta.user_id, None)


# -- the per-user index: an update is not a login --------------------------------------------


@pytest.mark.parametrize("kind", INDEXED_BY_A_SCRIPT)
def test_a_catch_up_that_moves_the_deadline_later_keeps_the_session_listed(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """The app on the source lengthens a logged-in session's absolute timeout (``set_expiry``,
    "remember me"): the engine files the user's index entry at the later deadline before
    its update. Run 2 brings the change over by an update alone: the target's index entry
    keeps the old deadline. Past it, the session still lives in the target, but "log out
    everywhere", the per-user cap and the sessions page (all ``list_user``) no longer see
    it on Redis (ZREMRANGEBYSCORE drops the entry at the old deadline): it cannot be
    revoked. Before 0510a50 the copy was created again with ``create_indexed``, filed at
    the new deadline."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    meta = make_meta(
        clock.now, user_id="alice", idle_timeout=7200.0, absolute_deadline=clock.now + 1000
    )
    source.create_indexed(key, Record({"n": "0"}, meta), "alice")
    assert _run(source, target, clock).copied == 1
    clock.advance(10)
    _write(source, key, clock.now, {"n": "1"}, absolute_deadline=meta.created + 5000)
    assert _run(source, target, clock).updated == 1
    later = meta.created + 1100  # past the old deadline, well before the new one
    assert target.load(key, later) is not None  # the session lives on...
    assert [k for k, _ in target.list_user("alice", later)] == [key]  # ...unlisted


@pytest.mark.parametrize("kind", INDEXED_BY_A_SCRIPT)
def test_a_catch_up_that_gives_the_session_its_user_files_it_under_the_user(
    target_of: Callable[[str], Store], kind: str
) -> None:
    """A session the source holds under the same key with a user it did not have when
    run 1 copied it (a login made by an update, Django-style: the memory store admits
    such updates to its login budget). Run 2 brings the user over by an update alone:
    nothing files the key under alice in the target's Redis index, so her sessions page,
    "log out everywhere" and the per-user cap miss it: it cannot be revoked. Before
    0510a50: ``create_indexed`` under alice."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    source.create(key, Record({"cart": "[1]"}, make_meta(clock.now)))
    assert _run(source, target, clock).copied == 1
    clock.advance(10)
    _write(
        source,
        key,
        clock.now,
        user_id="alice",
        created=clock.now,
        absolute_deadline=clock.now + 3600,
    )
    assert _run(source, target, clock).updated == 1
    assert target.load(key, clock.now) is not None
    assert [k for k, _ in target.list_user("alice", clock.now)] == [key]
