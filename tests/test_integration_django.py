"""The Django session engine through Django's own test Client, with Django's auth and CSRF.

Django's settings are process-wide, so this module configures them once (from the tested
example) and every Django test lives here."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import KEY
from .dbsc_device import Device, challenge_of, registration_offer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    import importlib.util
    import sys

    directory = tmp_path_factory.mktemp("django")
    os.environ["SECRET_KEYS"] = KEY
    os.environ["SESSION_STORE"] = f"sqlite:///{directory}/sessions.db"
    os.environ["DJANGO_DB"] = str(directory / "django.sqlite3")
    spec = importlib.util.spec_from_file_location("example_django_app", EXAMPLES / "django_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    User.objects.create_user("alice", password="wonderland")
    User.objects.create_user("bob", password="builder")
    yield module
    for name in ("SECRET_KEYS", "SESSION_STORE", "DJANGO_DB"):
        os.environ.pop(name, None)


# --8<-- [start:client]
def client(**kwargs: Any) -> Any:
    """Django's test Client enforcing CSRF; over HTTPS Django also checks the Referer."""
    from django.test import Client

    defaults = {
        "HTTP_HOST": "testserver",
        "HTTP_REFERER": "https://testserver/",
        "HTTP_USER_AGENT": "DjangoTest/1",
        "enforce_csrf_checks": True,
    }
    return Client(**{**defaults, **kwargs})


def csrf(c: Any) -> str:
    return str(c.get("/csrf", secure=True).json()["csrf_token"])


def log_in(c: Any, user: str = "alice", password: str = "wonderland") -> Any:
    return c.post(
        "/login", {"username": user, "password": password}, secure=True, HTTP_X_CSRFTOKEN=csrf(c)
    )


# --8<-- [end:client]


# --8<-- [start:devices]
def test_the_devices_page_lists_and_revokes(django_app: ModuleType) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("erin", password="devices")
    laptop, phone = client(), client(HTTP_USER_AGENT="Phone/2")
    for c in (laptop, phone):
        assert log_in(c, "erin", "devices").json() == {"user": "erin"}
    listed = laptop.get("/devices", secure=True).json()
    assert sorted(d["user_agent"] for d in listed) == ["DjangoTest/1", "Phone/2"]
    (phones,) = [d["handle"] for d in listed if d["user_agent"] == "Phone/2"]
    # after login Django rotated its CSRF token: fetch a new one (csrf() does)
    revoked = laptop.post(
        "/devices", {"handle": phones}, secure=True, HTTP_X_CSRFTOKEN=csrf(laptop)
    )
    assert revoked.json() == {"revoked": True}
    assert phone.get("/me", secure=True).status_code == 401
    assert laptop.get("/me", secure=True).json()["user"] == "erin"


# --8<-- [end:devices]


def test_login_cycles_the_key_and_logout_kills_replay(django_app: ModuleType) -> None:
    from satchel import ids
    from satchel.integrations.django import runtime

    c = client()
    c.post("/notes/pre", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    before = c.cookies["sessionid"].value
    assert ids.is_session_id(before)
    assert log_in(c).status_code == 200
    after = c.cookies["sessionid"].value
    assert after != before
    store = runtime()[0]
    assert store.load(ids.store_key(before), 0) is None  # the pre-login key is gone
    record = store.load(ids.store_key(after), 0)
    assert record is not None
    assert record.meta.user_id is not None  # filed under the user for listing and revoking
    assert (record.meta.user_agent, record.meta.client_ip) == ("DjangoTest/1", "127.0.0.1")
    assert [k for k, _ in store.list_user(record.meta.user_id, 0)] == [ids.store_key(after)]
    assert c.get("/me", secure=True).json()["user"] == "alice"
    logout = c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    assert logout.headers["Clear-Site-Data"] == '"cookies"'  # (issue 17: ASVS 14.3.1)
    replay = client()
    replay.cookies["sessionid"] = after
    assert replay.get("/me", secure=True).status_code == 401


def test_csrf_refused_without_token(django_app: ModuleType) -> None:
    c = client()
    log_in(c)
    assert c.post("/notes/a", {"value": "1"}, secure=True).status_code == 403
    assert (
        c.post("/notes/a", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c)).status_code == 200
    )


def test_concurrent_disjoint_writes_persist(django_app: ModuleType) -> None:
    c = client()
    log_in(c)
    token, session_id = csrf(c), c.cookies["sessionid"].value
    csrf_cookie = c.cookies["csrftoken"].value
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            own = client()
            own.cookies["sessionid"] = session_id
            own.cookies["csrftoken"] = csrf_cookie
            response = own.post(
                f"/notes/k{i}", {"value": str(i)}, secure=True, HTTP_X_CSRFTOKEN=token
            )
            assert response.status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data = c.get("/me", secure=True).json()["data"]
    assert {k: v for k, v in data.items() if k.startswith("k")} == {
        f"k{i}": str(i) for i in range(20)
    }


