"""What the conformance suites share: the request flows they drive through satchel's real
core, and the base that runs every test on a store's sync and async paths."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .. import ids
from ..backend import DeviceInfo, TokenAction
from ..engine import Engine
from ..expiry import ExpiryPolicy
from ..ops import Flow
from ..record import Meta
from ..session import Session
from ..stores.base import Store
from .clock import FakeClock
from .drivers import StoreDriver

IDLE = 600.0
ABSOLUTE = 3600.0
INFO = DeviceInfo(user_agent="conformance", client_ip="127.0.0.1")


def make_meta(now: float, **changes: Any) -> Meta:
    meta = ExpiryPolicy(idle_timeout=IDLE, absolute_timeout=ABSOLUTE).new_meta(
        ids.new_handle(), now, user_agent="ua", client_ip="127.0.0.1"
    )
    return meta.with_changes(**changes)


def new_key() -> str:
    return ids.store_key(ids.new_session_id())


def request(
    engine: Engine, session_id: str | None, **writes: Any
) -> Flow[tuple[Session, str | None]]:
    """One request: open the session ``session_id`` names, write ``writes``, commit.
    Returns the session and the token the response would carry, if it sets one."""
    session = yield from engine.open(Session(), session_id)
    session.update(writes)
    return session, issued((yield from engine.commit(session, INFO)))


def issued(action: TokenAction | None) -> str | None:
    """The token a commit's answer sets, if any."""
    return None if action is None else action.token


def login_request(engine: Engine, user: str) -> Flow[Session]:
    """A request that logs ``user`` in on a fresh session."""
    from ..auth import login

    session = yield from engine.open(Session(), None)
    login(session, user)
    yield from engine.commit(session, INFO)
    return session


def cookie_id(token: str | None) -> str | None:
    """The session ID inside a signed token (signature stripped)."""
    if token is None:
        return None
    return token.partition(".")[0] or None


class DriverSuite:
    """What both suites share: every test runs on the sync and the async path of the
    store ``_store()`` makes, against a settable clock."""

    def _store(self) -> Store:
        raise NotImplementedError

    @pytest.fixture(params=["sync", "async"])
    def driver(self, request: pytest.FixtureRequest) -> Iterator[StoreDriver]:
        driver = StoreDriver(self._store(), request.param)
        try:
            yield driver
        finally:
            driver.close()

    @pytest.fixture
    def clock(self) -> FakeClock:
        # a day ahead of real time: stores that expire by absolute time (Redis TTLs) keep
        # every record the test makes, whatever today's date
        return FakeClock(time.time() + 86_400)
