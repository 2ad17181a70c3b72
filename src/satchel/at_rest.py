"""Encryption of session values at rest (``encrypt_at_rest=True``).

An encrypted value is ``"!" + key ID + "." + base64url(nonce | ciphertext | tag)``. No JSON
text starts with ``"!"``, so values stored before encryption was turned on still load,
and are encrypted when next written. The store key and the value's name are bound as
associated data: a value cannot be moved to another session or another key.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import ids
from .keyring import Keyring


class AtRestCipher:
    """Seals values before they reach a store and opens them after; with ``enabled``
    False it only opens (values written while encryption was on stay readable)."""

    def __init__(self, keyring: Keyring | None, enabled: bool) -> None:
        self.keyring, self.enabled = keyring, enabled and keyring is not None

    def seal(self, key: str, values: Mapping[str, str]) -> dict[str, str]:
        keyring = self.keyring
        if not self.enabled or keyring is None:
            return dict(values)
        sealed = {}
        for name, text in values.items():
            kid, blob = keyring.encrypt(text.encode(), f"{key}\0{name}".encode())
            sealed[name] = f"!{kid}.{ids.b64encode(blob)}"
        return sealed

    def open(self, key: str, values: Mapping[str, str]) -> Mapping[str, str]:
        """The plain values. Raises ``ValueError`` for one that cannot be decrypted."""
        keyring = self.keyring
        if keyring is None:
            return values
        for text in values.values():  # (a loop: any() of a generator costs more)
            if text.startswith("!"):
                break
        else:
            return values
        plain = {}
        for name, text in values.items():
            if text.startswith("!"):
                kid, _, body = text[1:].partition(".")
                blob = ids.b64decode_canonical(body)
                raw = (
                    None if blob is None else keyring.decrypt(kid, blob, f"{key}\0{name}".encode())
                )
                if raw is None:
                    raise ValueError("an encrypted session value cannot be decrypted")
                text = raw.decode()
            plain[name] = text
        return plain
