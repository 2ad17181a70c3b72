"""A failed CSRF check, as every path answers it.

:class:`CSRFFailure` is what :meth:`satchel.request.RequestContext.csrf_check` finds: a
machine-readable ``reason``, a one-line ``message``, and whether the request came over
plain http to a host other than loopback while the cookies are ``Secure`` -- the
browser then dropped them, and the usual advice ("reload the form") cannot help.
:func:`default_answer` is the 403 every path sends unless the app replaced it
(``on_csrf_failure``): a small HTML page for browsers, JSON for API clients.

The plain-http detection (:func:`insecure_transport`) also warns once per process when a
Secure cookie is set on such a request (:func:`warn_insecure_transport`).
"""

from __future__ import annotations

import html
import ipaddress
import json
import threading
from dataclasses import dataclass
from typing import Literal

from .log import logger
from .printable import printable

Reason = Literal["token_missing", "token_invalid", "origin", "fetch_site"]

JSON_TYPE = "application/json"
FAILURE_KEY = "satchel.csrf_failure"
"""Where an ``on_csrf_failure`` app finds the :class:`CSRFFailure`: in the ASGI scope or
the WSGI environ."""


@dataclass(frozen=True, slots=True)
class CSRFFailure:
    """Why a request failed the CSRF check."""

    reason: Reason
    message: str
    insecure_transport: bool = False
    """The request came over plain http to a non-loopback host while the session and
    pre-session cookies are Secure: the browser never stored them."""

    @property
    def advice(self) -> str:
        """What the person should do, in one or two sentences."""
        if self.insecure_transport:
            return INSECURE_ADVICE
        if self.reason in ("origin", "fetch_site"):
            return (
                "The request came from another site. If you meant to send it, open this "
                "site's own page and submit the form there."
            )
        return (
            "Go back, reload the form and submit it again. If you logged out or logged in "
            "in another tab, the form you sent belonged to that old session."
        )

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "error": "csrf",
            "reason": self.reason,
            "message": self.message,
        }
        if self.insecure_transport:
            out["insecure_transport"] = True
            out["advice"] = INSECURE_ADVICE
        return out


INSECURE_ADVICE = (
    "This page was served over plain http to a host other than localhost, and the "
    "session cookies are Secure: the browser drops Secure cookies on plain http, so the "
    "session never reached the server. In development set cookie_secure=False (or use "
    "http://localhost or http://127.0.0.1); in production serve the site over https."
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>403 Forbidden: form not accepted</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; \
padding: 0 1rem; line-height: 1.5">
<h1>Forbidden: this form could not be accepted</h1>
<p>{advice}</p>
<p><small>Reason: {message} ({reason})</small></p>
</body></html>
"""


def wants_json(accept: str, content_type: str) -> bool:
    """Whether the client is an API client: it asks for JSON (and not HTML), or sent
    JSON and asked for nothing in particular."""
    accept = accept.lower()
    if "text/html" in accept:
        return False
    if JSON_TYPE in accept or "+json" in accept:
        return True
    return (not accept or accept.strip() == "*/*") and content_type.lower().startswith(JSON_TYPE)


def default_answer(
    failure: CSRFFailure, accept: str, content_type: str = ""
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The default 403: status, headers and body (never cached)."""
    if wants_json(accept, content_type):
        body = json.dumps(failure.as_json()).encode()
        kind = "application/json"
    else:
        body = _PAGE.format(
            advice=html.escape(failure.advice),
            message=html.escape(failure.message),
            reason=failure.reason,
        ).encode()
        kind = "text/html; charset=utf-8"
    headers = [
        ("content-type", kind),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        ("vary", "Accept"),
    ]
    return 403, headers, body


# -- plain http to a non-loopback host -----------------------------------------------------------


def is_loopback(host: str | None) -> bool:
    """``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ::1, with or without a port.
    Browsers keep Secure cookies on http to these hosts only."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_transport(secure_cookie: bool, scheme: str, host: str | None) -> bool:
    """Whether a Secure cookie set on this request would be dropped by the browser:
    plain http (or ws) to a host that is not loopback."""
    return secure_cookie and scheme.lower() in ("http", "ws") and not is_loopback(host)


_warned = threading.Event()


def warned_insecure_transport() -> bool:
    """Whether :func:`warn_insecure_transport` has already warned in this process."""
    return _warned.is_set()


def warn_insecure_transport(host: str | None, setting: str = "cookie_secure") -> None:
    """Log, once per process, that Secure cookies are set over plain http. ``setting``:
    the name that turns Secure off on the caller's path (Django's is
    ``SESSION_COOKIE_SECURE``)."""
    if _warned.is_set():
        return
    _warned.set()
    logger.warning(
        "a Secure session cookie was set on a plain-http request to %r: browsers drop "
        "Secure cookies on http to any host but localhost/127.0.0.1/::1, so the session "
        "and CSRF checks will fail. Development: set %s=False (or browse "
        "http://localhost); production: serve over https (behind a proxy, list it in "
        "trusted_proxies so X-Forwarded-Proto is believed)",
        printable((host or "")[:100]),
        setting,
    )
