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
    return bound_cookie_until(keyring, handle, int((now + lifetime) * 1000))


def bound_cookie_until(keyring: Keyring, handle: str, expires_ms: int) -> str:
    """The value of a bound cookie for the session ``handle`` that expires at
    ``expires_ms`` (epoch milliseconds): a regenerated session's, which must not outlive
    the one the request presented."""
    expires = str(expires_ms)
    return f"{expires}.{keyring.sign(PURPOSE_BOUND_COOKIE, f'{handle}.{expires}')}"


def bound_cookie_expiry(keyring: Keyring, value: str, handle: str, now: float) -> int | None:
    """When ``value`` (from a client: anything) expires (epoch milliseconds), if it is an
    unexpired bound cookie made here for the session ``handle``; None otherwise. Never
    raises."""
    if len(value) > 64 or not value.isascii():
        return None
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or len(expires) > 15:
        return None
    if int(expires) <= int(now * 1000):
        return None
    if not keyring.verify(PURPOSE_BOUND_COOKIE, f"{handle}.{expires}", signature):
        return None
    return int(expires)


def bound_cookie_valid(keyring: Keyring, value: str, handle: str, now: float) -> bool:
    """Whether ``value`` is an unexpired bound cookie made here for the session ``handle``."""
    return bound_cookie_expiry(keyring, value, handle, now) is not None
