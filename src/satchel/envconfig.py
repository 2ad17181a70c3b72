"""Settings from ``SATCHEL_*`` environment variables, for the demo and the CLI only
(the middleware never reads the environment)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError
from .options import DEFAULT_STORE

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class EnvSettings:
    store: str = DEFAULT_STORE
    options: dict[str, Any] = field(default_factory=dict)
    generated_key: bool = False


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def from_env(env: Mapping[str, str], *, store: str | None = None) -> EnvSettings:
    """Read SATCHEL_STORE, SATCHEL_SECRET_KEYS (comma-separated, newest first),
    SATCHEL_IDLE_TIMEOUT, SATCHEL_ABSOLUTE_TIMEOUT, SATCHEL_COOKIE_NAME and
    SATCHEL_COOKIE_SECURE. ``store`` (a command-line flag) wins over SATCHEL_STORE."""
    settings = EnvSettings(store=store or env.get("SATCHEL_STORE") or DEFAULT_STORE)
    options = settings.options
    keys = [k.strip() for k in env.get("SATCHEL_SECRET_KEYS", "").split(",") if k.strip()]
    if not keys:
        keys = [secrets.token_urlsafe(32)]
        settings.generated_key = True
    options["secret_keys"] = keys
    for name, option in (
        ("SATCHEL_IDLE_TIMEOUT", "idle_timeout"),
        ("SATCHEL_ABSOLUTE_TIMEOUT", "absolute_timeout"),
    ):
        value = _number(env, name)
        if value is not None:
            options[option] = value
    if env.get("SATCHEL_COOKIE_NAME"):
        options["cookie_name"] = env["SATCHEL_COOKIE_NAME"]
    secure = env.get("SATCHEL_COOKIE_SECURE")
    if secure is not None and secure != "":
        if secure.lower() in _TRUE:
            options["cookie_secure"] = True
        elif secure.lower() in _FALSE:
            options["cookie_secure"] = False
        else:
            raise ConfigurationError(f"SATCHEL_COOKIE_SECURE={secure!r}: use true or false")
    return settings
