"""A store that copies sessions from an old store into a new one as they are used: the
zero-downtime path between two stores (docs/migrating-stores.md).

``ReadThroughStore(new, old)``, or the URL ``readthrough+<new URL>?from=<old URL,
percent-encoded>``. A read goes to the new store first; on a miss it reads the old store,
and a live record found there is copied into the new store (filed under its user) and
served. Every write goes to the new store only. Meanwhile ``satchel sessions migrate``
copies the rest in the background; once it has run, the app is switched to the new store
alone and the old one can go.

The old store keeps its copy (it is never written, so workers still on the old store
during a rolling restart keep their users logged in), and a session destroyed must stay
destroyed though that copy is there. Three rules keep the old copy from coming back:

* **delete** (logout, regeneration, revocation, the per-user cap) removes the old copy
  first, then the new record.
* **a copy** (here, and in ``migrate``) creates the record in the new store, then reads
  the old store again: when the old copy is gone by then, the session was destroyed
  between our read and our create, and the new record is deleted again (the read answers
  "no session"). The delete order makes this sound: a create that came after the delete
  of the new record came after the delete of the old copy too, so the second read sees it
  gone.
* **an update that may make the session end sooner** (a smaller idle timeout or absolute
  deadline), or starts it over (``clear``) or changes its user, deletes the old copy: the
  new record may then end before the old copy would, and a read after that must not find
  the old copy.

Everything else the old copy holds is older than the new record and ends no later than it
(a refresh moves "last seen" forward in the new store only), so it is never read while the
new record lives. The per-user listing merges both stores (a user's sessions not copied yet
are only in the old one), so "log out everywhere" reaches every copy.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from ..errors import ConfigurationError, KeyCollision
from ..record import Change, Meta, Record
from .base import Store

PREFIX = "readthrough+"


def _ends_sooner(change: Change) -> bool:
    """Whether the record after ``change`` may end before the copy the old store holds,
    or holds another user's session: then the old copy must go."""
    base = change.base
    if base is None or change.clear:
        return True
    meta = change.meta
    return (
        meta.idle_timeout < base.idle_timeout
        or meta.absolute_deadline < base.absolute_deadline
        or meta.user_id != base.user_id
    )


def _merged(new: list[tuple[str, Meta]], old: list[tuple[str, Meta]]) -> list[tuple[str, Meta]]:
    known = {key for key, _ in new}
    return new + [(key, meta) for key, meta in old if key not in known]


