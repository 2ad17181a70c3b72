"""What a middleware knows about one request, shared by the ASGI and WSGI paths: where it
came from (trusted proxies honoured), its CSRF state, and the backend the session helpers
(:mod:`satchel.auth`) reach through ``session._context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import csrf
from .cookies import CookieOptions, cookie_values
from .engine import Engine, RequestInfo
from .events import emit
from .keyring import PURPOSE_CSRF
from .log import security
from .printable import printable
from .proxies import Network, Origin, resolve

if TYPE_CHECKING:
    from .session import Session
    from .stores.base import Store


@dataclass(frozen=True, slots=True)
class Settings:
    """The per-middleware settings a request context needs besides the engine."""

    csrf: csrf.CSRFOptions
    trusted_proxies: tuple[Network, ...]
    presession_cookie: CookieOptions


_UNREAD = object()
_WEB_SCHEMES = {"ws": "http", "wss": "https"}


@dataclass(eq=False, slots=True)
class RequestContext:
    engine: Engine
    store: Store
    settings: Settings
    session: Session
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    peer: str | None
    scheme: str
    new_presession: bool = False
    cookies: list[str] = field(default_factory=list)
    # worked out on first use: most requests never need them
    _origin: Origin | None = None
    _presession: Any = _UNREAD

    @property
    def origin(self) -> Origin:
        """Client IP, scheme and host, forwarding headers believed from trusted proxies."""
        if self._origin is None:
            self._origin = resolve(
                self.peer, self.scheme, self.headers, self.settings.trusted_proxies
            )
        return self._origin

    @property
    def own_origin(self) -> str | None:
        """The site's own origin as a browser writes it in ``Origin``: a WebSocket
        handshake's ``ws``/``wss`` scheme (ASGI scope, or a proxy's forwarded proto) is the
        page's ``http``/``https``."""
        origin = self.origin
        if origin.host is None:
            return None
        scheme = _WEB_SCHEMES.get(origin.scheme.lower(), origin.scheme.lower())
        return f"{scheme}://{origin.host}"

    @property
    def presession(self) -> str | None:
        """The pre-session cookie's value, if the request carries a plausible one."""
        if self._presession is _UNREAD:
            name = self.settings.presession_cookie.name
            values = cookie_values(self.headers.get("cookie", ""), name)
            self._presession = next((v for v in values if 20 <= len(v) <= 64 and v.isascii()), None)
        return self._presession  # type: ignore[no-any-return]

    @presession.setter
    def presession(self, value: str | None) -> None:
        self._presession = value

    @classmethod
    def build(
        cls,
        engine: Engine,
        store: Store,
        settings: Settings,
        session: Session,
        *,
        method: str,
        path: str,
        headers: dict[str, str],
        peer: str | None,
        scheme: str,
    ) -> RequestContext:
        ctx = cls(engine, store, settings, session, method, path, headers, peer, scheme)
        session._context = ctx
        return ctx

    def request_info(self) -> RequestInfo:
        agent = self.headers.get("user-agent")
        return RequestInfo(
            user_agent=agent[:512] if agent else None, client_ip=self.origin.client_ip
        )

    # -- CSRF -----------------------------------------------------------------------------------

    def csrf_token(self) -> str:
        """A token for the current session, masked afresh on every call. Without secret
        keys (``insecure_unsigned_cookies=True``) there is no token to make: an empty
        string, so templates still render; only the Origin and ``Sec-Fetch-Site`` checks
        then apply."""
        keyring = self.engine.keyring
        if keyring is None:
            return ""
        session = self.session
        if session.user_id is not None and session.handle is not None:
            message = csrf.session_message(session.handle)
        else:
            if self.presession is None:
                self.presession, self.new_presession = csrf.new_presession(), True
            message = csrf.presession_message(self.presession)
        secret = keyring.mac(PURPOSE_CSRF, message)
        assert secret is not None
        return csrf.mask(secret)

    def csrf_refusal(self, form_token: str | None = None) -> str | None:
        """Why this request fails the CSRF check, or None when it passes.

        The browser-metadata checks (``Sec-Fetch-Site``, ``Origin``) need no key and always
        apply; the token check needs the keyring, so ``insecure_unsigned_cookies=True``
        (no keys) skips only that one."""
        options = self.settings.csrf
        if not options.enabled or self.method in csrf.SAFE_METHODS or options.exempted(self.path):
            return None
        reason = csrf.origin_refusal(options, self.headers, self.own_origin)
        if reason is None and self.engine.keyring is not None:
            token = self.headers.get(csrf.HEADER) or form_token
            if not token:
                reason = (
                    "CSRF token missing (send it as the csrf_token form field or the "
                    "X-CSRF-Token header)"
                )
            elif not csrf.token_matches(token, self._accepted_secrets()):
                reason = "CSRF token invalid for this session (reload the page and try again)"
        if reason is not None:
            security.info(
                "CSRF check failed on %s %s: %s",
                printable(self.method),
                printable(self.path),  # the client's: no forged log lines, no escapes
                printable(reason),
            )
            emit(self.engine.on_event, "security", reason="csrf_failure")
        return reason

    def _accepted_secrets(self) -> list[bytes]:
        keyring = self.engine.keyring
        assert keyring is not None
        session = self.session
        if session.user_id is not None and session.handle is not None:
            return csrf.secrets_for(keyring, csrf.session_message(session.handle))
        if self.presession is None:
            return []
        return csrf.secrets_for(keyring, csrf.presession_message(self.presession))

    def wants_form_token(self) -> bool:
        options = self.settings.csrf
        return (
            options.enabled
            and self.engine.keyring is not None  # no key, no token to look for
            and self.method not in csrf.SAFE_METHODS
            and not options.exempted(self.path)
            and csrf.HEADER not in self.headers
            and self.headers.get("content-type", "").split(";")[0].strip().lower()
            in ("application/x-www-form-urlencoded", "multipart/form-data")
        )

    # -- cookies the response must carry ---------------------------------------------------

    def response_cookies(self) -> list[str]:
        """Set-Cookie values for this response: the session's, and the pre-session's (set
        when a token was first made for an anonymous visitor; deleted at login).

        Every response carries them, error responses included: a commit that failed
        half-way (the new record created, a later store call failed) has already recorded
        the new record's cookie, and the client must get it, or it keeps a cookie that
        names nothing. Only a *stored* login deletes the pre-session cookie: after a login
        that did not commit, the visitor is still anonymous and still needs it."""
        out = list(self.cookies)
        session = self.session
        if session._outgoing_cookie is not None:
            out.append(session._outgoing_cookie)
            session._outgoing_cookie = None
        pre = self.settings.presession_cookie
        meta = session._meta
        user = None if meta is None else meta.user_id
        if (
            user is not None
            and not self.new_presession
            and self.settings.presession_cookie.name in self.headers.get("cookie", "")
            and self.presession is not None
        ):
            out.append(pre.delete_header())
            self.presession = None
        elif self.new_presession and user is None:
            out.append(pre.set_header(self.presession or "", csrf.PRESESSION_MAX_AGE))
            self.new_presession = False
        return out


