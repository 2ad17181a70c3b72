"""The demo's device names (ua-parser) and relative times."""

from __future__ import annotations

import pytest

from satchel.demo.display import device_html, device_name, relative, when_html

from .test_browser import IPHONE, LINUX_CHROME

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [
        (LINUX_CHROME, "Chrome on Linux"),
        (IPHONE, "Safari on iPhone"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
            "Firefox on Windows",
        ),
        ("satchel-mobile/1.0", None),
        (None, None),
    ],
)
def test_device_name(user_agent: str | None, name: str | None) -> None:
    assert device_name(user_agent) == name


def test_raw_string_on_hover_and_escaped() -> None:
    html = device_html('evil"<script>')
    assert 'title="evil&quot;&lt;script&gt;"' in html
    assert "<script>" not in html
    assert device_html(None) == '<strong class="device-name">Unknown device</strong>'


@pytest.mark.parametrize(
    ("seconds_ago", "text"),
    [
        (5, "just now"),
        (60, "1 minute ago"),
        (150, "2 minutes ago"),
        (7200, "2 hours ago"),
        (86400 * 3, "3 days ago"),
        (-86400 * 14, "in 14 days"),
    ],
)
def test_relative(seconds_ago: float, text: str) -> None:
    assert relative(NOW - seconds_ago, NOW) == text


def test_exact_time_on_hover() -> None:
    assert when_html(NOW, NOW) == (
        '<time datetime="2025-06-15T15:06:40+00:00" title="2025-06-15 15:06:40 UTC">just now</time>'
    )
