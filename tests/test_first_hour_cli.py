"""Issue 15: what a new user hits in the first hour, at the command line and at set-up.

A missing optional package is named with the extra that installs it (the stores, the
demo, the integrations), when the store or command is set up; the admin CLI never
creates an empty SQLite database by accident, says which store it opened, prints times
with their time zone, and keeps its exit codes apart (1 an error, 2 usage, 3 the store
is unavailable)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from satchel.cli import main

from .conftest import KEY

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
exec(sys.argv[2])
"""


def _without(package: str, code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SATCHEL_SECRET_KEYS": KEY}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_IMPORT, package, code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("package", "extra"),
    [("uvicorn", "demo"), ("starlette", "demo"), ("python_multipart", "demo")],
)
def test_demo_without_its_packages_names_the_extra(package: str, extra: str) -> None:
    done = _without(package, "from satchel.cli import main; main(['demo', '--store', 'memory://'])")
    assert done.returncode == 1
    name = package.replace("_", "-")
    assert done.stderr.strip() == (
        f'Error: satchel demo needs {name}, which is not installed: pip install "satchel[{extra}]"'
    )


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("flask", "flask", "flask"),
        ("flask", "werkzeug", "flask"),
        ("fastapi", "fastapi", "fastapi"),
        ("django", "django", "django"),
        ("django_dbsc", "django", "django"),
        ("django_expiry", "django", "django"),
        ("litestar", "litestar", "litestar"),
        ("falcon", "falcon", "falcon"),
        ("quart", "quart", "quart"),
        ("quart", "werkzeug", "quart"),
        ("aiohttp", "aiohttp", "aiohttp"),
    ],
)
def test_an_integration_without_its_framework_names_the_extra(
    module: str, package: str, extra: str
) -> None:
    done = _without(package, f"import satchel.integrations.{module}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ModuleNotFoundError: this satchel integration needs {package!r}, which is not "
        f'installed: pip install "satchel[{extra}]"'
    )


@pytest.mark.parametrize(
    ("package", "url", "extra"),
    [
        ("redis", "redis://127.0.0.1:6379/0", "redis"),
        ("psycopg", "postgresql://u@127.0.0.1/db", "postgres"),
        ("pymysql", "mysql://u@127.0.0.1/db", "mysql"),
        ("pymemcache", "memcached://127.0.0.1:11211", "memcached"),
    ],
)
def test_a_missing_driver_is_named_when_the_middleware_is_built(
    package: str, url: str, extra: str
) -> None:
    """At set-up, not as a ModuleNotFoundError at the first request."""
    code = (
        "from satchel.asgi import SessionMiddleware\n"
        "from satchel.errors import ConfigurationError\n"
        "try:\n"
        f"    SessionMiddleware(None, store={url!r}, secret_keys=[{KEY!r}])\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = _without(package, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        f"store needs the Python package {package!r}, which is not installed; install it "
        f'with pip install "satchel[{extra}]"'
    )


# -- the admin commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "list"],
        ["sessions", "stats"],
        ["sessions", "purge"],
        ["sessions", "revoke", "--user", "alice"],
        ["sessions", "revoke", "--handle", "h"],
    ],
)
def test_admin_commands_never_create_an_sqlite_file(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*command, "--store", "sqlite:///typo.db"], env={})
    assert result.exit_code == 1
    assert result.output == (
        f"Error: no session store at {tmp_path / 'typo.db'} (store sqlite:///typo.db, from "
        "argument): check the path and the working directory, or create it with "
        "`satchel db init`\n"
    )
    assert not (tmp_path / "typo.db").exists()


def test_db_init_creates_it_and_every_command_says_which_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"SATCHEL_STORE": "sqlite:///s.db"}
    init = CliRunner().invoke(main, ["db", "init"], env=env)
    assert (init.exit_code, init.stdout, init.stderr) == (
        0,
        "session table ready (SQLiteStore)\n",
        "store: sqlite:///s.db (from SATCHEL_STORE)\n",
    )
    for command in (["sessions", "list"], ["sessions", "stats"], ["sessions", "purge"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 0, result.output
        assert result.stderr == "store: sqlite:///s.db (from SATCHEL_STORE)\n"


def test_the_store_line_masks_the_password() -> None:
    """(The local Redis has no password: its default user takes any in AUTH with a user
    name; a password alone, RESP2's AUTH, is refused, and the line is masked still.)"""
    url = "redis://default:hunter2@127.0.0.1:6379/15"
    result = CliRunner().invoke(main, ["sessions", "stats", "--store", url], env={})
    assert result.exit_code == 0, result.output
    assert result.stderr == "store: redis://default:***@127.0.0.1:6379/15 (from argument)\n"
    url = "redis://:hunter2@127.0.0.1:6379/15"
    result = CliRunner().invoke(main, ["sessions", "stats", "--store", url], env={})
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("store: redis://:***@127.0.0.1:6379/15 (from argument)\n")
    assert "hunter2" not in result.output


def test_revoking_nothing_exits_1_by_user_and_by_handle() -> None:
    for flags in (["--user", "nobody"], ["--handle", "nothing"]):
        result = CliRunner().invoke(main, ["sessions", "revoke", *flags, "--store", "memory://"])
        assert (result.exit_code, result.stdout) == (1, "revoked 0 session(s)\n")


def test_times_carry_their_time_zone(tmp_path: Path) -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from satchel.asgi import SessionMiddleware
    from satchel.auth import login

    from .helpers import session_of

    async def do_login(request: Request) -> Response:
        login(session_of(request), "alice")
        return PlainTextResponse("in")

    url = f"sqlite:///{tmp_path}/s.db"
    from starlette.applications import Starlette

    app = SessionMiddleware(Starlette(routes=[Route("/", do_login)]), store=url, secret_keys=[KEY])
    TestClient(app, base_url="https://testserver").get("/")
    assert app.store is not None
    app.store.close()
    result = CliRunner().invoke(main, ["sessions", "list", "--store", url], env={})
    assert result.exit_code == 0, result.output
    row = result.stdout.splitlines()[1]
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row)) == 3


def test_masked_keys_print_real_characters() -> None:
    result = CliRunner().invoke(main, ["config", "check"], env={"SATCHEL_SECRET_KEYS": KEY})
    assert result.exit_code == 0
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("secret_keys")]
    assert re.search(r'\["\*\*\*\(\d+ chars, id [A-Za-z0-9_-]+\)"\]', line)
    assert line.isascii()


def test_a_busy_port_is_a_plain_error_not_the_store_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["demo", "--store", "memory://", "--port", str(port)],
            env={"SATCHEL_SECRET_KEYS": KEY},
        )
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "port with --port (or stop what is using it)\n"
    )


def test_the_exit_codes_are_in_the_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "Exit codes: 0 success; 1 an error" in " ".join(result.output.split())
    assert "3 the store is unavailable" in " ".join(result.output.split())
