"""Device-bound sessions on the wire: the rules every middleware applies, without I/O.

A middleware asks :func:`before_app` once the request's session is open. It answers a
request to the two endpoints (``<dbsc_path>/register``, ``<dbsc_path>/refresh``) itself,
and refuses a request whose session is bound but carries no fresh bound cookie for it
(or that had to bind and did not, past the grace period): the app never runs for those,
and never sees the session. Everything else goes on to the app. When the response
starts, :func:`response_lines` adds what the session's binding needs: the offer to bind
(``Secure-Session-Registration``) on a login over HTTPS and now and then until the grace
period ends, a bound cookie for the new handle after a regeneration, and the bound
cookie's removal at logout (the browser then refreshes, and learns the binding ended).

The protocol is the W3C draft's (``Secure-Session-Registration``, ``-Response``,
``-Challenge``, ``Sec-Secure-Session-Id``, the session instructions JSON), as Chromium
speaks it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import _json
from ..cookies import cookie_values
from ..events import emit
from ..log import logger, security
from ..printable import printable
from .bound_cookie import bound_cookie_expiry, bound_cookie_until, new_bound_cookie
from .challenge import DEFAULT_MAX_AGE, REFRESH, REGISTER, check_challenge, new_challenge
from .proof import InvalidProof, read_refresh, read_registration
from .state import DeviceState

if TYPE_CHECKING:
    from ..backend import TokenAction
    from ..keyring import Keyring
    from ..record import Meta
    from ..request import RequestContext

RESPONSE_HEADER = "secure-session-response"
ID_HEADER = "sec-secure-session-id"
MAX_ID_CHARS = 128

# What every endpoint answer carries: never cached, never framed, never shared cross-site
# (no Access-Control-* header is ever added here).
_ENDPOINT_HEADERS = [
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
]
_JSON = ("content-type", "application/json")
SETTLE_MS = 10_000
"""How long after a binding a request without a bound cookie is still let through: the
browser does not hold its requests while it registers, so the page a login redirects to
is often asked for before the registration's answer (and its bound cookie) has arrived.
Never longer than the bound cookie's lifetime."""
_END = _json.dumps_bytes({"continue": False})


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the middleware sends instead of running the app. ``commit``: send it
    through the session's response phase (an endpoint changed the session); otherwise
    as it is, with nothing of the session (a refusal)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    commit: bool = True


def before_app(ctx: RequestContext) -> Answer | None:
    """An endpoint's answer, a refusal, or None: the app runs."""
    options = ctx.policy.device
    path = ctx.app_path  # (below the app's mount point, as the endpoints' paths are)
    endpoint = path == options.register_path or path == options.refresh_path
    ctx.device_checked = True
    if ctx.ticket is None and not endpoint:
        return None  # no session to open (a login may make one: see response_lines)
    session = ctx.session
    session.ensure_loaded()  # (the sync paths open lazily: the binding must be known now)
    meta = session.meta
    ctx.device_opened = None if meta is None else (meta.handle, meta.device)
    if endpoint:
        if ctx.method != "POST":
            return Answer(405, [("allow", "POST"), *_ENDPOINT_HEADERS], b"", commit=False)
        if path == options.register_path:
            return _register(ctx, meta)
        return _refresh(ctx, meta)
    if meta is None:
        return None
    required = options.required and meta.user_id is not None
    if meta.device is None and not required:
        return None  # most sessions
    state = DeviceState.decode(meta.device)
    now = ctx.backend.clock()
    if state.bound:
        settle = min(SETTLE_MS, options.cookie_lifetime * 1000)
        if not state.corrupt and (
            _has_bound_cookie(ctx, meta.handle, now) or now * 1000 - state.bound_ms < settle
        ):
            return None
        reason = "unverified_request"
    elif (state.required or required) and now - meta.created > options.grace:
        reason = "binding_required"
    else:
        return None
    logger.info(
        "device-bound session %s refused on %s %s: %s",
        meta.handle,
        printable(ctx.method),
        printable(ctx.path),
        reason,
    )
    emit(ctx.backend.on_event, "device_refused", meta=meta, reason=reason)
    return _refusal(ctx)


MAX_BOUND_COOKIES = 32
"""Bound cookie values looked at per request: every one a sibling subdomain could plant
(cookie tossing) ahead of the real one, within any server's header limit."""


def _has_bound_cookie(ctx: RequestContext, handle: str, now: float) -> bool:
    """Whether the request carries a valid bound cookie for ``handle``; its expiry is kept
    in ``ctx.device_cookie_ms`` (the latest, if several)."""
    keyring = _keyring(ctx)
    name = ctx.policy.bound_cookie.name
    if name not in ctx.cookie_header:
        return False
    for value in cookie_values(ctx.cookie_header, name)[:MAX_BOUND_COOKIES]:
        expires = bound_cookie_expiry(keyring, value, handle, now)
        if expires is not None and expires > ctx.device_cookie_ms:
            ctx.device_cookie_ms = expires
    return ctx.device_cookie_ms > 0