def header_map(pairs: Any) -> dict[str, str]:
    """Lower-case header names to values; repeated headers joined (cookies with '; ')."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            out[name] += "; " if name == "cookie" else ", "
            out[name] += value
        else:
            out[name] = value
    return out


def csrf_token(request: Any) -> str:
    """A CSRF token for the current request, masked afresh: pass a Starlette/FastAPI
    ``Request``, an ASGI scope, or a WSGI environ. Put it in a hidden ``csrf_token`` form
    field or send it as the ``X-CSRF-Token`` header."""
    scope = getattr(request, "scope", request)
    ctx = scope.get("satchel") or scope.get("satchel.context")
    if not isinstance(ctx, RequestContext):
        raise LookupError("no satchel middleware ran for this request")
    return ctx.csrf_token()


def open_lazily(
    engine: Engine,
    store: Store,
    settings: Settings,
    session: Session,
    *,
    method: str,
    path: str,
    headers: dict[str, str],
    peer: str | None,
    scheme: str,
) -> RequestContext:
    """The sync paths (WSGI, Flask): the session is loaded on first access, committed
    through ``session.save()`` or by the caller at response start."""
    from .engine import drive

    session_id, resign = engine.session_id_from_cookie(headers.get("cookie"))
    if session_id is not None:

        def load() -> None:
            drive(engine.open(session, session_id, resign), store)

        session._loader = load
    ctx = RequestContext.build(
        engine,
        store,
        settings,
        session,
        method=method,
        path=path,
        headers=headers,
        peer=peer,
        scheme=scheme,
    )
    session._save_hook = lambda s: drive(engine.commit(s, ctx.request_info), store)
    return ctx
