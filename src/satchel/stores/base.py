"""The store contract.

A store keeps :class:`~satchel.record.Record` objects under store keys (SHA-256 hex of
the session ID; a store never sees an ID). Every method has a sync and an async form
(``load``/``aload``, ...), like httpx's ``handle_request``/``handle_async_request``:
a store written around a blocking driver gets the async forms for free (run in a worker
thread; :class:`InlineStore` and :class:`InlineFirstStore` run them inline); a store with
a native async driver overrides them. Optional powers (``count``, ``iter_sessions``,
``count_expired``, ``init_schema``) are separate interfaces, in
:mod:`satchel.stores.capabilities`.

The rules every store keeps (checked by :mod:`satchel.testing`'s conformance suite):

* ``load`` of a missing or expired record returns None and writes nothing.
* ``update`` writes only the keys of the :class:`~satchel.record.Change`, atomically,
  and only into a record that still exists and has not expired; otherwise it returns
  None, so a request cannot bring back a session that another request destroyed.
* ``touch`` refreshes "last seen" of an existing record and never rewrites data.
* Backend failures are raised as :class:`~satchel.errors.StoreUnavailable` (cannot reach,
  timed out) or :class:`~satchel.errors.StoreError` (see
  :func:`satchel.stores._errors.map_exceptions`); "not found" is never an error.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from ..errors import CorruptRecord, StoreError
from ..ids import log_ref
from ..log import security
from ..record import Change, Meta, Record

T = TypeVar("T")


def listed(
    rows: Iterable[Sequence[Any]], parse: Callable[[Sequence[Any]], Meta]
) -> Iterator[tuple[str, Meta]]:
    """``(key, meta)`` for each ``(key, *fields)`` row, ``parse`` making the metadata from
    the fields. A row whose metadata is corrupt is left out with a ``satchel.security``
    warning: one broken record must never fail a whole listing -- a user's sessions page,
    the admin CLI, or every login of that user, which lists their sessions."""
    for row in rows:
        try:
            meta = parse(row[1:])
        except (CorruptRecord, ValueError, TypeError):
            security.warning("session %s: corrupt record left out of a listing", log_ref(row[0]))
            continue
        yield row[0], meta


EXPORT_BATCH = 1000
"""How many records one read of :meth:`~satchel.stores.capabilities.Exportable.iter_records`
fetches (read when an export starts)."""


def exported(
    rows: Iterable[Sequence[Any]], parse: Callable[[Sequence[Any]], Record]
) -> Iterator[tuple[str, Record]]:
    """``(key, record)`` for each ``(key, *fields)`` row, as :func:`listed` does for
    metadata: a corrupt record is left out with a ``satchel.security`` warning."""
    for row in rows:
        try:
            record = parse(row[1:])
        except (CorruptRecord, ValueError, TypeError):
            security.warning("session %s: corrupt record left out of an export", log_ref(row[0]))
            continue
        yield row[0], record


def export_in_batches(
    page: Callable[[str, int], Sequence[Sequence[Any]]],
    parse: Callable[[Sequence[Any]], Record],
) -> Iterator[tuple[str, Record]]:
    """Every row of a keyed table by key order, ``batch_size`` at a time: ``page(after,
    limit)`` returns the live ``(key, *fields)`` rows whose key sorts after ``after``
    (``""`` first), in key order. Each page is its own short read, so no lock or
    snapshot is held for the whole export."""
    after, batch_size = "", EXPORT_BATCH
    while True:
        rows = page(after, batch_size)
        yield from exported(rows, parse)
        if len(rows) < batch_size:
            return
        after = rows[-1][0]


def purge_in_batches(
    delete_batch: Callable[[], int], batch_size: int, on_batch: Callable[[int], None] | None
) -> int:
    """Run ``delete_batch`` (one short transaction deleting at most ``batch_size`` expired
    records) until a batch comes back short; the total deleted."""
    total = 0
    while True:
        deleted = delete_batch()
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            return total


async def apurge_in_batches(
    delete_batch: Callable[[], Awaitable[int]],
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> int:
    """:func:`purge_in_batches` for a native async store."""
    total = 0
    while True:
        deleted = await delete_batch()
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch_size:
            return total


class Store(ABC):
    """Base class of server-side stores. Subclasses implement the sync methods; the
    optional powers (counting, listing everything, a schema) are the interfaces of
    :mod:`satchel.stores.capabilities`, implemented by the stores that have them."""

    @abstractmethod
    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        """The record under ``key``, or None if missing or expired at ``now``.

        With ``refresh_after``, a store may also refresh "last seen" in the same round trip
        when ``satchel.expiry.refresh_due`` holds, and return the record with
        ``refreshed=True``; otherwise the core sends a separate :meth:`touch`."""

    @abstractmethod
    def touch(self, key: str, last_seen: float, now: float) -> bool:
        """Record that the session was seen at ``last_seen``; False if it is gone."""

    @abstractmethod
    def create(self, key: str, record: Record) -> None:
        """Store a new record. ``key`` is fresh (256 random bits behind it)."""

    @abstractmethod
    def update(self, key: str, change: Change, now: float) -> int | None:
        """Apply ``change`` atomically; the new record version, or None if the record
        is gone or expired (nothing is written then)."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the record; True if it existed."""

    @abstractmethod
    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Delete records expired at ``now``, in batches; how many were deleted.
        ``on_batch`` is called with each batch's count (for progress bars). A store that
        expires records by itself returns 0."""

    # -- the per-user index ------------------------------------------------------------------
    # Every server-side store can list a user's live sessions at a cost that grows with that
    # user's session count, not with the total, and cleans up after expired sessions by
    # itself when read (no keyspace notifications).

    @abstractmethod
    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """Record that session ``key`` belongs to ``user_id`` until at most ``deadline``
        (its absolute deadline). Called before ``create`` of a session with a user; stores
        whose records carry the user already (SQL) may do nothing.

        Returns how many entries the user's index holds now (live or not yet pruned: an
        upper bound on the user's live sessions, which spares a login listing them), or
        None when the store cannot tell without listing."""

    def create_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        """Create the record of a logged-in session, filed under ``user_id`` first (so a
        fault between the two leaves an index entry without a record, which listing
        prunes, never a record its user cannot list or revoke); what :meth:`index_add`
        returns. A store that can do both in one round trip, atomically, overrides this."""
        count = self.index_add(user_id, key, record.meta.absolute_deadline)
        self.create(key, record)
        return count

    @abstractmethod
    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        """The live sessions of ``user_id``: (store key, metadata) pairs, pruning what has
        expired or gone."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections and files."""

    # -- async forms: a worker thread (InlineStore and InlineFirstStore run them inline) ----

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        return await asyncio.to_thread(self.load, key, now, refresh_after)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return await asyncio.to_thread(self.touch, key, last_seen, now)

    async def acreate(self, key: str, record: Record) -> None:
        await asyncio.to_thread(self.create, key, record)

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        return await asyncio.to_thread(self.update, key, change, now)

    async def adelete(self, key: str) -> bool:
        return await asyncio.to_thread(self.delete, key)

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """:meth:`purge_expired`; in a worker thread (so is ``on_batch`` then)."""
        return await asyncio.to_thread(self.purge_expired, now, batch_size, on_batch)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return await asyncio.to_thread(self.index_add, user_id, key, deadline)

    async def acreate_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        """:meth:`create_indexed` on the async path."""
        count = await self.aindex_add(user_id, key, record.meta.absolute_deadline)
        await self.acreate(key, record)
        return count

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return await asyncio.to_thread(self.list_user, user_id, now)

    async def aclose(self) -> None:
        self.close()


