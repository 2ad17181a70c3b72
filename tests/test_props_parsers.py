"""Property tests of every parser that reads client input (issue 14): on arbitrary input
each returns a value of its documented type or raises only its documented error. Inputs are
arbitrary text (lone surrogates included), and real values -- a signed session token, a
cookie-store cookie, a masked CSRF token, a form body, a DBSC proof -- with arbitrary edits,
so the checks past the first format test are reached too. The atheris targets of ``fuzz/``
search the same parsers by coverage."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from satchel import ids
from satchel.cookie.backend import CookieBackend
from satchel.cookie.format import Payload, read_payload
from satchel.cookies import CookieOptions, cookie_values
from satchel.csrf import (
    atoken_from_form,
    mask,
    secrets_for,
    session_message,
    token_from_form,
    token_matches,
)
from satchel.dbsc.bound_cookie import bound_cookie_expiry, new_bound_cookie
from satchel.dbsc.challenge import check_challenge, new_challenge
from satchel.dbsc.proof import InvalidProof, Registration, read_refresh, read_registration
from satchel.dbsc.state import DeviceState
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.keyring import Keyring
from satchel.record import Meta
from satchel.transport import HEADER, CookieTransport

from .conftest import KEY, OLD_KEY
from .dbsc_device import Device

NOW = 1_800_000_000.0
HANDLE = "handle000001"
KEYRING = Keyring([KEY, OLD_KEY])
ENGINE = Engine(secret_keys=[KEY, OLD_KEY], expiry=ExpiryPolicy(), clock=lambda: NOW)
UNSIGNED = Engine(secret_keys=None, insecure_unsigned_cookies=True, expiry=ExpiryPolicy())
COOKIE = CookieOptions(name="satchel")
TRANSPORT = CookieTransport(COOKIE)
SECRETS = secrets_for(KEYRING, session_message(HANDLE))

ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=200)  # surrogates too
HEADER_TEXT = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=200)  # Latin-1


def edited(real: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A real value with arbitrary edits: cut, a character replaced, text spliced in."""

    def edit(value: str, at: int, cut: int, splice: str) -> str:
        at %= len(value) + 1
        return value[:at] + splice + value[at + cut :]

    return st.builds(edit, real, st.integers(0, 10_000), st.integers(0, 3), ANY_TEXT)


def token() -> st.SearchStrategy[str]:
    return st.builds(lambda: ENGINE.token_for(ids.new_session_id()))


TOKEN_TEXT = st.one_of(ANY_TEXT, token(), edited(token()))


def check_read(engine: Engine, tokens: list[str], header: str) -> None:
    session_id, resign = engine.read(tokens, header)
    assert session_id is None or ids.is_session_id(session_id)
    assert type(resign) is bool


# -- session tokens: the Cookie header and the bearer token ---------------------------------------


@given(st.lists(TOKEN_TEXT, max_size=4), st.one_of(ANY_TEXT, HEADER_TEXT))
def test_engine_read_never_raises(tokens: list[str], header: str) -> None:
    check_read(ENGINE, tokens, header)
    check_read(UNSIGNED, tokens, header)


@given(st.lists(st.tuples(st.sampled_from(["satchel", " satchel", "x", ""]), TOKEN_TEXT)))
def test_cookie_header_parsing_never_raises(pairs: list[tuple[str, str]]) -> None:
    header = "; ".join(f"{name}={value}" for name, value in pairs)
    values = cookie_values(header, "satchel")
    assert all(type(v) is str for v in values)
    tokens = TRANSPORT.tokens_in(header, "")
    assert tokens == (values if "satchel" in header else [])
    check_read(ENGINE, tokens, header)


@given(st.one_of(ANY_TEXT, HEADER_TEXT))
def test_cookie_values_never_raises(header: str) -> None:
    assert all(type(v) is str for v in cookie_values(header, "satchel"))
    assert all(type(v) is str for v in TRANSPORT.tokens_in(header, ""))


@given(st.one_of(ANY_TEXT, st.tuples(st.sampled_from(["Bearer", "bearer ", "Basic"]), TOKEN_TEXT)))
def test_bearer_token_parsing_never_raises(raw: str | tuple[str, str]) -> None:
    authorization = raw if isinstance(raw, str) else " ".join(raw)
    tokens = HEADER.tokens_in("", authorization)
    assert len(tokens) <= 1
    assert all(type(t) is str and t for t in tokens)
    check_read(ENGINE, tokens, "")


