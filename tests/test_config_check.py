"""``satchel config check``: every bad setting fails with exit 1 and a message naming it,
``--connect`` reaches the store, ``--json`` is JSON in every case; and no secret (a store
password, raw or percent-encoded; any character of a secret key) reaches the output, the
logs or an error's text."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from satchel import ConfigurationError
from satchel.cli import main
from satchel.errors import StoreError
from satchel.stores.registry import store_from_url

from .conftest import KEY

PASSWORD = "p@ss:w/rd%secret"  # characters a URL must percent-encode
ENCODED = "p%40ss%3Aw%2Frd%25secret"
SECRETS = (PASSWORD, ENCODED, "p@ss", "w/rd%secret", KEY, KEY[:8], KEY[-8:])
DEAD = "127.0.0.1:1"  # nothing listens on port 1


def run(*args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"SATCHEL_SECRET_KEYS": KEY, **env})
    return result.exit_code, result.output


def check_json(*args: str, **env: str) -> tuple[int, dict[str, object]]:
    code, out = run("config", "check", "--json", *args, **env)
    return code, json.loads(out)  # JSON whatever happened


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} printed in {text!r}"


# -- failures name the setting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SATCHEL_STORE": "rediz://localhost/0"}, ["store", "unknown scheme"]),
        ({"SATCHEL_REVOCATION_STORE": "nosql://x"}, ["revocation_store", "unknown scheme"]),
        ({"SATCHEL_IDLE_TIMEOUT": "7200", "SATCHEL_ABSOLUTE_TIMEOUT": "3600"}, ["idle_timeout"]),
        ({"SATCHEL_SECRET_KEYS": "short"}, ["secret_keys"]),
        ({"SATCHEL_COOKIE_SAMESITE": "sometimes"}, ["samesite"]),
    ],
)
def test_config_check_fails_naming_the_setting(env: dict[str, str], names: list[str]) -> None:
    code, out = run("config", "check", **env)
    assert code == 1
    assert all(name in out for name in names), out
    code, doc = check_json(**env)
    assert code == 1
    assert doc["valid"] is False
    assert all(name in str(doc["error"]) for name in names)


def test_invalid_toml_is_reported_as_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("store = [unclosed")
    code, out = run("--config", str(bad), "config", "check", "--json")
    assert code == 1
    assert "not valid TOML" in json.loads(out)["error"]


_BLOCK_IMPORT = """
import sys
from importlib.abc import MetaPathFinder

class Uninstalled(MetaPathFinder):
    '''As if the package were not installed: its import fails like a missing module's.'''
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
for name in [m for m in sys.modules if m.partition(".")[0] == sys.argv[1]]:
    del sys.modules[name]
