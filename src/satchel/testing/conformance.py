"""The store conformance suite. Every server-side store passes it, on both I/O paths.

Usage, in a pytest module::

    from satchel.testing.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self) -> Store:
            return MyStore(...)

Each test runs twice, through the store's sync methods and through its async ones.
The engine-level tests (strict mode, no resurrection, concurrent disjoint writes,
nested changes) drive satchel's real core against the store.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .. import ids
from ..engine import Engine
from ..errors import KeyCollision
from ..expiry import ExpiryPolicy
from ..ops import Flow
from ..record import Change, Record
from ..session import Session
from ..stores.base import Store
from ..stores.capabilities import Exportable
from .clock import FakeClock
from .drivers import StoreDriver
from .flows import (
    ABSOLUTE,
    IDLE,
    INFO,
    DriverSuite,
    cookie_id,
    issued,
    login_request,
    make_meta,
    new_key,
    request,
)

__all__ = ["CookieConformance", "StoreConformance", "cookie_id", "login_request", "request"]

_meta, _key = make_meta, new_key  # the names the store tests know


class StoreConformance(DriverSuite):
    """Subclass and define :meth:`make_store`. ``engine_options`` passes extra options to
    the engine (e.g. ``{"encrypt_at_rest": True}``)."""

    engine_options: dict[str, Any] = {}  # noqa: RUF012 - read-only, overridden per class

    def make_store(self) -> Store:
        raise NotImplementedError

    def _store(self) -> Store:
        return self.make_store()

    @pytest.fixture
    def engine(self, clock: FakeClock) -> Engine:
        return Engine(
            secret_keys=["conformance-key-" + "x" * 32],
            expiry=ExpiryPolicy(idle_timeout=IDLE, absolute_timeout=ABSOLUTE),
            clock=clock,
            **self.engine_options,
        )

    # -- the raw contract -------------------------------------------------------------------

    def test_create_then_load_round_trips(self, driver: StoreDriver, clock: FakeClock) -> None:
        key, meta = _key(), _meta(clock.now, user_id="alice")
        driver.create(key, Record({"a": "1", "b": '"x"'}, meta))
        driver.index_add("alice", key, meta.absolute_deadline)
        record = driver.load(key, clock.now)
        assert record is not None
        assert dict(record.data) == {"a": "1", "b": '"x"'}
        assert record.meta == meta

    def test_device_binding_round_trips(self, driver: StoreDriver, clock: FakeClock) -> None:
        """The device binding (``Meta.device``) is kept as given: written at creation,
        changed, listed, and dropped by a fresh start (``clear``)."""
        user = f"user-{uuid.uuid4().hex[:8]}"
        key, meta = _key(), _meta(clock.now, user_id=user)
        bound = meta._replace(device='{"k":{"kty":"EC"},"n":1}')
        driver.create(key, Record({"a": "1"}, bound))
        driver.index_add(user, key, meta.absolute_deadline)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device == bound.device
        assert [m.device for _, m in driver.list_user(user, clock.now)] == [bound.device]
        moved = bound._replace(device='{"k":{"kty":"EC"},"n":2}', version=2)
        assert driver.update(key, Change(meta=moved, base=record.meta), clock.now) == 2
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device == moved.device
        fresh_start = Change(meta=meta, set={"a": "1"}, clear=True, base=record.meta)
        assert driver.update(key, fresh_start, clock.now) == 3
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device is None
        assert dict(record.data) == {"a": "1"}

    def test_authentication_facts_round_trip(self, driver: StoreDriver, clock: FakeClock) -> None:
        """How and when the user authenticated (``Meta.auth``) is kept as given: written at
        creation, kept by a write that does not change it, changed, listed, and dropped
        when the metadata drops it."""
        user = f"user-{uuid.uuid4().hex[:8]}"
        key, meta = _key(), _meta(clock.now, user_id=user)
        signed_in = meta._replace(auth='{"t":1700000000.5,"m":["pwd"],"l":"aal1"}')
        driver.create(key, Record({"a": "1"}, signed_in))
        driver.index_add(user, key, meta.absolute_deadline)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.auth == signed_in.auth
        assert [m.auth for _, m in driver.list_user(user, clock.now)] == [signed_in.auth]
        plain = Change(meta=record.meta._replace(version=2), set={"b": "2"}, base=record.meta)
        assert driver.update(key, plain, clock.now) == 2
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.auth == signed_in.auth
        stepped = record.meta._replace(auth='{"t":1700000100,"m":["pwd","otp"],"l":"aal2"}')
        assert driver.update(key, Change(meta=stepped, base=record.meta), clock.now) == 3
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.auth == stepped.auth
        gone = record.meta._replace(auth=None)
        assert driver.update(key, Change(meta=gone, base=record.meta), clock.now) == 4
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.auth is None

    def test_a_stale_write_keeps_the_stored_device_binding(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        """A request that loaded the session before it was bound, and writes after, leaves
        the binding alone (its change did not touch it): the store keeps what it holds."""
        key, unbound = _key(), _meta(clock.now)
        unbound_meta = unbound
        driver.create(key, Record({"a": "1"}, unbound))
        bound = unbound._replace(device='{"k":{"kty":"EC"},"n":1}')
        assert driver.update(key, Change(meta=bound, base=unbound), clock.now) == 2
        stale = unbound._replace(last_seen=clock.now + 1)
        assert driver.update(key, Change(meta=stale, set={"b": "2"}, base=unbound), clock.now)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device == bound.device
        assert dict(record.data) == {"a": "1", "b": "2"}
        # a change that does touch it is written as given (a refresh) ...
        later = bound._replace(device='{"k":{"kty":"EC"},"n":2}')
        assert driver.update(key, Change(meta=later, base=bound), clock.now)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device == later.device
        # ... but never to an unbound state (a stale "must bind" flag, a stale None) ...
        for unbound_device in ('{"q":1}', None):
            stale_change = Change(
                meta=unbound_meta._replace(device=unbound_device), base=unbound_meta
            )
            assert driver.update(key, stale_change, clock.now)
            record = driver.load(key, clock.now)
            assert record is not None
            assert record.meta.device == later.device
        # ... except in a fresh start
        assert driver.update(key, Change(meta=unbound_meta, clear=True, base=later), clock.now)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.meta.device is None

    def test_load_of_unknown_key_is_none(self, driver: StoreDriver, clock: FakeClock) -> None:
        assert driver.load(_key(), clock.now) is None

    def test_update_writes_only_the_changed_keys(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"keep": "1", "change": "2", "drop": "3"}, meta))
        version = driver.update(
            key,
            Change(meta=meta, set={"change": "20", "new": "4"}, delete=frozenset({"drop"})),
            clock.now,
        )
        assert version == 2
        record = driver.load(key, clock.now)
        assert record is not None
        assert dict(record.data) == {"keep": "1", "change": "20", "new": "4"}
        assert record.meta.version == 2

    def test_update_writes_at_least_the_changes_version(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        """One above the stored version, or the change's own when that is higher (a copy
        brought up to date from another store keeps its original's version), with the
        metadata as loaded for a base or without one."""
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"a": "1"}, meta))
        loaded = driver.load(key, clock.now)
        assert loaded is not None
        raised = Change(meta=loaded.meta._replace(version=7), set={"a": "2"}, base=loaded.meta)
        assert driver.update(key, raised, clock.now) == 7
        assert (
            driver.update(key, Change(meta=meta._replace(version=9), set={"a": "3"}), clock.now)
            == 9
        )
        assert driver.update(key, Change(meta=meta, set={"a": "4"}), clock.now) == 10
        loaded = driver.load(key, clock.now)
        assert loaded is not None
        assert (loaded.meta.version, dict(loaded.data)) == (10, {"a": "4"})
        assert (
            driver.update(
                key, Change(meta=loaded.meta, set={"a": "5"}, base=loaded.meta), clock.now
            )
            == 11
        )

    def test_update_with_clear_replaces_all_keys(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"a": "1", "b": "2"}, meta))
        assert driver.update(key, Change(meta=meta, set={"c": "3"}, clear=True), clock.now)
        record = driver.load(key, clock.now)
        assert record is not None
        assert dict(record.data) == {"c": "3"}

    def test_update_of_missing_record_writes_nothing(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        key = _key()
        assert driver.update(key, Change(meta=_meta(clock.now), set={"a": "1"}), clock.now) is None
        assert driver.load(key, clock.now) is None

    def test_delete(self, driver: StoreDriver, clock: FakeClock) -> None:
        key = _key()
        driver.create(key, Record({"a": "1"}, _meta(clock.now)))
        assert driver.delete(key) is True
        assert driver.load(key, clock.now) is None
        assert driver.delete(key) is False

    def test_expired_records_are_gone(self, driver: StoreDriver, clock: FakeClock) -> None:
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"a": "1"}, meta))
        later = meta.expires_at + 1
        assert driver.load(key, later) is None
        assert driver.update(key, Change(meta=meta, set={"a": "2"}), later) is None
        assert driver.touch(key, later, later) is False

    def test_purge_removes_only_expired_records(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        old, live = _key(), _key()
        driver.create(old, Record({}, _meta(clock.now - IDLE - 1)))
        driver.create(live, Record({}, _meta(clock.now)))
        purged = driver.purge_expired(clock.now, batch_size=1)
        assert purged >= 0  # stores that expire records by themselves (TTLs) may report 0
        assert driver.load(live, clock.now) is not None
        assert driver.load(old, clock.now) is None

    def test_touch_refreshes_last_seen_not_data(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"a": "1"}, meta))
        assert driver.touch(key, clock.now + 100, clock.now + 100) is True
        record = driver.load(key, clock.now + 100)
        assert record is not None
        assert record.meta.last_seen == clock.now + 100
        assert dict(record.data) == {"a": "1"}
        assert driver.touch(key, clock.now + 50, clock.now + 100) is True  # never backwards
        record = driver.load(key, clock.now + 100)
        assert record is not None
        assert record.meta.last_seen == clock.now + 100
        assert driver.touch(_key(), clock.now, clock.now) is False

    def test_load_may_fold_in_the_refresh(self, driver: StoreDriver, clock: FakeClock) -> None:
        """With refresh_after, a store either refreshes "last seen" in the same call (and
        says so) or leaves the record as it was; it never refreshes when not due."""
        key, meta = _key(), _meta(clock.now)
        driver.create(key, Record({"a": "1"}, meta))
        early = driver.load(key, clock.now + 1, refresh_after=60)
        assert early is not None
        assert not early.refreshed
        assert early.meta.last_seen == meta.last_seen
        due = clock.now + 61
        record = driver.load(key, due, refresh_after=60)
        assert record is not None
        assert dict(record.data) == {"a": "1"}
        after = driver.load(key, due)
        assert after is not None
        if record.refreshed:
            assert record.meta.last_seen == due
            assert after.meta.last_seen == due
            assert after.meta.expires_at == min(due + IDLE, meta.absolute_deadline)
        else:
            assert after.meta.last_seen == meta.last_seen

    # -- the per-user index ------------------------------------------------------------------

    def _user_sessions(self, driver: StoreDriver, user: str, now: float, n: int) -> list[str]:
        keys = []
        for _ in range(n):
            key, meta = _key(), _meta(now, user_id=user)
            driver.create(key, Record({}, meta))
            driver.index_add(user, key, meta.absolute_deadline)
            keys.append(key)
        return keys

    def test_iter_records_hands_over_every_live_record(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        """The optional :class:`~satchel.stores.capabilities.Exportable` power (every store
        that can enumerate its keys): each live record once, data and metadata whole."""
        store = driver.store
        if not isinstance(store, Exportable):
            return
        live = {
            _key(): Record({"n": str(i)}, _meta(clock.now, user_id=f"u{i}" if i % 2 else None))
            for i in range(5)
        }
        for key, record in live.items():
            driver.create(key, record)
        gone, short = _key(), _key()
        driver.create(gone, Record({}, _meta(clock.now)))
        driver.delete(gone)
        driver.create(short, Record({}, _meta(clock.now - IDLE + 1)))
        clock.advance(2)  # ``short`` has expired
        exported = dict(store.iter_records(clock.now))
        assert exported.keys() == live.keys()
        for key, record in live.items():
            assert dict(exported[key].data) == dict(record.data)
            assert exported[key].meta == record.meta

    def test_list_user_returns_that_users_live_sessions(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        user = f"user-{uuid.uuid4().hex[:8]}"
        mine = self._user_sessions(driver, user, clock.now, 3)
        self._user_sessions(driver, user + "-other", clock.now, 2)
        listed = driver.list_user(user, clock.now)
        assert sorted(k for k, _ in listed) == sorted(mine)
        assert all(m.user_id == user for _, m in listed)
        assert driver.list_user(f"nobody-{uuid.uuid4().hex}", clock.now) == []

    def test_index_add_counts_at_least_the_users_live_sessions(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        """What ``index_add`` returns lets a login skip listing: None, or an upper bound
        on the user's live sessions (the new one included)."""
        user = f"user-{uuid.uuid4().hex[:8]}"
        self._user_sessions(driver, user, clock.now, 2)
        key, meta = _key(), _meta(clock.now, user_id=user)
        counted = driver.index_add(user, key, meta.absolute_deadline)
        driver.create(key, Record({}, meta))
        assert counted is None or counted >= len(driver.list_user(user, clock.now)) == 3

    def test_create_indexed_creates_a_record_its_user_lists(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        user = f"user-{uuid.uuid4().hex[:8]}"
        self._user_sessions(driver, user, clock.now, 1)
        key, meta = _key(), _meta(clock.now, user_id=user)
        counted = driver.create_indexed(key, Record({"k": '"v"'}, meta), user)
        record = driver.load(key, clock.now)
        assert record is not None
        assert record.data == {"k": '"v"'}
        listed = driver.list_user(user, clock.now)
        assert key in {k for k, _ in listed}
        assert counted is None or counted >= len(listed) == 2
        with pytest.raises(KeyCollision):
            driver.create_indexed(key, Record({}, meta), user)

    def test_list_user_prunes_deleted_and_expired_sessions(
        self, driver: StoreDriver, clock: FakeClock
    ) -> None:
        user = f"user-{uuid.uuid4().hex[:8]}"
        keys = self._user_sessions(driver, user, clock.now, 3)
        driver.delete(keys[0])
        old, meta = _key(), _meta(clock.now - IDLE - 10, user_id=user)
        driver.create(old, Record({}, meta))
        driver.index_add(user, old, meta.absolute_deadline)
        listed = {k for k, _ in driver.list_user(user, clock.now)}
        assert listed == set(keys[1:])
        assert {k for k, _ in driver.list_user(user, clock.now)} == set(keys[1:])

    def test_login_indexes_and_revocation_by_handle(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        from ..user_sessions import list_flow, revoke_all_flow, revoke_flow

        user = f"user-{uuid.uuid4().hex[:8]}"
        devices = []
        for _ in range(3):
            session, _ = driver.flow(request(engine, None))
            session = driver.flow(login_request(engine, user))
            devices.append(session)
        listed = driver.flow(list_flow(user, clock.now, current=devices[0].handle))
        assert sorted(i.handle for i in listed) == sorted(d.handle or "" for d in devices)
        assert [i.current for i in listed if i.handle == devices[0].handle] == [True]
        assert not driver.flow(revoke_flow("someone-else", devices[1].handle or "", clock.now))
        assert driver.flow(revoke_flow(user, devices[1].handle or "", clock.now))
        assert driver.load(devices[1].store_key or "", clock.now) is None
        assert driver.flow(revoke_all_flow(user, clock.now, keep=devices[0].handle)) == 1
        assert [i.handle for i in driver.flow(list_flow(user, clock.now))] == [devices[0].handle]
        assert driver.flow(revoke_all_flow(user, clock.now)) == 1
        assert driver.flow(list_flow(user, clock.now)) == []

    def test_session_cap_evicts_the_oldest(self, driver: StoreDriver, clock: FakeClock) -> None:
        capped = Engine(
            secret_keys=["conformance-key-" + "x" * 32],
            expiry=ExpiryPolicy(idle_timeout=IDLE, absolute_timeout=ABSOLUTE),
            clock=clock,
            max_sessions_per_user=2,
            **self.engine_options,
        )
        user = f"user-{uuid.uuid4().hex[:8]}"
        sessions = []
        for _ in range(3):
            clock.advance(1)
            sessions.append(driver.flow(login_request(capped, user)))
        listed = {m.handle for _, m in driver.list_user(user, clock.now)}
        assert listed == {sessions[1].handle, sessions[2].handle}
        assert driver.load(sessions[0].store_key or "", clock.now) is None

    # -- the engine on this store ---------------------------------------------------------------

    def test_unknown_id_is_not_adopted(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        planted = ids.new_session_id()
        session, cookie = driver.flow(request(engine, None))  # read-only, no cookie
        assert cookie is None
        session, cookie = driver.flow(request(engine, planted))
        assert session.new
        assert cookie is None
        assert driver.load(ids.store_key(planted), clock.now) is None
        session, cookie = driver.flow(request(engine, planted, a=1))
        issued = cookie_id(cookie)
        assert issued is not None
        assert issued != planted
        assert driver.load(ids.store_key(planted), clock.now) is None
        assert driver.load(ids.store_key(issued), clock.now) is not None

    def test_nested_changes_are_saved(self, driver: StoreDriver, engine: Engine) -> None:
        _, cookie = driver.flow(request(engine, None, cart=[1]))
        sid = cookie_id(cookie)

        def append() -> Flow[None]:
            session = yield from engine.open(Session(), sid)
            session["cart"].append(2)
            yield from engine.commit(session, INFO)

        driver.flow(append())
        session, _ = driver.flow(request(engine, sid))
        assert session["cart"] == [1, 2]

    def test_concurrent_disjoint_writes_all_persist(
        self, driver: StoreDriver, engine: Engine
    ) -> None:
        _, cookie = driver.flow(request(engine, None, base=0))
        sid = cookie_id(cookie)
        opened = driver.concurrently([lambda: engine.open(Session(), sid)] * 20)
        for i, session in enumerate(opened):
            session[f"k{i}"] = i

        def committer(session: Session) -> Any:
            return lambda: engine.commit(session, INFO)

        driver.concurrently([committer(s) for s in opened])
        final, _ = driver.flow(request(engine, sid))
        assert {k: final[k] for k in final if k.startswith("k")} == {f"k{i}": i for i in range(20)}
        assert final["base"] == 0

    def test_same_key_last_writer_wins(self, driver: StoreDriver, engine: Engine) -> None:
        _, cookie = driver.flow(request(engine, None, n=0))
        sid = cookie_id(cookie)
        first = driver.flow(engine.open(Session(), sid))
        second = driver.flow(engine.open(Session(), sid))
        first["n"], second["n"] = 1, 2
        driver.flow(engine.commit(first, INFO))
        driver.flow(engine.commit(second, INFO))
        assert driver.flow(request(engine, sid))[0]["n"] == 2

    def test_destroyed_session_is_not_resurrected(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        _, cookie = driver.flow(request(engine, None, user="alice"))
        sid = cookie_id(cookie)
        assert sid is not None
        in_flight = driver.flow(engine.open(Session(), sid))
        logout = driver.flow(engine.open(Session(), sid))
        logout.destroy()
        driver.flow(engine.commit(logout, INFO))
        in_flight["late"] = "write"
        assert issued(driver.flow(engine.commit(in_flight, INFO))) is None
        assert driver.load(ids.store_key(sid), clock.now) is None

    def test_regenerate_deletes_old_record_and_blocks_stale_writers(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        _, cookie = driver.flow(request(engine, None, a=1))
        old = cookie_id(cookie)
        assert old is not None
        stale = driver.flow(engine.open(Session(), old))
        session = driver.flow(engine.open(Session(), old))
        session.regenerate()
        new = cookie_id(issued(driver.flow(engine.commit(session, INFO))))
        assert new is not None
        assert new != old
        assert driver.load(ids.store_key(old), clock.now) is None
        stale["b"] = 2
        assert issued(driver.flow(engine.commit(stale, INFO))) is None
        assert driver.load(ids.store_key(old), clock.now) is None
        assert driver.flow(request(engine, new))[0] == {"a": 1}

    def test_idle_and_absolute_timeouts(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        _, cookie = driver.flow(request(engine, None, a=1))
        sid = cookie_id(cookie)
        clock.advance(IDLE + 1)
        assert driver.flow(request(engine, sid))[0].new
        _, cookie = driver.flow(request(engine, None, a=1))
        sid = cookie_id(cookie)
        for _ in range(int(ABSOLUTE / (IDLE / 2)) + 1):  # used every idle/2
            clock.advance(IDLE / 2)
            driver.flow(request(engine, sid, seen=clock.now))
        assert driver.flow(request(engine, sid))[0].new

    def test_read_only_refresh_is_throttled(
        self, driver: StoreDriver, engine: Engine, clock: FakeClock
    ) -> None:
        _, cookie = driver.flow(request(engine, None, a=1))
        sid = cookie_id(cookie)
        assert sid is not None
        created = driver.load(ids.store_key(sid), clock.now)
        assert created is not None
        clock.advance(engine.expiry.refresh_after / 2)
        driver.flow(request(engine, sid))
        record = driver.load(ids.store_key(sid), clock.now)
        assert record is not None
        assert record.meta.last_seen == created.meta.last_seen  # no write yet
        clock.advance(engine.expiry.refresh_after)
        driver.flow(request(engine, sid))
        record = driver.load(ids.store_key(sid), clock.now)
        assert record is not None
        assert record.meta.last_seen == clock.now
        assert record.meta.expires_at <= record.meta.absolute_deadline
        assert record.meta.version == created.meta.version  # a refresh is not a data write


from .cookie_conformance import CookieConformance  # noqa: E402  (re-exported; it imports flows)
