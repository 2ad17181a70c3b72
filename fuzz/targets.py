"""The fuzz targets (issue 14): one per parser that reads client input. Each takes the
fuzzer's bytes and asserts that the parser returns a value of its documented type or raises
only its documented error; anything else propagates, and the fuzzer reports it as a crash.

Text inputs are the bytes decoded as UTF-8 with ``surrogateescape``: seeds stay readable
files, and every code point a server can hand over (Latin-1 decoded headers, lone
surrogates for undecodable bytes) is reachable. Targets with two inputs read them from the
first line and the rest (``content type\\nbody``, ``jwk JSON\\nproof``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from satchel import _json
from satchel.cookie.backend import CookieBackend
from satchel.cookie.format import Payload, read_payload
from satchel.cookies import CookieOptions, cookie_values
from satchel.csrf import (
    atoken_from_form,
    secrets_for,
    session_message,
    token_from_form,
    token_matches,
)
from satchel.dbsc.bound_cookie import bound_cookie_expiry
from satchel.dbsc.challenge import check_challenge
from satchel.dbsc.proof import InvalidProof, Registration, read_refresh, read_registration
from satchel.dbsc.state import DeviceState
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.keyring import Keyring
from satchel.transport import HEADER, CookieTransport

logging.disable(logging.CRITICAL)  # the parsers log every refusal: keep the fuzzer's output

KEY = "fuzz-key-0123456789-0123456789-0123456789"  # the seeds are signed with it
OLD_KEY = "fuzz-old-key-0123456789-0123456789-01234"
COOKIE_NAME = "satchel"
HANDLE = "fuzzhandle01"
NOW = 1_800_000_000.0  # the seeds' challenges and bound cookies are made at this time
# The bound key of dbsc_refresh when an input's first line names none (a P-256 public key;
# the seeds name the key that signed them).
REFRESH_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "ezTN1fPr3El_p8_yGH04vBmkr1TKaSR5hduJmBozJdw",
    "y": "RWbxxzmOEXO9Q-6mtVBuvy3TG6tn9p2pHK7rsgeR-IQ",
}

KEYRING = Keyring([KEY, OLD_KEY])
EXPIRY = ExpiryPolicy()
ENGINE = Engine(secret_keys=[KEY, OLD_KEY], expiry=EXPIRY, clock=lambda: NOW)
UNSIGNED = Engine(secret_keys=None, insecure_unsigned_cookies=True, expiry=EXPIRY)
COOKIE = CookieOptions(name=COOKIE_NAME)
TRANSPORT = CookieTransport(COOKIE)
COOKIE_BACKENDS = [
    CookieBackend(
        secret_keys=[KEY, OLD_KEY],
        cookie=COOKIE,
        expiry=EXPIRY,
        signed=signed,
        compress=compress,
        clock=lambda: NOW,
    )
    for signed, compress in ((False, False), (True, True))
]
CSRF_SECRETS = secrets_for(KEYRING, session_message(HANDLE))
_LOOP = asyncio.new_event_loop()


def text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def two(data: bytes) -> tuple[bytes, bytes]:
    first, _, rest = data.partition(b"\n")
    return first, rest


def _session_read(engine: Engine, tokens: list[str], header: str) -> None:
    session_id, resign = engine.read(tokens, header)
    assert session_id is None or type(session_id) is str
    assert type(resign) is bool


def session_token(data: bytes) -> None:
    """A ``Cookie`` header: the session cookie's values, then the signed session ID."""
    header = text(data)
    values = cookie_values(header, COOKIE_NAME)
    assert all(type(v) is str for v in values)
    tokens = TRANSPORT.tokens_in(header, "")
    assert all(type(t) is str for t in tokens)
    _session_read(ENGINE, tokens, header)
    _session_read(UNSIGNED, tokens, header)


def bearer_header(data: bytes) -> None:
    """An ``Authorization`` header: the bearer token, then the signed session ID."""
    authorization = text(data)
    tokens = HEADER.tokens_in("", authorization)
    assert len(tokens) <= 1
    assert all(type(t) is str for t in tokens)
    _session_read(ENGINE, tokens, "")


