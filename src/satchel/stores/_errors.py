"""One translation of driver errors at the store boundary, as httpx's ``map_exceptions``.

A store wraps each call to its driver in :func:`map_exceptions` with its error table
(driver exception classes -> :class:`~satchel.errors.StoreError` subclass), so the core
only ever sees satchel's exceptions: :class:`~satchel.errors.StoreUnavailable` for what a
retry or a failover may cure (cannot connect, timed out, a read-only replica), a plain
:class:`~satchel.errors.StoreError` for the rest. The driver's exception stays reachable as
``StoreError.original`` and ``__cause__``; the message names the backend and is scrubbed of
secrets (passwords in URLs, DSNs).

It is a plain context manager, so the async paths use it the same way around ``await``::

    with map_exceptions(_errors, "PostgreSQL"):
        await cursor.execute(...)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from ..errors import StoreError, StoreUnavailable
from ..redact import scrub

#: Driver exception class (or tuple of classes) -> the StoreError subclass it becomes.
#: Entries are tried in order; the first that matches wins.
ErrorTable: TypeAlias = Mapping[
    type[BaseException] | tuple[type[BaseException], ...], type[StoreError]
]

#: ``refine(exc, kind)``: a store's own say about an error its table matched, e.g. a
#: timeout its deadline caused, or a reply that means "failover". Returns the StoreError
#: to raise, or a StoreError subclass to build with the usual message.
Refine: TypeAlias = Callable[[BaseException, type[StoreError]], StoreError | type[StoreError]]


def scrubbed(exc: BaseException, kind: type[StoreError]) -> str:
    """The default detail of a message: what the driver said, secrets masked."""
    return scrub(str(exc))


def translate(
    exc: BaseException,
    table: ErrorTable,
    backend: str,
    *,
    describe: Callable[[BaseException, type[StoreError]], str] = scrubbed,
    refine: Refine | None = None,
) -> StoreError | None:
    """The StoreError for ``exc``, or None if ``table`` does not know it (it is then not a
    driver error, and goes up as it is)."""
    kind = next((kind for classes, kind in table.items() if isinstance(exc, classes)), None)
    if kind is None:
        return None
    error = kind if refine is None else refine(exc, kind)
    if isinstance(error, StoreError):
        return error
    verb = "unavailable" if issubclass(error, StoreUnavailable) else "failed"
    return error(f"{backend} store {verb}: {describe(exc, error)}", exc)


class map_exceptions:
    """Raise the driver errors of the body as StoreErrors (see :func:`translate`).

    ``table`` is a function returning the table (cache it), called only when an error
    arrives: the driver is imported by then, and the calls that succeed pay nothing for
    it. StoreErrors the body raises itself pass through unchanged. A plain class, not a
    generator: it costs a store call about 0.1 us, and one instance, holding no state
    between uses, may be kept and entered again (also concurrently)."""

    __slots__ = ("backend", "describe", "refine", "table")

    def __init__(
        self,
        table: Callable[[], ErrorTable],
        backend: str,
        *,
        describe: Callable[[BaseException, type[StoreError]], str] = scrubbed,
        refine: Refine | None = None,
    ) -> None:
        self.table, self.backend, self.describe, self.refine = table, backend, describe, refine

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        """Never swallows: the body's exception goes up as it is, or translated."""
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, Exception):
            return
        error = translate(
            exc, self.table(), self.backend, describe=self.describe, refine=self.refine
        )
        if error is not None:
            try:
                raise error from exc
            finally:  # (its traceback holds this frame: no cycle through the local)
                error = None
