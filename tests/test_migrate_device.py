"""``satchel sessions migrate`` keeps the stronger device binding of the two stores
whichever record wins, on the real stores: a binding registered, refreshed or required on
the old store during a rollout's overlap is brought over even when the new store's
record is the newer; of two different keys the one registered first stays; a damaged copy
in the target is replaced, not a reason to stop the run.

The sequences are the documented no-downtime procedure's (docs/migrating-stores.md): the
rollout of step 2 runs workers on the old store alone next to read-through workers for a
moment, then step 3's ``migrate`` runs while every worker is on the read-through store."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from satchel.dbsc.state import DeviceState
from satchel.record import Record, is_binding
from satchel.stores import MemoryStore, Store
from satchel.stores.readthrough import ReadThroughStore
from satchel.testing import FakeClock
from satchel.testing.flows import make_meta, new_key

from .test_migrate import Urls, urls  # noqa: F401 - the fixture, used by name
from .test_migrate_catch_up import TARGETS as STORES
from .test_migrate_catch_up import _run, _write, target_of  # noqa: F401

TARGETS = (*STORES, "cluster")

JWK = {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}


def _overlap(
    kind: str,
    target_of: Callable[[str], Store],  # noqa: F811
    target_writes: int,
    source_device: str,
    target_device: str | None = None,
) -> tuple[MemoryStore, Store, str, FakeClock]:
    """Alice logs in on an old worker (the old store, version 1). A request of hers on a
    read-through worker copies the session into the new store and writes it there
    ``target_writes`` times (the first one, with ``target_device``, her DBSC
    registration when given). Her browser's DBSC request lands on an old worker, which
    writes ``source_device`` in the old store (version 2). The rollout ends."""
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    meta = make_meta(clock.now, user_id="alice", device=target_device)
    source.create_indexed(key, Record({"n": "0"}, meta), "alice")
    clock.advance(1)
    app = ReadThroughStore(target, source)
    assert app.load(key, clock.now) is not None  # copied on first use
    for n in range(target_writes):
        clock.advance(1)
        _write(app, key, clock.now, {"page": str(n)})
    clock.advance(1)
    _write(source, key, clock.now, device=source_device)
    clock.advance(60)
    return source, target, key, clock


# -- the new store's record wins (as many writes or more): the old store's binding comes over --


@pytest.mark.parametrize("target_writes", [1, 2])
@pytest.mark.parametrize("kind", TARGETS)
def test_a_binding_registered_on_the_old_store_survives_when_the_new_store_wins(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
    target_writes: int,
) -> None:
    """Alice's login redirect lands on a read-through worker (the new store's record is
    written: version 2, or 3), her browser's DBSC registration on an old worker (the old
    store's record bound to her key, version 2). Step 3 keeps the new store's record as
    the newer one, and brings the binding over: without it a copy of her cookie would
    work from any machine (past ``dbsc_grace`` the session could never bind again)."""
    bound = DeviceState(JWK, "thumb", answered_ms=100, bound_ms=100).encode()
    source, target, key, clock = _overlap(kind, target_of, target_writes, bound)
    _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert is_binding(copy.meta.device), "the binding registered on the old store was dropped"


@pytest.mark.parametrize("target_writes", [1, 2])
@pytest.mark.parametrize("kind", TARGETS)
def test_a_refresh_answered_on_the_old_store_is_kept_when_the_new_store_wins(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
    target_writes: int,
) -> None:
    """The session was bound before the rollout (``answered_ms`` 100, copied so). During the
    overlap her browser refreshes its bound cookie on an old worker (the challenge issued
    at 200 answered there) while her pages land on read-through workers. Step 3 keeps the
    new store's record and takes the old store's later replay guard: a captured proof for
    the challenge issued at 200 is never accepted again."""
    before = DeviceState(JWK, "thumb", answered_ms=100, bound_ms=50).encode()
    after = DeviceState(JWK, "thumb", answered_ms=200, bound_ms=50).encode()
    source, target, key, clock = _overlap(kind, target_of, target_writes, after, before)
    _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).answered_ms == 200, "the replay guard moved back"


@pytest.mark.parametrize("kind", TARGETS)
def test_a_requirement_set_on_the_old_store_survives_when_the_new_store_wins(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """``require_device_binding`` runs for her (a privileged user) on an old worker, her other
    requests on read-through workers, more of them: the requirement is brought over to the
    new store's record, so past the grace period an unbound session is still refused."""
    required = DeviceState(required=True).encode()
    source, target, key, clock = _overlap(kind, target_of, 2, required)
    _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).required, "the binding requirement was dropped"


# -- end to end: the DBSC endpoints through the WSGI middleware ----------------------------------


