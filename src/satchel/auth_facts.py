"""How and when the user of a session last proved who they are: the time (``auth_time``),
the methods (RFC 8176 ``amr`` values: ``pwd``, ``otp``, ``hwk``, ``swk``, ``mfa``, ...) and
the assurance level it gave (NIST SP 800-63B-4: ``aal1``, ``aal2``, ``aal3``, or a level
the app defines).

Kept in the session's metadata (``Meta.auth``, compact JSON), never in the app's data, and
replaced whole by each authentication: a session never claims more than its latest
authentication gave it. Written by :func:`satchel.login` and
:func:`satchel.reauthenticate`; read through ``session.auth_time``, ``session.auth_age``,
``session.auth_methods`` and ``session.auth_level``. Anything unreadable reads as no
authentication at all (fail closed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from . import _json
from .errors import ConfigurationError

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,32}")
MAX_METHODS = 8


@dataclass(frozen=True, slots=True)
class AuthFacts:
    time: float
    methods: tuple[str, ...] = ()
    level: str | None = None
    impersonator: str | None = None
    """The user acting as the session's user (:func:`satchel.impersonate`); the other
    facts are then the impersonator's own authentication."""

    def to_json(self) -> str:
        return facts_json(self.time, self.methods, self.level, self.impersonator)

    @classmethod
    def from_json(cls, text: str | None) -> AuthFacts | None:
        """The facts of ``Meta.auth``; None when absent or unreadable."""
        if text is None:
            return None
        try:
            raw = _json.loads(text)
            when, methods, level = raw["t"], raw.get("m", []), raw.get("l")
            impersonator = raw.get("i")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None
        if type(when) not in (int, float) or not math.isfinite(when):
            return None
        if type(methods) is not list or not all(type(m) is str for m in methods):
            return None
        if level is not None and type(level) is not str:
            return None
        if impersonator is not None and (type(impersonator) is not str or not impersonator):
            return None
        return cls(float(when), tuple(methods), level, impersonator)


def facts_json(
    time: float,
    methods: tuple[str, ...] = (),
    level: str | None = None,
    impersonator: str | None = None,
) -> str:
    """The JSON text of these facts (``Meta.auth``): what :meth:`AuthFacts.to_json`
    writes, without an :class:`AuthFacts` (a frozen dataclass: building one and its
    text cost a login about 12,000 instructions, the text alone 4,000; callgrind)."""
    raw: dict[str, Any] = {"t": time, "m": methods}  # (msgspec writes a tuple as an array)
    if level is not None:
        raw["l"] = level
    if impersonator is not None:
        raw["i"] = impersonator
    return _json.dumps(raw)


def checked(methods: Any, level: Any) -> tuple[tuple[str, ...], str | None]:
    """The ``methods`` and ``level`` an app gives, checked: short names, at most
    :data:`MAX_METHODS` methods, no duplicates kept."""
    if level is None and type(methods) is tuple and not methods:  # login()'s defaults
        return (), None
    if isinstance(methods, str):
        methods = (methods,)
    found: list[str] = []
    for method in methods:
        if not isinstance(method, str) or not _NAME.fullmatch(method):
            raise ConfigurationError(
                f"authentication method {method!r}: use a short name such as 'pwd', 'otp', "
                "'hwk' (RFC 8176 amr values), letters, digits and _.:- only"
            )
        if method not in found:
            found.append(method)
    if len(found) > MAX_METHODS:
        raise ConfigurationError(f"at most {MAX_METHODS} authentication methods")
    if level is not None and (not isinstance(level, str) or not _NAME.fullmatch(level)):
        raise ConfigurationError(
            f"assurance level {level!r}: use a short name such as 'aal1', 'aal2', 'aal3'"
        )
    return tuple(found), level


def impersonator_of(auth: str | None) -> str | None:
    """Who impersonates the user of a session whose ``Meta.auth`` is ``auth`` (None:
    nobody, or unreadable facts)."""
    if auth is None or '"i"' not in auth:  # (most sessions: no parse)
        return None
    facts = AuthFacts.from_json(auth)
    return None if facts is None else facts.impersonator
