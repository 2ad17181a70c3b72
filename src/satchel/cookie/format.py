"""The wire format of cookie sessions.

All parts are base64url without padding, checked canonical:

* encrypted (default): ``e1.<kid>.<nonce|ciphertext|tag>``, AES-256-GCM, the version, key
  ID and cookie name bound as associated data;
* signed only (``signed=True``, readable by the user): ``s1.<kid>.<payload>.<mac>``, HMAC-
  SHA256 over the version, key ID, payload and cookie name.

A ``z`` after the version (``e1z``, ``s1z``) marks a zlib-compressed payload; compression is
off by default (compressing secrets beside attacker-influenced data leaks them, as in
CRIME and BREACH). The payload is JSON: the data (encoded values by key) and the metadata,
including the creation time, last-seen time and absolute deadline, so the idle and absolute
timeouts are inside the authenticated payload and no edit can extend a session.
"""

from __future__ import annotations

import hmac
import zlib
from dataclasses import dataclass

from .. import _json
from ..errors import CorruptRecord
from ..ids import b64decode_canonical, b64encode
from ..keyring import KID_LENGTH, PURPOSE_COOKIE, Keyring
from ..record import Meta

MAX_PAYLOAD_BYTES = 64 * 1024  # refuse to inflate more than this (zip bombs)
_VERSIONS = {"e1": (True, False), "e1z": (True, True), "s1": (False, False), "s1z": (False, True)}


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded, authenticated cookie."""

    data: dict[str, str]
    meta: Meta
    kid: str


class CookieFormat:
    """Encodes and authenticates cookie session values for one cookie name."""

    def __init__(self, keyring: Keyring, cookie_name: str, signed: bool, compress: bool) -> None:
        self.keyring, self.cookie_name = keyring, cookie_name
        self.signed, self.compress = signed, compress
        self._version = ("s1" if signed else "e1") + ("z" if compress else "")
        # the associated data of every listed key in our own version, made once (a cookie
        # of another version, e.g. compressed while we no longer compress, makes its own)
        self._own_associated = {kid: self._associated(self._version, kid) for kid in keyring.kids}

    def encode(self, data: dict[str, str], meta: Meta) -> str:
        keyring = self.keyring
        # metadata by position; an unbound session's cookie ends at the version, as 0.1's:
        # trailing absent fields (binding, authentication) are left out. (A slice of the
        # tuple, which msgspec writes as the same array as a list: no list to build.)
        end = len(meta)
        while end > _OLDEST_FIELDS and meta[end - 1] is None:
            end -= 1
        raw = _json.dumps_bytes({"d": data, "m": meta if end == len(meta) else meta[:end]})
        if self.compress:
            raw = zlib.compress(raw)
        version = self._version
        if self.signed:
            kid = keyring.current_kid
            body = b64encode(raw)
            mac = keyring.mac(PURPOSE_COOKIE, self._signed_message(version, kid, body))
            assert mac is not None
            return f"{version}.{kid}.{body}.{b64encode(mac)}"
        kid, blob = keyring.encrypt(raw, self._own_associated[keyring.current_kid])
        return f"{version}.{kid}.{b64encode(blob)}"

    def _associated(self, version: str, kid: str) -> bytes:
        return f"{version}.{kid}.{self.cookie_name}".encode()

    def _signed_message(self, version: str, kid: str, body: str) -> bytes:
        return f"{version}.{kid}.{body}.{self.cookie_name}".encode()

    def authentic(self, value: str) -> tuple[bytes, bool, str] | None:
        """The raw payload of an authentic cookie value, whether it is compressed, and
        its key ID; None for anything else."""
        keyring = self.keyring
        # Every part is checked for its exact format (base64url, canonical) before it is
        # used: the value comes from a client, and nothing it holds may make this raise.
        parts = value.split(".")
        mode = _VERSIONS.get(parts[0])
        if mode is None or len(parts) != (3 if mode[0] else 4) or len(parts[1]) != KID_LENGTH:
            return None
        encrypted, compressed = mode
        version, kid = parts[0], parts[1]
        if not keyring.knows(kid):  # (every listed key ID is canonical base64url)
            return None
        if encrypted:
            blob = b64decode_canonical(parts[2])
            if blob is None:
                return None
            associated = (
                self._own_associated[kid]
                if version == self._version
                else self._associated(version, kid)
            )
            raw = keyring.decrypt(kid, blob, associated)
        else:
            raw, mac = b64decode_canonical(parts[2]), b64decode_canonical(parts[3])
            if raw is None or mac is None:
                return None
            expected = keyring.mac(PURPOSE_COOKIE, self._signed_message(version, kid, parts[2]))
            if expected is None or not hmac.compare_digest(mac, expected):
                return None
        return None if raw is None else (raw, compressed, kid)


_OLDEST_FIELDS = 10  # 0.1's metadata: up to the version (no binding, no authentication)


def read_payload(raw: bytes, compressed: bool, kid: str) -> Payload | None:
    """The payload of an authenticated cookie, or None if it is malformed in any way
    (too deep, wrongly typed metadata, values that are not strings)."""
    try:
        if compressed:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(raw, MAX_PAYLOAD_BYTES)
            if inflater.unconsumed_tail:
                return None
        doc = _json.loads(raw)
        fields = doc["m"]
        if type(fields) is not list or not _OLDEST_FIELDS <= len(fields) <= len(Meta._fields):
            return None
        data, meta = doc["d"], Meta.from_fields(fields)
    except (ValueError, KeyError, TypeError, RecursionError, zlib.error, CorruptRecord):
        return None
    if type(data) is not dict:  # (JSON decodes to exact types)
        return None
    for value in data.values():  # (a loop: all() of a generator costs more)
        if type(value) is not str:
            return None
    return Payload(data, meta, kid)
