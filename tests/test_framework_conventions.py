"""Frameworks' own session settings are honoured or refused loudly, never ignored.

Starlette: satchel's ASGI middleware takes the arguments of Starlette's
``SessionMiddleware`` (as in Starlette's docs, via ``app.add_middleware``). Flask:
``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME`` and ``session.permanent``, through
Flask's test client. Django's are tested in tests/test_integration_django.py."""

from __future__ import annotations

import inspect
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel.conventions import FLASK, STARLETTE, StarletteOptions
from satchel.errors import ConfigurationError
from satchel.integrations.flask import Satchel
from satchel.integrations.starlette import SessionMiddleware
from satchel.option_schema import KEYWORDS, SETTINGS
from satchel.stores.sqlite import SQLiteStore
from satchel.testing.clock import FakeClock

from .conftest import KEY

BASE = "https://testserver"


def _attributes(set_cookie: str) -> dict[str, str]:
    """A Set-Cookie value's name (``""`` key) and attributes, keys lowercased."""
    first, *rest = [p.strip() for p in set_cookie.split(";")]
    out = {"": first.partition("=")[0]}
    for part in rest:
        key, _, value = part.partition("=")
        out[key.lower()] = value
    return out


def _session_cookie(headers: list[str]) -> dict[str, str]:
    (cookie,) = [c for c in headers if "_csrf=" not in c.split(";")[0]]
    return _attributes(cookie)


# -- every framework setting is mapped (a new one in a framework release fails here) -----------


def test_every_starlette_argument_is_mapped() -> None:
    from starlette.middleware.sessions import SessionMiddleware as StarlettesOwn

    params = inspect.signature(StarlettesOwn.__init__).parameters
    assert set(params) - {"self", "app"} == set(STARLETTE)
    assert set(STARLETTE.values()) <= KEYWORDS
    assert set(StarletteOptions.__annotations__) == KEYWORDS | set(STARLETTE)


def test_every_flask_session_cookie_setting_is_mapped() -> None:
    flasks_own = {k for k in Flask.default_config if k.startswith("SESSION_COOKIE_")}
    assert flasks_own == set(FLASK)
    assert set(FLASK.values()) <= set(SETTINGS)


# -- Starlette: its SessionMiddleware arguments on satchel's class -----------------------------


