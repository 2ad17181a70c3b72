"""Issue 11, attacked from outside: bearer tokens, the one response phase, the framework
conventions. Each test here failed on the code it was written against (an outside review
of the integration branch) and states the behaviour a fix must give."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify
from flask import Response as FlaskResponse
from flask import session as flask_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import ConfigurationError, login
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.integrations.flask import Satchel, current_user_id, login_user
from satchel.request import use_bearer_token
from satchel.session import Session
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY, OLD_KEY

BASE = "https://testserver"
TOKEN = "x-session-token"


# -- 1. use_bearer_token on the lazy (sync) paths ---------------------------------------------


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    body: dict[str, Any] = {}
    if path == "/web/login":
        login(session, "alice")
        session["browser_only"] = "kept in the browser's session"
    elif path == "/api/login":  # an API login view, as docs/security.md tells it to be written
        use_bearer_token(session)
        login(session, "alice")
    else:
        body = {"user": session.user_id, "data": dict(session)}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def wsgi_client(tmp_path: Path) -> Iterator[httpx.Client]:
    app = WSGIMiddleware(
        _wsgi_app,
        f"sqlite:///{tmp_path}/s.db",
        secret_keys=[KEY],
        token_paths=["/api/"],
        # the setup login and an API login view exempted from CSRF (as API views often
        # are); the exemption only makes the session load lazily, after the view's call
        csrf_exempt=["/web/login", "/api/login"],
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        yield client
    assert app.store is not None
    app.store.close()


def test_api_login_on_a_lazy_path_leaves_the_browser_cookie_session_untouched(
    wsgi_client: httpx.Client,
) -> None:
    """use_bearer_token() promises: "the cookie session the request carried, if any, is
    left as it is: this request no longer sees it". On WSGI and Flask the session is
    loaded lazily, and ``forget()`` does not cancel the pending lazy load: the login's
    ``regenerate()`` then loads the *cookie* session, moves its data into the new bearer
    session and deletes the browser's record (the browser is logged out)."""
    assert wsgi_client.post("/web/login").status_code == 200
    assert "satchel" in wsgi_client.cookies
    api = wsgi_client.post("/api/login")  # the browser's cookie goes along
    token = api.headers[TOKEN]
    assert token
    assert "set-cookie" not in api.headers

    browser = wsgi_client.get("/web/get").json()
    assert browser == {"user": "alice", "data": {"browser_only": "kept in the browser's session"}}
    bearer = wsgi_client.get("/api/get", headers={"authorization": f"Bearer {token}"}).json()
    assert bearer == {"user": "alice", "data": {}}  # nothing of the cookie session


