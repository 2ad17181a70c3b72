"""Crashes the fuzz targets found (issue 14, fuzz/), kept as regression tests. Each parser
takes a ``str``; these hold code points no HTTP server hands over in a header (a lone
surrogate), yet the parsers' contract is to refuse, not to raise something else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from satchel.csrf import atoken_from_form, token_from_form
from satchel.dbsc.proof import InvalidProof, read_refresh, read_registration

from .dbsc_device import Device

# found by dbsc_registration and dbsc_refresh: PyJWT encodes the token as UTF-8 and raised
# UnicodeEncodeError, not an InvalidProof
PROOFS = ["eyJ0eXAiOiJkYnNjK2p3dCJ9\udcff.e30.sig", "a.b\ud800.c", "\udc80.\udc80.\udc80"]


@pytest.mark.parametrize("proof", PROOFS)
def test_a_proof_that_is_not_utf8_is_an_invalid_proof(proof: str) -> None:
    with pytest.raises(InvalidProof):
        read_registration(proof)
    with pytest.raises(InvalidProof):
        read_refresh(proof, Device().jwk)


# found by form_body and form_body_async: python-multipart encodes the Content-Type's
# parameters as Latin-1 and raised UnicodeEncodeError; such a body has no token
CONTENT_TYPES = [
    "multipart/form-data; boundary=\udc8c",
    "multipart/form-data; boundary=x; a=\u20ac",
    "multipart/form-data; \udcff=1; boundary=x",
]
BODY = b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\nabc\r\n--x--\r\n'


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_content_type_beyond_latin1_finds_no_token(content_type: str) -> None:
    assert token_from_form(content_type, BODY) is None

    async def chunks() -> AsyncIterator[bytes]:
        yield BODY

    assert asyncio.run(atoken_from_form(content_type, chunks())) == (None, BODY)