def test_a_real_token_reads_back() -> None:
    sid = ids.new_session_id()
    assert ENGINE.read(HEADER.tokens_in("", f"Bearer {ENGINE.token_for(sid)}")) == (sid, False)


# -- the cookie store -----------------------------------------------------------------------------


@cache
def cookie_backends() -> list[CookieBackend]:
    return [
        CookieBackend(
            secret_keys=[KEY, OLD_KEY],
            cookie=COOKIE,
            expiry=ExpiryPolicy(),
            signed=signed,
            compress=compress,
            clock=lambda: NOW,
        )
        for signed, compress in ((False, False), (True, False), (True, True), (False, True))
    ]


META = Meta("h" * 12, NOW, NOW, NOW + 3600, 1800.0, "alice", "ua", "127.0.0.1")


def cookie_value() -> st.SearchStrategy[str]:
    data = st.dictionaries(st.text(max_size=4), st.text(max_size=8), max_size=3)
    return st.builds(
        lambda b, d, m: b.encode(d, m),
        st.sampled_from(cookie_backends()),
        data,
        st.sampled_from([META, META._replace(user_id=None, device='{"q":1}')]),
    )


COOKIE_TEXT = st.one_of(ANY_TEXT, cookie_value(), edited(cookie_value()))


@settings(max_examples=200)
@given(st.lists(COOKIE_TEXT, max_size=3), st.one_of(ANY_TEXT, HEADER_TEXT))
def test_cookie_store_read_never_raises(values: list[str], tombstones: str) -> None:
    header = "; ".join(f"satchel={v}" for v in values) + "; satchel-logout=" + tombstones
    tokens = TRANSPORT.tokens_in(header, "")
    for backend in cookie_backends():
        payload, resign = backend.read(tokens, header)
        assert payload is None or isinstance(payload, Payload)
        assert resign is False
        for value in values:
            decoded = backend.format.authentic(value)
            assert decoded is None or type(decoded[0]) is bytes


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=15,
)
PAYLOAD_DOC = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"d": JSON, "m": st.one_of(JSON, st.lists(JSON, min_size=10, max_size=11))}
    ),
    st.builds(
        lambda d, m: {"d": d, "m": m},
        st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        st.tuples(*(JSON for _ in range(10))).map(list),
    ),
)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=300), PAYLOAD_DOC.map(lambda d: json.dumps(d).encode())))
def test_cookie_payload_decoder_never_raises(raw: bytes) -> None:
    import zlib

    for data, compressed in ((raw, False), (raw, True), (zlib.compress(raw), True)):
        payload = read_payload(data, compressed, "kid")
        assert payload is None or isinstance(payload, Payload)


# -- CSRF tokens and form bodies ------------------------------------------------------------------

CSRF = st.builds(lambda: mask(SECRETS[0]))


@given(st.one_of(st.none(), ANY_TEXT, CSRF, edited(CSRF)))
def test_csrf_token_check_never_raises(value: str | None) -> None:
    assert type(token_matches(value, SECRETS)) is bool


def test_a_real_csrf_token_matches() -> None:
    assert token_matches(mask(SECRETS[0]), SECRETS)


def multipart(boundary: str, fields: list[tuple[str, str]], tail: str) -> bytes:
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    )
    return (parts + tail).encode("utf-8", "surrogatepass")


FIELD = st.tuples(st.sampled_from(["csrf_token", "a", 'b"; filename="x', ""]), ANY_TEXT)
BOUNDARY = st.text(alphabet="abcXYZ09-'()+_,./:=? ", min_size=1, max_size=12)
FORMS = st.one_of(
    st.tuples(st.one_of(ANY_TEXT, HEADER_TEXT), st.binary(max_size=400)),
    st.builds(
        lambda b, f, t, extra: (f"multipart/form-data; boundary={b}{extra}", multipart(b, f, t)),
        BOUNDARY,
        st.lists(FIELD, max_size=4),
        st.one_of(st.just(""), ANY_TEXT),
        st.one_of(st.just(""), HEADER_TEXT, ANY_TEXT),
    ),
    st.builds(
        lambda f, ct: (ct, "&".join(f"{n}={v}" for n, v in f).encode("utf-8", "surrogatepass")),
        st.lists(FIELD, max_size=5),
        st.sampled_from(
            ["application/x-www-form-urlencoded", "APPLICATION/X-WWW-FORM-URLENCODED;"]
        ),
    ),
)


