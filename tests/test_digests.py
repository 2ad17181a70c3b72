"""satchel.digests: its SHA-256 and HMAC-SHA256 equal the standard library's."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from satchel.digests import HmacSha256, sha256

LENGTHS = [0, 1, 31, 32, 43, 55, 56, 63, 64, 65, 127, 128, 129, 1000]


@pytest.mark.parametrize("length", LENGTHS)
def test_sha256_is_sha256(length: int) -> None:
    data = os.urandom(length)
    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sha256(data).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("key_length", LENGTHS)
@pytest.mark.parametrize("message_length", [0, 1, 43, 64, 200])
def test_hmac_is_rfc_2104_hmac(key_length: int, message_length: int) -> None:
    key, message = os.urandom(key_length), os.urandom(message_length)
    mac = HmacSha256(key)
    assert mac.digest(message) == hmac.digest(key, message, "sha256")
    # keyed once, any number of messages: no state carries from one MAC to the next
    other = os.urandom(message_length + 1)
    assert mac.digest(other) == hmac.digest(key, other, "sha256")
    assert mac.digest(message) == hmac.digest(key, message, "sha256")


def test_rfc_4231_test_case_2() -> None:
    mac = HmacSha256(b"Jefe").digest(b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
