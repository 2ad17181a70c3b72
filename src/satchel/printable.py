"""Client-controlled text made fit for a terminal or a log line.

A user agent, a user ID, a request path or an Origin header can carry ANSI escape
sequences, CR/LF (a forged log line), backspaces or bidi overrides. Everything satchel
prints or logs that a client chose goes through :func:`printable` first.
"""

from __future__ import annotations


def _printable(char: str) -> str:
    if char.isprintable() and char != "\\":
        return char
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def printable(text: str) -> str:
    """``text`` fit for a terminal: control characters (ANSI escapes, CR, backspace, C1),
    format characters (bidi overrides) and separators other than the space shown as
    Python-style escapes (``\\x1b``), backslashes doubled so an escape cannot be faked.
    Anything a client controlled (user agents, user IDs, IPs) goes through it."""
    return text if text.isprintable() and "\\" not in text else "".join(map(_printable, text))
