"""What both middlewares build from their options (keyword arguments only, declared in
:mod:`satchel.option_schema`).

Middleware reads no environment variables: what is not passed takes its documented
default (docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import replace
from functools import singledispatch
from typing import Any, NamedTuple

from . import assurance, clear_site_data
from . import option_schema as schema
from .backend import Backend
from .cookie import CookieBackend, CookieStore
from .cookie import from_url as cookie_store_from_url
from .cookies import CookieOptions
from .csrf import CSRFOptions
from .dbsc.options import DeviceBindingOptions
from .engine import Engine
from .errors import ConfigurationError
from .expiry import ExpiryPolicy
from .option_schema import DEFAULT_STORE as DEFAULT_STORE  # re-exported: its old home
from .option_schema import SessionOptions as SessionOptions
from .origin import parse_trusted
from .request import RequestPolicy
from .stores.base import Store
from .stores.registry import store_from_url


class Runtime(NamedTuple):
    """What a middleware runs on: the store (None for cookie sessions without a
    revocation store), the backend, and the per-request policy."""

    store: Store | None
    backend: Backend
    policy: RequestPolicy


def policy_from(options: SessionOptions, cookie: CookieOptions) -> RequestPolicy:
    for name in schema.LISTS:
        if isinstance(options.get(name), str):
            raise ConfigurationError(f"{name} must be a list of strings, not one string")
    token_paths = tuple(schema.get(options, "token_paths"))
    for prefix in token_paths:
        if not prefix.startswith("/") or any(c in prefix for c in "*?[]"):
            raise ConfigurationError(
                f"token_paths: {prefix!r} must be a path prefix starting with / (whole "
                "segments: '/api' covers /api and /api/..., not /apiary; no wildcards)"
            )
    token_paths = tuple(prefix.rstrip("/") for prefix in token_paths)  # "/" covers all
    csrf = schema.present(options, CSRFOptions)
    for field in ("exempt", "trusted_origins"):
        if field in csrf:
            csrf[field] = tuple(csrf[field])
    device = DeviceBindingOptions(**schema.present(options, DeviceBindingOptions))
    if device.enabled:
        _check_device_binding(options)
    return RequestPolicy(
        device=device,
        cookie=cookie,
        token_paths=token_paths,
        csrf=CSRFOptions(**csrf),
        trusted_proxies=parse_trusted(schema.get(options, "trusted_proxies")),
        clear_site_data=clear_site_data.directives(schema.get(options, "clear_site_data")),
        reauth_to_end_sessions=_seconds(options.get("reauth_to_end_sessions")),
        reauth_max_age=float(schema.get(options, "reauth_max_age")),
        presession_cookie=CookieOptions(
            name=cookie.name + "_csrf",
            path="/",
            secure=cookie.secure,
            httponly=True,
            samesite="lax" if cookie.samesite == "none" else cookie.samesite,
        ),
    )


def _seconds(value: Any) -> float | None:
    """A duration option already parsed by :func:`_durations` (seconds), or None."""
    return None if value is None else float(value)


def _check_device_binding(options: SessionOptions) -> None:
    if not options.get("secret_keys"):
        raise ConfigurationError(
            "dbsc (device-bound sessions) needs secret_keys: challenges and bound cookies "
            "are MACed with the keyring"
        )
    try:
        import jwt  # noqa: F401  (the proofs are JWTs)
    except ImportError:
        raise ConfigurationError("dbsc needs PyJWT: pip install 'satchel[dbsc]'") from None


def build(store: str | Store | CookieStore, options: SessionOptions) -> Runtime:
    """The store, backend and request policy a middleware runs on; invalid options fail
    here, at start."""
    # (the middlewares' own keywords, store and the two answering apps, are named too, so
    # a misspelt one is pointed at them)
    constructor = {o.name for o in schema.OPTIONS if not o.keyword and not o.flask_only}
    schema.refuse_unknown(options, schema.KEYWORDS | constructor, "SessionMiddleware")
    options = _durations(options)
    if options.get("insecure_unsigned_cookies") and options.get("secret_keys"):
        raise ConfigurationError(
            "insecure_unsigned_cookies=True is ignored when secret_keys are given "
            "(cookies are signed): remove one of them"
        )
    if isinstance(store, str) and store.startswith("cookie:"):
        store = cookie_store_from_url(store)
    return _runtime(store, options)


def _durations(options: SessionOptions) -> SessionOptions:
    """The duration options in seconds: numbers, ``datetime.timedelta`` or text like
    ``"30m"``, ``"2h"``, ``"1d"`` (:func:`satchel.option_schema.duration`); anything else
    is refused naming the option."""
    given = [name for name in schema.DURATIONS if options.get(name) is not None]
    if not given:
        return options
    out: dict[str, Any] = dict(options)
    for name in given:
        out[name] = schema.parse(name, out[name], "SessionMiddleware")
    return out  # type: ignore[return-value]


@singledispatch
def _runtime(store: str | Store | CookieStore, options: SessionOptions) -> Runtime:
    """Server-side sessions: a store and the engine."""
    if options.get("revocation_store") is not None:
        raise ConfigurationError(
            "revocation_store applies to cookie sessions only; server-side sessions are "
            "revoked by deleting their records"
        )
    policy = policy_from(options, _cookie(options))
    server, engine = build_engine(store, options)  # type: ignore[arg-type]  # (dispatched)
    return Runtime(server, engine, policy)


@_runtime.register
def _(store: CookieStore, options: SessionOptions) -> Runtime:
    """Cookie sessions: the browser holds them; markers may live in a revocation store."""
    for name, why in _NOT_FOR_COOKIES.items():
        if options.get(name):
            raise ConfigurationError(why)
    revocation = options.get("revocation_store")
    if isinstance(revocation, str):
        revocation = store_from_url(revocation)
    cookie = _cookie(options)
    backend = CookieBackend(
        secret_keys=options.get("secret_keys"),
        cookie=cookie,
        expiry=_expiry(options),
        signed=store.signed,
        compress=store.compress,
        revocation_store=revocation,
        **_hooks(options),
    )
    return Runtime(revocation, backend, policy_from(options, cookie))


_NOT_FOR_COOKIES = {
    "insecure_unsigned_cookies": "the cookie store needs secret_keys: "
    "insecure_unsigned_cookies=True applies only to server-side stores",
    "encrypt_at_rest": "encrypt_at_rest is for server-side stores; cookie sessions are "
    "encrypted unless CookieStore(signed=True)",
    "max_sessions_per_user": "max_sessions_per_user needs a server-side store: cookie "
    "sessions cannot be counted",
    "token_paths": "token_paths (bearer tokens) needs a server-side store: a cookie "
    "session's token is the whole session, too large for a header and not revocable",
    "dbsc": "dbsc (device-bound sessions) needs a server-side store: a cookie session's "
    "binding would live in the cookie, and every copy made before the binding (the login "
    "response's own) would stay valid without it",
}


def build_engine(store: str | Store, options: SessionOptions) -> tuple[Store, Engine]:
    """A server-side store and the engine on it (what Django's session engine runs on)."""
    engine = Engine(
        encrypt_at_rest=schema.get(options, "encrypt_at_rest"),
        secret_keys=options.get("secret_keys"),
        insecure_unsigned_cookies=schema.get(options, "insecure_unsigned_cookies"),
        expiry=_expiry(options),
        max_sessions_per_user=options.get("max_sessions_per_user"),
        device_binding=bool(options.get("dbsc")),
        **_hooks(options),
    )
    engine.store = server = _store_of(store)
    return server, engine


@singledispatch
def _store_of(store: object) -> Store:
    raise ConfigurationError("store must be a store URL, a satchel Store object or a CookieStore")


@_store_of.register
def _(store: str) -> Store:
    return store_from_url(store)


@_store_of.register
def _(store: Store) -> Store:
    return store


def _cookie(options: SessionOptions) -> CookieOptions:
    return CookieOptions(**schema.present(options, CookieOptions))


def _expiry(options: SessionOptions) -> ExpiryPolicy:
    level, weaker = options.get("assurance"), bool(options.get("assurance_allow_weaker"))
    given = assurance.timeouts(level, schema.present(options, ExpiryPolicy), weaker)
    expiry = ExpiryPolicy(**given, ceiling=assurance.ceiling(level, weaker))
    if options.get("cookie_persistent") and not expiry.persistent:
        expiry = replace(expiry, persistent=True)  # new sessions follow the cookie option
    return expiry


def _hooks(options: SessionOptions) -> dict[str, Any]:
    hooks: dict[str, Any] = {"on_event": options.get("on_event")}
    if "clock" in options:
        hooks["clock"] = options["clock"]
    return hooks
