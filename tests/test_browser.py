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

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("demo")
    yield from _serve(create_app(f"sqlite:///{directory}/demo.db", secret_keys=[KEY]))


REAUTH_MAX_AGE = 2.0


@pytest.fixture(scope="module")
def quick_demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo with ``SATCHEL_REAUTH_MAX_AGE`` = 2 s, to see a sign-in grow old."""
    directory = tmp_path_factory.mktemp("demo-quick")
    store = f"sqlite:///{directory}/demo.db"
    yield from _serve(create_app(store, secret_keys=[KEY], reauth_max_age=REAUTH_MAX_AGE))


def _serve(app: Any) -> Iterator[str]:
    import uvicorn

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
    assert page.text_content(".flash-success") == "Theme saved: dark."
    assert "theme-dark" in (page.get_attribute("body", "class") or "")
    page.screenshot(path=str(artifacts / "browser-theme-dark.png"))
    context.close()


def test_two_devices_list_and_revoke(browser: Any, demo_url: str, artifacts: Path) -> None:
    laptop_context, phone_context = _device(browser, "Laptop"), _device(browser, "Phone")
    laptop, phone = laptop_context.new_page(), phone_context.new_page()
    _login(laptop, demo_url, "bob", "builder")
    _login(phone, demo_url, "bob", "builder")
    laptop.goto(f"{demo_url}/sessions")
    rows = laptop.locator(".device")
    assert rows.count() == 2
    assert "this device" in rows.filter(has_text="Laptop").inner_text()
    assert "Phone" in rows.filter(has_text="Phone").inner_text()
    laptop.screenshot(path=str(artifacts / "browser-sessions-two-devices.png"))
    rows.filter(has_text="Phone").get_by_role("button", name="Revoke").click()
    laptop.wait_for_url(f"{demo_url}/sessions")
    assert laptop.locator(".device").count() == 1
    assert "Session revoked" in laptop.text_content(".flash-success")
    laptop.screenshot(path=str(artifacts / "browser-sessions-after-revoke.png"))
    phone.goto(f"{demo_url}/profile")
    assert phone.url.startswith(f"{demo_url}/login")  # the revoked device is logged out
    assert "Your session ended" in phone.text_content(".flash")  # and told why
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
    first.get_by_role("link", name="Log out everywhere…").click()
    first.wait_for_url(f"{demo_url}/logout-everywhere")  # a confirmation step first
    first.get_by_role("link", name="Cancel").click()
    first.wait_for_url(f"{demo_url}/sessions")
    second.goto(f"{demo_url}/profile")
    assert "Welcome, alice" in second.text_content("h1")  # cancelling ended nothing
    first.get_by_role("link", name="Log out everywhere…").click()
    first.wait_for_url(f"{demo_url}/logout-everywhere")
    first.get_by_role("button", name="Yes, log out everywhere").click()
    first.wait_for_url(f"{demo_url}/login")
    assert "logged out on every device" in first.text_content(".flash-success")
    second.goto(f"{demo_url}/profile")
    assert second.url.startswith(f"{demo_url}/login")
    assert "Your session ended" in second.text_content(".flash")
    one.close()
    two.close()


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"] - 0.5
        and inner["y"] >= outer["y"] - 0.5
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5
    )


def _fits_the_phone(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for card in page.locator(".card, .device").all():
        box = card.bounding_box()
        for button in card.locator("button, a.button").all():
            assert _inside(button.bounding_box(), box), button.inner_text()


def test_phone_width(browser: Any, demo_url: str, artifacts: Path) -> None:
    laptop = browser.new_context(user_agent=LINUX_CHROME)
    phone = browser.new_context(
        user_agent=IPHONE, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    _login(laptop.new_page(), demo_url, "bob", "builder")
    page = phone.new_page()
    _login(page, demo_url, "bob", "builder")
    assert "Logged in as bob" in page.text_content(".flash-success")
    _fits_the_phone(page)
    page.screenshot(path=str(artifacts / "browser-phone-profile.png"), full_page=True)
    page.goto(f"{demo_url}/sessions")
    _fits_the_phone(page)
    names = page.locator(".device-name").all_inner_texts()
    assert "Safari on iPhone" in names
    assert "Chrome on Linux" in names
    chrome = page.locator(".device", has_text="Chrome on Linux")
    assert chrome.locator(".device-name").get_attribute("title") == LINUX_CHROME  # on hover
    chrome.locator("summary").click()
    assert LINUX_CHROME in chrome.locator(".ua code").inner_text()  # and in the details
    signed_in = chrome.locator("time").first
    assert "ago" in signed_in.inner_text() or signed_in.inner_text() == "just now"
    assert (signed_in.get_attribute("title") or "").endswith(" UTC")
    _fits_the_phone(page)
    page.screenshot(path=str(artifacts / "browser-phone-sessions.png"), full_page=True)
    page.goto(f"{demo_url}/logout-everywhere")
    _fits_the_phone(page)
    page.screenshot(path=str(artifacts / "browser-phone-confirm.png"), full_page=True)
    for path in ("/settings", "/"):
        page.goto(f"{demo_url}{path}")
        _fits_the_phone(page)
    laptop.close()
    phone.close()


def test_every_action_confirms_itself(browser: Any, demo_url: str, artifacts: Path) -> None:
    context, other = _device(browser, "Flash"), _device(browser, "Elsewhere")
    page = context.new_page()
    _login(other.new_page(), demo_url, "bob", "builder")
    _login(page, demo_url, "bob", "builder")
    page.goto(f"{demo_url}/sessions")
    page.get_by_role("button", name="Log out other devices").click()
    page.wait_for_url(f"{demo_url}/sessions")
    assert "Other devices logged out" in page.text_content(".flash-success")
    assert page.locator(".device").count() == 1
    page.screenshot(path=str(artifacts / "browser-flash-others.png"))
    page.reload()
    assert page.locator(".flash").count() == 0  # shown once
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url(f"{demo_url}/login")
    assert page.text_content(".flash-success") == "You have been logged out."
    page.screenshot(path=str(artifacts / "browser-flash-logged-out.png"))
    page.reload()
    assert page.locator(".flash").count() == 0  # a plain logout is not "session ended"
    context.close()
    other.close()


def test_a_sensitive_action_asks_for_the_password_again(
    browser: Any, quick_demo_url: str, artifacts: Path
) -> None:
    """Issue 17's re-authentication flow, as a person sees it: a sign-in older than
    ``SATCHEL_REAUTH_MAX_AGE`` sends the sensitive action to "Confirm it is you"; a wrong
    password is refused there; the right one returns to the action under a new session
    cookie."""
    base = quick_demo_url
    context = _device(browser, "Reauth")
    page = context.new_page()
    _login(page, base)
    page.goto(f"{base}/security/sensitive")
    assert page.is_visible("#sensitive-ok")  # a sign-in of a moment ago is enough
    time.sleep(REAUTH_MAX_AGE + 0.5)
    page.goto(f"{base}/security/sensitive")
    page.wait_for_url(f"{base}/reauth?next=/security/sensitive")
    assert "Confirm it is you" in page.text_content("h1")
    page.screenshot(path=str(artifacts / "browser-reauth.png"))
    before = _session_cookie(context)
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert "Wrong password" in page.text_content(".error")
    page.fill("#password", "wonderland")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/security/sensitive")
    assert page.is_visible("#sensitive-ok")
    assert _session_cookie(context) not in ("", before)  # a new session ID
    page.goto(f"{base}/security")
    assert page.text_content("#auth-methods") == "pwd"
    context.close()


def test_an_administrator_acts_as_alice_and_returns(
    browser: Any, demo_url: str, artifacts: Path
) -> None:
    context = _device(browser, "Admin")
    page = context.new_page()
    _login(page, demo_url, "admin", "keyholder")
    page.select_option("#impersonate", "alice")
    page.get_by_role("button", name="Impersonate").click()
    page.wait_for_url(f"{demo_url}/profile")
    assert "Welcome, alice" in page.text_content("h1")
    assert "acting as alice" in page.text_content(".acting")
    page.screenshot(path=str(artifacts / "browser-impersonating.png"))
    response = page.goto(f"{demo_url}/security/sensitive")
    assert response is not None
    assert response.status == 403  # not as alice
    page.goto(f"{demo_url}/profile")
    page.get_by_role("button", name="Stop impersonating").click()
    page.wait_for_url(f"{demo_url}/profile")
    assert "Welcome, admin" in page.text_content("h1")
    assert page.locator(".acting").count() == 0
    context.close()


def test_logout_clears_the_sites_cookies(browser: Any, demo_url: str) -> None:
    """``Clear-Site-Data: "cookies"`` on logout: Chromium drops every cookie of the site,
    the pre-session CSRF cookie included, and the login page still says why."""
    context = _device(browser, "Clear")
    page = context.new_page()
    _login(page, demo_url)
    context.add_cookies([{"name": "left-behind", "value": "1", "url": demo_url}])
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url(f"{demo_url}/login")
    assert page.text_content(".flash-success") == "You have been logged out."
    names = {c["name"] for c in context.cookies()}
    assert "left-behind" not in names  # cleared by the logout response, not just expired
    assert "satchel" in names  # (the new, anonymous session holding the note)
    context.close()


def _session_cookie(context: Any) -> str:
    return next((c["value"] for c in context.cookies() if c["name"] == "satchel"), "")
