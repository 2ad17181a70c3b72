"""The conformance suite for cookie sessions: the parts of the store contract that apply
when the browser holds the session, with revocation markers in a server-side store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ..cookie import CookieBackend
from ..cookies import CookieOptions
from ..expiry import ExpiryPolicy
from ..ops import Flow
from ..session import Session
from ..stores.base import Store
from .clock import FakeClock
from .drivers import StoreDriver
from .flows import ABSOLUTE, IDLE, INFO, DriverSuite, issued


def cookie_request(
    engine: CookieBackend, cookie: str | None, user: str | None = None, **writes: Any
) -> Flow[tuple[Session, str | None]]:
    """One request on the cookie store: the browser sends ``cookie`` (a value, or None),
    the app writes ``writes`` (and logs ``user`` in); returns the session and the new
    cookie value, if the response sets one."""
    from ..auth import login

    payload, resign = engine.read([cookie] if cookie else [])
    session = yield from engine.open(Session(), payload, resign)
    if user is not None:
        login(session, user)
    session.update(writes)
    return session, issued((yield from engine.commit(session, INFO)))


class CookieConformance(DriverSuite):
    """The parts of the store contract that apply to cookie sessions, with revocation
    markers kept in the store ``make_revocation_store`` returns. What cannot apply: no
    server-side record to list, and no per-key merge of concurrent writes (the last
    cookie the browser keeps wins), so those tests are not here."""

    def make_revocation_store(self) -> Store:
        raise NotImplementedError

    def _store(self) -> Store:
        return self.make_revocation_store()

    @pytest.fixture
    def engine(self, driver: StoreDriver, clock: FakeClock) -> CookieBackend:
        return CookieBackend(
            secret_keys=["conformance-key-" + "x" * 32],
            cookie=CookieOptions(),
            expiry=ExpiryPolicy(idle_timeout=IDLE, absolute_timeout=ABSOLUTE),
            revocation_store=driver.store,
            clock=clock,
        )

    def test_data_round_trips_and_nested_changes_are_saved(
        self, driver: StoreDriver, engine: CookieBackend
    ) -> None:
        _, cookie = driver.flow(cookie_request(engine, None, cart=[1], n=1))
        assert cookie is not None

        def append() -> Flow[str | None]:
            payload, _ = engine.read([cookie] if cookie else [])
            session = yield from engine.open(Session(), payload)
            session["cart"].append(2)
            return issued((yield from engine.commit(session, INFO)))

        cookie = driver.flow(append())
        session, _ = driver.flow(cookie_request(engine, cookie))
        assert dict(session) == {"cart": [1, 2], "n": 1}

    def test_read_only_request_sets_no_cookie(
        self, driver: StoreDriver, engine: CookieBackend
    ) -> None:
        _, cookie = driver.flow(cookie_request(engine, None, a=1))
        session, again = driver.flow(cookie_request(engine, cookie))
        assert session["a"] == 1
        assert again is None

    def test_tampered_cookie_gives_a_fresh_session(
        self, driver: StoreDriver, engine: CookieBackend
    ) -> None:
        _, cookie = driver.flow(cookie_request(engine, None, a=1))
        assert cookie is not None
        flipped = cookie[:-3] + ("A" if cookie[-3] != "A" else "B") + cookie[-2:]
        session, _ = driver.flow(cookie_request(engine, flipped))
        assert session.new
        assert dict(session) == {}

    def test_idle_and_absolute_timeouts(
        self, driver: StoreDriver, engine: CookieBackend, clock: FakeClock
    ) -> None:
        _, cookie = driver.flow(cookie_request(engine, None, a=1))
        clock.advance(IDLE + 1)
        assert driver.flow(cookie_request(engine, cookie))[0].new
        _, cookie = driver.flow(cookie_request(engine, None, a=1))
        for _ in range(int(ABSOLUTE / (IDLE / 2)) - 1):  # used every idle/2: stays alive
            clock.advance(IDLE / 2)
            session, refreshed = driver.flow(cookie_request(engine, cookie, seen=clock.now))
            assert session["a"] == 1
            cookie = refreshed or cookie
        clock.advance(IDLE / 2)
        assert driver.flow(cookie_request(engine, cookie))[0].new

    def test_logout_and_logout_everywhere_kill_replayed_cookies(
        self, driver: StoreDriver, engine: CookieBackend, clock: FakeClock
    ) -> None:
        from ..cookie.revocation import revoke_all

        user = f"user-{uuid.uuid4().hex[:8]}"
        _, phone = driver.flow(cookie_request(engine, None, user=user))
        _, laptop = driver.flow(cookie_request(engine, None, user=user))
        assert driver.flow(cookie_request(engine, phone))[0].user_id == user

        def logout(cookie: str | None) -> Flow[None]:
            payload, _ = engine.read([cookie] if cookie else [])
            session = yield from engine.open(Session(), payload)
            session.destroy()
            yield from engine.commit(session, INFO)

        driver.flow(logout(phone))
        assert driver.flow(cookie_request(engine, phone))[0].user_id is None
        assert driver.flow(cookie_request(engine, laptop))[0].user_id == user
        clock.advance(1)
        driver.flow(revoke_all(user, clock.now))
        assert driver.flow(cookie_request(engine, laptop))[0].user_id is None
        clock.advance(1)
        _, fresh = driver.flow(cookie_request(engine, None, user=user))
        assert driver.flow(cookie_request(engine, fresh))[0].user_id == user

    def test_missing_marker_fails_closed(self, driver: StoreDriver, engine: CookieBackend) -> None:
        from ..cookie.revocation import marker_key

        user = f"user-{uuid.uuid4().hex[:8]}"
        _, cookie = driver.flow(cookie_request(engine, None, user=user))
        assert driver.delete(marker_key(user))
        assert driver.flow(cookie_request(engine, cookie))[0].user_id is None
