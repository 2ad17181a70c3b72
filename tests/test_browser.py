"""End-to-end: the demo in real headless Chromium (Debian's, driven by Playwright), two
browser contexts as two devices. Screenshots go to test-artifacts/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from satchel.demo import create_app

from .conftest import KEY
from .services import free_port


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    directory = tmp_path_factory.mktemp("demo")
    app = create_app(f"sqlite:///{directory}/demo.db", secret_keys=[KEY])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("demo server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    return chromium


def _device(browser: Any, name: str) -> Any:
    return browser.new_context(user_agent=f"Mozilla/5.0 (satchel-test) {name}")


def _login(page: Any, base: str, user: str = "alice", password: str = "wonderland") -> None:
    page.goto(f"{base}/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/profile")


def test_login_profile_and_theme(browser: Any, demo_url: str, artifacts: Path) -> None:
    context = _device(browser, "Laptop")
    page = context.new_page()
    page.goto(f"{demo_url}/profile")
    assert page.url.startswith(f"{demo_url}/login")  # not logged in: sent to the login page
    _login(page, demo_url)
    assert "Welcome, alice" in page.text_content("h1")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["satchel"]["httpOnly"] is True
    assert cookies["satchel"]["secure"] is True
    assert cookies["satchel"]["sameSite"] == "Lax"
    page.screenshot(path=str(artifacts / "browser-profile.png"))
    page.goto(f"{demo_url}/settings")
    page.select_option("#theme", "dark")
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo_url}/profile")
    assert page.text_content("#theme") == "dark"
    assert "theme-dark" in (page.get_attribute("body", "class") or "")
    page.screenshot(path=str(artifacts / "browser-theme-dark.png"))
    context.close()


def test_two_devices_list_and_revoke(browser: Any, demo_url: str, artifacts: Path) -> None:
    laptop_context, phone_context = _device(browser, "Laptop"), _device(browser, "Phone")
    laptop, phone = laptop_context.new_page(), phone_context.new_page()
    _login(laptop, demo_url, "bob", "builder")
    _login(phone, demo_url, "bob", "builder")
    laptop.goto(f"{demo_url}/sessions")
    rows = laptop.locator("tbody tr")
    assert rows.count() == 2
    assert "this device" in rows.filter(has_text="Laptop").inner_text()
    assert "Phone" in rows.filter(has_text="Phone").inner_text()
    laptop.screenshot(path=str(artifacts / "browser-sessions-two-devices.png"))
    rows.filter(has_text="Phone").get_by_role("button", name="Revoke").click()
    laptop.wait_for_url(f"{demo_url}/sessions")
    assert laptop.locator("tbody tr").count() == 1
    laptop.screenshot(path=str(artifacts / "browser-sessions-after-revoke.png"))
    phone.goto(f"{demo_url}/profile")
    assert phone.url.startswith(f"{demo_url}/login")  # the revoked device is logged out
    phone.screenshot(path=str(artifacts / "browser-revoked-device.png"))
    laptop.goto(f"{demo_url}/profile")
    assert "Welcome, bob" in laptop.text_content("h1")
    laptop_context.close()
    phone_context.close()


def test_csrf_refused_without_token(browser: Any, demo_url: str, artifacts: Path) -> None:
    context = _device(browser, "Attacker-test")
    page = context.new_page()
    _login(page, demo_url)
    page.goto(f"{demo_url}/settings")
    page.evaluate(
        "document.querySelector('form[action=\"/settings\"] input[name=csrf_token]').remove()"
    )
    page.select_option("#theme", "sepia")
    with page.expect_response(f"{demo_url}/settings") as response_info:
        page.click("button[type=submit]")
    assert response_info.value.status == 403
    assert "CSRF token missing" in page.content()
    page.screenshot(path=str(artifacts / "browser-csrf-refused.png"))
    page.goto(f"{demo_url}/profile")
    assert page.text_content("#theme") != "sepia"
    context.close()


def test_log_out_everywhere(browser: Any, demo_url: str) -> None:
    one, two = _device(browser, "One"), _device(browser, "Two")
    first, second = one.new_page(), two.new_page()
    _login(first, demo_url)
    _login(second, demo_url)
    first.goto(f"{demo_url}/sessions")
    first.get_by_role("button", name="Log out everywhere").click()
    first.wait_for_url(f"{demo_url}/login")
    second.goto(f"{demo_url}/profile")
    assert second.url.startswith(f"{demo_url}/login")
    one.close()
    two.close()