class ReadThroughStore(Store):
    """Sessions read from ``new``, or copied into it from ``old`` on first use; written to
    ``new`` only (see the module docstring for why no destroyed session comes back)."""

    def __init__(self, new: Store, old: Store) -> None:
        self.new, self.old = new, old

    # -- sync path ----------------------------------------------------------------------------

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        record = self.new.load(key, now, refresh_after)
        if record is not None:
            return record
        record = self.old.load(key, now)  # never refreshed there: the old store is only read
        if record is None:
            return None
        try:
            self._create(key, record)
        except KeyCollision:  # another request copied it first (or an expired leftover)
            return self.new.load(key, now, refresh_after)
        if self.old.load(key, now) is None:  # destroyed between our read and our create
            self.new.delete(key)
            return None
        return record

    def _create(self, key: str, record: Record) -> None:
        if record.meta.user_id is None:
            self.new.create(key, record)
        else:
            self.new.create_indexed(key, record, record.meta.user_id)

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return self.new.touch(key, last_seen, now)

    def create(self, key: str, record: Record) -> None:
        self.new.create(key, record)

    def create_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        self.new.create_indexed(key, record, user_id)
        return None  # the new store's count misses the user's sessions not copied yet

    def update(self, key: str, change: Change, now: float) -> int | None:
        version = self.new.update(key, change, now)
        if version is not None and _ends_sooner(change):
            self.old.delete(key)
        return version

    def delete(self, key: str) -> bool:
        in_old = self.old.delete(key)  # first: see the module docstring
        return self.new.delete(key) or in_old

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self.new.purge_expired(now, batch_size, on_batch) + self.old.purge_expired(
            now, batch_size, on_batch
        )

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        """None: the new store's count misses the user's sessions not copied yet, so a
        login lists them (both stores) to keep ``max_sessions_per_user``."""
        self.new.index_add(user_id, key, deadline)
        return None

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return _merged(self.new.list_user(user_id, now), self.old.list_user(user_id, now))

    def close(self) -> None:
        try:
            self.new.close()
        finally:
            self.old.close()

    # -- async path ---------------------------------------------------------------------------

    async def aload(
        self, key: str, now: float, refresh_after: float | None = None
    ) -> Record | None:
        record = await self.new.aload(key, now, refresh_after)
        if record is not None:
            return record
        record = await self.old.aload(key, now)
        if record is None:
            return None
        try:
            await self._acreate(key, record)
        except KeyCollision:
            return await self.new.aload(key, now, refresh_after)
        if await self.old.aload(key, now) is None:
            await self.new.adelete(key)
            return None
        return record

    async def _acreate(self, key: str, record: Record) -> None:
        if record.meta.user_id is None:
            await self.new.acreate(key, record)
        else:
            await self.new.acreate_indexed(key, record, record.meta.user_id)

    async def atouch(self, key: str, last_seen: float, now: float) -> bool:
        return await self.new.atouch(key, last_seen, now)

    async def acreate(self, key: str, record: Record) -> None:
        await self.new.acreate(key, record)

    async def acreate_indexed(self, key: str, record: Record, user_id: str) -> int | None:
        await self.new.acreate_indexed(key, record, user_id)
        return None

    async def aupdate(self, key: str, change: Change, now: float) -> int | None:
        version = await self.new.aupdate(key, change, now)
        if version is not None and _ends_sooner(change):
            await self.old.adelete(key)
        return version

    async def adelete(self, key: str) -> bool:
        in_old = await self.old.adelete(key)
        return await self.new.adelete(key) or in_old

    async def apurge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        new = await self.new.apurge_expired(now, batch_size, on_batch)
        return new + await self.old.apurge_expired(now, batch_size, on_batch)

    async def aindex_add(self, user_id: str, key: str, deadline: float) -> int | None:
        await self.new.aindex_add(user_id, key, deadline)
        return None

    async def alist_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        new = await self.new.alist_user(user_id, now)
        return _merged(new, await self.old.alist_user(user_id, now))

    async def aclose(self) -> None:
        try:
            await self.new.aclose()
        finally:
            await self.old.aclose()


def split_url(url: str) -> tuple[str, str]:
    """The new and the old store URL of ``readthrough+<new>?from=<old>``; ConfigurationError
    when ``from`` is missing or given twice, or a store URL is itself a read-through one."""
    from ..redact import mask_url

    if not url.lower().startswith(PREFIX):
        raise ConfigurationError(f"store URL {mask_url(url)!r} does not start with {PREFIX}")
    base, _, query = url[len(PREFIX) :].partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    olds = [value for name, value in params if name == "from"]
    if len(olds) != 1 or not olds[0]:
        raise ConfigurationError(
            f"store URL {mask_url(url)!r}: a read-through store needs the old store's URL, "
            "percent-encoded, once in ?from= (readthrough+redis://host/0?from=sqlite%3A%2F%2F"
            "%2Fsessions.db)"
        )
    rest = [(name, value) for name, value in params if name != "from"]
    new = base + ("?" + urlencode(rest) if rest else "")
    for inner in (new, olds[0]):
        if inner.lower().startswith(PREFIX):
            raise ConfigurationError(
                f"store URL {mask_url(url)!r}: a read-through store cannot wrap another one"
            )
    return new, olds[0]


def from_url(url: str) -> ReadThroughStore:
    from .registry import store_from_url

    new_url, old_url = split_url(url)
    new = store_from_url(new_url)
    try:
        old = store_from_url(old_url)
    except BaseException:
        new.close()
        raise
    return ReadThroughStore(new, old)
