"""In-process store: bounded, expiring, for tests and single-process apps."""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from ..errors import ConfigurationError, KeyCollision, StoreUnavailable
from ..record import Change, Meta, Record
from .base import Store


class MemoryStore(Store):
    """Holds at most ``max_entries`` sessions. Its async forms run inline: there is no I/O
    to wait for.

    When full, a create makes room by dropping, in this order: sessions that have expired,
    the least recently used *anonymous* session, and -- only when the new session is itself
    logged in -- the least recently used logged-in session. Anonymous traffic therefore
    never evicts a logged-in user: an anonymous create into a store that holds nothing but
    live logged-in sessions is refused with :class:`StoreUnavailable` (a 503), which says
    ``max_entries`` is too small, rather than logging someone out.

    Every step costs O(log n) at most, whatever the store holds (a scan of all entries took
    40-112 ms per create at 100,000): expiry times sit in a heap (entries made stale by a
    later write are skipped when they surface, and the heap is rebuilt when stale entries
    outnumber live ones), and each class of session has its own LRU order.

    The per-user index is derived from the records, not kept beside them: a key is filed
    under its user when a logged-in record is stored and removed with the record (delete,
    eviction, expiry), so it never holds more than the user's stored sessions.
    ``index_add`` has nothing to do, as on the SQL stores.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ConfigurationError(f"memory store: max_entries={max_entries} must be at least 1")
        self.max_entries = max_entries
        self._records: dict[str, Record] = {}
        self._anonymous: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._logged_in: OrderedDict[str, None] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, key), some stale
        self._users: dict[str, set[str]] = {}  # user -> store keys of their records
        self._lock = threading.Lock()

    # -- bookkeeping: every change of self._records goes through _put or _drop -----------------

    def _order(self, record: Record) -> OrderedDict[str, None]:
        return self._anonymous if record.meta.user_id is None else self._logged_in

    def _put(self, key: str, record: Record) -> None:
        old = self._records.get(key)
        if old is not None and old.meta.user_id != record.meta.user_id:
            self._forget(key, old)
            old = None
        self._records[key] = record
        self._order(record)[key] = None
        self._order(record).move_to_end(key)
        user_id = record.meta.user_id
        if user_id is not None:
            self._users.setdefault(user_id, set()).add(key)
        if old is None or old.meta.expires_at != record.meta.expires_at:
            heapq.heappush(self._expiry, (record.meta.expires_at, key))
            if len(self._expiry) > 2 * len(self._records) + 64:
                self._expiry = [(r.meta.expires_at, k) for k, r in self._records.items()]
                heapq.heapify(self._expiry)

    def _forget(self, key: str, record: Record) -> None:
        """Take ``key`` out of its LRU order and its user's index."""
        self._order(record).pop(key, None)
        user_id = record.meta.user_id
        if user_id is not None:
            keys = self._users.get(user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._users[user_id]

    def _drop(self, key: str) -> bool:
        record = self._records.pop(key, None)
        if record is None:
            return False
        self._forget(key, record)
        return True

    def _sweep(self, now: float) -> int:
        """Drop every record expired at ``now``: O(log n) per record dropped, O(1) if none."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            record = self._records.get(key)
            if record is not None and record.meta.expires_at == expires_at:
                self._drop(key)
                dropped += 1
        return dropped

    def _live(self, key: str, now: float) -> Record | None:
        self._sweep(now)
        record = self._records.get(key)
        if record is not None:
            self._order(record).move_to_end(key)
        return record

    def _make_room(self, record: Record) -> None:
        self._sweep(record.meta.last_seen)
        if len(self._records) < self.max_entries:
            return
        victims = self._anonymous
        if not victims and record.meta.user_id is not None:
            victims = self._logged_in
        if not victims:
            raise StoreUnavailable(
                f"memory store full: all {self.max_entries} entries are live logged-in "
                "sessions, and an anonymous session never evicts one (raise max_entries)"
            )
        self._drop(next(iter(victims)))

    # -- the store contract ------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        with self._lock:
            return self._live(key, now)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return False
            if last_seen > record.meta.last_seen:
                self._put(key, Record(record.data, record.meta.with_changes(last_seen=last_seen)))
            return True

    def create(self, key: str, record: Record) -> None:
        with self._lock:
            if key in self._records:
                raise KeyCollision("session key collision")
            self._make_room(record)
            self._put(key, Record(dict(record.data), record.meta))

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return None
            version = record.meta.version + 1
            meta = change.meta.with_changes(version=version)
            self._put(key, Record(change.apply(record.data), meta))
            return version

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        with self._lock:
            dropped = self._sweep(now)
        if on_batch is not None and dropped:
            on_batch(dropped)
        return dropped

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._lock:
            self._sweep(now)
            live = [(k, r.meta) for k, r in self._records.items()]
        yield from live

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        """Nothing to do: a logged-in record is filed under its user when it is stored."""

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        with self._lock:
            self._sweep(now)
            return [(key, self._records[key].meta) for key in self._users.get(user_id, ())]

    def index_size(self, user_id: str | None = None) -> int:
        """How many keys the per-user index holds, for ``user_id`` or for all users (stats,
        and the proof that the index holds no more than the stored sessions)."""
        with self._lock:
            if user_id is not None:
                return len(self._users.get(user_id, ()))
            return sum(len(keys) for keys in self._users.values())

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> None:
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self.list_user(user_id, now)

    def count(self, now: float) -> int:
        with self._lock:
            self._sweep(now)
            return len(self._records)

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        return self.load(key, now, refresh_after)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return self.touch(key, last_seen, now)

    async def acreate(self, key: str, record: Record) -> None:
        self.create(key, record)

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        return self.update(key, change, now)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def apurge_expired(self, now: float, batch_size: int = 500) -> int:
        return self.purge_expired(now, batch_size)
