"""satchel behind Django: SESSION_ENGINE, with Django's own auth and CSRF (one file).

Run (from the repository root; the first two steps once):
    export SECRET_KEYS=$(satchel keygen)
    python examples/django_app.py migrate          # Django's auth tables in django.sqlite3
    python examples/django_app.py createsuperuser  # someone to log in as
    gunicorn examples.django_app:application       # or: uvicorn examples.django_app:asgi
Then: GET /csrf for a token (also set as the csrftoken cookie); POST /login (username,
password, csrfmiddlewaretoken); GET /me; POST /notes/<key> (value); GET /devices;
POST /devices (handle) revokes one; POST /logout; POST /reauth (password: confirm it is
you); GET /sensitive (needs an authentication at most 5 minutes old); POST /impersonate
(username; superusers only) and POST /stop-impersonating.
"""

import os
import sys

import django
from django.conf import settings

# --8<-- [start:settings]
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ["SECRET_KEYS"].split(",")[0],
    ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1", "[::1]"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    MIDDLEWARE=[
        # Records user agent and client IP, and answers 503 when the session store is down.
        "satchel.integrations.django.DeviceMiddleware",
        # Django's SessionMiddleware, plus device-bound sessions when SATCHEL["dbsc"] is on.
        "satchel.integrations.django.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJANGO_DB", "django.sqlite3"),
        }
    },
    SESSION_ENGINE="satchel.integrations.django",
    SATCHEL={"store": os.environ.get("SESSION_STORE", "sqlite:///sessions.db")},
    SESSION_COOKIE_SECURE=True,
    CSRF_COOKIE_SECURE=True,
    USE_TZ=True,
)
# --8<-- [end:settings]
django.setup()

from django.contrib.auth import authenticate, login, logout  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402

from satchel import UserSessions  # noqa: E402
from satchel.integrations import django as satchel_django  # noqa: E402
from satchel.integrations.django import runtime  # noqa: E402


def csrf(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"csrf_token": get_token(request)})


# --8<-- [start:login]
def log_in(request: HttpRequest) -> HttpResponse:
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    login(request, user)  # Django cycles the session key: satchel gives a new ID
    if request.POST.get("remember"):  # "remember me": 30 days idle, enforced by the server
        request.session.set_expiry(30 * 24 * 3600)
    return JsonResponse({"user": user.get_username()})


# --8<-- [end:login]


def _impersonator(request: HttpRequest) -> str | None:
    """The administrator acting as the user, if one is (None under Django's own engine)."""
    session = getattr(request.session, "satchel_session", None)
    return None if session is None else session.impersonator


def note(request: HttpRequest, key: str) -> JsonResponse:
    request.session[key] = request.POST.get("value", "")
    return JsonResponse({key: request.session[key]})


def me(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    data = {k: v for k, v in request.session.items() if not k.startswith("_")}
    return JsonResponse(
        {"user": request.user.get_username(), "data": data, "impersonator": _impersonator(request)}
    )


# --8<-- [start:logout]
def log_out(request: HttpRequest) -> JsonResponse:
    logout(request)  # Django flushes the session: satchel deletes the record
    return JsonResponse({"ok": True})


# --8<-- [end:logout]


# --8<-- [start:devices]
def devices(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    sessions = UserSessions(runtime()[0])  # the store the session engine uses
    user = str(request.user.pk)  # satchel binds Django's user primary key
    if request.method == "POST":
        return JsonResponse({"revoked": sessions.revoke(user, request.POST.get("handle", ""))})
    listed = [
        {
            "handle": s.handle,
            "user_agent": s.user_agent,
            "ip": s.client_ip,
            "created": s.created,
            "impersonator": s.impersonator,  # an administrator acting as the user
        }
        for s in sessions.sessions(user)  # handles are public; IDs never leave the server
    ]
    return JsonResponse(listed, safe=False)


# --8<-- [end:devices]


def reauth(request: HttpRequest) -> JsonResponse:
    """Confirm it is you: the password again, before a sensitive action."""
    user = authenticate(
        request, username=request.user.get_username(), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    satchel_django.reauthenticate(request, methods=["pwd"])  # new key, data kept
    return JsonResponse({"ok": True})


@satchel_django.require_recent_auth(reauth_url="/reauth")
def sensitive(request: HttpRequest) -> JsonResponse:
    """A sensitive action: needs an authentication at most SATCHEL["reauth_max_age"]
    seconds old (5 minutes unless set)."""
    return JsonResponse({"done": True})


# --8<-- [start:impersonate]
def impersonate(request: HttpRequest) -> JsonResponse:
    """Log in as another user: superusers only (the app decides who may)."""
    if not request.user.is_superuser:
        return JsonResponse({"error": "forbidden"}, status=403)
    target = User.objects.filter(username=request.POST.get("username", "")).first()
    if target is None:
        return JsonResponse({"error": "no such user"}, status=404)
    admin = request.user.get_username()
    satchel_django.impersonate(request, target)  # new key, the admin recorded
    return JsonResponse({"user": target.get_username(), "impersonator": admin})


def stop_impersonating(request: HttpRequest) -> JsonResponse:
    if _impersonator(request) is None:
        return JsonResponse({"error": "not impersonating"}, status=403)
    admin = satchel_django.stop_impersonating(request)  # back, without a new login
    return JsonResponse({"user": admin.get_username()})


# --8<-- [end:impersonate]


urlpatterns = [
    path("csrf", csrf),
    path("login", log_in),
    path("notes/<str:key>", note),
    path("me", me),
    path("logout", log_out),
    path("devices", devices),
    path("reauth", reauth),
    path("sensitive", sensitive),
    path("impersonate", impersonate),
    path("stop-impersonating", stop_impersonating),
]


from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()  # for WSGI servers: gunicorn examples.django_app:application
asgi = get_asgi_application()  # for ASGI servers: uvicorn examples.django_app:asgi

if __name__ == "__main__":  # manage.py: python examples/django_app.py migrate
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
