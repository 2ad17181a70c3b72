"""Memcached store (pymemcache), the classic shared cache.

Each session is one item, ``{prefix}s:{store key}``, holding JSON ``{"data", "meta"}``.
Concurrent commits are made safe with compare-and-swap: ``update`` reads the item with its
CAS token, merges the change and writes it back only if nobody wrote in between, retrying
otherwise, so disjoint writes all persist and a deleted session is never written back.

Costs: a read is one round trip (``gets``), plus a ``gets``/``cas`` pair for the "last
seen" refresh at most once per refresh interval; a write is three (the read, then ``gets``
and ``cas``), more only when another request won the race. The async path runs the same
client in a worker thread: no asyncio Memcached client offers CAS with the same care.

Memcached may evict any item at any time. An evicted session is simply gone (the user is
logged out), which fails closed. Anything that later relies on a Memcached marker
(revocation, indexes) must treat a missing marker as "revoked", never as "allowed".

Expiry: Memcached reads an expiry of more than 30 days (2,592,000 s) as an absolute Unix
time, so longer lifetimes are sent as the absolute deadline, shorter ones as seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from .. import _json
from ..errors import ConfigurationError, CorruptRecord, KeyCollision, StoreError, StoreUnavailable
from ..ids import user_key
from ..record import Change, Meta, Record
from ..redact import scrub
from ._errors import ErrorTable, map_exceptions
from .base import Store

THIRTY_DAYS = 30 * 24 * 3600
DEFAULT_PREFIX = "satchel:"
CAS_ATTEMPTS = 50


def expire_value(expires_at: float, now: float) -> int:
    """The ``exptime`` Memcached needs for an item that must live until ``expires_at``."""
    seconds = math.ceil(expires_at - now)
    if seconds <= 0:
        return -1  # already expired: Memcached drops it at once
    if seconds > THIRTY_DAYS:
        return math.ceil(expires_at)  # absolute Unix time
    return seconds


def index_expiry(deadlines: Iterable[float]) -> int:
    """The ``exptime`` of a user's index item, which must live until its latest deadline:
    that deadline as a Unix time. No clock is read (the app's own reaches the store only
    through the deadlines): Memcached takes any exptime past 30 days as a Unix time, which
    an epoch deadline always is, and a test clock near 1970 gives seconds, a longer life."""
    return max(1, math.ceil(max(deadlines)))


@cache
def _error_table() -> ErrorTable:
    from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

    return {
        (TimeoutError, MemcacheUnexpectedCloseError, OSError): StoreUnavailable,
        MemcacheError: StoreError,
    }


def _describe(exc: BaseException, kind: type[StoreError]) -> str:
    # an unavailable server says little in str() ("timed out"); repr names the error
    return scrub(repr(exc) if kind is StoreUnavailable else str(exc))


class MemcachedStore(Store):
    """``MemcachedStore("memcached://127.0.0.1:11211")``; several servers
    (``memcached://h1:11211,h2:11211``) are spread by rendezvous hashing.

    ``timeout`` (default 2 s) bounds connecting and each call; ``max_pool_size`` (default
    32) connections per server."""

    def __init__(
        self,
        servers: list[tuple[str, int]],
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
        max_pool_size: int = 32,
        client: Any = None,
    ) -> None:
        if not servers and client is None:
            raise ConfigurationError("MemcachedStore needs at least one server")
        self.servers, self.prefix = servers, prefix
        self.timeout, self.max_pool_size = timeout, max_pool_size
        self._client = client
        self._owns_client = client is None
        self._pid = os.getpid()

    @property
    def client(self) -> Any:
        if os.getpid() != self._pid and self._owns_client:
            self._client = None  # forked: the parent's sockets are not ours
            self._pid = os.getpid()
        if self._client is None:
            from pymemcache.client.base import PooledClient
            from pymemcache.client.hash import HashClient

            common: dict[str, Any] = {
                "connect_timeout": self.timeout,
                "timeout": self.timeout,
                "max_pool_size": self.max_pool_size,
                "default_noreply": False,  # we need every answer: add, cas, delete
                "no_delay": True,
            }
            if len(self.servers) == 1:
                self._client = PooledClient(self.servers[0], **common)
            else:
                self._client = HashClient(self.servers, use_pooling=True, **common)
        return self._client

    def item_key(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    @staticmethod
    def _errors() -> AbstractContextManager[None]:
        return map_exceptions(_error_table, "Memcached", describe=_describe)

    def _cas_loop(
        self, key: str, now: float, apply: Callable[[Record], Record | None]
    ) -> Record | None:
        """Read, transform and compare-and-swap until it sticks. ``apply`` returns the new
        record, or None to write nothing. Returns what was written, or None if the session
        is gone, expired, or ``apply`` declined."""
        item = self.item_key(key)
        with self._errors():
            for _ in range(CAS_ATTEMPTS):
                raw, token = self.client.gets(item)
                if raw is None:
                    return None
                current = Record.from_document(raw)
                if current.meta.expires_at <= now:
                    return None
                new = apply(current)
                if new is None:
                    return current
                stored = self.client.cas(
                    item, new.to_document(), token, expire=expire_value(new.meta.expires_at, now)
                )
                if stored:
                    return new
                if stored is None:  # NOT_FOUND: deleted meanwhile
                    return None
        raise StoreUnavailable(f"Memcached: gave up after {CAS_ATTEMPTS} CAS conflicts")

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        with self._errors():
            raw = self.client.get(self.item_key(key))
        if raw is None:
            return None
        record = Record.from_document(raw)
        if record.meta.expires_at <= now:
            return None
        user_id = record.meta.user_id
        if user_id is not None and key not in self._index(user_id)[0]:
            # The user's index was evicted (or never written): a session that cannot be
            # listed cannot be revoked, so it is not honoured. Fail closed.
            return None
        return record

    # -- the per-user index: one item per user, {store key: deadline}, CAS-updated -------

    def index_item(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_key(user_id)}"

    def _index(self, user_id: str) -> tuple[dict[str, float], Any]:
        with self._errors():
            raw, token = self.client.gets(self.index_item(user_id))
        if raw is None:
            return {}, None
        try:
            return {k: float(v) for k, v in _json.loads(raw).items()}, token
        except (ValueError, AttributeError):
            return {}, token

    def _write_index(self, user_id: str, index: dict[str, float], token: Any) -> bool:
        item = self.index_item(user_id)
        body = _json.dumps_bytes(index)
        expire = index_expiry(index.values()) if index else -1
        with self._errors():
            if token is None:
                return bool(self.client.add(item, body, expire=expire))
            return bool(self.client.cas(item, body, token, expire=expire))

    def index_add(self, user_id: str, key: str, deadline: float) -> int | None:
        for _ in range(CAS_ATTEMPTS):
            index, token = self._index(user_id)
            index[key] = deadline
            if self._write_index(user_id, index, token):
                return len(index)
        raise StoreUnavailable(f"Memcached: gave up after {CAS_ATTEMPTS} CAS conflicts")

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        index, token = self._index(user_id)
        if not index:
            return []
        items = {self.item_key(k): k for k, deadline in index.items() if deadline > now}
        with self._errors():
            found = self.client.get_many(list(items)) if items else {}
        live: list[tuple[str, Meta]] = []
        for item, raw in found.items():
            try:
                record = Record.from_document(raw)
            except CorruptRecord:
                continue
            if record.meta.expires_at > now and record.meta.user_id == user_id:
                live.append((items[item], record.meta))
        keep = {k: index[k] for k, _ in live}
        if keep != index:
            self._write_index(user_id, keep, token)  # best effort; readers prune again
        return live

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        def refresh(current: Record) -> Record | None:
            if last_seen <= current.meta.last_seen:
                return None
            return Record(current.data, current.meta.with_changes(last_seen=last_seen))

        return self._cas_loop(key, now, refresh) is not None

    def create(self, key: str, record: Record) -> None:
        now = record.meta.last_seen
        with self._errors():
            added = self.client.add(
                self.item_key(key),
                record.to_document(),
                expire=expire_value(record.meta.expires_at, now),
            )
        if not added:
            raise KeyCollision("session key collision")

    def update(self, key: str, change: Change, now: float) -> int | None:
        def merge(current: Record) -> Record:
            meta = change.meta_over(current.meta).with_changes(
                version=change.version_over(current.meta.version)
            )
            return Record(change.apply(current.data), meta)

        written = self._cas_loop(key, now, merge)
        return None if written is None else written.meta.version

    def delete(self, key: str) -> bool:
        with self._errors():
            return bool(self.client.delete(self.item_key(key), noreply=False))

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        """Memcached drops expired items by itself: nothing to purge."""
        return 0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without satchel's parameters, and their values; ConfigurationError for an
    unknown parameter or a bad value (nothing is connected)."""
    from .registry import read_url

    own: dict[str, Callable[[str], Any]] = {"prefix": str, "timeout": float, "max_pool_size": int}
    return read_url(url, own)  # nothing else is read: pymemcache gets no query


def from_url(url: str) -> MemcachedStore:
    """``memcached://host:11211[,host2:11211]?prefix=...&timeout=...&max_pool_size=...``."""
    clean, options = parse_url(url)
    servers = []
    for part in filter(None, urlsplit(clean).netloc.split(",")):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        try:
            servers.append((host or "127.0.0.1", int(port or 11211)))
        except ValueError:
            raise ConfigurationError(f"Memcached URL: bad port in {scrub(part)!r}") from None
    return MemcachedStore(servers, **options)
