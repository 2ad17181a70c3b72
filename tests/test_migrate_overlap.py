"""``satchel sessions migrate`` after a rollout overlap, on the real stores: the device
binding a catch-up keeps, and the numbers it writes.

The sequence is the documented no-downtime procedure (docs/migrating-stores.md): the
rollout of step 2 runs workers on the old store alone next to workers on the read-through
store for a moment (one graceful reload), and is over before step 3's ``migrate`` runs.
During that moment one user's requests land on both kinds of worker: the read-through
worker copies the session into the new store on first use and writes it there; the old
worker writes the old store. Each store's version counts its own writes, so the one
written more often wins step 3's comparison; whichever wins, the device binding kept is
the stronger (registered on either side, the later challenge answered, a requirement
kept), and the short switch run twice brings a refresh made on the old store over."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from satchel.dbsc.proof import thumbprint
from satchel.dbsc.state import DeviceState
from satchel.migration import Migration
from satchel.record import Change, Record, is_binding
from satchel.stores import MemoryStore, Store, store_from_url
from satchel.stores.readthrough import ReadThroughStore
from satchel.testing import FakeClock
from satchel.testing.flows import make_meta, new_key

from .dbsc_device import challenge_of
from .test_migrate import Urls, urls  # noqa: F401 - the fixture, used by name
from .test_migrate_catch_up import TARGETS as STORES
from .test_migrate_catch_up import _run, _write, target_of  # noqa: F401

TARGETS = (*STORES, "cluster")

JWK = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}


def _overlap(
    kind: str,
    target_of: Callable[[str], Store],  # noqa: F811
    **written_in_the_target: object,
) -> tuple[MemoryStore, Store, str, FakeClock]:
    """Alice logs in on an old worker (the old store: version 1). Her next request lands on
    a read-through worker, which copies the session into the new store (version 1) and
    writes ``written_in_the_target`` there (version 2). Two more of her requests land on
    old workers, which write the old store (version 3). The rollout ends; nothing else."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    meta = make_meta(clock.now, user_id="alice")
    source.create_indexed(key, Record({"n": "0", "sudo": "1"}, meta), "alice")
    clock.advance(1)
    app = ReadThroughStore(target, source)
    assert app.load(key, clock.now) is not None  # copied on first use
    set_ = written_in_the_target.pop("set_", None)
    delete = written_in_the_target.pop("delete", frozenset())
    _write(app, key, clock.now, set_, delete, **written_in_the_target)  # type: ignore[arg-type]
    for n in (1, 2):
        clock.advance(1)
        _write(source, key, clock.now, {"n": str(n)})
    clock.advance(60)
    return source, target, key, clock


