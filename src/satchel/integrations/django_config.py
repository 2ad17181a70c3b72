"""The Django session engine's configuration: ``settings.SATCHEL`` and Django's own
settings, turned into the options of :func:`satchel.options.build` (the middlewares'
composition root), so an option is applied or refused the same way on every path.

``settings.SATCHEL`` wins over Django's setting where both speak: ``absolute_timeout``
over ``SESSION_COOKIE_AGE``, ``secret_keys`` over ``SECRET_KEY``/``SECRET_KEY_FALLBACKS``
(used only by ``encrypt_at_rest`` and the MACs of device-bound sessions, ``dbsc``:
Django's session cookie is not signed).
``SESSION_EXPIRE_AT_BROWSER_CLOSE`` decides whether new sessions get a persistent cookie.
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import Any

from . import missing_framework

try:
    from django.conf import settings as django_settings
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from .. import option_schema as schema
from ..dbsc.options import DeviceBindingOptions
from ..engine import Engine
from ..errors import ConfigurationError
from ..options import SessionOptions, build_engine
from ..settings import Settings, load_settings
from ..stores.base import Store

# The device-binding options (dbsc*), applied by satchel's SessionMiddleware for Django.
_DEVICE_BINDING = frozenset(o.name for o in schema.OPTIONS if o.owner is DeviceBindingOptions)
# The SATCHEL settings this engine applies; Django itself does the rest, so setting one of
# those here would silently do nothing: it is refused, naming Django's own setting.
APPLIED = frozenset(
    {
        "store",
        "idle_timeout",
        "absolute_timeout",
        "refresh_interval",
        "trusted_proxies",
        "encrypt_at_rest",
        "max_sessions_per_user",
        "secret_keys",
        "clear_site_data",  # by DeviceMiddleware (and satchel's SessionMiddleware)
        "assurance",
        "assurance_allow_weaker",
        "reauth_max_age",  # by require_recent_auth
    }
    | _DEVICE_BINDING
)
HOOKS = frozenset({"on_event", "clock"})  # callables: not settings, passed to the engine as-is
UNAVAILABLE_HOOK = "on_store_unavailable"  # a view (request -> response) for store outages
_DJANGOS_OWN = {
    "cookie_name": "SESSION_COOKIE_NAME",
    "cookie_path": "SESSION_COOKIE_PATH",
    "cookie_domain": "SESSION_COOKIE_DOMAIN",
    "cookie_secure": "SESSION_COOKIE_SECURE",
    "cookie_httponly": "SESSION_COOKIE_HTTPONLY",
    "cookie_samesite": "SESSION_COOKIE_SAMESITE",
    "cookie_persistent": "SESSION_EXPIRE_AT_BROWSER_CLOSE and SESSION_COOKIE_AGE",
    "csrf": "django.middleware.csrf.CsrfViewMiddleware in MIDDLEWARE",
    "csrf_exempt": "the @csrf_exempt decorator",
    "csrf_allow_same_site": "CSRF_TRUSTED_ORIGINS",
    "csrf_trusted_origins": "CSRF_TRUSTED_ORIGINS",
    "insecure_unsigned_cookies": "SESSION_COOKIE_* (Django's session cookie is not signed)",
}
_SETTINGS = frozenset(f.name for f in fields(Settings)) - {"sources"}


def _settings() -> tuple[Settings, dict[str, Any]]:
    """``settings.SATCHEL`` as satchel settings plus its hooks, refusing every key this
    engine would ignore (unknown keys are refused by ``load_settings``)."""
    config = dict(getattr(django_settings, "SATCHEL", {}))
    hooks = {name: config.pop(name) for name in (*HOOKS, UNAVAILABLE_HOOK) if name in config}
    for name in sorted(set(config) & (_SETTINGS - APPLIED)):
        own = _DJANGOS_OWN.get(name)
        raise ConfigurationError(
            f"settings.SATCHEL[{name!r}] does not apply under Django: "
            + (f"use Django's {own}" if own else "the Django session engine does not support it")
        )
    if str(config.get("store", "")).startswith("cookie:"):
        raise ConfigurationError(
            "settings.SATCHEL['store']: cookie sessions do not apply under Django: use "
            "Django's SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'"
        )
    if "secret_keys" in config and not (config.get("encrypt_at_rest") or config.get("dbsc")):
        raise ConfigurationError(
            "settings.SATCHEL['secret_keys'] applies under Django only with encrypt_at_rest "
            "or dbsc (Django's session cookie is not signed)"
        )
    layers = {"settings.SATCHEL": config}
    return load_settings(env={}, use_file=False, validate=False, layers=layers), hooks


def unavailable_view() -> Any:
    """``SATCHEL["on_store_unavailable"]``: the view that answers when the store is down
    (None: satchel's plain 503)."""
    return _settings()[1].get(UNAVAILABLE_HOOK)


def options() -> tuple[str, SessionOptions]:
    """The store URL and the engine options, from ``settings.SATCHEL`` and Django's own
    settings."""
    settings, hooks = _settings()
    hooks.pop(UNAVAILABLE_HOOK, None)  # DeviceMiddleware's, not the engine's
    explicit = settings.sources
    idle, absolute = settings.idle_timeout, settings.absolute_timeout
    given = settings.timeouts_given()
    if "absolute_timeout" not in explicit and django_settings.is_overridden("SESSION_COOKIE_AGE"):
        given["absolute_timeout"] = float(django_settings.SESSION_COOKIE_AGE)  # Django's: set
        absolute = float(django_settings.SESSION_COOKIE_AGE)
        if "idle_timeout" not in explicit:
            idle = min(idle, absolute)
    opts: dict[str, Any] = {
        "idle_timeout": idle,
        "absolute_timeout": absolute,
        "refresh_interval": settings.refresh_interval,
        "trusted_proxies": list(settings.trusted_proxies),
        "encrypt_at_rest": settings.encrypt_at_rest,
        "max_sessions_per_user": settings.max_sessions_per_user,
        "clear_site_data": list(settings.clear_site_data),
        "assurance": settings.assurance,
        "assurance_allow_weaker": settings.assurance_allow_weaker,
        "cookie_persistent": not django_settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
        **{name: getattr(settings, name) for name in _DEVICE_BINDING},
        **hooks,
    }
    for name in ("idle_timeout", "absolute_timeout"):
        if name not in given:  # the assurance level's limit applies
            del opts[name]
    if settings.encrypt_at_rest or settings.dbsc:
        # the keyring serves encryption and the DBSC MACs only: nothing is signed
        keys = settings.secret_keys or (
            django_settings.SECRET_KEY,
            *getattr(django_settings, "SECRET_KEY_FALLBACKS", ()),
        )
        opts["secret_keys"] = list(keys)
    else:
        opts["insecure_unsigned_cookies"] = True
    return settings.store, opts  # type: ignore[return-value]


def reauth_max_age() -> float:
    """``SATCHEL["reauth_max_age"]``: what ``require_recent_auth`` accepts when its view
    names no ``max_age``."""
    return _settings()[0].reauth_max_age


@cache
def runtime() -> tuple[Store, Engine]:
    """The store and engine, from the middlewares' composition root (once per process)."""
    url, opts = options()
    return build_engine(url, opts)