def test_unknown_and_malformed_keys_are_never_adopted(django_app: ModuleType) -> None:
    from satchel import ids
    from satchel.integrations.django import SessionStore, runtime

    planted = ids.new_session_id()
    c = client()
    c.cookies["sessionid"] = planted
    c.post("/notes/x", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    assert c.cookies["sessionid"].value != planted
    assert runtime()[0].load(ids.store_key(planted), 0) is None
    assert SessionStore("../../etc/passwd").session_key is None
    assert not SessionStore().exists("x" * 43 + "\x00")


def test_no_resurrection_after_logout(django_app: ModuleType) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    from satchel.integrations.django import SessionStore

    c = client()
    log_in(c)
    key = c.cookies["sessionid"].value
    in_flight = SessionStore(key)
    in_flight["late"] = "write"
    in_flight.load()
    SessionStore(key).delete()
    with pytest.raises(UpdateError):
        in_flight.save()
    assert not SessionStore().exists(key)


# -- every SATCHEL key changes behaviour or is refused (schema: tests/test_option_sweep.py) ----

_DJANGO_CHECKS: dict[str, Any] = {
    "store": "other",
    "idle_timeout": 600.0,
    "absolute_timeout": 7200.0,
    "refresh_interval": 0.0,
    "trusted_proxies": ["127.0.0.1"],
    "encrypt_at_rest": True,
    "max_sessions_per_user": 1,
    "secret_keys": ["other-key-0123456789-0123456789-012345"],
    "dbsc": True,
    "dbsc_cookie_lifetime": 30.0,
    "dbsc_grace": 0.0,
    "dbsc_path": "/auth/dbsc",
    "dbsc_required": True,
    "dbsc_redirect": "/sign-in",
    "clear_site_data": ["storage"],
    "assurance": "aal3",
    "assurance_allow_weaker": True,
    "reauth_max_age": 0.001,
}
_DJANGO_BASE: dict[str, dict[str, Any]] = {
    "secret_keys": {"encrypt_at_rest": True},
    "dbsc_cookie_lifetime": {"dbsc": True},
    "dbsc_grace": {"dbsc": True},
    "dbsc_path": {"dbsc": True},
    "dbsc_required": {"dbsc": True, "dbsc_grace": 0.0},
    "dbsc_redirect": {"dbsc": True, "dbsc_required": True, "dbsc_grace": 0.0},
    "assurance_allow_weaker": {"assurance": "aal3", "idle_timeout": 3600.0},
}


@contextmanager
def _satchel_settings(config: dict[str, Any]) -> Iterator[None]:
    """``settings.SATCHEL`` for one block, the engine and DBSC policy rebuilt for it."""
    from django.test import override_settings

    from satchel.integrations.django import runtime
    from satchel.integrations.django_dbsc import _policy

    runtime.cache_clear()
    _policy.cache_clear()
    try:
        with override_settings(SATCHEL=config):
            yield
    finally:
        runtime.cache_clear()
        _policy.cache_clear()


def _bind(c: Any, login: Any) -> Any:
    """Answer a login's offer to bind as Chromium does; the registration's response."""
    path, challenge = registration_offer(login["Secure-Session-Registration"])
    proof = Device().proof(challenge, with_jwk=True)
    return c.post(path, secure=True, HTTP_SECURE_SESSION_RESPONSE=proof)


def _django_observe_dbsc(config: dict[str, Any]) -> Any:
    """A login's offer to bind, the binding's bound cookie, and the next request's answer."""
    with _satchel_settings(config):
        c = client()
        login = log_in(c)
        out: dict[str, Any] = {"offer": login.get("Secure-Session-Registration") is not None}
        if out["offer"]:
            bound = _bind(c, login)
            cookie = bound.cookies["sessionid_bound"]
            out.update(status=bound.status_code, max_age=cookie["max-age"])
            out["path"] = registration_offer(login["Secure-Session-Registration"])[0]
        time.sleep(0.01)
        after = c.get("/me", secure=True)
        return {**out, "next": (after.status_code, after.get("Location"))}


def _django_observe(config: dict[str, Any], db: Path) -> Any:
    """What the store at ``db`` holds after a session is made (behind a proxy) and read,
    and bob logged in on two devices: each session's timeouts, whether it was seen again,
    its client IP and user, and the key ID its values are encrypted with (None: plaintext)."""
    import time

    from django.test import override_settings

    from satchel.integrations.django import runtime
    from satchel.keyring import KID_LENGTH
    from satchel.stores.sqlite import SQLiteStore

    runtime.cache_clear()
    try:
        with override_settings(SATCHEL=config):
            c = client()
            headers = {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}
            c.post("/notes/n", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c), **headers)
            time.sleep(0.01)
            c.get("/me", secure=True, **headers)
            for _ in range(2):
                log_in(client(), "bob", "builder")
    finally:
        runtime.cache_clear()
    if not db.exists():
        return None
    store = SQLiteStore(db)
    try:
        now = time.time()
        observed = []
        for key, m in store.iter_sessions(now):
            record = store.load(key, now)
            assert record is not None
            sealed = {
                v[1 : 1 + KID_LENGTH] if v.startswith("!") else None for v in record.data.values()
            }
            observed.append(
                (
                    m.idle_timeout,
                    round(m.absolute_deadline - m.created),
                    m.last_seen > m.created,
                    m.client_ip,
                    m.user_id is not None,
                    sorted(sealed, key=repr),
                )
            )
        return sorted(observed, key=repr)
    finally:
        store.close()


