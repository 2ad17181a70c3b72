"""What an acknowledged write survives on the embedded stores.

A writer process is killed with SIGKILL right after the store acknowledged its writes and a
delete: every acknowledged value and the delete are there afterwards, on SQLite (both
``synchronous`` settings) and the file store. A power loss cannot be simulated here; what it
can lose is stated in docs/stores.md ("What a fault can lose"): nothing on the file store
and on SQLite with ``synchronous="full"`` (the setting is checked on the live connections),
the commits since the last WAL sync on SQLite with ``synchronous="normal"``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from satchel import ConfigurationError, ids
from satchel.expiry import ExpiryPolicy
from satchel.stores import FileStore, SQLiteStore, store_from_url
from satchel.stores.base import Store

WRITER = textwrap.dedent(
    """
    import sys
    from satchel.record import Change, Meta, Record
    from satchel.stores import FileStore, SQLiteStore

    kind, where, meta_json, key, doomed = sys.argv[1:6]
    meta = Meta.from_json(meta_json)
    if kind == "file":
        store = FileStore(where)
    else:
        store = SQLiteStore(where, synchronous=kind.removeprefix("sqlite-"))
    store.create(key, Record({"n": "0"}, meta))
    store.create(doomed, Record({}, meta))
    assert store.delete(doomed)
    print("deleted", flush=True)
    n = 0
    while True:
        n += 1
        store.update(key, Change(meta=meta, set={"n": str(n)}), meta.last_seen)
        print(n, flush=True)
    """
)

KINDS = ["sqlite-normal", "sqlite-full", "file"]


def open_store(kind: str, where: Path) -> Store:
    if kind == "file":
        return FileStore(where)
    return SQLiteStore(where, synchronous="full" if kind == "sqlite-full" else "normal")


@pytest.mark.parametrize("kind", KINDS)
def test_acknowledged_writes_and_deletes_survive_sigkill(tmp_path: Path, kind: str) -> None:
    where = tmp_path / ("sessions" if kind == "file" else "sessions.db")
    now = time.time()
    meta = ExpiryPolicy().new_meta(ids.new_handle(), now)
    key, doomed = (ids.store_key(ids.new_session_id()) for _ in range(2))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(where), meta.to_json(), key, doomed],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "deleted"
        acknowledged = 0
        while acknowledged < 20:
            acknowledged = int(writer.stdout.readline())
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        printed = writer.stdout.read().split()  # what it acknowledged until it died
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    if printed:
        acknowledged = int(printed[-1])
    store = open_store(kind, where)
    try:
        record = store.load(key, now)
        assert record is not None
        # the last acknowledged value, or the one write that ran between the print and the kill
        assert int(record.data["n"]) in (acknowledged, acknowledged + 1)
        assert store.load(doomed, now) is None
    finally:
        store.close()


@pytest.mark.parametrize(("synchronous", "pragma"), [("normal", 1), ("full", 2)])
def test_sqlite_synchronous_setting_is_applied_to_every_connection(
    tmp_path: Path, synchronous: str, pragma: int
) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous=synchronous)  # type: ignore[arg-type]
    try:
        db = store._connection()
        assert db.execute("PRAGMA synchronous").fetchone() == (pragma,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()


def test_sqlite_synchronous_off_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous='off'"):
        SQLiteStore(tmp_path / "s.db", synchronous="off")  # type: ignore[arg-type]


def test_default_sqlite_store_from_url_is_normal(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(store, SQLiteStore)
    assert store.synchronous == "normal"
    store.close()


def test_sqlite_url_sets_synchronous(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 's.db'}?synchronous=full&timeout=2")
    assert isinstance(store, SQLiteStore)
    try:
        assert (store.synchronous, store.timeout) == ("full", 2.0)
        assert store._connection().execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///{tmp}/s.db?synchronous=off", "invalid synchronous='off'"),
        (
            "sqlite:///{tmp}/s.db?synchronus=full",
            r"unknown parameter 'synchronus' \(did you mean 'synchronous'\?\); valid parameters: ",
        ),
        (
            "memory://?max_entires=5",
            r"unknown parameter 'max_entires' \(did you mean 'max_entries'\?\); valid parameters: "
            "satchel's: max_entries$",
        ),
        ("memory://?max_entries=0", "max_entries=0 must be at least 1"),
        (
            "file://{tmp}/d?mode=0777",
            r"unknown parameter 'mode'; valid parameters: satchel's: none$",
        ),
    ],
)
def test_embedded_store_urls_refuse_what_they_would_ignore(
    tmp_path: Path, url: str, message: str
) -> None:
    """No store option is silently ignored: a typo in a URL parameter is an error."""
    with pytest.raises(ConfigurationError, match=message):
        store_from_url(url.format(tmp=tmp_path))
