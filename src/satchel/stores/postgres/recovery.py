"""How a PostgreSQL store comes back after an outage without waiting for its pool.

psycopg_pool replaces the connections an outage broke in the background, retrying with
exponential backoff (about 1, 3, 7, 15 s after the first failure, up to
``reconnect_timeout``): a server that is back after 6 s is not used again before the
attempt at 7 s, one back after 8 s not before 15 s, and until then every call waits its
whole ``timeout`` for a connection that cannot come. So, once a call has failed for want
of the server, :class:`Recovery` checks it with one direct connection before the next calls
that find the pool empty (no idle connection, none in use by a call: a pool that is only
busy is left alone), at most one every :data:`PROBE_EVERY` seconds:

- the connection fails: the call fails at once with the server's reason (a 503 now rather
  than in ``timeout`` seconds), and so do the calls until the next check;
- it succeeds while the pool has failed to connect: the server is back and the pool is
  still backing off, so the store replaces the pool (the old one is closed in the
  background, its connections in use returned to it first).

A store built around the app's own pools (``pool=``, ``async_pool=``) leaves them as they
are. While calls succeed, a call reads one attribute and counts itself in and out.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ...errors import StoreUnavailable

PROBE_EVERY = 0.5
"""Seconds between two direct connections of a failing store."""


class Recovery:
    """The failing state of one store's pool (sync or async)."""

    __slots__ = ("_held", "_lock", "_next_probe", "_refusal", "failing")

    def __init__(self) -> None:
        self.failing = False
        self._next_probe = 0.0
        self._refusal: StoreUnavailable | None = None
        self._held = 0  # connections the store's calls hold now
        self._lock = threading.Lock()

    def acquired(self) -> None:
        with self._lock:
            self._held += 1

    def released(self) -> None:
        with self._lock:
            self._held -= 1

    def probe_due(self, pool: Any) -> bool:
        """Whether to check the server now. False while the pool has a connection, idle or
        in use (a busy pool is not a broken one), or a check was made lately; raises the
        last check's failure while it stands."""
        if self._held > 0 or pool.get_stats().get("pool_available", 0) > 0:
            return False
        now = time.monotonic()
        if now < self._next_probe:
            if self._refusal is not None:
                raise StoreUnavailable(str(self._refusal), self._refusal.original)
            return False
        self._next_probe = now + PROBE_EVERY
        return True

    def probe_failed(self, error: StoreUnavailable) -> None:
        self._refusal = error

    def probe_succeeded(self, pool: Any) -> bool:
        """The server answers: whether to replace ``pool`` (it has failed to connect, so
        it may be waiting out its backoff)."""
        self._refusal = None
        self.failing = False
        return bool(pool.get_stats().get("connections_errors", 0) > 0)
