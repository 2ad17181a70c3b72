"""Starlette: satchel's ASGI middleware is a drop-in replacement for Starlette's
``SessionMiddleware``: the same ``request.session``, and Starlette's arguments
(``secret_key``, ``session_cookie``, ``max_age``, ``path``, ``same_site``, ``https_only``,
``domain``, ``partitioned``) mapped onto satchel's options (``satchel.conventions``)::

    app.add_middleware(SessionMiddleware, secret_key=..., session_cookie="sid", max_age=3600)

This module adds template helpers::

    templates = Jinja2Templates(directory="templates")
    templates.env.globals.update(csrf_token=csrf_token, csrf_input=csrf_input)

    <form method="post">{{ csrf_input(request) }} ...</form>
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..asgi import SessionMiddleware
from ..request import csrf_token

__all__ = ["SessionMiddleware", "csrf_input", "csrf_token"]


def csrf_input(request: Any) -> Any:
    """A hidden ``csrf_token`` input, marked safe for Jinja."""
    html = f'<input type="hidden" name="csrf_token" value="{escape(csrf_token(request))}">'
    try:
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - Jinja always brings markupsafe
        return html
    return Markup(html)  # noqa: S704 - the token is escaped above
