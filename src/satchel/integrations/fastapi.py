"""FastAPI: typed dependencies on top of satchel's ASGI middleware.

    app = FastAPI()
    app.add_middleware(SessionMiddleware, store="redis://...", secret_keys=[...])

    @app.get("/me")
    async def me(user: CurrentUser, session: CurrentSession) -> dict[str, str]: ...

``CurrentSession`` is the request's session; ``CurrentUser`` the logged-in user's ID or a
401; ``require_recent_auth(max_age=300, level=None)`` a dependency for sensitive routes
(``dependencies=[require_recent_auth()]``): a browser is sent to ``/reauth?next=...``, an
API client gets 401 ``{"detail": {"error": "reauthentication_required", "level": ...,
"max_age": ...}}`` (:class:`satchel.guard.RecentAuth`); ``CSRFProtected`` checks the CSRF
token for routes of an app that runs the middleware with ``csrf=False`` (with CSRF on, the
middleware has already checked every unsafe request). A failed check raises
:class:`CSRFRefused` (a :class:`~satchel.errors.CSRFError` and an ``HTTPException``): by
default FastAPI answers it 403 with ``{"detail": {"error": "csrf", "reason": ...}}``;
``app.add_exception_handler(CSRFError, csrf_exception_handler)`` answers browsers with
satchel's HTML page instead, or register your own.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from . import missing_framework

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import Response
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "fastapi") from None

from .. import csrf
from ..csrf_failure import CSRFFailure
from ..errors import CSRFError, SessionStateError
from ..guard import DEFAULT_LOGIN_URL, DEFAULT_REAUTH_URL, Policy, RecentAuth
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
    "require_recent_auth",
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


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = DEFAULT_REAUTH_URL,
    login_url: str = DEFAULT_LOGIN_URL,
    allow_impersonation: bool = False,
) -> Any:
    """A dependency: the session of a user whose latest authentication is at most
    ``max_age`` seconds old, at ``level`` or stronger; else an ``HTTPException`` (303 to
    ``reauth_url`` or ``login_url`` with a local ``next`` for a browser, 401 for an API
    client; 403 while an administrator impersonates the user, unless
    ``allow_impersonation``), decided as on every other path (:class:`satchel.guard.Policy`)."""
    needs = RecentAuth(max_age, level, allow_impersonation)
    base = Policy.recent_auth(login_url, reauth_url, needs)

    def recent(request: Request, session: Annotated[Session, Depends(get_session)]) -> Session:
        policy = base.resolved(session)
        reason = policy.unmet(session)
        if reason is None:
            return session
        status, headers, body = policy.refusal(
            request.url.path, request.url.query, request.headers.get("accept", ""), reason
        )
        is_json = ("content-type", "application/json") in headers
        detail = json.loads(body) if is_json else body.decode()
        extra = {name: value for name, value in headers if name != "content-type"}
        raise HTTPException(status, detail=detail, headers={**extra, "cache-control": "no-store"})

    return Depends(recent)


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
