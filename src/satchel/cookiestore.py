"""The cookie store (``cookie://``): the session data lives in the browser, encrypted.

Format of the cookie value (all parts base64url without padding, checked canonical):

* encrypted (default): ``e1.<kid>.<nonce|ciphertext|tag>``, AES-256-GCM, the version, key
  ID and cookie name bound as associated data;
* signed only (``signed=True``, readable by the user): ``s1.<kid>.<payload>.<mac>``, HMAC-
  SHA256 over the version, key ID, payload and cookie name.

A ``z`` after the version (``e1z``, ``s1z``) marks a zlib-compressed payload; compression is
off by default (compressing secrets beside attacker-influenced data leaks them, as in
CRIME and BREACH). The payload is JSON: the data (encoded values by key) and the metadata,
including the creation time, last-seen time and absolute deadline, so the idle and absolute
timeouts are inside the authenticated payload and no edit can extend a session.

What the cookie store cannot do (said plainly in docs/stores.md): list a user's sessions
on the server, or merge concurrent writes per key (the last response's cookie wins).
Revocation works through per-user markers in a server-side store (:mod:`.revocation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import ids, revocation
from .codec import compact_json
from .cookies import CookieOptions, cookie_values
from .engine import Engine, Flow, InfoSource, Load
from .errors import ConfigurationError, CorruptRecord, SessionTooLarge
from .events import EventHook, emit
from .keyring import KID_LENGTH, PURPOSE_COOKIE
from .log import logger, security
from .policy import ExpiryPolicy, is_expired, refresh_due
from .record import Meta
from .session import Session
from .stores.base import Store

MAX_COOKIE_BYTES = 4096
MAX_PAYLOAD_BYTES = 64 * 1024  # refuse to inflate more than this (zip bombs)
PURPOSE_LOGOUT = b"satchel/logout-tombstone/v2"  # v2: bound to the user
TOMBSTONE_SUFFIX = "-logout"
_TOMBSTONE_AT = re.compile(r"[0-9]{1,16}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_VERSIONS = {"e1": (True, False), "e1z": (True, True), "s1": (False, False), "s1z": (False, True)}


@dataclass(frozen=True, slots=True)
class CookieStore:
    """Choose the cookie store: ``store=CookieStore()`` or ``store="cookie://"``.

    ``signed=True`` makes readable, signed-only cookies; ``compress=True`` zlib-compresses
    the payload (only where no secret sits beside attacker-influenced data).
    """

    signed: bool = False
    compress: bool = False


def from_url(url: str) -> CookieStore:
    """``cookie://``, ``cookie://?signed=1``, ``cookie://?compress=1``."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(url).query)

    def flag(name: str) -> bool:
        return query.get(name, ["0"])[0].lower() in ("1", "true", "yes")

    return CookieStore(signed=flag("signed"), compress=flag("compress"))


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded, authenticated cookie."""

    data: dict[str, str]
    meta: Meta
    kid: str


class CookieEngine(Engine):
    """The session rules for cookie sessions, with the same interface as :class:`Engine`."""

    def __init__(
        self,
        *,
        secret_keys: Sequence[str] | None,
        cookie: CookieOptions,
        expiry: ExpiryPolicy,
        options: CookieStore,
        revocation_store: Store | None,
        clock: Callable[[], float] | None = None,
        on_event: EventHook | None = None,
        max_sessions_per_user: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        if max_sessions_per_user is not None:
            raise ConfigurationError(
                "max_sessions_per_user needs a server-side store: cookie sessions cannot be counted"
            )
        if not secret_keys:
            raise ConfigurationError(
                "the cookie store needs secret_keys (it encrypts or signs every cookie); "
                "make one with `satchel keygen`"
            )
        super().__init__(
            secret_keys=secret_keys, cookie=cookie, expiry=expiry, on_event=on_event, **kwargs
        )
        self.options = options
        self.revocation_store = revocation_store
        self._tombstone = dataclasses.replace(cookie, name=cookie.name + TOMBSTONE_SUFFIX)
        self._version = ("s1" if options.signed else "e1") + ("z" if options.compress else "")
        if revocation_store is None:
            logger.warning(
                "cookie sessions without a revocation store: logout cannot stop a stolen "
                "cookie, which stays valid until it expires; pass revocation_store="
            )

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, data: dict[str, str], meta: Meta) -> str:
        keyring = self.keyring
        assert keyring is not None
        raw = compact_json({"d": data, "m": list(meta)}).encode()  # metadata by position
        if self.options.compress:
            raw = zlib.compress(raw)
        version = self._version
        if self.options.signed:
            kid = keyring.current_kid
            body = ids.b64encode(raw)
            mac = keyring.mac(PURPOSE_COOKIE, self._signed_message(version, kid, body))
            assert mac is not None
            return f"{version}.{kid}.{body}.{ids.b64encode(mac)}"
        kid, blob = keyring.encrypt(raw, self._associated(version, keyring.current_kid))
        return f"{version}.{kid}.{ids.b64encode(blob)}"

    def _associated(self, version: str, kid: str) -> bytes:
        return f"{version}.{kid}.{self.cookie.name}".encode()

    def _signed_message(self, version: str, kid: str, body: str) -> bytes:
        return f"{version}.{kid}.{body}.{self.cookie.name}".encode()

    def decode(self, value: str) -> Payload | None:
        """The authenticated payload of a cookie value, or None for anything else."""
        keyring = self.keyring
        assert keyring is not None
        # Every part is checked for its exact format (base64url, canonical) before it is
        # used: the value comes from a client, and nothing it holds may make this raise.
        parts = value.split(".")
        mode = _VERSIONS.get(parts[0])
        if mode is None or len(parts) != (3 if mode[0] else 4) or len(parts[1]) != KID_LENGTH:
            return None
        encrypted, compressed = mode
        version, kid = parts[0], parts[1]
        if ids.b64decode_canonical(kid) is None:
            return None
        if encrypted:
            blob = ids.b64decode_canonical(parts[2])
            if blob is None:
                return None
            raw = keyring.decrypt(kid, blob, self._associated(version, kid))
        else:
            raw, mac = ids.b64decode_canonical(parts[2]), ids.b64decode_canonical(parts[3])
            if raw is None or mac is None:
                return None
            expected = keyring.mac(PURPOSE_COOKIE, self._signed_message(version, kid, parts[2]))
            if expected is None or not hmac.compare_digest(mac, expected):
                return None
        if raw is None:
            return None
        payload = self._payload(raw, compressed, kid)
        if payload is None:  # authentic, yet unreadable: we wrote it wrong, or a key leaked
            security.warning("cookie session with a corrupt payload discarded")
            emit(self.on_event, "security", reason="corrupt_record")
        return payload

    @staticmethod
    def _payload(raw: bytes, compressed: bool, kid: str) -> Payload | None:
        """The payload of an authenticated cookie, or None if it is malformed in any way
        (too deep, wrongly typed metadata, values that are not strings)."""
        try:
            if compressed:
                inflater = zlib.decompressobj()
                raw = inflater.decompress(raw, MAX_PAYLOAD_BYTES)
                if inflater.unconsumed_tail:
                    return None
            doc = json.loads(raw)
            fields = doc["m"]
            if not isinstance(fields, list) or len(fields) != len(Meta._fields):
                return None
            data, meta = doc["d"], Meta.from_fields(fields)
        except (ValueError, KeyError, TypeError, RecursionError, zlib.error, CorruptRecord):
            return None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return None
        return Payload(data, meta, kid)

    # -- the Engine interface ----------------------------------------------------------------

    def session_id_from_cookie(self, header: str | None) -> tuple[Any, bool]:
        if not header or self.cookie.name not in header:
            return None, False
        values = cookie_values(header, self.cookie.name)
        for value in values:
            payload = self.decode(value)
            if payload is not None:
                if self._logged_out(payload.meta, header):
                    return None, False
                return payload, False
        if values:  # our cookie was there, and none of its values holds up
            security.warning(
                "cookie session rejected: tampered, malformed or made by a retired key"
            )
            emit(self.on_event, "security", reason="tampered_cookie")
        return None, False

    # -- the logout tombstone (cookie sessions without a revocation store) ---------------------
    # A request in flight during a logout answers after it and would set the logged-in
    # cookie again. Logout therefore also sets a small signed cookie, ``<name>-logout``,
    # holding the logged-out session's login time: a logged-in cookie session *of the same
    # user* that logged in at or before it is no session in this browser. The user is
    # bound by the signature (over a SHA-256 of the user ID, which the cookie does not
    # hold), so a genuine tombstone of one account, tossed into another user's browser
    # from a sibling subdomain, logs nobody else out. It lives as long as the sessions it
    # governs. It needs no server state, and stops only the browser that logged out: a
    # thief's copy of the cookie comes without it (that needs a revocation store).

    def _tombstone_message(self, at: str, user_id: str) -> str:
        user = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.cookie.name}.{at}.{user}"

    def _tombstone_header(self, gone: Meta, now: float) -> str:
        keyring = self.keyring
        assert keyring is not None
        assert gone.user_id is not None
        at = str(math.ceil(gone.created * 1000))  # ms, rounded up: "at or before" holds
        signature = keyring.sign(PURPOSE_LOGOUT, self._tombstone_message(at, gone.user_id))
        lifetime = max(gone.absolute_deadline - now, self.expiry.absolute_timeout)
        return self._tombstone.set_header(f"{at}.{signature}", math.ceil(lifetime))

    def _logged_out(self, meta: Meta, header: str) -> bool:
        """Whether this browser logged out the logged-in session ``meta`` (or a later one
        of the same login) without a revocation store."""
        if meta.user_id is None or self.revocation_store is not None:
            return False
        keyring = self.keyring
        assert keyring is not None
        for value in cookie_values(header, self._tombstone.name):
            at, _, signature = value.partition(".")
            if (
                _TOMBSTONE_AT.fullmatch(at)
                and _SIGNATURE.fullmatch(signature)
                and keyring.verify(
                    PURPOSE_LOGOUT, self._tombstone_message(at, meta.user_id), signature
                )
                and meta.created * 1000 <= int(at)
            ):
                security.info("logged-out cookie session presented again (handle %s)", meta.handle)
                emit(self.on_event, "security", reason="logged_out_cookie", handle=meta.handle)
                return True
        return False

    def open(  # type: ignore[override]
        self, session: Session, payload: Payload | None, resign: bool = False
    ) -> Flow[Session]:
        if payload is None:
            return session
        meta, now = payload.meta, self.clock()
        if is_expired(meta, now):
            logger.info("cookie session expired")
            return session
        if meta.user_id is not None and self.revocation_store is not None:
            marker = yield Load(revocation.marker_key(meta.user_id), now)
            if not revocation.is_valid(marker, meta):
                security.info("revoked cookie session presented (handle %s)", meta.handle)
                emit(
                    self.on_event,
                    "security",
                    reason="revoked_cookie",
                    handle=meta.handle,
                    user_id=meta.user_id,
                )
                return session
        try:
            session._load(meta.handle, meta.handle, payload.data, meta)
        except ValueError:
            security.warning("cookie session with an undecodable value discarded")
            emit(self.on_event, "security", reason="corrupt_record")
            return Session()
        if refresh_due(meta, now, self.expiry.refresh_after):
            session._cookie_refresh = True  # last seen lives in the cookie: write it again
        return session

    def commit(
        self,
        session: Session,
        info: InfoSource,
        new_session_id: Callable[[], str] = ids.new_session_id,  # unused: IDs live in cookies
    ) -> Flow[None]:
        session._ensure_loaded()
        now = self.clock()
        destroyed = bool(session._destroyed_keys)
        old_meta = session._destroyed_meta
        session._destroyed_keys, session._destroyed_meta = [], None
        if destroyed and old_meta is not None and old_meta.user_id:
            if self.revocation_store is not None:
                yield from revocation.revoke_handle(
                    old_meta.user_id, old_meta.handle, old_meta.absolute_deadline, now
                )
            elif session._context is not None:
                session._context.cookies.append(self._tombstone_header(old_meta, now))
        current = session._meta
        data: dict[str, str] | None = None
        if current is None:
            if not (dict.__len__(session) or session._meta_updates):
                if destroyed:
                    session._outgoing_cookie = self._delete_cookie
                return
            device = info()
            base = self.expiry.new_meta(
                ids.new_handle(), now, user_agent=device.user_agent, client_ip=device.client_ip
            )
        elif session._regenerate:
            if current.user_id and self.revocation_store:
                # the same user's session under a new handle: a spare ("log out other
                # devices") follows it; a login by another user carries none over
                same_user = session._meta_updates.get("user_id", current.user_id) == current.user_id
                yield from revocation.revoke_handle(
                    current.user_id,
                    current.handle,
                    current.absolute_deadline,
                    now,
                    keep=session.handle,
                    successor=session.handle if same_user else None,
                )
            base = current.with_changes(handle=ids.new_handle(), version=1)  # or the pending one
        else:
            data = session._encoded()
            changed = data != session._baseline or session._cleared or session._meta_dirty
            if not (changed or session._cookie_refresh):
                return
            base = current
        meta = self._next_meta(base, session._meta_updates, now, info)
        if (
            meta.user_id
            and self.revocation_store
            and (
                current is None
                or session._regenerate
                or meta.user_id != current.user_id
                or meta.absolute_deadline > current.absolute_deadline  # "remember me"
            )
        ):
            # the marker must outlive every session it governs
            yield from revocation.ensure(
                meta.user_id,
                meta.absolute_deadline,
                now,
                login=meta.created == now,
                # a handle this commit made (login, regeneration) cannot be listed yet
                handle=None if current is None or session._regenerate else meta.handle,
            )
        if data is None:
            data = session._encoded()
        value = self.encode(data, meta)
        max_age = int(meta.expires_at - now) if meta.persistent else None
        header = self.cookie.set_header(value, max_age)
        size = len(header.encode())
        if size > MAX_COOKIE_BYTES:
            raise SessionTooLarge(size, MAX_COOKIE_BYTES)
        session._committed(meta.handle, meta.handle, meta, data)
        session._cookie_refresh = False
        session._outgoing_cookie = header
