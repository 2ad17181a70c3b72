"""Django: a session engine on satchel stores.

    # settings.py
    SESSION_ENGINE = "satchel.integrations.django"
    SATCHEL = {"store": "redis+cluster://node1:7000,node2:7001", "idle_timeout": 1800}

``request.session`` and ``django.contrib.auth``'s ``login``/``logout`` then use satchel:
records keyed by a SHA-256 of the session key, per-key commits (concurrent requests that
change different keys all persist), no resurrection (a save into a session another request
deleted raises Django's ``UpdateError``, which its middleware turns into
``SessionInterrupted``), idle and absolute timeouts enforced on load, and the per-user
index: the session is filed under ``_auth_user_id`` once Django's login puts it there.
Django keeps its own cookie handling (``SESSION_COOKIE_*``) and CSRF protection. Add
``satchel.integrations.django.DeviceMiddleware`` before Django's ``SessionMiddleware``: it
records each session's device (user agent, client IP) and answers a plain 503 when the
store fails during the request.

A store failure is never Django's ``CreateError``: Django's ``create`` retries that with a
new key, so an outage turned into one would loop for as long as it lasts (every worker at
full CPU). Only :class:`~satchel.errors.KeyCollision` is, and a few collisions in a row are
an error too. Within a request under ``DeviceMiddleware`` the first store failure is
recorded: later store calls of that request fail at once instead of waiting for the store's
timeout again (a login during an outage never deletes the old session half-way), a save
that fails is dropped (Django runs it in ``SessionMiddleware.process_response``, where an
exception could only become a 500), and the response becomes the 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from .. import codec, ids
from ..engine import MAX_SESSIONS_PER_USER, RequestInfo, cap_flow, drive
from ..errors import (
    UNAVAILABLE_BODY,
    ConfigurationError,
    CorruptRecord,
    KeyCollision,
    SessionDataError,
    StoreError,
)
from ..log import security
from ..policy import ExpiryPolicy, is_expired, refresh_due
from ..proxies import parse_trusted, resolve
from ..record import Change, Meta, Record
from ..settings import load_settings
from ..stores.base import Store
from ..stores.registry import store_from_url

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


# The SATCHEL settings this engine applies; Django itself does the rest, so setting one of
# those here would silently do nothing: it is refused, naming Django's own setting.
APPLIED = frozenset(
    {"store", "idle_timeout", "absolute_timeout", "refresh_interval", "trusted_proxies"}
)
_DJANGOS_OWN = {
    "secret_keys": "SECRET_KEY (Django signs its own cookies; session keys are not signed)",
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
}


def _config() -> dict[str, Any]:
    """``settings.SATCHEL``, refusing every key this engine would ignore."""
    from ..option_schema import SETTINGS, refuse_unknown

    config = dict(getattr(django_settings, "SATCHEL", {}))
    refuse_unknown(config, SETTINGS, "settings.SATCHEL")
    for name in sorted(config):
        if name in APPLIED:
            continue
        own = _DJANGOS_OWN.get(name)
        raise ConfigurationError(
            f"settings.SATCHEL[{name!r}] does not apply under Django: "
            + (f"use Django's {own}" if own else "the Django session engine does not support it")
        )
    return config


class DeviceMiddleware:
    """Records the device (user agent, client IP) of sessions created in a request, for
    "your sessions" pages, and turns a store failure into a 503. Put it before Django's
    SessionMiddleware; client IPs honour ``SATCHEL["trusted_proxies"]`` and nothing else."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        config = _config()
        self.trusted = parse_trusted(config.get("trusted_proxies", ()))

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
    except (KeyCollision, CorruptRecord):  # not an outage: handled by the caller
        raise
    except StoreError as exc:
        if failures is None:
            raise
        failures.append(exc)
        if not swallow:
            raise


@cache
def runtime() -> tuple[Store, ExpiryPolicy]:
    """The store and expiry rules from ``settings.SATCHEL`` (made once per process)."""
    config = _config()
    settings = load_settings(
        env={}, use_file=False, validate=False, layers={"settings.SATCHEL": config}
    )
    policy = ExpiryPolicy(
        settings.idle_timeout, settings.absolute_timeout, settings.refresh_interval
    )
    return store_from_url(settings.store), policy


