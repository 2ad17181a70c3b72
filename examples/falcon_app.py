"""satchel behind Falcon (WSGI): the session is req.context.session, loaded on first access.

Run: SECRET_KEYS=$(satchel keygen) gunicorn examples.falcon_app:app
Then: GET /csrf for a token; POST /login (form: username, csrf_token); GET /me;
POST /notes/<key>?value=...; POST /logout. Every POST needs the token (form field or
X-CSRF-Token header).
"""

import os

import falcon

from satchel.integrations.falcon import (
    SatchelMiddleware,
    csrf_token,
    login_user,
    logout_user,
    require_login,
)


class CSRF:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"csrf_token": csrf_token(req)}


class Login:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        username = req.get_media().get("username", "")
        if username not in ("alice", "bob"):  # check a password against your users
            raise falcon.HTTPUnauthorized(title="unknown user")
        login_user(req, username)  # new session ID, CSRF secret rotated
        resp.media = {"user": username}


class Notes:
    @falcon.before(require_login)  # 401 if logged out
    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        req.context.session[key] = req.get_param("value", required=True)
        resp.media = {"user": req.context.session.user_id, key: req.context.session[key]}


class Me:
    @falcon.before(require_login)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        session = req.context.session  # satchel's Session: a dict, stored server-side
        resp.media = {"user": session.user_id, "data": dict(session)}


class Logout:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        logout_user(req)  # record deleted, cookie expired
        resp.media = {"user": None}


sessions = SatchelMiddleware(
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),  # newest first; `satchel keygen`
)
app = falcon.App(middleware=[sessions])
sessions.add_error_handlers(app)  # a plain 503 when the store fails in a responder
app.add_route("/csrf", CSRF())
app.add_route("/login", Login())
app.add_route("/notes/{key}", Notes())
app.add_route("/me", Me())
app.add_route("/logout", Logout())
