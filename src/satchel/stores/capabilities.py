"""What a store can do beyond the :class:`~satchel.stores.base.Store` contract.

Every store loads, writes, deletes, purges and keeps its per-user index: those are on the
base class. The powers below are optional, and each is one small interface, as scs's
``IterableStore``: a store that has the power defines the method, and a store that does
not simply leaves it out (no ``NotImplementedError``, no ``None`` meaning "cannot").
Callers ask with ``isinstance`` (the interfaces are runtime-checkable protocols, so a
third-party store needs no extra base class)::

    if isinstance(store, Countable):
        print(store.count(time.time()))

They serve administration (the ``satchel`` CLI, stats pages), never a request: request
code relies only on the base contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..record import Meta, Record


@runtime_checkable
class Countable(Protocol):
    """Can count its live sessions (``satchel sessions stats``)."""

    def count(self, now: float) -> int:
        """How many sessions are live at ``now``; may be approximate."""
        ...


@runtime_checkable
class Listable(Protocol):
    """Can list every live session (``satchel sessions list`` without ``--user``). It costs
    in proportion to the whole store; request code lists one user's sessions instead
    (``Store.list_user``)."""

    def iter_sessions(self, now: float) -> Iterator[tuple[str, Meta]]:
        """Every session live at ``now``: (store key, metadata) pairs."""
        ...


@runtime_checkable
class Exportable(Protocol):
    """Can hand over every live record, data included (``satchel sessions migrate``
    copies a store's sessions into another with it). Memcached cannot: its keys cannot be
    enumerated. It reads the whole store, in batches (a short read each), so it serves
    administration only."""

    def iter_records(self, now: float) -> Iterator[tuple[str, Record]]:
        """Every record live at ``now``: (store key, record) pairs, each key once, read in
        batches. A record created, deleted or expired while the iteration runs may or may
        not be in it; a corrupt record is left out with a ``satchel.security`` warning."""
        ...


@runtime_checkable
class ExpiryCountable(Protocol):
    """Keeps expired records until a purge, and can count them (the progress bar of
    ``satchel sessions purge``). Stores that expire records by themselves (Redis,
    Memcached) do not have this power."""

    def count_expired(self, now: float) -> int:
        """How many records expired at ``now`` wait for ``purge_expired``."""
        ...


@runtime_checkable
class HasSchema(Protocol):
    """Has a schema to create (``satchel db init``): a table and its indexes."""

    def init_schema(self) -> None:
        """Create what the store needs, if missing; safe to run again and concurrently."""
        ...


__all__ = ["Countable", "ExpiryCountable", "Exportable", "HasSchema", "Listable"]
