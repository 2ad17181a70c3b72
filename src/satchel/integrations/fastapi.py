"""FastAPI: typed dependencies on top of satchel's ASGI middleware.

    app = FastAPI()
    app.add_middleware(SessionMiddleware, store="redis://...", secret_keys=[...])

    @app.get("/me")
    async def me(user: CurrentUser, session: CurrentSession) -> dict[str, str]: ...

``CurrentSession`` is the request's session; ``CurrentUser`` the logged-in user's ID or a
401; ``CSRFProtected`` checks the CSRF token for routes of an app that runs the middleware
with ``csrf=False`` (with CSRF on, the middleware has already checked every unsafe request).
A failed check raises :class:`CSRFRefused` (a :class:`~satchel.errors.CSRFError` and an
``HTTPException``): by default FastAPI answers it 403 with ``{"detail": {"error": "csrf",
"reason": ...}}``; ``app.add_exception_handler(CSRFError, csrf_exception_handler)``
answers browsers with satchel's HTML page instead, or register your own.
"""

from __future__ import annotations

from typing import Annotated

from . import missing_framework

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import Response
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "fastapi") from None

from .. import csrf
from ..csrf_failure import CSRFFailure
from ..errors import CSRFError, SessionStateError
from ..request import SCOPE_KEY, RequestContext, csrf_token
from ..session import Session

__all__ = [
    "CSRFProtected",
    "CSRFRefused",
    "CurrentSession",
    "CurrentUser",
    "csrf_exception_handler",
    "csrf_token",
    "get_session",
]


class CSRFRefused(CSRFError, HTTPException):
    """A failed CSRF check in :data:`CSRFProtected`: a 403 ``HTTPException`` whose detail
    is the machine-readable failure; an exception handler for ``CSRFError`` answers it
    instead."""

    def __init__(self, failure: CSRFFailure) -> None:
        CSRFError.__init__(self, failure)
        HTTPException.__init__(
            self, 403, detail=failure.as_json(), headers={"cache-control": "no-store"}
        )


async def csrf_exception_handler(request: Request, exc: Exception) -> Response:
    """satchel's default CSRF answer (an HTML page with advice, JSON for API clients),
    for ``app.add_exception_handler(CSRFError, csrf_exception_handler)``."""
    assert isinstance(exc, CSRFError)
    ctx = request.scope.get(SCOPE_KEY)
    if not isinstance(ctx, RequestContext):
        raise SessionStateError("satchel's SessionMiddleware is not installed on this app")
    status, headers, body = ctx.csrf_answer(exc.failure)
    return Response(body, status_code=status, headers=dict(headers))


def get_session(request: Request) -> Session:
    session = request.scope.get("session")
    if not isinstance(session, Session):
        raise SessionStateError("satchel's SessionMiddleware is not installed on this app")
    return session


def get_user(session: Annotated[Session, Depends(get_session)]) -> str:
    user = session.user_id
    if user is None:
        raise HTTPException(status_code=401, detail="authentication required")
    return user


async def check_csrf(request: Request) -> None:
    ctx = request.scope.get(SCOPE_KEY)
    if not isinstance(ctx, RequestContext):
        raise SessionStateError("satchel's SessionMiddleware is not installed on this app")
    # checked here on demand, whatever the middleware's csrf setting
    token = await _form_token(request) if ctx.wants_form_token(force=True) else None
    failure = ctx.csrf_check(token, force=True)
    if failure is not None:
        raise CSRFRefused(failure)


async def _form_token(request: Request) -> str | None:
    """The form's token, found by satchel's capped search (:mod:`satchel.csrf`); the body
    read is kept on the request for the endpoint. If FastAPI has already parsed the form
    (an endpoint with ``Form`` parameters), its field is used."""
    try:
        token, body = await csrf.atoken_from_form(
            request.headers.get("content-type", ""), request.stream()
        )
    except RuntimeError:  # the stream was consumed: FastAPI parsed the form first
        value = (await request.form()).get(csrf.FORM_FIELD)
        return value if isinstance(value, str) else None
    if body is not None:
        request._body = body  # what Request.body() caches: the endpoint reads it from here
    return token


CurrentSession = Annotated[Session, Depends(get_session)]
CurrentUser = Annotated[str, Depends(get_user)]
CSRFProtected = Depends(check_csrf)
