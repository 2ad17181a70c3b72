"""Filesystem store: one JSON file per session, written atomically (temp file + rename).

Writers of one session serialise on an ``flock`` lock file (sharded by key prefix, so at
most 256 lock files exist), which makes the per-key merge safe across threads and
processes. Readers need no lock: a rename is atomic, so a file is always whole.

What is acknowledged is on disk: a write fsyncs the temp file before the rename and the
directory after it, and a delete fsyncs the directory, so neither a crash nor a power loss
brings back an older version of a session or a session that was logged out. A crash
between the temp file and the rename leaves a ``.tmp-*`` file behind; ``purge_expired``
removes those older than :attr:`FileStore.TEMP_MAX_AGE`.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import _json
from ..errors import CorruptRecord, KeyCollision, StoreError, StoreUnavailable
from ..ids import is_store_key, log_ref, user_key
from ..log import logger, security
from ..record import Change, Meta, Record
from ._files import check_parent, make_private
from .base import Store

_SUFFIX = ".session"
_TEMP_PREFIX = ".tmp-"


def _fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a temp file (mode 0600) in the
    same directory, written and fsynced, renamed over ``path``, then the directory fsynced.
    Raises :class:`OSError`; the temp file is removed on any failure we live through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


class FileStore(Store):
    """``FileStore("/var/lib/myapp/sessions")``: the directory is created mode 0700 and
    every file mode 0600; an existing directory open to group or others is set to 0700.
    One owned by another user, a symbolic link, or one inside a directory anyone may write
    to without the sticky bit is refused (see :mod:`satchel.stores._files`)."""

    #: Age (seconds, by the file's mtime and the real clock) after which ``purge_expired``
    #: removes a ``.tmp-*`` file: one left by a writer that died before its rename. A live
    #: write holds its temp file for milliseconds; and removing one early still loses
    #: nothing acknowledged: that writer's rename fails and its request gets a 503.
    TEMP_MAX_AGE = 300.0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        subdirectories = (self.directory, self.directory / ".locks", self.directory / ".users")
        # an existing directory must be ours and no link; open to others, it is set to 0700
        for path in subdirectories:
            make_private(path, 0o700, "session directory")
        try:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create session directory: {exc}", exc) from exc
        check_parent(self.directory.parent, "session directory")
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            for path in subdirectories[1:]:
                path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create session directory: {exc}", exc) from exc
        self._thread_locks = {f"{i:02x}": threading.Lock() for i in range(256)}

    def _path(self, key: str) -> Path:
        if not is_store_key(key):  # the core only passes hashes; refuse anything else
            raise StoreError("invalid store key")
        return self.directory / (key + _SUFFIX)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        shard = key[:2]
        with self._thread_locks[shard]:
            try:
                fd = os.open(self.directory / ".locks" / shard, os.O_CREAT | os.O_RDWR, 0o600)
            except OSError as exc:
                raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _read(self, path: Path) -> Record | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc
        return Record.from_document(raw)

    def _write(self, path: Path, record: Record) -> None:
        try:
            _write_durably(path, record.to_document())
        except OSError as exc:
            raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc

    def _live(self, key: str, now: float) -> Record | None:
        record = self._read(self._path(key))
        if record is None or record.meta.expires_at <= now:
            return None
        return record

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        return self._live(key, now)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._locked(key):
            record = self._live(key, now)
            if record is None:
                return False
            if last_seen > record.meta.last_seen:
                meta = record.meta.with_changes(last_seen=last_seen)
                self._write(self._path(key), Record(record.data, meta))
            return True

    def create(self, key: str, record: Record) -> None:
        path = self._path(key)
        with self._locked(key):
            if path.exists():
                raise KeyCollision("session key collision")
            self._write(path, record)

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._locked(key):
            record = self._live(key, now)
            if record is None:
                return None
            version = change.version_over(record.meta.version)
            meta = change.meta_over(record.meta).with_changes(version=version)
            self._write(self._path(key), Record(change.apply(record.data), meta))
            return version

    def delete(self, key: str) -> bool:
        with self._locked(key):
            try:
                self._path(key).unlink()
                _fsync_directory(self.directory)  # a logout must not come undone
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc
            return True

    # -- the per-user index: one small JSON file per user, {store key: deadline} ------------

    def _user_file(self, user_id: str) -> tuple[str, Path]:
        digest = user_key(user_id)
        return digest, self.directory / ".users" / (digest + ".json")

    def _read_index(self, path: Path) -> dict[str, float]:
        try:
            index = _json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"session index unreadable: {exc}", exc) from exc
        return {k: float(v) for k, v in index.items() if is_store_key(k)}

    def _write_index(self, path: Path, index: dict[str, float]) -> None:
        try:
            if index:
                _write_durably(path, _json.dumps_bytes(index))
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        digest, path = self._user_file(user_id)
        with self._locked(digest):
            index = self._read_index(path)
            index[key] = deadline
            self._write_index(path, index)
            return len(index)

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        digest, path = self._user_file(user_id)
        with self._locked(digest):
            index = self._read_index(path)
            live, keep = [], {}
            for key, deadline in index.items():
                try:
                    record = self._live(key, now) if deadline > now else None
                except CorruptRecord:
                    record = None
                if record is not None and record.meta.user_id == user_id:
                    live.append((key, record.meta))
                    keep[key] = deadline
            if keep != index:
                self._write_index(path, keep)
        return live

    def _files(self) -> Iterator[Path]:
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_SUFFIX):
                yield Path(entry.path)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Removes expired and corrupt records (their count is returned), and the temp files
        that crashed writers left behind (logged)."""
        self._remove_stale_temp_files()
        removed = 0
        for path in self._files():
            key = path.name.removesuffix(_SUFFIX)
            if not is_store_key(key):
                continue
            with self._locked(key):
                try:
                    record = self._read(path)
                except CorruptRecord:
                    record = None
                    path.unlink(missing_ok=True)
                    removed += 1
                if record is not None and record.meta.expires_at <= now:
                    path.unlink(missing_ok=True)
                    removed += 1
            if on_batch is not None and removed and removed % batch_size == 0:
                on_batch(batch_size)
        if on_batch is not None and removed % batch_size:
            on_batch(removed % batch_size)
        return removed

    def _remove_stale_temp_files(self) -> int:
        """Unlink ``.tmp-*`` files older than :attr:`TEMP_MAX_AGE`. Only temp names are
        unlinked, never a record: a temp file renamed into place meanwhile is simply not
        found under its old name any more."""
        cutoff = time.time() - self.TEMP_MAX_AGE
        removed = 0
        for directory in (self.directory, self.directory / ".users"):
            try:
                entries = [e for e in os.scandir(directory) if e.name.startswith(_TEMP_PREFIX)]
            except OSError as exc:
                raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StoreUnavailable(f"session store unavailable: {exc}", exc) from exc
        if removed:
            logger.info("removed %d temporary files left by interrupted writes", removed)
        return removed

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        for path in sorted(self._files()):
            try:
                record = self._read(path)
            except CorruptRecord:
                continue
            if record is not None and record.meta.expires_at > now:
                yield path.name.removesuffix(_SUFFIX), record.meta

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        for path in sorted(self._files()):
            key = path.name.removesuffix(_SUFFIX)
            try:
                record = self._read(path)
            except CorruptRecord:
                security.warning("session %s: corrupt record left out of an export", log_ref(key))
                continue
            if record is not None and record.meta.expires_at > now:
                yield key, record

    def count(self, now: float) -> int:
        live = 0
        for path in self._files():
            try:
                record = self._read(path)
            except CorruptRecord:
                continue
            live += record is not None and record.meta.expires_at > now
        return live
