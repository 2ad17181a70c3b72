"""How a session's token travels between client and server: in the session cookie
(browsers), or as a bearer token (API and mobile clients); and the one rule for the headers
of a response that carries one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .backend import TokenAction
from .cookies import TOMBSTONE_SUFFIX, CookieOptions, cookie_values

TOKEN_HEADER = "x-session-token"  # noqa: S105 - a header name
"""The response header that carries a bearer session's token."""
MAX_BEARER_BYTES = 8192
"""A longer ``Authorization`` value is no token of ours (ours are 114 characters)."""


@dataclass(frozen=True, slots=True)
class CookieTransport:
    """The session token in the session cookie (browsers)."""

    cookie: CookieOptions
    checks_csrf = True
    vary = "Cookie"

    def tokens(self, headers: dict[str, str]) -> list[str]:
        return self.tokens_in(headers.get("cookie", ""), "")

    def tokens_in(self, cookie: str, authorization: str) -> list[str]:
        """The tokens in the request's ``Cookie`` and ``Authorization`` values."""
        name = self.cookie.name
        return cookie_values(cookie, name) if name in cookie else []

    def render(self, action: TokenAction) -> list[tuple[str, str]]:
        cookie = self.cookie
        token = action.token
        line = cookie.delete_header() if token is None else cookie.set_header(token, action.max_age)
        if action.logout_marker is None:  # (no comprehension: a login makes one line)
            return [("set-cookie", line)]
        marker = replace(cookie, name=cookie.name + TOMBSTONE_SUFFIX, persistent=False)
        return [("set-cookie", line), ("set-cookie", marker.set_header(*action.logout_marker))]


@dataclass(frozen=True, slots=True)
class HeaderTransport:
    """The session token in ``Authorization: Bearer <token>``, answered in the
    ``X-Session-Token`` response header (API and mobile clients). Never a query string,
    never a cookie: a browser cannot attach it to a cross-site request, so requests on
    it need no CSRF token."""

    checks_csrf = False
    vary = "Authorization"

    def tokens(self, headers: dict[str, str]) -> list[str]:
        return self.tokens_in("", headers.get("authorization", ""))

    def tokens_in(self, cookie: str, authorization: str) -> list[str]:
        """The tokens in the request's ``Cookie`` and ``Authorization`` values."""
        if not authorization:
            return []
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        return (
            [token]
            if scheme.lower() == "bearer" and token and len(token) <= MAX_BEARER_BYTES
            else []
        )

    def render(self, action: TokenAction) -> list[tuple[str, str]]:
        return [(TOKEN_HEADER, action.token or "")]


Transport = CookieTransport | HeaderTransport


HEADER = HeaderTransport()


_CACHE_DIRECTIVES = frozenset(
    {"cache-control", "surrogate-control", "x-accel-expires", "edge-control", "expires"}
)
"""Dropped from a response that carries a token, with every ``*CDN-Cache-Control`` (RFC
9213): caches and CDNs obey these (nginx's ``X-Accel-Expires``, Akamai's
``Edge-Control``, ``Surrogate-Control``) instead of ``Cache-Control``, and may ignore
``Vary``."""


def session_headers(
    headers: Iterable[tuple[str, str]], varies_on: Iterable[str]
) -> list[tuple[str, str]]:
    """``headers`` with ``Cache-Control: no-store`` replacing any caching policy (a
    response that carries a session token must never be cached) and the request headers
    the answer depends on (``Cookie``, ``Authorization``) in ``Vary``. The one place this
    rule is written: every path (ASGI, WebSocket, WSGI, Flask, Django) goes through it."""
    out: list[tuple[str, str]] = []
    varies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _CACHE_DIRECTIVES or lower.endswith("cdn-cache-control"):
            continue
        if lower == "vary":
            varies.extend(v.strip() for v in value.split(",") if v.strip())
            continue
        out.append((name, value))
    seen = {v.lower() for v in varies}
    if "*" not in seen:
        for vary in varies_on:
            if vary.lower() not in seen:
                seen.add(vary.lower())
                varies.append(vary)
    out.append(("vary", ", ".join(varies)))
    out.append(("cache-control", "no-store"))
    return out


