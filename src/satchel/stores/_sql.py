"""Pieces the SQL stores (PostgreSQL, MariaDB/MySQL; SQLite for the data column) share:
reading a row into a Record, the metadata columns, and a client-side deadline for blocking
drivers."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

from .. import _json
from ..errors import CorruptRecord
from ..record import Meta, Record


def meta_of(row: Any) -> Meta:
    """Metadata from a ``(meta json, last_seen, version)`` row; the columns win."""
    meta, last_seen, version = row
    return Meta.from_json(meta, last_seen=last_seen, version=version)


def data_of(text: str) -> dict[str, Any]:
    """The session data from its JSON column; CorruptRecord if it is not a JSON object
    (decoded here, not by a driver's JSON loader, which raises RecursionError past any
    handling on a deeply nested document)."""
    try:
        data = _json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptRecord("session data cannot be decoded", exc) from exc
    if not isinstance(data, dict):
        raise CorruptRecord("session data is not an object")
    return data


def record_of(row: Any) -> Record:
    """A Record from a ``(data json, meta json, last_seen, version[, refreshed])`` row."""
    data, meta, last_seen, version, *refreshed = row
    return Record(data_of(data), meta_of((meta, last_seen, version)), refreshed=any(refreshed))


def meta_params(meta: Meta) -> dict[str, Any]:
    """The metadata columns as named statement parameters."""
    return {
        "meta": meta.to_json(),
        "ls": meta.last_seen,
        "it": meta.idle_timeout,
        "ad": meta.absolute_deadline,
        "exp": meta.expires_at,
        "uid": meta.user_id,
        "handle": meta.handle,
    }


class Watch:
    """One watched call (a context manager); ``fired`` once its deadline shut the
    connection's socket."""

    __slots__ = ("_owner", "deadline", "fileno", "fired")

    def __init__(self, owner: Deadlines, deadline: float, fileno: int) -> None:
        self.deadline, self.fileno, self.fired, self._owner = deadline, fileno, False, owner

    def __enter__(self) -> Watch:
        self._owner._add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner._remove(self)


class Deadlines:
    """Client-side deadlines for blocking drivers that have none (psycopg 3).

    A call on a frozen link (a hung server, a partition without resets) waits on its socket
    until TCP gives up, minutes later: the server never sees the statement, so its own
    ``statement_timeout`` cannot end it. One daemon thread per process shuts down the
    socket of every call that outlives its deadline (``shutdown``, on a duplicate of the
    descriptor: the driver keeps its own), so the driver's wait ends at once with a
    connection error, and the caller discards that connection. Registering a call costs a
    set entry under a lock (about a microsecond); the thread wakes only when a deadline is
    due, or when the first call after an idle spell arrives.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        """Fresh state (in a forked child the lock may have been held by a thread that is
        not there)."""
        self._cond = threading.Condition(threading.Lock())
        self._calls: set[Watch] = set()
        self._pid: int | None = None
        self._wake_at = math.inf

    def watch(self, fileno: int, deadline: float) -> Watch:
        """``with deadlines.watch(fileno, deadline) as watch:`` shuts ``fileno`` down if the
        body still runs at ``deadline`` (monotonic)."""
        return Watch(self, deadline, fileno)

    def _add(self, watch: Watch) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: no thread yet
                self._pid, self._wake_at = os.getpid(), math.inf
                threading.Thread(target=self._run, name="satchel-deadlines", daemon=True).start()
            self._calls.add(watch)
            if watch.deadline < self._wake_at:
                self._cond.notify()

    def _remove(self, watch: Watch) -> None:
        with self._cond:
            self._calls.discard(watch)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for watch in [w for w in self._calls if w.deadline <= now]:
                    self._calls.discard(watch)
                    watch.fired = True
                    _shutdown(watch.fileno)
                self._wake_at = min((w.deadline for w in self._calls), default=math.inf)
                self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)


def _shutdown(fileno: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fileno)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the call is ending anyway


deadlines = Deadlines()
