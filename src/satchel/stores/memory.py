"""In-process store: bounded, expiring, for tests and single-process apps."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from ..errors import KeyCollision
from ..record import Change, Meta, Record
from .base import Store


class MemoryStore(Store):
    """Holds at most ``max_entries`` sessions; when full, expired ones go first, then the
    least recently used. Its async forms run inline: there is no I/O to wait for."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._users: dict[str, dict[str, float]] = {}  # user -> {store key: deadline}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if record.meta.expires_at <= now:
            del self._records[key]
            return None
        self._records.move_to_end(key)
        return record

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        with self._lock:
            return self._live(key, now)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return False
            if last_seen > record.meta.last_seen:
                meta = record.meta.with_changes(last_seen=last_seen)
                self._records[key] = Record(record.data, meta)
            return True

    def create(self, key: str, record: Record) -> None:
        with self._lock:
            if key in self._records:
                raise KeyCollision("session key collision")
            if len(self._records) >= self.max_entries:
                self._evict(record.meta.last_seen)
            self._records[key] = Record(dict(record.data), record.meta)

    def update(self, key: str, change: Change, now: float) -> int | None:
        with self._lock:
            record = self._live(key, now)
            if record is None:
                return None
            version = record.meta.version + 1
            meta = change.meta.with_changes(version=version)
            self._records[key] = Record(change.apply(record.data), meta)
            return version

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._records.pop(key, None) is not None

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        with self._lock:
            expired = [k for k, r in self._records.items() if r.meta.expires_at <= now]
            for key in expired:
                del self._records[key]
        if on_batch is not None and expired:
            on_batch(len(expired))
        return len(expired)

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._lock:
            live = [(k, r.meta) for k, r in self._records.items() if r.meta.expires_at > now]
        yield from live

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        with self._lock:
            self._users.setdefault(user_id, {})[key] = deadline

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        with self._lock:
            index = self._users.get(user_id, {})
            live = []
            for key in list(index):
                record = self._records.get(key)
                if (
                    record is None
                    or record.meta.expires_at <= now
                    or record.meta.user_id != user_id
                ):
                    del index[key]
                else:
                    live.append((key, record.meta))
            if not index:
                self._users.pop(user_id, None)
            return live

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> None:
        self.index_add(user_id, key, deadline)

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self.list_user(user_id, now)

    def count(self, now: float) -> int:
        with self._lock:
            return sum(1 for r in self._records.values() if r.meta.expires_at > now)

    def _evict(self, now: float) -> None:
        expired = [k for k, r in self._records.items() if r.meta.expires_at <= now]
        for key in expired:
            del self._records[key]
        while len(self._records) >= self.max_entries:
            self._records.popitem(last=False)

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
