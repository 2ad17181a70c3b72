"""A stateful model test (issue 14): Hypothesis drives satchel's real engine through its public
flows -- open, read, write and delete keys, regenerate, destroy, login, two requests
committing at the same time from the same loaded state, clock jumps past the refresh, idle
and absolute deadlines -- and checks every answer, and every record in the store, against a
reference model: a dict of live sessions with their data, user and deadlines.

It runs on the memory store (async path), SQLite (sync path) and Redis (sync path, a
private key prefix on the machine's server).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from satchel import ids
from satchel.auth import login
from satchel.backend import DELETE, LOGGED_OUT, TokenAction
from satchel.codec import decode, encode
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.ops import Flow
from satchel.session import Session
from satchel.stores.base import Store
from satchel.stores.memory import MemoryStore
from satchel.stores.redis import RedisStore
from satchel.stores.sqlite import SQLiteStore
from satchel.testing import FakeClock, StoreDriver
from satchel.testing.flows import INFO

from .conftest import KEY

IDLE, ABSOLUTE = 600.0, 3600.0
REFRESH_AFTER = IDLE / 10
# Clock jumps: within the refresh throttle, just past it, just short of and past the idle
# timeout, and past the absolute one (the short ones more often, so sessions live long
# enough to meet their absolute deadline).
JUMPS = [1.0, 1.0, REFRESH_AFTER - 1, REFRESH_AFTER, REFRESH_AFTER, 300.0, 300.0, 300.0]
JUMPS += [IDLE - 1, IDLE, IDLE + 1, ABSOLUTE + 1]
NAMES = st.sampled_from(["a", "b", "cart", "$t"])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=6),
    st.lists(st.integers(min_value=0, max_value=9), max_size=3),
    st.tuples(st.integers(0, 3), st.text(max_size=2)),
    st.frozensets(st.integers(0, 5), max_size=3),
)
USERS = st.sampled_from(["alice", "bob"])
# How long before a request the client waits (besides the jumps of ``time_passes``).
WAITS = st.sampled_from([0.0, 0.0, 1.0, REFRESH_AFTER - 1, REFRESH_AFTER, 300.0, IDLE + 1])
TIME_TOLERANCE = 0.002  # stores keep times to the millisecond at least


@dataclass
class Live:
    """The model of one live session."""

    data: dict[str, Any]
    user: str | None
    created: float
    last_seen: float
    deadline: float

    def alive(self, now: float) -> bool:
        return now < min(self.last_seen + IDLE, self.deadline)

    def refresh_due(self, now: float) -> bool:
        return now - self.last_seen >= REFRESH_AFTER and self.last_seen < self.deadline


@dataclass
class Visit:
    """What one request saw when it opened the session, and what its commit answered."""

    seen: dict[str, Any]
    new: bool
    user: str | None
    action: TokenAction | None = None
    sessions: list[Session] = field(default_factory=list)


def open_flow(engine: Engine, token: str | None) -> Flow[Session]:
    session_id = engine.read([token])[0] if token else None
    return (yield from engine.open(Session(), session_id))


def commit_flow(engine: Engine, session: Session) -> Flow[TokenAction | None]:
    return (yield from engine.commit(session, INFO))


class EngineModel(RuleBasedStateMachine):
    """Subclassed per store (``make_store``; ``mode`` is the driver's I/O path)."""

    make_store: Callable[[], Store]
    mode = "sync"

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(time.time() + 86_400)
        self.engine = Engine(
            secret_keys=[KEY],
            expiry=ExpiryPolicy(idle_timeout=IDLE, absolute_timeout=ABSOLUTE),
            clock=self.clock,
        )
        self.driver = StoreDriver(type(self).make_store(), self.mode)
        self.model: dict[str, Live] = {}  # live sessions by ID
        self.known: list[str] = []  # every ID ever issued (live or not)
        self.issued: list[str] = []  # their tokens

    def teardown(self) -> None:
        self.driver.close()

    # -- helpers ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def sid(self, token: str | None) -> str | None:
        if token is None:
            return None
        session_id, resign = self.engine.read([token])
        assert not resign
        assert session_id == token.partition(".")[0]
        return session_id

    def live(self, token: str | None) -> Live | None:
        """The model's session for ``token`` as a request opening it now finds it (an
        expired one is deleted on opening: dropped from the model)."""
        sid = self.sid(token)
        found = self.model.get(sid) if sid else None
        if found is not None and not found.alive(self.now):
            del self.model[sid]  # type: ignore[arg-type]
            return None
        return found

    def open(self, token: str | None) -> Visit:
        """Open the session ``token`` names; check what it holds against the model."""
        expected = self.live(token)
        session = self.driver.flow(open_flow(self.engine, token))
        visit = Visit(dict.copy(session), session.new, session.user_id, sessions=[session])
        if expected is None:
            assert visit.new, "a session the model does not hold was opened"
            assert visit.seen == {}
        else:
            assert not visit.new, "a live session was not found"
            assert visit.seen == expected.data
            assert visit.user == expected.user
            if expected.refresh_due(self.now):
                expected.last_seen = self.now
        return visit

    def commit(self, session: Session) -> TokenAction | None:
        return self.driver.flow(commit_flow(self.engine, session))

    def adopt(self, action: TokenAction | None, live: Live) -> str:
        """A commit that must have issued a new session's token: file ``live`` under it."""
        assert action is not None
        assert action.token is not None
        sid = self.sid(action.token)
        assert sid is not None
        assert sid not in self.known, "a session ID was issued twice"
        self.model[sid] = live
        self.known.append(sid)
        self.issued.append(action.token)
        return action.token

    def fresh(self, data: dict[str, Any], user: str | None = None) -> Live:
        now = self.now
        deadline = now + ABSOLUTE
        if user is not None:  # a login restarts the absolute timeout: the engine's own sum
            deadline = now + (deadline - now)
        return Live(data, user, now, now, deadline)

    # -- rules ------------------------------------------------------------------------------

    @initialize(target=tokens, name=NAMES, value=VALUES)
    def first(self, name: str, value: Any) -> Any:
        return self.write_new(name, value)

    @rule(target=tokens, name=NAMES, value=VALUES)
    def write_new(self, name: str, value: Any) -> str:
        """A request without a cookie that stores something."""
        visit = self.open(None)
        visit.sessions[0][name] = value
        return self.adopt(self.commit(visit.sessions[0]), self.fresh({name: value}))

    @rule(token=tokens, wait=WAITS)
    def read(self, token: str, wait: float = 0.0) -> None:
        self.clock.advance(wait)
        visit = self.open(token)
        assert self.commit(visit.sessions[0]) is None

    @rule(token=tokens, name=NAMES, value=VALUES, wait=WAITS)
    def write(self, token: str, name: str, value: Any, wait: float = 0.0) -> None:
        self.clock.advance(wait)
        expected = self.live(token)
        visit = self.open(token)
        session = visit.sessions[0]
        session[name] = value
        action = self.commit(session)
        if expected is None:  # a dead session: the write starts a new one
            self.adopt(action, self.fresh({name: value}))
            return
        assert action is None
        if _changes(expected.data, name, value):
            expected.data[name] = value
            expected.last_seen = self.now

    @rule(token=tokens, name=NAMES, wait=WAITS)
    def delete_key(self, token: str, name: str, wait: float = 0.0) -> None:
        self.clock.advance(wait)
        expected = self.live(token)
        visit = self.open(token)
        visit.sessions[0].pop(name, None)
        assert self.commit(visit.sessions[0]) is None
        if expected is not None and name in expected.data:
            del expected.data[name]
            expected.last_seen = self.now

    @rule(data=st.data())
    def replay_a_dead_token(self, data: st.DataObject) -> None:
        """A token of a session that ended (destroyed, regenerated, logged in again,
        expired) comes back: it opens nothing, and a write through it starts a new session."""
        dead = [token for token in self.issued if self.live(token) is None]
        if dead:
            token = data.draw(st.sampled_from(dead))
            if data.draw(st.booleans()):
                self.read(token)
            else:
                self.write(token, "a", 1)

    @rule(target=tokens, token=consumes(tokens), wait=WAITS)
    def regenerate(self, token: str, wait: float = 0.0) -> Any:
        self.clock.advance(wait)
        expected = self.live(token)
        visit = self.open(token)
        visit.sessions[0].regenerate()
        action = self.commit(visit.sessions[0])
        if expected is None:  # nothing to regenerate, nothing stored
            assert action is None
            return multiple()
        del self.model[self.sid(token)]  # type: ignore[arg-type]
        expected.last_seen = self.now
        return self.adopt(action, expected)

    @rule(token=consumes(tokens), wait=WAITS)
    def destroy(self, token: str, wait: float = 0.0) -> None:
        self.clock.advance(wait)
        expected = self.live(token)
        visit = self.open(token)
        visit.sessions[0].destroy()
        action = self.commit(visit.sessions[0])
        if expected is None:
            assert action is None
            return
        assert action == (DELETE if expected.user is None else LOGGED_OUT)  # (Clear-Site-Data)
        del self.model[self.sid(token)]  # type: ignore[arg-type]

    @rule(target=tokens, token=consumes(tokens), user=USERS, wait=WAITS)
    def log_in(self, token: str, user: str, wait: float = 0.0) -> str:
        self.clock.advance(wait)
        expected = self.live(token)
        visit = self.open(token)
        login(visit.sessions[0], user)
        action = self.commit(visit.sessions[0])
        if expected is None:
            return self.adopt(action, self.fresh({}, user))
        del self.model[self.sid(token)]  # type: ignore[arg-type]
        if expected.user is not None and expected.user != user:  # another user: from empty
            return self.adopt(action, self.fresh({}, user))
        now = self.now
        deadline = now + (expected.deadline - expected.created)
        return self.adopt(action, Live(expected.data, user, now, now, deadline))

    @rule(token=tokens, first=NAMES, second=NAMES, v1=VALUES, v2=VALUES, wait=WAITS)
    def concurrent_writes(
        self, token: str, first: str, second: str, v1: Any, v2: Any, wait: float = 0.0
    ) -> None:
        """Two requests open the session from the same state and commit at the same time,
        each writing its own key: both writes are kept."""
        self.clock.advance(wait)
        if first == second:
            second = first + "2"
        expected = self.live(token)
        one, two = self.open(token).sessions[0], self.open(token).sessions[0]
        one[first], two[second] = v1, v2
        actions = self.driver.concurrently(
            [lambda: commit_flow(self.engine, one), lambda: commit_flow(self.engine, two)]
        )
        if expected is None:  # each starts a session of its own
            self.adopt(actions[0], self.fresh({first: v1}))
            self.adopt(actions[1], self.fresh({second: v2}))
            return
        assert actions == [None, None]
        changed = False
        for name, value in ((first, v1), (second, v2)):
            if _changes(expected.data, name, value):
                expected.data[name], changed = value, True
        if changed:
            expected.last_seen = self.now

    @rule(
        target=tokens,
        token=consumes(tokens),
        name=NAMES,
        value=VALUES,
        other=st.booleans(),
        wait=WAITS,
    )
    def write_races_a_logout_or_regeneration(
        self, token: str, name: str, value: Any, other: bool, wait: float = 0.0
    ) -> Any:
        """A write commits at the same time as a destroy (``other`` False) or a
        regeneration of the same session: whichever lands first, the write never
        resurrects the session nor reaches the regenerated one."""
        self.clock.advance(wait)
        expected = self.live(token)
        writer, rival = self.open(token).sessions[0], self.open(token).sessions[0]
        writer[name] = value
        if other:
            rival.regenerate()
        else:
            rival.destroy()
        actions = self.driver.concurrently(
            [lambda: commit_flow(self.engine, writer), lambda: commit_flow(self.engine, rival)]
        )
        if expected is None:
            assert actions[1] is None
            return self.adopt(actions[0], self.fresh({name: value}))
        del self.model[self.sid(token)]  # type: ignore[arg-type]
        assert actions[0] is None or actions[0].token is None  # dropped, or landed first
        if not other:
            assert actions[1] == (DELETE if expected.user is None else LOGGED_OUT)
            return multiple()
        expected.last_seen = self.now
        return self.adopt(actions[1], expected)

    @rule(seconds=st.sampled_from(JUMPS))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- what must hold after every step ----------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        """Every ID ever issued loads from the store exactly when the model holds it live,
        with the model's data, user and deadlines."""
        now = self.now
        for sid in self.known:
            expected = self.model.get(sid)
            if expected is not None and not expected.alive(now):
                expected = None
            record = self.driver.load(ids.store_key(sid), now)
            if expected is None:
                assert record is None, "the store holds a session the model does not"
                continue
            assert record is not None, "a live session is missing from the store"
            assert {k: decode(v) for k, v in record.data.items()} == expected.data
            meta = record.meta
            assert meta.user_id == expected.user
            assert abs(meta.created - expected.created) <= TIME_TOLERANCE
            assert abs(meta.last_seen - expected.last_seen) <= TIME_TOLERANCE
            assert abs(meta.absolute_deadline - expected.deadline) <= TIME_TOLERANCE


def _changes(data: dict[str, Any], name: str, value: Any) -> bool:
    """Whether writing ``value`` under ``name`` changes what is stored (the engine compares
    encodings: ``True`` replaces ``1``)."""
    return name not in data or encode(data[name]) != encode(value)


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_memory_store_matches_the_model() -> None:
    class Machine(EngineModel):
        make_store = MemoryStore
        mode = "async"

    run_state_machine_as_test(Machine, settings=MODEL_SETTINGS)


def test_sqlite_store_matches_the_model(tmp_path: Path) -> None:
    def make() -> Store:
        return SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.db")

    class Machine(EngineModel):
        make_store = make

    run_state_machine_as_test(Machine, settings=MODEL_SETTINGS)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[tuple[str, str]]:
    prefix = f"satchel-model-{uuid.uuid4().hex[:8]}:"
    yield redis_url, prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=10_000):
        client.delete(key)
    client.close()


def test_redis_store_matches_the_model(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix

    def make() -> Store:
        return RedisStore(url, prefix=prefix)

    class Machine(EngineModel):
        make_store = make

    run_state_machine_as_test(Machine, settings=MODEL_SETTINGS)
