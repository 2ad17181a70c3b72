from __future__ import annotations

import pytest

from satchel import ConfigurationError, CookieOptions
from satchel.cookies import cookie_values
from satchel.keyring import PURPOSE_COOKIE, Keyring

from .conftest import KEY, OLD_KEY


def test_defaults_are_secure() -> None:
    """Checklist 20: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain."""
    header = CookieOptions().set_header("v")
    assert header == "satchel=v; Path=/; Secure; HttpOnly; SameSite=Lax"
    assert "Domain" not in header
    assert "Max-Age" not in header  # a browser-session cookie unless persistent


def test_all_attributes() -> None:
    header = CookieOptions(
        name="__Secure-sid", domain="example.com", samesite="none", partitioned=True
    ).set_header("v", max_age=60)
    assert header == (
        "__Secure-sid=v; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=None; "
        "Partitioned; Max-Age=60"
    )


def test_delete_header_matches_name_path_domain() -> None:
    """Checklist 14."""
    opts = CookieOptions(name="sid", path="/app", domain="example.com")
    header = opts.delete_header()
    assert header.startswith("sid=; Path=/app; Domain=example.com;")
    assert "Max-Age=0" in header
    assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "__Host-sid", "domain": "example.com"}, "remove domain"),
        ({"name": "__Host-sid", "path": "/app"}, "path must be '/'"),
        ({"name": "__Host-sid", "secure": False}, "__Host- prefix: set secure"),
        ({"name": "__Secure-sid", "secure": False}, "__Secure- prefix: set secure"),
        # the layered cookies draft's prefixes (Chrome 140+, Firefox 142)
        ({"name": "__Http-sid", "httponly": False}, "__Http- prefix: set httponly"),
        ({"name": "__Http-sid", "secure": False}, "__Http- prefix: set secure"),
        ({"name": "__Host-Http-sid", "httponly": False}, "__Host-Http- prefix: set httponly"),
        ({"name": "__Host-Http-sid", "domain": "example.com"}, "remove domain"),
        ({"name": "__Host-Http-sid", "path": "/app"}, "path must be '/'"),
        # browsers match prefixes whatever their case
        ({"name": "__host-sid", "domain": "example.com"}, "__host- prefix: remove domain"),
        ({"name": "__SECURE-sid", "secure": False}, "__SECURE- prefix: set secure"),
        ({"samesite": "none", "secure": False}, "requires secure"),
        ({"partitioned": True, "secure": False}, "requires secure"),
        ({"samesite": "sometimes"}, "use 'lax', 'strict' or 'none'"),
        ({"name": "bad name"}, "not a valid cookie token"),
        ({"path": "no-slash"}, "must start with '/'"),
        ({"domain": "bad domain;"}, "not a valid domain"),
    ],
)
def test_invalid_combinations_fail_at_configuration(
    kwargs: dict[str, object], message: str
) -> None:
    """Checklist 21, 22, 23."""
    with pytest.raises(ConfigurationError, match=message):
        CookieOptions(**kwargs)  # type: ignore[arg-type]


def test_host_prefix_valid() -> None:
    CookieOptions(name="__Host-sid")
    CookieOptions(name="__Host-Http-sid")
    CookieOptions(name="__Http-sid", path="/app", domain="example.com")


def test_cookie_values_returns_every_duplicate() -> None:
    assert cookie_values('a=1; satchel=x; b=2; satchel="y"', "satchel") == ["x", "y"]
    assert cookie_values("satchelx=1", "satchel") == []


def test_keyring_refuses_short_and_missing_keys() -> None:
    with pytest.raises(ConfigurationError, match="shorter than 32 characters"):
        Keyring(["short"])
    with pytest.raises(ConfigurationError, match="empty"):
        Keyring([])
    with pytest.raises(ConfigurationError, match="list of strings"):
        Keyring(KEY)


def test_keyring_signs_with_newest_and_verifies_all_listed() -> None:
    old = Keyring([OLD_KEY])
    signature = old.sign(PURPOSE_COOKIE, "message")
    rotated = Keyring([KEY, OLD_KEY])
    assert rotated.verify(PURPOSE_COOKIE, "message", signature)
    assert not rotated.signed_by_current(signature)
    assert rotated.signed_by_current(rotated.sign(PURPOSE_COOKIE, "message"))
    assert not Keyring([KEY]).verify(PURPOSE_COOKIE, "message", signature)  # retired
    assert not rotated.verify(b"other-purpose", "message", signature)
    assert not rotated.verify(PURPOSE_COOKIE, "other", signature)


def _reference_b64decode_canonical(text: str) -> bytes | None:
    """The canonical-base64url rule spelled out: the alphabet, no padding, no spare bits."""
    import base64
    import re

    remainder = len(text) % 4
    if remainder == 1 or re.fullmatch(r"[A-Za-z0-9_-]*", text) is None:
        return None
    if remainder == 2 and text[-1] not in "AQgw":
        return None
    if remainder == 3 and text[-1] not in "AEIMQUYcgkosw048":
        return None
    return base64.urlsafe_b64decode(text + "=" * (-remainder % 4))


def test_fast_base64url_decoding_answers_as_the_reference_does() -> None:
    """The one-call decoder (cookie values, signatures) refuses exactly what the rule
    refuses: padding, '+' and '/', spare bits, whitespace, NUL, non-ASCII, a length of
    4n+1."""
    import base64
    import random

    from satchel import ids

    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \n\x00é"
    rng = random.Random(12)
    for _ in range(20_000):
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        else:
            raw = rng.randbytes(rng.randint(0, 20))
            text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            assert ids.b64encode(raw) == text
        if text and rng.random() < 0.3:
            text = text[:-1] + rng.choice(alphabet)
        assert ids.b64decode_canonical(text) == _reference_b64decode_canonical(text), repr(text)


@pytest.mark.parametrize(
    "options",
    [
        CookieOptions(),
        CookieOptions(name="__Secure-sid", domain="example.com", samesite="none", partitioned=True),
        CookieOptions(name="s", path="/app", secure=False, httponly=False, samesite="strict"),
    ],
)
@pytest.mark.parametrize("max_age", [None, -5, 0, 7, 86400, 10**12])
def test_set_header_length_is_the_length_of_the_header(
    options: CookieOptions, max_age: int | None
) -> None:
    """The cookie store checks the size of a Set-Cookie it does not build (the transport
    does): the length must be the header's, Max-Age clamped at 0 included."""
    for value in ("", "v", "e1.abcdefgh." + "x" * 300):
        assert options.set_header_length(value, max_age) == len(options.set_header(value, max_age))