class SessionStore(SessionBase):
    """Django's session API over a satchel store."""

    _session_key: str | None

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._meta: Meta | None = None
        self._baseline: dict[str, str] = {}

    # -- keys: satchel's 256-bit IDs, checked for the exact format before any store access --

    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and ids.is_session_id(str(key))

    def _get_new_session_key(self) -> str:
        return ids.new_session_id()

    @staticmethod
    def _user(data: dict[str, Any]) -> str | None:
        user = data.get(AUTH_USER_KEY)
        return None if user is None else str(user)

    # -- SessionBase ------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        key = self.session_key
        if key is None:
            return {}
        if (failed := _failed()) is not None:
            raise failed
        store, policy = runtime()
        skey, now = ids.store_key(key), time.time()
        try:
            with _recorded():
                record = store.load(skey, now)
            if record is None or is_expired(record.meta, now):
                self._session_key = None  # strict: never adopt an unknown or expired key
                return {}
            data = {name: codec.decode(text) for name, text in record.data.items()}
            if not all(codec.is_valid_text(name) for name in data):
                raise ValueError("a stored session key is not valid Unicode")
        except (CorruptRecord, ValueError):  # discarded, as in the core: never a 500
            security.warning("session %s: corrupt record discarded", ids.log_ref(skey))
            store.delete(skey)
            self._session_key = None
            return {}
        self._meta, self._baseline = record.meta, dict(record.data)
        with _recorded(swallow=True):
            if refresh_due(record.meta, now, policy.refresh_after) and store.touch(skey, now, now):
                self._meta = record.meta.with_changes(last_seen=now)
        return data

    def exists(self, session_key: str) -> bool:
        if not self._validate_session_key(session_key):
            return False
        if (failed := _failed()) is not None:
            raise failed
        try:
            with _recorded():
                return runtime()[0].load(ids.store_key(session_key), time.time()) is not None
        except CorruptRecord:
            return True  # the key is taken, if by a broken record

    def create(self) -> None:
        """A new key; a fresh one after a real key collision, a few times at most."""
        for _ in range(_CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise KeyCollision(f"{_CREATE_ATTEMPTS} session key collisions in a row")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            self.create()
            return
        if _failed() is not None:
            return  # the store already failed in this request: the response is the 503
        with _recorded(swallow=True):
            self._save(must_create)

    def _save(self, must_create: bool) -> None:
        store, policy = runtime()
        data = self._get_session(no_load=must_create)
        for name in data:  # Django checks nothing at assignment: refuse here, not as a 503
            if not isinstance(name, str):
                raise SessionDataError(f"session key {name!r} cannot be stored")
            codec.check_name(name, "session key")
        encoded = {name: codec.encode(value) for name, value in data.items()}
        skey, now, user = ids.store_key(self.session_key), time.time(), self._user(data)
        if must_create or self._meta is None:
            device = _device.get() or RequestInfo()
            meta = policy.new_meta(
                ids.new_handle(), now, user_agent=device.user_agent, client_ip=device.client_ip
            ).with_changes(user_id=user)
            if user is not None:  # the index entry first, as in the core: a fault between
                store.index_add(user, skey, meta.absolute_deadline)  # never hides a session
            try:
                store.create(skey, Record(encoded, meta))
            except KeyCollision as exc:
                raise CreateError from exc  # only a real collision: Django tries a new key
            if user is not None:
                drive(cap_flow(user, skey, now, MAX_SESSIONS_PER_USER), store)
        else:
            changed = {k: v for k, v in encoded.items() if self._baseline.get(k) != v}
            removed = frozenset(self._baseline.keys() - encoded.keys())
            meta = self._meta.with_changes(last_seen=now, user_id=user)
            if store.update(skey, Change(meta=meta, set=changed, delete=removed), now) is None:
                raise UpdateError  # another request deleted it: never bring it back
            if user is not None and user != self._meta.user_id:
                store.index_add(user, skey, meta.absolute_deadline)
                drive(cap_flow(user, skey, now, MAX_SESSIONS_PER_USER), store)
        self._meta, self._baseline = meta, encoded

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None or not self._validate_session_key(key):
            return
        if _failed() is not None:
            return  # the store already failed in this request: the response is the 503
        with _recorded(swallow=True):
            runtime()[0].delete(ids.store_key(key))
        if session_key is None or session_key == self.session_key:
            self._meta, self._baseline = None, {}

    def cycle_key(self) -> None:
        """A new key for the same data (Django's login calls this): the old record is
        deleted and the new one is created in full."""
        self._meta = None
        super().cycle_key()

    @classmethod
    def clear_expired(cls) -> None:
        runtime()[0].purge_expired(time.time())
