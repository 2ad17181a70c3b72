"""Session IDs, their store keys and public handles.

An ID is 32 bytes (256 bits) from ``os.urandom`` (what :mod:`secrets` uses), base64url
without padding: 43 characters.
Stores never see it: they key records by :func:`store_key`, the SHA-256 of the ID in hex.
Logs show at most :func:`log_ref`, a short prefix of that hash.
"""

from __future__ import annotations

import binascii
import os
import re

from .digests import sha256

ID_BYTES = 32
ID_LENGTH = 43  # len(base64url(32 bytes)) without padding
HANDLE_BYTES = 9  # 72 bits: unguessable, short enough for a UI
HANDLE_LENGTH = 12  # len(base64url(9 bytes)): no padding, no spare bits
_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_HANDLE_RE = re.compile(r"[A-Za-z0-9_-]{12}")


_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/***")
# The last character of a canonical encoding leaves its unused low bits at zero:
# 4 bits when 2 characters remain (one byte), 2 bits when 3 remain (two bytes).
_LAST_OF_2 = frozenset("AQgw")
_LAST_OF_3 = frozenset("AEIMQUYcgkosw048")


def b64encode(raw: bytes) -> str:
    """Unpadded base64url."""
    # two replace() calls cost less than translate(), which looks every byte up (about
    # 2,000 instructions on a cookie session's value; callgrind); the newline goes with
    # the padding (cheaper than the keyword that leaves it out)
    encoded = binascii.b2a_base64(raw).replace(b"+", b"-").replace(b"/", b"_")
    return encoded.rstrip(b"=\n").decode()


def b64decode_canonical(text: str) -> bytes | None:
    """Decode unpadded base64url, or None if ``text`` is not the canonical encoding (any
    character outside the alphabet, padding, or nonzero spare bits), in one C call: it
    reads every cookie value and signature."""
    remainder = len(text) % 4
    if remainder == 2:
        if text[-1] not in _LAST_OF_2:
            return None
        padding = b"=="
    elif remainder == 3:
        if text[-1] not in _LAST_OF_3:
            return None
        padding = b"="
    elif remainder == 1:
        return None
    else:
        padding = b""
    try:
        standard = text.encode("ascii").translate(_FROM_URLSAFE) + padding
        return binascii.a2b_base64(standard, strict_mode=True)
    except ValueError:  # (binascii.Error, UnicodeError too) outside the alphabet, or not ASCII
        return None


def new_session_id() -> str:
    """A fresh 256-bit session ID: ``secrets.token_urlsafe``'s bytes and text, without
    its three Python calls (about 3,000 instructions each time)."""
    return b64encode(os.urandom(ID_BYTES))


def is_session_id(value: str) -> bool:
    """True only for the exact format :func:`new_session_id` produces: 43 characters of
    base64url that are the canonical encoding of 32 bytes."""
    return (
        len(value) == ID_LENGTH and value[-1] in _LAST_OF_3 and _ID_RE.fullmatch(value) is not None
    )


def store_key(session_id: str) -> str:
    """The key a store files a session under: SHA-256 of the ID, hex."""
    return sha256(session_id.encode("ascii")).hexdigest()


def user_key(user_id: str) -> str:
    """The key a store files a user's index under: SHA-256 of the user ID (UTF-8), hex.
    A user ID may be any string (an e-mail, with characters no key or file name allows),
    so stores never use it raw; existing indexes (Redis, Memcached, files) are keyed so."""
    return sha256(user_id.encode("utf-8")).hexdigest()


def is_store_key(value: str) -> bool:
    return _KEY_RE.fullmatch(value) is not None


def log_ref(key: str) -> str:
    """What logs may show of a session: 8 hex digits of its store key."""
    return key[:8]


def new_handle() -> str:
    """A public handle: shown in UIs and used to revoke a session, never usable as a cookie."""
    return b64encode(os.urandom(HANDLE_BYTES))  # (as new_session_id)


def is_handle(value: object) -> bool:
    """True only for the exact format :func:`new_handle` produces (12 base64url
    characters), so junk a client sends as a "handle" is refused before any store call."""
    return isinstance(value, str) and _HANDLE_RE.fullmatch(value) is not None