from satchel.cli import main
main(sys.argv[2:], prog_name="satchel")
"""


@pytest.mark.parametrize(
    ("driver", "url", "extra"),
    [
        ("redis", "redis://localhost:6379/0", "redis"),
        ("redis", "redis+sentinel://localhost:26379/mymaster", "redis"),
        ("psycopg_pool", "postgresql://postgres@localhost/test", "postgres"),
        ("pymysql", "mysql://root@localhost/test", "mysql"),
        ("pymemcache", "memcached://localhost:11211", "memcached"),
    ],
)
def test_missing_driver_names_the_extra(driver: str, url: str, extra: str) -> None:
    env = {**os.environ, "SATCHEL_SECRET_KEYS": KEY, "SATCHEL_STORE": url}
    for flags in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-c", _BLOCK_IMPORT, driver, "config", "check", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        out = done.stdout + done.stderr
        if flags:
            doc = json.loads(done.stdout)
            assert doc["valid"] is False
            out = doc["error"]
        assert f'pip install "satchel[{extra}]"' in out
        assert out.startswith(("store: ", "Error: store: "))
        assert repr(driver) in out


def test_connect_tries_the_store() -> None:
    code, out = run("config", "check", "--connect", SATCHEL_STORE="redis://127.0.0.1:6379/0")
    assert code == 0, out
    assert "the store answers" in out
    code, doc = check_json("--connect", SATCHEL_STORE="redis://127.0.0.1:6379/0")
    assert (code, doc["valid"], doc["connected"]) == (0, True, True)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{ENCODED}@{DEAD}/0?socket_timeout=1",
        f"postgresql://app:{ENCODED}@{DEAD}/test?timeout=1",
        f"mysql://root:{ENCODED}@{DEAD}/test?timeout=1",
        f"postgresql://app@{DEAD}/test?timeout=1&password={ENCODED}",
    ],
)
def test_connect_fails_in_one_line_on_an_unreachable_store(url: str) -> None:
    code, out = run("config", "check", "--connect", SATCHEL_STORE=url)
    assert code == 1
    assert out.startswith("Error: store: cannot reach ")
    assert len(out.strip().splitlines()) == 1
    assert_no_secret(out)
    code, doc = check_json("--connect", SATCHEL_STORE=url)
    assert code == 1
    assert "cannot reach" in str(doc["error"])
    assert_no_secret(json.dumps(doc))


def test_without_connect_nothing_is_touched(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    code, _ = run("config", "check", SATCHEL_STORE=f"sqlite:///{db}")
    assert code == 0
    assert not db.exists()


# -- secrets never print -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        'postgresql://app@db.internal/app?password=Xy"SECRETPART',
        "redis://cache.internal:6379/0?password=Xy'SECRETPART",
        "redis://cache.internal:6379/0?password=Xy;SECRETPART&prefix=a:",
        "redis://:Xy#SECRETPART@cache.internal:6379/0",
        "postgresql://app:Xy SECRETPART@db.internal/app",
    ],
)
def test_passwords_with_quotes_semicolons_hashes_or_spaces_are_masked_whole(url: str) -> None:
    """Drivers accept these characters unencoded: the mask covers the whole password."""
    env = {"SATCHEL_STORE": url}
    for args in ((), ("--json",)):
        code, out = run("config", "check", *args, **env)
        assert code == 0, out
        assert "SECRETPART" not in out
        assert "***" in out


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{ENCODED}@db.internal/app",
        f"redis://:{ENCODED}@cache.internal:6379/0",
        f"redis://default:{PASSWORD}@cache.internal:6379/0",  # not even encoded
        f"mysql://root@db.internal/app?password={ENCODED}",
        f"redis+sentinel://:{ENCODED}@s1:26379,s2:26379/main",
    ],
)
def test_config_check_masks_passwords_and_keys(url: str) -> None:
    old = "o" * 40
    env = {"SATCHEL_STORE": url, "SATCHEL_SECRET_KEYS": f"{KEY},{old}"}
    code, out = run("config", "check", **env)
    assert code == 0, out
    assert_no_secret(out.replace("***", ""))
    assert old not in out
    code, doc = check_json(**env)
    assert code == 0
    text = json.dumps(doc)
    assert_no_secret(text)
    assert old[:8] not in text
    assert "***" in doc["settings"]["store"]["value"]  # type: ignore[index]
    keys = doc["settings"]["secret_keys"]["value"]  # type: ignore[index]
    assert [k.startswith("***(") for k in keys] == [True, True]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{ENCODED}@db/app?timeout=soon",  # invalid option: the URL is echoed
        f"rediz://:{ENCODED}@cache/0",  # unknown scheme
        f"memory://:{ENCODED}@x?max_entries=many",
        # a parameter satchel's Sentinel store does not read: refused, its value masked
        f"redis+sentinel://s1:26379,s2:26379/main?sentinel_password={ENCODED}",
    ],
)
def test_configuration_errors_echo_urls_masked(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    assert "***" in str(caught.value)
    assert_no_secret(str(caught.value))
    code, out = run("config", "check", "--connect", SATCHEL_STORE=url)
    assert code == 1
    assert_no_secret(out)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{ENCODED}@{DEAD}/0?socket_timeout=1",
        f"postgresql://app:{ENCODED}@{DEAD}/test?timeout=1",
        f"mysql://root:{ENCODED}@{DEAD}/test?timeout=1",
    ],
)
def test_store_errors_and_logs_hold_no_password(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = store_from_url(url)
    try:
        with pytest.raises(StoreError) as caught:
            store.load("0" * 64, 0.0)
    finally:
        store.close()
    assert "unavailable" in str(caught.value)
    assert_no_secret(str(caught.value))
    assert_no_secret(caplog.text)


def test_demo_banner_masks_the_store_password(tmp_path: Path) -> None:
    """The banner the demo prints before serving (the server itself is not started)."""
    script = (
        "import sys, uvicorn\n"
        "uvicorn.run = lambda *a, **k: None\n"
        "from satchel.cli import main\n"
        "main(sys.argv[1:], prog_name='satchel')\n"
    )
    env = {
        **os.environ,
        "SATCHEL_SECRET_KEYS": KEY,
        "SATCHEL_STORE": f"redis://:{ENCODED}@127.0.0.1:6379/0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, "demo", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "satchel demo on http://127.0.0.1:1/" in done.stdout
    assert "redis://:***@127.0.0.1:6379/0" in done.stdout
    assert_no_secret(done.stdout + done.stderr)


def test_a_store_without_scheme_is_refused_masked() -> None:
    code, out = run("config", "check", SATCHEL_STORE=f"app:{ENCODED}@db.internal/app")
    assert code == 1
    assert "store='app:***@db.internal/app' is not a URL" in out
    assert_no_secret(out)
