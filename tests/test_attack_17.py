"""Attack pass on authentication assurance (issue 17): what a hostile user, a malicious or
disabled administrator, a thief holding a cookie or a careless developer can do with the
authentication facts, ``require_recent_auth``, impersonation and the demo's new routes.
Each test failed before its fix (docs/security.md, "Attack pass on authentication
assurance (issue 17)"); the last ones pin what held.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import wsgi
from satchel.errors import ConfigurationError, SessionStateError
from satchel.guard import RecentAuth, require_recent_auth, require_recent_auth_wsgi
from satchel.session import Session
from satchel.testing import FakeClock

from .helpers import KEY
from .services import store_url

HTTPS = "https://127.0.0.1"
START = 1_800_000_000.0
DAY = 86400.0

STORES = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/s.db",
    "redis": "redis://127.0.0.1:6379/0?prefix=att17-{prefix}:",
    "postgresql": "postgresql://127.0.0.1:5432/test?table=att17_{prefix}",
    "mysql": "mysql://root@127.0.0.1:3306/test?table=att17_{prefix}",
    "cookie": "cookie://",
}


def _s(value: Any) -> Session:
    assert isinstance(value, Session)
    return value


class _Response:
    def __init__(self, status: int, text: str, headers: Any) -> None:
        self.status_code, self.text, self.headers = status, text, headers

    def json(self) -> Any:
        return json.loads(self.text)


class _Client:
    """A browser on the WSGI path (every store's sync client: no event loop to share)."""

    def __init__(self, app: Any) -> None:
        self._client = WerkzeugClient(app)

    def get(self, path: str) -> _Response:
        response = self._client.get(path, base_url=HTTPS)
        return _Response(response.status_code, response.get_data(as_text=True), response.headers)


def _app(store: str, tmp: Path, clock: FakeClock, **more: Any) -> wsgi.SessionMiddleware:
    def act(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = _s(environ["satchel.session"])
        path, query = environ["PATH_INFO"], dict(parse_qsl(environ.get("QUERY_STRING", "")))
        answer: Any = "ok"
        try:
            if path == "/login":
                satchel.login(session, query["user"], methods=["pwd"], level="aal2")
            elif path == "/impersonate":
                satchel.impersonate(session, query["user"])
            elif path == "/stop":
                answer = satchel.stop_impersonating(session)
            elif path == "/everywhere":
                answer = str(satchel.logout_everywhere(session))
            elif path == "/others":
                answer = str(satchel.logout_other_devices(session))
            elif path == "/logout":
                satchel.logout(session)
            elif path == "/reauth":
                satchel.reauthenticate(session, methods=["pwd", "otp"], level="aal2")
            elif path == "/remember":  # the app's "keep me signed in for 30 days"
                session.set_expiry(
                    absolute_timeout=30 * DAY, idle_timeout=30 * DAY, persistent=True
                )
            elif path == "/me":
                meta = session.meta
                answer = json.dumps(
                    {
                        "user": session.user_id,
                        "impersonator": session.impersonator,
                        "deadline": None if meta is None else meta.absolute_deadline,
                        "idle": None if meta is None else meta.idle_timeout,
                    }
                )
        except SessionStateError as exc:
            start_response("409 Conflict", [("content-type", "text/plain")])
            return [str(exc).encode()]
        start_response("200 OK", [("content-type", "text/plain")])
        return [answer.encode()]

    options: dict[str, Any] = dict(more)
    url = store_url(STORES.get(store, "").replace("{prefix}", uuid.uuid4().hex[:8]), tmp)
    if store == "cookie":
        options["revocation_store"] = f"sqlite:///{tmp}/revocation.db"
    elif store == "cookie-alone":  # (no revocation store: logout leaves a tombstone)
        url = "cookie://"
    return wsgi.SessionMiddleware(act, store=url, secret_keys=[KEY], clock=clock, **options)


def _close(app: wsgi.SessionMiddleware) -> None:
    if app.store is not None:
        app.store.close()


# -- 1. a disabled administrator keeps acting as the user, and comes back ------------------------


@pytest.mark.parametrize("store", sorted(STORES))
def test_ending_the_administrators_sessions_ends_their_impersonation(
    store: str, tmp_path: Path
) -> None:
    """``end_user_sessions(app, "admin")`` (the admin account disabled) ended every session
    filed under ``admin``, but not the one where admin acts as alice (filed under alice),
    and ``stop_impersonating`` then handed the disabled admin a brand-new admin session
    (on the cookie store: a cookie issued after the revocation epoch, so valid)."""
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = _Client(app)
        admin.get("/login?user=admin")
        admin.get("/impersonate?user=alice")
        assert admin.get("/me").json()["impersonator"] == "admin"
        clock.advance(5)
        satchel.end_user_sessions(app, "admin", reason="account_disabled")
        clock.advance(5)
        assert admin.get("/me").json()["user"] is None
        assert admin.get("/stop").status_code == 409  # (nobody to stop)
        assert admin.get("/me").json()["user"] is None
    finally:
        _close(app)


@pytest.mark.parametrize("store", ["memory", "cookie"])
def test_the_administrators_log_out_everywhere_ends_their_impersonation(
    store: str, tmp_path: Path
) -> None:
    """An administrator whose cookie was stolen logs out everywhere from their laptop: the
    thief, who had used the stolen cookie to impersonate alice, kept that session (and
    could stop impersonating to get a fresh admin session back)."""
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        laptop, thief = _Client(app), _Client(app)
        laptop.get("/login?user=admin")
        thief.get("/login?user=admin")  # (the same as a copy of an admin cookie)
        thief.get("/impersonate?user=alice")
        clock.advance(5)
        laptop.get("/others")  # "log out my other devices"
        clock.advance(5)
        assert thief.get("/me").json()["user"] is None
        assert thief.get("/stop").status_code == 409
        assert thief.get("/me").json()["user"] is None
        assert laptop.get("/me").json()["user"] == "admin"  # the device that asked stays
        # a new impersonation from the device that asked is not caught by the old epoch
        laptop.get("/impersonate?user=bob")
        clock.advance(5)
        assert laptop.get("/me").json()["impersonator"] == "admin"
        assert laptop.get("/stop").text == "admin"
        assert laptop.get("/me").json()["user"] == "admin"
    finally:
        _close(app)


# -- 2. an impersonation outliving the administrator's deadline ----------------------------------


@pytest.mark.parametrize("store", ["memory", "cookie"])
def test_an_impersonation_never_outlives_the_administrators_deadline(
    store: str, tmp_path: Path
) -> None:
    """The app's "keep me signed in" (``set_expiry``) on an impersonating session moved its
    absolute deadline 30 days out, past the administrator's; ``stop_impersonating`` then
    carried that deadline over to the administrator's own session."""
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = _Client(app)
        admin.get("/login?user=admin")
        deadline = admin.get("/me").json()["deadline"]
        admin.get("/impersonate?user=alice")
        admin.get("/remember")
        acting = admin.get("/me").json()
        assert acting["impersonator"] == "admin"
        assert acting["deadline"] <= deadline
        assert admin.get("/stop").text == "admin"
        assert admin.get("/me").json()["deadline"] <= deadline
    finally:
        _close(app)


# -- 3. a guard a careless developer configures to pass everything -------------------------------


@pytest.mark.parametrize("max_age", [math.nan, -1.0, "300", True])
def test_a_guard_refuses_a_max_age_that_is_no_duration(max_age: Any) -> None:
    """``require_recent_auth(max_age=float("nan"))`` (a value read from a broken config)
    let every logged-in user through: ``age > nan`` is never true. A string failed with a
    500 on the first request instead of at start. Refused where the guard is made, on every
    framework (they all build a :class:`RecentAuth`)."""
    with pytest.raises(ConfigurationError, match="max_age"):
        RecentAuth(max_age=max_age)
    with pytest.raises(ConfigurationError, match="max_age"):
        require_recent_auth(max_age=max_age)
    with pytest.raises(ConfigurationError, match="max_age"):
        require_recent_auth_wsgi(max_age=max_age)
    from satchel.integrations import fastapi as satchel_fastapi
    from satchel.integrations import flask as satchel_flask

    with pytest.raises(ConfigurationError, match="max_age"):
        satchel_flask.require_recent_auth(max_age=max_age)
    with pytest.raises(ConfigurationError, match="max_age"):
        satchel_fastapi.require_recent_auth(max_age=max_age)


def test_a_guard_accepts_any_age_and_zero() -> None:
    assert RecentAuth(max_age=math.inf).max_age == math.inf
    assert RecentAuth(max_age=0).max_age == 0
    assert RecentAuth(max_age=None).max_age is None


# -- 4. Clear-Site-Data wiping the logout tombstone ----------------------------------------------


def test_a_logout_that_sets_the_tombstone_does_not_clear_it(tmp_path: Path) -> None:
    """Cookie sessions without a revocation store: logout sets the signed tombstone
    (``satchel-logout``), which stops a request in flight during the logout from logging
    the browser back in. The same response carried ``Clear-Site-Data: "cookies"``, which
    browsers apply after the response's own ``Set-Cookie``: the tombstone was wiped at once,
    and a late response could set the logged-in cookie again. The documented rule (a
    logout response that sets a cookie gets the other directives only) now counts it."""
    app = _app("cookie-alone", tmp_path, FakeClock(START))
    client = _Client(app)
    client.get("/login?user=alice")
    response = client.get("/logout")
    assert any("satchel-logout=" in line for line in response.headers.getlist("set-cookie"))
    assert "cookies" not in (response.headers.get("clear-site-data") or "")
    # with a revocation store (no tombstone): the header stays
    app = _app("cookie", tmp_path, FakeClock(START))
    client = _Client(app)
    client.get("/login?user=alice")
    response = client.get("/logout")
    assert response.headers.get("clear-site-data") == '"cookies"'
    _close(app)


# -- 5. "remember me" past the assurance level -----------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "cookie"])
def test_remember_me_cannot_lift_a_session_past_its_assurance_level(
    store: str, tmp_path: Path
) -> None:
    """``assurance="aal2"`` refuses ``absolute_timeout=30 days`` at start (NIST: log in
    again at least every 24 hours, idle at most 1 hour), yet ``session.set_expiry(...)``
    (the app's "keep me signed in") gave one session exactly that. The level's limits
    now bound every session, per-session settings included, unless
    ``assurance_allow_weaker=True``."""
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock, assurance="aal2")
    try:
        client = _Client(app)
        client.get("/login?user=alice")
        client.get("/remember")
        me = client.get("/me").json()
        assert me["deadline"] <= START + DAY
        assert me["idle"] <= 3600
        clock.advance(DAY)
        assert client.get("/me").json()["user"] is None
    finally:
        _close(app)
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock, assurance="aal2", assurance_allow_weaker=True)
    try:
        client = _Client(app)
        client.get("/login?user=alice")
        client.get("/remember")
        assert client.get("/me").json()["deadline"] == START + 30 * DAY  # said it is meant
    finally:
        _close(app)


