"""Moving a Flask app from Flask-Session (sessions in Redis) to satchel: before and after.

The views keep ``flask.session``; logging in and out become satchel's calls (a new session
ID at login, the record deleted at logout), and forms carry a CSRF token. The old sessions
stay in Redis under Flask-Session's keys: satchel cannot read them, so users log in once
more after the switch (docs/migrating/flask-session.md says why).
tests/test_migrations.py runs both apps through Flask's test client.
"""

from __future__ import annotations

from flask import Flask, request, session


# --8<-- [start:before]
def before(redis_url: str, secret_key: str) -> Flask:
    """Flask-Session: server-side sessions in Redis, the cookie holds a session ID."""
    import redis
    from flask_session import Session  # type: ignore[import-untyped]

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SESSION_KEY_PREFIX="session:",
        SESSION_PERMANENT=False,  # a browser-session cookie
        SESSION_COOKIE_SECURE=True,
    )
    Session(app)

    @app.post("/login")
    def login() -> str:
        session.clear()
        session["user"] = request.form["username"]  # the same session ID as before login
        return "logged in"

    @app.get("/me")
    def me() -> tuple[dict[str, object], int]:
        return {"user": session.get("user"), "theme": session.get("theme")}, 200

    @app.post("/theme")
    def theme() -> str:
        session["theme"] = request.form["theme"]
        return "saved"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "logged out"

    return app


# --8<-- [end:before]


# --8<-- [start:after]
def after(redis_url: str, secret_key: str) -> Flask:
    """satchel: the same Redis, a satchel store in it; SECRET_KEY signs the cookie."""
    from satchel import csrf_token
    from satchel.integrations.flask import Satchel, current_user_id, login_user, logout_user

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        SATCHEL_STORE=f"{redis_url}?prefix=satchel:",
        SATCHEL_COOKIE_PERSISTENT=False,  # a browser-session cookie (satchel's default)
    )
    Satchel(app)

    @app.get("/csrf")  # new: forms and fetch() calls send this token back
    def csrf() -> dict[str, str]:
        return {"csrf_token": csrf_token(request.environ)}

    @app.post("/login")
    def login() -> str:
        login_user(request.form["username"])  # a new session ID, the user bound
        return "logged in"

    @app.get("/me")
    def me() -> tuple[dict[str, object], int]:
        return {"user": current_user_id(), "theme": session.get("theme")}, 200

    @app.post("/theme")
    def theme() -> str:
        session["theme"] = request.form["theme"]  # unchanged
        return "saved"

    @app.post("/logout")
    def logout() -> str:
        logout_user()  # the record deleted, the cookie expired
        return "logged out"

    return app


# --8<-- [end:after]
