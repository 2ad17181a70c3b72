"""Session limits by authentication assurance level (NIST SP 800-63B-4, section 2.x.3,
"Reauthentication"): ``assurance="aal1" | "aal2" | "aal3"`` sets the idle and absolute
timeouts a session of that level may have, and refuses, at start, a setting weaker than
the level allows unless ``assurance_allow_weaker=True`` says it is meant.

| level | absolute (the user logs in again) | idle |
|---|---|---|
| ``aal1`` | 30 days | satchel's default (30 min): NIST sets none at AAL1 |
| ``aal2`` | 24 hours | 1 hour |
| ``aal3`` | 12 hours | 15 minutes |

Explicit settings stricter than the preset win (``idle_timeout=600`` under ``aal2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError
from .expiry import MAX_TIMEOUT

LEVELS = ("aal1", "aal2", "aal3")
PRESETS: dict[str, dict[str, float]] = {
    "aal1": {"absolute_timeout": 30 * 86400.0},
    "aal2": {"idle_timeout": 3600.0, "absolute_timeout": 86400.0},
    "aal3": {"idle_timeout": 900.0, "absolute_timeout": 43200.0},
}


def check_level(level: Any) -> str | None:
    if level is None:
        return None
    if level in LEVELS:
        return str(level)
    raise ConfigurationError(
        f"assurance={level!r}: use 'aal1', 'aal2' or 'aal3' (NIST SP 800-63B-4), or None"
    )


def timeouts(
    level: str | None, given: Mapping[str, Any], allow_weaker: bool = False
) -> dict[str, Any]:
    """``given`` (the expiry options set explicitly) with the level's limits filled in
    where not given; a given one beyond its limit is refused unless ``allow_weaker``."""
    if check_level(level) is None:
        return dict(given)
    out = dict(given)
    for name, limit in PRESETS[str(level)].items():
        value = given.get(name)
        if value is None:
            out[name] = limit
        elif float(value) > limit and not allow_weaker:
            raise ConfigurationError(
                f"{name}={float(value):g} s is longer than assurance={level!r} allows "
                f"({limit:g} s, NIST SP 800-63B-4): lower it, choose another level, or set "
                "assurance_allow_weaker=True if this is meant"
            )
    return out


def ceiling(level: str | None, allow_weaker: bool = False) -> tuple[float, float] | None:
    """The longest (idle, absolute) timeouts one session may get under ``level``, its
    per-session settings (``session.set_expiry``, "remember me") included; None without a
    level, or with ``allow_weaker``."""
    if check_level(level) is None or allow_weaker:
        return None
    limits = PRESETS[str(level)]
    return limits.get("idle_timeout", MAX_TIMEOUT), limits["absolute_timeout"]
