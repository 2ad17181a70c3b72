"""satchel behind Flask: flask.session as usual, stored server-side, CSRF in templates.

Run: SECRET_KEY=$(satchel keygen) gunicorn examples.flask_app:app
Then: GET /login for the form (its csrf_token); POST /login (username, csrf_token);
GET /me; POST /note (key, value, csrf_token); GET /devices; POST /logout (csrf_token).
JavaScript clients: GET /csrf for a token, sent as the X-CSRF-Token header.
"""

# --8<-- [start:setup]
import os

from flask import Flask, render_template_string, request, session

from satchel import csrf_token
from satchel.integrations.flask import (
    Satchel,
    current_user_id,
    login_required,
    login_user,
    logout_user,
    revoke_session,
    user_sessions,
)

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]  # 32+ characters; `satchel keygen`
app.config["SATCHEL_STORE"] = os.environ.get("SESSION_STORE", "sqlite:///sessions.db")
satchel = Satchel(app)
# --8<-- [end:setup]

# --8<-- [start:login]
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


# --8<-- [end:login]


# --8<-- [start:csrf]
@app.get("/csrf")
def csrf() -> dict[str, str]:  # for JavaScript: send it back as the X-CSRF-Token header
    return {"csrf_token": csrf_token(request.environ)}


# --8<-- [end:csrf]


# --8<-- [start:views]
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


# --8<-- [end:views]


# --8<-- [start:devices]
@app.get("/devices")
@login_required
def devices() -> dict[str, object]:  # "your devices": this one first, marked current
    return {
        "devices": [
            {
                "handle": info.handle,  # public; the session ID never leaves the server
                "user_agent": info.user_agent,
                "ip": info.client_ip,
                "last_seen": info.last_seen,
                "current": info.current,
            }
            for info in user_sessions()
        ]
    }


@app.post("/devices/<handle>/revoke")
@login_required
def revoke_device(handle: str) -> dict[str, bool]:
    return {"revoked": revoke_session(handle)}


# --8<-- [end:devices]


# --8<-- [start:logout]
@app.post("/logout")
def logout() -> str:
    logout_user()
    return "logged out"


# --8<-- [end:logout]
