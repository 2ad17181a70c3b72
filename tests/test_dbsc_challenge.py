"""DBSC challenges: issued by this server, to one session, recently; anything else is a
clean InvalidProof."""

from __future__ import annotations

import pytest

from satchel.dbsc import InvalidProof, check_challenge, new_challenge
from satchel.dbsc.challenge import DEFAULT_MAX_AGE, REFRESH, REGISTER
from satchel.keyring import Keyring

OLD, NEW = "o" * 40, "n" * 40
NOW = 1_800_000_000.0


def test_a_challenge_is_good_for_its_session_within_its_age() -> None:
    keyring = Keyring([NEW])
    challenge = new_challenge(keyring, "handle-a", NOW)
    assert len(challenge) <= 128
    assert check_challenge(keyring, challenge, "handle-a", NOW + 10) == int(NOW * 1000)
    assert new_challenge(keyring, "handle-a", NOW) != challenge  # a nonce in each


def test_another_sessions_or_servers_or_an_old_challenge_is_refused() -> None:
    keyring = Keyring([NEW])
    challenge = new_challenge(keyring, "handle-a", NOW)
    with pytest.raises(InvalidProof, match="this session"):
        check_challenge(keyring, challenge, "handle-b", NOW)
    with pytest.raises(InvalidProof, match="this session"):
        check_challenge(Keyring(["x" * 40]), challenge, "handle-a", NOW)
    with pytest.raises(InvalidProof, match="too old"):
        check_challenge(keyring, challenge, "handle-a", NOW + DEFAULT_MAX_AGE + 1)
    with pytest.raises(InvalidProof, match="future"):
        check_challenge(keyring, challenge, "handle-a", NOW - 60)


def test_a_challenge_is_good_only_for_the_step_it_was_issued_for() -> None:
    """A refresh challenge (handed to anyone who posts to the refresh endpoint with the
    session cookie) never registers a key, and a registration challenge never refreshes."""
    keyring = Keyring([NEW])
    refresh = new_challenge(keyring, "h", NOW, REFRESH)
    register = new_challenge(keyring, "h", NOW, REGISTER)
    assert check_challenge(keyring, refresh, "h", NOW, step=REFRESH)
    assert check_challenge(keyring, register, "h", NOW, step=REGISTER)
    with pytest.raises(InvalidProof, match="this session"):
        check_challenge(keyring, refresh, "h", NOW, step=REGISTER)
    with pytest.raises(InvalidProof, match="this session"):
        check_challenge(keyring, register, "h", NOW, step=REFRESH)


def test_a_challenge_outlives_a_key_rotation_but_not_the_keys_removal() -> None:
    challenge = new_challenge(Keyring([OLD]), "h", NOW)
    assert check_challenge(Keyring([NEW, OLD]), challenge, "h", NOW)
    with pytest.raises(InvalidProof):
        check_challenge(Keyring([NEW]), challenge, "h", NOW)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1.2",
        "1.2.3.4",
        "x.nonce.sig",
        "1" * 20 + ".n.s",
        "é.n.s",
        "1\x00.n.s",
        "9" * 200,
    ],
)
def test_malformed_challenges_are_refused(text: str) -> None:
    with pytest.raises(InvalidProof):
        check_challenge(Keyring([NEW]), text, "h", NOW)


def test_a_tampered_time_or_nonce_is_refused() -> None:
    keyring = Keyring([NEW])
    issued, nonce, signature = new_challenge(keyring, "h", NOW).split(".")
    for forged in (f"{int(issued) + 1}.{nonce}.{signature}", f"{issued}.{nonce}x.{signature}"):
        with pytest.raises(InvalidProof):
            check_challenge(keyring, forged, "h", NOW)
