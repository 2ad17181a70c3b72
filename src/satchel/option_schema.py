"""Every option satchel takes, declared once: its name, type, default, where it can be set
(middleware keyword, ``SATCHEL_*`` environment variable, TOML key, Flask ``app.config``,
Django ``SATCHEL``), one line of documentation, and how a value read from text or TOML
is parsed.

Everything else is derived from, or tested against, :data:`OPTIONS`: the settings loader
(:mod:`satchel.settings`), the middleware keywords (:class:`SessionOptions`, a TypedDict
for ``Unpack[...]``, checked against the schema by tests/test_option_schema.py), Flask's
and Django's keys, the refusal of unknown names (:func:`refuse_unknown`), and the
reference table of docs/configuration.md (:mod:`satchel.option_docs`).

Defaults live once: where an option becomes a field of :class:`~satchel.cookies.CookieOptions`,
:class:`~satchel.expiry.ExpiryPolicy` or :class:`~satchel.csrf.CSRFOptions`, its default is
that field's; the others are written here.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, TypeAlias, TypedDict

from .cookies import CookieOptions, SameSite
from .csrf import CSRFOptions
from .dbsc.options import DeviceBindingOptions
from .errors import ConfigurationError
from .events import EventHook
from .expiry import ExpiryPolicy
from .stores.base import Store

DEFAULT_STORE = "sqlite:///satchel.db"
ENV_PREFIX = "SATCHEL_"
CONFIG_ENV = "SATCHEL_CONFIG"  # the settings file's path; not an option
DOCS = "docs/configuration.md"


Duration: TypeAlias = float | timedelta | str
"""A duration option's value: seconds, a ``datetime.timedelta``, or text like ``"30m"``."""


class SessionOptions(TypedDict, total=False):
    """The keyword arguments of both middlewares (besides ``store`` and
    ``on_store_unavailable``): the options of :data:`OPTIONS` marked ``keyword``."""

    secret_keys: Sequence[str] | None
    revocation_store: str | Store | None
    encrypt_at_rest: bool
    max_sessions_per_user: int | None
    on_event: EventHook | None
    csrf: bool
    csrf_exempt: Sequence[str]
    csrf_allow_same_site: bool
    csrf_trusted_origins: Sequence[str]
    trusted_proxies: Sequence[str]
    insecure_unsigned_cookies: bool
    cookie_name: str
    cookie_path: str
    cookie_domain: str | None
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: SameSite
    cookie_partitioned: bool
    cookie_persistent: bool
    idle_timeout: Duration
    absolute_timeout: Duration
    refresh_interval: Duration | None
    assurance: str | None
    assurance_allow_weaker: bool
    reauth_to_end_sessions: Duration | None
    reauth_max_age: Duration
    token_paths: Sequence[str]
    clear_site_data: Sequence[str]
    dbsc: bool
    dbsc_required: bool
    dbsc_grace: Duration
    dbsc_cookie_lifetime: Duration
    dbsc_path: str
    dbsc_redirect: str | None
    clock: Callable[[], float]


# -- parsing values read from text (environment) or TOML / app.config / SATCHEL ------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Parser(NamedTuple):
    """How a raw value becomes an option's value; ``type`` is what it produces (the type
    of the option's :class:`~satchel.settings.Settings` field). ``convert`` raises
    ValueError saying what is expected."""

    type: str
    convert: Callable[[Any], Any]
    duration: bool = False  # a number of seconds, also given as a timedelta or "30m"


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("use true or false")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_TEXT = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
DURATION_HELP = (
    "give seconds (1800), a datetime.timedelta, or text with a unit: '30m', '2h', '1d' "
    "(s, m, h, d, w; combined as '1h30m')"
)


