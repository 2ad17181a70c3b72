"""Store specifics beyond the conformance suite: files, modes, URLs, processes, bounds."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from satchel import ConfigurationError, ids
from satchel.engine import RequestInfo, drive
from satchel.errors import StoreError
from satchel.record import Record
from satchel.session import Session
from satchel.stores import FileStore, MemoryStore, SQLiteStore, store_from_url
from satchel.testing import FakeClock
from satchel.testing.conformance import _meta, cookie_id, request

from .helpers import make_engine


def test_sqlite_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    drive(request(make_engine(), None, a=1), store)
    for file in tmp_path.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    assert {p.name for p in tmp_path.iterdir()} >= {"s.db", "s.db-wal", "s.db-shm"}
    store.close()


def test_file_store_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    drive(request(make_engine(), None, a=1), FileStore(directory))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.iterdir() if p.is_file()]
    assert files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_dump_holds_no_usable_id(tmp_path: Path, kind: str) -> None:
    """Checklist 7: records are keyed by SHA-256 of the ID; the ID appears nowhere."""
    store = SQLiteStore(tmp_path / "s.db") if kind == "sqlite" else FileStore(tmp_path / "f")
    _, cookie = drive(request(make_engine(), None, secret="value"), store)
    sid = cookie_id(cookie)
    assert sid is not None
    store.close()
    dump = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    names = " ".join(str(p) for p in tmp_path.rglob("*"))
    assert sid.encode() not in dump
    assert sid not in names
    assert ids.store_key(sid).encode() in dump or ids.store_key(sid) in names


def _writer(path: str, session_id: str, worker: int) -> None:
    engine = make_engine()
    store = SQLiteStore(path)
    for i in range(10):
        drive(request(engine, session_id, **{f"w{worker}-{i}": i}), store)
    store.close()


def test_sqlite_is_safe_across_processes(tmp_path: Path) -> None:
    """Four processes, ten commits each, each to its own keys of one session: all 40 kept."""
    path = str(tmp_path / "s.db")
    engine = make_engine()
    store = SQLiteStore(path)
    _, cookie = drive(request(engine, None, base=1), store)
    sid = cookie_id(cookie)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, sid, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    session, _ = drive(request(engine, sid), store)
    assert len([k for k in session if k.startswith("w")]) == 40


def test_sqlite_connection_is_not_shared_after_fork(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    engine = make_engine()
    _, cookie = drive(request(engine, None, a=1), store)
    pid = os.fork()
    if pid == 0:  # child: must open its own connection and see the data
        session, _ = drive(request(engine, cookie_id(cookie)), store)
        os._exit(0 if session.get("a") == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_sqlite_purge_in_batches(tmp_path: Path, clock: FakeClock) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    for _ in range(25):
        store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now - 10_000)))
    store.create(ids.store_key(ids.new_session_id()), Record({}, _meta(clock.now)))
    assert store.purge_expired(clock.now, batch_size=10) == 25
    assert store.count(clock.now) == 1
    with sqlite3.connect(tmp_path / "s.db") as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(satchel_sessions)")}
    assert "satchel_sessions_expires_at" in indexes


def test_file_store_purge_and_corrupt_files(tmp_path: Path, clock: FakeClock) -> None:
    store = FileStore(tmp_path)
    old, live, bad = (ids.store_key(ids.new_session_id()) for _ in range(3))
    store.create(old, Record({}, _meta(clock.now - 10_000)))
    store.create(live, Record({}, _meta(clock.now)))
    (tmp_path / f"{bad}.session").write_text("{not json")
    assert store.purge_expired(clock.now) == 2
    assert store.count(clock.now) == 1


def test_file_store_refuses_keys_that_are_not_hashes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StoreError):
        store.load("../../etc/passwd", 0)


def test_memory_store_is_bounded(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=3)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(5)]
    for key in keys:
        store.create(key, Record({}, _meta(clock.now)))
    assert store.count(clock.now) == 3
    assert store.load(keys[0], clock.now) is None
    assert store.load(keys[-1], clock.now) is not None
    with pytest.raises(ValueError, match="at least 1"):
        MemoryStore(max_entries=0)


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(store_from_url("memory://?max_entries=5"), MemoryStore)
    rel = store_from_url("sqlite:///rel.db")
    assert isinstance(rel, SQLiteStore)
    assert (tmp_path / "rel.db").exists()
    absolute = store_from_url(f"sqlite:///{tmp_path}/abs.db")  # sqlite:////abs/path
    assert (tmp_path / "abs.db").exists()
    assert isinstance(absolute, SQLiteStore)
    assert isinstance(store_from_url(f"file://{tmp_path}/files"), FileStore)
    assert (tmp_path / "files").is_dir()
    assert isinstance(store_from_url("file://reldir"), FileStore)
    assert (tmp_path / "reldir").is_dir()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nope://x", "unknown scheme"),
        ("sessions.db", "unknown scheme"),
        ("sqlite://", "names no database file"),
        ("memory://?max_entries=lots", "invalid max_entries=.lots."),
    ],
)
def test_bad_store_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        store_from_url(url)


def test_corrupt_meta_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    engine = make_engine()
    _, cookie = drive(request(engine, None, a=1), store)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE satchel_sessions SET meta = 'garbage'")
    session = drive(engine.open(Session(), cookie_id(cookie)), store)
    assert session.new
    assert store.count(0) == 0  # the corrupt record was removed
    drive(engine.commit(session, RequestInfo()), store)
