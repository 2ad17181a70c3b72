"""CSRF protection: a synchronizer token bound to the session, masked per response.

The secret is an HMAC (the keyring's CSRF subkey) of the session's public handle, so it is
stored nowhere, cannot be forged, and changes at login (which gives the session a new
handle). Before login the secret is bound instead to a short-lived random *pre-session*
cookie, so the login form is protected without a store record for every anonymous visit;
login deletes that cookie, so a token from before login is refused after it.

Each token handed out is ``pad || (pad XOR secret)`` with a fresh random pad (as Django
does), so no two responses carry the same bytes (BREACH); comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import parse_qs

from . import ids
from .keyring import PURPOSE_CSRF, Keyring

SECRET_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRESESSION_COOKIE = "satchel_csrf"
PRESESSION_MAX_AGE = 2 * 3600
MAX_FORM_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CSRFOptions:
    """``exempt``: path patterns (fnmatch, e.g. ``/webhooks/*``) never checked.
    ``allow_same_site``: accept unsafe requests marked ``Sec-Fetch-Site: same-site`` (from
    a sibling subdomain); refused by default. ``trusted_origins``: other origins allowed
    to post (``https://admin.example.com``)."""

    enabled: bool = True
    exempt: tuple[str, ...] = ()
    allow_same_site: bool = False
    trusted_origins: tuple[str, ...] = field(default_factory=tuple)

    def exempted(self, path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in self.exempt)


def secrets_for(keyring: Keyring, message: bytes) -> list[bytes]:
    """The secret under every listed key (a token made before a rotation still checks)."""
    out = []
    for kid in keyring.kids:
        mac = keyring.mac(PURPOSE_CSRF, message, kid)
        if mac is not None:
            out.append(mac)
    return out


def session_message(handle: str) -> bytes:
    return b"session:" + handle.encode()


def presession_message(value: str) -> bytes:
    return b"pre:" + value.encode()


def new_presession() -> str:
    return secrets.token_urlsafe(24)


def mask(secret: bytes) -> str:
    pad = os.urandom(SECRET_BYTES)
    return ids.b64encode(pad + bytes(a ^ b for a, b in zip(pad, secret, strict=True)))


def unmask(token: str) -> bytes | None:
    raw = ids.b64decode_canonical(token.strip()) if len(token) < 200 else None
    if raw is None or len(raw) != 2 * SECRET_BYTES:
        return None
    pad, masked = raw[:SECRET_BYTES], raw[SECRET_BYTES:]
    return bytes(a ^ b for a, b in zip(pad, masked, strict=True))


def token_matches(token: str | None, candidates: Iterable[bytes]) -> bool:
    if not token:
        return False
    secret = unmask(token)
    if secret is None:
        return False
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(secret, candidate)
    return matched


def token_from_form(content_type: str, body: bytes) -> str | None:
    """The ``csrf_token`` field of an urlencoded or multipart form body."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(FORM_FIELD)
        except ValueError:
            return None
        return values[0] if values else None
    if kind == "multipart/form-data":
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            return None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == FORM_FIELD:
                payload = part.get_payload(decode=True)
                return payload.decode("latin-1") if isinstance(payload, bytes) else None
    return None


def origin_refusal(
    options: CSRFOptions, headers: dict[str, str], own_origin: str | None
) -> str | None:
    """Why the request's browser metadata marks it cross-site, or None."""
    site = headers.get("sec-fetch-site")
    if site == "cross-site":
        return "cross-site request (Sec-Fetch-Site: cross-site)"
    if site == "same-site" and not options.allow_same_site:
        return "request from another site of the same domain (Sec-Fetch-Site: same-site)"
    origin = headers.get("origin")
    if origin is not None:
        allowed = {o.rstrip("/") for o in options.trusted_origins}
        if own_origin:
            allowed.add(own_origin)
        if origin == "null" or origin.rstrip("/") not in allowed:
            return f"foreign Origin {origin!r}"
    return None
