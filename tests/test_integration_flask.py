"""The Flask integration through Flask's own test client (https base URL: the session
cookie is Secure, and a Secure cookie is not sent back over plain http)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from satchel.engine import Engine
from satchel.errors import ConfigurationError
from satchel.integrations.flask import FlaskSession, Satchel

from .conftest import KEY
from .test_examples import load

BASE = "https://localhost"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("SECRET_KEY", KEY)
    return load("flask_app", monkeypatch, tmp_path)


@pytest.fixture
def client(example: ModuleType) -> FlaskClient:
    app: Flask = example.app
    app.config["TESTING"] = True
    return app.test_client()


def token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"{BASE}/login").text)
    assert match is not None
    return match.group(1)


def cookie(client: FlaskClient) -> str | None:
    found = client.get_cookie("satchel", domain="localhost")
    return None if found is None else found.value


def log_in(client: FlaskClient, user: str = "alice") -> None:
    response = client.post(f"{BASE}/login", data={"username": user, "csrf_token": token(client)})
    assert response.status_code == 200


def test_flask_session_is_satchels(example: ModuleType) -> None:
    from flask import session

    with example.app.test_request_context(f"{BASE}/"):
        current = session._get_current_object()  # type: ignore[attr-defined]
        assert type(current) is FlaskSession
        current.permanent = True
        assert current.permanent


def test_login_regenerates_the_id_and_logout_kills_replay(client: FlaskClient) -> None:
    client.get(f"{BASE}/login")
    assert client.post(f"{BASE}/cart", data={"item": "x"}).status_code == 403  # no token
    log_in(client)
    first = cookie(client)
    assert first is not None
    log_in(client)
    second = cookie(client)
    assert second != first
    me = client.get(f"{BASE}/me").get_json()
    assert me["user"] == "alice"
    assert client.post(f"{BASE}/logout", data={"csrf_token": token(client)}).status_code == 200
    client.set_cookie("satchel", second or "", domain="localhost", secure=True)
    replay = client.get(f"{BASE}/me", headers={"Accept": "application/json"})
    assert replay.status_code == 401


def test_csrf_refused_without_token(client: FlaskClient) -> None:
    log_in(client)
    response = client.post(f"{BASE}/cart", data={"item": "a"})
    assert response.status_code == 403
    assert b"CSRF token missing" in response.data
    ok = client.post(f"{BASE}/cart", data={"item": "a", "csrf_token": token(client)})
    assert ok.get_json() == {"cart": ["a"]}
    again = client.post(f"{BASE}/cart", data={"item": "b"}, headers={"X-CSRF-Token": token(client)})
    assert again.get_json() == {"cart": ["a", "b"]}  # nested change saved


def test_concurrent_disjoint_writes_persist(client: FlaskClient, example: ModuleType) -> None:
    log_in(client)
    session_cookie, tok = cookie(client), token(client)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            own = example.app.test_client()
            own.set_cookie("satchel", session_cookie or "", domain="localhost", secure=True)
            response = own.post(
                f"{BASE}/note",
                data={"key": f"k{i}", "value": str(i)},
                headers={"X-CSRF-Token": tok},
            )
            assert response.status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data = client.get(f"{BASE}/me").get_json()["data"]
    assert {k: v for k, v in data.items() if k.startswith("k")} == {
        f"k{i}": str(i) for i in range(20)
    }


def test_session_transaction_edits_a_session_in_a_test(client: FlaskClient) -> None:
    """Flask's own test helper works on satchel sessions."""
    log_in(client)
    with client.session_transaction(base_url=BASE) as sess:
        assert isinstance(sess, FlaskSession)
        assert sess.user_id == "alice"
        sess["cart"] = ["prefilled"]
    assert client.get(f"{BASE}/me").get_json()["data"]["cart"] == ["prefilled"]


def test_configuration_from_app_config_and_explicit_arguments(tmp_path: Path) -> None:
    app = Flask("configured")
    app.config.update(
        SECRET_KEY="x" * 40,
        SATCHEL_STORE=f"sqlite:///{tmp_path}/a.db",
        SATCHEL_COOKIE_NAME="from-config",
        SATCHEL_IDLE_TIMEOUT=60,
    )
    Satchel(app, cookie_name="explicit")
    _, engine, policy = Satchel.runtime(app)
    assert policy.cookie.name == "explicit"  # explicit arguments win over app.config
    assert isinstance(engine, Engine)
    assert engine.expiry.idle_timeout == 60
    with pytest.raises(ConfigurationError, match=r"Satchel\(\.\.\.\): unknown option 'nonsense'"):
        Satchel(app, nonsense=1)
    bad = Flask("bad")
    bad.config["SECRET_KEY"] = "short"
    with pytest.raises(Exception, match="shorter than 32"):
        Satchel(bad)


