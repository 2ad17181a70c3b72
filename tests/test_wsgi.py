"""The WSGI middleware, with plain WSGI apps and real stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from satchel import MemoryStore, Session, SQLiteStore, ids, login, logout
from satchel._types import Environ, StartResponse
from satchel.wsgi import ENVIRON_KEY, SessionMiddleware, environ_headers

from .conftest import KEY
from .helpers import CountingStore


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    path = environ["PATH_INFO"]
    status = "200 OK"
    body = b"ok"
    if path == "/incr":
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"]).encode()
    elif path == "/read":
        body = repr((session.get("n"), session.user_id)).encode()
    elif path == "/login":
        login(session, "alice")
    elif path == "/logout":
        logout(session)
    elif path == "/fail":
        session["n"] = 999
        status = "500 Internal Server Error"
    elif path == "/crash":
        session["n"] = 999
        raise RuntimeError("crash")
    elif path == "/save":
        session["saved"] = True
        session.save()
    start_response(status, [("content-type", "text/plain"), ("cache-control", "max-age=60")])
    return [body]


def streaming(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """A generator app: start_response is called on first iteration."""
    session: Session = environ[ENVIRON_KEY]
    session["streamed"] = True
    start_response("200 OK", [("content-type", "text/plain")])
    yield b"part1"
    yield b"part2"


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemoryStore())


@pytest.fixture
def client(store: CountingStore) -> Iterator[httpx.Client]:
    wrapped = SessionMiddleware(app, store=store, secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped),
        base_url="https://testserver",
    ) as c:
        yield c


def test_write_sets_cookie_with_cache_headers(client: httpx.Client) -> None:
    response = client.get("/incr")
    assert response.text == "1"
    assert response.headers["set-cookie"].endswith("; Path=/; Secure; HttpOnly; SameSite=Lax")
    assert response.headers["cache-control"] == "no-store"  # the app's max-age is overridden
    assert response.headers["vary"] == "Cookie"
    assert client.get("/incr").text == "2"


def test_session_loads_lazily(client: httpx.Client, store: CountingStore) -> None:
    client.get("/incr")
    store.reset()
    response = client.get("/untouched")
    assert store.total == 0  # a cookie, but the app never looked
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "max-age=60"
    client.get("/read")
    assert dict(store.calls) == {"load": 1}


def test_5xx_and_exceptions_commit_nothing(client: httpx.Client, store: CountingStore) -> None:
    client.get("/incr")
    store.reset()
    assert client.get("/fail").status_code == 500
    with pytest.raises(RuntimeError, match="crash"):
        client.get("/crash")
    assert store.calls["update"] == 0
    assert client.get("/read").text == "(1, None)"


def test_login_logout_and_replay(client: httpx.Client) -> None:
    client.get("/incr")
    before = client.cookies["satchel"]
    client.get("/login")
    after = client.cookies["satchel"]
    assert before != after
    assert client.get("/read").text == "(1, 'alice')"
    response = client.get("/logout")
    assert "Max-Age=0" in response.headers["set-cookie"]
    client.cookies.clear()
    replay = client.get("/read", headers={"cookie": f"satchel={after}"})
    assert replay.text == "(None, None)"


def test_explicit_save(client: httpx.Client, store: CountingStore) -> None:
    response = client.get("/save")
    assert store.calls["create"] == 1
    assert store.calls["update"] == 0
    assert "set-cookie" in response.headers


def test_generator_app_commits_before_first_byte(store: CountingStore) -> None:
    wrapped = SessionMiddleware(streaming, store=store, secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        response = c.get("/")
    assert response.text == "part1part2"
    assert "set-cookie" in response.headers
    assert store.calls["create"] == 1


def test_store_down_gives_503_then_recovers(tmp_path: Path) -> None:
    """Checklist 38 on the WSGI path: the SQLite write lock is held by another writer."""
    path = tmp_path / "s.db"
    wrapped = SessionMiddleware(app, store=SQLiteStore(path, timeout=0.05), secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        c.get("/incr")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            down = c.get("/incr")
            assert down.status_code == 503
            assert "Traceback" not in down.text
            assert "set-cookie" not in down.headers
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert c.get("/incr").text == "2"


def test_load_failure_inside_the_app_gives_503(tmp_path: Path) -> None:
    from satchel import FileStore

    directory = tmp_path / "sessions"
    wrapped = SessionMiddleware(app, store=FileStore(directory), secret_keys=[KEY])
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        c.get("/incr")
        directory.rename(tmp_path / "moved")
        directory.write_text("x")
        try:
            assert c.get("/read").status_code == 503
        finally:
            directory.unlink()
            (tmp_path / "moved").rename(directory)
        assert c.get("/read").text == "(1, None)"


def test_device_metadata_recorded(store: CountingStore) -> None:
    wrapped = SessionMiddleware(app, store=store, secret_keys=[KEY])
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/login",
        "HTTP_USER_AGENT": "Agent/2",
        "REMOTE_ADDR": "127.0.0.9",
        "wsgi.url_scheme": "https",
    }
    headers: list[tuple[str, str]] = []

    def start_response(status: str, h: list[tuple[str, str]], exc: Any = None) -> Any:
        headers.extend(h)

    b"".join(wrapped(environ, start_response))
    cookie = dict(headers)["set-cookie"].split(";")[0].split("=", 1)[1]
    record = store.inner.load(ids.store_key(cookie.partition(".")[0]), 0)
    assert record is not None
    assert (record.meta.user_agent, record.meta.client_ip) == ("Agent/2", "127.0.0.9")


def test_custom_unavailable_handler(tmp_path: Path) -> None:
    from satchel import FileStore

    def maintenance(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("503 Service Unavailable", [("content-type", "text/plain")])
        return [b"maintenance"]

    directory = tmp_path / "sessions"
    wrapped = SessionMiddleware(
        app, store=FileStore(directory), secret_keys=[KEY], on_store_unavailable=maintenance
    )
    with httpx.Client(
        transport=httpx.WSGITransport(app=wrapped), base_url="https://testserver"
    ) as c:
        c.get("/incr")
        directory.rename(tmp_path / "moved")
        directory.write_text("x")
        response = c.get("/read")
    assert (response.status_code, response.text) == (503, "maintenance")


def test_environ_headers_joins_repeats_and_takes_only_http_headers() -> None:
    environ: Environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "3",
        "HTTP_X_FORWARDED_FOR": "10.0.0.1",
        "HTTP_X-FORWARDED-FOR": "10.0.0.2",  # (a server that kept the dashes)
        "HTTP_COOKIE": "a=1",
        "HTTP_COOKIE_": "b=2",
        "HTTP_ACCEPT": 7,  # not a str: converted, as before
    }
    headers = environ_headers(environ)
    assert headers == {
        "x-forwarded-for": "10.0.0.1, 10.0.0.2",
        "cookie": "a=1",
        "cookie-": "b=2",
        "accept": "7",
        "content-type": "text/plain",
    }
    assert environ_headers({"HTTP_CONTENT_TYPE": "a", "CONTENT_TYPE": "b"}) == {
        "content-type": "a, b"
    }
    assert environ_headers({"CONTENT_TYPE": ""}) == {}


def test_environ_header_names_are_remembered_within_a_bound() -> None:
    from satchel import wsgi

    for i in range(wsgi._MAX_HEADER_NAMES + 50):  # a client inventing header names
        assert environ_headers({f"HTTP_X_{i}": "v", "PATH_INFO": "/"}) == {f"x-{i}": "v"}
    assert len(wsgi._HEADER_NAMES) <= wsgi._MAX_HEADER_NAMES


def test_legacy_write_commits_before_its_first_byte(store: CountingStore) -> None:
    """PEP 3333's ``write()``: the first call starts the response, so the session is
    committed and its cookie goes with the headers."""
    sent: list[bytes] = []

    def writer(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        session = environ[ENVIRON_KEY]
        session["n"] = session.get("n", 0) + 1
        write = start_response("200 OK", [("content-type", "text/plain")])
        write(b"n=")
        write(str(session["n"]).encode())
        return []

    wrapped = SessionMiddleware(writer, store=store, secret_keys=[KEY])
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        started.append((status, headers))
        return sent.append

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "wsgi.url_scheme": "https",
    }
    assert list(wrapped(dict(environ), start_response)) == []
    assert sent == [b"n=", b"1"]
    ((status, headers),) = started
    cookie = dict(headers)["set-cookie"].split(";")[0]
    assert status == "200 OK"
    assert dict(headers)["cache-control"] == "no-store"
    sent.clear()
    list(wrapped({**environ, "HTTP_COOKIE": cookie}, start_response))
    assert sent == [b"n=", b"2"]


def test_the_context_makes_its_header_map_from_the_environ_on_first_use() -> None:
    """A WSGI request's context reads its Cookie and Authorization from the environ and
    makes the header map (environ_headers) only when something asks for it (issue 12):
    most requests never do."""
    from satchel.request import CONTEXT_KEY, RequestContext

    seen: list[tuple[dict[str, str] | None, dict[str, str], str]] = []

    def view(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        ctx: RequestContext = environ[CONTEXT_KEY]
        assert ctx._header(b"user-agent") == "tests/1"  # (a login's device record)
        assert ctx._header(b"x-none") is None
        before = ctx._headers
        seen.append((before, ctx.headers, ctx.cookie_header))
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    wrapped = SessionMiddleware(view, store=MemoryStore(), secret_keys=[KEY])
    transport = httpx.WSGITransport(app=wrapped)
    with httpx.Client(transport=transport, base_url="https://testserver") as c:
        c.get("/", headers={"user-agent": "tests/1", "cookie": "a=1; b=2", "x-y": "z"})
    [(before, headers, cookie)] = seen
    assert before is None
    assert headers["user-agent"] == "tests/1"
    assert headers["cookie"] == cookie == "a=1; b=2"
    assert headers["x-y"] == "z"
