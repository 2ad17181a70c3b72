"""Masking secrets before anything prints them: the one helper the CLI, the demo banner,
logs and error messages use.

Secrets satchel handles: secret keys (every character is hidden; the public key ID, which
travels in every cookie anyway, tells keys apart) and store passwords, in a URL's
userinfo (``user:pw@``) or in its query (``?password=``), percent-encoded or not. Text
that may echo a URL (a backend's error message, a configuration error) goes through
:func:`scrub`, which masks every URL in it and, given the URLs it may echo, their
passwords wherever they appear, raw, percent-decoded or percent-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote

MASK = "***"
# query parameters whose value is a secret (password, sentinel_password, auth_token, ...)
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|auth|credential", re.IGNORECASE)
_SCHEME = r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)"
# A URL on its own (a setting): its userinfo runs to the last "@" before the query,
# whatever it holds ("#", a space, quotes: drivers accept them unencoded), and a query value
# to the next "&". In free text (an error message), both stop at whitespace too.
_USERINFO = re.compile(_SCHEME + r"(?P<auth>[^?]*)@")
_USERINFO_IN_TEXT = re.compile(_SCHEME + r"(?P<auth>[^/?\s]*)@")
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[^=&;#\s]+)=)(?P<value>[^&]*)")
_QUERY_PARAM_IN_TEXT = re.compile(r"(?P<head>[?&;](?P<name>[^=&;#\s]+)=)(?P<value>[^&\s]*)")
_CONNINFO = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<value>'[^']*'|\S+)")


def mask_key(key: str) -> str:
    """A secret key with every character hidden: ``***(43 chars, id AbCd1234)``."""
    from .errors import ConfigurationError
    from .keyring import Keyring

    try:
        kid = Keyring([key]).current_kid
    except ConfigurationError:  # too short to be a key: say only how long it is
        return f"{MASK}({len(key)} chars)"
    return f"{MASK}({len(key)} chars, id {kid})"


def mask_url(url: str) -> str:
    """``url`` with the password of its userinfo and every secret query value as ``***``
    (``redis://:***@host/0``, ``postgresql://app:***@db/app?password=***``)."""
    old = _nested(url)
    if old is not None:  # readthrough+<new>?from=<old>: the old URL is masked on its own
        outer = _mask(_without_from(url), _USERINFO, _QUERY_PARAM)
        return f"{outer}{'&' if '?' in outer else '?'}from={quote(mask_url(old), safe='')}"
    return _mask(url, _USERINFO, _QUERY_PARAM)


def _without_from(url: str) -> str:
    head, _, query = url.partition("?")
    rest = "&".join(p for p in query.split("&") if p and not p.startswith("from="))
    return head + ("?" + rest if rest else "")


def _nested(url: str) -> str | None:
    """The old store's URL of a read-through store URL (``readthrough+...?from=``)."""
    if not url.lower().startswith("readthrough+"):
        return None
    found = [v for k, v in parse_qsl(url.partition("?")[2]) if k == "from"]
    return found[0] if found else None


def _mask(text: str, userinfo_re: re.Pattern[str], param_re: re.Pattern[str]) -> str:
    def userinfo(match: re.Match[str]) -> str:
        user, sep, _ = match["auth"].partition(":")
        return f"{match['head']}{user}{':' + MASK if sep else ''}@"

    def param(match: re.Match[str]) -> str:
        if _SECRET_PARAM.search(unquote(match["name"])) and match["value"]:
            return match["head"] + MASK
        return match[0]

    return param_re.sub(param, userinfo_re.sub(userinfo, text))


def url_secrets(url: str) -> set[str]:
    """The passwords ``url`` carries, in every spelling a message might echo them in."""
    found: set[str] = set()
    old = _nested(url)
    if old is not None:
        found |= url_secrets(old)
        url = _without_from(url)
    match = _USERINFO.search(url)
    if match and ":" in match["auth"]:
        found.add(match["auth"].partition(":")[2])
    for param in _QUERY_PARAM.finditer(url):
        if _SECRET_PARAM.search(unquote(param["name"])):
            found.add(param["value"])
    spellings = set()
    for secret in found:
        plain = unquote(secret)
        spellings |= {secret, plain, quote(plain, safe="")}
    return {s for s in spellings if s}


def scrub(text: str, urls: Iterable[str | None] = ()) -> str:
    """``text`` with every URL masked (:func:`mask_url`), ``password=...`` connection
    parameters masked, and every password of ``urls`` replaced wherever it appears."""
    text = _mask(text, _USERINFO_IN_TEXT, _QUERY_PARAM_IN_TEXT)
    text = _CONNINFO.sub(lambda m: m["head"] + MASK, text)
    secrets = set().union(*(url_secrets(u) for u in urls if u))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
