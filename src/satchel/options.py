"""What both middlewares build from their options (keyword arguments only, declared in
:mod:`satchel.option_schema`).

Middleware reads no environment variables: what is not passed takes its documented
default (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import option_schema as schema
from .context import Settings
from .cookies import CookieOptions
from .cookiestore import CookieEngine, CookieStore
from .cookiestore import from_url as cookie_store_from_url
from .csrf import CSRFOptions
from .engine import Engine
from .errors import ConfigurationError
from .option_schema import DEFAULT_STORE as DEFAULT_STORE  # re-exported: its old home
from .option_schema import SessionOptions as SessionOptions
from .policy import ExpiryPolicy
from .proxies import parse_trusted
from .record import Change, Meta, Record
from .stores.base import Store
from .stores.registry import store_from_url


class _NoStore(Store):
    """Stands in for a store where the engine never calls one (cookie sessions without a
    revocation store)."""

    def _never(self) -> Any:
        raise RuntimeError("this session backend has no server-side store")

    def load(self, key: str, now: float, refresh_after: float | None = None) -> Record | None:
        return self._never()  # type: ignore[no-any-return]

    def touch(self, key: str, last_seen: float, now: float) -> bool:
        return self._never()  # type: ignore[no-any-return]

    def create(self, key: str, record: Record) -> None:
        self._never()

    def update(self, key: str, change: Change, now: float) -> int | None:
        return self._never()  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        return self._never()  # type: ignore[no-any-return]

    def purge_expired(
        self, now: float, batch_size: int = 500, on_batch: Callable[[int], None] | None = None
    ) -> int:
        return self._never()  # type: ignore[no-any-return]

    def index_add(self, user_id: str, key: str, deadline: float) -> None:
        self._never()

    def list_user(self, user_id: str, now: float) -> list[tuple[str, Meta]]:
        return self._never()  # type: ignore[no-any-return]


def settings_from(options: SessionOptions, cookie: CookieOptions) -> Settings:
    for name in ("csrf_exempt", "csrf_trusted_origins", "trusted_proxies"):
        if isinstance(options.get(name), str):
            raise ConfigurationError(f"{name} must be a list of strings, not one string")
    csrf = schema.present(options, CSRFOptions)
    for field in ("exempt", "trusted_origins"):
        if field in csrf:
            csrf[field] = tuple(csrf[field])
    return Settings(
        csrf=CSRFOptions(**csrf),
        trusted_proxies=parse_trusted(schema.get(options, "trusted_proxies")),
        presession_cookie=CookieOptions(
            name=cookie.name + "_csrf",
            path="/",
            secure=cookie.secure,
            httponly=True,
            samesite="lax" if cookie.samesite == "none" else cookie.samesite,
        ),
    )


def build(
    store: str | Store | CookieStore, options: SessionOptions
) -> tuple[Store, Engine, Settings]:
    """The store, engine and request settings a middleware runs on; invalid options fail
    here, at start."""
    schema.refuse_unknown(options, schema.KEYWORDS, "SessionMiddleware")
    cookie = CookieOptions(**schema.present(options, CookieOptions))
    expiry = ExpiryPolicy(**schema.present(options, ExpiryPolicy))
    engine_kwargs: dict[str, Any] = {
        "on_event": options.get("on_event"),
        "max_sessions_per_user": options.get("max_sessions_per_user"),
    }
    if "clock" in options:
        engine_kwargs["clock"] = options["clock"]
    if isinstance(store, str) and store.startswith("cookie:"):
        store = cookie_store_from_url(store)
    revocation = options.get("revocation_store")
    if isinstance(revocation, str):
        revocation = store_from_url(revocation)
    if options.get("insecure_unsigned_cookies"):  # refused wherever it would be ignored
        if isinstance(store, CookieStore):
            raise ConfigurationError(
                "the cookie store needs secret_keys: insecure_unsigned_cookies=True applies "
                "only to server-side stores"
            )
        if options.get("secret_keys"):
            raise ConfigurationError(
                "insecure_unsigned_cookies=True is ignored when secret_keys are given "
                "(cookies are signed): remove one of them"
            )
    if isinstance(store, CookieStore):
        if options.get("encrypt_at_rest"):
            raise ConfigurationError(
                "encrypt_at_rest is for server-side stores; cookie sessions are encrypted "
                "unless CookieStore(signed=True)"
            )
        cookie_engine = CookieEngine(
            secret_keys=options.get("secret_keys"),
            cookie=cookie,
            expiry=expiry,
            options=store,
            revocation_store=revocation,
            **engine_kwargs,
        )
        return revocation or _NoStore(), cookie_engine, settings_from(options, cookie)
    if revocation is not None:
        raise ConfigurationError(
            "revocation_store applies to cookie sessions only; server-side sessions are "
            "revoked by deleting their records"
        )
    engine = Engine(
        encrypt_at_rest=schema.get(options, "encrypt_at_rest"),
        secret_keys=options.get("secret_keys"),
        insecure_unsigned_cookies=schema.get(options, "insecure_unsigned_cookies"),
        cookie=cookie,
        expiry=expiry,
        **engine_kwargs,
    )
    if isinstance(store, str):
        store = store_from_url(store)
    elif not isinstance(store, Store):
        raise ConfigurationError(
            "store must be a store URL, a satchel Store object or a CookieStore"
        )
    return store, engine, settings_from(options, cookie)