def cookie_store(data: bytes) -> None:
    """A ``Cookie`` header read by the cookie store (encrypted, and signed+compressed):
    the value's format, key ID, authentication, payload, and the logout tombstone."""
    header = text(data)
    tokens = TRANSPORT.tokens_in(header, "")
    for backend in COOKIE_BACKENDS:
        payload, resign = backend.read(tokens, header)
        assert payload is None or isinstance(payload, Payload)
        assert resign is False


def cookie_payload(data: bytes) -> None:
    """The payload of an authenticated cookie (what a leaked key would let anyone write),
    plain and zlib-compressed."""
    for compressed in (False, True):
        payload = read_payload(data, compressed, "kid")
        assert payload is None or isinstance(payload, Payload)


def csrf_token(data: bytes) -> None:
    """A CSRF token from a header or a form field, checked against the session's secret."""
    assert type(token_matches(text(data), CSRF_SECRETS)) is bool


def _check_form_token(token: str | None) -> None:
    assert token is None or type(token) is str
    if token is not None:
        assert type(token_matches(token, CSRF_SECRETS)) is bool


def form_body(data: bytes) -> None:
    """``content type\\nbody``: the ``csrf_token`` field of an urlencoded or multipart
    body (the sync paths)."""
    content_type, body = two(data)
    _check_form_token(token_from_form(text(content_type), body))


def form_body_async(data: bytes) -> None:
    """``content type\\nbody``: the same on the async path, the body in uneven chunks."""
    content_type, body = two(data)

    async def chunks() -> AsyncIterator[bytes]:
        size, start = 1, 0
        while start < len(body):
            yield body[start : start + size]
            start, size = start + size, size * 3

    token, whole = _LOOP.run_until_complete(atoken_from_form(text(content_type), chunks()))
    _check_form_token(token)
    assert whole == body


def _only_invalid_proof(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except InvalidProof:
        return None


def dbsc_registration(data: bytes) -> None:
    """A registration proof (a JWT carrying its public key): a ``Registration`` or
    ``InvalidProof``."""
    found = _only_invalid_proof(lambda: read_registration(text(data)))
    assert found is None or isinstance(found, Registration)


def dbsc_refresh(data: bytes) -> None:
    """``jwk JSON\\nproof``: a refresh proof checked against a bound key (the key the
    first line names, if it is a JSON object of strings; the seeds' key otherwise)."""
    first, token = two(data)
    jwk: Any = REFRESH_JWK
    try:
        raw = _json.loads(first)
    except ValueError:
        raw = None
    if type(raw) is dict and all(type(k) is str and type(v) is str for k, v in raw.items()):
        jwk = raw  # (what DeviceState.decode lets through as a bound key)
    found = _only_invalid_proof(lambda: read_refresh(text(token), jwk))
    assert found is None or type(found) is str


def dbsc_challenge(data: bytes) -> None:
    """The challenge (``jti``) a proof answers: its issue time or ``InvalidProof``."""
    found = _only_invalid_proof(lambda: check_challenge(KEYRING, text(data), HANDLE, NOW))
    assert found is None or type(found) is int


def dbsc_bound_cookie(data: bytes) -> None:
    """The short-lived bound cookie's value: its expiry or None, never an error."""
    found = bound_cookie_expiry(KEYRING, text(data), HANDLE, NOW)
    assert found is None or type(found) is int


def dbsc_state(data: bytes) -> None:
    """A session's stored device binding (``Meta.device``): never an error."""
    state = DeviceState.decode(text(data))
    assert isinstance(state, DeviceState)
    if not state.corrupt:
        assert DeviceState.decode(state.encode()) == state


TARGETS: dict[str, Callable[[bytes], None]] = {
    "session_token": session_token,
    "bearer_header": bearer_header,
    "cookie_store": cookie_store,
    "cookie_payload": cookie_payload,
    "csrf_token": csrf_token,
    "form_body": form_body,
    "form_body_async": form_body_async,
    "dbsc_registration": dbsc_registration,
    "dbsc_refresh": dbsc_refresh,
    "dbsc_challenge": dbsc_challenge,
    "dbsc_bound_cookie": dbsc_bound_cookie,
    "dbsc_state": dbsc_state,
}
