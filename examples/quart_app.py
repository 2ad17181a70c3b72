"""satchel behind Quart: quart.session as usual, stored server-side, CSRF in templates.

Run: SECRET_KEY=$(satchel keygen) hypercorn examples.quart_app:app
Then: GET /login for the form (its csrf_token); POST /login (username, csrf_token);
GET /me; POST /note (key, value, csrf_token); POST /logout (csrf_token).
"""

import os

from quart import Quart, render_template_string, request, session

from satchel.integrations.quart import (
    Satchel,
    current_user_id,
    login_required,
    login_user,
    logout_user,
    user_sessions,
)

app = Quart(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]  # 32+ characters; `satchel keygen`
app.config["SATCHEL_STORE"] = os.environ.get("SESSION_STORE", "sqlite:///sessions.db")
satchel = Satchel(app)

FORM = """<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input name="username"><button>Log in</button></form>"""


@app.get("/login")
async def login_form() -> str:
    return await render_template_string(FORM)


@app.post("/login")
async def login() -> tuple[str, int] | str:
    form = await request.form
    if form.get("username") not in ("alice", "bob"):  # check a password against your users
        return "unknown user", 401
    login_user(form["username"])  # new session ID, CSRF secret rotated
    return "logged in"


@app.post("/cart")
@login_required
async def add_to_cart() -> dict[str, list[str]]:
    session.setdefault("cart", []).append((await request.form)["item"])
    return {"cart": session["cart"]}


@app.post("/note")
@login_required
async def note() -> dict[str, str]:
    form = await request.form
    session[form["key"]] = form["value"]
    return {"ok": "saved"}


@app.get("/me")
@login_required
async def me() -> dict[str, object]:
    devices = await user_sessions()  # this user's sessions, on the store's async path
    return {"user": current_user_id(), "data": dict(session), "devices": len(devices)}


@app.post("/logout")
async def logout() -> str:
    logout_user()  # record deleted, cookie expired
    return "logged out"
