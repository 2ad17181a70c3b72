"""The I/O-free core: how a session is opened from a cookie and committed to a store.

Both flows are generators that yield store operations and receive their results, so
the same rules (strict mode, expiry, refresh, regeneration, no resurrection) serve the
sync and the async paths, which differ only in the driver (:func:`drive` or
:func:`adrive`) -- the shape of httpx's ``Auth.auth_flow``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from . import codec, ids
from .cookies import CookieOptions, cookie_values
from .errors import ConfigurationError, CorruptRecord, StoreError
from .events import EventHook, emit
from .keyring import PURPOSE_COOKIE, Keyring
from .log import logger, security
from .policy import ExpiryPolicy, is_expired, refresh_due
from .record import Change, Meta, Record
from .session import Session
from .stores.base import Store

T = TypeVar("T")
R = TypeVar("R")

MAX_SESSIONS_PER_USER = 1000
"""Hard cap on one user's live sessions in a server-side store (``max_sessions_per_user``
lowers it). A login past it ends that user's oldest sessions, and every login prunes the
user's index, so neither the sessions nor the index of one user grow without limit."""


# -- store operations ---------------------------------------------------------------------


class Op(Generic[R]):
    """One store call, runnable on the sync or the async path."""

    def run(self, store: Store) -> R:
        raise NotImplementedError

    async def arun(self, store: Store) -> R:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Load(Op[Record | None]):
    key: str
    now: float
    refresh_after: float | None = None

    def run(self, store: Store) -> Record | None:
        return store.load(self.key, self.now, self.refresh_after)

    async def arun(self, store: Store) -> Record | None:
        return await store.aload(self.key, self.now, self.refresh_after)


@dataclass(frozen=True, slots=True)
class Touch(Op[bool]):
    key: str
    now: float

    def run(self, store: Store) -> bool:
        return store.touch(self.key, self.now, self.now)

    async def arun(self, store: Store) -> bool:
        return await store.atouch(self.key, self.now, self.now)


@dataclass(frozen=True, slots=True)
class Create(Op[None]):
    key: str
    record: Record

    def run(self, store: Store) -> None:
        store.create(self.key, self.record)

    async def arun(self, store: Store) -> None:
        await store.acreate(self.key, self.record)


@dataclass(frozen=True, slots=True)
class Update(Op[int | None]):
    key: str
    change: Change
    now: float

    def run(self, store: Store) -> int | None:
        return store.update(self.key, self.change, self.now)

    async def arun(self, store: Store) -> int | None:
        return await store.aupdate(self.key, self.change, self.now)


@dataclass(frozen=True, slots=True)
class Delete(Op[bool]):
    key: str

    def run(self, store: Store) -> bool:
        return store.delete(self.key)

    async def arun(self, store: Store) -> bool:
        return await store.adelete(self.key)


@dataclass(frozen=True, slots=True)
class IndexAdd(Op[None]):
    user_id: str
    key: str
    deadline: float

    def run(self, store: Store) -> None:
        store.index_add(self.user_id, self.key, self.deadline)

    async def arun(self, store: Store) -> None:
        await store.aindex_add(self.user_id, self.key, self.deadline)


@dataclass(frozen=True, slots=True)
class ListUser(Op[list[tuple[str, Meta]]]):
    user_id: str
    now: float

    def run(self, store: Store) -> list[tuple[str, Meta]]:
        return store.list_user(self.user_id, self.now)

    async def arun(self, store: Store) -> list[tuple[str, Meta]]:
        return await store.alist_user(self.user_id, self.now)


Flow = Generator[Op[Any], Any, T]


