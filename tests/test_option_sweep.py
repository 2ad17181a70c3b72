"""No documented option is silently ignored.

Generated from the option schema: every middleware argument (``SessionOptions`` and the
constructors' own keywords), every setting (``satchel.settings.Settings``) as a TOML key
(flat and in its ``[cookie]``/``[csrf]`` section), a ``SATCHEL_*`` environment variable and
a Flask ``SATCHEL_*`` config key. Each must change what a client or the store observes,
compared with the same site without it, or be refused with a ConfigurationError naming it.
A new option without an entry in CHECKS fails ``test_every_option_has_a_check``. Django's
``SATCHEL`` dict is swept in tests/test_integration_django.py (Django's settings are
process-wide), from the same schema.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from satchel import asgi, auth, guard, wsgi
from satchel._types import WSGIApp
from satchel.errors import ConfigurationError, ReauthenticationRequired
from satchel.keyring import KID_LENGTH
from satchel.options import SessionOptions
from satchel.request import csrf_token
from satchel.session import Session
from satchel.settings import Settings, load_settings
from satchel.stores.sqlite import SQLiteStore

from .conftest import KEY, OLD_KEY
from .dbsc_device import Device, registration_offer

PEER = "127.0.0.1"  # every test client below connects from here
FORWARDED = "203.0.113.9"
OTHER_ORIGIN = "https://other.example"
DEAD_STORE = "redis://127.0.0.1:1/0?socket_timeout=1&connect_timeout=1"

# -- the site: the same routes on ASGI (Starlette), WSGI and Flask ----------------------------


@dataclass
class Ctx:
    """One run's world: its files and what hooks saw."""

    tmp: Path
    events: list[Any] = field(default_factory=list)

    @property
    def base_db(self) -> Path:
        return self.tmp / "base.db"

    @property
    def other_db(self) -> Path:
        return self.tmp / "other.db"


@dataclass(frozen=True)
class Resp:
    status: int
    cookies: tuple[str, ...]  # Set-Cookie values
    text: str
    location: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Browser:
    """One client with its cookie jar, over any of the three kinds of app."""

    def __init__(self, request: Callable[[str, str, dict[str, str]], Resp]) -> None:
        self._request = request

    def get(self, path: str, **headers: str) -> Resp:
        return self._request("GET", path, headers)

    def post(self, path: str, **headers: str) -> Resp:
        return self._request("POST", path, headers)


def _session(request_session: Any) -> Session:
    assert isinstance(request_session, Session)
    return request_session


def _starlette_app() -> Starlette:
    async def set_(request: Request) -> Response:
        _session(request.session)["n"] = "1"
        return PlainTextResponse("ok")

    async def read(request: Request) -> Response:
        return PlainTextResponse(json.dumps(dict(_session(request.session))))

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(_session(request.session).user_id or "-")

    async def login(request: Request) -> Response:
        auth.login(_session(request.session), request.query_params["user"])
        return PlainTextResponse("ok")

    async def logout(request: Request) -> Response:
        auth.logout(_session(request.session))
        return PlainTextResponse("bye")

    async def everywhere(request: Request) -> Response:
        try:
            await auth.alogout_everywhere(_session(request.session))
        except ConfigurationError:  # cookie sessions without revocation_store= refuse
            return PlainTextResponse("refused")
        except ReauthenticationRequired:
            return PlainTextResponse("reauthenticate")
        return PlainTextResponse("ok")

    async def token(request: Request) -> Response:
        return PlainTextResponse(csrf_token(request))

    async def post(request: Request) -> Response:
        return PlainTextResponse("posted")

    @guard.require_recent_auth
    async def sensitive(request: Request) -> Response:
        return PlainTextResponse("done")

    return Starlette(
        routes=[
            Route("/set", set_),
            Route("/read", read),
            Route("/whoami", whoami),
            Route("/login", login),
            Route("/logout", logout),
            Route("/logout-everywhere", everywhere),
            Route("/token", token),
            Route("/post", post, methods=["POST"]),
            Route("/sensitive", sensitive),
        ]
    )


