"""The checks of a browser's DBSC proofs (``Secure-Session-Response`` JWTs), without a
browser: every malformed, mis-signed, mis-typed or replayed-with-another-key proof is one
clean :class:`InvalidProof`, never another exception."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from satchel.dbsc import InvalidProof, read_refresh, read_registration
from satchel.dbsc.proof import thumbprint

EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any) -> dict[str, Any]:
    algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    return dict(json.loads(algorithm.to_jwk(key.public_key())))


def proof(
    key: Any = EC_KEY,
    challenge: Any = "chal-1",
    alg: str = "ES256",
    jwk: Any = "auto",
    typ: str | None = "dbsc+jwt",
    **payload: Any,
) -> str:
    headers: dict[str, Any] = {}
    if typ is not None:
        headers["typ"] = typ
    if jwk == "auto":
        jwk = public_jwk(key)
    if jwk is not None:
        headers["jwk"] = jwk
    return jwt.encode({"jti": challenge, **payload}, key, algorithm=alg, headers=headers)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(("key", "alg"), [(EC_KEY, "ES256"), (RSA_KEY, "RS256")])
def test_a_registration_and_its_refreshes_are_accepted(key: Any, alg: str) -> None:
    registration = read_registration(proof(key, alg=alg))
    assert registration.challenge == "chal-1"
    assert registration.thumbprint == thumbprint(public_jwk(key))
    assert "d" not in registration.jwk
    refresh = proof(key, "chal-2", alg=alg, jwk=None)
    assert read_refresh(refresh, registration.jwk) == "chal-2"


def test_a_refresh_signed_by_another_key_is_refused() -> None:
    bound = read_registration(proof()).jwk
    with pytest.raises(InvalidProof, match="signature"):
        read_refresh(proof(OTHER_EC_KEY, "chal-2", jwk=None), bound)
    with pytest.raises(InvalidProof, match="does not match"):
        read_refresh(proof(RSA_KEY, "chal-2", alg="RS256", jwk=None), bound)


def test_the_key_must_sign_its_own_registration() -> None:
    forged = proof(OTHER_EC_KEY, jwk=public_jwk(EC_KEY))  # claims EC_KEY, signed by another
    with pytest.raises(InvalidProof, match="signature"):
        read_registration(forged)


NONE_TOKEN = b64({"alg": "none", "typ": "dbsc+jwt", "jwk": public_jwk(EC_KEY)})
NONE_TOKEN += "." + b64({"jti": "chal-1"}) + "."


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (NONE_TOKEN, "algorithm not allowed"),
        (jwt.encode({"jti": "c"}, "k" * 32, "HS256", {"typ": "dbsc+jwt"}), "not allowed"),
        (proof(typ=None), "typ"),
        (proof(typ="JWT"), "typ"),
        (proof(jwk=None), "without a jwk"),
        (proof(jwk=public_jwk(RSA_KEY)), "key type"),
        (proof(jwk={**public_jwk(EC_KEY), "crv": "P-384"}), "P-256"),
        (proof(jwk={**public_jwk(EC_KEY), "d": "AAAA"}), "private"),
        (proof(jwk={"kty": "EC", "crv": "P-256", "x": 1, "y": 2}), "public member"),
        (proof(jwk={"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}), "unusable key"),
        (proof(jwk="not a dict"), "without a jwk"),
        (proof(challenge=7), "JWT ID"),
        (proof(challenge=""), "jti"),
        (proof(challenge="c" * 300), "jti"),
        ("a.b", "compact JWT"),
        ("x" * 9000 + ".a.b", "compact JWT"),
        ("!!!.???.***", "unreadable"),
        (b64({"alg": "ES256"}) + ".e30.", "typ"),
    ],
)
def test_what_is_not_an_acceptable_registration(token: str, why: str) -> None:
    with pytest.raises(InvalidProof, match=why):
        read_registration(token)


def test_short_rsa_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = proof(weak, alg="RS256")
    with pytest.raises(InvalidProof, match="1024 bits"):
        read_registration(token)


def test_a_refresh_with_an_algorithm_not_offered_is_refused() -> None:
    bound = read_registration(proof(RSA_KEY, alg="RS256")).jwk
    with pytest.raises(InvalidProof, match="not allowed"):
        read_refresh(proof(RSA_KEY, "c", alg="RS256", jwk=None), bound, algorithms=["ES256"])


# Proofs made by Chromium 156 (Debian's, software keys: EnableBoundSessionCredentials-
# SoftwareKeysForManualTesting) against a probe server: a registration answering
# challenge "chal-1", and a refresh answering "chal-2" with the same key.
CHROMIUM_REGISTRATION = (
    "eyJhbGciOiJFUzI1NiIsImp3ayI6eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IkZmMGs5dGQ3"
    "dkZ4MUpEbDI3WHRiOEVlQmFDRGdUSFlCV1JOWG9DcFRxdW8iLCJ5IjoiUXpMWkxJYnlSbmdHM0cxUnl1"
    "OHFyclRmS1k5TlBaSlRtczdYVTBnM2NpQSJ9LCJ0eXAiOiJkYnNjK2p3dCJ9.eyJqdGkiOiJjaGFsLTE"
    "ifQ.CyZR00ZOrSy5XhH21L8Bneu09Ls9-CcBwM7_MCLydfpO81sWN1p-3SMiVH5x9JKVym-7iSRTJrI3"
    "jqMU0TqqXg"
)
CHROMIUM_REFRESH = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImRic2Mrand0In0.eyJqdGkiOiJjaGFsLTIifQ.pYZsA2HiaOxiR"
    "x2OgUpGFJb4GpJZtkoiCyC2syhp76JywdGdpkMlnT2WG4Si4gyIkZ4pKFm4nyWamn4r2KMGhg"
)


def test_proofs_made_by_chromium_are_read() -> None:
    registration = read_registration(CHROMIUM_REGISTRATION)
    assert registration.challenge == "chal-1"
    assert registration.jwk["crv"] == "P-256"
    assert read_refresh(CHROMIUM_REFRESH, registration.jwk) == "chal-2"
    with pytest.raises(InvalidProof, match="signature"):
        read_refresh(CHROMIUM_REFRESH, public_jwk(EC_KEY))