def _settings_names() -> list[str]:
    from .test_option_sweep import SETTINGS

    return SETTINGS


def test_every_applied_satchel_key_has_a_check() -> None:
    from satchel.integrations.django import APPLIED

    assert set(APPLIED) == set(_DJANGO_CHECKS)
    assert set(APPLIED) <= set(_settings_names())


@pytest.mark.parametrize("name", _settings_names())
def test_satchel_key_changes_behaviour_or_is_refused(
    django_app: ModuleType, name: str, tmp_path: Path
) -> None:
    from satchel import ConfigurationError
    from satchel.integrations.django import APPLIED

    from .test_option_sweep import CHECKS, Dyn

    base = tmp_path / "base.db"
    config: dict[str, Any] = {"store": f"sqlite:///{base}"}
    if name not in APPLIED:  # Django does this itself: setting it here is an error
        value = CHECKS[name][0].value
        value = "sqlite:///unused.db" if isinstance(value, Dyn) else value
        with pytest.raises(ConfigurationError, match=name):
            _django_observe({**config, name: value}, base)
        return
    value = _DJANGO_CHECKS[name]
    config.update(_DJANGO_BASE.get(name, {}))
    target = base
    if name == "store":
        target = tmp_path / "other.db"
        value = f"sqlite:///{target}"
    if name == "assurance_allow_weaker":  # without it the same settings are refused
        with pytest.raises(ConfigurationError, match="assurance_allow_weaker"):
            _django_observe(config, target)
        assert _django_observe({**config, name: value}, target)
        return
    if name == "clear_site_data":
        default, observed = _logout_header(config), _logout_header({**config, name: value})
        assert observed != default, f"SATCHEL[{name!r}] changed nothing: {observed}"
        return
    if name == "reauth_max_age":
        statuses = (_sensitive_status(config), _sensitive_status({**config, name: value}))
        assert statuses == (200, 303), f"SATCHEL[{name!r}] changed nothing"
        return
    if name.startswith("dbsc"):
        default = _django_observe_dbsc(config)
        observed = _django_observe_dbsc({**config, name: value})
        assert observed != default, f"SATCHEL[{name!r}] changed nothing: {observed}"
        return
    default = _django_observe(config, target)
    observed = _django_observe({**config, name: value}, target)
    assert observed, f"{name}: no session stored"
    assert observed != default, f"SATCHEL[{name!r}] changed nothing: {observed}"


def _sensitive_status(config: dict[str, Any]) -> int:
    """The status of the example's /sensitive a moment after a login."""
    with _satchel_settings(config):
        c = client()
        log_in(c)
        time.sleep(0.01)
        return int(c.get("/sensitive", secure=True).status_code)


def test_unknown_satchel_key_is_refused_naming_the_closest(django_app: ModuleType) -> None:
    """As at every other entry point (tests/test_option_schema.py)."""
    from django.test import override_settings

    from satchel import ConfigurationError
    from satchel.integrations.django import runtime

    runtime.cache_clear()
    try:
        config = {"store": "memory://", "idle_timout": 60}
        with override_settings(SATCHEL=config), pytest.raises(ConfigurationError) as raised:
            runtime()
    finally:
        runtime.cache_clear()
    message = str(raised.value)
    assert (
        "settings.SATCHEL: unknown option 'idle_timout' (did you mean 'idle_timeout'?)" in message
    )
    assert "valid options: absolute_timeout, " in message


# -- hardening: hostile cookies and corrupt records (issue 10) -----------------------------


