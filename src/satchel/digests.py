"""The SHA-256 and HMAC-SHA256 that satchel computes on every request, at the least cost.

Every request with a session verifies its cookie's HMAC and hashes its ID into a store
key. For inputs this short, OpenSSL's per-call setup is most of the cost: its one-shot
HMAC (``hmac.digest``) took about 21,000 instructions per call and ``hashlib.sha256``
about 7,000 (callgrind, CPython 3.11, OpenSSL 3). So:

- :func:`sha256` is CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before; a
  hash of a 43-byte ID in about 0.6x of OpenSSL's time), or ``hashlib.sha256`` where a
  build lacks it (FIPS builds may);
- :class:`HmacSha256` is HMAC-SHA256 as RFC 2104 defines it, keyed once: the hash states
  of the padded key are computed when the key is, and each MAC copies the two states and
  hashes the message (about a quarter of the one-shot HMAC's time). The tests check it
  against ``hmac.digest`` for keys and messages of every length that matters.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Protocol

_BLOCK = 64  # SHA-256's block size, in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Hash(Protocol):
    """What satchel uses of a hash object."""

    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hash: ...


def _fastest_sha256() -> Callable[[bytes], Hash]:
    for name in ("_sha2", "_sha256"):
        try:
            found: Callable[[bytes], Hash] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return found
    return hashlib.sha256  # pragma: no cover - CPython ships one of the above


#: ``sha256(data)``: CPython's own SHA-256 where it has one.
sha256: Callable[[bytes], Hash] = _fastest_sha256()


class HmacSha256:
    """HMAC-SHA256 under one key: ``HmacSha256(key).digest(message)`` equals
    ``hmac.digest(key, message, "sha256")``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = sha256(key.translate(_IPAD))
        self._outer = sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