@settings(max_examples=300)
@given(FORMS, st.integers(1, 64))
def test_form_token_search_never_raises(form: tuple[str, bytes], chunk: int) -> None:
    content_type, body = form
    token = token_from_form(content_type, body)
    assert token is None or type(token) is str

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    found, whole = asyncio.run(atoken_from_form(content_type, chunks()))
    assert found == token
    assert whole == body


# -- device-bound sessions (DBSC) -----------------------------------------------------------------


@cache
def devices() -> tuple[Device, Device]:
    return Device(), Device("RS256")


def b64(raw: Any) -> str:
    text = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "typ": st.one_of(st.just("dbsc+jwt"), JSON),
        "alg": st.one_of(st.sampled_from(["ES256", "RS256", "none", "HS256"]), JSON),
        "jwk": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {"kty": st.sampled_from(["EC", "RSA", "oct"])},
                optional={
                    k: st.one_of(st.text(max_size=60), JSON)
                    for k in ("crv", "x", "y", "n", "e", "d")
                },
            ),
        ),
    },
)
JWT_SHAPED = st.builds(
    lambda h, p, s: f"{b64(h)}.{b64(p)}.{s}",
    HEADERS,
    st.one_of(JSON, st.fixed_dictionaries({"jti": JSON})),
    st.one_of(st.text(alphabet="abcAB-_", max_size=40), ANY_TEXT),
)


def proof() -> st.SearchStrategy[str]:
    return st.builds(
        lambda d, jwk: d.proof("challenge", with_jwk=jwk),
        st.sampled_from(devices()),
        st.booleans(),
    )


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
PROOFS = st.one_of(
    ANY_TEXT,
    JWT_SHAPED,
    proof(),
    edited(proof()),
    st.builds(lambda p, c: p + c, proof(), SURROGATE),  # no UTF-8 (a crash atheris found)
)


@settings(max_examples=200, deadline=None)
@given(PROOFS)
def test_registration_proofs_raise_only_invalid_proof(value: str) -> None:
    try:
        found = read_registration(value)
    except InvalidProof:
        return
    assert isinstance(found, Registration)


@settings(max_examples=200, deadline=None)
@given(PROOFS, st.sampled_from([0, 1]))
def test_refresh_proofs_raise_only_invalid_proof(value: str, which: int) -> None:
    try:
        found = read_refresh(value, devices()[which].jwk)
    except InvalidProof:
        return
    assert type(found) is str


CHALLENGES = st.builds(
    lambda step: new_challenge(KEYRING, HANDLE, NOW, step), st.sampled_from(["register", "refresh"])
)


@given(st.one_of(ANY_TEXT, CHALLENGES, edited(CHALLENGES)), st.floats(0, 2 * NOW))
def test_challenge_check_raises_only_invalid_proof(value: str, now: float) -> None:
    try:
        issued = check_challenge(KEYRING, value, HANDLE, now)
    except InvalidProof:
        return
    assert type(issued) is int


BOUND = st.builds(lambda: new_bound_cookie(KEYRING, HANDLE, NOW, 600))


@given(st.one_of(ANY_TEXT, BOUND, edited(BOUND)), st.floats(0, 2 * NOW))
def test_bound_cookie_check_never_raises(value: str, now: float) -> None:
    found = bound_cookie_expiry(KEYRING, value, HANDLE, now)
    assert found is None or type(found) is int


STATES = st.one_of(
    st.none(),
    ANY_TEXT,
    JSON.map(json.dumps),
    st.fixed_dictionaries({}, optional=dict.fromkeys(("k", "i", "n", "b", "q"), JSON)).map(
        json.dumps
    ),
    st.builds(
        lambda jwk, i, n, b, q: DeviceState(jwk, i, n, b, q).encode(),
        st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
        st.text(min_size=1, max_size=8),
        st.integers(0, 2**53),
        st.integers(0, 2**53),
        st.booleans(),
    ),
)


@given(STATES)
def test_device_state_decode_never_raises(text: str | None) -> None:
    state = DeviceState.decode(text)
    assert isinstance(state, DeviceState)
    if not state.corrupt:
        assert DeviceState.decode(state.encode()) == state
