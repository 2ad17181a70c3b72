"""``Clear-Site-Data`` on logout (W3C Clear Site Data; OWASP ASVS 5.0, 14.3.1): the
response that ends a logged-in user's session asks the browser to drop what the site left
in it (by default its cookies: ``"cookies"``).

``"cookies"`` clears every cookie of the site's registrable domain, the sibling
subdomains' included, and Chromium applies it after the response's own ``Set-Cookie``
lines: a logout response that also starts a new session (a flash message written after
the logout) or sets the pre-session CSRF cookie (a page with a login form) would lose
them. Such a response gets the other directives only (none, when ``"*"`` was asked).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigurationError

DIRECTIVES = frozenset(
    {
        "cache",
        "cookies",
        "storage",
        "executionContexts",
        "clientHints",
        "prefetchCache",
        "prerenderCache",
        "*",
    }
)
"""The directives of the W3C draft and of the browsers' implementations."""

HEADER = "clear-site-data"


def directives(values: Iterable[str]) -> tuple[str, ...]:
    """The ``clear_site_data`` option checked: directive names, quoted or not; an empty
    list turns the header off."""
    if isinstance(values, str):
        raise ConfigurationError(
            'clear_site_data must be a list of directives, e.g. ["cookies", "storage"]'
        )
    found: list[str] = []
    for value in values:
        name = str(value).strip().strip('"')
        if name not in DIRECTIVES:
            raise ConfigurationError(
                f"clear_site_data: {value!r} is not a Clear-Site-Data directive; use "
                f"{', '.join(sorted(DIRECTIVES))} (or an empty list for none)"
            )
        if name not in found:
            found.append(name)
    return tuple(found)


def header_value(chosen: tuple[str, ...], sets_cookie: bool) -> str | None:
    """The header's value for a logout response; ``sets_cookie``: the response sets a
    cookie of its own, which ``"cookies"`` (or ``"*"``) would clear."""
    if sets_cookie:
        if "*" in chosen:
            return None
        chosen = tuple(name for name in chosen if name != "cookies")
    return ", ".join(f'"{name}"' for name in chosen) or None