def _refusal(ctx: RequestContext) -> Answer:
    """401 (JSON for API requests; a short page, or a redirect, for the rest): the
    session's data never reaches the app, and the response carries nothing of it."""
    ctx.session.forget()
    headers = [("cache-control", "no-store"), ("vary", "Cookie")]
    accept = ctx.headers.get("accept", "")
    wants_json = "application/json" in accept and "text/html" not in accept
    if wants_json:
        body = _json.dumps_bytes({"error": "device_unverified"})
        return Answer(401, [_JSON, *headers], body, commit=False)
    redirect = ctx.policy.device.redirect
    if redirect is not None and ctx.method in ("GET", "HEAD"):
        return Answer(303, [("location", redirect), *headers], b"", commit=False)
    body = (
        b"<!doctype html><title>Sign in again</title><h1>Sign in again</h1>"
        b"<p>This session is bound to the device it started on, and this browser could "
        b"not prove it is that device.</p>\n"
    )
    return Answer(401, [("content-type", "text/html; charset=utf-8"), *headers], body, False)


# -- the endpoints ------------------------------------------------------------------------------


def _register(ctx: RequestContext, meta: Meta | None) -> Answer:
    keyring, now = _keyring(ctx), ctx.backend.clock()
    options = ctx.policy.device
    if meta is None or meta.user_id is None:
        return _registration_refused(ctx, meta, "no_session")
    state = DeviceState.decode(meta.device)
    if state.bound:  # a binding is never replaced: that would hand the session to a new key
        return _registration_refused(ctx, meta, "already_bound")
    if now - meta.created > options.grace:
        return _registration_refused(ctx, meta, "too_late")
    try:
        proof = read_registration(_proof_header(ctx))
        issued = check_challenge(
            keyring, proof.challenge, meta.handle, now, DEFAULT_MAX_AGE, step=REGISTER
        )
    except InvalidProof as exc:
        return _registration_refused(ctx, meta, "bad_proof", str(exc))
    bound = DeviceState(proof.jwk, proof.thumbprint, issued, int(now * 1000), state.required)
    ctx.session.set_device(bound.encode())
    logger.info("session %s bound to its device", meta.handle)
    emit(ctx.backend.on_event, "device_bound", meta=meta)
    return _instructions(ctx, bound.identifier, meta.handle, now)


def _registration_refused(
    ctx: RequestContext, meta: Meta | None, reason: str, detail: str = ""
) -> Answer:
    logger.info("device binding refused: %s %s", reason, printable(detail))
    emit(
        ctx.backend.on_event,
        "device_refused",
        meta=meta,
        reason=reason,
    )
    return Answer(403, [_JSON, *_ENDPOINT_HEADERS], _END, commit=False)


def _refresh(ctx: RequestContext, meta: Meta | None) -> Answer:
    """Every way this can fail costs the same work up to the answer: the session was
    loaded (the middleware did it for every request), and the identifier is compared in
    constant time."""
    keyring, now = _keyring(ctx), ctx.backend.clock()
    claimed = ctx.headers.get(ID_HEADER, "")[:MAX_ID_CHARS].strip().strip('"')
    state = DeviceState.decode(None if meta is None else meta.device)
    identifier = state.identifier if state.jwk is not None else ""
    same = hmac.compare_digest(claimed.encode(), identifier.encode())
    if meta is None or state.jwk is None or not identifier or not same:
        # logged out, revoked, expired, another binding: the browser ends this one
        emit(
            ctx.backend.on_event,
            "device_unbound" if meta is None else "device_refused",
            meta=meta,
            reason="session_ended" if meta is None else "not_bound",
        )
        return Answer(200, [_JSON, *_ENDPOINT_HEADERS], _END, commit=False)
    token = ctx.headers.get(RESPONSE_HEADER)
    if not token:
        return _challenge(ctx, meta.handle, state, now)
    try:
        challenge = read_refresh(token, state.jwk)
    except InvalidProof as exc:  # not signed by the bound key: a copy of the cookies
        security.warning(
            "device-bound session %s: refresh proof refused (%s): a copied session?",
            meta.handle,
            printable(str(exc)),
        )
        on_event = ctx.backend.on_event
        emit(on_event, "security", meta=meta, reason="device_key")
        emit(on_event, "device_refused", meta=meta, reason="wrong_key")
        return Answer(403, [_JSON, *_ENDPOINT_HEADERS], _END, commit=False)
    max_age = DEFAULT_MAX_AGE + ctx.policy.device.cookie_lifetime
    try:
        issued = check_challenge(keyring, challenge, meta.handle, now, max_age, step=REFRESH)
        reused = issued <= state.answered_ms
    except InvalidProof:
        issued, reused = 0, False
    if not issued or reused:  # stale (or another session's), or answered before
        reason = "reused_challenge" if reused else "stale_challenge"
        logger.info("device-bound session %s: %s, asking again", meta.handle, reason)
        emit(ctx.backend.on_event, "device_refused", meta=meta, reason=reason)
        return _challenge(ctx, meta.handle, state, now)
    state = state._replace(answered_ms=issued)
    ctx.session.set_device(state.encode())
    emit(ctx.backend.on_event, "device_refreshed", meta=meta)
    answer = _instructions(ctx, identifier, meta.handle, now)
    # the next refresh's challenge, cached by the browser: one round trip next time
    answer.headers.append(_challenge_header(keyring, meta.handle, state, now))
    return answer


