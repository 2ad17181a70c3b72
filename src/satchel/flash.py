"""Flash messages: one-time notes for the next page ("Theme saved", "Logged out").

Works on any session that behaves like a dict: satchel's :class:`~satchel.Session` on the
ASGI and WSGI paths, ``flask.session`` and Django's ``request.session`` under satchel::

    flash(session, "Theme saved.", "success")
    ...
    for category, message in get_flashed_messages(session):   # read once, then gone
        ...

Messages live in the session under one reserved key, as a JSON list of
``[category, message]`` pairs: at most :data:`MAX_MESSAGES` (the oldest are dropped), each
message cut to :data:`MAX_LENGTH` characters. A flash written after ``logout()`` lands in
the new, anonymous session the next response starts, so "You have been logged out" reaches
the login page.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

FLASH_KEY = "_satchel_flashes"
MAX_MESSAGES = 10
MAX_LENGTH = 500
MAX_CATEGORY = 40


def _pairs(value: object) -> list[tuple[str, str]]:
    """The stored messages, whatever shape a hand-edited session gave them."""
    if not isinstance(value, list):
        return []
    pairs = []
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            category, message = item
            if isinstance(category, str) and isinstance(message, str):
                pairs.append((category, message))
    return pairs


def flash(session: MutableMapping[str, Any], message: str, category: str = "info") -> None:
    """Keep ``message`` for the next call of :func:`get_flashed_messages`."""
    if not isinstance(message, str) or not isinstance(category, str):
        raise TypeError("flash(session, message, category): message and category are str")
    pairs = _pairs(session.get(FLASH_KEY))
    pairs.append((category[:MAX_CATEGORY], message[:MAX_LENGTH]))
    session[FLASH_KEY] = [list(pair) for pair in pairs[-MAX_MESSAGES:]]


def peek_flashed_messages(session: MutableMapping[str, Any]) -> list[tuple[str, str]]:
    """The waiting messages, oldest first, left in place."""
    return _pairs(session.get(FLASH_KEY)) if FLASH_KEY in session else []


def get_flashed_messages(session: MutableMapping[str, Any]) -> list[tuple[str, str]]:
    """The waiting ``(category, message)`` pairs, oldest first; they are gone afterwards."""
    if FLASH_KEY not in session:  # the common case: no write, no store round trip
        return []
    return _pairs(session.pop(FLASH_KEY, None))
