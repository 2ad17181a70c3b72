"""Frameworks' own session settings, mapped onto satchel's options (the names of
:mod:`satchel.option_schema`), so an app configured for the framework's session works
unchanged, and nothing it sets is silently ignored.

Starlette: :func:`from_starlette` turns the arguments of Starlette's ``SessionMiddleware``
into satchel's. Flask: :func:`flask_layers` and :func:`flask_permanent_lifetime` read
``SESSION_COOKIE_*`` and ``PERMANENT_SESSION_LIFETIME``. Django's are read by its session
engine. The precedence rules are written down in docs/configuration.md ("Framework
conventions").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from .errors import ConfigurationError
from .expiry import MAX_TIMEOUT
from .option_schema import SessionOptions

# -- Starlette --------------------------------------------------------------------------------

# Starlette's SessionMiddleware argument -> the satchel option it sets.
STARLETTE = {
    "secret_key": "secret_keys",
    "session_cookie": "cookie_name",
    "path": "cookie_path",
    "domain": "cookie_domain",
    "same_site": "cookie_samesite",
    "https_only": "cookie_secure",
    "partitioned": "cookie_partitioned",
    "max_age": "cookie_persistent",  # and the server's timeouts: see from_starlette
}


class StarletteOptions(SessionOptions, total=False):
    """satchel's options plus the arguments of Starlette's ``SessionMiddleware``."""

    secret_key: Any  # str or starlette.datastructures.Secret
    session_cookie: str
    max_age: int | None
    path: str
    domain: str | None
    same_site: str
    https_only: bool
    partitioned: bool


def _secret(value: Any) -> list[str]:
    if isinstance(value, bytes | bytearray) or value is None:
        raise ConfigurationError("secret_key must be a string (or a starlette Secret)")
    return [str(value)]  # a Secret's str() is its value


def from_starlette(options: Mapping[str, Any]) -> SessionOptions:
    """``options`` with Starlette's argument names replaced by satchel's.

    ``max_age=N`` (seconds) gives a persistent cookie and ends the session on the server N
    seconds after it began (``absolute_timeout``), and after N idle seconds unless
    ``idle_timeout`` is also given. ``max_age=None`` gives a browser-session cookie with
    satchel's timeouts. Not passing ``max_age`` keeps satchel's defaults (a browser-session
    cookie, 30 min idle, 12 h absolute), not Starlette's 14 days. ``https_only=False`` turns
    Secure off only when passed. A Starlette name together with the satchel option it sets
    is refused: one value would be ignored.
    """
    if not options.keys() & STARLETTE.keys():
        return cast(SessionOptions, options)
    out = {k: v for k, v in options.items() if k not in STARLETTE}
    for theirs, ours in STARLETTE.items():
        if theirs not in options:
            continue
        clashing = [ours] + (["absolute_timeout"] if theirs == "max_age" else [])
        for name in clashing:
            if name in options:
                raise ConfigurationError(
                    f"{theirs}= (Starlette's name) and {name}= set the same thing: pass one"
                )
        value = options[theirs]
        if theirs == "secret_key":
            value = _secret(value)
        elif theirs == "same_site" and isinstance(value, str):
            value = value.lower()
        elif theirs == "max_age":
            value = _max_age(value, out)
        out[ours] = value
    return cast(SessionOptions, out)


def _is_timeout(value: Any) -> bool:
    """A number of seconds every store can enforce (see :func:`satchel.expiry.check_timeout`)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and 0 < value <= MAX_TIMEOUT
    )


def _max_age(value: Any, out: dict[str, Any]) -> bool:
    """Sets the timeouts ``max_age`` implies in ``out``; returns ``cookie_persistent``."""
    if value is None:
        return False
    if not _is_timeout(value):
        raise ConfigurationError(
            f"max_age={value!r}: use a positive number of seconds (finite), or None for a "
            "browser-session cookie"
        )
    out["absolute_timeout"] = float(value)
    out.setdefault("idle_timeout", float(value))
    return True


# -- Flask --------------------------------------------------------------------------------------

# Flask's config key -> the satchel option it sets.
FLASK = {
    "SESSION_COOKIE_NAME": "cookie_name",
    "SESSION_COOKIE_DOMAIN": "cookie_domain",
    "SESSION_COOKIE_PATH": "cookie_path",
    "SESSION_COOKIE_SECURE": "cookie_secure",
    "SESSION_COOKIE_HTTPONLY": "cookie_httponly",
    "SESSION_COOKIE_SAMESITE": "cookie_samesite",
    "SESSION_COOKIE_PARTITIONED": "cookie_partitioned",
}
PERMANENT_LIFETIME = "PERMANENT_SESSION_LIFETIME"


def _changed(config: Mapping[str, Any], defaults: Mapping[str, Any], key: str) -> bool:
    # Flask puts its defaults in app.config itself: only what the app changed counts
    return key in config and config[key] != defaults.get(key)


def flask_layers(
    config: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The ``SESSION_COOKIE_*`` settings the app changed from Flask's ``defaults``, as
    settings-loader layers named by their key (so an invalid one is reported by it)."""
    layers = {}
    if config.get("SESSION_COOKIE_PATH") is None and _changed(config, defaults, "APPLICATION_ROOT"):
        # Flask's session cookie path defaults to the application root
        layers["app.config['APPLICATION_ROOT']"] = {"cookie_path": config["APPLICATION_ROOT"]}
    for key, name in FLASK.items():
        if _changed(config, defaults, key):
            value = config[key]
            if name == "cookie_samesite" and isinstance(value, str):
                value = value.lower()  # Flask spells them "Lax", "Strict", "None"
            layers[f"app.config[{key!r}]"] = {name: value}
    return layers


def flask_permanent_lifetime(
    config: Mapping[str, Any], defaults: Mapping[str, Any]
) -> float | None:
    """Seconds of ``PERMANENT_SESSION_LIFETIME`` if the app changed it, else None (a
    permanent session then keeps satchel's timeouts)."""
    if not _changed(config, defaults, PERMANENT_LIFETIME):
        return None
    value = config[PERMANENT_LIFETIME]
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not _is_timeout(seconds):
        raise ConfigurationError(
            f"app.config[{PERMANENT_LIFETIME!r}]={value!r}: use a positive timedelta or a "
            "number of seconds"
        )
    return float(seconds)