async def _write(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(str(request.session["n"]))


def _starlette(**arguments: Any) -> Starlette:
    app = Starlette(routes=[Route("/", _write)])
    app.add_middleware(SessionMiddleware, **arguments)  # as in Starlette's docs
    return app


def _client(app: Starlette) -> TestClient:
    return TestClient(app, base_url=BASE)


def test_starlette_arguments_work_unchanged(tmp_path: Path) -> None:
    app = _starlette(
        store=f"sqlite:///{tmp_path}/s.db",
        secret_key=Secret(KEY),
        session_cookie="sid",
        max_age=3600,
        path="/app",
        same_site="strict",
        https_only=True,
        domain="testserver.local",
        partitioned=True,
    )
    response = _client(app).get("/")
    cookie = _session_cookie(response.headers.get_list("set-cookie"))
    assert cookie[""] == "sid"
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/app"
    assert cookie["domain"] == "testserver.local"
    assert "secure" in cookie
    assert "partitioned" in cookie
    assert 3590 <= int(cookie["max-age"]) <= 3600  # persistent, max_age seconds
    store = SQLiteStore(tmp_path / "s.db")
    try:
        ((_, meta),) = list(store.iter_sessions(time.time()))
    finally:
        store.close()
    assert meta.absolute_deadline - meta.created == 3600  # ends on the server too
    assert meta.idle_timeout == 3600


def test_starlette_max_age_is_enforced_on_the_server() -> None:
    clock = FakeClock()
    app = _starlette(store="memory://", secret_key=KEY, max_age=600, clock=clock)
    client = _client(app)
    assert client.get("/").text == "1"
    clock.advance(300)
    assert client.get("/").text == "2"
    clock.advance(301)  # 601 s after the session began, though used 301 s ago
    assert client.get("/").text == "1"


def test_starlette_defaults_keep_satchels_safe_ones() -> None:
    """Not passing ``max_age`` or ``https_only`` keeps satchel's defaults: a Secure
    browser-session cookie (Starlette's own defaults are a 14-day cookie and no Secure)."""
    cookie = _session_cookie(
        _client(_starlette(store="memory://", secret_key=KEY))
        .get("/")
        .headers.get_list("set-cookie")
    )
    assert cookie[""] == "satchel"
    assert "secure" in cookie
    assert "max-age" not in cookie


def test_starlette_max_age_none_and_https_only_false_when_passed() -> None:
    app = _starlette(store="memory://", secret_key=KEY, max_age=None, https_only=False)
    cookie = _session_cookie(_client(app).get("/").headers.get_list("set-cookie"))
    assert "max-age" not in cookie  # a browser-session cookie
    assert "secure" not in cookie  # passed explicitly: honoured


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"secret_key": KEY, "secret_keys": [KEY]}, "secret_key= .* and secret_keys="),
        ({"session_cookie": "a", "cookie_name": "b"}, "session_cookie= .* and cookie_name="),
        ({"max_age": 60, "absolute_timeout": 60}, "max_age= .* and absolute_timeout="),
        ({"max_age": None, "cookie_persistent": True}, "max_age= .* and cookie_persistent="),
        ({"same_site": "lax", "cookie_samesite": "lax"}, "same_site= .* and cookie_samesite="),
        ({"https_only": True, "cookie_secure": True}, "https_only= .* and cookie_secure="),
        ({"max_age": 0}, "max_age=0: use a positive number"),
        ({"secret_key": b"x" * 40}, "secret_key must be a string"),
        ({"secret_key": "short"}, "shorter than 32"),
        ({"sesion_cookie": "x"}, "unknown option 'sesion_cookie'"),
    ],
)
def test_starlette_arguments_that_clash_are_refused(
    arguments: dict[str, Any], message: str
) -> None:
    arguments = {"secret_keys": [KEY], **arguments} if "secret_key" not in arguments else arguments
    with pytest.raises(ConfigurationError, match=message):
        SessionMiddleware(Starlette(), store="memory://", **arguments)


# -- Flask: SESSION_COOKIE_*, PERMANENT_SESSION_LIFETIME, session.permanent --------------------


def _flask(tmp_path: Path, config: dict[str, Any], **explicit: Any) -> Flask:
    app = Flask("conventions")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=f"sqlite:///{tmp_path}/f.db", **config)

    @app.get("/write")
    def write() -> str:
        session["n"] = "1"
        return "ok"

    @app.get("/permanent")
    def permanent() -> str:
        session["n"] = "1"
        session.permanent = True
        return "ok"

    @app.get("/app/write")
    def app_write() -> str:
        return write()

    Satchel(app, **explicit)
    return app


def _flask_cookie(app: Flask, path: str = "/write") -> dict[str, str]:
    response = app.test_client().get(f"{BASE}{path}")
    return _session_cookie(response.headers.getlist("Set-Cookie"))


def _metas(tmp_path: Path) -> list[Any]:
    store = SQLiteStore(tmp_path / "f.db")
    try:
        return [m for _, m in store.iter_sessions(time.time())]
    finally:
        store.close()


def test_flask_session_cookie_name_renames_the_cookie(tmp_path: Path) -> None:
    app = _flask(tmp_path, {"SESSION_COOKIE_NAME": "flask_sid"})
    client = app.test_client()
    response = client.get(f"{BASE}/write")
    assert _session_cookie(response.headers.getlist("Set-Cookie"))[""] == "flask_sid"
    assert client.get_cookie("flask_sid", domain="testserver") is not None


def test_flask_session_cookie_attributes_are_applied(tmp_path: Path) -> None:
    app = _flask(
        tmp_path,
        {
            "SESSION_COOKIE_SAMESITE": "Strict",
            "SESSION_COOKIE_DOMAIN": "example.test",
            "SESSION_COOKIE_PATH": "/app",
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_HTTPONLY": False,
            "SESSION_COOKIE_PARTITIONED": True,
        },
    )
    cookie = _flask_cookie(app, "/app/write")
    assert cookie["samesite"] == "Strict"
    assert cookie["domain"] == "example.test"
    assert cookie["path"] == "/app"
    assert "secure" in cookie
    assert "httponly" not in cookie
    assert "partitioned" in cookie


