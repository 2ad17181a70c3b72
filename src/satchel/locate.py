"""Finding satchel's runtime in what an app holds: its middleware (ASGI or WSGI), an
app wrapped around it (a Starlette or FastAPI app given it with ``app.add_middleware``,
any ``.app`` chain), or a Flask app with the extension."""

from __future__ import annotations

from typing import Any

from .backend import Backend
from .errors import ConfigurationError
from .options import Runtime


def find_middleware(app: Any) -> Any:
    """satchel's middleware in ``app``: ``app`` itself, or the first one down its chain of
    wrapped apps (``.app``; a Starlette or FastAPI app's middleware stack, which Starlette
    builds on the first request, is built here if no request has come yet)."""
    node, seen = app, set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if hasattr(node, "backend") and hasattr(node, "policy"):
            return node
        if getattr(node, "middleware_stack", False) is None and hasattr(
            node, "build_middleware_stack"
        ):
            node.middleware_stack = node.build_middleware_stack()  # as its first request would
        node = getattr(node, "middleware_stack", None) or getattr(node, "app", None)
    raise ConfigurationError(
        f"no satchel SessionMiddleware in {type(app).__name__}: pass the middleware, or an "
        "app given it with app.add_middleware(SessionMiddleware, ...)"
    )


def backend_of(target: Any) -> Backend:
    """The backend of ``target``: a :class:`~satchel.options.Runtime`, a Flask app with
    ``Satchel``, satchel's middleware or an app that holds it (:func:`find_middleware`)."""
    if isinstance(target, Runtime):
        return target.backend
    extension = getattr(target, "extensions", None)
    if isinstance(extension, dict) and isinstance(extension.get("satchel"), dict):
        runtime = extension["satchel"]["runtime"]  # Flask's Satchel(app)
        assert isinstance(runtime, Runtime)
        return runtime.backend
    backend: Backend = find_middleware(target).backend
    return backend
