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

from .cookies import CookieOptions
from .engine import MAX_SESSIONS_PER_USER
from .errors import ConfigurationError
from .keyring import MIN_KEY_LENGTH, Keyring
from .options import DEFAULT_STORE, SessionOptions
from .policy import ExpiryPolicy
from .proxies import parse_trusted
from .redact import mask_key, mask_url

DEFAULT_FILE = "satchel.toml"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    store: str = DEFAULT_STORE
    secret_keys: tuple[str, ...] = ()
    idle_timeout: float = 30 * 60
    absolute_timeout: float = 12 * 3600
    refresh_interval: float | None = None
    cookie_name: str = "satchel"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_httponly: bool = True
    cookie_samesite: str = "lax"
    cookie_partitioned: bool = False
    cookie_persistent: bool = False
    csrf: bool = True
    csrf_exempt: tuple[str, ...] = ()
    csrf_allow_same_site: bool = False
    csrf_trusted_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    max_sessions_per_user: int | None = None
    revocation_store: str | None = None
    encrypt_at_rest: bool = False
    token_paths: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def middleware_options(self) -> SessionOptions:
        """Keyword arguments for either SessionMiddleware (everything but ``store``)."""
        opts: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("store", "sources")
        }
        opts["secret_keys"] = list(self.secret_keys)
        for name in ("csrf_exempt", "csrf_trusted_origins", "trusted_proxies", "token_paths"):
            opts[name] = list(opts[name])
        return opts  # type: ignore[return-value]

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
            samesite=self.cookie_samesite,  # type: ignore[arg-type]
            partitioned=self.cookie_partitioned,
            persistent=self.cookie_persistent,
        )
        ExpiryPolicy(self.idle_timeout, self.absolute_timeout, self.refresh_interval)
        parse_trusted(self.trusted_proxies)
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


_TYPES = {f.name: f.type for f in fields(Settings)}
_ENV = {f"SATCHEL_{name.upper()}": name for name in _TYPES if name != "sources"}
_TOML_SECTIONS = {"cookie": "cookie_", "csrf": "csrf_"}


def _coerce(name: str, raw: Any, source: str) -> Any:
    kind = str(_TYPES[name])
    where = f"{name} (from {source})"
    if raw is None:
        return None
    try:
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("use true or false")
        if kind.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if kind.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError("a number of seconds, not a boolean")
            value = float(raw)
            if value <= 0 and name != "refresh_interval":
                raise ValueError("must be positive")
            return value
        if kind.startswith("int"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("a whole number")
            return int(raw)
        if not isinstance(raw, str):
            raise ValueError("a string")
        return raw
    except ValueError as exc:
        raise ConfigurationError(f"{where}: invalid value {raw!r}: {exc}") from None


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _TOML_SECTIONS and isinstance(value, dict):
            for sub, subvalue in value.items():
                name = "csrf" if (key, sub) == ("csrf", "enabled") else _TOML_SECTIONS[key] + sub
                flat[name] = subvalue
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_TYPES) - {"sources"})
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; see docs/configuration.md"
        )
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
            values[name] = _coerce(name, raw, str(path))
            sources[name] = str(path)
    for variable, name in _ENV.items():
        if env.get(variable, "") != "":
            values[name] = _coerce(name, env[variable], variable)
            sources[name] = variable
    for source, layer in (layers or {}).items():
        for name, raw in layer.items():
            if name not in _TYPES or name == "sources":
                raise ConfigurationError(
                    f"{source}: unknown setting {name!r}; see docs/configuration.md"
                )
            if raw is not None:
                values[name] = _coerce(name, raw, source)
                sources[name] = source
    for name, raw in overrides.items():
        if name not in _TYPES or name == "sources":
            raise ConfigurationError(f"unknown setting {name!r}; see docs/configuration.md")
        if raw is not None:
            values[name] = _coerce(name, raw, "argument")
            sources[name] = "argument"
    settings = replace(Settings(), **values, sources=sources)
    return settings.validate() if validate else settings
