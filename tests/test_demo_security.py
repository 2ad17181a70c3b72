"""The demo's contract for issue 17: how and when the user signed in (``/security``,
``/api/me``), a sensitive action that asks for the password again (``/security/sensitive``,
``/reauth``, ``SATCHEL_REAUTH_MAX_AGE``), a password change that offers to log out other
devices, ``Clear-Site-Data`` on logout, and an administrator acting as another user
(``/admin/impersonate``, ``/admin/stop-impersonating``). On SQLite, Redis and the cookie
store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from satchel.demo import create_app
from satchel.settings import load_settings
from satchel.testing import FakeClock

from .conftest import KEY
from .test_demo_cli import _SyncASGI, log_in

START = 1_800_000_000.0


class _Shared(_SyncASGI):
    """One event loop for every client of a test (the store's connections belong to it):
    closed by the fixture, not by each client."""

    def close(self) -> None:
        pass


class Demo:
    def __init__(self, app: Any, transport: _Shared, clock: FakeClock) -> None:
        self.app, self.transport, self.clock = app, transport, clock

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport, base_url="https://testserver")


@pytest.fixture(params=["sqlite", "redis", "cookie"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    yield from _demo(request, tmp_path)


def _demo(request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> Iterator[Demo]:
    options = {"secret_keys": [KEY], **options}
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path}/demo.db"
    elif request.param == "redis":
        store = request.getfixturevalue("redis_url") + f"?prefix=t{uuid.uuid4().hex[:12]}:"
    else:
        store, options["revocation_store"] = "cookie://", f"sqlite:///{tmp_path}/rev.db"
    clock = FakeClock(START)
    app = create_app(store, clock=clock, **options)
    transport = _Shared(httpx.ASGITransport(app=app))
    try:
        yield Demo(app, transport, clock)
    finally:
        if app.store is not None:
            transport.runner.run(app.store.aclose())
        transport.runner.close()


def me(c: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = c.get("/api/me").json()
    return answer


def post(c: httpx.Client, path: str, **data: str) -> httpx.Response:
    return c.post(path, data={**data, "csrf_token": c.get("/api/csrf").json()["csrf_token"]})


def test_sign_in_facts_and_a_sensitive_action(demo: Demo) -> None:
    with demo.client() as c:
        assert c.get("/security/sensitive").headers["location"].startswith("/login")
        log_in(c)
        facts = me(c)
        assert (facts["auth_time"], facts["auth_level"], facts["impersonator"]) == (
            START,
            "aal1",
            None,
        )
        page = c.get("/security")
        assert page.status_code == 200
        assert 'id="auth-methods">pwd<' in page.text
        assert c.get("/security/sensitive").status_code == 200
        demo.clock.advance(301)  # older than SATCHEL_REAUTH_MAX_AGE's default, 300 s
        refused = c.get("/security/sensitive")
        assert (refused.status_code, refused.headers["location"]) == (
            303,
            "/reauth?next=/security/sensitive",
        )
        form = c.get("/reauth?next=/security/sensitive")
        assert form.status_code == 200
        assert 'name="csrf_token"' in form.text
        before = c.cookies["satchel"]
        wrong = post(c, "/reauth?next=/security/sensitive", password="nope")
        assert wrong.status_code == 401
        ok = post(c, "/reauth?next=/security/sensitive", password="wonderland")
        assert (ok.status_code, ok.headers["location"]) == (303, "/security/sensitive")
        assert c.cookies["satchel"] != before  # a new session ID (ASVS 7.2.4)
        assert c.get("/security/sensitive").status_code == 200
        assert me(c)["auth_time"] == START + 301
        # next= is a local path only
        evil = post(c, "/reauth?next=//evil.example/", password="wonderland")
        assert evil.headers["location"] == "/security"


@pytest.mark.parametrize("demo_short", ["sqlite"], indirect=True)
def test_the_max_age_is_a_setting(demo_short: Demo) -> None:
    with demo_short.client() as c:
        log_in(c)
        demo_short.clock.advance(61)
        assert c.get("/security/sensitive").status_code == 303


@pytest.fixture
def demo_short(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    """The demo as ``satchel demo`` builds it with ``SATCHEL_REAUTH_MAX_AGE=60``."""
    env = {"SATCHEL_REAUTH_MAX_AGE": "60", "SATCHEL_SECRET_KEYS": KEY}
    settings = load_settings(env=env, use_file=False)
    assert settings.reauth_max_age == 60.0
    options = dict(settings.middleware_options())
    yield from _demo(request, tmp_path, reauth_max_age=options["reauth_max_age"])


def test_logout_clears_site_data_then_says_so(demo: Demo) -> None:
    with demo.client() as c:
        log_in(c)
        out = c.post("/logout", headers={"x-csrf-token": me(c)["csrf_token"]})
        assert out.status_code == 303
        assert out.headers["clear-site-data"] == '"cookies"'
        assert out.headers["location"] == "/logged-out"
        landing = c.get("/logged-out", follow_redirects=True)
        assert landing.url.path == "/login"
        assert "You have been logged out." in landing.text
        assert "You have been logged out." not in c.get("/login").text  # once


def test_a_password_change_offers_to_log_out_other_devices(demo: Demo) -> None:
    with demo.client() as c, demo.client() as other:
        log_in(other)
        log_in(c)
        changed = post(c, "/security/password", password="through-the-glass")
        assert (changed.status_code, changed.headers["location"]) == (303, "/security")
        offer = c.get("/security").text
        assert 'id="password-changed"' in offer
        assert 'action="/sessions/others"' in offer
        assert 'id="password-changed"' not in c.get("/security").text  # offered once
        assert post(c, "/sessions/others").status_code == 303  # (cookies: by the marker)
        assert other.get("/api/me").status_code == 401
        assert me(c)["username"] == "alice"
    with demo.client() as fresh:
        assert log_in(fresh).status_code == 401  # the old password no longer opens it
        assert log_in(fresh, "alice", "through-the-glass").status_code == 303


def test_an_administrator_acts_as_another_user(demo: Demo) -> None:
    with demo.client() as c, demo.client() as bob, demo.client() as alice:
        log_in(alice)
        log_in(bob, "bob", "builder")
        assert post(bob, "/admin/impersonate", username="alice").status_code == 403
        assert post(bob, "/admin/stop-impersonating").status_code == 403
        assert me(bob)["username"] == "bob"
        log_in(c, "admin", "keyholder")
        assert 'action="/admin/impersonate"' in c.get("/profile").text
        admin_cookie = c.cookies["satchel"]
        assert post(c, "/admin/impersonate", username="nobody").status_code == 404
        started = post(c, "/admin/impersonate", username="alice")
        assert (started.status_code, started.headers["location"]) == (303, "/profile")
        acting = me(c)
        assert (acting["username"], acting["impersonator"]) == ("alice", "admin")
        assert c.cookies["satchel"] != admin_cookie
        profile = c.get("/profile").text
        assert "you are acting as <b>alice</b>" in profile
        assert 'action="/admin/impersonate"' not in profile  # no chains
        assert c.get("/security/sensitive").status_code == 403
        assert c.get("/reauth").status_code == 403
        assert post(c, "/reauth", password="wonderland").status_code == 403
        assert post(c, "/admin/impersonate", username="bob").status_code == 403
        if demo.app.backend.lists_other_sessions:  # her own list shows it, marked
            assert "admin acting as you" in alice.get("/sessions").text
        stopped = post(c, "/admin/stop-impersonating")
        assert (stopped.status_code, stopped.headers["location"]) == (303, "/profile")
        assert "Back to your own session, admin." in c.get("/profile").text
        back = me(c)
        assert (back["username"], back["impersonator"]) == ("admin", None)
        assert back["auth_time"] == START  # the admin's own sign-in, not a new one
        assert c.get("/security/sensitive").status_code == 200
        with demo.client() as stale:
            stale.cookies.set("satchel", admin_cookie, domain="testserver")
            assert stale.get("/api/me").status_code == 401


def test_acting_as_someone_else_needs_a_recent_sign_in(demo: Demo) -> None:
    with demo.client() as c:
        log_in(c, "admin", "keyholder")
        demo.clock.advance(301)
        refused = post(c, "/admin/impersonate", username="alice")
        assert (refused.status_code, refused.headers["location"]) == (
            303,
            "/reauth?next=/admin/impersonate",
        )
        back = post(c, "/reauth?next=/admin/impersonate", password="keyholder")
        assert back.headers["location"] == "/admin/impersonate"
        assert c.get("/admin/impersonate").headers["location"] == "/profile"  # the form
        assert post(c, "/admin/impersonate", username="alice").status_code == 303
        assert me(c)["impersonator"] == "admin"


def test_password_checks_take_the_same_path_for_unknown_users(demo: Demo) -> None:
    with demo.client() as c:
        assert log_in(c, "nobody", "").status_code == 401  # (an empty password is no match)
        assert log_in(c, "alice", "").status_code == 401
