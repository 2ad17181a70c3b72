"""In-process store: bounded, expiring, for tests and single-process apps."""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

from ..errors import ConfigurationError, KeyCollision, StoreUnavailable
from ..record import Change, Meta, Record
from .base import InlineStore

#: Most expired entries one call removes (load, touch, create, update, listing): a burst of
#: sessions that expire together is removed a batch per call, not all in the one request
#: that comes next (100,000 at once held the lock 0.33-0.43 s on the event loop).
SWEEP_BATCH = 100

_NEVER = 2**62  # the expiry bucket of a record that never expires


class MemoryStore(InlineStore):
    """Holds at most ``max_entries`` sessions. Its async forms run inline: there is no I/O
    to wait for.

    Room is shared fairly, so that no one can log another user out or lock visitors out:

    - Logged-in sessions may fill at most :attr:`logged_in_budget` entries (90% of
      ``max_entries``; all of them below 10): the rest is kept for anonymous visitors, so a
      store full of logins still serves them.
    - Each user's *share* is :attr:`user_share` sessions (1% of ``max_entries``, at least 1).
      Within it, a user's sessions are never evicted by anyone else.

    A create at capacity drops, in this order: sessions that have expired; for an anonymous
    create, the least recently used anonymous session. A logged-in create first takes an
    anonymous session's place while logged-in sessions are within their budget; once they
    fill it, it evicts the creating user's own least recently used session if the user
    already holds a full share, else the least recently used session of a user holding more
    than a share, else the user's own least recently used session -- never the user's
    only one, which is most likely the session this create regenerates. A user with no
    session to give up in a budget full of users within their shares is refused with
    :class:`StoreUnavailable` (a 503, saying to raise ``max_entries``), as is an anonymous
    create into a store holding no anonymous session. An update that logs a session in
    (Django's login) keeps to the same budget. So one account logging in again and
    again only ever replaces its own sessions, and anonymous traffic never evicts a
    logged-in user.

    Every step costs O(log n) at most, whatever the store holds (a scan of all entries took
    40-112 ms per create at 100,000): keys are filed by the second they expire in (moved
    when a write changes it, taken out when deleted), the seconds sit in a heap, and each
    class of session has its own LRU order, as has each user's set of sessions. A call
    removes at most :data:`SWEEP_BATCH` expired entries (one expired for a second or more);
    the rest go on later calls, and an expired record met before then is removed on the
    spot and never returned. Nothing is ever rebuilt or scanned as a whole (the heap of
    0.1's first fix was rebuilt in one call, 70-110 ms at 100,000).

    The per-user index is derived from the records, not kept beside them: a key is filed
    under its user when a logged-in record is stored and removed with the record (delete,
    eviction, expiry), so it never holds more than the user's stored sessions.
    ``index_add`` has nothing to do, as on the SQL stores.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ConfigurationError(f"memory store: max_entries={max_entries} must be at least 1")
        self.max_entries = max_entries
        #: Most entries logged-in sessions may hold: the rest stays for anonymous visitors.
        self.logged_in_budget = max_entries - max_entries // 10
        #: Sessions per user that no other user's login can evict.
        self.user_share = max(1, max_entries // 100)
        self._records: dict[str, Record] = {}
        self._anonymous: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._logged_in: OrderedDict[str, None] = OrderedDict()
        # expiry, by the second: second -> keys expiring in it, and a heap of those seconds
        # (each once; a bucket left empty by a delete goes when its second is reached)
        self._buckets: dict[int, dict[str, None]] = {}
        self._due: list[int] = []
        # user -> store keys of their records, least recently used first
        self._users: dict[str, dict[str, None]] = {}
        self._crowded: dict[str, None] = {}  # users holding more than user_share sessions
        self._lock = threading.Lock()

    # -- bookkeeping: every change of self._records goes through _put or _drop -----------------

    def _order(self, record: Record) -> OrderedDict[str, None]:
        return self._anonymous if record.meta.user_id is None else self._logged_in

    def _used(self, key: str, record: Record) -> None:
        """Make ``key`` the most recently used of its class and of its user's sessions."""
        self._order(record).move_to_end(key)
        user_id = record.meta.user_id
        if user_id is not None:
            keys = self._users[user_id]
            del keys[key]
            keys[key] = None

    @staticmethod
    def _second(expires_at: float) -> int:
        """The bucket of ``expires_at``; one that never expires (inf, nan) goes to the last."""
        return math.floor(expires_at) if math.isfinite(expires_at) else _NEVER

    def _file(self, key: str, expires_at: float) -> None:
        second = self._second(expires_at)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = {}
            heapq.heappush(self._due, second)
        bucket[key] = None

    def _unfile(self, key: str, expires_at: float) -> None:
        bucket = self._buckets.get(self._second(expires_at))
        if bucket is not None:
            bucket.pop(key, None)

    def _put(self, key: str, record: Record) -> None:
        old = self._records.get(key)
        if old is not None and old.meta.user_id != record.meta.user_id:
            self._forget(key, old)
        if old is None:
            self._file(key, record.meta.expires_at)
        elif old.meta.expires_at != record.meta.expires_at:
            self._unfile(key, old.meta.expires_at)
            self._file(key, record.meta.expires_at)
        self._records[key] = record
        self._order(record)[key] = None
        user_id = record.meta.user_id
        if user_id is not None:
            keys = self._users.setdefault(user_id, {})
            keys[key] = None
            if len(keys) > self.user_share:
                self._crowded[user_id] = None
        self._used(key, record)

    def _forget(self, key: str, record: Record) -> None:
        """Take ``key`` out of its LRU order and its user's index."""
        self._order(record).pop(key, None)
        user_id = record.meta.user_id
        if user_id is not None:
            keys = self._users.get(user_id)
            if keys is not None:
                keys.pop(key, None)
                if len(keys) <= self.user_share:
                    self._crowded.pop(user_id, None)
                if not keys:
                    del self._users[user_id]

    def _drop(self, key: str) -> bool:
        record = self._records.pop(key, None)
        if record is None:
            return False
        self._forget(key, record)
        self._unfile(key, record.meta.expires_at)
        return True

    def _sweep(self, now: float, limit: int = SWEEP_BATCH) -> int:
        """Drop at most ``limit`` records expired at ``now``, from the seconds that have
        fully passed: O(1) each, plus O(log n) per second emptied. Returns how many."""
        dropped = 0
        due, buckets = self._due, self._buckets
        while due and due[0] + 1 <= now and due[0] != _NEVER and dropped < limit:
            bucket = buckets[due[0]]
            for key in list(itertools.islice(bucket, limit - dropped)):
                self._drop(key)  # expires_at < due[0] + 1 <= now
                dropped += 1
            if not bucket:
                del buckets[heapq.heappop(due)]
        return dropped

    def _expired_left(self, now: float) -> bool:
        return bool(self._due) and self._due[0] + 1 <= now and self._due[0] != _NEVER

    def _current(self, key: str, now: float) -> Record | None:
        """The record under ``key`` unless it has expired (then it is dropped now)."""
        record = self._records.get(key)
        if record is not None and record.meta.expires_at <= now:
            self._drop(key)
            return None
        return record

    def _live(self, key: str, now: float) -> Record | None:
        self._sweep(now)
        record = self._current(key, now)
        if record is not None:
            self._used(key, record)
        return record

    def _reclaim(self, now: float, order: OrderedDict[str, None]) -> None:
        """Free an entry of ``order`` that has expired but was not swept yet (its least
        recently used one is the likeliest), else whatever the next batch finds expired."""
        if not order or self._current(next(iter(order)), now) is not None:
            self._sweep(now)

    def _logged_in_victim(self, user_id: str) -> str:
        """The session a login by ``user_id`` replaces once logged-in sessions fill their
        budget (see the class docstring): never one of a user within their share."""
        own = self._users.get(user_id)
        # Never the user's only session: it is most likely the one this create regenerates
        # (a login, a privilege change), whose loss would log the user out; a refusal (503)
        # keeps it.
        if own and len(own) > 1 and len(own) >= self.user_share:
            return next(iter(own))
        for crowded in self._crowded:
            return next(iter(self._users[crowded]))
        if own and len(own) > 1:
            return next(iter(own))
        raise StoreUnavailable(
            f"memory store full: logged-in sessions fill their budget of "
            f"{self.logged_in_budget} entries (max_entries={self.max_entries}), every user "
            f"within their share of {self.user_share}, and a login never logs another user "
            "out (raise max_entries)"
        )

    def _admit_login(self, user_id: str, now: float) -> None:
        """Room in the logged-in budget for one more session of ``user_id``."""
        if len(self._logged_in) >= self.logged_in_budget:
            self._reclaim(now, self._logged_in)
            if len(self._logged_in) >= self.logged_in_budget:
                self._drop(self._logged_in_victim(user_id))

    def _make_room(self, record: Record) -> None:
        now = record.meta.last_seen
        self._sweep(now)
        if record.meta.user_id is not None:
            self._admit_login(record.meta.user_id, now)
        if len(self._records) < self.max_entries:
            return
        self._reclaim(now, self._anonymous)
        if len(self._records) < self.max_entries:
            return
        if not self._anonymous:
            raise StoreUnavailable(
                f"memory store full: all {self.max_entries} entries are live logged-in "
                "sessions, and an anonymous session never evicts one (raise max_entries)"
            )
        self._drop(next(iter(self._anonymous)))

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
            version = change.version_over(record.meta.version)
            meta = change.meta_over(record.meta).with_changes(version=version)
            user = meta.user_id
            if user is not None and record.meta.user_id is None:  # logged in by an update
                self._admit_login(user, now)  # (Django's login): the same budget as a create
            self._put(key, Record(change.apply(record.data), meta))
            return version

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Remove every expired record, ``batch_size`` heap entries per hold of the lock, so
        that requests served meanwhile wait for one batch at most."""
        total = 0
        more = True
        while more:
            with self._lock:
                dropped = self._sweep(now, max(1, batch_size))
                more = self._expired_left(now)
            total += dropped
            if on_batch is not None and dropped:
                on_batch(dropped)
        return total

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        with self._lock:
            self._sweep(now)
            live = [(k, r.meta) for k, r in self._records.items() if r.meta.expires_at > now]
        yield from live

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        with self._lock:
            self._sweep(now)
            live = [(k, r) for k, r in self._records.items() if r.meta.expires_at > now]
        yield from live

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """Nothing to do: a logged-in record is filed under its user when it is stored
        (and no count: listing is an in-process lookup)."""
        return None

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        with self._lock:
            self._sweep(now)
            keys = list(self._users.get(user_id, ()))
            records = [(key, self._current(key, now)) for key in keys]
            return [(key, record.meta) for key, record in records if record is not None]

    def index_size(self, user_id: str | None = None) -> int:
        """How many keys the per-user index holds, for ``user_id`` or for all users (stats,
        and the proof that the index holds no more than the stored sessions)."""
        with self._lock:
            if user_id is not None:
                return len(self._users.get(user_id, ()))
            return sum(len(keys) for keys in self._users.values())

    def count(self, now: float) -> int:
        """Live sessions: expired ones are removed first, a batch per hold of the lock."""
        self.purge_expired(now)
        with self._lock:
            return len(self._records)
