"""The short-lived cookie a device-bound session also needs on every request: the browser
renews it by proving it holds the session's key, so a copy taken off the machine stops
working when it expires. Its value is its expiry and a MAC (keyring, purpose
``satchel/dbsc-bound-cookie/v1``) over that expiry and the session's public handle: it
names its session, carries its expiry inside the signature (the cookie's ``Max-Age`` says
the same to the browser), and dies with the session (another handle after regeneration,
none after logout)."""

from __future__ import annotations

from ..keyring import Keyring

PURPOSE_BOUND_COOKIE = b"satchel/dbsc-bound-cookie/v1"
DEFAULT_LIFETIME = 600.0
"""Seconds a bound cookie lives: how long a stolen pair of cookies stays usable."""


def new_bound_cookie(keyring: Keyring, handle: str, now: float, lifetime: float) -> str:
    """The value of a bound cookie for the session ``handle``, good for ``lifetime`` s."""
    expires = str(int((now + lifetime) * 1000))
    return f"{expires}.{keyring.sign(PURPOSE_BOUND_COOKIE, f'{handle}.{expires}')}"


def bound_cookie_valid(keyring: Keyring, value: str, handle: str, now: float) -> bool:
    """Whether ``value`` (from a client: anything) is an unexpired bound cookie made here
    for the session ``handle``. Never raises."""
    if len(value) > 64 or not value.isascii():
        return False
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or len(expires) > 15:
        return False
    if int(expires) <= int(now * 1000):
        return False
    return keyring.verify(PURPOSE_BOUND_COOKIE, f"{handle}.{expires}", signature)