def with_vary(headers: Iterable[tuple[str, str]], vary: str) -> list[tuple[str, str]]:
    """``headers`` with ``vary`` in ``Vary``: a response that read the session depends on
    the header that carried it, though it sets nothing (as Flask's own sessions say)."""
    out: list[tuple[str, str]] = []
    varies: list[str] = []
    for name, value in headers:
        if name.lower() == "vary":
            varies.extend(v.strip() for v in value.split(",") if v.strip())
        else:
            out.append((name, value))
    if not {v.lower() for v in varies} & {"*", vary.lower()}:
        varies.append(vary)
    return [*out, ("vary", ", ".join(varies))]


def with_session_headers(
    headers: Iterable[tuple[str, str]], lines: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``headers`` plus the session's ``lines`` (cookies, a bearer token), under the rule
    of :func:`session_headers`."""
    return [*session_headers(headers, _varies_on(lines)), *lines]


def _varies_on(lines: Sequence[tuple[str, str]]) -> list[str]:
    """The request headers a response carrying these session lines depends on: ``Cookie``
    for a cookie, ``Authorization`` for a bearer token (other lines, such as DBSC's or
    ``Clear-Site-Data``, add none of their own)."""
    varies = [_VARIES_ON[name] for name, _ in lines if name in _VARIES_ON]
    return varies or ["Cookie"]


_VARIES_ON = {"set-cookie": "Cookie", TOKEN_HEADER: "Authorization"}


# The same rules on an ASGI response's raw header pairs: the app's headers stay bytes; only
# a Vary it set is decoded, to be merged.
_RAW_CACHE_DIRECTIVES = frozenset(name.encode() for name in _CACHE_DIRECTIVES)
_NO_STORE = (b"cache-control", b"no-store")
_VARY_COOKIE = (b"vary", b"Cookie")


def raw_session_headers(
    raw: Iterable[tuple[bytes, bytes]], lines: Sequence[tuple[str, str]]
) -> list[tuple[bytes, bytes]]:
    """:func:`with_session_headers` on raw (byte) header pairs."""
    out: list[tuple[bytes, bytes]] = []
    varies: list[tuple[str, str]] = []
    for pair in raw:
        lower = pair[0].lower()
        if lower in _RAW_CACHE_DIRECTIVES or lower.endswith(b"cdn-cache-control"):
            continue
        if lower == b"vary":
            varies.append(("vary", pair[1].decode("latin-1")))
            continue
        out.append(pair)
    if not varies and len(lines) == 1 and lines[0][0] == "set-cookie":  # a login, a write
        out.append(_VARY_COOKIE)
        out.append(_NO_STORE)
        out.append((b"set-cookie", lines[0][1].encode("latin-1")))
        return out
    varies_on = _varies_on(lines)
    if not varies and len(set(varies_on)) == 1:  # the app set no Vary: the usual answer
        out.append((b"vary", varies_on[0].encode("latin-1")))
        out.append(_NO_STORE)
    else:
        for name, value in session_headers(varies, varies_on):
            out.append((name.encode("latin-1"), value.encode("latin-1")))
    for name, value in lines:
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


def raw_with_vary(raw: Iterable[tuple[bytes, bytes]], vary: str) -> list[tuple[bytes, bytes]]:
    """:func:`with_vary` on raw (byte) header pairs."""
    out: list[tuple[bytes, bytes]] = []
    varies: list[tuple[str, str]] = []
    for pair in raw:
        if pair[0].lower() == b"vary":
            varies.append(("vary", pair[1].decode("latin-1")))
        else:
            out.append(pair)
    if not varies:
        out.append((b"vary", vary.encode("latin-1")))
        return out
    for name, value in with_vary(varies, vary):
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


RETRY_AFTER = ("retry-after", "5")
"""Sent with the 503 every path answers when the store is down."""


def plain_headers(body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The headers of a plain-text answer satchel writes itself (the 503 when the store
    is down, the 403 of a failed CSRF check): never cached."""
    return [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        *extra,
    ]


def header_map(pairs: Any) -> dict[str, str]:
    """Lower-case header names to values; repeated headers joined (cookies with '; ')."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            out[name] += "; " if name == "cookie" else ", "
            out[name] += value
        else:
            out[name] = value
    return out
