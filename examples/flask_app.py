"""satchel behind Flask: flask.session as usual, stored server-side, CSRF in templates.

Run: SECRET_KEY=$(satchel keygen) gunicorn examples.flask_app:app
Then: GET /login for the form (its csrf_token); POST /login (username, csrf_token);
GET /me; POST /note (key, value, csrf_token); POST /logout (csrf_token).
"""

import os

from flask import Flask, render_template_string, request, session

from satchel.integrations.flask import (
    Satchel,
    current_user_id,
    login_required,
    login_user,
    logout_user,
    user_sessions,
)

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]  # 32+ characters; `satchel keygen`
app.config["SATCHEL_STORE"] = os.environ.get("SESSION_STORE", "sqlite:///sessions.db")
satchel = Satchel(app)

FORM = """<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input name="username"><button>Log in</button></form>"""


@app.get("/login")
def login_form() -> str:
    return render_template_string(FORM)


@app.post("/login")
def login() -> tuple[str, int] | str:
    if request.form.get("username") not in ("alice", "bob"):
        return "unknown user", 401
    login_user(request.form["username"])
    return "logged in"


@app.post("/cart")
@login_required
def add_to_cart() -> dict[str, list[str]]:
    session.setdefault("cart", []).append(request.form["item"])
    return {"cart": session["cart"]}


@app.post("/note")
@login_required
def note() -> dict[str, str]:
    session[request.form["key"]] = request.form["value"]
    return {"ok": "saved"}


@app.get("/me")
@login_required
def me() -> dict[str, object]:
    return {"user": current_user_id(), "data": dict(session), "devices": len(user_sessions())}


@app.post("/logout")
def logout() -> str:
    logout_user()
    return "logged out"