def duration(raw: Any) -> float:
    """Seconds from a number, a ``datetime.timedelta``, or text: ``"1800"``, ``"30m"``,
    ``"2h"``, ``"1d"``, ``"1h30m"`` (units s, m, h, d, w). ValueError saying what is
    accepted otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"a duration, not a boolean: {DURATION_HELP}")
    if isinstance(raw, timedelta):
        value = raw.total_seconds()
    elif isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.strip().lower().replace(" ", "")
        try:
            value = float(text)
        except ValueError:
            if not _DURATION_TEXT.fullmatch(text):
                raise ValueError(DURATION_HELP) from None
            value = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"a {type(raw).__name__} is not a duration: {DURATION_HELP}")
    if not math.isfinite(value):
        raise ValueError(f"a finite duration: {DURATION_HELP}")
    return value


def _seconds(minimum: float, strict: bool) -> Callable[[Any], float]:
    def convert(raw: Any) -> float:
        value = duration(raw)
        if value < minimum or (strict and value == minimum):
            raise ValueError("must be positive" if strict else f"must be at least {minimum:g}")
        return value

    return convert


def _whole(raw: Any) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("a whole number")
    return int(raw)


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("a string")
    return raw


def _text_list(raw: Any) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(str(i).strip() for i in items if str(i).strip())


def _text_list_or_none(raw: Any) -> tuple[str, ...]:
    """As a list of text, where the word ``none`` is the empty list (an empty environment
    variable is no setting at all)."""
    if isinstance(raw, str) and raw.strip().lower() == "none":
        return ()
    return _text_list(raw)


def _assurance(raw: Any) -> str | None:
    if raw is None or str(raw).strip().lower() in ("", "none"):
        return None
    if str(raw) not in ("aal1", "aal2", "aal3"):
        raise ValueError("use 'aal1', 'aal2' or 'aal3'")
    return str(raw)


def _samesite(raw: Any) -> str:
    if raw not in ("lax", "strict", "none"):
        raise ValueError("use 'lax', 'strict' or 'none'")
    return str(raw)


BOOL = Parser("bool", _boolean)
SECONDS = Parser("float", _seconds(0, strict=True), duration=True)
SECONDS_OR_NONE = Parser("float | None", _seconds(0, strict=False), duration=True)
SECONDS_FROM_ZERO = Parser("float", _seconds(0, strict=False), duration=True)
WHOLE_OR_NONE = Parser("int | None", _whole)
TEXT = Parser("str", _text)
TEXT_OR_NONE = Parser("str | None", _text)
TEXT_LIST = Parser("tuple[str, ...]", _text_list)
TEXT_LIST_OR_NONE = Parser("tuple[str, ...]", _text_list_or_none)
SAMESITE = Parser("SameSite", _samesite)
ASSURANCE = Parser("str | None", _assurance)


# -- the declarations ----------------------------------------------------------------------------

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Option:
    """One option. ``owner``/``field``: the dataclass field it becomes (its default is that
    field's). ``parse``: how a value from text or TOML is read; None for values only code
    can give (callables, objects), which have no environment variable or TOML key.
    ``keyword``: a key of :class:`SessionOptions`. ``flask_only``: read from Flask's
    ``app.config`` (and ``Satchel(...)``) only."""

    name: str
    type: str  # as the middleware's keyword argument is annotated
    parse: Parser | None = None
    owner: builtins.type | None = None
    field: str = ""
    value: Any = _UNSET
    shown: str = ""  # the default as the docs show it, when its repr is not it
    keyword: bool = True
    flask_only: bool = False
    doc: str = ""  # one line of docs/configuration.md

    def __post_init__(self) -> None:
        if (self.owner is None) == (self.value is _UNSET):
            raise ConfigurationError(
                f"option {self.name}: give its default as value= or owner=, once"
            )

    @property
    def default(self) -> Any:
        if self.owner is None:
            return self.value
        found = {f.name: f for f in dataclasses.fields(self.owner)}[self.field]
        if found.default_factory is not dataclasses.MISSING:
            return found.default_factory()
        return found.default

    @property
    def setting(self) -> bool:
        """Read by the settings loader: TOML, environment, app.config, SATCHEL."""
        return self.parse is not None and not self.flask_only

    @property
    def env(self) -> str | None:
        """Its ``SATCHEL_*`` name (the environment variable and the Flask config key)."""
        return ENV_PREFIX + self.name.upper() if self.parse is not None else None

    @property
    def toml(self) -> tuple[str | None, str] | None:
        """(section, key) in satchel.toml: ``[cookie] name``, ``[csrf] enabled``; the flat
        name works too."""
        if not self.setting:
            return None
        section, _, rest = self.name.partition("_")
        if section in ("cookie", "csrf", "dbsc"):
            return section, rest or "enabled"
        return None, self.name


def _cookie(name: str, type_: str, parse: Parser, doc: str) -> Option:
    return Option(f"cookie_{name}", type_, parse, CookieOptions, name, doc=doc)


def _csrf(name: str, field: str, type_: str, parse: Parser, doc: str) -> Option:
    return Option(name, type_, parse, CSRFOptions, field, doc=doc)


def _dbsc(name: str, field: str, type_: str, parse: Parser, doc: str) -> Option:
    return Option(name, type_, parse, DeviceBindingOptions, field, doc=doc)


def _expiry(name: str, parse: Parser, doc: str, shown: str = "") -> Option:
    type_ = parse.type.replace("float", "Duration")
    return Option(name, type_, parse, ExpiryPolicy, name, shown=shown, doc=doc)


# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("store", "str | Store | CookieStore", TEXT, value=DEFAULT_STORE, keyword=False,
           doc="a store URL ([stores.md](stores.md)), a `Store` object, or `CookieStore(...)`"),
    Option("secret_keys", "Sequence[str] | None", TEXT_LIST, value=None, shown="required",
           doc="list of keys, newest first, each 32+ characters; the newest signs, all verify"),
    Option("insecure_unsigned_cookies", "bool", value=False,
           doc="run without keys (cookies unsigned); for tests only, so code only. Refused "
           "together with `secret_keys` or with the cookie store, where it would be ignored"),
    Option("encrypt_at_rest", "bool", BOOL, value=False,
           doc="server-side stores: encrypt each stored value with the keyring"),
    Option("revocation_store", "str | Store | None", TEXT_OR_NONE, value=None,
           doc="cookie sessions: a store URL or object for per-user revocation markers; "
           "without it logout stops only the browser that logged out, and "
           "`logout_other_devices` / `logout_everywhere` raise `ConfigurationError`"),
    _cookie("name", "str", TEXT, "`__Host-` and `__Secure-` prefixes are checked"),
    _cookie("path", "str", TEXT, ""),
    _cookie("domain", "str | None", TEXT_OR_NONE,
            "None binds the cookie to the exact host (safest)"),
    _cookie("secure", "bool", BOOL,
            "browsers keep Secure cookies on http://localhost and http://127.0.0.1"),
    _cookie("httponly", "bool", BOOL, ""),
    _cookie("samesite", "SameSite", SAMESITE, '`"lax"`, `"strict"` or `"none"` (needs Secure)'),
    _cookie("partitioned", "bool", BOOL, "CHIPS `Partitioned` (needs Secure)"),
    _cookie("persistent", "bool", BOOL,
            "False: a browser-session cookie; True: new sessions get a cookie whose Max-Age "
            "follows the session's own expiry (idle, capped by absolute) and is re-sent as "
            "the session is used (at most every `refresh_interval`); "
            "`session.set_expiry(persistent=...)` changes one session"),
    _expiry("idle_timeout", SECONDS,
            "seconds without a request after which the session ends; not longer than "
            "`absolute_timeout`"),
    _expiry("absolute_timeout", SECONDS,
            "seconds after creation (or login) after which it ends regardless"),
    _expiry("refresh_interval", SECONDS_OR_NONE,
            'a read-only request records "last seen" at most this often', shown="idle / 10"),
    Option("assurance", "str | None", ASSURANCE, value=None,
           doc="`\"aal1\"`, `\"aal2\"` or `\"aal3\"`: idle and absolute timeouts from NIST SP "
           "800-63B-4 where not set, and a longer one refused at start "
           "([security.md](security.md#assurance-levels))"),
    Option("assurance_allow_weaker", "bool", BOOL, value=False,
           doc="accept timeouts longer than `assurance` allows (say it is meant)"),
    Option("reauth_to_end_sessions", "Duration | None", SECONDS_OR_NONE, value=None,
           doc="ending the user's other sessions (`revoke`, `logout_other_devices`, "
           "`logout_everywhere`) needs an authentication at most this old, else "
           "`ReauthenticationRequired` (ASVS 7.5.2)"),
    Option("reauth_max_age", "Duration", SECONDS, value=300.0,
           doc="how old an authentication `require_recent_auth` accepts when the guard "
           "names no `max_age` ([security.md]"
           "(security.md#sensitive-actions-a-recent-authentication-sudo-mode))"),
    Option("clock", "Callable[[], float]", value=None, shown="`time.time`",
           doc="the app's UTC clock, epoch seconds"),
    _csrf("csrf", "enabled", "bool", BOOL,
          "CSRF checks on unsafe methods ([security.md](security.md#csrf))"),
    _csrf("csrf_exempt", "exempt", "Sequence[str]", TEXT_LIST,
          'path patterns never checked (`"/webhooks/*"`)'),
    _csrf("csrf_allow_same_site", "allow_same_site", "bool", BOOL,
          "accept `Sec-Fetch-Site: same-site`"),
    _csrf("csrf_trusted_origins", "trusted_origins", "Sequence[str]", TEXT_LIST,
          "other origins allowed to post"),
    Option("trusted_proxies", "Sequence[str]", TEXT_LIST, value=(),
           doc="IPs/networks whose forwarding headers are believed"),
    Option("token_paths", "Sequence[str]", TEXT_LIST, value=(),
           doc="path prefixes (whole segments) where API clients may send `Authorization: "
           "Bearer <token>` and get new tokens in `X-Session-Token` ([security.md](security.md"
           "#bearer-tokens-for-api-and-mobile-clients-token_paths)); server-side stores only"),
    Option("clear_site_data", "Sequence[str]", TEXT_LIST_OR_NONE, value=("cookies",),
           doc="`Clear-Site-Data` directives of the response that logs a user out (`[]`, "
           "or `none` in the environment: no header); `\"cookies\"` clears every cookie of "
           "the registrable domain, so a logout response that sets a cookie of its own gets "
           "the others only "
           "([security.md](security.md#clear-site-data-on-logout))"),
    _dbsc("dbsc", "enabled", "bool", BOOL,
          "device-bound sessions (DBSC, [device-binding.md](device-binding.md)): logins over "
          "HTTPS offer browsers to bind the session to a key they keep; a bound session then "
          "needs a fresh bound cookie on every request"),
    _dbsc("dbsc_required", "required", "bool", BOOL,
          "every logged-in session must bind within `dbsc_grace`, else it is refused "
          "(`require_device_binding(session)` asks it of one session)"),
    _dbsc("dbsc_grace", "grace", "Duration", SECONDS_FROM_ZERO,
          "seconds after a login during which the browser is offered to bind (and a "
          "session that must bind is let through unbound)"),
    _dbsc("dbsc_cookie_lifetime", "cookie_lifetime", "Duration", SECONDS,
          "seconds a bound cookie lives (1 to 86400): how long a stolen pair of cookies "
          "keeps working"),
    _dbsc("dbsc_path", "path", "str", TEXT,
          "where the registration (`<path>/register`) and refresh (`<path>/refresh`) "
          "endpoints answer, mounted by the middleware"),
    _dbsc("dbsc_redirect", "redirect", "str | None", TEXT_OR_NONE,
          "where a page request of a bound session that cannot prove its device is sent "
          "(303); None answers 401 with a short page (JSON requests always get 401 JSON)"),
    Option("max_sessions_per_user", "int | None", WHOLE_OR_NONE, value=None,
           doc="evict the oldest sessions beyond N at login (1 to 1000; unset means 1000)"),
    Option("on_event", "EventHook | None", value=None,
           doc="a callable receiving `SessionEvent`s"),
    Option("on_store_unavailable", "ASGIApp | WSGIApp", value=None, shown="plain 503",
           keyword=False,
           doc="what answers when the store is down, while loading or committing: an ASGI app "
           "(ASGI middleware), a WSGI app (WSGI middleware), a view (Django's "
           "`SATCHEL['on_store_unavailable']`); on Flask, the app's error handler for "
           "`StoreError`. Default: the same plain 503 on every path"),
    Option("on_csrf_failure", "ASGIApp | WSGIApp", value=None, shown="403 page or JSON",
           keyword=False,
           doc="what answers a failed CSRF check: an ASGI app (ASGI middleware) or a WSGI app "
           "(WSGI middleware), finding the `CSRFFailure` (`reason`, `message`) in "
           "`scope`/`environ[\"satchel.csrf_failure\"]`; on Flask, the app's error handler "
           "for `CSRFError`; on FastAPI's `CSRFProtected`, an exception handler for "
           "`CSRFError`. Default: a small HTML page with advice for browsers, "
           '`{"error": "csrf", "reason": ...}` for API clients (`Accept: application/json`)'),
    Option("login_url", "str", TEXT, value="/login", keyword=False, flask_only=True,
           doc="Flask: where `@login_required` sends a browser without a logged-in user"),
)
# fmt: on

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
DURATIONS = frozenset(o.name for o in OPTIONS if o.parse is not None and o.parse.duration)
KEYWORDS = frozenset(o.name for o in OPTIONS if o.keyword)  # SessionOptions' keys
SETTINGS = tuple(o.name for o in OPTIONS if o.setting)  # Settings' fields, in order
ENV: dict[str, str] = {o.env: o.name for o in OPTIONS if o.setting and o.env}
FLASK_KEYS: dict[str, str] = {o.env: o.name for o in OPTIONS if o.env}  # app.config SATCHEL_*


def _sectioned() -> dict[tuple[str, str], str]:
    out = {}
    for o in OPTIONS:
        section, key = o.toml or (None, "")
        if section is not None:
            out[section, key] = o.name
    return out


TOML_SECTIONS = _sectioned()  # ("cookie", "name") -> "cookie_name"
LISTS: tuple[str, ...] = tuple(
    o.name for o in OPTIONS if o.parse in (TEXT_LIST, TEXT_LIST_OR_NONE) and o.name != "secret_keys"
)
"""The options that take a list of strings (``secret_keys`` aside: a keyring's own)."""


def default(name: str) -> Any:
    """An option's default, as the settings loader holds it (lists as tuples)."""
    option = BY_NAME[name]
    value = option.default
    if option.parse is TEXT_LIST:
        return tuple(value or ())
    return value


def parse(name: str, raw: Any, source: str) -> Any:
    """``raw`` (text from the environment, or a TOML/app.config/SATCHEL value) as option
    ``name``'s value; ConfigurationError naming the option, the source and the fix."""
    option = BY_NAME[name]
    assert option.parse is not None, f"{name} cannot be read from {source}"
    if raw is None:
        return None
    try:
        return option.parse.convert(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{name} (from {source}): invalid value {raw!r}: {exc}") from None


def present(options: Mapping[str, Any], owner: type) -> dict[str, Any]:
    """The given options that become fields of ``owner``, by field name (what is not given
    takes the field's default)."""
    return {o.field: options[o.name] for o in OPTIONS if o.owner is owner and o.name in options}


def get(options: Mapping[str, Any], name: str) -> Any:
    """``options[name]``, or the option's default."""
    return options.get(name, BY_NAME[name].default)


# -- unknown names: refused the same way everywhere ----------------------------------------------


def refuse_unknown(given: Iterable[str], valid: Collection[str], where: str) -> None:
    """Raise ConfigurationError if ``given`` holds a name not in ``valid``, naming it, the
    closest valid name and every valid one: a misspelt option must never be ignored."""
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(valid), n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    raise ConfigurationError(
        f"{where}: unknown option{plural} {', '.join(named)}; valid options: "
        f"{', '.join(sorted(valid))} (see {DOCS})"
    )
