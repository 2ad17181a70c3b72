"""Session files left open to other users are tightened or refused when a store opens them.

The SQLite file (and its -wal, -shm and -journal files) and the file store's directories
are checked whenever a store is opened: by ``store_from_url``, by the ASGI middleware (the
async path) and by the WSGI middleware (the sync path). A file this process owns is set to
0600 (directories 0700) with a ``satchel.security`` warning; one owned by another user is
refused with a ConfigurationError."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from satchel import ConfigurationError, Session
from satchel.asgi import SessionMiddleware
from satchel.stores import FileStore, SQLiteStore, store_from_url
from satchel.types import Environ, StartResponse
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGISessionMiddleware

from .conftest import KEY

NOBODY = 65534


async def asgi_counter(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    session["n"] = session.get("n", 0) + 1
    return PlainTextResponse(str(session["n"]))


def wsgi_counter(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("content-type", "text/plain")])
    return [str(session["n"]).encode()]


def open_by_url(url: str) -> None:
    store_from_url(url).close()


def open_by_asgi(url: str) -> None:
    """Opens the ASGI middleware and serves two requests through it (the async path)."""
    import anyio

    app = SessionMiddleware(
        Starlette(routes=[Route("/", asgi_counter)]), store=url, secret_keys=[KEY]
    )

    async def two_requests() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            assert (await client.get("/")).text == "1"
            assert (await client.get("/")).text == "2"

    try:
        anyio.run(two_requests)
    finally:
        app.store.close()


def open_by_wsgi(url: str) -> None:
    """Opens the WSGI middleware and serves two requests through it (the sync path)."""
    app = WSGISessionMiddleware(wsgi_counter, store=url, secret_keys=[KEY])
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://t") as c:
            assert c.get("/").text == "1"
            assert c.get("/").text == "2"
    finally:
        app.store.close()


OPENERS: dict[str, Callable[[str], None]] = {
    "store_from_url": open_by_url,
    "asgi": open_by_asgi,
    "wsgi": open_by_wsgi,
}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def existing_sqlite(tmp_path: Path) -> Path:
    """A real SQLite database in WAL mode, with its -wal and -shm files still there
    (a second connection keeps them from being checkpointed away)."""
    path = tmp_path / "sessions.db"
    SQLiteStore(path).close()
    return path


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
@pytest.mark.parametrize("loose", [0o644, 0o660, 0o606], ids=oct)
def test_sqlite_files_open_to_others_are_set_to_0600(
    tmp_path: Path, opener: str, suffix: str, loose: int, security_log: pytest.LogCaptureFixture
) -> None:
    path = existing_sqlite(tmp_path)
    holder = sqlite3.connect(path)  # keeps -wal and -shm in place while the store opens
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("SELECT count(*) FROM satchel_sessions").fetchone()
        target = path.with_name(path.name + suffix)
        if not target.exists():
            target.write_bytes(b"")  # a leftover rollback journal of an older run
        os.chmod(target, loose)
        OPENERS[opener](f"sqlite:///{path}")
        assert mode_of(target) == 0o600
        assert mode_of(path) == 0o600
    finally:
        holder.close()
    warnings = [r for r in security_log.records if r.name == "satchel.security"]
    assert any("open to other users" in r.getMessage() for r in warnings)


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("subdirectory", ["", ".locks", ".users"])
@pytest.mark.parametrize("loose", [0o755, 0o770, 0o707], ids=oct)
def test_file_store_directories_open_to_others_are_set_to_0700(
    tmp_path: Path,
    opener: str,
    subdirectory: str,
    loose: int,
    security_log: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "sessions"
    FileStore(directory)
    target = directory / subdirectory
    os.chmod(target, loose)
    OPENERS[opener](f"file://{directory}")
    assert mode_of(target) == 0o700
    assert mode_of(directory) == 0o700
    warnings = [r for r in security_log.records if r.name == "satchel.security"]
    assert any("open to other users" in r.getMessage() for r in warnings)


def test_a_new_store_creates_private_files(tmp_path: Path) -> None:
    """New files are private from the start, the WAL files SQLite makes included."""
    open_by_wsgi(f"file://{tmp_path / 'new'}")
    assert mode_of(tmp_path / "new") == 0o700
    assert {mode_of(p) for p in (tmp_path / "new").glob("*.session")} == {0o600}
    store = SQLiteStore(tmp_path / "new.db")
    try:
        store.delete("a" * 64)  # a write: the -wal and -shm files exist while connected
        for suffix in ("", "-wal", "-shm"):
            assert mode_of(tmp_path / f"new.db{suffix}") == 0o600
    finally:
        store.close()


def foreign(path: Path, *, directory: bool) -> Path:
    """A file or directory open to others and owned by another user: made with chown when
    the tests run as root, otherwise one of the system's own (read-only to us, never
    changed: the store refuses before it opens anything)."""
    if os.geteuid() != 0:
        return Path("/etc") if directory else Path("/etc/passwd")
    if directory:
        path.mkdir(mode=0o755)
    else:
        path.write_bytes(b"")
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o755 if directory else 0o644)
    return path


@pytest.mark.parametrize("opener", OPENERS)
def test_sqlite_file_of_another_user_open_to_others_is_refused(tmp_path: Path, opener: str) -> None:
    path = foreign(tmp_path / "theirs.db", directory=False)
    before = mode_of(path)
    with pytest.raises(ConfigurationError, match=r"open to other users.*chmod 600"):
        OPENERS[opener](f"sqlite:///{path}")
    assert mode_of(path) == before


@pytest.mark.parametrize("opener", OPENERS)
def test_file_store_directory_of_another_user_open_to_others_is_refused(
    tmp_path: Path, opener: str
) -> None:
    path = foreign(tmp_path / "theirs", directory=True)
    before = mode_of(path)
    with pytest.raises(ConfigurationError, match=r"open to other users.*chmod 700"):
        OPENERS[opener](f"file://{path}")
    assert mode_of(path) == before


def test_refusal_names_the_file_its_mode_and_the_fix(tmp_path: Path) -> None:
    """The message names the file, its mode and owner, and the fix."""
    path = foreign(tmp_path / "named.db", directory=False)
    with pytest.raises(ConfigurationError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert "mode 644" in message
    assert "chmod 600" in message
