"""The admin CLI never writes a client's control characters to the terminal: user agents
and user IDs that a client chose arrive through a real request, and ``satchel sessions
list`` shows them escaped, in the table and in JSON alike (still valid JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from satchel.asgi import SessionMiddleware
from satchel.auth import login
from satchel.cli import main
from satchel.session import Session

from .conftest import KEY

# an ANSI colour and screen clear, a terminal title set (OSC ... BEL), a carriage return
# that would overwrite the line, backspaces, a C1 CSI, DEL, and a bidi override
HOSTILE = "\x1b[31m\x1b[2J\x1b]0;owned\x07ok\rEVIL\x08\x08\x9b1m\x7f\u202etxt.exe"
RAW_CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))] + ["\u202e"]


async def log_in(request: Request) -> Response:
    session = request.session
    assert isinstance(session, Session)
    login(session, request.query_params["user"])
    return PlainTextResponse("ok")


def test_sessions_list_escapes_what_clients_sent(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    app = SessionMiddleware(
        Starlette(routes=[Route("/login", log_in)]),
        store=store,
        secret_keys=[KEY],
        trusted_proxies=["127.0.0.1"],  # the client IP would come from X-Forwarded-For
    )
    peer = ("127.0.0.1", 50000)
    with TestClient(app, base_url="https://testserver", client=peer) as client:
        agent = HOSTILE.encode("latin-1", "replace")  # a header is bytes: no bidi override
        response = client.get(
            "/login",
            params={"user": "mallory" + HOSTILE},
            headers={b"User-Agent": agent, b"X-Forwarded-For": b"\x1b[8m6.6.6.6"},
        )
        assert response.status_code == 200

    table = CliRunner().invoke(main, ["sessions", "list", "--store", store], env={})
    assert table.exit_code == 0, table.output
    assert not any(c in table.output for c in RAW_CONTROLS if c != "\n")
    assert "mallory\\x1b[31m\\x1b[2J\\x1b]0;owned\\x07ok\\x0dEVIL\\x08" in table.output
    assert "\\x1b[31m" in table.output
    assert "\\x0d" in table.output
    assert "\\u202e" in table.output
    assert "6.6.6.6" not in table.output  # a made-up "IP" never becomes the client IP

    listed = CliRunner().invoke(main, ["sessions", "list", "--json", "--store", store], env={})
    assert listed.exit_code == 0, listed.output
    assert not any(c in listed.output for c in RAW_CONTROLS if c != "\n")
    assert "\\u001b" in listed.output
    (row,) = json.loads(listed.stdout)  # still valid JSON, and it decodes to what was sent
    assert row["user_id"] == "mallory" + HOSTILE
    assert row["user_agent"].startswith("\x1b[31m")
    assert row["client_ip"] == "127.0.0.1"  # the proxy: the forwarded hop was no IP

    by_user = CliRunner().invoke(
        main, ["sessions", "list", "--user", "mallory" + HOSTILE, "--store", store], env={}
    )
    assert by_user.exit_code == 0
    assert not any(c in by_user.output for c in RAW_CONTROLS if c != "\n")


def test_safe_escapes_controls_and_keeps_text() -> None:
    from satchel.printable import printable as safe

    assert safe("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 — café") == (
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 — café"
    )
    assert safe("a\x1b[0mb\r\n\t\x08\x9b\x7f") == "a\\x1b[0mb\\x0d\\x0a\\x09\\x08\\x9b\\x7f"
    assert safe("\u202e\u2028\ufeff") == "\\u202e\\u2028\\ufeff"
    assert safe("C:\\x1b") == "C:\\\\x1b"  # a literal backslash cannot fake an escape


def test_security_log_escapes_what_the_client_sent(security_log: pytest.LogCaptureFixture) -> None:
    """A request path (decoded by the server) or Origin with CR/LF and escapes cannot forge
    a line of the security log or drive the terminal that reads it."""
    app = SessionMiddleware(
        Starlette(routes=[Route("/login", log_in)]), store="memory://", secret_keys=[KEY]
    )
    with TestClient(app, base_url="https://testserver") as client:
        forged = "/x%0A2026-01-01%20INFO%20satchel.security%20all%20clear%1b%5b2J"  # decoded
        assert client.post(forged).status_code == 403
        assert client.post("/login", headers={"Origin": "https://e\x1b[2J.vil"}).status_code == 403
    lines = [r.getMessage() for r in security_log.records if "CSRF check failed" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line
        assert "\x1b" not in line
    assert "\\x0a2026-01-01 INFO" in lines[0]
