"""Django's expiry API over the metadata satchel's server enforces.

Django keeps ``set_expiry`` in the session data and enforces it by when it writes; here it
becomes the session's metadata (:meth:`satchel.session.Session.set_expiry`), which the
engine enforces on every load, and ``get_expiry_age``/``get_expiry_date``/
``get_expire_at_browser_close`` answer from that metadata, so Django's cookie follows the
server:

* ``None`` (and no call): the defaults: ``idle_timeout``, ``absolute_timeout`` (or
  ``SESSION_COOKIE_AGE``), a persistent cookie unless ``SESSION_EXPIRE_AT_BROWSER_CLOSE``;
* ``0``: the default timeouts, in a browser-session cookie;
* seconds (``int``/``float``), e.g. "remember me": that idle timeout, and the absolute
  lifetime raised to it if shorter, in a persistent cookie;
* a ``datetime`` (or a ``timedelta`` from now): the session ends then, used or not.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from . import missing_framework

try:
    from asgiref.sync import sync_to_async
    from django.conf import settings as django_settings
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from ..engine import Engine
from ..errors import ConfigurationError, SessionDataError
from ..expiry import MAX_TIMEOUT, ExpiryPolicy
from ..session import Session

UNSET: Any = object()  # no set_expiry() pending


def expiry_for(
    choice: float | datetime | None, policy: ExpiryPolicy, now: float, created: float
) -> tuple[float, float, bool]:
    """(idle timeout, absolute deadline, persistent cookie) for a Django expiry value."""
    if isinstance(choice, datetime):
        end = choice.timestamp()
        return max(end - now, 1.0), max(end, created + 1.0), True
    default = created + policy.absolute_timeout
    if choice is None:
        return policy.idle_timeout, default, policy.persistent
    if choice == 0:
        return policy.idle_timeout, default, False
    return float(choice), max(default, created + choice), True


class DjangoExpiry:
    """Django's expiry methods for the session engine. The host class gives ``_engine()``
    and ``_get_session()``, and calls :meth:`_apply_expiry` before each commit."""

    _expiry_choice: Any = UNSET  # a set_expiry() value, applied at the next save
    modified: bool

    def _engine(self) -> Engine:
        raise NotImplementedError

    def _satchel_session(self) -> Session:
        raise NotImplementedError

    def _login_pending(self) -> bool:
        """True when the next save binds a user (a login: it restarts the lifetime)."""
        raise NotImplementedError

    def set_expiry(self, value: Any) -> None:
        if isinstance(value, timedelta):  # from now by satchel's clock, as the server counts
            value = datetime.fromtimestamp(self._engine().clock(), UTC) + value
        if not isinstance(value, int | float | datetime | None) or isinstance(value, bool):
            raise SessionDataError("set_expiry() takes seconds, a datetime, a timedelta or None")
        if isinstance(value, int | float) and not (
            math.isfinite(value) and 0 <= value <= MAX_TIMEOUT
        ):
            raise ConfigurationError("set_expiry(): seconds must be 0 or more")
        self._expiry_choice = value
        self.modified = True

    def _apply_expiry(self, session: Session) -> None:
        """Put a pending ``set_expiry`` on the satchel session, before the login binding
        (a login restarts the absolute lifetime: it counts from now)."""
        if self._expiry_choice is UNSET:
            return
        engine = self._engine()
        now, meta = engine.clock(), session.meta
        created = now if meta is None or self._login_pending() else meta.created
        idle, deadline, persistent = expiry_for(self._expiry_choice, engine.expiry, now, created)
        absolute = max(deadline - created, 1.0)
        session.set_expiry(idle_timeout=idle, absolute_timeout=absolute, persistent=persistent)
        self._expiry_choice = UNSET

    def _server_expiry(self, kwargs: dict[str, Any]) -> tuple[float, float, bool]:
        """(now, when the server ends the session unless it is used again, persistent),
        once this request is saved."""
        engine = self._engine()
        modification = kwargs.get("modification")
        now = engine.clock() if modification is None else modification.timestamp()
        choice = kwargs.get("expiry", self._expiry_choice)
        if isinstance(choice, str):
            choice = datetime.fromisoformat(choice)
        meta, login = self._satchel_session().meta, self._login_pending()
        if choice is UNSET and meta is not None:
            seen = now if self.modified else meta.last_seen  # a save records "seen now"
            deadline = meta.absolute_deadline
            if login:
                deadline += now - meta.created
            return now, min(seen + meta.idle_timeout, deadline), meta.persistent
        created = now if meta is None or login else meta.created
        if choice is UNSET:
            choice = None
        idle, deadline, persistent = expiry_for(choice, engine.expiry, now, created)
        return now, min(now + idle, deadline), persistent

    def get_expiry_age(self, **kwargs: Any) -> int:
        now, expires, _ = self._server_expiry(kwargs)
        return max(int(expires - now), 0)

    def get_expiry_date(self, **kwargs: Any) -> datetime:
        _, expires, _ = self._server_expiry(kwargs)
        if django_settings.USE_TZ:
            return datetime.fromtimestamp(expires, UTC)
        return datetime.fromtimestamp(expires)

    def get_expire_at_browser_close(self) -> bool:
        return not self._server_expiry({})[2]

    async def aset_expiry(self, value: Any) -> None:
        self.set_expiry(value)

    async def aget_expiry_age(self, **kwargs: Any) -> int:
        return await sync_to_async(self.get_expiry_age)(**kwargs)

    async def aget_expiry_date(self, **kwargs: Any) -> datetime:
        return await sync_to_async(self.get_expiry_date)(**kwargs)

    async def aget_expire_at_browser_close(self) -> bool:
        return await sync_to_async(self.get_expire_at_browser_close)()