def drive(flow: Flow[T], store: Store) -> T:
    """Run a flow on the sync path. Store errors are thrown into the flow."""
    try:
        op = next(flow)
        while True:
            try:
                result = op.run(store)
            except StoreError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(flow: Flow[T], store: Store) -> T:
    """Run a flow on the async path."""
    try:
        op = next(flow)
        while True:
            try:
                result = await op.arun(store)
            except StoreError as exc:
                op = flow.throw(exc)
            else:
                op = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- the engine ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request tells about its device, recorded when a session is created.

    Calling it returns itself, so a commit can take either a RequestInfo or a function
    that makes one only when needed (most requests never create a session)."""

    user_agent: str | None = None
    client_ip: str | None = None

    def __call__(self) -> RequestInfo:
        return self


InfoSource = Callable[[], RequestInfo]


def own_sessions(user_id: str, now: float) -> Flow[list[tuple[str, Meta]]]:
    """The store's listing of ``user_id``'s sessions, keeping only records whose own
    metadata names exactly that user. Defence in depth: an index can hand back a foreign
    record (MariaDB's PAD SPACE collations once made ``"alice "`` list alice's sessions;
    a corrupt or hand-edited index can do the same), and nothing here may show, revoke or
    count another user's session because of it."""
    sessions = yield ListUser(user_id, now)
    return [(key, meta) for key, meta in sessions if meta.user_id == user_id]


def cap_flow(
    user_id: str, newest: str, now: float, cap: int, on_event: EventHook | None = None
) -> Flow[None]:
    """Keep at most ``cap`` sessions of ``user_id`` (``max_sessions_per_user``, at most
    :data:`MAX_SESSIONS_PER_USER`): evict the oldest others than ``newest``. Listing also
    prunes the store's per-user index of sessions that ended, so one user logging in again
    and again cannot grow it (each login regenerates, leaving a dead entry). Run after
    every login, on every path (the Django engine included)."""
    sessions = yield from own_sessions(user_id, now)  # never another's
    excess = len(sessions) - cap
    if excess <= 0:
        return
    others = sorted((m.created, k, m) for k, m in sessions if k != newest)
    for _, key, meta in others[:excess]:
        if (yield Delete(key)):
            emit(on_event, "revoked", handle=meta.handle, user_id=user_id, reason="cap")


