"""The one exception tree: everything satchel raises derives from :class:`SatchelError`.

Backend errors (sqlite3, OSError, later redis-py and psycopg) are translated into
:class:`StoreError` subclasses at the store boundary, with the original kept as
``__cause__`` and as :attr:`StoreError.original`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import TokenAction
    from .csrf_failure import CSRFFailure


class SatchelError(Exception):
    """Base class of every error satchel raises."""


class ConfigurationError(SatchelError, ValueError):
    """An invalid setting. The message names the setting and the fix."""


class SessionDataError(SatchelError, TypeError):
    """A value cannot be stored in a session (it is not JSON-safe, even with tags)."""


class SessionStateError(SatchelError, RuntimeError):
    """The session was used in a way its state does not allow (e.g. saved after destroy)."""


class ReauthenticationRequired(SessionStateError):
    """Ending other sessions needs an authentication at most ``max_age`` seconds old
    (the ``reauth_to_end_sessions`` option; OWASP ASVS 5.0 7.5.2): send the user to the
    re-authentication page, then try again."""

    def __init__(self, max_age: float) -> None:
        super().__init__(
            f"ending other sessions needs an authentication at most {max_age:g} s old: "
            "re-authenticate first (satchel.reauthenticate)"
        )
        self.max_age = max_age


class SessionTooLarge(SatchelError):
    """A cookie would exceed the browser limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the session cookie would be {size} bytes, over the limit of {limit} bytes; "
            "store less in the session or use a server-side store"
        )
        self.size = size
        self.limit = limit


class CSRFError(SatchelError):
    """A request failed the CSRF check; ``failure`` says why (its ``reason`` is
    machine-readable). Raised on Flask (answer it with your own error handler for
    ``CSRFError``) and by FastAPI's ``CSRFProtected`` dependency."""

    def __init__(self, failure: CSRFFailure) -> None:
        Exception.__init__(self, failure.message)
        self.failure = failure


class StoreError(SatchelError):
    """A store failed. ``original`` holds the backend's own exception, if any.

    ``issued`` is set when a commit failed after it had stored a new record (a login
    whose old record could not be deleted yet): the token of that record, which the
    response must still carry, or the client keeps one that may name nothing."""

    issued: TokenAction | None = None

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


class StoreUnavailable(StoreError):
    """The store cannot be reached or timed out; the request should fail closed (503)."""


#: The body of the plain 503 every path answers when the store is down (no details).
UNAVAILABLE_BODY = b"Service temporarily unavailable. Please try again shortly.\n"


class KeyCollision(StoreError):
    """``create`` found a record under the new key already: a real key collision (the
    caller may retry with a fresh key). Never raised for an outage or any other failure."""


class CorruptRecord(StoreError):
    """A stored record cannot be decoded; it is treated as no session."""
