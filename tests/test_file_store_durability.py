"""The file store: what it acknowledges is on disk, and what a crash leaves behind is cleaned.

* every acknowledged write fsyncs its temp file before the rename and the directory after
  it, and a delete (logout) fsyncs the directory, before the response goes out: checked by
  recording the real system calls while requests run through the ASGI (async) and WSGI
  (sync) middleware;
* a writer killed with SIGKILL between its temp file and its rename leaves real ``.tmp-*``
  files; ``satchel sessions purge`` keeps a fresh one (a write may still be running) and
  removes it once it is older than ``FileStore.TEMP_MAX_AGE``, never touching a record;
* purging while writers run loses no acknowledged write, even with temp files removed the
  moment they appear (the writer's rename fails: a 503, nothing acknowledged).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from satchel import Session, StoreUnavailable, ids, login, logout
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.cli import main
from satchel.expiry import ExpiryPolicy
from satchel.record import Change, Record
from satchel.stores import FileStore
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY


class Syscalls:
    """Records the real ``fsync``/``rename``/``unlink`` calls made in this process (each
    still runs: a recorder, not a mock), with the path each file descriptor names."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, str]] = []
        real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

        def fsync(fd: Any) -> None:
            fd = fd if isinstance(fd, int) else fd.fileno()
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), ""))
            real_fsync(fd)

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            self.events.append(("rename", os.fspath(src), os.fspath(dst)))
            real_replace(src, dst, **kwargs)

        def unlink(path: Any, **kwargs: Any) -> None:
            self.events.append(("unlink", os.fspath(path), ""))
            real_unlink(path, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "unlink", unlink)

    def mark(self) -> int:
        return len(self.events)

    def check_durable(self, since: int, directory: Path) -> int:
        """Every rename into ``directory`` since ``since`` had its temp file fsynced before
        and the directory fsynced after; every record unlinked was followed by a directory
        fsync. Returns how many writes and deletes were checked."""
        events = self.events[since:]
        checked = 0
        for i, (call, path, dst) in enumerate(events):
            if call == "rename" and dst.endswith(".session"):
                assert ("fsync", path, "") in events[:i], f"temp file not fsynced: {path}"
                assert ("fsync", str(directory), "") in events[i + 1 :], "directory not fsynced"
                checked += 1
            elif call == "unlink" and path.endswith(".session"):
                assert ("fsync", str(directory), "") in events[i + 1 :], "unlink not fsynced"
                checked += 1
        return checked