def _done(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


_wsgi_sensitive: WSGIApp = guard.require_recent_auth_wsgi(_done)


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = _session(environ["satchel.session"])
    path = environ["PATH_INFO"]
    if path == "/sensitive":
        return _wsgi_sensitive(environ, start_response)
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if p)
    body = "ok"
    if path == "/set":
        session["n"] = "1"
    elif path == "/read":
        body = json.dumps(dict(session))
    elif path == "/whoami":
        body = session.user_id or "-"
    elif path == "/login":
        auth.login(session, query["user"])
    elif path == "/logout":
        auth.logout(session)
    elif path == "/logout-everywhere":
        try:
            auth.logout_everywhere(session)
        except ConfigurationError:
            body = "refused"
        except ReauthenticationRequired:
            body = "reauthenticate"
    elif path == "/token":
        body = csrf_token(environ)
    elif path == "/post":
        body = "posted"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


def _flask_app(config: dict[str, Any], **explicit: Any) -> Any:
    from flask import Flask, request, session

    from satchel.integrations import flask as satchel_flask

    app = Flask(__name__)
    app.config.update(config)

    @app.get("/set")
    def set_() -> str:
        session["n"] = "1"
        return "ok"

    @app.get("/read")
    def read() -> str:
        return json.dumps(dict(session))

    @app.get("/whoami")
    def whoami() -> str:
        return satchel_flask.current_user_id() or "-"

    @app.get("/login")
    def login() -> str:
        satchel_flask.login_user(request.args["user"])
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        satchel_flask.logout_user()
        return "bye"

    @app.get("/logout-everywhere")
    def everywhere() -> str:
        try:
            satchel_flask.logout_everywhere()
        except ConfigurationError:
            return "refused"
        except ReauthenticationRequired:
            return "reauthenticate"
        return "ok"

    @app.get("/token")
    def token() -> str:
        return csrf_token(request.environ)

    @app.post("/post")
    def post() -> str:
        return "posted"

    @app.get("/private")
    @satchel_flask.login_required
    def private() -> str:
        return "private"

    @app.get("/sensitive")
    @satchel_flask.require_recent_auth()
    def sensitive() -> str:
        return "done"

    satchel_flask.Satchel(app, **explicit)
    return app


def _asgi_browser(app: Any) -> Iterator[Browser]:
    while True:
        client = TestClient(app, base_url="https://testserver", client=(PEER, 50000))

        def request(method: str, path: str, headers: dict[str, str], c: Any = client) -> Resp:
            r = c.request(method, path, headers=headers, follow_redirects=False)
            return Resp(
                r.status_code,
                tuple(r.headers.get_list("set-cookie")),
                r.text,
                r.headers.get("location", ""),
                dict(r.headers),
            )

        yield Browser(request)


def _wsgi_browser(app: Any) -> Iterator[Browser]:
    while True:
        client = WerkzeugClient(app)

        def request(method: str, path: str, headers: dict[str, str], c: Any = client) -> Resp:
            path, _, query = path.partition("?")
            if "Cookie" in headers:  # a cookie given by hand: werkzeug's jar would drop it
                c = WerkzeugClient(app, use_cookies=False)
            r = c.open(
                path,
                method=method,
                query_string=query,
                headers=headers,
                base_url="https://testserver",
                environ_base={"REMOTE_ADDR": PEER},
            )
            return Resp(
                r.status_code,
                tuple(r.headers.getlist("Set-Cookie")),
                r.get_data(as_text=True),
                r.headers.get("Location", ""),
                {k.lower(): v for k, v in r.headers.items()},
            )

        yield Browser(request)


# -- what is observed ---------------------------------------------------------------------------


def _session_cookies(resp: Resp) -> list[str]:
    return [c for c in resp.cookies if "_csrf=" not in c.split(";")[0]]


