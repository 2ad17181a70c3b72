"""Moving a Flask app from Flask's own signed-cookie sessions to satchel: before and after.

The views keep ``flask.session``; logging in and out become satchel's calls, and forms
carry a CSRF token. satchel does not read Flask's cookie, so without more a user logs in
once more after the switch; ``carry_over_logins`` below reads it (with the same
SECRET_KEY, as Flask did) for as long as old cookies live, so users stay logged in.
tests/test_migrations.py runs both apps through Flask's test client.
"""

from __future__ import annotations

from flask import Flask, Response, request, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadData


# --8<-- [start:before]
def before(secret_key: str) -> Flask:
    """Flask's default: the whole session in a signed (readable) cookie named "session"."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_SECURE=True)

    @app.post("/login")
    def login() -> str:
        session.clear()
        session["user"] = request.form["username"]
        return "logged in"

    @app.get("/me")
    def me() -> dict[str, object]:
        return {"user": session.get("user"), "theme": session.get("theme")}

    @app.post("/theme")
    def theme() -> str:
        session["theme"] = request.form["theme"]
        return "saved"

    @app.post("/logout")
    def logout() -> str:
        session.clear()  # the browser's copy is emptied; a copy taken earlier still works
        return "logged out"

    return app


# --8<-- [end:before]


# --8<-- [start:after]
def after(secret_key: str, store: str, carry_over: bool = True) -> Flask:
    """satchel: the session on the server, the cookie ("satchel") holds a signed ID."""
    from satchel import csrf_token
    from satchel.integrations.flask import Satchel, current_user_id, login_user, logout_user

    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, SATCHEL_STORE=store)
    Satchel(app)
    if carry_over:  # optional: keeps users logged in; remove once old cookies have expired
        carry_over_logins(app)

    @app.get("/csrf")  # new: forms and fetch() calls send this token back
    def csrf() -> dict[str, str]:
        return {"csrf_token": csrf_token(request.environ)}

    @app.post("/login")
    def login() -> str:
        login_user(request.form["username"])  # a new session ID, the user bound
        return "logged in"

    @app.get("/me")
    def me() -> dict[str, object]:
        return {"user": current_user_id(), "theme": session.get("theme")}

    @app.post("/theme")
    def theme() -> str:
        session["theme"] = request.form["theme"]  # unchanged
        return "saved"

    @app.post("/logout")
    def logout() -> str:
        logout_user()  # the record deleted: every copy of the cookie stops working
        return "logged out"

    return app


# --8<-- [end:after]


# --8<-- [start:carry_over]
OLD_COOKIE = "session"  # Flask's SESSION_COOKIE_NAME before the switch


def carry_over_logins(app: Flask) -> None:
    """While old cookies live (PERMANENT_SESSION_LIFETIME, or until the browser closes):
    a request that still carries Flask's signed cookie logs its user in to satchel (a new
    satchel session, nothing else of the old session is kept) and has the old cookie
    deleted, so it is read once."""
    from satchel.integrations.flask import current_user_id, login_user

    old_sessions = SecureCookieSessionInterface()

    @app.before_request
    def adopt_old_login() -> None:
        if OLD_COOKIE not in request.cookies or current_user_id() is not None:
            return
        old = old_sessions.get_signing_serializer(app)
        assert old is not None  # SECRET_KEY is set
        lifetime = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = old.loads(request.cookies[OLD_COOKIE], max_age=lifetime)
        except BadData:  # forged, tampered with, or older than Flask would accept: ignored
            return
        if isinstance(data, dict) and isinstance(data.get("user"), str):
            login_user(data["user"])

    @app.after_request
    def drop_old_cookie(response: Response) -> Response:
        if OLD_COOKIE in request.cookies:
            response.delete_cookie(OLD_COOKIE)
        return response


# --8<-- [end:carry_over]