async def asgi_endpoint(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    if request.url.path == "/login":
        login(session, "alice")
    elif request.url.path == "/logout":
        logout(session)
    else:
        session["n"] = session.get("n", 0) + 1
    return PlainTextResponse("ok")


def wsgi_endpoint(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/login":
        login(session, "alice")
    elif environ["PATH_INFO"] == "/logout":
        logout(session)
    else:
        session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize("path", ["asgi", "wsgi"])
def test_every_acknowledged_write_and_delete_is_fsynced_before_the_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Create, update, login (a new record, the old one deleted), update, logout: each
    response is sent only after the file and the directory were fsynced. (0.1 fsynced
    nothing: an acknowledged logout could come undone on power loss.)"""
    directory = (tmp_path / "sessions").resolve()
    store = FileStore(directory)
    calls = Syscalls(monkeypatch)
    urls = ["/incr", "/incr", "/login", "/incr", "/logout"]
    checked = []
    if path == "asgi":
        app = SessionMiddleware(
            Starlette(routes=[Route(u, asgi_endpoint) for u in set(urls)]),
            store=store,
            secret_keys=[KEY],
        )

        async def run() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
                for url in urls:
                    since = calls.mark()
                    assert (await client.get(url)).status_code == 200
                    checked.append(calls.check_durable(since, directory))

        anyio.run(run)
    else:
        wsgi = WSGISessionMiddleware(wsgi_endpoint, store=store, secret_keys=[KEY])
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="https://t") as c:
            for url in urls:
                since = calls.mark()
                assert c.get(url).status_code == 200
                checked.append(calls.check_durable(since, directory))
    # create; update; login = create + delete; update; logout = delete
    assert checked == [1, 1, 2, 1, 1]


def test_the_user_index_is_written_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / "sessions")
    calls = Syscalls(monkeypatch)
    store.index_add("alice", "a" * 64, time.time() + 60)
    ((call, tmp, dst),) = [e for e in calls.events if e[0] == "rename"]
    assert dst.endswith(".json")
    users = str((tmp_path / "sessions" / ".users").resolve())
    assert calls.events.index(("fsync", str(Path(tmp).resolve()), "")) < calls.events.index(
        (call, tmp, dst)
    )
    assert calls.events[-1] == ("fsync", users, "")


# -- temp files left by a crash ------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, threading, time
    from pathlib import Path
    from satchel.record import Record
    from satchel.stores import FileStore
    from satchel.record import Meta

    directory, flags, meta_json = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    store = FileStore(directory)
    meta = Meta.from_json(meta_json)
    store.create("1" * 64, Record({"done": "1"}, meta))  # acknowledged before the crash

    def stuck(src, dst):  # the crash window: temp file written and fsynced, not renamed
        (flags / os.path.basename(src)).write_text(os.fspath(src) + os.linesep)
        time.sleep(3600)

    os.replace = stuck
    threading.Thread(target=store.create, args=("2" * 64, Record({}, meta))).start()
    threading.Thread(target=store.index_add, args=("alice", "1" * 64, 1e12)).start()
    time.sleep(3600)
    """
)


@pytest.fixture
def killed_writer(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A store directory whose writer process was SIGKILLed with two writes in flight (a
    record and the user index), between the temp file and the rename."""
    directory, flags = tmp_path / "sessions", tmp_path / "flags"
    flags.mkdir()
    meta = ExpiryPolicy().new_meta(ids.new_handle(), time.time()).with_changes(user_id="alice")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, directory, flags, meta.to_json()])
    try:
        deadline = time.monotonic() + 30
        while sum(1 for f in flags.iterdir() if f.read_text().endswith("\n")) < 2:
            assert writer.poll() is None, "the writer process died on its own"
            assert time.monotonic() < deadline, "the writer never reached its rename"
            time.sleep(0.01)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    return directory, [Path(f.read_text().strip()) for f in flags.iterdir()]


def purge(directory: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["sessions", "purge", "--json", "--store", f"file://{directory}"]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_purge_removes_temp_files_left_by_a_killed_writer_and_no_record(
    killed_writer: tuple[Path, list[Path]],
) -> None:
    directory, leftovers = killed_writer
    assert sorted(p.parent.name for p in leftovers) == [".users", "sessions"]
    assert all(p.name.startswith(".tmp-") and p.exists() for p in leftovers)
    store = FileStore(directory)
    live = ids.store_key(ids.new_session_id())
    store.create(live, Record({"live": "1"}, ExpiryPolicy().new_meta("h", time.time())))

    assert purge(directory) == {"purged": 0}
    assert all(p.exists() for p in leftovers), "a fresh temp file may be a running write"

    old = time.time() - 3600  # an hour old: well past TEMP_MAX_AGE (300 s)
    for p in leftovers:
        os.utime(p, (old, old))
    assert purge(directory) == {"purged": 0}
    assert not any(p.exists() for p in leftovers)
    assert list(directory.glob(".tmp-*")) == list(directory.glob(".users/.tmp-*")) == []
    record = store.load("1" * 64, time.time())
    assert record is not None
    assert dict(record.data) == {"done": "1"}
    assert store.load(live, time.time()) is not None
    assert store.load("2" * 64, time.time()) is None  # never acknowledged, never there


class EagerTempReaper(FileStore):
    """A file store whose purge removes every temp file the moment it sees one: the worst
    case of a purge racing a live writer (real removals, real failed renames)."""

    TEMP_MAX_AGE = -1.0


def test_purge_racing_writers_loses_no_acknowledged_write(tmp_path: Path) -> None:
    store = EagerTempReaper(tmp_path / "sessions")
    now = time.time()
    meta = ExpiryPolicy().new_meta("h", now)
    keys = [ids.store_key(ids.new_session_id()) for _ in range(4)]
    for key in keys:
        store.create(key, Record({"n": "0"}, meta))
    acknowledged = dict.fromkeys(keys, 0)
    refused = 0
    stop = threading.Event()

    def reaper() -> None:
        while not stop.is_set():
            store.purge_expired(now)

    thread = threading.Thread(target=reaper)
    thread.start()
    try:
        for n in range(1, 51):
            for key in keys:
                try:
                    store.update(key, Change(meta=meta, set={"n": str(n)}), now)
                except StoreUnavailable:
                    refused += 1
                else:
                    acknowledged[key] = n
    finally:
        stop.set()
        thread.join()
    for key in keys:
        record = store.load(key, now)
        assert record is not None
        assert record.data["n"] == str(acknowledged[key])
    assert list((tmp_path / "sessions").glob(".tmp-*")) == []
    # here 19-75 of the 200 writes lost the race (a 503 for that request), and every one
    # of the others is there
    assert refused < 200
