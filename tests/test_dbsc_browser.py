"""Device-bound sessions end to end, in Debian's Chromium: the demo over HTTPS (its own
self-signed certificate, trusted by its SPKI hash), DBSC on with software keys, bound
cookies of a few seconds. The browser registers, signs its refresh proofs and renews
the bound cookie by itself; a copy of its cookies without its key stops working."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from satchel import SessionEvent, ids
from satchel.dbsc.state import DeviceState
from satchel.demo import create_app
from satchel.demo.app import log_event
from satchel.demo.tls import Certificate, make_certificate
from satchel.stores.base import Store

from .conftest import KEY
from .dbsc_device import Device, challenge_of
from .services import CHROMIUM, CHROMIUM_ARGS, serve_asgi, unavailable
from .test_browser import _login

LIFETIME = 4  # seconds a bound cookie lives here (10 minutes by default)
REFRESH = "/.satchel/dbsc/refresh"
pytestmark = pytest.mark.slow


class Demo:
    def __init__(
        self, url: str, certificate: Certificate, events: list[SessionEvent], store: Store
    ) -> None:
        self.url, self.certificate, self.events, self.store = url, certificate, events, store

    def binding_of(self, session_cookie: str) -> DeviceState:
        """The binding the store holds for the session a cookie names."""
        record = self.store.load(ids.store_key(session_cookie.split(".")[0]), time.time())
        assert record is not None
        return DeviceState.decode(record.meta.device)

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(e.kind, e.reason) for e in self.events if e.kind.startswith("device")]

    def wait_for(self, what: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; device events: {self.kinds()}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    directory = tmp_path_factory.mktemp("dbsc-demo")
    certificate = make_certificate(directory)
    events: list[SessionEvent] = []

    def on_event(event: SessionEvent) -> None:
        events.append(event)
        log_event(event)

    app = create_app(
        f"sqlite:///{directory}/demo.db",
        secret_keys=[KEY],
        dbsc=True,
        dbsc_cookie_lifetime=LIFETIME,
        on_event=on_event,
    )
    tls = {"ssl_certfile": str(certificate.certfile), "ssl_keyfile": str(certificate.keyfile)}
    with serve_asgi(app, **tls) as url:
        assert app.store is not None
        yield Demo(url.replace("http://", "https://"), certificate, events, app.store)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable("Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args = [
        *CHROMIUM_ARGS,
        f"--ignore-certificate-errors-spki-list={demo.certificate.spki_sha256}",
        "--enable-features=DeviceBoundSessions:RefreshQuota/false,"
        "EnableBoundSessionCredentialsSoftwareKeysForManualTesting",
    ]
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield launched
        launched.close()


def _me(page: Any, demo: Demo) -> tuple[int, Any]:
    response = page.goto(f"{demo.url}/api/me")
    assert response is not None
    try:
        return response.status, response.json()
    except Exception:
        return response.status, response.text()


@pytest.fixture
def laptop(browser: Any, demo: Demo, artifacts: Path) -> Iterator[Any]:
    """A browser context logged in as alice, its session bound by Chromium itself."""
    context = browser.new_context(user_agent="Mozilla/5.0 (satchel-test) Laptop")
    page = context.new_page()
    before = len(demo.kinds())
    _login(page, demo.url)
    demo.wait_for(lambda: ("device_bound", None) in demo.kinds()[before:])
    assert ("device_refused", "unverified_request") not in demo.kinds()[before:]
    yield context, page
    context.close()


def test_login_registers_and_the_session_is_shown_device_bound(
    laptop: Any, demo: Demo, artifacts: Path
) -> None:
    context, page = laptop
    status, me = _me(page, demo)
    assert status == 200
    assert (me["username"], me["device_bound"]) == ("alice", True)
    bound = next(c for c in context.cookies() if c["name"] == "satchel_bound")
    assert bound["secure"]
    assert bound["httpOnly"]
    assert 0 < bound["expires"] - time.time() <= LIFETIME + 1
    page.goto(f"{demo.url}/sessions")
    assert "device-bound" in page.text_content(".devices")
    page.screenshot(path=str(artifacts / "dbsc-sessions.png"))


def test_a_missing_bound_cookie_is_refreshed_with_a_signed_proof(laptop: Any, demo: Demo) -> None:
    context, page = laptop
    context.clear_cookies(name="satchel_bound")
    before = len(demo.kinds())
    status, me = _me(page, demo)
    assert status == 200  # the browser held the request, refreshed, then sent it
    assert me["device_bound"] is True
    assert ("device_refreshed", None) in demo.kinds()[before:]
    assert ("device_refused", "unverified_request") not in demo.kinds()[before:]
    # and again when it expires on its own: it is renewed ahead of its Max-Age
    time.sleep(LIFETIME + 1)
    assert _me(page, demo)[0] == 200


def test_copied_cookies_stop_working_without_the_key(laptop: Any, browser: Any, demo: Demo) -> None:
    context, page = laptop
    thief = browser.new_context(user_agent="Mozilla/5.0 (satchel-test) Thief")
    thief.add_cookies(context.cookies())
    thief_page = thief.new_page()
    assert _me(thief_page, demo)[0] == 200  # while the copied bound cookie lasts
    time.sleep(LIFETIME + 1)
    before = len(demo.kinds())
    status, body = _me(thief_page, demo)
    assert status == 401
    assert "Sign in again" in body
    assert "alice" not in body
    assert ("device_refused", "unverified_request") in demo.kinds()[before:]
    assert _me(page, demo)[0] == 200  # the original browser keeps working
    thief.close()


def test_logout_ends_the_binding_and_a_foreign_key_is_refused(laptop: Any, demo: Demo) -> None:
    context, page = laptop
    session_cookie = next(c["value"] for c in context.cookies() if c["name"] == "satchel")
    # a thief's tool with the cookie, and a key of its own: refused, reported
    trust = ssl.create_default_context(cafile=str(demo.certificate.certfile))
    with httpx.Client(verify=trust, base_url=demo.url) as tool:
        tool.cookies.set("satchel", session_cookie)
        key_id = demo.binding_of(session_cookie).identifier
        assert key_id
        first = tool.post(REFRESH, headers={"sec-secure-session-id": key_id})
        assert first.status_code == 403
        challenge, _ = challenge_of(first.headers["secure-session-challenge"])
        headers = {"sec-secure-session-id": key_id}
        proof = Device().proof(challenge)
        refused = tool.post(REFRESH, headers={**headers, "secure-session-response": proof})
        assert refused.status_code == 403
    assert any(e.kind == "security" and e.reason == "device_key" for e in demo.events)
    assert demo.kinds()[-1] == ("device_refused", "wrong_key")
    # the browser's own key still refreshes
    context.clear_cookies(name="satchel_bound")
    assert _me(page, demo)[0] == 200
    # logout: the binding ends in the store, and in the browser at its next request
    page.goto(f"{demo.url}/profile")
    before = len(demo.kinds())
    page.click("form[action='/logout'] button")
    page.wait_for_url(f"{demo.url}/login")
    demo.wait_for(lambda: ("device_unbound", "logout") in demo.kinds()[before:])
    assert not any(c["name"] == "satchel_bound" for c in context.cookies())
    page.goto(f"{demo.url}/login")
    assert _me(page, demo)[0] == 401  # logged out (not "device_unverified")
