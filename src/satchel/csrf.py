"""CSRF protection: a synchronizer token bound to the session, masked per response.

The secret is an HMAC (the keyring's CSRF subkey) of the session's public handle, so it is
stored nowhere, cannot be forged, and changes at login (which gives the session a new
handle). Before login the secret is bound instead to a short-lived random *pre-session*
cookie, so the login form is protected without a store record for every anonymous visit;
login deletes that cookie, so a token from before login is refused after it.

Each token handed out is ``pad || (pad XOR secret)`` with a fresh random pad (as Django
does), so no two responses carry the same bytes (BREACH); comparison is constant-time.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import unquote_plus

from . import ids
from .keyring import PURPOSE_CSRF, Keyring

SECRET_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRESESSION_MAX_AGE = 2 * 3600
# Caps on the work of finding the token in a form body (see FormTokenFinder and
# docs/security.md "Hardening"): a body past any of them is not searched, so the request
# needs the X-CSRF-Token header instead.
MAX_FORM_BYTES = 1024 * 1024  # bodies larger than this are not read for a token
MAX_FORM_FIELDS = 1000  # the token must be among the first 1000 fields (parts)
MAX_PART_HEADER_BYTES = 1024  # one multipart header line (name and value)
MAX_PART_HEADERS = 8  # header lines in one part
MAX_DISPOSITION_PARAMS = 16  # semicolons (quoted or not) in one Content-Disposition
MAX_TOKEN_BYTES = 200  # a token is 88 characters
SLICE_BYTES = 16 * 1024  # the async paths yield to the event loop between slices


@dataclass(frozen=True, slots=True)
class CSRFOptions:
    """``exempt``: path patterns (fnmatch, e.g. ``/webhooks/*``) never checked.
    ``allow_same_site``: accept unsafe requests marked ``Sec-Fetch-Site: same-site`` (from
    a sibling subdomain); refused by default. ``trusted_origins``: other origins allowed
    to post (``https://admin.example.com``)."""

    enabled: bool = True
    exempt: tuple[str, ...] = ()
    allow_same_site: bool = False
    trusted_origins: tuple[str, ...] = field(default_factory=tuple)

    def exempted(self, path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in self.exempt)


def secrets_for(keyring: Keyring, message: bytes) -> list[bytes]:
    """The secret under every listed key (a token made before a rotation still checks)."""
    out = []
    for kid in keyring.kids:
        mac = keyring.mac(PURPOSE_CSRF, message, kid)
        if mac is not None:
            out.append(mac)
    return out


def session_message(handle: str) -> bytes:
    return b"session:" + handle.encode()


def presession_message(value: str) -> bytes:
    return b"pre:" + value.encode()


def new_presession() -> str:
    return secrets.token_urlsafe(24)


def mask(secret: bytes) -> str:
    pad = os.urandom(SECRET_BYTES)
    return ids.b64encode(pad + bytes(a ^ b for a, b in zip(pad, secret, strict=True)))


def unmask(token: str) -> bytes | None:
    raw = ids.b64decode_canonical(token.strip()) if len(token) < 200 else None
    if raw is None or len(raw) != 2 * SECRET_BYTES:
        return None
    pad, masked = raw[:SECRET_BYTES], raw[SECRET_BYTES:]
    return bytes(a ^ b for a, b in zip(pad, masked, strict=True))


def token_matches(token: str | None, candidates: Iterable[bytes]) -> bool:
    if not token:
        return False
    secret = unmask(token)
    if secret is None:
        return False
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(secret, candidate)
    return matched


class FormTokenFinder:
    """Finds the ``csrf_token`` field of a form body fed in pieces, with a hard cap on work.

    An unauthenticated client chooses the body, so finding the token must cost time
    linear in the body's size and stop early: urlencoded bodies are split once; multipart
    bodies go through python-multipart's streaming parser, and the search gives up (no
    token: the request is refused) as soon as the body has more than
    :data:`MAX_FORM_FIELDS` fields, a part has a header line longer than
    :data:`MAX_PART_HEADER_BYTES` or more than :data:`MAX_PART_HEADERS` header lines, or a
    ``Content-Disposition`` carries more than :data:`MAX_DISPOSITION_PARAMS` parameters.
    It stops as soon as the token's part ends. ``feed`` returns True once the search is
    over; feed at most :data:`SLICE_BYTES` at a time to bound the work of one call.
    """

    def __init__(self, content_type: str) -> None:
        self.token: str | None = None
        self.done = False
        self._kind = content_type.split(";", 1)[0].strip().lower()
        self._buffer = bytearray()  # urlencoded: the body so far
        self._parser: Any = None
        if self._kind == "multipart/form-data":
            self._parser = self._multipart(content_type)
        elif self._kind != "application/x-www-form-urlencoded":
            self.done = True

    def feed(self, data: bytes) -> bool:
        if self.done:
            return True
        if self._parser is None:  # urlencoded: split once, at the end
            self._buffer += data
            return False
        try:
            self._parser.write(data)
        except _Found:
            self.done = True
        except ValueError:  # a cap hit, or a malformed body: no token
            self.token, self.done = None, True
        return self.done

    def result(self) -> str | None:
        """The token found, once the whole body (or all of it that was searched) is fed."""
        if not self.done and self._kind == "application/x-www-form-urlencoded":
            self.token = _urlencoded_token(bytes(self._buffer))
        self.done = True
        return self.token

    def _multipart(self, content_type: str) -> Any:
        from python_multipart.multipart import MultipartParser, parse_options_header

        if len(content_type) > MAX_PART_HEADER_BYTES or not content_type.isascii():
            self.done = True
            return None
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary or len(boundary) > 200:
            self.done = True
            return None
        header: dict[str, Any] = {"name": bytearray(), "value": bytearray(), "lines": 0}
        state: dict[str, Any] = {"parts": 0, "ours": False, "value": bytearray()}

        def part_begin() -> None:
            state["parts"] += 1
            if state["parts"] > MAX_FORM_FIELDS:
                raise _CapExceeded("too many parts")
            state["ours"], header["lines"] = False, 0

        def header_piece(key: str) -> Any:
            def on_piece(data: bytes, start: int, end: int) -> None:
                buf = header[key]
                buf += data[start:end]
                if len(header["name"]) + len(header["value"]) > MAX_PART_HEADER_BYTES:
                    raise _CapExceeded("part header too long")

            return on_piece

        def header_end() -> None:
            header["lines"] += 1
            if header["lines"] > MAX_PART_HEADERS:
                raise _CapExceeded("too many part headers")
            name = bytes(header["name"]).strip().lower()
            value = bytes(header["value"])
            header["name"], header["value"] = bytearray(), bytearray()
            if name != b"content-disposition":
                return
            # counted before parsing: the parser's work grows with the semicolons
            if value.count(b";") > MAX_DISPOSITION_PARAMS:
                raise _CapExceeded("too many Content-Disposition parameters")
            params = parse_options_header(value)[1]
            state["ours"] = params.get(b"name") == FORM_FIELD.encode() and b"filename" not in params

        def part_data(data: bytes, start: int, end: int) -> None:
            if state["ours"]:
                state["value"] += data[start:end]
                if len(state["value"]) > MAX_TOKEN_BYTES:
                    raise _CapExceeded("csrf_token field too long")

        def part_end() -> None:
            if state["ours"]:
                self.token = bytes(state["value"]).decode("latin-1")
                raise _Found

        callbacks = {
            "on_part_begin": part_begin,
            "on_header_field": header_piece("name"),
            "on_header_value": header_piece("value"),
            "on_header_end": header_end,
            "on_part_data": part_data,
            "on_part_end": part_end,
        }
        return MultipartParser(boundary, callbacks)  # type: ignore[arg-type]


class _Found(Exception):
    """Stops the multipart parser: the token's part has ended."""


class _CapExceeded(ValueError):
    """Stops the multipart parser: the body is past a cap, so no token is looked for."""


def _urlencoded_token(body: bytes) -> str | None:
    """The first ``csrf_token`` among the first :data:`MAX_FORM_FIELDS` fields."""
    for field_ in body.split(b"&", MAX_FORM_FIELDS)[:MAX_FORM_FIELDS]:
        name, _, value = field_.partition(b"=")
        if len(name) <= 3 * len(FORM_FIELD) and unquote_plus(name.decode("latin-1")) == FORM_FIELD:
            if len(value) > 3 * MAX_TOKEN_BYTES:
                return None
            return unquote_plus(value.decode("latin-1"), encoding="latin-1")
    return None


def form_slices(body: bytes) -> Iterator[bytes]:
    """``body`` in pieces of at most :data:`SLICE_BYTES`."""
    view = memoryview(body)
    for start in range(0, len(body), SLICE_BYTES):
        yield bytes(view[start : start + SLICE_BYTES])


def token_from_form(content_type: str, body: bytes) -> str | None:
    """The ``csrf_token`` field of an urlencoded or multipart form body (the sync paths:
    WSGI and Flask; the work is capped as :class:`FormTokenFinder` says)."""
    finder = FormTokenFinder(content_type)
    for piece in form_slices(body):
        if finder.feed(piece):
            break
    return finder.result()


async def atoken_from_form(
    content_type: str, chunks: AsyncIterator[bytes]
) -> tuple[str | None, bytes | None]:
    """The async paths (ASGI, FastAPI): read the body from ``chunks`` and find its token.

    Returns the token and the body (to hand on to the app), or ``(None, None)`` when the
    body is larger than :data:`MAX_FORM_BYTES`. The search runs in slices
    of :data:`SLICE_BYTES` and yields to the event loop between slices, so no slice blocks
    it for more than a few milliseconds and other requests are served meanwhile.
    """
    finder = FormTokenFinder(content_type)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None, None
        parts.append(chunk)
        for piece in form_slices(chunk) if not finder.done else ():
            if finder.feed(piece):
                break
            await asyncio.sleep(0)
    return finder.result(), b"".join(parts)


def origin_refusal(
    options: CSRFOptions, headers: dict[str, str], own_origin: str | None
) -> str | None:
    """Why the request's browser metadata marks it cross-site, or None."""
    found = origin_failure(options, headers, own_origin)
    return None if found is None else found[1]


def origin_failure(
    options: CSRFOptions, headers: dict[str, str], own_origin: str | None
) -> tuple[Literal["origin", "fetch_site"], str] | None:
    """:func:`origin_refusal` with its machine-readable reason: ``"fetch_site"`` or
    ``"origin"``."""
    site = headers.get("sec-fetch-site")
    if site == "cross-site":
        return "fetch_site", "cross-site request (Sec-Fetch-Site: cross-site)"
    if site == "same-site" and not options.allow_same_site:
        return (
            "fetch_site",
            "request from another site of the same domain (Sec-Fetch-Site: same-site)",
        )
    origin = headers.get("origin")
    if origin is not None:
        allowed = {o.rstrip("/") for o in options.trusted_origins}
        if own_origin:
            allowed.add(own_origin)
        if origin == "null" or origin.rstrip("/") not in allowed:
            return "origin", f"foreign Origin {origin!r}"
    return None