# -- what held ---------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "cookie"])
def test_start_stop_cycles_with_remember_me_never_move_the_deadline(
    store: str, tmp_path: Path
) -> None:
    """Impersonating and stopping again and again restarts ``created`` each time, yet the
    absolute deadline only ever stays or comes nearer: the session ends when the
    administrator's login said."""
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = _Client(app)
        admin.get("/login?user=admin")
        deadline = admin.get("/me").json()["deadline"]
        for _ in range(40):
            clock.advance(600)
            if admin.get("/impersonate?user=alice").status_code != 200:
                break
            admin.get("/remember")
            clock.advance(600)
            admin.get("/stop")
            me = admin.get("/me").json()
            if me["user"] is None:
                break
            assert me["deadline"] <= deadline
        assert clock() >= deadline
        assert admin.get("/me").json()["user"] is None
    finally:
        _close(app)


@pytest.mark.parametrize("store", ["sqlite", "cookie"])
def test_held_the_user_ending_their_sessions_ends_the_impersonation(
    store: str, tmp_path: Path
) -> None:
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = _Client(app)
        admin.get("/login?user=admin")
        admin.get("/impersonate?user=alice")
        clock.advance(5)
        satchel.end_user_sessions(app, "alice", reason="account_disabled")
        clock.advance(5)
        assert admin.get("/me").json()["user"] is None
        assert admin.get("/stop").status_code == 409
    finally:
        _close(app)


def test_held_a_stolen_pre_reauthentication_cookie_opens_nothing(tmp_path: Path) -> None:
    """``reauthenticate`` is a new ID: the copy a thief took before it is dead (server
    stores: the record is gone; cookie store: the handle is listed)."""
    for store in ("sqlite", "cookie"):
        clock = FakeClock(START)
        (tmp_path / store).mkdir()
        app = _app(store, tmp_path / store, clock)
        try:
            victim = _Client(app)
            victim.get("/login?user=alice")
            stolen = victim._client.get_cookie("satchel", domain="127.0.0.1")
            assert stolen is not None
            clock.advance(60)
            assert victim.get("/reauth").status_code == 200
            thief = _Client(app)
            thief._client.set_cookie("satchel", stolen.value, domain="127.0.0.1")
            assert thief.get("/me").json()["user"] is None
            assert victim.get("/me").json()["user"] == "alice"
        finally:
            _close(app)
