"""satchel behind FastAPI: request.session as usual, typed dependencies for the user.

Run: SECRET_KEYS=$(satchel keygen) uvicorn examples.fastapi_app:app
Then: GET /csrf for a token; POST /login/alice; GET /me; POST /notes/<key>?value=...;
GET /devices; POST /logout. Every POST needs the token in the X-CSRF-Token header (or, from
the page at /, in the form's csrf_token field).
"""

# --8<-- [start:setup]
import os

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import DictLoader, Environment

from satchel import login, logout, revoke, sessions_of
from satchel.integrations.fastapi import CurrentSession, CurrentUser, csrf_token
from satchel.integrations.starlette import SessionMiddleware, csrf_input

app = FastAPI()
app.add_middleware(
    SessionMiddleware,
    store=os.environ.get("SESSION_STORE", "sqlite:///sessions.db"),
    secret_keys=os.environ["SECRET_KEYS"].split(","),
)
# --8<-- [end:setup]

# --8<-- [start:templates]
HOME = """<p>{{ user or "Nobody" }} is logged in.</p>
<form method="post" action="/logout">{{ csrf_input(request) }}<button>Log out</button></form>"""
templates = Jinja2Templates(
    env=Environment(loader=DictLoader({"home.html": HOME}), autoescape=True)
)
templates.env.globals["csrf_input"] = csrf_input  # a hidden csrf_token field


@app.get("/", response_class=HTMLResponse)
def home(request: Request, session: CurrentSession) -> HTMLResponse:
    return templates.TemplateResponse(request, "home.html", {"user": session.user_id})


# --8<-- [end:templates]


# --8<-- [start:csrf]
@app.get("/csrf")
def csrf(request: Request) -> dict[str, str]:
    return {"csrf_token": csrf_token(request)}


# --8<-- [end:csrf]


# --8<-- [start:login]
@app.post("/login/{username}")
def log_in(username: str, session: CurrentSession) -> dict[str, str]:
    login(session, username)  # new session ID, CSRF secret rotated
    return {"user": username}


# --8<-- [end:login]


# --8<-- [start:views]
@app.post("/notes/{key}")
def note(key: str, value: str, user: CurrentUser, session: CurrentSession) -> dict[str, str]:
    session[key] = value
    return {"user": user, key: value}


@app.get("/me")
def me(user: CurrentUser, session: CurrentSession) -> dict[str, object]:
    return {"user": user, "data": dict(session)}


# --8<-- [end:views]


# --8<-- [start:devices]
@app.get("/devices")
def devices(user: CurrentUser, session: CurrentSession) -> list[dict[str, object]]:
    return [  # "your devices": this one first, marked current; handles are public
        {"handle": s.handle, "user_agent": s.user_agent, "ip": s.client_ip, "current": s.current}
        for s in sessions_of(session)
    ]


@app.post("/devices/{handle}/revoke")
def revoke_device(handle: str, user: CurrentUser, session: CurrentSession) -> dict[str, bool]:
    return {"revoked": revoke(session, handle)}


# --8<-- [end:devices]


# --8<-- [start:logout]
@app.post("/logout")
def log_out(session: CurrentSession) -> dict[str, bool]:
    logout(session)
    return {"ok": True}


# --8<-- [end:logout]
