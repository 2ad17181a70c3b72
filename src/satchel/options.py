"""The middleware options both middlewares take, as keyword arguments only.

Middleware reads no environment variables: what is not passed takes its documented
default (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypedDict

from .cookies import CookieOptions, SameSite
from .engine import Engine
from .errors import ConfigurationError
from .policy import ExpiryPolicy
from .stores.base import Store
from .stores.registry import store_from_url

DEFAULT_STORE = "sqlite:///satchel.db"


class SessionOptions(TypedDict, total=False):
    secret_keys: Sequence[str] | None
    insecure_unsigned_cookies: bool
    cookie_name: str
    cookie_path: str
    cookie_domain: str | None
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: SameSite
    cookie_partitioned: bool
    cookie_persistent: bool
    idle_timeout: float
    absolute_timeout: float
    refresh_interval: float | None
    clock: Callable[[], float]


_COOKIE_FIELDS = {
    "cookie_name": "name",
    "cookie_path": "path",
    "cookie_domain": "domain",
    "cookie_secure": "secure",
    "cookie_httponly": "httponly",
    "cookie_samesite": "samesite",
    "cookie_partitioned": "partitioned",
    "cookie_persistent": "persistent",
}
_EXPIRY_FIELDS = ("idle_timeout", "absolute_timeout", "refresh_interval")


def build(store: str | Store, options: SessionOptions) -> tuple[Store, Engine]:
    """The store and engine a middleware runs on; invalid options fail here, at start."""
    unknown = set(options) - set(SessionOptions.__annotations__)
    if unknown:
        raise ConfigurationError(f"unknown session option(s): {', '.join(sorted(unknown))}")
    cookie = CookieOptions(
        **{field: options[key] for key, field in _COOKIE_FIELDS.items() if key in options}  # type: ignore[literal-required]
    )
    expiry = ExpiryPolicy(
        **{key: options[key] for key in _EXPIRY_FIELDS if key in options}  # type: ignore[literal-required]
    )
    engine_kwargs = {}
    if "clock" in options:
        engine_kwargs["clock"] = options["clock"]
    engine = Engine(
        secret_keys=options.get("secret_keys"),
        insecure_unsigned_cookies=options.get("insecure_unsigned_cookies", False),
        cookie=cookie,
        expiry=expiry,
        **engine_kwargs,
    )
    if isinstance(store, str):
        store = store_from_url(store)
    elif not isinstance(store, Store):
        raise ConfigurationError("store must be a store URL or a satchel Store object")
    return store, engine
