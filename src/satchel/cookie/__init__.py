"""Cookie sessions (``cookie://``): the session data lives in the browser, encrypted.

What the cookie store cannot do (said plainly in docs/stores.md): list a user's sessions
on the server, or merge concurrent writes per key (the last response's cookie wins).
Revocation works through per-user markers in a server-side store
(:mod:`satchel.cookie.revocation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from .backend import MAX_COOKIE_BYTES, TOMBSTONE_SUFFIX, CookieBackend
from .format import MAX_PAYLOAD_BYTES, Payload

__all__ = [
    "MAX_COOKIE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "TOMBSTONE_SUFFIX",
    "CookieBackend",
    "CookieStore",
    "Payload",
    "from_url",
]


@dataclass(frozen=True, slots=True)
class CookieStore:
    """Choose cookie sessions: ``store=CookieStore()`` or ``store="cookie://"``.

    ``signed=True`` makes readable, signed-only cookies; ``compress=True`` zlib-compresses
    the payload (only where no secret sits beside attacker-influenced data).
    """

    signed: bool = False
    compress: bool = False


def from_url(url: str) -> CookieStore:
    """``cookie://``, ``cookie://?signed=1``, ``cookie://?compress=1``; any other
    parameter is refused, naming the valid ones."""
    from ..stores.registry import refuse_unknown_params

    refuse_unknown_params(url, ("signed", "compress"))
    query = parse_qs(urlsplit(url).query)

    def flag(name: str) -> bool:
        return query.get(name, ["0"])[0].lower() in ("1", "true", "yes")

    return CookieStore(signed=flag("signed"), compress=flag("compress"))
