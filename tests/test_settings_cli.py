"""The settings loader (defaults < TOML < environment < arguments) and the admin CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from satchel import ConfigurationError, SQLiteStore, ids
from satchel.cli import main
from satchel.dbsc.state import DeviceState
from satchel.ops import drive
from satchel.record import Record
from satchel.redact import mask_key
from satchel.settings import load_settings
from satchel.testing.conformance import _meta, login_request, request

from .conftest import KEY
from .helpers import make_engine

TOML = f"""
store = "sqlite:///from-toml.db"
secret_keys = ["{KEY}"]
idle_timeout = 600
trusted_proxies = ["10.0.0.0/8"]
max_sessions_per_user = 5

[cookie]
name = "__Host-app"
samesite = "strict"

[csrf]
enabled = true
exempt = ["/hooks/*"]
"""


def test_precedence_defaults_toml_env_arguments(tmp_path: Path) -> None:
    path = tmp_path / "satchel.toml"
    path.write_text(TOML)
    settings = load_settings(path, env={})
    assert settings.store == "sqlite:///from-toml.db"
    assert settings.idle_timeout == 600
    assert settings.absolute_timeout == 12 * 3600  # default
    assert (settings.cookie_name, settings.cookie_samesite) == ("__Host-app", "strict")
    assert settings.csrf_exempt == ("/hooks/*",)
    assert settings.sources["idle_timeout"] == str(path)
    env = {"SATCHEL_IDLE_TIMEOUT": "900", "SATCHEL_STORE": "memory://", "SATCHEL_CSRF": "off"}
    settings = load_settings(path, env=env)
    assert (settings.idle_timeout, settings.store, settings.csrf) == (900, "memory://", False)
    assert settings.sources["store"] == "SATCHEL_STORE"
    settings = load_settings(path, env=env, store="redis://localhost/0", idle_timeout=None)
    assert settings.store == "redis://localhost/0"
    assert settings.idle_timeout == 900  # None arguments do not override
    options = settings.middleware_options()
    assert options["secret_keys"] == [KEY]
    assert options["trusted_proxies"] == ["10.0.0.0/8"]
    assert "store" not in options


def test_satchel_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(TOML)
    assert load_settings(env={"SATCHEL_CONFIG": str(path)}).idle_timeout == 600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "secret_keys is not set"),
        ({"SATCHEL_SECRET_KEYS": "short"}, r"secret_keys\[0\] is shorter than 32"),
        ({"SATCHEL_IDLE_TIMEOUT": "soon"}, "idle_timeout .from SATCHEL_IDLE_TIMEOUT.: invalid"),
        ({"SATCHEL_COOKIE_SECURE": "maybe"}, "use true or false"),
        ({"SATCHEL_COOKIE_SAMESITE": "none", "SATCHEL_COOKIE_SECURE": "0"}, "requires secure"),
        ({"SATCHEL_TRUSTED_PROXIES": "nope"}, "trusted_proxies"),
        ({"SATCHEL_STORE": "sessions.db"}, "not a URL"),
        ({"SATCHEL_MAX_SESSIONS_PER_USER": "0"}, "between 1 and 1000"),
        ({"SATCHEL_MAX_SESSIONS_PER_USER": "1001"}, "between 1 and 1000"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    env = {"SATCHEL_SECRET_KEYS": KEY, **env} if "SATCHEL_SECRET_KEYS" not in env and env else env
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env=env)


def test_bad_toml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("store = [unclosed")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(bad, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('stor = "memory://"')
    with pytest.raises(
        ConfigurationError, match=r"unknown option 'stor' \(did you mean 'store'\?\)"
    ):
        load_settings(unknown, env={})


def test_middleware_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.applications import Starlette

    from satchel.asgi import SessionMiddleware

    monkeypatch.setenv("SATCHEL_COOKIE_NAME", "from-env")
    monkeypatch.setenv("SATCHEL_IDLE_TIMEOUT", "5")
    app = SessionMiddleware(Starlette(), store="memory://", secret_keys=[KEY])
    assert app.policy.cookie.name == "satchel"
    assert app.backend.expiry.idle_timeout == 30 * 60  # type: ignore[attr-defined]


# -- CLI ----------------------------------------------------------------------------------------


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    # what a command prints; on stderr only "store: ..." (which store it opened) and errors
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_config_check_masks_secrets_and_fails_when_invalid(tmp_path: Path) -> None:
    env = {
        "SATCHEL_SECRET_KEYS": KEY,
        "SATCHEL_STORE": "postgresql://app:hunter2@db.internal/app",
    }
    code, out = run("config", "check", env=env)
    assert code == 0
    assert "configuration is valid" in out
    assert KEY not in out
    assert "hunter2" not in out
    assert "SATCHEL_STORE" in out
    code, out = run("config", "check", "--json", env=env)
    doc = json.loads(out)
    assert doc["valid"] is True
    assert doc["settings"]["secret_keys"]["value"] == [mask_key(KEY)]
    assert mask_key(KEY).startswith(f"***({len(KEY)} chars, id ")
    code, out = run("config", "check", env={"SATCHEL_SECRET_KEYS": "short"})
    assert code == 1
    assert "shorter than 32 characters" in out
    path = tmp_path / "satchel.toml"
    path.write_text(TOML)
    code, out = run("--config", str(path), "config", "check")
    assert code == 0
    assert "__Host-app" in out


@pytest.fixture
def populated(tmp_path: Path) -> str:
    """A SQLite store with alice on two devices, bob on one, and three expired records."""
    store = SQLiteStore(tmp_path / "s.db")
    engine = make_engine()
    for user in ("alice", "alice", "bob"):
        drive(login_request(engine, user), store)
    drive(request(engine, None, cart=[1]), store)
    for _ in range(3):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(time.time() - 10**5)))
    store.close()
    return f"sqlite:///{tmp_path}/s.db"


def test_sessions_list_shows_device_bound_sessions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    bound = DeviceState({"kty": "EC"}, "key-id", 1, 1).encode()
    for device in (bound, None):
        meta = _meta(time.time(), user_id="carol")._replace(device=device)
        store.create(ids.store_key(ids.new_session_id()), Record({}, meta))
    store.close()
    code, out = run("sessions", "list", "--store", f"sqlite:///{tmp_path}/s.db")
    assert code == 0
    assert sorted(line.split()[-1] for line in out.splitlines()[1:]) == ["-", "bound"]
    code, out = run("sessions", "list", "--json", "--store", f"sqlite:///{tmp_path}/s.db")
    assert sorted(r["device_bound"] for r in json.loads(out)) == [False, True]


def test_sessions_list_stats_revoke_purge(populated: str) -> None:
    code, out = run("sessions", "list", "--store", populated)
    assert code == 0
    assert out.splitlines()[0].split() == [
        "handle",
        "user",
        "device",
        "ip",
        "created",
        "last",
        "seen",
        "expires",
        "dbsc",
    ]
    assert len(out.splitlines()) == 5
    code, out = run("sessions", "list", "--user", "alice", "--json", "--store", populated)
    rows = json.loads(out)
    assert [r["user_id"] for r in rows] == ["alice", "alice"]
    assert all(set(r) >= {"handle", "created", "last_seen", "client_ip"} for r in rows)
    code, out = run("sessions", "stats", "--json", "--store", populated)
    assert json.loads(out) == {
        "live_sessions": 4,
        "users_logged_in": 2,
        "expired_awaiting_purge": 3,
    }
    code, out = run("sessions", "revoke", "--handle", rows[0]["handle"], "--store", populated)
    assert (code, out.strip()) == (0, "revoked 1 session(s)")
    code, out = run("sessions", "revoke", "--user", "bob", "--json", "--store", populated)
    assert json.loads(out) == {"revoked": 1}
    code, out = run("sessions", "revoke", "--handle", "no-such", "--store", populated)
    assert code == 1
    code, out = run("sessions", "revoke", "--store", populated)
    assert code == 2
    assert "give --user, --handle" in out
    code, out = run("sessions", "purge", "--json", "--store", populated)
    assert json.loads(out) == {"purged": 3}


def test_purge_shows_progress_on_large_stores(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "big.db")
    old = _meta(time.time() - 10**5)
    for _ in range(1200):
        store.create(ids.store_key(ids.new_session_id()), Record({}, old))
    store.close()
    result = CliRunner().invoke(
        main, ["sessions", "purge", "--store", f"sqlite:///{tmp_path}/big.db"], env={}
    )
    assert result.exit_code == 0
    assert "purged 1200 expired session(s)" in result.output
    assert "purging" in result.stderr  # the progress bar


def test_store_unavailable_exits_3() -> None:
    code, out = run(
        "sessions", "stats", "--store", "postgresql://postgres@127.0.0.1:1/test?timeout=1"
    )
    assert code == 3
    assert "unavailable" in out


def test_cookie_store_has_nothing_to_administer() -> None:
    code, out = run("sessions", "list", "--store", "cookie://")
    assert code == 1
    assert "browsers" in out
