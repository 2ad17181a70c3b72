"""Device-bound sessions under Django: :class:`SessionMiddleware`, Django's own session
middleware plus the DBSC rules of every other path (:mod:`satchel.dbsc.protocol`).

Put it in ``MIDDLEWARE`` in place of ``django.contrib.sessions.middleware.SessionMiddleware``
(with ``SATCHEL["dbsc"]`` off it does exactly what Django's does). With it on, it answers
the browser's registration and refresh requests itself, refuses a bound session's request
that carries no fresh bound cookie before any view runs, and adds the offer to bind and the
bound cookie to the responses that need them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from . import missing_framework

try:
    from django.conf import settings as django_settings
    from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
    from django.http import HttpResponse
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from .. import option_schema as schema
from ..backend import DELETE
from ..cookies import CookieOptions
from ..csrf import CSRFOptions
from ..dbsc import protocol
from ..dbsc.options import DeviceBindingOptions
from ..origin import parse_trusted
from ..request import RequestContext, RequestPolicy
from .django_config import options, runtime

_CONTEXT = "_satchel_device_context"
_REFUSED = object()


@cache
def _policy() -> RequestPolicy | None:
    """The request policy DBSC needs, from ``SATCHEL`` and Django's cookie settings (once
    per process); None when ``SATCHEL["dbsc"]`` is off."""
    opts = options()[1]
    device = DeviceBindingOptions(**schema.present(opts, DeviceBindingOptions))
    if not device.enabled:
        return None
    samesite = str(django_settings.SESSION_COOKIE_SAMESITE or "lax").lower()
    cookie = CookieOptions(
        name=django_settings.SESSION_COOKIE_NAME,
        secure=True,
        samesite=samesite if samesite in ("lax", "strict", "none") else "lax",  # type: ignore[arg-type]
    )
    return RequestPolicy(
        csrf=CSRFOptions(enabled=False),  # Django's CsrfViewMiddleware does CSRF
        trusted_proxies=parse_trusted(opts.get("trusted_proxies", ())),
        cookie=cookie,
        presession_cookie=cookie,
        device=device,
    )


def _context(request: Any, policy: RequestPolicy) -> RequestContext:
    store = request.session
    session = store._get_session()  # opened now: its binding decides what happens
    meta = request.META
    headers = {
        k[5:].replace("_", "-").lower(): str(v) for k, v in meta.items() if k.startswith("HTTP_")
    }
    ctx = RequestContext(
        runtime()[1],
        policy,
        session,
        request.method or "GET",
        request.path_info,
        headers,
        meta.get("REMOTE_ADDR"),
        request.scheme or "http",
        policy.cookie_transport,
        headers.get("cookie", ""),
    )
    ctx.ticket = store.session_key  # None when the request named no live session
    ctx.mount = str(meta.get("SCRIPT_NAME", "") or "")
    return ctx


def _response(answer: protocol.Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    _add_headers(response, answer.headers)
    return response


def _add_headers(response: HttpResponse, lines: list[tuple[str, str]]) -> None:
    for name, value in lines:
        if name == "set-cookie":
            response.cookies.load(value)  # (a cookie of ours: one name, its attributes)
        else:
            response[name] = value


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware`` with device-bound sessions (``SATCHEL["dbsc"]``)."""

    def process_request(self, request: Any) -> HttpResponse | None:
        super().process_request(request)
        policy = _policy()
        if policy is None:
            return None
        ctx = _context(request, policy)
        setattr(request, _CONTEXT, ctx)
        answer = ctx.device_answer()
        if answer is None:
            return None
        if answer.commit:  # an endpoint changed the session's binding: Django saves it
            request.session.modified = True
        else:
            setattr(request, _CONTEXT, _REFUSED)  # a refusal carries nothing of the session
        return _response(answer)

    def process_response(self, request: Any, response: HttpResponse) -> HttpResponse:
        if getattr(request, _CONTEXT, None) is _REFUSED:
            return response  # Django saves nothing, sets no cookie (SESSION_SAVE_EVERY_REQUEST)
        response = super().process_response(request, response)  # the session is saved
        ctx: RequestContext | None = getattr(request, _CONTEXT, None)
        if ctx is None:
            return response
        logged_out = ctx.session.meta is None and request.session.session_key is None
        _add_headers(response, protocol.response_lines(ctx, DELETE if logged_out else None))
        return response
