"""Django: a session engine on satchel's engine.

    # settings.py
    SESSION_ENGINE = "satchel.integrations.django"
    SATCHEL = {"store": "redis+cluster://node1:7000,node2:7001", "idle_timeout": 1800}

``request.session`` is a Django session over a :class:`satchel.session.Session`, opened and
committed by the same :class:`~satchel.engine.Engine` flows as the ASGI and WSGI paths, so
Django gets their rules: strict loading, per-key commits, no resurrection (a save into a
session another request deleted raises Django's ``UpdateError``, which its middleware turns
into ``SessionInterrupted``), idle and absolute timeouts, ``encrypt_at_rest``,
``max_sessions_per_user`` and ``on_event``. Django's ``login`` (``cycle_key``) is satchel's
regeneration plus the user binding (from ``_auth_user_id``), so the session is listed and
revocable with :class:`satchel.users.UserSessions`; ``logout`` (``flush``) destroys it.
Django's expiry (``set_expiry``, ``SESSION_COOKIE_AGE``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE``)
is enforced on the server (docs/configuration.md, "Django"). Django keeps its cookie
handling (``SESSION_COOKIE_*``) and CSRF. Add ``DeviceMiddleware`` before Django's
``SessionMiddleware``: it records each session's device (user agent, client IP) and
answers a plain 503 when the store fails during the request.

A store failure is never Django's ``CreateError``: Django's ``create`` retries that with a
new key, so an outage turned into one would loop for as long as it lasts (every worker at
full CPU). Only :class:`~satchel.errors.KeyCollision` is, and a few collisions in a row are
an error too. Within a request under ``DeviceMiddleware`` the first store failure is
recorded: later store calls of that request fail at once instead of waiting for the store's
timeout again, a save that fails is dropped (Django runs it in
``SessionMiddleware.process_response``, where an exception could only become a 500), and
the response becomes the 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from .. import auth, ids
from ..engine import Engine, RequestInfo, drive
from ..errors import UNAVAILABLE_BODY, ConfigurationError, KeyCollision, StoreError
from ..options import SessionOptions, build
from ..policy import ExpiryPolicy
from ..proxies import parse_trusted, resolve
from ..session import Session
from ..settings import Settings, load_settings
from ..stores.base import Store

AUTH_USER_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY
_device: ContextVar[RequestInfo | None] = ContextVar("satchel_device", default=None)
# The store failures of the current request under DeviceMiddleware; None outside one.
_failures: ContextVar[list[StoreError] | None] = ContextVar("satchel_failures", default=None)
_CREATE_ATTEMPTS = 3  # 256-bit keys: even two collisions in a row mean a broken store


def _unavailable() -> Any:
    """The answer when the store is down: a plain 503, no details, no traceback (as on
    the ASGI, WSGI and Flask paths)."""
    from django.http import HttpResponse

    response = HttpResponse(UNAVAILABLE_BODY, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "5"
    return response


# -- configuration: settings.SATCHEL and Django's own settings, into satchel.options.build --

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
    }
)
HOOKS = frozenset({"on_event", "clock"})  # callables: not settings, passed to the engine as-is
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
    "store=cookie://": "SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'",
}


def _settings() -> tuple[Settings, dict[str, Any]]:
    """``settings.SATCHEL`` as satchel settings plus its hooks, refusing every key this
    engine would ignore."""
    config = dict(getattr(django_settings, "SATCHEL", {}))
    hooks = {name: config.pop(name) for name in HOOKS if name in config}
    for name in sorted(config):
        if name in APPLIED or (name not in _DJANGOS_OWN and name not in _settings_names()):
            continue  # unknown names are refused by load_settings below
        own = _DJANGOS_OWN.get(name)
        raise ConfigurationError(
            f"settings.SATCHEL[{name!r}] does not apply under Django: "
            + (f"use Django's {own}" if own else "the Django session engine does not support it")
        )
    if str(config.get("store", "")).startswith("cookie:"):
        raise ConfigurationError(
            f"settings.SATCHEL['store']: cookie sessions do not apply under Django: use "
            f"Django's {_DJANGOS_OWN['store=cookie://']}"
        )
    if "secret_keys" in config and not config.get("encrypt_at_rest"):
        raise ConfigurationError(
            "settings.SATCHEL['secret_keys'] applies under Django only with encrypt_at_rest "
            "(Django's session cookie is not signed)"
        )
    layers = {"settings.SATCHEL": config}
    return load_settings(env={}, use_file=False, validate=False, layers=layers), hooks


@cache
def _settings_names() -> frozenset[str]:
    from dataclasses import fields

    return frozenset(f.name for f in fields(Settings)) - {"sources"}


def options() -> tuple[str, SessionOptions]:
    """The store URL and engine options: ``settings.SATCHEL`` wins over Django's own
    settings where both speak (``absolute_timeout`` over ``SESSION_COOKIE_AGE``,
    ``secret_keys`` over ``SECRET_KEY``)."""
    settings, hooks = _settings()
    explicit = settings.sources
    idle, absolute = settings.idle_timeout, settings.absolute_timeout
    if "absolute_timeout" not in explicit and django_settings.is_overridden("SESSION_COOKIE_AGE"):
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
        "cookie_persistent": not django_settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
        **hooks,
    }
    if settings.encrypt_at_rest:  # the keyring serves encryption only: nothing is signed
        keys = settings.secret_keys or (
            django_settings.SECRET_KEY,
            *getattr(django_settings, "SECRET_KEY_FALLBACKS", ()),
        )
        opts["secret_keys"] = list(keys)
    else:
        opts["insecure_unsigned_cookies"] = True
    return settings.store, opts  # type: ignore[return-value]


@cache
def runtime() -> tuple[Store, Engine]:
    """The store and engine, from the middlewares' composition root (once per process)."""
    url, opts = options()
    store, engine, _ = build(url, opts)
    return store, engine