def _challenge(ctx: RequestContext, handle: str, state: DeviceState, now: float) -> Answer:
    header = _challenge_header(_keyring(ctx), handle, state, now)
    return Answer(403, [header, *_ENDPOINT_HEADERS], b"", commit=False)


def _challenge_header(
    keyring: Keyring, handle: str, state: DeviceState, now: float
) -> tuple[str, str]:
    challenge = new_challenge(keyring, handle, now, REFRESH, state.answered_ms)
    return ("secure-session-challenge", f'"{challenge}";id="{state.identifier}"')


def _instructions(ctx: RequestContext, identifier: str, handle: str, now: float) -> Answer:
    """The session instructions JSON, with a fresh bound cookie."""
    options, cookie = ctx.policy.device, ctx.policy.bound_cookie
    instructions = {
        "session_identifier": identifier,
        "refresh_url": ctx.mount + options.refresh_path,
        "scope": {"origin": ctx.own_origin, "include_site": False},
        "credentials": [{"type": "cookie", "name": cookie.name, "attributes": cookie.attributes}],
    }
    return Answer(
        200,
        [_JSON, *_ENDPOINT_HEADERS, ("set-cookie", _bound_cookie(ctx, handle, now))],
        _json.dumps_bytes(instructions),
    )


def _bound_cookie(ctx: RequestContext, handle: str, now: float) -> str:
    lifetime = ctx.policy.device.cookie_lifetime
    value = new_bound_cookie(_keyring(ctx), handle, now, lifetime)
    return ctx.policy.bound_cookie.set_header(value, int(lifetime))


def _proof_header(ctx: RequestContext) -> str:
    token = ctx.headers.get(RESPONSE_HEADER)
    if not token:
        raise InvalidProof("no Secure-Session-Response header")
    return token


def _keyring(ctx: RequestContext) -> Keyring:
    keyring = ctx.backend.keyring
    assert keyring is not None  # (dbsc needs secret_keys: checked at start)
    return keyring


# -- the response phase -------------------------------------------------------------------------


def response_lines(ctx: RequestContext, action: TokenAction | None) -> list[tuple[str, str]]:
    """What the session's binding adds to a response of the app, after its commit
    (``action``: what the commit asked of the session's token)."""
    if not ctx.device_checked:
        return []
    meta = ctx.session.meta
    opened = ctx.device_opened
    if meta is None:
        logged_out = action is not None and action.token is None and not action.withdrawn
        if logged_out and opened is not None and opened[1] is not None:
            # the browser's next request refreshes at once, and learns the binding ended
            return [("set-cookie", ctx.policy.bound_cookie.delete_header())]
        return []
    if meta.user_id is None:
        if opened is not None and opened[1] is not None and opened[0] != meta.handle:
            # logged out, and a new anonymous session started in the same request (a flash
            # message after logout): the binding ended all the same
            return [("set-cookie", ctx.policy.bound_cookie.delete_header())]
        return []
    now = ctx.backend.clock()
    new_handle = opened is None or opened[0] != meta.handle
    state = DeviceState.decode(meta.device) if meta.device is not None else None
    if state is not None and state.jwk is not None:
        expires = ctx.device_cookie_ms
        if new_handle and expires:
            # A regeneration kept the binding, and the old bound cookie names nothing now:
            # one for the new handle, expiring when the one presented does (no renewal
            # without a proof of the key).
            value = bound_cookie_until(_keyring(ctx), meta.handle, expires)
            max_age = max(0, (expires - int(now * 1000)) // 1000)
            return [("set-cookie", ctx.policy.bound_cookie.set_header(value, max_age))]
        return []
    options = ctx.policy.device
    if (
        (new_handle or ctx.session.seen_now)
        and now - meta.created <= options.grace
        and ctx.origin.scheme == "https"
        and ctx.transport is ctx.policy.cookie_transport
    ):
        challenge = new_challenge(_keyring(ctx), meta.handle, now, REGISTER)
        path = ctx.mount + options.register_path
        offer = f'(ES256 RS256);path="{path}";challenge="{challenge}"'
        return [("secure-session-registration", offer)]
    return []