def test_a_cookie_copied_after_step_3_works_without_the_device_end_to_end(
    urls: Urls,  # noqa: F811
) -> None:
    """SQLite to Redis, the no-downtime procedure, through the WSGI middleware and the real
    DBSC endpoints. Alice logs in on an old worker (the login response offers a binding);
    the page it redirects to is served by a read-through worker (the session copied into
    Redis and written there); her browser's registration lands on an old worker. After
    step 3 a thief holding a copy of her session cookie (never the bound cookie: it
    lacks her device's key) is refused on the new store (401), as on the old one."""
    from urllib.parse import quote

    from satchel.stores import store_from_url

    from .dbsc_device import registration_offer
    from .test_dbsc_http import JSON_ACCEPT, REGISTER, World

    source_url, target_url = urls("sqlite"), urls("redis")
    readthrough = f"readthrough+{target_url}&from={quote(source_url, safe='')}"
    clock = FakeClock(time.time())
    old = World("wsgi", source_url, clock=clock)
    new = World("wsgi", readthrough, clock=clock)
    try:
        login = old.http.get("/login", params={"user": "alice"})
        assert login.status_code == 200
        path, challenge = registration_offer(login.headers["secure-session-registration"])
        clock.advance(1)
        new.http.cookies.update(old.http.cookies)
        assert new.http.get("/put", headers=JSON_ACCEPT).json()["user"] == "alice"
        clock.advance(1)
        proof = old.device.proof(challenge, with_jwk=True)
        assert (
            old.http.post(REGISTER, headers={"secure-session-response": proof}).status_code == 200
        )
        assert path == REGISTER
        clock.advance(60)  # the rollout is over (and the binding's settle window)
        source, target = store_from_url(source_url), store_from_url(target_url)
        try:
            report = _run(source, target, clock)
        finally:
            source.close()
            target.close()
        assert report.missing == 0
        thief = {k: v for k, v in old.http.cookies.items() if "bound" not in k}
        assert thief, "the session cookie"
        header = "; ".join(f"{k}={v}" for k, v in thief.items()).encode()
        old.http.cookies.clear()
        assert old.me(header).status_code == 401  # the old store: refused, as it should be
        new.http.cookies.clear()
        stolen = new.me(header)
        assert stolen.status_code == 401, f"a copy of the cookie alone was let in: {stolen.json()}"
    finally:
        old.close()
        new.close()


# -- two keys: the first registration stays ---------------------------------------------------


@pytest.mark.parametrize("kind", TARGETS)
def test_the_first_registration_wins_over_a_later_one_on_the_other_store(
    target_of: Callable[[str], Store],  # noqa: F811
    kind: str,
) -> None:
    """On one store the first registration wins: a second finds the session bound
    ("already_bound", dbsc/protocol.py). A thief holding a copy of Alice's session cookie
    from before her browser bound it registers a key of his own within ``dbsc_grace``;
    during the overlap her registration lands on an old worker (bound_ms 1000), his on a
    read-through worker (bound_ms 2000, accepted there: that record was unbound). Step 3
    keeps hers, the first (``bound_ms``), as one store would have."""
    hers = {"kty": "EC", "crv": "P-256", "x": "her", "y": "her"}
    his = {"kty": "EC", "crv": "P-256", "x": "his", "y": "his"}
    clock = FakeClock(time.time())
    source, target = MemoryStore(), target_of(kind)
    key = new_key()
    source.create_indexed(key, Record({"n": "0"}, make_meta(clock.now, user_id="alice")), "alice")
    app = ReadThroughStore(target, source)
    assert app.load(key, clock.now) is not None  # copied on first use (her redirect target)
    clock.advance(1)
    _write(source, key, clock.now, device=DeviceState(hers, "her", 1000, 1000).encode())
    clock.advance(1)
    _write(app, key, clock.now, device=DeviceState(his, "his", 2000, 2000).encode())
    for n in (1, 2):
        clock.advance(1)
        _write(source, key, clock.now, {"n": str(n)})
    clock.advance(60)
    _run(source, target, clock)
    copy = target.load(key, clock.now)
    assert copy is not None
    assert DeviceState.decode(copy.meta.device).jwk == hers


# -- a damaged copy in the target ------------------------------------------------------------


def test_a_damaged_copy_in_the_target_does_not_abort_the_run(urls: Urls) -> None:  # noqa: F811
    """As every other reader does with a record that does not decode (the engine deletes
    it; listings and exports leave it out), a run that finds the target's copy damaged
    (edited by hand, a store bug) replaces it by the source's record and goes on; before,
    ``CorruptRecord`` stopped the run at that record, every time (records go in key
    order), and the final check never ran."""
    import sqlite3

    from satchel.stores import store_from_url

    clock = FakeClock(time.time())
    target_url = urls("sqlite")
    source, target = MemoryStore(), store_from_url(target_url)
    try:
        keys = [new_key() for _ in range(3)]
        for key in keys:
            source.create(key, Record({"n": "0"}, make_meta(clock.now)))
        assert _run(source, target, clock).copied == 3
        clock.advance(1)
        _write(source, keys[1], clock.now, {"n": "1"})
        with sqlite3.connect(target_url.removeprefix("sqlite:///")) as db:
            db.execute(
                "UPDATE satchel_sessions SET meta = json_set(meta, '$.persistent', 'yes') "
                "WHERE key = ?",
                (keys[1],),
            )
        clock.advance(1)
        report = _run(source, target, clock)
        assert report.missing == 0
        copy = target.load(keys[1], clock.now)
        assert copy is not None
        assert dict(copy.data) == {"n": "1"}
    finally:
        target.close()
