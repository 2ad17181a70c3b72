"""The seam between a request and where its session lives.

A :class:`Backend` opens a session from the token a request carries, commits it, and
reaches the user's other sessions. Server-side sessions (:class:`satchel.engine.Engine`
on a store) and cookie sessions (:class:`satchel.cookie.CookieBackend`) both implement
it; nothing above this seam asks which one it holds. Every method that may touch a store
is a flow (:mod:`satchel.ops`): the caller runs it with ``drive(flow, backend.store)`` or
``adrive``.

What a commit hands back is a :class:`TokenAction`: what the response must carry. The
transport (a cookie, or the ``X-Session-Token`` header) renders it; the backend never
writes an HTTP header.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from .events import EventHook
    from .keyring import Keyring
    from .ops import Flow
    from .session import Session
    from .stores.base import Store
    from .user_sessions import SessionInfo


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a request tells about its device, recorded when a session is created.

    Calling it returns itself, so a commit can take either a DeviceInfo or a function
    that makes one only when needed (most requests never create a session)."""

    user_agent: str | None = None
    client_ip: str | None = None

    def __call__(self) -> DeviceInfo:
        return self


InfoSource = Callable[[], DeviceInfo]


class TokenAction(NamedTuple):
    """What a response must carry for its session after a commit.

    ``token`` set: send it (a new session, a new ID, a refreshed persistent lifetime);
    ``max_age`` is the persistent lifetime in seconds, None for one that ends with the
    browser. ``token`` None: the session ended, delete the client's copy. ``withdrawn``:
    the session was lost to another request (a logout or a regeneration won the race),
    send nothing, not even a token an earlier commit of this request issued.
    ``logout_marker`` is a cookie session's signed logout record (value, lifetime): see
    :mod:`satchel.cookie.backend`. ``logout``: the session that ended was a logged-in
    user's (a logout, not a stale cookie): the response may ask the browser to clear the
    site's data (the ``clear_site_data`` option).

    Immutable; a NamedTuple because a login and every cookie-store write build one (a
    frozen dataclass sets each field through ``object.__setattr__``)."""

    token: str | None
    max_age: int | None = None
    logout_marker: tuple[str, int] | None = None
    withdrawn: bool = False
    logout: bool = False


DELETE = TokenAction(None)
LOGGED_OUT = TokenAction(None, logout=True)
WITHDRAWN = TokenAction(None, withdrawn=True)


class SessionBinding(Protocol):
    """What ties a session to the request that opened it (the middleware's request
    context): how to load it lazily, commit it early, and which backend holds it."""

    @property
    def backend(self) -> Backend: ...

    def load(self, session: Session) -> None: ...

    def save(self, session: Session) -> None: ...

    async def asave(self, session: Session) -> None: ...


class Backend(Protocol):
    """Where sessions live, behind one interface."""

    keyring: Keyring | None
    on_event: EventHook | None
    clock: Callable[[], float]
    lists_other_sessions: bool
    """Whether :meth:`list_sessions` sees the user's other devices (a server-side store
    does; cookie sessions live in each browser)."""

    @property
    def store(self) -> Store | None:
        """The server-side store the flows run against; None if there is none."""

    def read(self, tokens: Sequence[str], cookie_header: str = "") -> tuple[Any, bool]:
        """Check the tokens a request carries (every copy of the cookie, or the bearer
        token) for their exact format and authenticity, before any store call: a ticket
        for :meth:`open` (None when none holds up), and whether the token must be sent
        again (made with an older key)."""

    def open(self, session: Session, ticket: Any, refresh: bool = False) -> Flow[Session]:
        """Fill ``session`` from what the ticket names. Strict: nothing unknown, expired
        or revoked is ever adopted."""

    def commit(self, session: Session, info: InfoSource) -> Flow[TokenAction | None]:
        """Store what the request changed; what the response must carry."""

    def list_sessions(self, session: Session) -> Flow[list[SessionInfo]]:
        """The logged-in user's sessions, this one first."""

    def revoke(self, session: Session, handle: str) -> Flow[bool]:
        """End one of the logged-in user's sessions by its public handle."""

    def revoke_all(self, session: Session, keep_current: bool) -> Flow[int]:
        """End every session of the user (but this one, under a new ID, with
        ``keep_current``); how many, where the backend can count them."""

    def end_user(self, user_id: str, reason: str) -> Flow[int | None]:
        """End every session of ``user_id``, from outside any of them (an account
        disabled, deleted, its password reset); how many (None where the backend cannot
        count them: cookie sessions)."""