def _already_in(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """An API login view that answers "already logged in" first (a common shape)."""
    session: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/web/login":
        login(session, "alice")
        body: dict[str, Any] = {}
    else:
        use_bearer_token(session)
        body = {"already": session.user_id}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def test_use_bearer_token_never_puts_the_httponly_cookie_session_in_a_readable_header(
    tmp_path: Path,
) -> None:
    """The lazy load after ``use_bearer_token()`` opens the browser's *cookie* session on
    a request that now answers in ``X-Session-Token``. When that session's token is due to
    be re-sent (made with a retired key, as here; or a persistent cookie's refresh), it is
    sent in the header, which page scripts can read: the HttpOnly cookie's session, handed
    to any same-origin script (an XSS) that calls the API login endpoint."""
    url = f"sqlite:///{tmp_path}/s.db"
    before = WSGIMiddleware(_already_in, url, secret_keys=[OLD_KEY], csrf=False)
    with httpx.Client(transport=httpx.WSGITransport(app=before), base_url=BASE) as browser:
        browser.post("/web/login")
        cookie = browser.cookies["satchel"]
    assert before.store is not None
    before.store.close()

    rotated = WSGIMiddleware(
        _already_in, url, secret_keys=[KEY, OLD_KEY], token_paths=["/api/"], csrf=False
    )
    with httpx.Client(transport=httpx.WSGITransport(app=rotated), base_url=BASE) as browser:
        browser.cookies.set("satchel", cookie)
        response = browser.get("/api/login")
    assert rotated.store is not None
    rotated.store.close()
    cookie_id = cookie.partition(".")[0]
    assert cookie_id not in response.headers.get(TOKEN, "")
    assert response.json() == {"already": None}  # "this request no longer sees it"


# -- 2. targeted cache directives on a response that carries a token --------------------------

TARGETED = {
    "CDN-Cache-Control": "public, max-age=600",  # RFC 9213: CDNs obey it over Cache-Control
    "Cloudflare-CDN-Cache-Control": "max-age=600",
    "Surrogate-Control": "max-age=600",  # Fastly, Akamai, Varnish
}


async def _cached_api(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    if request.url.path == "/api/login":
        use_bearer_token(session)
        login(session, "alice")
    else:
        session["visits"] = int(session.get("visits", 0)) + 1
    return JSONResponse({"ok": True}, headers=TARGETED)


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/login"), ("GET", "/web/visit")])
async def test_a_response_carrying_a_token_drops_cdn_cache_directives(
    tmp_path: Path, method: str, path: str
) -> None:
    """A response that carries a session token is made ``Cache-Control: no-store``, but a
    ``CDN-Cache-Control`` / ``Surrogate-Control`` the app set for its CDN is left in place,
    and CDNs obey those *instead of* Cache-Control: the edge caches the response, with
    its ``X-Session-Token`` or ``Set-Cookie``, and hands one user's session to the next
    visitor of that URL (many CDNs ignore ``Vary``)."""
    routes = [Route("/{rest:path}", _cached_api, methods=["GET", "POST"])]
    app = ASGIMiddleware(
        Starlette(routes=routes),
        f"sqlite:///{tmp_path}/s.db",
        secret_keys=[KEY],
        token_paths=["/api/"],
        csrf=False,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await client.request(method, path)
    assert app.store is not None
    await app.store.aclose()
    assert response.status_code == 200
    assert response.headers.get(TOKEN) or response.headers.get("set-cookie")
    assert response.headers["cache-control"] == "no-store"
    for name in TARGETED:
        assert response.headers.get(name) in (None, "no-store"), name


# -- 3. Flask: Vary: Cookie on a response that read the session --------------------------------


def _flask_app(tmp_path: Path) -> Flask:
    app = Flask(__name__)
    app.config["SATCHEL_STORE"] = f"sqlite:///{tmp_path}/flask.db"
    app.config["SATCHEL_SECRET_KEYS"] = [KEY]
    app.config["SATCHEL_CSRF_EXEMPT"] = ["/login"]
    Satchel(app)

    @app.post("/login")
    def log_in() -> str:
        login_user("alice")
        flask_session["name"] = "Alice"
        return "in"

    @app.get("/me")
    def me() -> FlaskResponse:
        response = jsonify(name=flask_session.get("name"))
        response.headers["Cache-Control"] = "public, max-age=60"
        return response

    return app


def test_flask_marks_a_response_that_read_the_session_vary_cookie(tmp_path: Path) -> None:
    """Flask's own session interface adds ``Vary: Cookie`` to every response whose view
    read the session, so a shared cache never serves one user's page to another. Swapping
    in satchel (a drop-in, per issue 11) silently drops it: a personalised response the
    app marked cacheable is cached under its URL alone."""
    app = _flask_app(tmp_path)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        assert client.post("/login").status_code == 200
        response = client.get("/me")
    assert response.json() == {"name": "Alice"}
    vary = {v.strip().lower() for v in response.headers.get("vary", "").split(",")}
    assert "cookie" in vary


# -- 4. set_expiry with a non-finite number ------------------------------------------------------


async def _remember_me(request: Request) -> Response:
    """A "remember me for N seconds" form, validated the way apps do (``> 0``, ``<=
    max``); ``float()`` also parses "nan" and "inf" from the client."""
    session = request.session
    assert isinstance(session, Session)
    seconds = float(request.query_params["seconds"])
    if seconds > 90 * 86_400:
        return JSONResponse({"error": "too long"}, status_code=400)
    login(session, "alice")
    try:
        session.set_expiry(idle_timeout=seconds, persistent=True)
    except ValueError:  # ConfigurationError is one
        return JSONResponse({"error": "invalid expiry"}, status_code=400)
    return JSONResponse({"user": session.user_id})


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize("seconds", ["nan", "-nan"])
async def test_set_expiry_refuses_a_non_finite_timeout_at_the_call(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, seconds: str
) -> None:
    """``Session.set_expiry`` refuses ``<= 0`` but lets NaN through (``nan <= 0`` is
    False, and so is the app's ``nan > max``; infinity passes too, where no upper bound
    stops it). The value then fails in the store at commit, differently on each:
    SQLite answers 503 and logs a "session key collision", Redis raises ``ValueError``
    out of the middleware (a 500), MySQL logs the SQL of a refused INSERT, PostgreSQL
    stores a record it then discards as corrupt. It must be refused where it is given,
    like every other invalid timeout."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/s.db"
    else:
        url = str(request.getfixturevalue("redis_url")) + f"?prefix=atk{uuid.uuid4().hex[:12]}:"
    routes = [Route("/login", _remember_me, methods=["POST"])]
    app = ASGIMiddleware(Starlette(routes=routes), url, secret_keys=[KEY], csrf=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await client.post(f"/login?seconds={seconds}")
    assert app.store is not None
    await app.store.aclose()
    assert response.status_code == 400
    assert response.json() == {"error": "invalid expiry"}


@pytest.mark.parametrize(
    "options",
    [
        {"idle_timeout": float("nan")},
        {"absolute_timeout": float("nan")},
        {"absolute_timeout": float("inf")},  # "satchel always has an absolute limit"
        {"max_age": float("nan")},  # Starlette's argument: refuses <= 0, not NaN
    ],
    ids=["idle-nan", "absolute-nan", "absolute-inf", "starlette-max_age-nan"],
)
def test_non_finite_timeouts_are_refused_at_configuration(options: dict[str, Any]) -> None:
    """The option schema refuses ``<= 0`` timeouts; NaN and infinity pass (also from
    ``SATCHEL_IDLE_TIMEOUT=nan`` / ``SATCHEL_ABSOLUTE_TIMEOUT=inf`` through the settings
    loader): an infinite absolute timeout silently removes the absolute limit the docs
    promise, and NaN fails every store differently at the first commit."""

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    with pytest.raises(ConfigurationError):
        ASGIMiddleware(app, "memory://", secret_keys=[KEY], **options)


# -- 5. WSGI: an app that raises after start_response ------------------------------------------


def _raising_app(generator: bool) -> Callable[..., Iterable[bytes]]:
    def body(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session: Session = environ[ENVIRON_KEY]
        if environ["PATH_INFO"] == "/cart":
            session["cart"] = "book"
        elif environ["PATH_INFO"] == "/login":
            login(session, "alice")
            start_response("200 OK", [("content-type", "text/html")])
            raise RuntimeError("the template failed to render")
        start_response("200 OK", [("content-type", "application/json")])
        yield json.dumps({"user": session.user_id, "cart": session.get("cart")}).encode()

    def listing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return list(body(environ, start_response))

    return body if generator else listing


@pytest.mark.parametrize("generator", [True, False], ids=["generator-app", "list-app"])
def test_wsgi_commits_nothing_when_the_app_raises_after_start_response(
    tmp_path: Path, generator: bool
) -> None:
    """ "Commit unless the app raised or answered 5xx". WSGI's ``start_response`` sends
    nothing (PEP 3333: an app may call it and then fail, and the server answers 500), yet
    the middleware commits inside it: the login below is stored -- the anonymous record
    with the cart deleted, a logged-in one created -- and the 500 carries no cookie, so the
    visitor's session is gone. ASGI and Flask commit nothing for an app that raised."""
    app = WSGIMiddleware(
        _raising_app(generator), f"sqlite:///{tmp_path}/s.db", secret_keys=[KEY], csrf=False
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        assert client.post("/cart").status_code == 200
        with pytest.raises(RuntimeError, match="template"):
            client.post("/login")
        after = client.get("/whoami").json()
    assert app.store is not None
    app.store.close()
    assert after == {"user": None, "cart": "book"}


# -- 6. Django: the one response phase's no-store ------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# Django's settings are process-wide and other test modules configure them: the example
# app runs in its own interpreter here, and prints what its responses carried.
def run_django_probe(probe: str, tmp_path: Path) -> Any:
    """Run ``probe`` against the Django example app in its own interpreter (Django's
    settings are process-wide) and return the JSON its last line prints."""
    env = {
        **os.environ,
        "SECRET_KEYS": KEY,
        "SESSION_STORE": f"sqlite:///{tmp_path}/sessions.db",
        "DJANGO_DB": str(tmp_path / "django.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe, str(EXAMPLES / "django_app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


_DJANGO_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("example_django_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module  # ROOT_URLCONF names it
spec.loader.exec_module(module)
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
User.objects.create_user("dora", password="secret")
client = Client(HTTP_HOST="testserver")
out = []
login = {"username": "dora", "password": "secret"}
for url, form in (("/notes/colour", {"value": "blue"}), ("/login", login)):
    response = client.post(url, form, secure=True)
    out.append({"status": response.status_code, "cookies": sorted(response.cookies),
                "cache_control": response.headers.get("Cache-Control")})
print(json.dumps(out))
"""


def test_django_responses_that_set_the_session_cookie_are_no_store(tmp_path: Path) -> None:
    """Issue 11: Django shares the one response phase, ``Cache-Control: no-store``
    included; docs/security.md: "every response that sets the session cookie carries
    Cache-Control: no-store (replacing any caching policy the app set)". On Django a new
    session's and a login's ``Set-Cookie: sessionid=...`` go out with no caching policy at
    all (heuristically cacheable by a shared cache), and a view's own ``Cache-Control:
    public`` would be kept."""
    responses = run_django_probe(_DJANGO_PROBE, tmp_path)
    assert len(responses) == 2
    for response in responses:
        assert response["status"] == 200
        assert "sessionid" in response["cookies"]
        assert response["cache_control"] == "no-store"


def permanent_flask_app(tmp_path: Path, clock: FakeClock, **config: Any) -> Flask | None:
    """A Flask app whose login makes the session permanent, with a 7-day
    ``PERMANENT_SESSION_LIFETIME`` and ``config`` on top; None if satchel refuses it."""
    app = Flask(__name__)
    app.config.update(
        SATCHEL_STORE=f"sqlite:///{tmp_path}/flask.db",
        SATCHEL_SECRET_KEYS=[KEY],
        SATCHEL_CSRF=False,
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        **config,
    )
    try:
        Satchel(app)
    except ConfigurationError:
        return None
    app.extensions["satchel"]["runtime"].backend.clock = clock

    @app.post("/login")
    def log_in() -> str:
        login_user("alice")
        flask_session.permanent = True
        return "in"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user": current_user_id()}

    return app


# -- 7. Flask: PERMANENT_SESSION_LIFETIME over an explicit SATCHEL_ABSOLUTE_TIMEOUT --------------


def test_flask_permanent_lifetime_never_outlives_an_explicit_absolute_timeout(
    tmp_path: Path, clock: FakeClock
) -> None:
    """docs/configuration.md: "Precedence, highest first: an argument of Satchel(...), a
    SATCHEL_* key in app.config, Flask's own setting, satchel's default." Yet with
    ``SATCHEL_ABSOLUTE_TIMEOUT = 3600`` (the operator's hard limit) and a legacy
    ``PERMANENT_SESSION_LIFETIME = 7 days``, ``session.permanent = True`` gives the
    session 7 days on the server, idle and absolute: the explicit limit is silently
    lifted. Either the clash is refused at start (as Starlette's ``max_age`` with
    ``absolute_timeout`` is), or the hard limit holds."""
    app = permanent_flask_app(tmp_path, clock, SATCHEL_ABSOLUTE_TIMEOUT=3600)
    if app is None:
        return  # refused loudly: fine
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
        assert client.post("/login").status_code == 200
        seen = []
        for _ in range(4):  # used every 30 minutes: never idle
            clock.advance(1800)
            seen.append(client.get("/me").json()["user"])
    assert seen == ["alice", None, None, None]  # over at 1 h, used or not


# -- 8. Flask: session.permanent = True on every request (Flask's idiom) --------------------------


def test_flask_permanent_on_every_request_stores_nothing_for_anonymous_visitors(
    tmp_path: Path,
) -> None:
    """``@app.before_request: session.permanent = True`` is the everyday Flask idiom for
    "persistent cookies". Flask's own sessions then send no cookie to a visitor whose
    session is empty. With satchel the setter queues an expiry change, which counts as
    content: every cookie-less request (a crawler, a script, an attacker's loop) creates a
    store record and gets a ``Set-Cookie`` and ``Cache-Control: no-store`` on a public
    page -- one INSERT per anonymous GET, and no public page stays cacheable."""
    app = Flask(__name__)
    app.config.update(SATCHEL_STORE=f"sqlite:///{tmp_path}/flask.db", SATCHEL_SECRET_KEYS=[KEY])
    Satchel(app)

    @app.before_request
    def make_permanent() -> None:
        flask_session.permanent = True

    @app.get("/")
    def index() -> str:
        return "a public page"

    responses = []
    for _ in range(5):  # five visitors without a cookie
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as client:
            responses.append(client.get("/"))
    app.extensions["satchel"]["runtime"].store.close()
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.headers.get("set-cookie") for r in responses] == [None] * 5
    with sqlite3.connect(tmp_path / "flask.db") as db:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = sum(db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in tables)
    assert rows == 0