def observe_cookie(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """The session cookie's attributes (value blanked) and the key ID that signed it."""
    cookies = _session_cookies(next(browsers).get("/set"))
    shown = []
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        value, _, attributes = rest.partition(";")
        signature = value.partition(".")[2]
        shown.append((name, attributes.strip(), signature[:KID_LENGTH] if signature else None))
    return shown


def observe_csrf(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Statuses of unsafe requests: no token; a token but same-site; a token from another
    origin; a token, same origin."""
    browser = next(browsers)
    token = browser.get("/token").text
    return (
        browser.post("/post").status,
        browser.post("/post", **{"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"}).status,
        browser.post("/post", **{"X-CSRF-Token": token, "Origin": OTHER_ORIGIN}).status,
        browser.post("/post", **{"X-CSRF-Token": token}).status,
    )


def _records(path: Path) -> list[Any]:
    store = SQLiteStore(path)
    try:
        now = time.time()
        return [(m, store.load(k, now)) for k, m in store.iter_sessions(now)]
    finally:
        store.close()


def observe_record(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """What the store holds after a session is made (behind a proxy) and read again."""
    browser = next(browsers)
    browser.get("/set", **{"X-Forwarded-For": FORWARDED})
    time.sleep(0.01)
    browser.get("/read", **{"X-Forwarded-For": FORWARDED})
    out = []
    for meta, record in _records(ctx.base_db):
        out.append(
            {
                "idle": meta.idle_timeout,
                "absolute": round(meta.absolute_deadline - meta.created),
                "seen_again": meta.last_seen > meta.created,
                "ip": meta.client_ip,
                "future": meta.created > time.time() + 3600,
                "encrypted": record is not None and record.data["n"].startswith("!"),
            }
        )
    return out


def observe_per_user(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """How many of one user's sessions live after logging in on three devices."""
    for _ in range(3):
        next(browsers).get("/login?user=u")
    return sum(1 for meta, _ in _records(ctx.base_db) if meta.user_id == "u")


def observe_events(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    next(browsers).get("/login?user=u")
    return sorted({e.kind for e in ctx.events})


def observe_store(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Which store the session went to."""
    next(browsers).get("/set")
    return {p.name: len(_records(p)) for p in (ctx.base_db, ctx.other_db) if p.exists()}


def observe_unavailable(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    resp = next(browsers).get("/set")
    return resp.status, resp.text


def observe_csrf_failure(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    resp = next(browsers).post("/set")  # no token
    return resp.status, resp.text


def observe_revocation(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Whether a cookie copied before "log out everywhere" still logs its thief in."""
    victim, thief = next(browsers), next(browsers)
    login = victim.get("/login?user=u")
    (stolen,) = _session_cookies(login)
    victim.get("/logout-everywhere")
    return thief.get("/whoami", Cookie=stolen.split(";")[0]).text


def observe_transport(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Whether a client without a cookie gets its new session as a cookie."""
    return len(_session_cookies(next(browsers).get("/set")))


def observe_device_binding(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """A login's offer to bind, the binding (its bound cookie's lifetime), and what the
    session's next request gets."""
    browser = next(browsers)
    login = browser.get("/login?user=u")
    out: dict[str, Any] = {"offer": None}
    offer = login.headers.get("secure-session-registration")
    if offer is not None:
        path, challenge = registration_offer(offer)
        proof = Device().proof(challenge, with_jwk=True)
        bound = browser.post(path, **{"Secure-Session-Response": proof})
        (cookie,) = [c for c in bound.cookies if c.startswith("satchel_bound=")]
        out = {"offer": path, "bound": bound.status, "cookie": cookie.split("; ", 1)[1]}
    time.sleep(0.01)
    after = browser.get("/whoami")
    return {**out, "next": (after.status, after.location)}


def observe_ending_sessions(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Whether "log out everywhere" a moment after the login is let through."""
    browser = next(browsers)
    browser.get("/login?user=u")
    time.sleep(0.01)
    return browser.get("/logout-everywhere").text


def observe_sensitive(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """Whether ``require_recent_auth`` (no ``max_age`` of its own) lets a login of a moment
    ago through."""
    browser = next(browsers)
    browser.get("/login?user=u")
    time.sleep(0.01)
    return browser.get("/sensitive").status


def observe_logout(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    """The Clear-Site-Data header of a logout."""
    browser = next(browsers)
    browser.get("/login?user=u")
    return browser.get("/logout").headers.get("clear-site-data")


def observe_login_redirect(browsers: Iterator[Browser], ctx: Ctx) -> Any:
    return next(browsers).get("/private").location


# -- the checks: one or more per option ---------------------------------------------------------


@dataclass(frozen=True)
class Dyn:
    """A value that depends on the run (paths, hooks)."""

    make: Callable[[Ctx], Any]


@dataclass(frozen=True)
class Check:
    value: Any
    observe: Callable[[Iterator[Browser], Ctx], Any] | None = None
    refused: str | None = None  # a ConfigurationError message must match this
    base: dict[str, Any] = field(default_factory=dict)  # other options this check needs


OTHER_STORE = Dyn(lambda ctx: f"sqlite:///{ctx.other_db}")
COOKIE = observe_cookie
CSRF = observe_csrf
RECORD = observe_record
DEVICE = observe_device_binding

CHECKS: dict[str, list[Check]] = {
    "store": [Check(OTHER_STORE, observe_store)],
    "secret_keys": [Check([OLD_KEY], COOKIE)],
    "insecure_unsigned_cookies": [
        Check(True, COOKIE, base={"secret_keys": None}),
        Check(True, refused="insecure_unsigned_cookies"),
    ],
    "encrypt_at_rest": [
        Check(True, RECORD),
        Check(True, refused="encrypt_at_rest", base={"store": "cookie://"}),
    ],
    "revocation_store": [
        Check(OTHER_STORE, observe_revocation, base={"store": "cookie://"}),
        Check(OTHER_STORE, refused="revocation_store"),
    ],
    "max_sessions_per_user": [
        Check(1, observe_per_user),
        Check(1, refused="max_sessions_per_user", base={"store": "cookie://"}),
    ],
    "on_event": [Check(Dyn(lambda ctx: ctx.events.append), observe_events)],
    "csrf": [Check(False, CSRF)],
    "csrf_exempt": [Check(["/post"], CSRF)],
    "csrf_allow_same_site": [Check(True, CSRF)],
    "csrf_trusted_origins": [Check([OTHER_ORIGIN], CSRF)],
    "trusted_proxies": [Check([PEER], RECORD)],
    "cookie_name": [Check("__Host-sid", COOKIE)],
    "cookie_path": [Check("/app", COOKIE)],
    "cookie_domain": [Check("example.test", COOKIE)],
    "cookie_secure": [Check(False, COOKIE)],
    "cookie_httponly": [Check(False, COOKIE)],
    "cookie_samesite": [Check("strict", COOKIE)],
    "cookie_partitioned": [Check(True, COOKIE)],
    "cookie_persistent": [Check(True, COOKIE)],
    "idle_timeout": [Check(600.0, RECORD)],
    "absolute_timeout": [Check(7200.0, RECORD)],
    "refresh_interval": [Check(0.0, RECORD)],
    "assurance": [Check("aal3", RECORD), Check("aal4", refused="assurance")],
    "reauth_to_end_sessions": [Check(0.0, observe_ending_sessions)],
    "reauth_max_age": [Check(0.001, observe_sensitive)],
    "assurance_allow_weaker": [
        Check(True, RECORD, base={"assurance": "aal3", "idle_timeout": 3600.0}),
    ],
    "clock": [Check(Dyn(lambda ctx: lambda: time.time() + 86400), RECORD)],
    "token_paths": [
        Check(["/set"], observe_transport),
        Check(["/set"], refused="token_paths", base={"store": "cookie://"}),
    ],
    "on_store_unavailable": [
        Check(Dyn(lambda ctx: "custom"), observe_unavailable, base={"store": DEAD_STORE})
    ],
    "on_csrf_failure": [Check(Dyn(lambda ctx: "custom refusal"), observe_csrf_failure)],
    "clear_site_data": [
        Check(["storage"], observe_logout),
        Check([], observe_logout),
        Check(["cookie"], refused="clear_site_data"),
    ],
    "dbsc": [Check(True, DEVICE)],
    "dbsc_cookie_lifetime": [Check(30.0, DEVICE, base={"dbsc": True})],
    "dbsc_grace": [Check(0.0, DEVICE, base={"dbsc": True})],
    "dbsc_path": [Check("/auth/dbsc", DEVICE, base={"dbsc": True})],
    "dbsc_required": [Check(True, DEVICE, base={"dbsc": True, "dbsc_grace": 0.0})],
    "dbsc_redirect": [
        Check("/sign-in", DEVICE, base={"dbsc": True, "dbsc_required": True, "dbsc_grace": 0.0})
    ],
    # Flask's own
    "login_url": [Check("/sign-in", observe_login_redirect)],
}

MIDDLEWARE_OPTIONS = sorted(
    {*SessionOptions.__annotations__}
    | {
        name
        for cls in (asgi.SessionMiddleware, wsgi.SessionMiddleware)
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "app") and p.kind is not p.VAR_KEYWORD
    }
)
SETTINGS = sorted(f.name for f in fields(Settings) if f.name != "sources")
FLASK_OWN = ["login_url"]


def test_every_option_has_a_check() -> None:
    documented = set(MIDDLEWARE_OPTIONS) | set(SETTINGS) | set(FLASK_OWN)
    assert not documented - set(CHECKS), "options without a behaviour check"
    assert set(SETTINGS) <= set(MIDDLEWARE_OPTIONS)  # every setting is a middleware option


# -- running a site with some options ---------------------------------------------------------


def _resolve(value: Any, ctx: Ctx) -> Any:
    return value.make(ctx) if isinstance(value, Dyn) else value


def _base(ctx: Ctx) -> dict[str, Any]:
    return {"store": f"sqlite:///{ctx.base_db}", "secret_keys": [KEY]}


def _options(ctx: Ctx, check: Check, with_option: str | None) -> dict[str, Any]:
    options = {**_base(ctx), **{k: _resolve(v, ctx) for k, v in check.base.items()}}
    if with_option is not None:
        options[with_option] = _resolve(check.value, ctx)
    return {k: v for k, v in options.items() if v is not None}


def _unavailable_asgi(reply: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse(reply, status_code=503)(scope, receive, send)

    return app


def _unavailable_wsgi(reply: str) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [reply.encode()]

    return app


def _csrf_failure_asgi(reply: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        reason = scope["satchel.csrf_failure"].reason
        await PlainTextResponse(f"{reply}: {reason}", status_code=400)(scope, receive, send)

    return app


def _csrf_failure_wsgi(reply: str) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [f"{reply}: {environ['satchel.csrf_failure'].reason}".encode()]

    return app


def _asgi_site(options: dict[str, Any]) -> Iterator[Browser]:
    options = dict(options)
    if "on_store_unavailable" in options:
        options["on_store_unavailable"] = _unavailable_asgi(options["on_store_unavailable"])
    if "on_csrf_failure" in options:
        options["on_csrf_failure"] = _csrf_failure_asgi(options["on_csrf_failure"])
    return _asgi_browser(asgi.SessionMiddleware(_starlette_app(), **options))


def _wsgi_site(options: dict[str, Any]) -> Iterator[Browser]:
    options = dict(options)
    if "on_store_unavailable" in options:
        options["on_store_unavailable"] = _unavailable_wsgi(options["on_store_unavailable"])
    if "on_csrf_failure" in options:
        options["on_csrf_failure"] = _csrf_failure_wsgi(options["on_csrf_failure"])
    return _wsgi_browser(wsgi.SessionMiddleware(_wsgi_app, **options))


def _settings_site(settings: Settings) -> Iterator[Browser]:
    return _asgi_site({"store": settings.store, **settings.middleware_options()})


def _toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, float) else repr(value)


def _toml_site(options: dict[str, Any], ctx: Ctx, sectioned: bool) -> Iterator[Browser]:
    flat: list[str] = []
    sections: dict[str, list[str]] = {"cookie": [], "csrf": []}
    for name, value in options.items():
        section = name.partition("_")[0] if name.startswith(("cookie_", "csrf")) else None
        if sectioned and section in sections:
            key = name.partition("_")[2] or "enabled"
            sections[section].append(f"{key} = {_toml_value(value)}")
        else:
            flat.append(f"{name} = {_toml_value(value)}")
    text = "\n".join(flat) + "".join(
        f"\n[{s}]\n" + "\n".join(lines) for s, lines in sections.items() if lines
    )
    path = ctx.tmp / "satchel.toml"
    path.write_text(text + "\n")
    return _settings_site(load_settings(path, env={}))


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value) or "none"  # (an empty variable is no setting)
    return str(value)


def _env_site(options: dict[str, Any], ctx: Ctx) -> Iterator[Browser]:
    env = {f"SATCHEL_{k.upper()}": _env_value(v) for k, v in options.items()}
    return _settings_site(load_settings(env=env, use_file=False))


def _flask_site(options: dict[str, Any], ctx: Ctx) -> Iterator[Browser]:
    config = {f"SATCHEL_{k.upper()}": v for k, v in options.items()}
    return _wsgi_browser(_flask_app(config))


SOURCES: dict[str, tuple[list[str], Callable[[dict[str, Any], Ctx], Iterator[Browser]]]] = {
    "asgi argument": (MIDDLEWARE_OPTIONS, lambda o, ctx: _asgi_site(o)),
    "wsgi argument": (MIDDLEWARE_OPTIONS, lambda o, ctx: _wsgi_site(o)),
    "TOML key": (SETTINGS, lambda o, ctx: _toml_site(o, ctx, sectioned=False)),
    "TOML [section] key": (
        [s for s in SETTINGS if s.startswith(("cookie_", "csrf"))],
        lambda o, ctx: _toml_site(o, ctx, sectioned=True),
    ),
    "environment variable": (SETTINGS, _env_site),
    "Flask config key": ([*SETTINGS, *FLASK_OWN], _flask_site),
}

CASES = [
    pytest.param(source, name, i, id=f"{source}:{name}:{i}")
    for source, (names, _) in SOURCES.items()
    for name in names
    for i in range(len(CHECKS.get(name, [Check(None)])))
]


def _observe(source: str, options: dict[str, Any], check: Check, ctx: Ctx) -> tuple[str, Any]:
    assert check.observe is not None
    try:
        browsers = SOURCES[source][1](options, ctx)
        return "ok", check.observe(browsers, ctx)
    except ConfigurationError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize(("source", "name", "index"), CASES)
def test_option_changes_behaviour_or_is_refused(
    source: str, name: str, index: int, tmp_path: Path
) -> None:
    check = CHECKS[name][index]
    option_ctx, default_ctx = Ctx(tmp_path / "option"), Ctx(tmp_path / "default")
    option_ctx.tmp.mkdir()
    default_ctx.tmp.mkdir()
    with_option = _options(option_ctx, check, name)
    if check.refused is not None:
        with pytest.raises(ConfigurationError, match=check.refused):
            next(SOURCES[source][1](with_option, option_ctx))
        return
    default = _observe(source, _options(default_ctx, check, None), check, default_ctx)
    observed = _observe(source, with_option, check, option_ctx)
    assert observed[0] == "ok", f"{name} via {source}: {observed[1]}"
    assert observed != default, f"{name} via {source} changed nothing: {observed}"


def test_misspelt_settings_are_refused(tmp_path: Path) -> None:
    """A setting nobody reads is an error, not silence: a Flask ``SATCHEL_*`` key, a TOML
    key or a framework layer key that names no setting."""
    with pytest.raises(ConfigurationError, match="SATCHEL_COOKIE_SECUR"):
        _flask_app({"SATCHEL_COOKIE_SECUR": False, "SATCHEL_SECRET_KEYS": [KEY]})
    with pytest.raises(ConfigurationError, match="cookie_secur"):
        load_settings(env={}, use_file=False, layers={"app": {"cookie_secur": False}})
    toml = tmp_path / "satchel.toml"
    toml.write_text("[cookie]\npersistant = true\n")
    with pytest.raises(ConfigurationError, match="cookie_persistant"):
        load_settings(toml, env={})
