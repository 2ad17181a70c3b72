"""ASGI and WSGI type aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

if TYPE_CHECKING:  # typeshed's WSGI types, the ones servers and test clients use
    from _typeshed.wsgi import StartResponse as StartResponse
    from _typeshed.wsgi import WSGIEnvironment

    Environ = WSGIEnvironment
else:
    Environ = dict[str, Any]
    StartResponse = Callable[..., Callable[[bytes], object]]

WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
