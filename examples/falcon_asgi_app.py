"""satchel behind Falcon's ASGI app: req.context.session, loaded before the responder
through the store's async path.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.falcon_asgi_app:app
Then: GET /csrf for a token; POST /login (form: username, csrf_token); GET /me;
POST /notes/<key>?value=...; POST /logout. Every POST needs the token (form field or
X-CSRF-Token header).
"""

import os

import falcon
import falcon.asgi

from satchel.integrations.falcon import (
    SatchelMiddleware,
    arequire_login,
    csrf_token,
    login_user,
    logout_user,
)


class CSRF:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"csrf_token": csrf_token(req)}


class Login:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        username = (await req.get_media()).get("username", "")
        if username not in ("alice", "bob"):  # check a password against your users
            raise falcon.HTTPUnauthorized(title="unknown user")
        login_user(req, username)  # new session ID, CSRF secret rotated
        resp.media = {"user": username}


class Notes:
    @falcon.before(arequire_login)  # 401 if logged out
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, key: str) -> None:
        req.context.session[key] = req.get_param("value", required=True)
        resp.media = {"user": req.context.session.user_id, key: req.context.session[key]}


class Me:
    @falcon.before(arequire_login)
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        session = req.context.session  # satchel's Session, already loaded
        resp.media = {"user": session.user_id, "data": dict(session)}


class Logout:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        logout_user(req)  # record deleted, cookie expired
        resp.media = {"user": None}


sessions = SatchelMiddleware(
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)
app = falcon.asgi.App(middleware=[sessions])
sessions.add_error_handlers(app)
app.add_route("/csrf", CSRF())
app.add_route("/login", Login())
app.add_route("/notes/{key}", Notes())
app.add_route("/me", Me())
app.add_route("/logout", Logout())
