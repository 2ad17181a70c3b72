"""Issue 15: store errors say what to do, in one line.

Unknown URL parameters are refused on every store, naming the closest and every valid
one (satchel's, and the driver's where the rest of the query goes to one); a PostgreSQL
database that does not exist is named at once (not after the pool's 5 s of retries and
their log lines); MariaDB errors say more than ``OperationalError``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from satchel.errors import ConfigurationError, StoreUnavailable
from satchel.stores.registry import store_from_url

from .conftest import KEY
from .services import port_open, unavailable


@pytest.mark.parametrize(
    ("url", "start", "listed"),
    [
        (
            "redis://127.0.0.1:6379/0?tabel=x",
            "store URL 'redis://127.0.0.1:6379/0?tabel=x': unknown parameter 'tabel'; valid "
            "parameters: satchel's: connect_timeout, max_connections, prefix, "
            "sentinel_check_interval, socket_timeout, wait_replicas, wait_timeout; redis-py's: ",
            ["health_check_interval", "db", "client_name"],
        ),
        (
            "rediss://:pw@127.0.0.1:6379/0?prefx=app:",
            "store URL 'rediss://:***@127.0.0.1:6379/0?prefx=app:': unknown parameter 'prefx' "
            "(did you mean 'prefix'?); valid parameters: satchel's: ",
            ["ssl_cert_reqs", "ssl_ca_certs"],
        ),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster?db=2",
            "store URL 'redis+sentinel://127.0.0.1:26379/mymaster?db=2': unknown parameter 'db'; "
            "valid parameters: satchel's: connect_timeout, max_connections, prefix, "
            "sentinel_check_interval, socket_timeout, wait_replicas, wait_timeout",
            [],
        ),
        (
            "redis+cluster://127.0.0.1:7000?tabel=x",
            "store URL 'redis+cluster://127.0.0.1:7000?tabel=x': unknown parameter 'tabel'; "
            "valid parameters: satchel's: connect_timeout,",
            [],
        ),
        (
            "postgresql://app:secret@127.0.0.1/app?tabel=x",
            "store URL 'postgresql://app:***@127.0.0.1/app?tabel=x': unknown parameter 'tabel' "
            "(did you mean 'table'?); valid parameters: satchel's: max_size, min_size, table, "
            "timeout; libpq's: ",
            ["sslmode", "application_name", "connect_timeout"],
        ),
        (
            "mysql://root@127.0.0.1/test?tabel=x",
            "store URL 'mysql://root@127.0.0.1/test?tabel=x': unknown parameter 'tabel' (did "
            "you mean 'table'?); valid parameters: satchel's: max_overflow, pool_size, table, "
            "timeout; PyMySQL/aiomysql's: ",
            ["charset", "ssl_ca", "connect_timeout"],
        ),
        (
            "mariadb://root@127.0.0.1/test?pool_sise=3",
            "store URL 'mariadb://root@127.0.0.1/test?pool_sise=3': unknown parameter "
            "'pool_sise' (did you mean 'pool_size'?)",
            [],
        ),
        (
            "memcached://127.0.0.1:11211?prefx=a",
            "store URL 'memcached://127.0.0.1:11211?prefx=a': unknown parameter 'prefx' (did "
            "you mean 'prefix'?); valid parameters: satchel's: max_pool_size, prefix, timeout",
            [],
        ),
    ],
)
def test_unknown_url_parameters_are_refused_on_every_store(
    url: str, start: str, listed: list[str]
) -> None:
    """Before any connection: nothing listens on these ports for the refusal to show."""
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    message = str(caught.value)
    assert message.startswith(start)
    assert "\n" not in message
    for name in listed:
        assert name in message


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?health_check_interval=5&client_name=app&socket_timeout=1",
        "postgresql://u@127.0.0.1:1/db?sslmode=disable&application_name=x&table=s",
        "mysql://u@127.0.0.1:1/db?charset=utf8mb4&connect_timeout=2&table=s",
        "memcached://127.0.0.1:1?prefix=a&timeout=1",
    ],
)
def test_the_drivers_own_parameters_still_pass(url: str) -> None:
    store_from_url(url).close()


def test_a_postgres_database_that_does_not_exist_is_named_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    store = store_from_url("postgresql://postgres@127.0.0.1:5432/nosuchdb?timeout=5")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailable) as caught:
        store.load("k" * 43, time.time())
    elapsed = time.monotonic() - started
    store.close()
    message = str(caught.value)
    assert message.startswith("PostgreSQL store unavailable: ")
    assert message.endswith('FATAL: database "nosuchdb" does not exist')
    assert "\n" not in message
    assert elapsed < 3, elapsed  # not the pool's 5 s timeout
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]


@pytest.mark.anyio
async def test_the_async_path_names_it_too() -> None:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    store = store_from_url("postgresql://postgres@127.0.0.1:5432/nosuchdb")
    with pytest.raises(StoreUnavailable, match='database "nosuchdb" does not exist'):
        await store.aload("k" * 43, time.time())
    await store.aclose()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://root@127.0.0.1:3306/nosuchdb", "1049: Unknown database 'nosuchdb'"),
        ("mysql://nobody:bad@127.0.0.1:3306/test", "Access denied for user 'nobody'"),
        ("mysql://root@127.0.0.1:1/test", "2003: Can't connect to MySQL server on '127.0.0.1'"),
    ],
)
def test_mariadb_errors_say_what_the_server_said(url: str, said: str) -> None:
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    store = store_from_url(url + "?timeout=2")
    with pytest.raises(StoreUnavailable) as caught:
        store.load("k" * 43, time.time())
    store.close()
    message = str(caught.value)
    assert message.startswith("MySQL store unavailable: OperationalError ")
    assert said in message
    assert "bad" not in message  # the password


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:///{tmp}/x.db?tabel=x",
            "unknown parameter 'tabel'; valid parameters: satchel's: synchronous, timeout",
        ),
        ("file://{tmp}/files?a=1", "unknown parameter 'a'; valid parameters: satchel's: none"),
        ("memory://?max_entries=abc", "invalid max_entries='abc'"),
        (
            "cookie://?tabel=x",
            "unknown parameter 'tabel'; valid parameters: satchel's: compress, signed",
        ),
        (
            "memcached://127.0.0.1:11211?prefx=a",
            "unknown parameter 'prefx' (did you mean 'prefix'?)",
        ),
        ("redis+cluster://127.0.0.1:7000?tabel=1", "unknown parameter 'tabel'"),
    ],
)
def test_config_check_refuses_bad_parameters_without_connecting_or_creating(
    url: str, message: str, tmp_path: Path
) -> None:
    """``satchel config check`` (no ``--connect``) reads every store URL's parameters, as
    the middleware would, and creates no file or directory doing it."""
    from click.testing import CliRunner

    from satchel.cli import main

    env = {"SATCHEL_SECRET_KEYS": KEY, "SATCHEL_STORE": url.format(tmp=tmp_path)}
    result = CliRunner().invoke(main, ["config", "check"], env=env)
    assert result.exit_code == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_cookie_store_refuses_unknown_parameters_at_start() -> None:
    from starlette.applications import Starlette

    from satchel.asgi import SessionMiddleware

    with pytest.raises(ConfigurationError, match="unknown parameter 'compres'"):
        SessionMiddleware(Starlette(), "cookie://?compres=1", secret_keys=[KEY])


def test_a_misspelt_middleware_keyword_is_pointed_at_the_right_one() -> None:
    from starlette.applications import Starlette

    from satchel.asgi import SessionMiddleware

    with pytest.raises(ConfigurationError, match="did you mean 'on_csrf_failure'"):
        SessionMiddleware(Starlette(), "memory://", secret_keys=[KEY], on_csrf_failur=None)  # type: ignore[call-arg]


def test_config_check_takes_the_store_as_the_other_commands_do(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from satchel.cli import main

    env = {"SATCHEL_SECRET_KEYS": KEY}
    bad = CliRunner().invoke(
        main, ["config", "check", "--store", "sqlite:///x.db?tabel=1"], env=env
    )
    assert bad.exit_code == 1
    assert "unknown parameter 'tabel'" in bad.output
    good = CliRunner().invoke(main, ["config", "check", "--store", "memory://"], env=env)
    assert good.exit_code == 0, good.output
    assert "memory://" in good.output
