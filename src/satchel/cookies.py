"""Cookie attributes, validated at configuration time, and the Set-Cookie headers they make."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Literal

from .errors import ConfigurationError

SameSite = Literal["lax", "strict", "none"]
TOMBSTONE_SUFFIX = "-logout"
"""A cookie session's logout tombstone is the cookie ``<session cookie name>-logout``."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*")
_PATH = re.compile(r"/[\x21-\x3a\x3c-\x7e]*")  # printable, no ';', no space


# Cookie name prefixes (RFC 6265bis; "__Http-" and "__Host-Http-" from the layered cookies
# draft, Chrome 140+, Firefox 142): browsers match them case-insensitively and refuse a
# cookie whose attributes break them, so a wrong combination is refused here, at start.
_PREFIXES = (  # prefix, (secure, httponly, host-only with path "/")
    ("__host-http-", (True, True, True)),
    ("__http-", (True, True, False)),
    ("__host-", (True, False, True)),
    ("__secure-", (True, False, False)),
)


def _check_prefix(cookie: CookieOptions) -> None:
    lower = cookie.name.lower()
    for prefix, (secure, httponly, host) in _PREFIXES:
        if not lower.startswith(prefix):
            continue
        said = f"cookie name {cookie.name!r} has the {cookie.name[: len(prefix)]} prefix"
        if secure and not cookie.secure:
            raise ConfigurationError(f"{said}: set secure")
        if httponly and not cookie.httponly:
            raise ConfigurationError(f"{said}: set httponly (scripts may not see it)")
        if host and cookie.domain is not None:
            raise ConfigurationError(
                f"{said}: remove domain ({cookie.domain!r}); the cookie is bound to one host"
            )
        if host and cookie.path != "/":
            raise ConfigurationError(f"{said}: path must be '/'")
        return


@dataclass(frozen=True, slots=True)
class CookieOptions:
    """How the session cookie is set. Defaults: HttpOnly, Secure, SameSite=Lax, Path=/.

    ``persistent=False`` makes a browser-session cookie (no Max-Age); the server's idle
    and absolute timeouts hold either way. ``persistent=True`` gives the cookie a Max-Age
    that follows the session's own expiry and is refreshed as the session is used.
    """

    name: str = "satchel"
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    httponly: bool = True
    samesite: SameSite = "lax"
    partitioned: bool = False
    persistent: bool = False
    _attrs: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.name
        if not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"cookie name {name!r} is not a valid cookie token")
        if self.samesite not in ("lax", "strict", "none"):
            raise ConfigurationError(
                f"cookie samesite={self.samesite!r}: use 'lax', 'strict' or 'none'"
            )
        if not _PATH.fullmatch(self.path):
            raise ConfigurationError(f"cookie path {self.path!r} must start with '/'")
        if self.domain is not None and not _DOMAIN.fullmatch(self.domain):
            raise ConfigurationError(f"cookie domain {self.domain!r} is not a valid domain")
        if self.samesite == "none" and not self.secure:
            raise ConfigurationError(
                "cookie samesite='none' requires secure=True (browsers reject it otherwise)"
            )
        if self.partitioned and not self.secure:
            raise ConfigurationError("cookie partitioned=True requires secure=True")
        _check_prefix(self)

    @property
    def attributes(self) -> str:
        """The cookie's attributes as Set-Cookie writes them (``Path=/; Secure; ...``)."""
        return self._attributes()

    def _attributes(self) -> str:
        if self._attrs:
            return self._attrs
        object.__setattr__(self, "_attrs", self._build_attributes())
        return self._attrs

    def _build_attributes(self) -> str:
        parts = [f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.samesite.capitalize()}")
        if self.partitioned:
            parts.append("Partitioned")
        return "; ".join(parts)

    def set_header(self, value: str, max_age: int | None = None) -> str:
        """A Set-Cookie value carrying ``value``; with Max-Age when ``max_age`` is given."""
        cookie = f"{self.name}={value}; {self._attrs or self._attributes()}"
        if max_age is not None:
            cookie += f"; Max-Age={max(0, max_age)}"
        return cookie

    def set_header_length(self, value: str, max_age: int | None = None) -> int:
        """``len(self.set_header(value, max_age))``, without building it (the size
        check of a cookie that another step writes out)."""
        size = len(self.name) + len(value) + 3 + len(self._attrs or self._attributes())
        if max_age is not None:
            size += 10 + len(str(max(0, max_age)))  # "; Max-Age=" and the number
        return size

    def delete_header(self) -> str:
        """A Set-Cookie value that expires the cookie, with the same Name/Path/Domain."""
        epoch = formatdate(0, usegmt=True)
        return f"{self.name}=; {self._attributes()}; Max-Age=0; Expires={epoch}"


def cookie_values(header: str, name: str) -> list[str]:
    """Every value the Cookie header gives for ``name``, in order (duplicates happen)."""
    values = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            values.append(value.strip().strip('"'))
    return values