def test_login_required_redirects_html_and_401s_json(client: FlaskClient) -> None:
    html = client.get(f"{BASE}/me", headers={"Accept": "text/html"})
    assert html.status_code == 303
    assert html.headers["Location"].endswith("/login?next=/me")
    assert client.get(f"{BASE}/me", headers={"Accept": "application/json"}).status_code == 401


def test_store_down_gives_503(tmp_path: Path) -> None:
    import sqlite3

    app = Flask("down")
    path = tmp_path / "s.db"
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=f"sqlite:///{path}?timeout=0.05")
    Satchel(app)

    @app.get("/w")
    def w() -> str:
        from flask import session

        session["n"] = 1
        return "ok"

    client = app.test_client()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        assert client.get(f"{BASE}/w").status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert client.get(f"{BASE}/w").status_code == 200


CACHED = [("Cache-Control", "public, max-age=60"), ("Vary", "Accept-Encoding"), ("X-A", "1")]


def _headers_app(satchel: bool = True) -> Flask:
    from flask import session

    app = Flask("headers")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    if satchel:
        Satchel(app)

    @app.get("/untouched")
    def untouched() -> Any:
        return "ok", 200, CACHED

    @app.get("/write")
    def write() -> Any:
        session["n"] = 1
        return "ok", 200, CACHED

    @app.get("/read")
    def read() -> Any:
        return str(session.get("n")), 200, [*CACHED, ("vary", "Origin")]

    @app.get("/touch")
    def touch() -> Any:  # the proxy alone marks the session accessed, as in Flask
        session.permanent  # noqa: B018
        return "ok", 200, CACHED

    return app


def test_a_response_that_never_touched_the_session_keeps_its_headers() -> None:
    response = _headers_app().test_client().get(f"{BASE}/untouched")
    plain = _headers_app(satchel=False).test_client().get(f"{BASE}/untouched")
    assert list(response.headers) == list(plain.headers)  # names, values and order


def test_a_response_that_read_the_session_joins_vary_and_keeps_the_rest() -> None:
    client = _headers_app().test_client()
    client.get(f"{BASE}/write")
    response = client.get(f"{BASE}/read")
    assert response.text == "1"
    assert "Set-Cookie" not in response.headers
    plain_client = _headers_app(satchel=False).test_client()
    plain_client.get(f"{BASE}/write")
    plain = plain_client.get(f"{BASE}/read")
    expected = [(k, v) for k, v in plain.headers if k.lower() != "vary"]
    # no token: the app's headers stand (its caching policy included); one Vary, at the end
    assert list(response.headers) == [*expected, ("vary", "Accept-Encoding, Origin, Cookie")]
    touched = client.get(f"{BASE}/touch")
    assert touched.headers.getlist("Vary") == ["Accept-Encoding, Cookie"]


def test_a_response_that_carries_the_token_is_never_cached() -> None:
    response = _headers_app().test_client().get(f"{BASE}/write")
    names = [k.lower() for k, _ in response.headers]
    assert names.count("vary") == names.count("cache-control") == 1
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Vary"] == "Accept-Encoding, Cookie"
    assert response.headers["X-A"] == "1"
    assert response.headers["Set-Cookie"].startswith("satchel=")


def test_csrf_checks_unsafe_methods_only_and_honours_exempt_views() -> None:
    app = Flask("csrf")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://")
    satchel = Satchel(app)

    @app.route("/form", methods=["GET", "POST", "OPTIONS"])
    def form() -> str:
        return "ok"

    @app.post("/hook")
    @satchel.exempt
    def hook() -> str:
        return "hooked"

    client = app.test_client()
    assert client.get(f"{BASE}/form").status_code == 200
    assert client.options(f"{BASE}/form").status_code == 200
    assert client.post(f"{BASE}/form", data={"a": "1"}).status_code == 403
    assert client.post(f"{BASE}/hook", data={"a": "1"}).text == "hooked"
