"""MariaDB/MySQL: user IDs that differ only by trailing spaces are different users.

MariaDB's ``utf8mb4_bin`` is a PAD SPACE collation (``'alice' = 'alice '``), so satchel
0.1's ``VARCHAR ... utf8mb4_bin`` user column listed and revoked alice's sessions for
``"alice "`` and counted them against its per-user cap. Tested on the real server, on a
fresh table and on a table made with the 0.1 schema (converted by the schema step).
"""

from __future__ import annotations

import pymysql
import pytest

from satchel.engine import Engine, drive
from satchel.expiry import ExpiryPolicy
from satchel.stores.mysql import MySQLStore
from satchel.testing.conformance import login_request
from satchel.user_sessions import UserSessions

from .conftest import KEY

BASE = "mysql://root@127.0.0.1:3306/test"
OLD_SCHEMA = """
CREATE TABLE {t} (
    skey CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY, data LONGTEXT NOT NULL,
    meta TEXT NOT NULL, last_seen DOUBLE NOT NULL, idle_timeout DOUBLE NOT NULL,
    absolute_deadline DOUBLE NOT NULL, expires_at DOUBLE NOT NULL,
    user_id VARCHAR(255) NULL, handle VARCHAR(32) NOT NULL, version BIGINT NOT NULL,
    INDEX {t}_expires_at (expires_at), INDEX {t}_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"""


def _sql(statement: str) -> tuple[tuple[object, ...], ...]:
    conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return tuple(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def table(mariadb_table: str) -> str:
    return mariadb_table


def engine(cap: int | None = None) -> Engine:
    return Engine(
        secret_keys=[KEY],
        expiry=ExpiryPolicy(),
        max_sessions_per_user=cap,
    )


def check_separate_users(store: MySQLStore) -> None:
    users = UserSessions(store)
    capped = engine(cap=2)
    for user in ("alice", "alice", "alice ", "alice ", "alice  "):
        drive(login_request(capped, user), store)
    assert len(users.sessions("alice")) == 2  # "alice " logins did not evict hers
    assert len(users.sessions("alice ")) == 2
    assert len(users.sessions("alice  ")) == 1
    assert users.revoke_all("alice ") == 2
    assert len(users.sessions("alice")) == 2
    assert len(users.sessions("alice  ")) == 1
    assert users.sessions("alice ") == []


def test_trailing_spaces_make_different_users(table: str) -> None:
    store = MySQLStore(BASE, table=table)
    try:
        check_separate_users(store)
    finally:
        store.close()


def test_a_satchel_01_table_is_converted_by_the_schema_step(table: str) -> None:
    _sql(OLD_SCHEMA.format(t=table))
    store = MySQLStore(BASE, table=table)
    try:
        store.init_schema()
        column = _sql(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = '{table}' AND COLUMN_NAME = 'user_id'"
        )
        assert column == (("varbinary",),)
        check_separate_users(store)
    finally:
        store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_path_keeps_trailing_spaces_apart(table: str, anyio_backend: str) -> None:
    from satchel.ops import adrive

    _sql(OLD_SCHEMA.format(t=table))  # the async path converts it too
    store = MySQLStore(BASE, table=table)
    try:
        for user in ("bob", "bob "):
            await adrive(login_request(engine(), user), store)
        users = UserSessions(store)
        assert [len(await users.asessions(u)) for u in ("bob", "bob ")] == [1, 1]
        assert await users.arevoke_all("bob ") == 1
        assert len(await users.asessions("bob")) == 1
    finally:
        await store.aclose()


def test_a_refused_statement_does_not_put_session_data_in_the_error(table: str) -> None:
    """The error of a statement MariaDB refuses (here a user ID longer than its column)
    reaches logs and the 503's cause: it names the failure, never the parameters."""
    import time

    from satchel.errors import StoreError
    from satchel.record import Record

    store = MySQLStore(BASE, table=table)
    meta = ExpiryPolicy().new_meta("h", time.time()).with_changes(user_id="u" * 2000)
    try:
        with pytest.raises(StoreError) as caught:
            store.create("0" * 64, Record({"card": '"TOPSECRET-4111"'}, meta))
        assert "TOPSECRET" not in str(caught.value)
        assert "uuuuuuuu" not in str(caught.value)
    finally:
        store.close()