@pytest.mark.parametrize("kind", TARGETS)
def test_a_device_binding_registered_in_the_target_survives_step_3(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """The request on the read-through worker is the browser's DBSC registration, made
    right after the login (within ``dbsc_grace``): the new store's record is bound to the
    device key. Step 3's run finds the copy (version 2) older than the source (3), and
    ``_catching_up`` reads "bound in the copy, unbound in the source" as a start-over in
    the source: it sends ``clear``, the one change every store lets drop a binding. The
    session is now unbound, past the grace period (it can never bind again: "too_late"),
    and a copy of its cookie works from any machine, which is what the binding was for.
    On 0510a50 the same catch-up was an update without ``clear``, and every store kept the
    stored binding (``Change.unbinds``)."""
    bound = DeviceState(JWK, "thumb", answered_ms=100, bound_ms=100).encode()
    source, target, key, clock = _overlap(kind, target_of, device=bound)
    assert _run(source, target, clock).updated == 1
    copy = target.load(key, clock.now)
    assert copy is not None
    assert copy.meta.user_id == "alice"
    assert is_binding(copy.meta.device), "the device binding was dropped"
    assert DeviceState.decode(copy.meta.device).jwk == JWK


@pytest.mark.parametrize("kind", TARGETS)
def test_a_required_binding_set_in_the_target_survives_step_3(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """The request on the read-through worker calls ``require_device_binding`` (a
    privileged user: unless the session binds within ``dbsc_grace`` of its login, its
    requests are refused), which writes ``{"q":1}``. Step 3's catch-up writes the
    source's metadata, device field included (None): the requirement is gone, and a
    browser that never binds (or a copy of the cookie on another machine) is let through
    after the grace period."""
    required = DeviceState(required=True).encode()
    source, target, key, clock = _overlap(kind, target_of, device=required)
    assert _run(source, target, clock).updated == 1
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).required, "the binding requirement was dropped"


@pytest.mark.parametrize("kind", TARGETS)
def test_a_device_binding_refreshed_in_the_source_is_brought_over(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """No overlap needed: the short switch, run again before the switch (the app still on
    the old store). Run 1 copies a session bound to its device (``answered_ms`` 100). The
    browser refreshes its bound cookie on the app, still on the old store: it answers the
    challenge issued at 200 ms, which the replay guard (dbsc/protocol.py ``issued <=
    state.answered_ms``) never accepts again there. Run 2 brings the change over but keeps
    "the target's device binding": the copy's, 100. After the switch, a captured proof for
    any challenge issued in (100, 200] ms is accepted again (a replay), the same hole as
    the refresh in the target that 6073832 fixed, from the other side. 0510a50 wrote the
    source's binding here."""
    bound = DeviceState(JWK, "thumb", answered_ms=100, bound_ms=50).encode()
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    meta = make_meta(clock.now, user_id="alice", device=bound)
    source.create_indexed(key, Record({"n": "0"}, meta), "alice")
    assert _run(source, target, clock).copied == 1
    clock.advance(1)
    refreshed = DeviceState(JWK, "thumb", answered_ms=200, bound_ms=50).encode()
    _write(source, key, clock.now, device=refreshed)
    clock.advance(1)
    assert _run(source, target, clock).updated == 1
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).answered_ms == 200, "the replay guard moved back"


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_a_high_version_floor_keeps_the_redis_record_readable(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """Low (needs a source record at version 10**14 or more: a store edited by hand, or
    another tool's counter). The full write (no base: any write that cannot take the fast
    path) raises the version in Lua, ``math.max(v + 1, tonumber(floor))``, and stores
    ``tostring`` of a Lua number: ``%.14g``, "1e+14". The hash then fails ``int()`` on
    every read: a corrupt record, deleted by the next request (logged out). The fast path
    sends the same version as Python's exact text, so the two paths disagree."""
    clock = FakeClock(time.time())
    target = target_of(kind)
    key = new_key()
    meta = make_meta(clock.now)
    target.create(key, Record({"n": "0"}, meta))
    floor = 10**14
    assert target.update(key, Change(meta._replace(version=floor), {"n": "1"}), clock.now) == floor
    record = target.load(key, clock.now)
    assert record is not None
    assert record.meta.version == floor


# -- the replay, through the DBSC endpoints ---------------------------------------------------


def test_a_refresh_proof_answered_on_the_old_store_is_refused_after_the_switch(
    urls: Urls,  # noqa: F811
) -> None:
    """End to end: the short switch, SQLite to Redis, through the WSGI middleware and the
    DBSC endpoints. Alice logs in and binds her device; ``migrate``; she refreshes her
    bound cookie on the app, still on SQLite (the proof for challenge C is accepted, and
    C can never be answered again there); ``migrate`` again (brought up to date); the app
    moves to Redis. The same proof for C, sent again (a captured refresh request), must be
    asked for a new challenge (403); it gets a fresh bound cookie (200)."""
    from .test_dbsc_http import REFRESH, World

    source_url, target_url = urls("sqlite"), urls("redis")
    old = World("wsgi", source_url)
    new = World("wsgi", target_url)
    try:
        old.login_and_bind()
        key_id = thumbprint(old.device.jwk)
        source, target = store_from_url(source_url), store_from_url(target_url)
        try:
            assert Migration(source, target, clock=old.clock, workers=1).run().copied == 1
            old.clock.advance(1)
            headers = {"sec-secure-session-id": key_id}
            first = old.http.post(REFRESH, headers=headers)
            assert first.status_code == 403
            challenge, _ = challenge_of(first.headers["secure-session-challenge"])
            proof = {**headers, "secure-session-response": old.device.proof(challenge)}
            assert old.http.post(REFRESH, headers=proof).status_code == 200
            assert old.http.post(REFRESH, headers=proof).status_code == 403  # (the guard)
            old.clock.advance(1)
            assert Migration(source, target, clock=old.clock, workers=1).run().updated == 1
        finally:
            source.close()
            target.close()
        new.clock.now = old.clock.now  # the switch: the same browser, on the new store
        new.http.cookies.update(old.http.cookies)
        replayed = new.http.post(REFRESH, headers=proof)
        assert replayed.status_code == 403, "a refresh proof was accepted twice"
    finally:
        old.close()
        new.close()