# -- the request: device info and the store-failure 503 ---------------------------------------


class DeviceMiddleware:
    """Records the device (user agent, client IP) of sessions created in a request, for
    "your sessions" pages, and turns a store failure into a 503. Put it before Django's
    SessionMiddleware; client IPs honour ``SATCHEL["trusted_proxies"]`` and nothing else."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.trusted = parse_trusted(options()[1].get("trusted_proxies", ()))

    def __call__(self, request: Any) -> Any:
        meta = request.META
        headers = {
            k[5:].replace("_", "-").lower(): str(v)
            for k, v in meta.items()
            if k.startswith("HTTP_")
        }
        origin = resolve(meta.get("REMOTE_ADDR"), request.scheme, headers, self.trusted)
        agent = headers.get("user-agent")
        token = _device.set(
            RequestInfo(user_agent=agent[:512] if agent else None, client_ip=origin.client_ip)
        )
        failures: list[StoreError] = []
        failures_token = _failures.set(failures)
        try:
            response = self.get_response(request)
        finally:
            _device.reset(token)
            _failures.reset(failures_token)
        # Whatever the view answered, its session was not saved: say so, set no cookie.
        return _unavailable() if failures else response

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """A store failure while the view read the session: the 503 (not Django's 500)."""
        if isinstance(exception, StoreError) and not isinstance(exception, KeyCollision):
            return _unavailable()
        return None


def _failed() -> StoreError | None:
    """The first store failure of this request, if any: later store calls of the request
    fail at once instead of waiting for the store's timeout again."""
    failures = _failures.get()
    return failures[0] if failures else None


@contextmanager
def _recorded(swallow: bool = False) -> Iterator[None]:
    """Record a store failure for DeviceMiddleware's 503, and drop it when ``swallow`` (a
    save or a delete: the response is replaced by the 503 anyway). Outside DeviceMiddleware
    it is raised as it is."""
    failures = _failures.get()
    try:
        yield
    except KeyCollision:  # not an outage: handled by the caller
        raise
    except StoreError as exc:
        if failures is None:
            raise
        failures.append(exc)
        if not swallow:
            raise


# -- Django's expiry, as the server enforces it -------------------------------------------------

_UNSET: Any = object()  # no set_expiry() pending


def _expiry(
    choice: int | float | datetime | None, policy: ExpiryPolicy, now: float, created: float
) -> tuple[float, float, bool]:
    """(idle timeout, absolute deadline, persistent cookie) for a Django expiry choice:
    None the defaults; 0 the defaults in a browser-session cookie; seconds that idle
    timeout ("remember me"), the absolute timeout raised to it if shorter; a datetime
    that fixed end."""
    if isinstance(choice, datetime):
        end = choice.timestamp()
        return max(end - now, 1.0), max(end, created + 1.0), True
    default = created + policy.absolute_timeout
    if choice is None:
        return policy.idle_timeout, default, policy.persistent
    if choice == 0:
        return policy.idle_timeout, default, False
    return float(choice), max(default, created + choice), True


class SessionStore(SessionBase):
    """Django's session API over a satchel :class:`~satchel.session.Session`."""

    _session_key: str | None

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._satchel = Session()
        self._loaded = False
        self._expiry_choice: Any = _UNSET  # a set_expiry() value, applied at the next save

    # -- keys: satchel's 256-bit IDs, checked for the exact format before any store access --

    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and ids.is_session_id(str(key))

    def _get_new_session_key(self) -> str:
        return ids.new_session_id()

    # -- the satchel session, opened and committed by the engine ------------------------------

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        if not self._loaded:
            if self.session_key is not None and not no_load:
                self.load()
            self._loaded = True
        return self._satchel

    _session = property(_get_session)

    async def _aget_session(self, no_load: bool = False) -> Session:
        return await sync_to_async(self._get_session)(no_load)

    def is_empty(self) -> bool:
        return not self._session_key and not self._satchel and self._expiry_choice is _UNSET

    def load(self) -> Session:
        """Open the session the key names. Strict: an unknown, expired or corrupt record is
        never adopted (the key is dropped); a pending change is kept if already open."""
        if self._loaded or self.session_key is None:
            return self._satchel
        if (failed := _failed()) is not None:
            raise failed
        store, engine = runtime()
        with _recorded():
            drive(engine.open(self._satchel, self.session_key), store)
        self._loaded = True
        if self._satchel.new:
            self._session_key = None
        elif self._satchel.cookie_refresh_due:
            self.modified = True  # Django re-sends the cookie with the new Max-Age
        return self._satchel

    def exists(self, session_key: str) -> bool:
        if not self._validate_session_key(session_key):
            return False
        if (failed := _failed()) is not None:
            raise failed
        store, engine = runtime()
        with _recorded():
            return not drive(engine.open(Session(), session_key), store).new

    def create(self) -> None:
        """A new record for the current data; a fresh key after a real key collision, a
        few times at most."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise KeyCollision(f"{_CREATE_ATTEMPTS} session key collisions in a row")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None and not must_create:
            self.create()
            return
        if _failed() is not None:
            return  # the store already failed in this request: the response is the 503
        session = self._get_session()
        if must_create and not session.new:
            session.regenerate()  # a new key for this data; the old record goes
        elif must_create and self._expiry_choice is _UNSET:
            self._expiry_choice = None  # the defaults, written: an empty session is kept too
        try:
            with _recorded(swallow=True):
                self._commit(session)
        except KeyCollision as exc:
            raise CreateError from exc  # only a real collision: Django tries a new key

    def _commit(self, session: Session) -> None:
        store, engine = runtime()
        user = session.get(AUTH_USER_KEY)
        login = user is not None and str(user) != session.user_id
        if login:
            auth.login(session, str(user))  # a new ID, the user bound, the device recorded
        if self._expiry_choice is not _UNSET:
            now, meta = engine.clock(), session.meta
            created = now if meta is None or login else meta.created  # a login restarts it
            idle, deadline, persistent = _expiry(self._expiry_choice, engine.expiry, now, created)
            absolute = max(deadline - created, 1.0)
            session.set_expiry(idle_timeout=idle, absolute_timeout=absolute, persistent=persistent)
        opened = session.id
        drive(
            engine.commit(session, _device.get() or RequestInfo(), self._get_new_session_key), store
        )
        self._expiry_choice = _UNSET
        if opened is not None and session.id is None:
            raise UpdateError  # another request deleted or regenerated it: never bring it back
        self._session_key = session.id

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None or not self._validate_session_key(key):
            return
        if _failed() is not None:
            return  # the store already failed in this request: the response is the 503
        current = key == self.session_key
        with _recorded(swallow=True):
            store, engine = runtime()
            session = self._get_session() if current else Session()
            if not current:
                drive(engine.open(session, key), store)
            session.destroy()
            drive(engine.commit(session, _device.get() or RequestInfo()), store)
        if current:
            self._session_key, self._expiry_choice = None, _UNSET

    def clear(self) -> None:
        """Django's ``clear``: no data, no user, the default expiry; the key stays."""
        self._get_session().start_over()
        self._expiry_choice = None
        self.modified = True

    def cycle_key(self) -> None:
        """A new key for the same data (Django's login calls this): satchel's regeneration,
        written at save; the old record is deleted only once the new one exists."""
        session = self._get_session()
        if not session.new:
            session.regenerate()
        self.modified = True

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    @classmethod
    def clear_expired(cls) -> None:
        store, engine = runtime()
        store.purge_expired(engine.clock())

    # -- expiry: Django's API over the metadata the server enforces ----------------------------

    def set_expiry(self, value: Any) -> None:
        if isinstance(value, timedelta):  # from now by satchel's clock, as the server counts
            value = datetime.fromtimestamp(runtime()[1].clock(), UTC) + value
        if not isinstance(value, int | float | datetime | None) or isinstance(value, bool):
            raise TypeError("set_expiry() takes seconds, a datetime, a timedelta or None")
        if isinstance(value, int | float) and value < 0:
            raise ValueError("set_expiry(): seconds must be 0 or more")
        self._expiry_choice = value
        self.modified = True

    async def aset_expiry(self, value: Any) -> None:
        self.set_expiry(value)

    def _server_expiry(self, kwargs: dict[str, Any]) -> tuple[float, float, bool]:
        """What the server enforces after this request: (now, expires at, persistent)."""
        engine = runtime()[1]
        modification = kwargs.get("modification")
        now = engine.clock() if modification is None else modification.timestamp()
        choice = kwargs.get("expiry", self._expiry_choice)
        if isinstance(choice, str):
            choice = datetime.fromisoformat(choice)
        meta = self._get_session().meta
        if choice is _UNSET and meta is not None:
            seen = now if self.modified else meta.last_seen
            return now, min(seen + meta.idle_timeout, meta.absolute_deadline), meta.persistent
        created = now if meta is None else meta.created
        idle, deadline, persistent = _expiry(
            None if choice is _UNSET else choice, engine.expiry, now, created
        )
        return now, min(now + idle, deadline), persistent

    def get_expiry_age(self, **kwargs: Any) -> int:
        now, expires, _ = self._server_expiry(kwargs)
        return max(int(expires - now), 0)

    def get_expiry_date(self, **kwargs: Any) -> datetime:
        _, expires, _ = self._server_expiry(kwargs)
        if django_settings.USE_TZ:
            return datetime.fromtimestamp(expires, UTC)
        return datetime.fromtimestamp(expires)

    def get_expire_at_browser_close(self) -> bool:
        return not self._server_expiry({})[2]

    async def aget_expiry_age(self, **kwargs: Any) -> int:
        return await sync_to_async(self.get_expiry_age)(**kwargs)

    async def aget_expiry_date(self, **kwargs: Any) -> datetime:
        return await sync_to_async(self.get_expiry_date)(**kwargs)

    async def aget_expire_at_browser_close(self) -> bool:
        return await sync_to_async(self.get_expire_at_browser_close)()
