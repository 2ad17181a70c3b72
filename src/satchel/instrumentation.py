"""The one point where telemetry hooks into the core.

Every store call of every path -- ASGI, WSGI, Flask, Django, sync and async, server-side
stores and a cookie session's revocation store -- runs through :func:`satchel.ops.drive`
or :func:`satchel.ops.adrive`, and every lifecycle and security event through
:func:`satchel.events.emit`. Both look here for the installed :class:`Instrument`.

Nothing is installed by default: then a flow and an event each cost one attribute read
and nothing else. :func:`satchel.integrations.opentelemetry.instrument` installs one that
records OpenTelemetry metrics and spans. An instrument sees what a store call is and what
became of it; it must never put a session ID, a store key, a user ID or session data in
what it records (:class:`~satchel.ops.Op` values carry keys: read their type only).

This module imports nothing at run time: every module of the core may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from .events import SessionEvent
    from .ops import Op
    from .stores.base import Store

R = TypeVar("R")


class Instrument(Protocol):
    """What telemetry sees of the core."""

    def event(self, event: SessionEvent) -> None:
        """One lifecycle or security event (what an ``on_event`` hook gets)."""

    def call(self, op: Op[R], store: Store) -> R:
        """Run ``op.run(store)`` on the sync path, and return (or raise) what it does."""

    async def acall(self, op: Op[R], store: Store) -> R:
        """Run ``await op.arun(store)`` on the async path."""


installed: Instrument | None = None
"""The instrument the core reports to; None (the default) for none."""


def install(instrument: Instrument | None) -> Instrument | None:
    """Make ``instrument`` the one the core reports to (None: stop reporting); the one it
    replaces. Flows already running keep the instrument they started with."""
    global installed
    previous, installed = installed, instrument
    return previous
