"""A DBSC "device" for tests without a browser: a key pair and the proofs Chromium sends
(``typ: dbsc+jwt``; the public jwk at registration; ``jti`` = the challenge)."""

from __future__ import annotations

import re
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_PARAM = re.compile(r'(\w+)="([^"]*)"')


class Device:
    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg == "ES256":
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = {
            k: v
            for k, v in jwt.algorithms.get_default_algorithms()[alg]
            .to_jwk(self.key.public_key(), as_dict=True)
            .items()
            if k in ("kty", "crv", "x", "y", "n", "e")
        }

    def proof(self, challenge: str, *, with_jwk: bool = False, **header: Any) -> str:
        headers: dict[str, Any] = {"typ": "dbsc+jwt", **header}
        if with_jwk:
            headers["jwk"] = self.jwk
        return jwt.encode({"jti": challenge}, self.key, algorithm=self.alg, headers=headers)


def registration_offer(header: str) -> tuple[str, str]:
    """(path, challenge) of a ``Secure-Session-Registration`` header."""
    assert header.startswith("(ES256 RS256);"), header
    params = dict(_PARAM.findall(header))
    return params["path"], params["challenge"]


def challenge_of(header: str) -> tuple[str, str]:
    """(challenge, session id) of a ``Secure-Session-Challenge`` header."""
    match = re.fullmatch(r'"([^"]+)";id="([^"]+)"', header)
    assert match, header
    return match.group(1), match.group(2)
