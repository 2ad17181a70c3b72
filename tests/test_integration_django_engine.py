"""Django on satchel's engine: what the ASGI and WSGI paths enforce, Django gets too, on
SQLite and Redis: encryption at rest, the per-user cap, events, idle and absolute timeouts,
Django's expiry (``set_expiry``, ``SESSION_COOKIE_AGE``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE``,
"remember me") enforced on the server, per-key commits, strict loading, no resurrection,
and the per-user index behind ``satchel.user_sessions.UserSessions``.

Time is satchel's ``clock`` option (``SATCHEL["clock"]``), a :class:`FakeClock`. Django's
settings are process-wide: this module reuses the example app (see
tests/test_integration_django_outage.py) and overrides ``SATCHEL`` per test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from satchel import ids
from satchel.errors import ConfigurationError
from satchel.events import SessionEvent
from satchel.stores.base import Store
from satchel.testing import FakeClock
from satchel.user_sessions import UserSessions

from .conftest import KEY
from .test_integration_django_outage import django_app

__all__ = ["django_app"]  # the fixture, shared with the outage tests

DAY = 24 * 3600
OTHER_KEY = "another-key-0123456789-0123456789-012345"
Configure = Callable[..., Store]


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.db"
    redis_url = request.getfixturevalue("redis_url")
    return f"{redis_url}?prefix=satchel-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def configure(django_app: ModuleType, store_url: str, clock: FakeClock) -> Iterator[Configure]:
    """``configure(satchel_options, **django_settings)``: the session engine on the test's
    store and clock with those settings; returns the store."""
    from django.contrib.auth.models import User
    from django.test import override_settings

    from satchel.integrations.django import runtime

    for name in ("dora", "eve"):
        if not User.objects.filter(username=name).exists():
            User.objects.create_user(name, password="secret")
    stack, made = ExitStack(), []

    def configure(satchel: dict[str, Any] | None = None, **django: Any) -> Store:
        runtime.cache_clear()
        config = {"store": store_url, "clock": clock, **(satchel or {})}
        stack.enter_context(override_settings(SATCHEL=config, **django))
        made.append(runtime()[0])
        return made[-1]

    yield configure
    stack.close()
    runtime.cache_clear()
    for store in made:
        store.close()


def client() -> Any:
    from django.test import Client

    return Client(HTTP_HOST="testserver", HTTP_USER_AGENT="DjangoTest/2")


def log_in(c: Any, user: str = "dora", **form: str) -> Any:
    response = c.post("/login", {"username": user, "password": "secret", **form}, secure=True)
    assert response.status_code == 200
    return response


def note(c: Any, key: str, value: str) -> Any:
    response = c.post(f"/notes/{key}", {"value": value}, secure=True)
    assert response.status_code == 200
    return response


def me(c: Any) -> Any:
    return c.get("/me", secure=True)


def user_id(name: str) -> str:
    from django.contrib.auth.models import User

    return str(User.objects.get(username=name).pk)  # Django binds the primary key


def record(store: Store, c: Any, clock: FakeClock) -> Any:
    return store.load(ids.store_key(c.cookies["sessionid"].value), clock.now)


# -- options the Django engine used to refuse ----------------------------------------------------


def test_encrypt_at_rest_stores_no_plaintext(configure: Configure, clock: FakeClock) -> None:
    """Django's SECRET_KEY (and SECRET_KEY_FALLBACKS) serve as the keyring: rotating the
    key keeps sessions (Django's auth cycles the key of a session it verifies with a
    fallback, which re-encrypts it); dropping the old key ends the sessions still sealed
    with it (discarded, never a 500)."""
    store = configure({"encrypt_at_rest": True})
    untouched = client()
    log_in(untouched, "eve")
    c = client()
    note(c, "card", "4111-1111-1111-1111")
    log_in(c)
    stored = record(store, c, clock)
    assert stored is not None
    assert stored.data  # the note and Django's auth keys, every one sealed
    assert all(value.startswith("!") for value in stored.data.values())
    raw = repr(dict(stored.data))
    assert "4111" not in raw
    assert user_id("dora") not in set(stored.data.values())
    assert me(c).json() == {
        "user": "dora",
        "data": {"card": "4111-1111-1111-1111"},
        "impersonator": None,
    }

    configure({"encrypt_at_rest": True}, SECRET_KEY=OTHER_KEY, SECRET_KEY_FALLBACKS=[KEY])
    assert me(c).json()["data"] == {"card": "4111-1111-1111-1111"}
    configure({"encrypt_at_rest": True}, SECRET_KEY=OTHER_KEY, SECRET_KEY_FALLBACKS=[])
    assert me(c).json()["data"] == {"card": "4111-1111-1111-1111"}
    assert me(untouched).status_code == 401
    assert record(store, untouched, clock) is None


def test_satchel_secret_keys_win_over_djangos(configure: Configure, clock: FakeClock) -> None:
    store = configure({"encrypt_at_rest": True, "secret_keys": [OTHER_KEY]})
    c = client()
    note(c, "a", "1")
    configure({"encrypt_at_rest": True})  # Django's SECRET_KEY alone cannot read it
    assert me(c).status_code == 401
    assert record(store, c, clock) is None  # discarded as corrupt


def test_max_sessions_per_user_caps_logins(configure: Configure, clock: FakeClock) -> None:
    store = configure({"max_sessions_per_user": 2})
    devices = [client() for _ in range(3)]
    for device in devices:
        log_in(device)
        clock.advance(1)
    assert len(UserSessions(store, clock=clock).sessions(user_id("dora"))) == 2
    assert [me(d).status_code for d in devices] == [401, 200, 200]  # the oldest went


def test_events_are_emitted(configure: Configure, clock: FakeClock) -> None:
    events: list[SessionEvent] = []
    configure({"on_event": events.append})
    c = client()
    note(c, "a", "1")
    log_in(c)
    c.post("/logout", secure=True)
    dora = user_id("dora")
    assert [(e.kind, e.user_id) for e in events] == [
        ("created", None),
        ("regenerated", dora),
        ("destroyed", dora),
    ]
    stale = client()
    stale.cookies["sessionid"] = ids.new_session_id()
    me(stale)
    assert events[-1].kind == "security"
    assert events[-1].reason == "unknown_session"  # Django's session keys are not signed


# -- Django's expiry, enforced on the server ------------------------------------------------------


def test_remember_me_survives_the_default_idle_timeout(
    configure: Configure, clock: FakeClock
) -> None:
    """``set_expiry(30 days)``: a 30-day idle timeout (and absolute lifetime) on the server,
    a cookie for as long; a default session ends at the default 30 minutes."""
    from satchel.integrations.django import SessionStore

    store = configure()
    remembered, default = client(), client()
    note(remembered, "cart", "1")  # anonymous first: the login restarts the lifetime
    clock.advance(10 * 60)
    response = log_in(remembered, remember="1")
    assert response.cookies["sessionid"]["max-age"] == 30 * DAY
    assert log_in(default).cookies["sessionid"]["max-age"] == 1800
    meta = record(store, remembered, clock).meta
    assert (meta.idle_timeout, meta.absolute_deadline - meta.created) == (30 * DAY, 30 * DAY)
    assert meta.created == clock.now
    assert SessionStore(remembered.cookies["sessionid"].value).get_expiry_age() == 30 * DAY

    clock.advance(31 * 60)  # past the default idle timeout
    assert me(default).status_code == 401
    assert record(store, default, clock) is None
    assert me(remembered).json()["user"] == "dora"
    clock.advance(29 * DAY)
    assert me(remembered).status_code == 200
    clock.advance(DAY)  # 30 days after the login: the absolute lifetime ends it
    assert me(remembered).status_code == 401


def test_a_read_that_refreshes_a_persistent_session_resends_its_cookie(
    configure: Configure, clock: FakeClock
) -> None:
    """The server counts idle time from the last refresh of "last seen"; Django's cookie
    Max-Age follows it, so the browser never drops a session the server keeps."""
    configure()
    c = client()
    log_in(c)
    clock.advance(60)  # within the refresh interval (a tenth of the idle timeout)
    assert "sessionid" not in me(c).cookies
    clock.advance(10 * 60)
    response = me(c)
    assert response.cookies["sessionid"]["max-age"] == 1800
    clock.advance(25 * 60)  # 36 minutes after the login, 25 after the refresh
    assert me(c).status_code == 200


def test_expire_at_browser_close_is_a_session_cookie_and_still_idles_out(
    configure: Configure, clock: FakeClock
) -> None:
    from satchel.integrations.django import SessionStore

    store = configure(SESSION_EXPIRE_AT_BROWSER_CLOSE=True)
    c = client()
    cookie = log_in(c).cookies["sessionid"]
    assert (cookie["max-age"], cookie["expires"]) == ("", "")
    assert record(store, c, clock).meta.persistent is False
    assert SessionStore(c.cookies["sessionid"].value).get_expire_at_browser_close()
    clock.advance(31 * 60)
    assert me(c).status_code == 401


def test_session_cookie_age_is_the_absolute_lifetime(
    configure: Configure, clock: FakeClock
) -> None:
    """``SESSION_COOKIE_AGE`` (when set) is satchel's absolute timeout: an active session
    still ends then. ``SATCHEL["absolute_timeout"]``, when given, wins."""
    store = configure(SESSION_COOKIE_AGE=3600)
    c = client()
    log_in(c)
    meta = record(store, c, clock).meta
    assert meta.absolute_deadline - meta.created == 3600
    for _ in range(3):
        clock.advance(20 * 60 - 1)
        assert me(c).status_code == 200  # active: the idle timeout never ends it
    clock.advance(4)
    assert me(c).status_code == 401

    store = configure({"absolute_timeout": 7200}, SESSION_COOKIE_AGE=3600)
    log_in(c)
    meta = record(store, c, clock).meta
    assert meta.absolute_deadline - meta.created == 7200


def test_set_expiry_values_map_to_what_the_server_enforces(
    configure: Configure, clock: FakeClock
) -> None:
    """Each Django value, through Django's public API: what ``get_expiry_age`` and
    ``get_expire_at_browser_close`` answer is what the stored metadata enforces."""
    from satchel.integrations.django import SessionStore

    store = configure()
    at = datetime.fromtimestamp(clock.now + 5 * 3600, UTC)
    cases: list[tuple[Any, float, float, bool]] = [
        # value, idle timeout, absolute lifetime, persistent cookie
        (None, 1800, 12 * 3600, True),
        (0, 1800, 12 * 3600, False),
        (600, 600, 12 * 3600, True),
        (7 * DAY, 7 * DAY, 7 * DAY, True),
        (at, 5 * 3600, 5 * 3600, True),
        (timedelta(hours=2), 2 * 3600, 2 * 3600, True),
    ]
    for value, idle, absolute, persistent in cases:
        session = SessionStore()
        session["a"] = 1
        session.set_expiry(value)
        age, closes = session.get_expiry_age(), session.get_expire_at_browser_close()
        session.save()
        meta = store.load(ids.store_key(session.session_key), clock.now).meta  # type: ignore[union-attr]
        assert (meta.idle_timeout, meta.absolute_deadline - meta.created) == pytest.approx(
            (idle, absolute), abs=1
        ), value
        assert meta.persistent is persistent, value
        assert age == pytest.approx(min(idle, absolute), abs=1), value
        assert closes is not persistent, value
        reopened = SessionStore(session.session_key)
        assert reopened.get_expiry_age() == pytest.approx(age, abs=1), value
        assert reopened.get_expiry_date().timestamp() == pytest.approx(clock.now + age, abs=1)
    with pytest.raises(ValueError, match="0 or more"):
        SessionStore().set_expiry(-1)


def test_clear_keeps_the_key_and_drops_data_user_and_expiry(
    configure: Configure, clock: FakeClock
) -> None:
    from satchel.integrations.django import SessionStore

    store = configure()
    c = client()
    log_in(c, remember="1")
    key = c.cookies["sessionid"].value
    session = SessionStore(key)
    session.clear()
    session.save()
    assert session.session_key == key
    stored = store.load(ids.store_key(key), clock.now)
    assert stored is not None
    assert dict(stored.data) == {}
    assert stored.meta.user_id is None
    assert stored.meta.idle_timeout == 1800
    assert UserSessions(store, clock=clock).sessions(user_id("dora")) == []


# -- the engine's rules, on every store ---------------------------------------------------------


def test_login_is_listed_and_revocable_and_logout_destroys(
    configure: Configure, clock: FakeClock
) -> None:
    store = configure()
    admin = UserSessions(store, clock=clock)
    first, second = client(), client()
    log_in(first)
    log_in(second)
    listed = admin.sessions(user_id("dora"))
    assert len(listed) == 2
    assert {s.user_agent for s in listed} == {"DjangoTest/2"}
    handle = record(store, first, clock).meta.handle
    assert admin.revoke(user_id("dora"), handle)
    assert me(first).status_code == 401
    assert me(second).status_code == 200
    key = second.cookies["sessionid"].value
    second.post("/logout", secure=True)
    assert store.load(ids.store_key(key), clock.now) is None
    assert admin.sessions(user_id("dora")) == []


def test_concurrent_requests_changing_different_keys_all_persist(configure: Configure) -> None:
    configure()
    c = client()
    log_in(c)
    session_id = c.cookies["sessionid"].value
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            own = client()
            own.cookies["sessionid"] = session_id
            note(own, f"k{i}", str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert me(c).json()["data"] == {f"k{i}": str(i) for i in range(12)}


def test_unknown_and_expired_keys_are_never_adopted(configure: Configure, clock: FakeClock) -> None:
    store = configure()
    planted = ids.new_session_id()
    c = client()
    c.cookies["sessionid"] = planted
    note(c, "x", "1")
    assert c.cookies["sessionid"].value != planted
    assert store.load(ids.store_key(planted), clock.now) is None

    expired = c.cookies["sessionid"].value
    clock.advance(31 * 60)
    note(c, "y", "2")
    assert c.cookies["sessionid"].value != expired
    assert store.load(ids.store_key(expired), clock.now) is None
    assert dict(record(store, c, clock).data) == {"y": '"2"'}  # nothing of the expired one


def test_a_save_into_a_deleted_session_is_interrupted(configure: Configure) -> None:
    """Another request logs out while this one runs: Django's SessionInterrupted (from
    UpdateError), and the session stays gone."""
    from django.contrib.sessions.backends.base import UpdateError

    from satchel.integrations.django import SessionStore

    configure()
    c = client()
    log_in(c)
    key = c.cookies["sessionid"].value
    in_flight = SessionStore(key)
    in_flight["late"] = "write"
    SessionStore(key).flush()
    with pytest.raises(UpdateError):
        in_flight.save()
    assert not SessionStore().exists(key)
    assert me(c).status_code == 401


def test_options_that_cannot_apply_are_refused(configure: Configure) -> None:
    with pytest.raises(ConfigurationError, match="signed_cookies"):
        configure({"store": "cookie://"})
    with pytest.raises(ConfigurationError, match="only with encrypt_at_rest"):
        configure({"secret_keys": [OTHER_KEY]})
    with pytest.raises(ConfigurationError, match="max_sessions_per_user"):
        configure({"max_sessions_per_user": 0})


def test_djangos_test_client_session_and_force_login(
    configure: Configure, clock: FakeClock
) -> None:
    """docs/testing.md: ``client.session`` and ``client.force_login`` work as on Django's
    own engines (an empty session is created and kept; force_login binds the user)."""
    from django.contrib.auth.models import User

    store = configure()
    c = client()
    session = c.session
    assert store.load(ids.store_key(session.session_key), clock.now) is not None
    session["theme"] = "dark"
    session.save()
    assert me(c).status_code == 401  # anonymous, with its data
    c.force_login(User.objects.get(username="eve"))
    assert me(c).json() == {"user": "eve", "data": {"theme": "dark"}, "impersonator": None}
    assert len(UserSessions(store, clock=clock).sessions(user_id("eve"))) == 1


@pytest.mark.anyio
async def test_async_session_api(configure: Configure, clock: FakeClock) -> None:
    """Django's a-prefixed twins run the same engine flows."""
    from asgiref.sync import sync_to_async

    from satchel.integrations.django import SessionStore

    store = await sync_to_async(configure)()
    session = SessionStore()
    await session.aset("a", 1)
    await session.aset_expiry(600)
    assert await session.aget_expiry_age() == 600
    await session.asave()
    key = session.session_key
    reopened = SessionStore(key)
    assert await reopened.aget("a") == 1
    assert not await reopened.aget_expire_at_browser_close()
    await reopened.acycle_key()
    await reopened.asave()
    cycled = reopened.session_key
    assert cycled not in (None, key)
    assert await sync_to_async(store.load)(ids.store_key(key), clock.now) is None
    await reopened.aflush()
    assert await sync_to_async(store.load)(ids.store_key(cycled), clock.now) is None
    assert not await SessionStore().aexists(cycled)
