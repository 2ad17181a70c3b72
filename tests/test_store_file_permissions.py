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
from satchel._types import Environ, StartResponse
from satchel.asgi import SessionMiddleware
from satchel.stores import FileStore, SQLiteStore, store_from_url
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
        assert app.store is not None
        app.store.close()


def open_by_wsgi(url: str) -> None:
    """Opens the WSGI middleware and serves two requests through it (the sync path)."""
    app = WSGISessionMiddleware(wsgi_counter, store=url, secret_keys=[KEY])
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://t") as c:
            assert c.get("/").text == "1"
            assert c.get("/").text == "2"
    finally:
        assert app.store is not None
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


# -- the owner, links and the directory (attack finding f13) -------------------------------

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="making a file owned by another user needs root (chown)"
)


def hand_over(path: Path, mode: int) -> None:
    """Give ``path`` to another user, private to them (the mode alone looks fine)."""
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, mode)


@as_root
@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_sqlite_file_owned_by_another_user_is_refused_even_when_0600(
    tmp_path: Path, opener: str, suffix: str
) -> None:
    """A database (or a -wal/-shm/-journal beside it) that another user owns, mode 0600, is
    refused although this process runs as root and could use it: its owner could read and
    rewrite every session. (Before: used silently, only group/other bits were looked at.)"""
    path = existing_sqlite(tmp_path)
    target = path.with_name(path.name + suffix)
    if not target.exists():
        target.write_bytes(b"")
    hand_over(target, 0o600)
    with pytest.raises(ConfigurationError, match=r"belongs to uid 65534.*not to this process"):
        OPENERS[opener](f"sqlite:///{path}")
    assert target.stat().st_uid == NOBODY
    assert mode_of(target) == 0o600


@as_root
@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("subdirectory", ["", ".locks", ".users"])
def test_file_store_directory_owned_by_another_user_is_refused_even_when_0700(
    tmp_path: Path, opener: str, subdirectory: str
) -> None:
    directory = tmp_path / "sessions"
    FileStore(directory)
    hand_over(directory / subdirectory, 0o700)
    with pytest.raises(ConfigurationError, match=r"belongs to uid 65534.*not to this process"):
        OPENERS[opener](f"file://{directory}")
    assert list(directory.glob("*.session")) == []


@as_root
def test_refusal_of_another_users_file_names_the_file_the_owner_and_the_fix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "planted.db"
    path.write_bytes(b"")
    hand_over(path, 0o600)
    with pytest.raises(ConfigurationError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert "uid 65534 (nobody)" in message
    assert f"chown {os.geteuid()} {path}" in message


@pytest.mark.parametrize("opener", OPENERS)
def test_sqlite_file_reached_through_a_symlink_is_refused(tmp_path: Path, opener: str) -> None:
    """A link is refused even to a database of our own: what it points at can change after
    the check. (Before: stat() followed the link, and checked whatever it named.)"""
    real = existing_sqlite(tmp_path)
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match=r"link\.db is a symbolic link"):
        OPENERS[opener](f"sqlite:///{link}")


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_sqlite_journal_file_that_is_a_symlink_is_refused(tmp_path: Path, suffix: str) -> None:
    path = existing_sqlite(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    path.with_name(path.name + suffix).symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="is a symbolic link"):
        SQLiteStore(path)


@pytest.mark.parametrize("opener", OPENERS)
def test_file_store_directory_reached_through_a_symlink_is_refused(
    tmp_path: Path, opener: str
) -> None:
    real = tmp_path / "real"
    FileStore(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match=r"link is a symbolic link"):
        OPENERS[opener](f"file://{link}")


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_store_in_a_world_writable_directory_without_sticky_bit_is_refused(
    tmp_path: Path, opener: str, kind: str
) -> None:
    """Anyone may replace files in a 0777 directory (SQLite's -wal/-shm come and go as the
    last connection closes): refused. The same directory with the sticky bit (like /tmp,
    1777) lets only a file's owner replace it: accepted. (Before: the directory was never
    looked at.)"""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # noqa: S103 -- the hazard under test
    url = f"sqlite:///{shared / 'sessions.db'}" if kind == "sqlite" else f"file://{shared / 's'}"
    with pytest.raises(ConfigurationError, match=r"writable by every user \(mode 777\)"):
        OPENERS[opener](url)
    assert list(shared.iterdir()) == []
    os.chmod(shared, 0o1777)  # noqa: S103 -- sticky, like /tmp
    OPENERS[opener](url)


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_store_in_a_group_writable_directory_without_sticky_bit_is_refused(
    tmp_path: Path, opener: str, kind: str
) -> None:
    """A member of the directory's group could rename the store away and put a folder or
    file of their own in its place, which the store would then use by its path."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o770)  # noqa: S103 -- the hazard under test
    url = f"sqlite:///{shared / 'sessions.db'}" if kind == "sqlite" else f"file://{shared / 's'}"
    with pytest.raises(ConfigurationError, match=r"writable by its group \(mode 770\)"):
        OPENERS[opener](url)
    os.chmod(shared, 0o750)  # noqa: S103 -- readable by the group is fine
    OPENERS[opener](url)
