"""Secret keys, newest first: the newest signs and encrypts, every listed key verifies
and decrypts.

Each secret is stretched with HKDF-SHA256 into one subkey per purpose (cookie signatures,
encryption, CSRF tokens), so no raw secret does two jobs, and into a short public key ID
that travels with what the key makes, so verification picks its key directly instead of
trying each. Encryption is AES-256-GCM from ``cryptography`` with a random 96-bit nonce.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .digests import HmacSha256
from .errors import ConfigurationError
from .ids import b64decode_canonical, b64encode

MIN_KEY_LENGTH = 32
KID_LENGTH = 8  # characters of base64url: 48 bits, ample to tell a handful of keys apart
MAC_LENGTH = 22  # characters of base64url: 16 bytes (128-bit) truncated HMAC-SHA256
NONCE_BYTES = 12
PURPOSE_COOKIE = b"satchel/cookie-signature/v1"
PURPOSE_ENCRYPT = b"satchel/encryption/v1"
PURPOSE_CSRF = b"satchel/csrf/v1"


# base64url to the standard alphabet; '+', '/' and '=' (not base64url, or padding) become a
# character that strict decoding refuses.
def _derive(secret: bytes, purpose: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"satchel", info=purpose).derive(
        secret
    )


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    secret: bytes
    subkeys: dict[bytes, bytes] = field(default_factory=dict, compare=False)
    macs: dict[bytes, HmacSha256] = field(default_factory=dict, compare=False)

    def subkey(self, purpose: bytes) -> bytes:
        subkey = self.subkeys.get(purpose)
        if subkey is None:
            subkey = self.subkeys[purpose] = _derive(self.secret, purpose)
        return subkey

    def mac(self, purpose: bytes, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under the subkey of ``purpose``."""
        mac = self.macs.get(purpose)
        if mac is None:
            mac = self.macs[purpose] = HmacSha256(self.subkey(purpose))
        return mac.digest(message)


class Keyring:
    """A list of secret keys, newest first. Removing a key retires everything it made."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if isinstance(secret_keys, str):
            raise ConfigurationError(
                "secret_keys must be a list of strings, newest first, not a single string"
            )
        if not secret_keys:
            raise ConfigurationError(
                "secret_keys is empty: give at least one key of 32+ characters "
                "(generate one with `satchel keygen`)"
            )
        keys: list[_Key] = []
        for position, key in enumerate(secret_keys):
            if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(
                    f"secret_keys[{position}] is shorter than {MIN_KEY_LENGTH} characters; "
                    "generate a strong key with `satchel keygen`"
                )
            raw = key.encode("utf-8")
            keys.append(_Key(kid=b64encode(_derive(raw, b"satchel/key-id/v1", 6)), secret=raw))
        if len({k.kid for k in keys}) != len(keys):
            raise ConfigurationError("secret_keys lists the same key twice")
        self._keys = keys
        self._by_kid = {k.kid: k for k in keys}
        self._aeads: dict[str, AESGCM] = {}
        # the newest key's cipher, made on first use: every cookie-session write encrypts
        # with it, and the lookup through _aead cost more than the nonce did
        self._current_aead: AESGCM | None = None

    def _aead(self, key: _Key) -> AESGCM:
        aead = self._aeads.get(key.kid)
        if aead is None:
            aead = self._aeads[key.kid] = AESGCM(key.subkey(PURPOSE_ENCRYPT))
        return aead

    @property
    def current_kid(self) -> str:
        return self._keys[0].kid

    def knows(self, kid: str) -> bool:
        """Whether ``kid`` names a listed key."""
        return kid in self._by_kid

    @property
    def kids(self) -> list[str]:
        """Every listed key ID, newest first."""
        return [k.kid for k in self._keys]

    def sign(self, purpose: bytes, message: str) -> str:
        """``kid + mac`` for ``message`` under the newest key."""
        key = self._keys[0]
        return key.kid + self._mac(key, purpose, message)

    def verify(self, purpose: bytes, message: str, signature: str) -> bool:
        """True if ``signature`` is ``kid + mac`` of ``message`` under a listed key.

        The signature comes from a client: its exact format (8 + 22 characters, the MAC
        the canonical base64url of 16 bytes) is checked before anything else, and bytes
        are compared, so no value (non-ASCII, NUL, too long) can make this raise."""
        if len(signature) != KID_LENGTH + MAC_LENGTH or not message.isascii():
            return False
        key = self._by_kid.get(signature[:KID_LENGTH])
        if key is None:
            return False
        given = b64decode_canonical(signature[KID_LENGTH:])
        if given is None:
            return False
        return hmac.compare_digest(self._mac_bytes(key, purpose, message), given)

    def signed_by_current(self, signature: str) -> bool:
        return signature[:KID_LENGTH] == self._keys[0].kid

    def mac(self, purpose: bytes, message: bytes, kid: str | None = None) -> bytes | None:
        """Full HMAC-SHA256 of ``message`` under the subkey of ``kid`` (default: newest)."""
        key = self._keys[0] if kid is None else self._by_kid.get(kid)
        if key is None:
            return None
        return key.mac(purpose, message)

    def encrypt(self, plaintext: bytes, associated: bytes = b"") -> tuple[str, bytes]:
        """``(kid, nonce + ciphertext + tag)`` under the newest key's encryption subkey."""
        key = self._keys[0]
        aead = self._current_aead
        if aead is None:
            aead = self._current_aead = self._aead(key)
        nonce = os.urandom(NONCE_BYTES)
        return key.kid, nonce + aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, kid: str, blob: bytes, associated: bytes = b"") -> bytes | None:
        """The plaintext, or None if the key is not listed or anything was altered."""
        key = self._by_kid.get(kid)
        if key is None or len(blob) < NONCE_BYTES + 16:
            return None
        try:
            return self._aead(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)
        except InvalidTag:
            return None

    @staticmethod
    def _mac_bytes(key: _Key, purpose: bytes, message: str) -> bytes:
        """HMAC-SHA256 of ``message`` under ``key``'s subkey, truncated to 16 bytes."""
        return key.mac(purpose, message.encode("ascii"))[:16]

    @classmethod
    def _mac(cls, key: _Key, purpose: bytes, message: str) -> str:
        return b64encode(cls._mac_bytes(key, purpose, message))
