"""How the demo shows a session to a person: a device name from its user agent ("Chrome on
Linux", "Safari on iPhone", by :mod:`satchel.device_names`) and times relative to now
("2 minutes ago"), each with the exact value on hover."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape

from ..device_names import device_label, device_name

__all__ = ["device_html", "device_name", "exact", "relative", "when_html"]


def device_html(user_agent: str | None) -> str:
    """The device's name with the raw user agent on hover and in a details element."""
    raw = user_agent or ""
    name = device_label(raw)
    if not raw:
        return f'<strong class="device-name">{escape(name)}</strong>'
    return (
        f'<strong class="device-name" title="{escape(raw)}">{escape(name)}</strong>'
        f'<details class="ua"><summary>User agent</summary><code>{escape(raw)}</code></details>'
    )


def exact(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _amount(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return ""


def relative(epoch: float, now: float | None = None) -> str:
    """ "just now", "2 minutes ago", "in 3 days"."""
    delta = (time.time() if now is None else now) - epoch
    amount = _amount(abs(delta))
    if not amount:
        return "just now"
    return f"{amount} ago" if delta > 0 else f"in {amount}"


def when_html(epoch: float, now: float | None = None) -> str:
    """A ``<time>`` element: relative text, the exact UTC time on hover."""
    iso = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    return f'<time datetime="{iso}" title="{exact(epoch)}">{relative(epoch, now)}</time>'