def test_hostile_session_cookies_give_a_fresh_session_never_a_500(django_app: ModuleType) -> None:
    c = client()
    log_in(c)
    valid = c.cookies["sessionid"].value
    hostile = [
        valid[:-1] + "é",
        valid + "\x00",
        "\xed\xa0\x80" * 15,  # the UTF-8 bytes of a surrogate, as a WSGI server hands them
        valid + "A" * 20_000,
        valid + ".x.y",
        "." * 43,
    ]
    for bad in hostile:
        fresh = client()
        assert fresh.get("/me", secure=True, HTTP_COOKIE=f"sessionid={bad}").status_code == 401
        # a value tossed before the victim's own (e.g. from a sibling subdomain)
        tossed = f"sessionid={bad}; sessionid={valid}"
        response = fresh.get("/me", secure=True, HTTP_COOKIE=tossed)
        assert response.status_code == 200
        assert response.json()["user"] == "alice"


@pytest.mark.parametrize(
    ("value", "meta_changes"),
    [
        ('{"$t": "uuid", "v": 5}', {}),
        ("[" * 100_000 + "]" * 100_000, {}),
        ('"victim"', {"created": "x"}),
        ('"victim"', {"absolute_deadline": "soon"}),
    ],
    ids=["bad-payload", "deep-nesting", "created-not-a-number", "deadline-not-a-number"],
)
def test_corrupt_record_is_discarded_with_a_warning_never_a_500(
    django_app: ModuleType,
    value: str,
    meta_changes: dict[str, Any],
    security_log: pytest.LogCaptureFixture,
) -> None:
    import json
    import sqlite3

    from satchel import ids
    from satchel.integrations.django import runtime

    c = client()
    log_in(c)
    c.post("/notes/who", {"value": "victim"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    key = ids.store_key(c.cookies["sessionid"].value)
    path = runtime()[0].path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as db:
        data, meta = db.execute(
            "SELECT data, meta FROM satchel_sessions WHERE key = ?", (key,)
        ).fetchone()
        data, meta = json.loads(data), json.loads(meta)
        data["who"] = value
        meta.update(meta_changes)
        db.execute(
            "UPDATE satchel_sessions SET data = ?, meta = ? WHERE key = ?",
            (json.dumps(data), json.dumps(meta), key),
        )
    db.close()
    assert c.get("/me", secure=True).status_code == 401  # a fresh, anonymous session
    assert any(
        r.name == "satchel.security" and "corrupt record discarded" in r.getMessage()
        for r in security_log.records
    )
    assert runtime()[0].load(key, 0) is None


def test_another_users_login_starts_from_empty_data(django_app: ModuleType) -> None:
    """Django's own ``login`` flushes a session that belongs to another user; satchel's
    engine keeps that: bob's data never reaches alice, the same user keeps his."""
    c = client()
    log_in(c, "bob", "builder")
    c.post("/notes/theme", {"value": "dark"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    assert c.get("/me", secure=True).json()["data"] == {"theme": "dark"}
    log_in(c, "bob", "builder")  # the same user again: kept
    assert c.get("/me", secure=True).json()["data"] == {"theme": "dark"}
    bobs = c.cookies["sessionid"].value
    log_in(c, "alice")
    assert c.get("/me", secure=True).json() == {"user": "alice", "data": {}, "impersonator": None}
    assert c.cookies["sessionid"].value != bobs


def test_a_session_key_no_store_can_hold_is_a_data_error_not_a_503(
    django_app: ModuleType,
) -> None:
    """Django's session checks nothing at assignment, and the example takes key names from
    the URL: a NUL (which PostgreSQL refuses) is refused when the session is saved, as the
    app's error (a 500), never as a store outage (a 503) and never stored anywhere."""
    from satchel.errors import SessionDataError

    c = client()
    token = csrf(c)
    with pytest.raises(SessionDataError, match="cannot be stored"):
        c.post("/notes/a%00b", {"value": "x"}, secure=True, HTTP_X_CSRFTOKEN=token)


def test_a_response_setting_the_session_cookie_is_never_cached(django_app: ModuleType) -> None:
    """The one response rule on the Django path too: the response that sets the session
    cookie (a login) is ``Cache-Control: no-store`` and varies on ``Cookie``."""
    c = client()
    response = log_in(c)
    assert "sessionid" in response.cookies
    assert response["Cache-Control"] == "no-store"
    assert "Cookie" in response["Vary"]


@pytest.mark.parametrize(
    ("host", "secure", "warned"),
    [("web", False, True), ("web", True, False), ("localhost:8000", False, False)],
)
def test_plain_http_to_a_named_host_is_named_in_the_log(
    django_app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
    secure: bool,
    warned: bool,
) -> None:
    """``SESSION_COOKIE_SECURE=True`` over plain http to a docker-compose service name:
    browsers drop the Secure session cookie, so logins fail; the log says why, once per
    process, as on the other paths (https and loopback are not warned about)."""
    import logging
    import threading

    from django.test import override_settings

    from satchel import csrf_failure

    monkeypatch.setattr(csrf_failure, "_warned", threading.Event())  # once per process
    c = client(HTTP_HOST=host, HTTP_REFERER=f"https://{host}/")
    with (
        override_settings(ALLOWED_HOSTS=["web", "localhost"]),
        caplog.at_level(logging.WARNING, logger="satchel"),
    ):
        token = c.get("/csrf", secure=secure).json()["csrf_token"]
        login = {"username": "alice", "password": "wonderland"}
        response = c.post("/login", login, secure=secure, HTTP_X_CSRFTOKEN=token)
        assert response.cookies["sessionid"]["secure"]  # a Secure cookie was set
        token = c.get("/csrf", secure=secure).json()["csrf_token"]
        assert c.post("/logout", secure=secure, HTTP_X_CSRFTOKEN=token).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "plain-http" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert "set SESSION_COOKIE_SECURE=False" in warnings[0]  # Django's setting
        assert "'web'" in warnings[0]
    assert csrf_failure.warned_insecure_transport() is warned


@pytest.mark.parametrize("custom", [False, True])
def test_a_store_outage_answers_the_one_503_or_the_apps_own(
    django_app: ModuleType, custom: bool
) -> None:
    """The same plain 503 as every other path, or ``SATCHEL["on_store_unavailable"]``."""
    from django.http import HttpResponse
    from django.test import override_settings

    from satchel.errors import UNAVAILABLE_BODY
    from satchel.integrations.django import runtime

    config: dict[str, Any] = {"store": "redis://127.0.0.1:1/0?socket_timeout=0.5"}
    if custom:
        config["on_store_unavailable"] = lambda request: HttpResponse("custom", status=503)
    runtime.cache_clear()
    try:
        with override_settings(SATCHEL=config):
            c = client()
            response = c.post("/notes/n", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    finally:
        runtime.cache_clear()
    assert response.status_code == 503
    if custom:
        assert response.content == b"custom"
    else:
        assert response.content == UNAVAILABLE_BODY
        assert response["Retry-After"] == "5"
        assert response["Cache-Control"] == "no-store"


# -- device-bound sessions (SATCHEL["dbsc"], satchel's SessionMiddleware) ------------------------


def test_device_binding_under_django(django_app: ModuleType) -> None:
    """The protocol of tests/test_dbsc_http.py through Django's auth, CSRF and test Client:
    a login offers, the registration binds, the bound cookie is required, a refresh with the
    key renews it, logout ends the binding."""
    from satchel import SessionEvent
    from satchel.dbsc.proof import thumbprint
    from satchel.testing import FakeClock

    events: list[SessionEvent] = []
    clock = FakeClock()
    config = {"store": "memory://", "dbsc": True, "on_event": events.append, "clock": clock}
    with _satchel_settings(config):
        c = client()
        login = log_in(c)
        path, challenge = registration_offer(login["Secure-Session-Registration"])
        device = Device()
        bound = c.post(
            path, secure=True, HTTP_SECURE_SESSION_RESPONSE=device.proof(challenge, with_jwk=True)
        )
        assert bound.status_code == 200
        key_id = thumbprint(device.jwk)
        assert bound.json()["session_identifier"] == key_id
        assert bound.json()["scope"]["origin"] == "https://testserver"
        assert bound.cookies["sessionid_bound"]["max-age"] == "600"
        assert c.get("/me", secure=True).json()["user"] == "alice"

        del c.cookies["sessionid_bound"]
        clock.advance(11)  # past the settle window of a new binding
        refused = c.get("/me", secure=True, HTTP_ACCEPT="application/json")
        assert refused.status_code == 401
        assert refused.json() == {"error": "device_unverified"}

        ask = c.post("/.satchel/dbsc/refresh", secure=True, HTTP_SEC_SECURE_SESSION_ID=key_id)
        assert ask.status_code == 403
        challenge, _ = challenge_of(ask["Secure-Session-Challenge"])
        renewed = c.post(
            "/.satchel/dbsc/refresh",
            secure=True,
            HTTP_SEC_SECURE_SESSION_ID=key_id,
            HTTP_SECURE_SESSION_RESPONSE=device.proof(challenge),
        )
        assert renewed.status_code == 200
        assert c.get("/me", secure=True).json()["user"] == "alice"

        foreign = c.post(
            "/.satchel/dbsc/refresh",
            secure=True,
            HTTP_SEC_SECURE_SESSION_ID=key_id,
            HTTP_SECURE_SESSION_RESPONSE=Device().proof(challenge),
        )
        assert foreign.status_code == 403
        assert any(e.kind == "security" and e.reason == "device_key" for e in events)

        out = c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert out.cookies["sessionid_bound"]["max-age"] == "0"
        ended = c.post("/.satchel/dbsc/refresh", secure=True, HTTP_SEC_SECURE_SESSION_ID=key_id)
        assert ended.json() == {"continue": False}
    kinds = [(e.kind, e.reason) for e in events if e.kind.startswith("device")]
    assert kinds == [
        ("device_bound", None),
        ("device_refused", "unverified_request"),
        ("device_refreshed", None),
        ("device_refused", "wrong_key"),
        ("device_unbound", "logout"),
        ("device_unbound", "session_ended"),
    ]


def test_without_dbsc_satchels_middleware_is_djangos(django_app: ModuleType) -> None:
    c = client()
    login = log_in(c)
    assert "Secure-Session-Registration" not in login
    assert c.get("/me", secure=True).json()["user"] == "alice"


# -- second DBSC attack pass (branch attack2-dbsc): each failed when written ----------------------


def test_a_refused_request_neither_saves_nor_sets_the_session_cookie(
    django_app: ModuleType,
) -> None:
    """With ``SESSION_SAVE_EVERY_REQUEST = True`` (a common Django setting), a request of
    a bound session without a bound cookie is refused (401) by satchel's SessionMiddleware,
    which forgets the session; but Django's own ``process_response`` still runs for that
    401: it saves the forgotten, empty session and sets ``sessionid=None``. A refusal must
    carry nothing of the session (the other paths send it bare): here it overwrites the
    browser's session cookie, logging the owner out whenever one of their requests is
    refused (a bound cookie that expired before its refresh came back)."""
    from django.test import override_settings

    from satchel.testing import FakeClock

    clock = FakeClock()
    config = {"store": "memory://", "dbsc": True, "clock": clock}
    with _satchel_settings(config), override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        c = client()
        login = c.post(
            "/login",
            {"username": "alice", "password": "wonderland", "remember": "1"},
            secure=True,
            HTTP_X_CSRFTOKEN=csrf(c),
        )
        assert _bind(c, login).status_code == 200
        session_cookie = c.cookies["sessionid"].value
        del c.cookies["sessionid_bound"]
        clock.advance(120)  # past the settle window, and a "last seen" refresh is due
        refused = c.get("/me", secure=True, HTTP_ACCEPT="application/json")
        assert refused.status_code == 401
        assert "sessionid" not in refused.cookies, refused.cookies["sessionid"].OutputString()
        assert c.cookies["sessionid"].value == session_cookie


def test_clear_site_data_on_logout_is_configurable(django_app: ModuleType) -> None:
    """``SATCHEL["clear_site_data"]``: other directives, or none; a response that is not a
    logout (a login, a write, the logout of an anonymous visitor) never carries it."""
    base = {"store": _store_of_app()}
    for config, expected in (
        ({**base, "clear_site_data": ["cookies", "storage"]}, '"cookies", "storage"'),
        ({**base, "clear_site_data": []}, None),
    ):
        with _satchel_settings(config):
            c = client()
            assert (
                c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c)).headers.get(
                    "Clear-Site-Data"
                )
                is None
            )  # nobody was logged in
            login = log_in(c)
            assert "Clear-Site-Data" not in login.headers
            logout = c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
            assert logout.headers.get("Clear-Site-Data") == expected
    from satchel import ConfigurationError

    with (
        _satchel_settings({**base, "clear_site_data": ["cookie"]}),
        pytest.raises(ConfigurationError, match="clear_site_data"),
    ):
        client().get("/me", secure=True)


def _logout_header(config: dict[str, Any]) -> str | None:
    with _satchel_settings(config):
        c = client()
        log_in(c)
        header = c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c)).headers
        value = header.get("Clear-Site-Data")
        return None if value is None else str(value)


def _store_of_app() -> str:
    from django.conf import settings

    return str(settings.SATCHEL["store"])


def test_end_user_sessions_for_account_code(django_app: ModuleType, tmp_path: Path) -> None:
    """Account disabled, deleted, reset by an administrator (issue 17, ASVS 7.4.2): every
    session of that user ends; other users keep theirs."""
    with _satchel_settings({"store": f"sqlite:///{tmp_path}/accounts.db"}):
        _end_user_sessions()


def _end_user_sessions() -> None:
    from django.contrib.auth.models import User

    from satchel.integrations.django import end_user_sessions

    alice_1, alice_2, bob = client(), client(), client()
    for c, (name, password) in (
        (alice_1, ("alice", "wonderland")),
        (alice_2, ("alice", "wonderland")),
        (bob, ("bob", "builder")),
    ):
        assert log_in(c, name, password).status_code == 200
    alice = User.objects.get(username="alice")
    assert end_user_sessions(str(alice.pk), reason="account_disabled") == 2
    assert alice_1.get("/me", secure=True).status_code == 401
    assert alice_2.get("/me", secure=True).status_code == 401
    assert bob.get("/me", secure=True).json()["user"] == "bob"


def test_sensitive_views_need_a_recent_authentication(django_app: ModuleType) -> None:
    """``require_recent_auth`` and ``reauthenticate`` under Django (issue 17): an old
    authentication sends a browser to /reauth with a safe next, an API client gets 401
    ``reauthentication_required``; the password again gives a new key and opens it."""
    from satchel.testing import FakeClock

    clock = FakeClock()
    with _satchel_settings({"store": _store_of_app(), "clock": clock}):
        c = client()
        assert c.get("/sensitive", secure=True).status_code == 303  # nobody logged in
        log_in(c)
        assert c.get("/sensitive", secure=True).json() == {"done": True}
        clock.advance(301)
        refused = c.get("/sensitive?x=1", secure=True)
        assert (refused.status_code, refused["Location"]) == (
            303,
            "/reauth?next=/sensitive%3Fx%3D1",
        )
        api = c.get("/sensitive", secure=True, HTTP_ACCEPT="application/json")
        assert api.status_code == 401
        assert api.json()["error"] == "reauthentication_required"
        before = c.cookies["sessionid"].value
        wrong = c.post("/reauth", {"password": "nope"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert wrong.status_code == 401
        ok = c.post("/reauth", {"password": "wonderland"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert ok.status_code == 200
        assert c.cookies["sessionid"].value != before  # a new key (ASVS 7.2.4)
        assert c.get("/sensitive", secure=True).json() == {"done": True}


def test_impersonation_under_django(django_app: ModuleType) -> None:
    """``impersonate`` and ``stop_impersonating`` under Django (issue 17): a superuser acts
    as alice (new key, empty data, Django's request.user is alice, her devices list shows
    the session with its impersonator), cannot pass ``require_recent_auth`` as her (403),
    and returns to their own session without a password; others get 403; last_login is
    not touched; the old keys open nothing."""
    from django.contrib.auth.models import User

    if not User.objects.filter(username="root").exists():
        User.objects.create_superuser("root", password="keyholder")
    alice_before = User.objects.get(username="alice").last_login
    events: list[Any] = []
    with _satchel_settings({"store": _store_of_app(), "on_event": events.append}):
        c = client()
        log_in(c, "root", "keyholder")
        c.post("/notes/theme", {"value": "dark"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        admin_key = c.cookies["sessionid"].value
        started = c.post(
            "/impersonate", {"username": "alice"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c)
        )
        assert started.json() == {"user": "alice", "impersonator": "root"}
        acting_key = c.cookies["sessionid"].value
        assert acting_key != admin_key
        me = c.get("/me", secure=True).json()
        assert me == {"user": "alice", "data": {}, "impersonator": str(_pk("root"))}
        listed = c.get("/devices", secure=True).json()
        assert str(_pk("root")) in [d["impersonator"] for d in listed]  # (with her own)
        refused = c.get("/sensitive", secure=True)
        assert refused.status_code == 403
        api = c.get("/sensitive", secure=True, HTTP_ACCEPT="application/json")
        assert (api.status_code, api.json()) == (403, {"error": "impersonating"})
        stopped = c.post("/stop-impersonating", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert stopped.json() == {"user": "root"}
        assert c.cookies["sessionid"].value not in (admin_key, acting_key)
        assert c.get("/me", secure=True).json()["impersonator"] is None
        assert c.get("/sensitive", secure=True).json() == {"done": True}
        for old in (admin_key, acting_key):
            stale = client()
            stale.cookies["sessionid"] = old
            assert stale.get("/me", secure=True).status_code == 401
        # only superusers may; stopping needs an impersonation
        other = client()
        log_in(other, "bob", "builder")
        nope = other.post(
            "/impersonate", {"username": "alice"}, secure=True, HTTP_X_CSRFTOKEN=csrf(other)
        )
        assert nope.status_code == 403
        nope = other.post("/stop-impersonating", secure=True, HTTP_X_CSRFTOKEN=csrf(other))
        assert nope.status_code == 403
    assert User.objects.get(username="alice").last_login == alice_before
    kinds = [(e.kind, e.reason, e.impersonator) for e in events if e.kind == "impersonation"]
    assert kinds == [("impersonation", "started", str(_pk("root"))),
                     ("impersonation", "stopped", str(_pk("root")))]  # fmt: skip


def test_django_ending_the_administrators_sessions_ends_their_impersonation(
    django_app: ModuleType, tmp_path: Path
) -> None:
    """Django (issue 17's attack pass, tests/test_attack_17.py for the other paths):
    ``end_user_sessions(<root's pk>)`` (the same engine flows) ends the session where root
    acts as alice."""
    from django.contrib.auth.models import User

    from satchel.integrations.django import end_user_sessions

    if not User.objects.filter(username="root").exists():
        User.objects.create_superuser("root", password="keyholder")
    with _satchel_settings({"store": f"sqlite:///{tmp_path}/att17.db"}):
        c = client()
        log_in(c, "root", "keyholder")
        c.post("/impersonate", {"username": "alice"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert c.get("/me", secure=True).json()["impersonator"] == str(_pk("root"))
        end_user_sessions(str(_pk("root")), reason="account_disabled")
        assert c.get("/me", secure=True).status_code == 401
        stop = c.post("/stop-impersonating", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
        assert stop.status_code in (401, 403)
        assert c.get("/me", secure=True).status_code == 401


def _pk(username: str) -> int:
    from django.contrib.auth.models import User

    return int(User.objects.get(username=username).pk)


# -- OpenTelemetry (docs/observability.md; the other paths in tests/test_opentelemetry.py) -------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_opentelemetry_sees_djangos_sessions_and_store_calls(
    django_app: ModuleType, kind: str, tmp_path: Path
) -> None:
    """The one instrumentation point serves Django's session engine too: its sessions are
    counted and its store calls timed and traced, with no key or user in any attribute."""
    import uuid

    from satchel import ids

    from .services import store_url
    from .test_opentelemetry import Telemetry

    url = (
        f"sqlite:///{tmp_path}/otel.db"
        if kind == "sqlite"
        else store_url(f"redis://127.0.0.1:6379/0?prefix=otel{uuid.uuid4().hex[:12]}:", tmp_path)
    )
    telemetry = Telemetry()
    try:
        with _satchel_settings({"store": url}):
            c = client()
            c.post("/notes/pre", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
            before = c.cookies["sessionid"].value
            assert log_in(c).status_code == 200
            after = c.cookies["sessionid"].value
            c.post("/notes/post", {"value": "2"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
            assert c.get("/me", secure=True).json()["user"] == "alice"
            c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    finally:
        telemetry.close()
    assert telemetry.count("satchel.sessions.created") == 1
    assert telemetry.count("satchel.sessions.regenerated") == 1
    assert telemetry.count("satchel.sessions.destroyed") == 1
    for operation in ("load", "create", "create_indexed", "update", "delete"):
        assert telemetry.count("satchel.store.duration", kind=kind, operation=operation) >= 1
    assert {s.name for s in telemetry.spans()} >= {"satchel.store.load", "satchel.store.delete"}
    secrets = [x for key in (before, after) for x in (key, ids.store_key(key))]
    telemetry.assert_nothing_personal(*secrets, "alice")


# --8<-- [start:migration]
def test_migrating_from_djangos_sessions_means_one_new_login(django_app: ModuleType) -> None:
    """examples/migrations/from_django_sessions.py: the example's views, unchanged, under
    Django's database sessions and then under satchel. A session key Django issued is not
    one satchel issued: the user is anonymous and logs in again, once."""
    import importlib.util

    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    from satchel.integrations.django import runtime
    from satchel.integrations.django_dbsc import _policy

    path = EXAMPLES / "migrations" / "from_django_sessions.py"
    spec = importlib.util.spec_from_file_location("example_migrate_django", path)
    assert spec is not None
    assert spec.loader is not None
    migrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migrate)

    with override_settings(**migrate.BEFORE):
        call_command("migrate", "sessions", verbosity=0)
        c = client()
        assert log_in(c).json() == {"user": "alice"}
        assert c.get("/me", secure=True).json()["user"] == "alice"
        old_key = c.cookies["sessionid"].value
        from django.contrib.sessions.models import Session as DjangoSession

        assert DjangoSession.objects.filter(session_key=old_key).exists()

    after = {**migrate.AFTER, "SATCHEL": settings.SATCHEL}  # this test's store
    runtime.cache_clear()
    _policy.cache_clear()
    try:
        with override_settings(**after):
            browser = client()
            browser.cookies["sessionid"] = old_key  # the cookie the browser still holds
            assert browser.get("/me", secure=True).status_code == 401  # not logged in
            assert log_in(browser).json() == {"user": "alice"}  # one new login
            assert browser.cookies["sessionid"].value != old_key
            assert browser.get("/me", secure=True).json()["user"] == "alice"
    finally:
        runtime.cache_clear()
        _policy.cache_clear()


# --8<-- [end:migration]
