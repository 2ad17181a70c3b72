"""Expiry rules: idle and absolute timeouts, and the throttled "last seen" refresh.

Pure functions of the stored metadata and the app's clock (UTC epoch seconds from
``time.time`` unless the app passes its own), so every store and both I/O paths
apply the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigurationError
from .record import Meta

MAX_TIMEOUT = 100 * 365.25 * 86400
"""The longest timeout satchel takes (a century, in seconds): every store can date a
deadline that far (Redis's millisecond expiry times cannot go much further)."""


def check_timeout(name: str, value: float) -> None:
    """Refuse a timeout no store can enforce: NaN, zero or less, infinite, or past
    :data:`MAX_TIMEOUT`."""
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, at most {MAX_TIMEOUT:.0f} "
            f"(a century); got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """Defaults follow OWASP's guidance for ordinary apps: 30 min idle, 12 h absolute.

    ``refresh_interval`` throttles the "last seen" write of read-only requests; by
    default a tenth of the idle timeout. ``persistent`` is what new sessions start with
    (``cookie_persistent``): a cookie whose Max-Age follows the session's expiry;
    ``session.set_expiry(persistent=...)`` changes it per session.
    """

    idle_timeout: float = 30 * 60
    absolute_timeout: float = 12 * 3600
    refresh_interval: float | None = None
    persistent: bool = False
    ceiling: tuple[float, float] | None = None
    """The longest idle and absolute timeouts any one session may get
    (``session.set_expiry`` included): those of the ``assurance`` level, unless
    ``assurance_allow_weaker``. None: no limit but :data:`MAX_TIMEOUT`."""

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "absolute_timeout"):
            check_timeout(name, getattr(self, name))
        if self.idle_timeout > self.absolute_timeout:
            raise ConfigurationError(
                f"idle_timeout ({self.idle_timeout:g} s) is longer than absolute_timeout "
                f"({self.absolute_timeout:g} s), which would always end the session first: "
                "lower idle_timeout or raise absolute_timeout"
            )
        if self.refresh_interval is not None and not (
            0 <= self.refresh_interval < self.idle_timeout
        ):
            raise ConfigurationError(
                "refresh_interval must be at least 0 and below idle_timeout "
                "(default: a tenth of idle_timeout)"
            )

    @property
    def refresh_after(self) -> float:
        if self.refresh_interval is None:
            return self.idle_timeout / 10
        return self.refresh_interval

    def new_meta(
        self,
        handle: str,
        now: float,
        *,
        user_agent: str | None = None,
        client_ip: str | None = None,
    ) -> Meta:
        # by position: a NamedTuple built from keywords costs about 7,000 instructions more
        return Meta(
            handle,
            now,
            now,
            now + self.absolute_timeout,
            self.idle_timeout,
            None,
            user_agent,
            client_ip,
            self.persistent,
        )


def is_expired(meta: Meta, now: float) -> bool:
    return now >= meta.expires_at


def refresh_due(meta: Meta, now: float, refresh_after: float) -> bool:
    """True when a read-only request should record that the session was seen."""
    return now - meta.last_seen >= refresh_after and meta.last_seen < meta.absolute_deadline
