"""The browser's proofs of possession (``Secure-Session-Response``), checked.

A proof is a JWT (``typ: dbsc+jwt``) signed with the device's key, ES256 or RS256, whose
payload names the server's challenge in ``jti``. At registration the header carries the
public key (``jwk``), and the proof is checked against that key; at every refresh, against
the key the session was bound to. PyJWT does the signature work (with ``cryptography``);
this module decides what is acceptable: the allowed algorithms only, each with its own
key type (no ``none``, no HMAC, no RSA key behind an ES256 header), P-256 or 2048-4096-bit
RSA keys, public key members only, bounded sizes. Everything else is one error,
:class:`InvalidProof`, whose message says what was wrong (for logs, never for the
client); checking the challenge itself (issued here, to this session, recent, unused) is
the caller's.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SatchelError

ALGORITHMS = ("ES256", "RS256")
"""What a proof may be signed with, as the spec's registration header offers them."""

MAX_PROOF_BYTES = 8192  # an RS256 proof with a 4096-bit key is under 2 KB
MAX_CHALLENGE_CHARS = 256
_KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}
_PUBLIC_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
_RSA_BITS = (2048, 4096)


class InvalidProof(SatchelError, ValueError):
    """A ``Secure-Session-Response`` that is not an acceptable proof."""


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration proof, its signature checked against the key it carries."""

    challenge: str
    jwk: dict[str, str]  # the device's public key: its public members only
    thumbprint: str  # RFC 7638 JWK thumbprint (SHA-256, base64url), the key's identity
    authorization: str | None = None  # the payload's ``authorization``, when asked for


def read_registration(token: str, algorithms: Sequence[str] = ALGORITHMS) -> Registration:
    """The registration proof ``token``, checked against the public key in its header."""
    header = _header(token, algorithms)
    raw = header.get("jwk")
    if not isinstance(raw, dict):
        raise InvalidProof("registration proof without a jwk header")
    jwk = _public_jwk(raw, _KEY_TYPES[header["alg"]])
    payload = _verified(token, header["alg"], jwk)
    authorization = payload.get("authorization")
    if authorization is not None and not isinstance(authorization, str):
        raise InvalidProof("authorization is not a string")
    return Registration(_challenge(payload), jwk, thumbprint(jwk), authorization)


def read_refresh(token: str, jwk: Mapping[str, str], algorithms: Sequence[str] = ALGORITHMS) -> str:
    """The challenge a refresh proof answers, its signature checked against ``jwk``, the
    key the session is bound to (a proof signed by any other key is refused)."""
    header = _header(token, algorithms)
    if _KEY_TYPES[header["alg"]] != jwk.get("kty"):
        raise InvalidProof("proof algorithm does not match the bound key")
    return _challenge(_verified(token, header["alg"], dict(jwk)))


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the key's required members, sorted, compact JSON."""
    members = _PUBLIC_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _header(token: str, algorithms: Sequence[str]) -> dict[str, Any]:
    import jwt

    if not isinstance(token, str) or len(token) > MAX_PROOF_BYTES or token.count(".") != 2:
        raise InvalidProof("not a compact JWT of a sensible size")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, UnicodeError) as exc:  # (a lone surrogate is no UTF-8)
        raise InvalidProof(f"unreadable header: {exc}") from None
    if header.get("typ") != "dbsc+jwt":
        raise InvalidProof("typ is not dbsc+jwt")
    alg = header.get("alg")
    if alg not in algorithms or alg not in _KEY_TYPES:
        raise InvalidProof(f"algorithm not allowed: {str(alg)[:20]!r}")
    return header


def _public_jwk(raw: dict[str, Any], kty: str) -> dict[str, str]:
    """The public members of ``raw``, checked: the key type the algorithm needs, a P-256
    curve or an RSA modulus of 2048-4096 bits, and no private member at all."""
    if raw.get("kty") != kty:
        raise InvalidProof("jwk key type does not match the algorithm")
    if any(name in raw for name in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise InvalidProof("jwk holds private key material")
    members = _PUBLIC_MEMBERS[kty]
    if not all(isinstance(raw.get(m), str) and len(raw[m]) <= 1024 for m in members):
        raise InvalidProof("jwk lacks a public member")
    jwk = {m: raw[m] for m in members}
    if kty == "EC" and jwk["crv"] != "P-256":
        raise InvalidProof("EC key not on P-256")
    return jwk


def _verified(token: str, alg: str, jwk: dict[str, str]) -> dict[str, Any]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidProof(f"unusable key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey) and not _RSA_BITS[0] <= key.key_size <= _RSA_BITS[1]:
        raise InvalidProof(f"RSA key of {key.key_size} bits")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[alg],
            options={"verify_aud": False, "verify_iss": False, "require": ["jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidProof(f"signature or claims refused: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidProof("payload is not an object")
    return payload


def _challenge(payload: Mapping[str, Any]) -> str:
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_CHALLENGE_CHARS:
        raise InvalidProof("jti is not a challenge")
    return jti
