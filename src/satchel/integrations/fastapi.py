"""FastAPI: typed dependencies on top of satchel's ASGI middleware.

    app = FastAPI()
    app.add_middleware(SessionMiddleware, store="redis://...", secret_keys=[...])

    @app.get("/me")
    async def me(user: CurrentUser, session: CurrentSession) -> dict[str, str]: ...

``CurrentSession`` is the request's session; ``CurrentUser`` the logged-in user's ID or a
401; ``CSRFProtected`` checks the CSRF token for routes of an app that runs the middleware
with ``csrf=False`` (with CSRF on, the middleware has already checked every unsafe request).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from .. import csrf
from ..errors import SessionStateError
from ..request import SCOPE_KEY, RequestContext, csrf_token
from ..session import Session

__all__ = ["CSRFProtected", "CurrentSession", "CurrentUser", "csrf_token", "get_session"]


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
    reason = ctx.csrf_refusal(token, force=True)
    if reason is not None:
        raise HTTPException(status_code=403, detail=reason)


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