class Engine:
    """Session rules shared by every middleware and both I/O paths."""

    def __init__(
        self,
        *,
        secret_keys: Sequence[str] | None,
        cookie: CookieOptions,
        expiry: ExpiryPolicy,
        insecure_unsigned_cookies: bool = False,
        encrypt_at_rest: bool = False,
        max_sessions_per_user: int | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret_keys:
            self.keyring: Keyring | None = Keyring(secret_keys)
        elif insecure_unsigned_cookies:
            self.keyring = None
        else:
            raise ConfigurationError(
                "secret_keys is required: pass a list of keys of 32+ characters, newest "
                "first (make one with `satchel keygen`), or opt out explicitly with "
                "insecure_unsigned_cookies=True"
            )
        if encrypt_at_rest and self.keyring is None:
            raise ConfigurationError("encrypt_at_rest needs secret_keys")
        self.encrypt_at_rest = encrypt_at_rest
        if max_sessions_per_user is not None and not 1 <= max_sessions_per_user <= (
            MAX_SESSIONS_PER_USER
        ):
            raise ConfigurationError(
                f"max_sessions_per_user must be between 1 and {MAX_SESSIONS_PER_USER} (or None)"
            )
        self.max_sessions_per_user = max_sessions_per_user
        self.on_event = on_event
        self.cookie = cookie
        if cookie.persistent and not expiry.persistent:  # new sessions follow the cookie option
            expiry = replace(expiry, persistent=True)
        self.expiry = expiry
        self.clock = clock
        self._delete_cookie = cookie.delete_header()

    # -- cookies ----------------------------------------------------------------------------

    def session_id_from_cookie(self, header: str | None) -> tuple[str | None, bool]:
        """The session ID a Cookie header carries, checked for the exact format and
        signature before anything touches a store, and whether it must be re-signed
        (made with an older key). ``(None, False)`` for anything else."""
        if not header or self.cookie.name not in header:
            return None, False
        values = cookie_values(header, self.cookie.name)
        for value in values:
            session_id, _, signature = value.partition(".")
            if not ids.is_session_id(session_id):
                continue
            keyring = self.keyring
            if keyring is None:
                if not signature:
                    return session_id, False
                continue
            if keyring.verify(PURPOSE_COOKIE, session_id, signature):
                return session_id, not keyring.signed_by_current(signature)
        if values:  # our cookie was there, and none of its values holds up
            security.info("session cookie rejected: malformed or bad signature")
            emit(self.on_event, "security", reason="tampered_cookie")
        return None, False

    def cookie_value(self, session_id: str) -> str:
        if self.keyring is None:
            return session_id
        return f"{session_id}.{self.keyring.sign(PURPOSE_COOKIE, session_id)}"

    def _set_cookie(self, session: Session, session_id: str, meta: Meta, now: float) -> None:
        max_age = int(meta.expires_at - now) if meta.persistent else None
        session._outgoing_cookie = self.cookie.set_header(self.cookie_value(session_id), max_age)

    def outgoing_cookie(self, session: Session) -> str | None:
        """The Set-Cookie value this response must carry, if any."""
        return session._outgoing_cookie

    # -- opening ----------------------------------------------------------------------------

    def open(self, session: Session, session_id: str | None, resign: bool = False) -> Flow[Session]:
        """Fill ``session`` from the record a (validated) cookie names. Strict: an ID the
        store does not hold, or one that expired, is never adopted; nothing is written
        for it, and ``session`` stays new."""
        if session_id is None:
            return session
        key = ids.store_key(session_id)
        now = self.clock()
        try:
            record = yield Load(key, now, self.expiry.refresh_after)
        except CorruptRecord:
            security.warning("session %s: corrupt record discarded", ids.log_ref(key))
            emit(self.on_event, "security", reason="corrupt_record", ref=ids.log_ref(key))
            yield Delete(key)
            return session
        if record is None:
            logger.debug("session %s: not found, starting a new one", ids.log_ref(key))
            if self.keyring is not None:  # we signed it: it expired, or was logged out
                emit(self.on_event, "expired", reason="not_found", ref=ids.log_ref(key))
            else:  # unsigned cookies: anyone could have planted it
                emit(self.on_event, "security", reason="unknown_session", ref=ids.log_ref(key))
            return session
        meta = record.meta
        if is_expired(meta, now):
            logger.info("session %s: expired", ids.log_ref(key))
            emit(
                self.on_event, "expired", handle=meta.handle, user_id=meta.user_id, reason="timeout"
            )
            yield Delete(key)
            return session
        try:
            if not all(
                type(text) is str and codec.is_valid_text(name)
                for name, text in record.data.items()
            ):
                raise ValueError("stored session values must be JSON text under valid names")
            session._load(session_id, key, self._unseal(key, record.data), meta)
        except ValueError:
            security.warning("session %s: corrupt record discarded", ids.log_ref(key))
            emit(self.on_event, "security", reason="corrupt_record", ref=ids.log_ref(key))
            yield Delete(key)
            return session
        if record.refreshed:
            session._cookie_refresh = meta.persistent
        elif refresh_due(meta, now, self.expiry.refresh_after):
            if not (yield Touch(key, now)):
                session._abandon()
                return session
            session._meta = meta.with_changes(last_seen=now)
            session._cookie_refresh = meta.persistent
        session._cookie_refresh |= resign
        return session

    # -- committing ---------------------------------------------------------------------------

    def commit(
        self,
        session: Session,
        info: InfoSource,
        new_session_id: Callable[[], str] = ids.new_session_id,
    ) -> Flow[None]:
        """Write what the request changed. Sets ``session._outgoing_cookie``.
        ``new_session_id`` makes the ID of a record this commit creates (Django's own key
        hook, so a collision is retried with the key Django asks for)."""
        session._ensure_loaded()
        now = self.clock()
        destroyed = bool(session._destroyed_keys)
        gone = session._destroyed_meta
        for old in session._destroyed_keys:
            yield Delete(old)
            logger.info("session %s: destroyed", ids.log_ref(old))
            emit(
                self.on_event,
                "destroyed",
                handle=gone and gone.handle,
                user_id=gone and gone.user_id,
                ref=ids.log_ref(old),
            )
        session._destroyed_keys, session._destroyed_meta = [], None

        key = session._key
        if key is None:
            if dict.__len__(session) or session._meta_updates:
                yield from self._create(session, info, now, None, new_session_id)
            elif destroyed:
                session._outgoing_cookie = self._delete_cookie
            return

        session_id, current = session._session_id, session._meta
        assert session_id is not None
        assert current is not None
        if session._regenerate:
            yield from self._create(session, info, now, current, new_session_id, replaces=key)
            return

        change = session._change(lambda: self._next_meta(current, session._meta_updates, now, info))
        if change is None:
            if session._cookie_refresh:
                session._cookie_refresh = False
                self._set_cookie(session, session_id, current, now)
            return
        stored = change
        if self.encrypt_at_rest:
            stored = Change(change.meta, self._seal(key, change.set), change.delete, change.clear)
        meta = change.meta
        # The user's index entry must never end before the record (a session the index
        # has dropped cannot be listed or revoked): a later deadline is filed before the
        # update, an earlier one after it, so a fault between the two errs on the long side.
        reindex = bool(meta.user_id) and meta.absolute_deadline != current.absolute_deadline
        if reindex and meta.absolute_deadline > current.absolute_deadline:
            reindex = False
            yield IndexAdd(meta.user_id or "", key, meta.absolute_deadline)
        version = yield Update(key, stored, now)
        if version is None:
            self._lost(session, key)
            return
        session._committed(
            session_id, key, meta.with_changes(version=version), change.apply(session._baseline)
        )
        if reindex:
            yield IndexAdd(meta.user_id or "", key, meta.absolute_deadline)
        if meta.persistent or session._cookie_refresh or meta.persistent != current.persistent:
            session._cookie_refresh = False  # (set_expiry(persistent=False) re-sets it too)
            self._set_cookie(session, session_id, meta, now)

    def _create(
        self,
        session: Session,
        info: InfoSource,
        now: float,
        base: Meta | None,
        new_session_id: Callable[[], str] = ids.new_session_id,
        replaces: str | None = None,
    ) -> Flow[None]:
        """Create a record for the session; with ``replaces`` (a regeneration), retire the
        old record afterwards.

        The order is what keeps a session alive through a store fault at any step (a
        refused connection, a timeout, a reply lost after the server acted): the index
        entry first (one naming a record that never came is pruned when read), then the
        record, and only then the delete of the old one. Until the new record exists the
        old cookie still opens the old record; from the moment it exists its cookie is
        recorded on the session, and every response -- a 503 included -- carries it. If
        the old record was already gone (a logout or another regeneration won the race),
        the new one is undone: nothing brings a destroyed session back."""
        if base is None:
            device = info()
            base = self.expiry.new_meta(
                ids.new_handle(), now, user_agent=device.user_agent, client_ip=device.client_ip
            )
        else:
            base = base.with_changes(handle=ids.new_handle(), version=1)
        # a handle chosen by regenerate() (pending in the updates) wins over the new one
        meta = self._next_meta(base, session._meta_updates, now, info)
        session_id = new_session_id()
        key = ids.store_key(session_id)
        data = session._encoded()
        if meta.user_id:
            yield IndexAdd(meta.user_id, key, meta.absolute_deadline)
        yield Create(key, Record(self._seal(key, data), meta))
        kind = "created" if session._meta is None else "regenerated"
        session._committed(session_id, key, meta, data)
        self._set_cookie(session, session_id, meta, now)
        if replaces is not None:
            if not (yield Delete(replaces)):
                self._lost(session, replaces)
                yield Delete(key)
                return
            logger.info("session %s: regenerated", ids.log_ref(replaces))
        emit(self.on_event, kind, handle=meta.handle, user_id=meta.user_id)
        if meta.user_id:
            yield from self._enforce_cap(meta.user_id, key, now)

    def _enforce_cap(self, user_id: str, newest: str, now: float) -> Flow[None]:
        cap = self.max_sessions_per_user or MAX_SESSIONS_PER_USER
        yield from cap_flow(user_id, newest, now, cap, self.on_event)

    # -- encryption at rest ----------------------------------------------------------------------
    # An encrypted value is "!" + key ID + "." + base64url(nonce | ciphertext | tag); no JSON
    # text starts with "!", so values stored before encryption was turned on still load, and
    # are encrypted when next written. The store key and the value's name are bound as
    # associated data: a value cannot be moved to another session or another key.

    def _seal(self, key: str, values: Mapping[str, str]) -> dict[str, str]:
        keyring = self.keyring
        if not self.encrypt_at_rest or keyring is None:
            return dict(values)
        sealed = {}
        for name, text in values.items():
            kid, blob = keyring.encrypt(text.encode(), f"{key}\0{name}".encode())
            sealed[name] = f"!{kid}.{ids.b64encode(blob)}"
        return sealed

    def _unseal(self, key: str, values: Mapping[str, str]) -> Mapping[str, str]:
        keyring = self.keyring
        if keyring is None or not any(v.startswith("!") for v in values.values()):
            return values
        plain = {}
        for name, text in values.items():
            if text.startswith("!"):
                kid, _, body = text[1:].partition(".")
                blob = ids.b64decode_canonical(body)
                raw = (
                    None if blob is None else keyring.decrypt(kid, blob, f"{key}\0{name}".encode())
                )
                if raw is None:
                    raise ValueError("an encrypted session value cannot be decrypted")
                text = raw.decode()
            plain[name] = text
        return plain

    def _next_meta(self, meta: Meta, updates: dict[str, Any], now: float, info: InfoSource) -> Meta:
        changes = dict(updates)
        if changes.pop("fresh", False):  # another user logs in: nothing of the last one's
            meta = self.expiry.new_meta(meta.handle, now, user_agent=None, client_ip=None)
        if changes.pop("device", False):  # a login records the device it happened on
            device = info()
            changes["user_agent"], changes["client_ip"] = device.user_agent, device.client_ip
        absolute = changes.pop("absolute_timeout", None)
        if changes.pop("restart", False):  # a login starts the absolute timeout afresh
            changes["created"] = now
            absolute = absolute or (meta.absolute_deadline - meta.created)
        if absolute is not None:
            changes["absolute_deadline"] = changes.get("created", meta.created) + absolute
        return meta.with_changes(last_seen=now, **changes)

    def _lost(self, session: Session, key: str) -> None:
        security.warning(
            "session %s was destroyed or regenerated by another request while this one "
            "ran; its writes are dropped and no cookie is set",
            ids.log_ref(key),
        )
        emit(self.on_event, "security", reason="dropped_write", ref=ids.log_ref(key))
        session._abandon()


def response_headers(headers: list[tuple[str, str]], set_cookie: str) -> list[tuple[str, str]]:
    """``headers`` with the session cookie added, ``Cache-Control: no-store`` (replacing
    any other caching policy: a cookie-setting response must never be cached) and
    ``Cookie`` added to ``Vary``."""
    out: list[tuple[str, str]] = []
    vary: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cache-control":
            continue
        if lower == "vary":
            vary.extend(v.strip() for v in value.split(",") if v.strip())
            continue
        out.append((name, value))
    if not any(v.lower() in ("cookie", "*") for v in vary):
        vary.append("Cookie")
    out.append(("vary", ", ".join(vary)))
    out.append(("cache-control", "no-store"))
    out.append(("set-cookie", set_cookie))
    return out
