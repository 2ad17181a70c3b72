"""The store operations the I/O-free core yields, and the two drivers that run them.

A flow is a generator that yields :class:`Op` values and receives their results, so the
same rules serve the sync and the async paths, which differ only in the driver
(:func:`drive` or :func:`adrive`) -- the shape of httpx's ``Auth.auth_flow``. Store errors
are thrown back into the flow, which may handle them.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import instrumentation
from .errors import SessionStateError, StoreError
from .record import Change, Meta, Record
from .stores.base import Store

T = TypeVar("T")
R = TypeVar("R")


class Op(Generic[R]):
    """One store call, runnable on the sync or the async path.

    The operations are plain slotted dataclasses, not frozen ones: a flow builds one or
    two per request, and a frozen dataclass sets each field through
    ``object.__setattr__`` (about 3,000 instructions more per object, callgrind). Nothing
    changes an operation once yielded."""

    __slots__ = ()

    def run(self, store: Store) -> R:
        raise NotImplementedError

    async def arun(self, store: Store) -> R:
        raise NotImplementedError


@dataclass(slots=True)
class Load(Op[Record | None]):
    key: str
    now: float
    refresh_after: float | None = None

    def run(self, store: Store) -> Record | None:
        return store.load(self.key, self.now, self.refresh_after)

    async def arun(self, store: Store) -> Record | None:
        return await store.aload(self.key, self.now, self.refresh_after)


@dataclass(slots=True)
class Touch(Op[bool]):
    key: str
    now: float

    def run(self, store: Store) -> bool:
        return store.touch(self.key, self.now, self.now)

    async def arun(self, store: Store) -> bool:
        return await store.atouch(self.key, self.now, self.now)


@dataclass(slots=True)
class Create(Op[None]):
    key: str
    record: Record

    def run(self, store: Store) -> None:
        store.create(self.key, self.record)

    async def arun(self, store: Store) -> None:
        await store.acreate(self.key, self.record)


@dataclass(slots=True)
class CreateIndexed(Op[int | None]):
    """:class:`Create` of a logged-in session, filed under its user first."""

    key: str
    record: Record
    user_id: str

    def run(self, store: Store) -> int | None:
        return store.create_indexed(self.key, self.record, self.user_id)

    async def arun(self, store: Store) -> int | None:
        return await store.acreate_indexed(self.key, self.record, self.user_id)


@dataclass(slots=True)
class Update(Op[int | None]):
    key: str
    change: Change
    now: float

    def run(self, store: Store) -> int | None:
        return store.update(self.key, self.change, self.now)

    async def arun(self, store: Store) -> int | None:
        return await store.aupdate(self.key, self.change, self.now)


@dataclass(slots=True)
class Delete(Op[bool]):
    key: str

    def run(self, store: Store) -> bool:
        return store.delete(self.key)

    async def arun(self, store: Store) -> bool:
        return await store.adelete(self.key)


@dataclass(slots=True)
class IndexAdd(Op[int | None]):
    user_id: str
    key: str
    deadline: float

    def run(self, store: Store) -> int | None:
        return store.index_add(self.user_id, self.key, self.deadline)

    async def arun(self, store: Store) -> int | None:
        return await store.aindex_add(self.user_id, self.key, self.deadline)


@dataclass(slots=True)
class ListUser(Op[list[tuple[str, Meta]]]):
    user_id: str
    now: float

    def run(self, store: Store) -> list[tuple[str, Meta]]:
        return store.list_user(self.user_id, self.now)

    async def arun(self, store: Store) -> list[tuple[str, Meta]]:
        return await store.alist_user(self.user_id, self.now)


Flow = Generator[Op[Any], Any, T]


def _no_store(op: Op[Any]) -> Store:
    raise SessionStateError(f"{type(op).__name__}: this session backend has no server-side store")


def drive(flow: Flow[T], store: Store | None) -> T:
    """Run a flow on the sync path. Store errors are thrown into the flow. ``store`` is
    None for a backend that keeps nothing on the server (its flows yield no operation).
    Each store call goes through the installed instrument, if any
    (:mod:`satchel.instrumentation`)."""
    instrument = instrumentation.installed
    try:
        op = next(flow)
        while True:
            try:
                target = store if store is not None else _no_store(op)
                result = op.run(target) if instrument is None else instrument.call(op, target)
            except StoreError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(flow: Flow[T], store: Store | None) -> T:
    """Run a flow on the async path."""
    instrument = instrumentation.installed
    try:
        op = next(flow)
        while True:
            try:
                target = store if store is not None else _no_store(op)
                if instrument is None:
                    result = await op.arun(target)
                else:
                    result = await instrument.acall(op, target)
            except StoreError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
