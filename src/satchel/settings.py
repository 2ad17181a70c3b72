"""One settings object, loaded explicitly, from (in rising precedence) defaults, a TOML
file (``satchel.toml``, or the path in ``SATCHEL_CONFIG``), ``SATCHEL_*`` environment
variables, and explicit arguments.

The demo, the CLI and any app that asks use it; the middleware never reads the
environment behind the app's back::

    settings = load_settings()                       # or load_settings(store="redis://...")
    app = SessionMiddleware(app, store=settings.store, **settings.middleware_options())

Every invalid value fails here, at start, with a message naming the setting and the fix.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import assurance, clear_site_data
from . import option_schema as schema
from .cookies import CookieOptions, SameSite
from .dbsc.options import DeviceBindingOptions
from .engine import MAX_SESSIONS_PER_USER
from .errors import ConfigurationError
from .expiry import ExpiryPolicy
from .keyring import MIN_KEY_LENGTH, Keyring
from .option_schema import SessionOptions, default
from .origin import parse_trusted
from .redact import mask_key, mask_url

DEFAULT_FILE = "satchel.toml"


@dataclass(frozen=True)
class Settings:
    """The options that can be read from text (``option_schema.SETTINGS``). Defaults come
    from the schema; tests/test_option_schema.py checks the fields and their types match it."""

    store: str = default("store")
    secret_keys: tuple[str, ...] = default("secret_keys")
    idle_timeout: float = default("idle_timeout")
    absolute_timeout: float = default("absolute_timeout")
    refresh_interval: float | None = default("refresh_interval")
    assurance: str | None = default("assurance")
    assurance_allow_weaker: bool = default("assurance_allow_weaker")
    reauth_to_end_sessions: float | None = default("reauth_to_end_sessions")
    reauth_max_age: float = default("reauth_max_age")
    cookie_name: str = default("cookie_name")
    cookie_path: str = default("cookie_path")
    cookie_domain: str | None = default("cookie_domain")
    cookie_secure: bool = default("cookie_secure")
    cookie_httponly: bool = default("cookie_httponly")
    cookie_samesite: SameSite = default("cookie_samesite")  # noqa: RUF009 (a str)
    cookie_partitioned: bool = default("cookie_partitioned")
    cookie_persistent: bool = default("cookie_persistent")
    csrf: bool = default("csrf")
    csrf_exempt: tuple[str, ...] = default("csrf_exempt")
    csrf_allow_same_site: bool = default("csrf_allow_same_site")
    csrf_trusted_origins: tuple[str, ...] = default("csrf_trusted_origins")
    trusted_proxies: tuple[str, ...] = default("trusted_proxies")
    max_sessions_per_user: int | None = default("max_sessions_per_user")
    revocation_store: str | None = default("revocation_store")
    encrypt_at_rest: bool = default("encrypt_at_rest")
    token_paths: tuple[str, ...] = default("token_paths")
    clear_site_data: tuple[str, ...] = default("clear_site_data")
    dbsc: bool = default("dbsc")
    dbsc_required: bool = default("dbsc_required")
    dbsc_grace: float = default("dbsc_grace")
    dbsc_cookie_lifetime: float = default("dbsc_cookie_lifetime")
    dbsc_path: str = default("dbsc_path")
    dbsc_redirect: str | None = default("dbsc_redirect")
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def middleware_options(self) -> SessionOptions:
        """Keyword arguments for either SessionMiddleware (everything but ``store``)."""
        opts: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("store", "sources")
        }
        opts["secret_keys"] = list(self.secret_keys)
        given = self.timeouts_given()
        for name in ("idle_timeout", "absolute_timeout"):
            if name not in given:  # the assurance level's limit applies
                del opts[name]
        for name in schema.LISTS:
            opts[name] = list(opts[name])
        return opts  # type: ignore[return-value]

    def timeouts_given(self) -> dict[str, float]:
        """The idle and absolute timeouts that stand as set: both without ``assurance``;
        with it, only those set explicitly (the level's limits replace the defaults)."""
        return {
            name: getattr(self, name)
            for name in ("idle_timeout", "absolute_timeout")
            if self.assurance is None or name in self.sources
        }

    def validate(self) -> Settings:
        """Raise ConfigurationError naming the first invalid setting."""
        if not self.secret_keys:
            raise ConfigurationError(
                "secret_keys is not set: put a list in satchel.toml (secret_keys = [...]) or "
                "set SATCHEL_SECRET_KEYS (comma-separated, newest first); make a key with "
                "`satchel keygen`"
            )
        for i, key in enumerate(self.secret_keys):
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(
                    f"secret_keys[{i}] is shorter than {MIN_KEY_LENGTH} characters; "
                    "replace it with one from `satchel keygen`"
                )
        Keyring(list(self.secret_keys))
        CookieOptions(
            name=self.cookie_name,
            path=self.cookie_path,
            domain=self.cookie_domain,
            secure=self.cookie_secure,
            httponly=self.cookie_httponly,
            samesite=self.cookie_samesite,
            partitioned=self.cookie_partitioned,
            persistent=self.cookie_persistent,
        )
        ExpiryPolicy(
            **assurance.timeouts(
                self.assurance, self.timeouts_given(), self.assurance_allow_weaker
            ),
            refresh_interval=self.refresh_interval,
        )
        parse_trusted(self.trusted_proxies)
        clear_site_data.directives(self.clear_site_data)
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        DeviceBindingOptions(**schema.present(given, DeviceBindingOptions))
        cap = self.max_sessions_per_user
        if cap is not None and not 1 <= cap <= MAX_SESSIONS_PER_USER:
            raise ConfigurationError(
                f"max_sessions_per_user must be between 1 and {MAX_SESSIONS_PER_USER}, or unset"
            )
        if "://" not in self.store:
            raise ConfigurationError(
                f"store={mask_url('x://' + self.store)[4:]!r} is not a URL: use e.g. "
                "sqlite:///satchel.db, "
                "redis://localhost:6379/0 or cookie://"
            )
        return self

    def masked(self) -> dict[str, Any]:
        """The effective settings, secrets masked, with where each value came from."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name == "secret_keys":
                value = [mask_key(k) for k in value]
            elif f.name in ("store", "revocation_store") and isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = {"value": value, "source": self.sources.get(f.name, "default")}
        return out


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc}") from None
    flat: dict[str, Any] = {}
    sections = {section for section, _ in schema.TOML_SECTIONS}
    for key, value in doc.items():
        if key in sections and isinstance(value, dict):
            for sub, subvalue in value.items():  # an unknown one is named as its flat form
                flat[schema.TOML_SECTIONS.get((key, sub), f"{key}_{sub}")] = subvalue
        else:
            flat[key] = value
    schema.refuse_unknown(flat, schema.SETTINGS, str(path))
    return flat


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    validate: bool = True,
    use_file: bool = True,
    layers: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults < TOML file < environment < ``layers`` (e.g. a framework's own config, by
    source name) < ``overrides`` (explicit arguments; None values are ignored, so CLI flags
    can be passed straight through)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = Path(config) if config else Path(env.get("SATCHEL_CONFIG", DEFAULT_FILE))
    explicit_file = config is not None or "SATCHEL_CONFIG" in env
    if use_file and (path.exists() or explicit_file):
        for name, raw in _from_toml(path).items():
            values[name] = schema.parse(name, raw, str(path))
            sources[name] = str(path)
    variables = [v for v in env if v.startswith(schema.ENV_PREFIX) and v != schema.CONFIG_ENV]
    schema.refuse_unknown(variables, schema.ENV, "environment")
    for variable, name in schema.ENV.items():
        if env.get(variable, "") != "":
            values[name] = schema.parse(name, env[variable], variable)
            sources[name] = variable
    for source, layer in (*(layers or {}).items(), ("argument", overrides)):
        schema.refuse_unknown(layer, schema.SETTINGS, source)
        for name, raw in layer.items():
            if raw is not None:
                values[name] = schema.parse(name, raw, source)
                sources[name] = source
    settings = replace(Settings(), **values, sources=sources)
    return settings.validate() if validate else settings
