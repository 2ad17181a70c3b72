"""A readable name for the device a session was created on, from its user agent: "Chrome
on Linux", "Safari on iPhone". The ua-parser library does the parsing; it is imported on
first use and is optional (the ``devices`` and ``demo`` extras bring it): without it, or
for a user agent that names nothing known, :func:`device_name` answers None and the caller
shows the raw string instead (:func:`device_label`)."""

from __future__ import annotations

import functools

_PLACES = {"Mac OS X": "macOS", "Mac": "macOS"}
_HANDSETS = ("iPhone", "iPad")
_SHOWN = 60  # characters of a raw user agent shown where no name was found
UNKNOWN = "Unknown device"


def _browser(family: str) -> str:
    for suffix in (" Mobile iOS", " Mobile", " iOS"):
        family = family.removesuffix(suffix)
    return family.removeprefix("Mobile ")


@functools.lru_cache(maxsize=256)
def device_name(user_agent: str | None) -> str | None:
    """ "Chrome on Linux", "Safari on iPhone"; None when the string names nothing known
    or ua-parser is not installed."""
    if not user_agent:
        return None
    try:
        from ua_parser import parse
    except ImportError:  # optional: the caller shows the raw string instead
        return None
    result = parse(user_agent[:1000])
    browser = _browser(result.user_agent.family) if result.user_agent else None
    place = None
    if result.device and result.device.family in _HANDSETS:
        place = result.device.family
    elif result.os:
        place = _PLACES.get(result.os.family, result.os.family)
    if browser and place:
        return f"{browser} on {place}"
    return browser or place


def device_label(user_agent: str | None) -> str:
    """What a person sees: the device's name, else the raw user agent cut to 60
    characters, else "Unknown device". Plain text: escape it where it is shown."""
    name = device_name(user_agent)
    if name is not None:
        return name
    raw = user_agent or ""
    if not raw:
        return UNKNOWN
    return raw if len(raw) <= _SHOWN else raw[: _SHOWN - 3] + "..."
