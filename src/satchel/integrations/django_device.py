"""Django's request side of the session engine: the device a session is created on, and
the plain 503 when the store fails during a request.

Within a request under :class:`DeviceMiddleware` the first store failure is recorded:
later store calls of that request fail at once instead of waiting for the store's timeout
again (a login during an outage never deletes the old session half-way), a save that
fails is dropped (Django runs it in ``SessionMiddleware.process_response``, where an
exception could only become a 500), and the response becomes the 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from . import missing_framework

try:
    from django.conf import settings as django_settings
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from .. import clear_site_data
from ..backend import DeviceInfo
from ..csrf_failure import insecure_transport, warn_insecure_transport, warned_insecure_transport
from ..errors import UNAVAILABLE_BODY, KeyCollision, StoreError
from ..origin import parse_trusted, resolve
from ..transport import RETRY_AFTER, plain_headers, session_headers
from .django_config import options, unavailable_view

_device: ContextVar[DeviceInfo | None] = ContextVar("satchel_device", default=None)
# The store failures of the current request under DeviceMiddleware; None outside one.
_failures: ContextVar[list[StoreError] | None] = ContextVar("satchel_failures", default=None)
# Whether the current request logged a user out (Django's logout: ``flush``).
_logouts: ContextVar[list[bool] | None] = ContextVar("satchel_logouts", default=None)


def _unavailable(request: Any) -> Any:
    """The answer when the store is down: ``SATCHEL["on_store_unavailable"]`` (a view),
    else the plain 503 of every path, no details, no traceback."""
    from django.http import HttpResponse

    view = unavailable_view()
    if view is not None:
        return view(request)

    response = HttpResponse(UNAVAILABLE_BODY, status=503)
    for name, value in plain_headers(UNAVAILABLE_BODY, RETRY_AFTER):
        response[name] = value
    return response


class DeviceMiddleware:
    """Records the device (user agent, client IP) of sessions created in a request, for
    "your sessions" pages, and turns a store failure into a 503. Put it before Django's
    SessionMiddleware; client IPs honour ``SATCHEL["trusted_proxies"]`` and nothing else."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.trusted = parse_trusted(options()[1].get("trusted_proxies", ()))
        self.cookie_name = django_settings.SESSION_COOKIE_NAME
        self.clear_site_data = clear_site_data.directives(options()[1].get("clear_site_data", ()))

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
            DeviceInfo(user_agent=agent[:512] if agent else None, client_ip=origin.client_ip)
        )
        failures: list[StoreError] = []
        failures_token = _failures.set(failures)
        logouts: list[bool] = []
        logouts_token = _logouts.set(logouts)
        try:
            response = self.get_response(request)
        finally:
            _device.reset(token)
            _failures.reset(failures_token)
            _logouts.reset(logouts_token)
        # Whatever the view answered, its session was not saved: say so, set no cookie.
        if failures:
            return _unavailable(request)
        if logouts and self.clear_site_data:
            add_clear_site_data(response, self.clear_site_data)
        if self.cookie_name in response.cookies:  # carries the session's cookie: never cached
            secure = bool(response.cookies[self.cookie_name]["secure"])
            if not warned_insecure_transport() and insecure_transport(
                secure, origin.scheme, origin.host
            ):  # the browser drops it: say so once, as on every path
                warn_insecure_transport(origin.host, "SESSION_COOKIE_SECURE")
            ruled = session_headers(response.items(), ["Cookie"])
            kept = {name.lower() for name, _ in ruled}
            for name in [n for n, _ in response.items() if n.lower() not in kept]:
                del response[name]  # a CDN's own cache directives, among others
            for name, value in ruled:
                if name in ("vary", "cache-control"):
                    response[name] = value
        return response

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """A store failure while the view read the session: the 503 (not Django's 500)."""
        if isinstance(exception, StoreError) and not isinstance(exception, KeyCollision):
            return _unavailable(request)
        return None


def add_clear_site_data(response: Any, directives: tuple[str, ...]) -> None:
    """``Clear-Site-Data`` on the response of a logout (:mod:`satchel.clear_site_data`),
    without ``"cookies"`` when the response sets a cookie of its own (a new session,
    Django's CSRF cookie for a form on the page)."""
    sets_cookie = any(morsel.value for morsel in response.cookies.values())
    value = clear_site_data.header_value(directives, sets_cookie)
    if value is not None:
        response[clear_site_data.HEADER] = value


def note_logout() -> None:
    """The session engine ended a logged-in user's session in this request."""
    logouts = _logouts.get()
    if logouts is not None:
        logouts.append(True)


def device() -> DeviceInfo:
    """The device of the current request (empty outside DeviceMiddleware)."""
    return _device.get() or DeviceInfo()


def failed() -> StoreError | None:
    """The first store failure of this request, if any: later store calls of the request
    fail at once instead of waiting for the store's timeout again."""
    failures = _failures.get()
    return failures[0] if failures else None


@contextmanager
def recorded(swallow: bool = False) -> Iterator[None]:
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
