"""What a middleware knows about one request, and the one response phase every path
shares.

:class:`RequestContext` is the session's binding: it opens the session through the
backend (eagerly on the async paths, on first access on the sync ones), commits it when
the response starts -- unless the app answered 5xx -- and renders what the commit hands
back through the request's transport (a cookie, or the ``X-Session-Token`` header for
bearer tokens), adding ``Cache-Control: no-store`` and ``Vary`` once. The ASGI HTTP and
WebSocket paths, WSGI, Flask and Django are adapters over it: they differ only in how
their framework spells a request and a response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import clear_site_data, csrf
from .backend import DELETE, Backend, DeviceInfo, TokenAction
from .cookies import CookieOptions, cookie_values
from .csrf_failure import (
    CSRFFailure,
    Reason,
    default_answer,
    insecure_transport,
    warn_insecure_transport,
    warned_insecure_transport,
)
from .dbsc import protocol
from .dbsc.options import DeviceBindingOptions
from .errors import ConfigurationError, SessionStateError, StoreError
from .events import emit
from .keyring import PURPOSE_CSRF
from .log import logger, security
from .ops import Flow, adrive, drive
from .origin import Network, Origin, resolve
from .printable import printable
from .session import Session, set_binding
from .transport import (
    HEADER,
    CookieTransport,
    Transport,
    header_map,
    with_session_headers,
    with_vary,
)

SCOPE_KEY = "satchel"
"""Where the ASGI middleware puts the request context in the scope."""
ENVIRON_KEY = "satchel.session"
CONTEXT_KEY = "satchel.context"
"""Where the WSGI middleware and Flask put the session and the context in the environ."""


_UNREAD = object()
_WEB_SCHEMES = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """What a middleware decides per request besides the backend: CSRF, trusted
    proxies, the cookies, and where bearer tokens replace the cookie."""

    csrf: csrf.CSRFOptions
    trusted_proxies: tuple[Network, ...]
    cookie: CookieOptions
    presession_cookie: CookieOptions
    token_paths: tuple[str, ...] = ()
    device: DeviceBindingOptions = field(default_factory=DeviceBindingOptions)
    clear_site_data: tuple[str, ...] = ("cookies",)
    """Directives of the ``Clear-Site-Data`` header of a logout response
    (:mod:`satchel.clear_site_data`); empty: none."""
    reauth_to_end_sessions: float | None = None
    """Ending the user's other sessions needs an authentication at most this old."""
    reauth_max_age: float = 300.0
    """What ``require_recent_auth`` accepts when its guard names no ``max_age``."""
    cookie_transport: CookieTransport = field(init=False)
    bound_cookie: CookieOptions = field(init=False)
    """The short-lived cookie of device-bound sessions (``<cookie name>_bound``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cookie_transport", CookieTransport(self.cookie))
        bound = CookieOptions(
            name=self.cookie.name + "_bound",
            path="/",
            secure=True,  # DBSC is HTTPS only
            httponly=True,
            samesite=self.cookie.samesite,
        )
        object.__setattr__(self, "bound_cookie", bound)

    def transport(self, path: str, headers: dict[str, str]) -> Transport:
        """How this request's session travels. On ``token_paths``: in the bearer token
        when the request carries one (its cookie, if any, is then not read), and for a
        request that carries neither (an API client's first call); a browser's cookie
        otherwise. Everywhere else: the cookie (an ``Authorization`` header there
        changes nothing)."""
        return self.transport_of(path, headers.get("cookie", ""), headers.get("authorization", ""))

    def transport_of(self, path: str, cookie: str, authorization: str) -> Transport:
        """:meth:`transport`, from the request's ``Cookie`` and ``Authorization`` values."""
        if not self.token_paths:
            return self.cookie_transport
        on_token_path = any(
            path == prefix or path.startswith(prefix + "/") for prefix in self.token_paths
        )
        if on_token_path and (
            HEADER.tokens_in(cookie, authorization)
            or not self.cookie_transport.tokens_in(cookie, authorization)
        ):
            return HEADER
        return self.cookie_transport


# -- the request ------------------------------------------------------------------------------


class RequestContext:
    """One request's view of its session: the session's binding.

    Built for every request, and most requests never touch their session: it holds what
    the request gave (the header map is made on first use, from the ASGI scope's raw
    pairs when given those) and works out everything else when asked. The ASGI
    middleware goes further for a request that carries no token (:meth:`pending`): the
    context reads its scope only when something first asks it a question."""

    __slots__ = (
        "_device",
        "_headers",
        "_origin",
        "_presession",
        "_raw_headers",
        "_scope",
        "app_path",
        "backend",
        "cookie_header",
        "csrf_made",
        "device_checked",
        "device_cookie_ms",
        "device_opened",
        "method",
        "mount",
        "new_presession",
        "outgoing",
        "path",
        "peer",
        "policy",
        "refresh",
        "scheme",
        "session",
        "ticket",
        "transport",
    )

    def __init__(
        self,
        backend: Backend,
        policy: RequestPolicy,
        session: Session,
        method: str,
        path: str,
        headers: dict[str, str] | None,
        peer: str | None,
        scheme: str,
        transport: Transport,
        cookie_header: str | None = None,
        raw_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.backend, self.policy, self.session = backend, policy, session
        self.method, self.path, self.peer, self.scheme = method, path, peer, scheme
        # where the app is mounted (ASGI root_path, WSGI SCRIPT_NAME), and the path below it
        self.mount, self.app_path = "", path
        self.transport = transport
        self._headers, self._raw_headers = headers, raw_headers
        if cookie_header is None:
            cookie_header = "" if headers is None else headers.get("cookie", "")
        self.cookie_header = cookie_header  # the Cookie header, repeats joined with '; '
        self.ticket: Any = None
        self.refresh = False
        self.outgoing: TokenAction | None = None
        self.new_presession = self.csrf_made = False
        self.device_checked = False  # satchel.dbsc.protocol looked at the session's binding
        self.device_cookie_ms = 0  # expiry of the valid bound cookie the request carried
        self.device_opened: tuple[str, str | None] | None = None  # (handle, binding) as opened
        # worked out on first use: most requests never need them
        self._origin: Origin | None = None
        self._device: DeviceInfo | None = None
        self._presession: Any = _UNREAD
        self._scope: Any = None

    @staticmethod
    def pending(
        backend: Backend, policy: RequestPolicy, scope: Any, cookie: str
    ) -> tuple[RequestContext, Session]:
        """The context of an ASGI request that carries no session token (the caller
        checked: no session cookie, no ``Authorization`` where bearer tokens are
        accepted), with a :meth:`Session.pending` session; it reads its scope only when
        something first asks it a question or tells it something, and then becomes an
        ordinary context. ``cookie``: the request's ``Cookie`` value (repeats joined
        with '; ', as :func:`scope_credentials` gives it), which the caller has read.
        Both are returned: an attribute read on a pending context goes through its
        ``__getattr__`` hook's slower lookup, even of a field that is set."""
        ctx = RequestContext.__new__(RequestContext)
        ctx.backend, ctx.policy, ctx._scope, ctx.cookie_header = backend, policy, scope, cookie
        ctx.session = session = Session.pending(ctx)
        ctx.__class__ = _PendingContext  # (after: its hooks would see the writes)
        return ctx, session

    def _fill(self) -> None:
        """Become an ordinary context: what :meth:`__init__` and :meth:`read_token`
        would have set, from the ASGI scope of a request without a token."""
        scope, policy, cookie = self._scope, self.policy, self.cookie_header
        if scope is None:
            raise SessionStateError(REQUEST_OVER)
        object.__setattr__(self, "__class__", RequestContext)
        self._scope = None
        path: str = scope.get("path", "/")
        root: str = scope.get("root_path", "")
        app_path = path[len(root) :] or "/" if root and path.startswith(root) else path
        client = scope.get("client")
        self.method = scope.get("method", "GET")
        self.path, self.mount, self.app_path = path, root, app_path
        self.peer = client[0] if client else None
        self.scheme = scope.get("scheme", "http")
        # (no bearer token; without token paths transport_of answers the cookie transport
        # at once, which is read here without the call: every anonymous login passes here)
        self.transport = (
            policy.transport_of(app_path, cookie, "")
            if policy.token_paths
            else policy.cookie_transport
        )
        self._headers, self._raw_headers = None, scope["headers"]
        self.ticket, self.refresh = None, False
        self.outgoing = None
        self.new_presession = self.csrf_made = self.device_checked = False
        self.device_cookie_ms = 0
        self.device_opened = self._origin = self._device = None
        self._presession = _UNREAD

    @property
    def headers(self) -> dict[str, str]:
        """The request's headers, lower-case names (repeats joined, cookies with '; ')."""
        headers = self._headers
        if headers is None:
            headers = self._headers = header_map(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw_headers
            )
        return headers

    def _header(self, name: bytes) -> str | None:
        """One header (lower-case name), repeats joined as :attr:`headers` joins them,
        without decoding every header into :attr:`headers`."""
        if self._headers is not None:
            return self._headers.get(name.decode("latin-1"))
        found = None
        for raw_name, raw_value in self._raw_headers:
            if raw_name == name:
                value = raw_value.decode("latin-1")
                found = value if found is None else f"{found}, {value}"
        return found

    @classmethod
    def build(
        cls,
        backend: Backend,
        policy: RequestPolicy,
        session: Session,
        *,
        method: str,
        path: str,
        headers: dict[str, str],
        peer: str | None,
        scheme: str,
        lazy: bool = False,
        app_path: str | None = None,
    ) -> RequestContext:
        """The context of a request; its token is checked here (no I/O). With ``lazy``
        the session loads on first access, else call :meth:`open`/:meth:`aopen`.
        ``app_path`` is the path below the app's mount point (``token_paths`` are
        relative to it, as WSGI's ``PATH_INFO`` is); default ``path``."""
        cookie = headers.get("cookie", "")
        transport = policy.transport_of(
            path if app_path is None else app_path, cookie, headers.get("authorization", "")
        )
        ctx = cls(backend, policy, session, method, path, headers, peer, scheme, transport)
        if app_path is not None:
            ctx.app_path = app_path
        ctx.read_token(cookie, headers.get("authorization", ""), lazy=lazy)
        return ctx

    def read_token(self, cookie: str, authorization: str, *, lazy: bool = False) -> None:
        """Check the token the request carries on its transport (no I/O), and bind the
        session: with ``lazy`` it loads on first access."""
        tokens = self.transport.tokens_in(cookie, authorization)
        if tokens:
            self.ticket, self.refresh = self.backend.read(tokens, cookie)
        self.session.bind(self, lazy=lazy and self.ticket is not None)

    # -- the binding: load, save ------------------------------------------------------------

    def _open_flow(self) -> Flow[Session]:
        return self.backend.open(self.session, self.ticket, self.refresh)

    def load(self, session: Session) -> None:
        if self.ticket is None:  # (a pending context's session: nothing to load)
            return
        drive(self._open_flow(), self.backend.store)
        self._opened()

    async def aopen(self) -> None:
        """Load the session before the app runs (the async paths)."""
        if self.ticket is not None:
            await adrive(self._open_flow(), self.backend.store)
            self._opened()

    def _opened(self) -> None:
        """A cookie that named no live session (expired, logged out, revoked) is deleted
        from the browser by this response, unless the request stores a new session:
        else every later request would cost a store lookup and a log line, forever.
        Only a page load's response (or a client's that sends no ``Sec-Fetch-Mode``)
        deletes it: a page's background requests (``fetch``, polling) still in flight with
        the old cookie when a login in another tab set the new one would delete that."""
        if (
            self.ticket is not None
            and self.session.id is None
            and self.outgoing is None
            and self.transport is self.policy.cookie_transport
            and self.headers.get("sec-fetch-mode", "navigate") == "navigate"
        ):
            self.outgoing = DELETE

    def _commit_flow(self) -> Flow[None]:
        try:
            action = yield from self.backend.commit(self.session, self.device_info)
        except StoreError as exc:
            self._take(exc.issued)  # a half-done commit's new token must still go out
            raise
        self._take(action)

    def save(self, session: Session) -> None:
        drive(self._commit_flow(), self.backend.store)

    async def asave(self, session: Session) -> None:
        await adrive(self._commit_flow(), self.backend.store)

    def _take(self, action: TokenAction | None) -> None:
        if action is None:
            return
        self.outgoing = None if action.withdrawn else action

    def use_bearer_token(self) -> None:
        """Answer this request's session in the ``X-Session-Token`` header instead of a
        cookie (an API login). The cookie session the request carried, if any, is left
        as it is: this request no longer sees it, and sends no cookie."""
        if not self.policy.token_paths:
            raise ConfigurationError(
                "bearer tokens are off: set token_paths (e.g. ['/api/']) to accept them"
            )
        if self.transport is HEADER:
            return
        if self.session.holds_changes:
            raise SessionStateError(
                "use_bearer_token() must come before the session is changed in this request"
            )
        self.transport, self.outgoing, self.new_presession = HEADER, None, False
        self.ticket, self.refresh = None, False  # the cookie's: never loaded or re-sent here
        self.session.forget()

    # -- the response phase -----------------------------------------------------------------

    # (a store error thrown into the commit's flow comes out of drive(): caught here, not
    # in a flow of its own wrapped around the commit's, one generator fewer per commit)

    def finish(self, status: int) -> StoreError | None:
        """Commit at response start unless the app answered 5xx; the store's failure, if
        it failed (answer with the store-unavailable response instead)."""
        if status >= 500 or not self.session.needs_commit:  # most requests: no flow at all
            return None
        try:
            drive(self._commit_flow(), self.backend.store)
        except StoreError as exc:
            return _commit_failed(exc)
        return None

    async def afinish(self, status: int) -> StoreError | None:
        if status >= 500 or not self.session.needs_commit:
            return None
        try:
            await adrive(self._commit_flow(), self.backend.store)
        except StoreError as exc:
            return _commit_failed(exc)
        return None

    def end(self) -> None:
        """The request is over (its response sent, or abandoned): every path calls this
        last. The context and its session refer to each other (and a pending context and
        its scope): left so, each request would leave a cycle for the garbage collector
        (about 8 collections per 1,000 requests, and a pause of tens of milliseconds every
        10,000 or so). The session gets an :class:`EndedRequest` in place of this context
        (:meth:`Session.end_request`)."""
        ticket = self.ticket
        ended = None if ticket is None else EndedRequest(self.backend, ticket, self.refresh)
        self.session.end_request(ended)

    def response_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """``headers`` with what the session must carry: its token (rendered by the
        transport) and the pre-session cookie; then ``Cache-Control: no-store``
        (replacing any other caching policy: a response carrying a token must never be
        cached) and the transport's header in ``Vary``. Every response carries them, a
        503 included: a commit that failed half-way has already issued the new record's
        token, and the client must get it, or it keeps one that names nothing."""
        lines = self.session_lines()
        if lines:
            return with_session_headers(headers, lines)
        if self.read_session:
            return with_vary(headers, self.transport.vary)
        return list(headers)

    @property
    def read_session(self) -> bool:
        """Whether the response depends on the session (the app read it, or a CSRF token
        bound to it was made): it must vary on the header that carried it."""
        return self.session.accessed or self.csrf_made

    def session_lines(self) -> list[tuple[str, str]]:
        """The header lines the session adds to this response (consumed: a second call
        adds nothing)."""
        user = self.session.stored_user_id
        if (
            self.outgoing is None
            and not self.new_presession
            and user is None
            and not self.device_checked
        ):
            return []  # most responses: no token, no pre-session cookie to set or delete
        action, self.outgoing = self.outgoing, None
        out = [] if action is None else self.transport.render(action)
        if self.device_checked:
            out += protocol.response_lines(self, action)
            user = self.session.stored_user_id
        sets_presession = self.new_presession and user is None
        if self.new_presession or (
            user is not None and self.policy.presession_cookie.name in self.cookie_header
        ):  # (else _presession_lines has nothing to say: most logins)
            out += self._presession_lines()
        if (
            action is not None
            and action.logout
            and self.policy.clear_site_data
            and self.transport is self.policy.cookie_transport  # (bearer clients: no site data)
        ):
            # (the logout tombstone is a cookie too: cleared at once, it could stop nothing)
            sets_cookie = action.token is not None or action.logout_marker is not None
            sets_cookie = sets_cookie or sets_presession
            value = clear_site_data.header_value(self.policy.clear_site_data, sets_cookie)
            if value is not None:
                out.append((clear_site_data.HEADER, value))
        # (the cheaper question first: over https it answers at once)
        if out and self.insecure_transport and not warned_insecure_transport():
            warn_insecure_transport(self.origin.host)
        return out

    def device_answer(self) -> protocol.Answer | None:
        """With device-bound sessions on: the answer of a DBSC endpoint, or the refusal of
        a session that cannot prove its device, in place of the app's (the session is
        opened first). None: the app runs. Call it after the session is open (or bound
        lazily), before the CSRF check."""
        if not self.policy.device.enabled:
            return None
        return protocol.before_app(self)

    def _presession_lines(self) -> list[tuple[str, str]]:
        """The pre-session cookie: set when a CSRF token was first made for an anonymous
        visitor; deleted once a login is stored (after a login that did not commit, the
        visitor is still anonymous and still needs it)."""
        pre = self.policy.presession_cookie
        user = self.session.stored_user_id
        if (
            user is not None
            and not self.new_presession
            and pre.name in self.cookie_header
            and self.presession is not None
        ):
            self.presession = None
            return [("set-cookie", pre.delete_header())]
        if self.new_presession and user is None:
            self.new_presession = False
            return [("set-cookie", pre.set_header(self.presession or "", csrf.PRESESSION_MAX_AGE))]
        return []

    # -- where the request came from ----------------------------------------------------------

    @property
    def origin(self) -> Origin:
        """Client IP, scheme and host, forwarding headers believed from trusted proxies."""
        if self._origin is None:
            self._origin = resolve(
                self.peer, self.scheme, self.headers, self.policy.trusted_proxies
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

    def device_info(self) -> DeviceInfo:
        device = self._device
        if device is None:
            agent = self._header(b"user-agent")
            # with no proxy trusted, the client is the peer: no headers to read for it
            ip = self.origin.client_ip if self.policy.trusted_proxies else self.peer
            # (by position: keywords cost a frozen dataclass about 1,000 instructions more)
            device = self._device = DeviceInfo(agent[:512] if agent else None, ip)
        return device

    request_info = device_info  # the name before 0.2

    # -- CSRF -----------------------------------------------------------------------------------

    @property
    def presession(self) -> str | None:
        """The pre-session cookie's value, if the request carries a plausible one."""
        if self._presession is _UNREAD:
            name = self.policy.presession_cookie.name
            values = cookie_values(self.cookie_header, name)
            self._presession = next((v for v in values if 20 <= len(v) <= 64 and v.isascii()), None)
        return self._presession  # type: ignore[no-any-return]

    @presession.setter
    def presession(self, value: str | None) -> None:
        self._presession = value

    def csrf_token(self) -> str:
        """A token for the current session, masked afresh on every call. Without secret
        keys (``insecure_unsigned_cookies=True``) there is no token to make: an empty
        string, so templates still render; only the Origin and ``Sec-Fetch-Site`` checks
        then apply."""
        keyring = self.backend.keyring
        if keyring is None:
            return ""
        self.csrf_made = True
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

    @property
    def carries_cookie(self) -> bool:
        """Whether the request carries a session cookie (valid or not)."""
        return bool(self.policy.cookie_transport.tokens_in(self.cookie_header, ""))

    def csrf_applies(self) -> bool:
        """Whether this request must pass the CSRF check: an unsafe method, not exempt,
        on the cookie transport -- or carrying a session cookie, whatever other headers
        it has. Only a request authenticated by a bearer token alone is spared: a browser
        never attaches one to a cross-site request."""
        options = self.policy.csrf
        return (
            options.enabled
            and self.method not in csrf.SAFE_METHODS
            and not options.exempted(self.path)
            and (self.transport.checks_csrf or self.carries_cookie)
        )

    def _csrf_forcible(self) -> bool:
        return self.method not in csrf.SAFE_METHODS and (
            self.transport.checks_csrf or self.carries_cookie
        )

    def csrf_refusal(self, form_token: str | None = None, *, force: bool = False) -> str | None:
        """Why this request fails the CSRF check (one line), or None when it passes:
        :meth:`csrf_check`'s message."""
        failure = self.csrf_check(form_token, force=force)
        return None if failure is None else failure.message

    def csrf_check(
        self, form_token: str | None = None, *, force: bool = False
    ) -> CSRFFailure | None:
        """Why this request fails the CSRF check, or None when it passes (``force``:
        check even where the middleware's settings would not, e.g. FastAPI's
        dependency).

        The browser-metadata checks (``Sec-Fetch-Site``, ``Origin``) need no key and always
        apply; the token check needs the keyring, so ``insecure_unsigned_cookies=True``
        (no keys) skips only that one."""
        if not (self.csrf_applies() or (force and self._csrf_forcible())):
            return None
        self.session.ensure_loaded()  # the token is bound to the session
        options = self.policy.csrf
        found: tuple[Reason, str] | None = csrf.origin_failure(
            options, self.headers, self.own_origin
        )
        if found is None and self.backend.keyring is not None:
            token = self.headers.get(csrf.HEADER) or form_token
            if not token:
                found = (
                    "token_missing",
                    "CSRF token missing (send it as the csrf_token form field or the "
                    "X-CSRF-Token header)",
                )
            elif not csrf.token_matches(token, self._accepted_secrets()):
                found = (
                    "token_invalid",
                    "CSRF token invalid for this session (reload the page and try again)",
                )
        if found is None:
            return None
        reason, message = found
        insecure = self.insecure_transport
        if insecure:
            message += "; the session cookies are Secure but this request came over plain http"
        security.info(
            "CSRF check failed on %s %s: %s",
            printable(self.method),
            printable(self.path),  # the client's: no forged log lines, no escapes
            printable(message),
        )
        emit(self.backend.on_event, "security", reason="csrf_failure")
        return CSRFFailure(reason, message, insecure)

    @property
    def insecure_transport(self) -> bool:
        """Whether this request came over plain http to a host other than loopback while
        the session cookie is Secure: the browser drops what is set here."""
        policy = self.policy
        if not policy.cookie.secure:
            return False
        if not policy.trusted_proxies and self.scheme.lower() not in ("http", "ws"):
            # no forwarding header is believed, so the scheme is the scope's: https (or
            # wss) needs no Host, and the headers are not decoded for this on every
            # response that sets a cookie
            return False
        origin = self.origin
        return insecure_transport(self.policy.cookie.secure, origin.scheme, origin.host)

    def csrf_answer(self, failure: CSRFFailure) -> tuple[int, list[tuple[str, str]], bytes]:
        """The default answer to ``failure``: an HTML page, or JSON for API clients."""
        headers = self.headers
        return default_answer(failure, headers.get("accept", ""), headers.get("content-type", ""))

    def _accepted_secrets(self) -> list[bytes]:
        keyring = self.backend.keyring
        assert keyring is not None
        session = self.session
        if session.user_id is not None and session.handle is not None:
            return csrf.secrets_for(keyring, csrf.session_message(session.handle))
        if self.presession is None:
            return []
        return csrf.secrets_for(keyring, csrf.presession_message(self.presession))

    def wants_form_token(self, *, force: bool = False) -> bool:
        return (
            (self.csrf_applies() or (force and self._csrf_forcible()))
            and self.backend.keyring is not None  # no key, no token to look for
            and csrf.HEADER not in self.headers
            and self.headers.get("content-type", "").split(";")[0].strip().lower()
            in ("application/x-www-form-urlencoded", "multipart/form-data")
        )


class EndedRequest:
    """The binding a session whose request carried a token keeps once the request is
    over: it loads the session if nothing did during the request (an outer middleware, a
    test reading it afterwards), keeps the middleware's clock, and refuses to save: the
    response has gone, and with it any chance to send a new token or to answer 503."""

    __slots__ = ("backend", "refresh", "ticket")

    def __init__(self, backend: Backend, ticket: Any, refresh: bool) -> None:
        self.backend, self.ticket, self.refresh = backend, ticket, refresh

    def load(self, session: Session) -> None:
        if self.ticket is not None:
            drive(self.backend.open(session, self.ticket, self.refresh), self.backend.store)

    def save(self, session: Session) -> None:
        raise SessionStateError(_ENDED)

    async def asave(self, session: Session) -> None:
        raise SessionStateError(_ENDED)


REQUEST_OVER = "this request is over: nothing can be asked of it now"
"""What an ended request's context answers any question (the ASGI scope or WSGI environ
it read is gone)."""

_ENDED = (
    "this session's request is over: it can no longer be saved (save while the request "
    "runs: before the response starts, while its body streams, or in a background task "
    "the framework runs within the request)"
)


def _commit_failed(exc: StoreError) -> StoreError:
    """A commit's store failure, logged: what :meth:`RequestContext.finish` answers."""
    logger.error("session store unavailable while committing: %s", exc)
    return exc


class _PendingContext(RequestContext):
    """A :meth:`RequestContext.pending` context before its first use: reading a field
    not set yet, or setting any, first makes it an ordinary :class:`RequestContext`
    (class and all), so this hook costs nothing to the requests that use it."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:  # (only for fields not set yet)
        if name not in _FIELDS:
            raise AttributeError(name)
        RequestContext._fill(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        RequestContext._fill(self)
        setattr(self, name, value)

    def load(self, session: Session) -> None:  # the session's first use
        RequestContext._fill(self)  # (through the class: see pending())

    def end(self) -> None:  # (nothing asked it anything; no token: nothing to load later)
        set_binding(self.session, None)  # (RequestContext.end's, without a call more)
        _set_scope(self, None)  # (not the hook)


_FIELDS = frozenset(RequestContext.__slots__)
_set_scope: Callable[[RequestContext, Any], None] = RequestContext.__dict__["_scope"].__set__


def scope_credentials(scope: Any, bearer: bool) -> tuple[str, str]:
    """An ASGI scope's ``Cookie`` value (repeats joined with '; ') and, where bearer
    tokens are accepted, its ``Authorization`` value (else empty)."""
    cookie = authorization = None
    for name, value in scope["headers"]:
        if name == b"cookie":
            text = value.decode("latin-1")
            cookie = text if cookie is None else f"{cookie}; {text}"
        elif bearer and name == b"authorization":
            text = value.decode("latin-1")
            authorization = text if authorization is None else f"{authorization}, {text}"
    return cookie or "", authorization or ""


def use_bearer_token(session: Session) -> None:
    """Make the current request answer ``session`` as a bearer token, in the
    ``X-Session-Token`` response header, never in a cookie: call it first thing in an API
    login view (see :meth:`RequestContext.use_bearer_token`)."""
    context_of(session).use_bearer_token()


def context_of(session: Session) -> RequestContext:
    """The request context a middleware bound ``session`` to."""
    binding = session.binding
    if not isinstance(binding, RequestContext):
        if isinstance(binding, EndedRequest):
            raise SessionStateError(_ENDED)
        raise SessionStateError("this session was not loaded by satchel's middleware")
    return binding


def csrf_token(request: Any) -> str:
    """A CSRF token for the current request, masked afresh: pass a Starlette/FastAPI
    ``Request``, an ASGI scope, or a WSGI environ. Put it in a hidden ``csrf_token`` form
    field or send it as the ``X-CSRF-Token`` header."""
    scope = getattr(request, "scope", request)
    ctx = scope.get(SCOPE_KEY) or scope.get(CONTEXT_KEY)
    if not isinstance(ctx, RequestContext):
        raise SessionStateError("no satchel middleware ran for this request")
    return ctx.csrf_token()