def test_flask_application_root_is_the_cookie_path_unless_one_is_set(tmp_path: Path) -> None:
    assert _flask_cookie(_flask(tmp_path, {"APPLICATION_ROOT": "/app"}))["path"] == "/app"
    config = {"APPLICATION_ROOT": "/app", "SESSION_COOKIE_PATH": "/"}
    assert _flask_cookie(_flask(tmp_path, config))["path"] == "/"


def test_flask_defaults_left_alone_do_not_count(tmp_path: Path) -> None:
    """Flask fills app.config with its defaults (SESSION_COOKIE_NAME="session", SECURE
    False, no SameSite): those are not the app's choice, so satchel's defaults hold."""
    cookie = _flask_cookie(_flask(tmp_path, {}))
    assert cookie[""] == "satchel"
    assert "secure" in cookie
    assert cookie["samesite"] == "Lax"
    assert "max-age" not in cookie


def test_flask_precedence_explicit_then_satchel_then_flask(tmp_path: Path) -> None:
    flask_only = {"SESSION_COOKIE_NAME": "from_flask", "SESSION_COOKIE_SAMESITE": "Strict"}
    both = {**flask_only, "SATCHEL_COOKIE_NAME": "from_satchel"}
    assert _flask_cookie(_flask(tmp_path, flask_only))[""] == "from_flask"
    cookie = _flask_cookie(_flask(tmp_path, both))
    assert cookie[""] == "from_satchel"  # SATCHEL_* beats Flask's own
    assert cookie["samesite"] == "Strict"  # Flask's own still counts where satchel's is unset
    assert _flask_cookie(_flask(tmp_path, both, cookie_name="explicit"))[""] == "explicit"


def test_flask_invalid_convention_names_the_flask_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SESSION_COOKIE_SAMESITE"):
        _flask(tmp_path, {"SESSION_COOKIE_SAMESITE": "Sometimes"})
    with pytest.raises(ConfigurationError, match="PERMANENT_SESSION_LIFETIME"):
        _flask(tmp_path, {"PERMANENT_SESSION_LIFETIME": timedelta(0)})


def test_flask_permanent_session_gets_the_lifetime_on_cookie_and_server(tmp_path: Path) -> None:
    lifetime = 3 * 86400
    app = _flask(tmp_path, {"PERMANENT_SESSION_LIFETIME": timedelta(days=3)})
    cookie = _flask_cookie(app, "/permanent")
    assert lifetime - 10 <= int(cookie["max-age"]) <= lifetime
    (meta,) = _metas(tmp_path)
    assert meta.persistent
    assert meta.idle_timeout == lifetime
    assert meta.absolute_deadline - meta.created == lifetime
    store = SQLiteStore(tmp_path / "f.db")
    try:
        ((key, _),) = list(store.iter_sessions(time.time()))
        assert store.load(key, meta.created + lifetime - 60) is not None
        assert store.load(key, meta.created + lifetime + 1) is None  # over, whatever the cookie
    finally:
        store.close()
    assert "max-age" not in _flask_cookie(app, "/write")  # not permanent: browser-session


def test_flask_permanent_with_flasks_default_lifetime_keeps_satchels_timeouts(
    tmp_path: Path,
) -> None:
    cookie = _flask_cookie(_flask(tmp_path, {}), "/permanent")
    assert 1790 <= int(cookie["max-age"]) <= 1800  # satchel's 30 min idle, not 31 days
    (meta,) = _metas(tmp_path)
    assert meta.persistent
    assert meta.idle_timeout == 1800


def test_flask_permanent_every_request_writes_no_new_expiry(tmp_path: Path) -> None:
    """Apps often set ``session.permanent = True`` before every request: the lifetime is
    set once, not moved forward on each request."""
    app = _flask(tmp_path, {"PERMANENT_SESSION_LIFETIME": 7200})
    client = app.test_client()
    client.get(f"{BASE}/permanent")
    (first,) = _metas(tmp_path)
    time.sleep(0.01)
    client.get(f"{BASE}/permanent")
    (second,) = _metas(tmp_path)
    assert second.absolute_deadline == first.absolute_deadline
    assert second.created == first.created
