"""The bound cookie of a device-bound session: good only for its session, until its
expiry, under a listed key; anything a client sends instead is simply not valid."""

from __future__ import annotations

import pytest

from satchel.dbsc import bound_cookie_valid, new_bound_cookie
from satchel.keyring import Keyring

OLD, NEW = "o" * 40, "n" * 40
NOW = 1_800_000_000.0


def test_a_bound_cookie_is_good_for_its_session_until_it_expires() -> None:
    keyring = Keyring([NEW])
    value = new_bound_cookie(keyring, "handle-a", NOW, 600)
    assert bound_cookie_valid(keyring, value, "handle-a", NOW + 599)
    assert not bound_cookie_valid(keyring, value, "handle-a", NOW + 600)
    assert not bound_cookie_valid(keyring, value, "handle-b", NOW)  # another session's


def test_its_expiry_is_inside_the_signature() -> None:
    keyring = Keyring([NEW])
    expires, signature = new_bound_cookie(keyring, "h", NOW, 600).split(".")
    later = f"{int(expires) + 3_600_000}.{signature}"
    assert not bound_cookie_valid(keyring, later, "h", NOW)


def test_it_outlives_a_key_rotation_but_not_the_keys_removal() -> None:
    value = new_bound_cookie(Keyring([OLD]), "h", NOW, 600)
    assert bound_cookie_valid(Keyring([NEW, OLD]), value, "h", NOW)
    assert not bound_cookie_valid(Keyring([NEW]), value, "h", NOW)


@pytest.mark.parametrize(
    "value", ["", ".", "abc", "123", "123.", "x.y", "1" * 20 + ".s", "é.s", "\x00", "9" * 100]
)
def test_anything_else_is_not_valid_and_never_raises(value: str) -> None:
    assert not bound_cookie_valid(Keyring([NEW]), value, "h", NOW)
