"""The challenges a browser's DBSC proofs must answer: issued by this server, to one
session, recently. No state is kept to issue one: a challenge carries its time and a
nonce, MACed with the keyring together with the session's public handle and what it is
for (``register`` or ``refresh``), so a challenge made for one session (or by another
server, or before a key was retired), or for the other step, is worthless here. Single
use is the caller's part: it accepts a challenge only if it was issued after the last one
the session accepted (:func:`check_challenge` returns the issue time for that)."""

from __future__ import annotations

import secrets

from ..keyring import Keyring
from .proof import InvalidProof

PURPOSE_CHALLENGE = b"satchel/dbsc-challenge/v1"
DEFAULT_MAX_AGE = 300.0
"""Seconds a challenge stays good: a browser answers within a round trip or two."""

_SKEW_MS = 5_000  # a challenge "from the future" (another server's clock) by at most this


REGISTER, REFRESH = "register", "refresh"


def new_challenge(
    keyring: Keyring, handle: str, now: float, step: str = REFRESH, after_ms: int = 0
) -> str:
    """A fresh challenge for ``step`` of the session whose public handle is ``handle``;
    its issue time is later than ``after_ms`` (the last challenge the session accepted),
    even when the clock has not moved since, so that "issued after the last one accepted"
    tells every new challenge from every used one."""
    issued = str(max(int(now * 1000), after_ms + 1))
    nonce = secrets.token_urlsafe(12)
    mac = keyring.sign(PURPOSE_CHALLENGE, f"{step}.{handle}.{issued}.{nonce}")
    return f"{issued}.{nonce}.{mac}"


def check_challenge(
    keyring: Keyring,
    challenge: str,
    handle: str,
    now: float,
    max_age: float = DEFAULT_MAX_AGE,
    step: str = REFRESH,
) -> int:
    """When ``challenge`` was issued (epoch milliseconds), if this server issued it for
    ``step`` of the session ``handle`` less than ``max_age`` seconds ago;
    :class:`InvalidProof` otherwise."""
    parts = challenge.split(".") if len(challenge) <= 128 and challenge.isascii() else []
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 15:
        raise InvalidProof("not a challenge of this server")
    issued, nonce, signature = parts
    if not keyring.verify(PURPOSE_CHALLENGE, f"{step}.{handle}.{issued}.{nonce}", signature):
        raise InvalidProof("challenge not issued here to this session")
    age_ms = int(now * 1000) - int(issued)
    if age_ms > max_age * 1000:
        raise InvalidProof("challenge too old")
    if age_ms < -_SKEW_MS:
        raise InvalidProof("challenge from the future")
    return int(issued)