class InlineStore(Store):
    """A store with no I/O to wait for (an in-process structure): its async forms call the
    sync ones on the event loop, since a hop to a worker thread would cost more than the
    call. Written out, not generated: a generic ``*args`` twin costs 100-170 ns more."""

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

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.purge_expired(now, batch_size, on_batch)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return self.index_add(user_id, key, deadline)

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self.list_user(user_id, now)


class InlineFirstStore(Store):
    """An embedded database with locks: each async form first runs inline, within
    :meth:`_nowait` (where a busy lock fails at once instead of blocking the event loop),
    and again in a worker thread, waiting, only when :meth:`_busy` says the lock was
    busy. An uncontended call is then cheaper than a thread hop. A purge, long by nature,
    always runs in a thread."""

    def _nowait(self) -> AbstractContextManager[None]:
        """Inside it, calls fail at once on a busy lock instead of waiting."""
        return nullcontext()

    def _busy(self, exc: StoreError) -> bool:
        """True if ``exc`` says a lock was busy (the call may be tried again, waiting)."""
        return False

    async def _inline_first(self, call: Callable[..., T], *args: Any) -> T:
        try:
            with self._nowait():
                return call(*args)
        except StoreError as exc:
            if not self._busy(exc):
                raise
        return await asyncio.to_thread(call, *args)

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        return await self._inline_first(self.load, key, now, refresh_after)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return await self._inline_first(self.touch, key, last_seen, now)

    async def acreate(self, key: str, record: Record) -> None:
        await self._inline_first(self.create, key, record)

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        return await self._inline_first(self.update, key, change, now)

    async def adelete(self, key: str) -> bool:
        return await self._inline_first(self.delete, key)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        return await self._inline_first(self.index_add, user_id, key, deadline)

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return await self._inline_first(self.list_user, user_id, now)
