"""The Django devices app (``satchel.integrations.django_devices``) through Django's test
Client with CSRF enforced, on SQLite and Redis: "Your sessions" lists this user's sessions
only and marks this device; revoking one ends it on the store (its cookie replayed is a
fresh anonymous session); logging out the others keeps this one; another user's handle is
a 404; every POST needs Django's CSRF token; the templates can be overridden; the admin
lists and revokes per user for staff with the permission only.

Django's settings are process-wide: this module reuses the example app (see
tests/test_integration_django_outage.py) and adds the admin, messages and this app to it
for its own tests."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from satchel import ids
from satchel.device_names import device_label, device_name
from satchel.stores.base import Store

from .test_integration_django_outage import django_app

__all__ = ["django_app"]

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"
PASSWORD = "devices-secret"
PAGE = "/account/sessions/"
REVOKE = "/account/sessions/revoke/"
OTHERS = "/account/sessions/others/"
APP = "satchel.integrations.django_devices"


@pytest.fixture(scope="module")
def devices_app(django_app: ModuleType) -> Iterator[None]:
    """The example app plus django.contrib.admin, messages and the devices app; users
    with a fast hasher (the page needs logins, not password hashing)."""
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from django.test import override_settings

    override = override_settings(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.messages",
            APP,
        ],
        MIDDLEWARE=[*settings.MIDDLEWARE, "django.contrib.messages.middleware.MessageMiddleware"],
        TEMPLATES=[_templates()],
        ROOT_URLCONF="tests.django_devices_urls",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    override.enable()
    try:
        call_command("migrate", verbosity=0)  # the admin's history table
        for name in ("devi", "devo", "nora", "vera", "stan"):
            User.objects.filter(username=name).delete()
            User.objects.create_user(name, password=PASSWORD, is_staff=name in ("vera", "stan"))
        view, change = (
            Permission.objects.get(codename=f"{verb}_user") for verb in ("view", "change")
        )
        User.objects.get(username="vera").user_permissions.add(view)
        User.objects.get(username="stan").user_permissions.add(view, change)
        yield
    finally:
        override.disable()
        sys.modules.pop("tests.django_devices_urls", None)


def _templates(*dirs: Path) -> dict[str, Any]:
    return {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(d) for d in dirs],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, devices_app: None, tmp_path: Path) -> Iterator[Store]:
    from django.test import override_settings

    from satchel.integrations.django import runtime

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/sessions.db"
    else:
        url = f"{request.getfixturevalue('redis_url')}?prefix=satchel-dev-{uuid.uuid4().hex[:8]}:"
    runtime.cache_clear()
    with override_settings(SATCHEL={"store": url}):
        made = runtime()[0]
        yield made
    runtime.cache_clear()
    made.close()


class Browser:
    """One device: Django's test Client over HTTPS with CSRF enforced."""

    def __init__(self, agent: str = CHROME) -> None:
        from django.test import Client

        self.client = Client(
            HTTP_HOST="testserver",
            HTTP_REFERER="https://testserver/",
            HTTP_USER_AGENT=agent,
            enforce_csrf_checks=True,
        )

    def get(self, url: str) -> Any:
        return self.client.get(url, secure=True)

    def post(self, url: str, data: dict[str, Any] | None = None, *, token: bool = True) -> Any:
        headers = {"HTTP_X_CSRFTOKEN": self.csrf()} if token else {}
        return self.client.post(url, data or {}, secure=True, **headers)

    def csrf(self) -> str:
        return str(self.get("/csrf").json()["csrf_token"])

    def log_in(self, user: str) -> Browser:
        assert self.post("/login", {"username": user, "password": PASSWORD}).status_code == 200
        return self

    @property
    def cookie(self) -> str:
        return str(self.client.cookies["sessionid"].value)

    def user(self) -> str | None:
        response = self.get("/me")
        return str(response.json()["user"]) if response.status_code == 200 else None

    def handle(self, store: Store) -> str:
        record = store.load(ids.store_key(self.cookie), 0)
        assert record is not None
        return record.meta.handle


def handles(page: Any) -> list[str]:
    assert page.status_code == 200
    return re.findall(r'<li class="satchel-session[^"]*" data-handle="([^"]+)"', page.text)


def replay(cookie: str) -> Browser:
    thief = Browser("Thief/1")
    thief.client.cookies["sessionid"] = cookie
    return thief


# -- the page --------------------------------------------------------------------------------


def test_lists_this_users_sessions_only_and_marks_this_device(store: Store) -> None:
    laptop, phone = Browser(CHROME).log_in("devi"), Browser(FIREFOX).log_in("devi")
    other = Browser().log_in("devo")
    page = laptop.get(PAGE)
    assert page["Cache-Control"].startswith("max-age=0")  # never cached
    assert "no-store" in page["Cache-Control"]
    assert handles(page) == [laptop.handle(store), phone.handle(store)]  # this one first
    assert other.handle(store) not in page.text
    assert page.text.count("This device") == 1
    this = page.text.split('data-handle="')[1]
    assert "This device" in this
    assert "Chrome on Linux" in this
    assert "Firefox on Windows" in page.text
    assert "127.0.0.1" in page.text
    assert "Signed in" in page.text
    assert "Last seen" in page.text
    assert "just now" in page.text
    assert page.text.count('value="Revoke"') + page.text.count(">Revoke</button>") == 1


def test_the_page_needs_a_login(store: Store) -> None:
    response = Browser().get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE}"


def test_revoke_one_ends_it_on_the_store_and_its_replay_is_anonymous(store: Store) -> None:
    laptop, phone = Browser().log_in("devi"), Browser(FIREFOX).log_in("devi")
    stolen, handle = phone.cookie, phone.handle(store)
    response = laptop.post(REVOKE, {"session": handle})
    assert response.status_code == 303
    assert response["Location"] == PAGE
    assert store.load(ids.store_key(stolen), 0) is None
    thief = replay(stolen)
    assert thief.user() is None
    assert thief.cookie != stolen  # a fresh anonymous session, never the revoked one
    assert laptop.user() == "devi"
    page = laptop.get(PAGE)
    assert handles(page) == [laptop.handle(store)]
    assert "Session revoked" in page.text  # django.contrib.messages


def test_log_out_other_devices_keeps_this_one_under_a_new_id(store: Store) -> None:
    laptop = Browser().log_in("devi")
    others = [Browser(FIREFOX).log_in("devi"), Browser("Tablet/1").log_in("devi")]
    before = laptop.cookie
    response = laptop.post(OTHERS)
    assert response.status_code == 303
    assert laptop.user() == "devi"
    assert laptop.cookie != before  # a copy of this device's cookie ends too
    assert replay(before).user() is None
    assert all(o.user() is None for o in others)
    page = laptop.get(PAGE)
    assert handles(page) == [laptop.handle(store)]
    assert "Signed out 2 other sessions" in page.text


def test_another_users_handle_is_a_404_and_ends_nothing(store: Store) -> None:
    mine, theirs = Browser().log_in("devi"), Browser().log_in("devo")
    assert mine.post(REVOKE, {"session": theirs.handle(store)}).status_code == 404
    assert theirs.user() == "devo"
    for junk in ("", "not-a-handle", "x" * 5000, ids.new_session_id()):
        assert mine.post(REVOKE, {"session": junk}).status_code == 404
    ended = Browser().log_in("devi")
    handle = ended.handle(store)
    assert ended.post("/logout").status_code == 200
    assert mine.post(REVOKE, {"session": handle}).status_code == 404  # already ended
    assert mine.user() == "devi"


def test_revoking_this_device_logs_it_out(store: Store) -> None:
    laptop = Browser().log_in("devi")
    cookie = laptop.cookie
    response = laptop.post(REVOKE, {"session": laptop.handle(store)})
    assert (response.status_code, response["Location"]) == (303, "/accounts/login/")
    assert laptop.user() is None
    assert store.load(ids.store_key(cookie), 0) is None


def test_posts_need_djangos_csrf_token_and_post(store: Store) -> None:
    laptop, phone = Browser().log_in("devi"), Browser().log_in("devi")
    handle = phone.handle(store)
    assert laptop.post(REVOKE, {"session": handle}, token=False).status_code == 403
    assert laptop.post(OTHERS, token=False).status_code == 403
    assert phone.user() == "devi"
    assert laptop.get(REVOKE).status_code == 405
    assert laptop.get(OTHERS).status_code == 405
    assert laptop.post(PAGE).status_code == 405
    form = laptop.get(PAGE).text
    assert form.count('name="csrfmiddlewaretoken"') == 2  # revoke, log out others


def test_everything_shown_is_escaped(store: Store) -> None:
    hostile = '<script>alert("ua")</script>'
    Browser(hostile).log_in("devi")
    page = Browser().log_in("devi").get(PAGE)
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt;" in page.text


def test_templates_can_be_overridden(store: Store, tmp_path: Path) -> None:
    from django.test import override_settings

    layout = tmp_path / "satchel" / "devices"
    layout.mkdir(parents=True)
    (layout / "base.html").write_text(
        "<html><body><nav>My site</nav>{% block satchel_content %}{% endblock %}</body></html>"
    )
    laptop = Browser().log_in("devi")
    with override_settings(TEMPLATES=[_templates(tmp_path)]):
        page = laptop.get(PAGE)
        assert "<nav>My site</nav>" in page.text
        assert handles(page) == [laptop.handle(store)]
        (layout / "sessions.html").write_text(
            "{% for s in sessions %}[{{ s.name }}{% if s.current %}*{% endif %}]{% endfor %}"
        )
    with override_settings(TEMPLATES=[_templates(tmp_path)]):
        assert laptop.get(PAGE).text == "[Chrome on Linux*]"


def test_an_instance_namespace_of_the_projects_own(store: Store) -> None:
    laptop, phone = Browser().log_in("devi"), Browser().log_in("devi")
    page = laptop.get("/elsewhere/")
    assert 'action="/elsewhere/revoke/"' in page.text
    assert 'action="/elsewhere/others/"' in page.text
    response = laptop.post("/elsewhere/revoke/", {"session": phone.handle(store)})
    assert (response.status_code, response["Location"]) == (303, "/elsewhere/")
    assert phone.user() is None


def test_device_names_degrade_without_ua_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_label(CHROME) == "Chrome on Linux"
    monkeypatch.setitem(sys.modules, "ua_parser", None)  # as if not installed
    device_name.cache_clear()
    try:
        assert device_name(CHROME) is None
        assert device_label(CHROME) == CHROME[:57] + "..."
        assert device_label("curl/8.0") == "curl/8.0"
        assert device_label(None) == "Unknown device"
    finally:
        device_name.cache_clear()


def test_the_app_checks_the_session_engine(devices_app: None) -> None:
    from django.test import override_settings

    from satchel.integrations.django_devices.apps import check_session_engine

    assert check_session_engine() == []
    engine = "django.contrib.sessions.backends.db"
    with override_settings(SESSION_ENGINE=engine):
        assert [e.id for e in check_session_engine()] == ["satchel_devices.E001"]


# -- the admin -------------------------------------------------------------------------------


def _admin_url(name: str) -> str:
    from django.contrib.auth.models import User

    return f"/admin/auth/user/{User.objects.get(username=name).pk}/sessions/"


def test_admin_lists_and_revokes_a_users_sessions(store: Store) -> None:
    laptop, phone = Browser().log_in("devi"), Browser(FIREFOX).log_in("devi")
    Browser().log_in("devo")
    staff = Browser().log_in("stan")
    url = _admin_url("devi")
    page = staff.get(url)
    assert page.status_code == 200
    shown = re.findall(r'<tr data-handle="([^"]+)"', page.text)
    assert sorted(shown) == sorted([laptop.handle(store), phone.handle(store)])
    assert "Chrome on Linux" in page.text
    assert "Firefox on Windows" in page.text
    stolen = phone.cookie
    response = staff.post(url, {"session": phone.handle(store)})
    assert (response.status_code, response["Location"]) == (302, url)
    assert replay(stolen).user() is None
    assert laptop.user() == "devi"
    assert staff.post(url, {"session": "not-a-handle"}).status_code == 404
    devo = Browser().log_in("devo")
    assert staff.post(url, {"session": devo.handle(store)}).status_code == 404  # not devi's
    assert devo.user() == "devo"
    assert staff.post(url, {"all": "yes"}).status_code == 302
    assert laptop.user() is None
    assert staff.user() == "stan"
    from django.contrib.admin.models import LogEntry

    notes = [e.get_change_message() for e in LogEntry.objects.filter(object_repr="devi")]
    assert any(n.startswith("Revoked session") for n in notes)
    assert "Logged out all sessions (1)." in notes


def test_admin_needs_staff_and_the_change_permission_to_revoke(store: Store) -> None:
    phone = Browser().log_in("devi")
    url = _admin_url("devi")
    handle = phone.handle(store)
    nobody = Browser().log_in("nora")  # not staff: the admin's login page
    response = nobody.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert nobody.post(url, {"session": handle}).status_code == 302
    viewer = Browser().log_in("vera")  # staff who may view users, not change them
    page = viewer.get(url)
    assert page.status_code == 200
    assert handle in page.text
    assert 'value="Revoke"' not in page.text
    assert viewer.post(url, {"session": handle}).status_code == 403
    assert viewer.post(url, {"all": "yes"}).status_code == 403
    anonymous = Browser()
    assert anonymous.get(url)["Location"].startswith("/admin/login/")
    staff = Browser().log_in("stan")
    assert staff.post(url, {"session": handle}, token=False).status_code == 403  # CSRF
    assert phone.user() == "devi"


def test_admin_action_logs_out_the_selected_users(store: Store) -> None:
    from django.contrib.auth.models import User

    from satchel.integrations.django_devices.admin import ACTION

    devi, devo = Browser().log_in("devi"), Browser().log_in("devo")
    staff = Browser().log_in("stan")
    listing = staff.get("/admin/auth/user/")
    assert listing.status_code == 200
    assert f'href="{_admin_url("devi")}"' in listing.text
    assert ACTION in listing.text
    assert ACTION not in Browser().log_in("vera").get("/admin/auth/user/").text
    chosen = [str(User.objects.get(username=n).pk) for n in ("devi", "devo")]
    response = staff.post(
        "/admin/auth/user/", {"action": ACTION, "_selected_action": chosen, "index": 0}
    )
    assert response.status_code == 302
    assert devi.user() is None
    assert devo.user() is None
    assert staff.user() == "stan"


def test_admin_ending_their_own_session_logs_them_out(store: Store) -> None:
    staff = Browser().log_in("stan")
    response = staff.post(_admin_url("stan"), {"session": staff.handle(store)})
    assert (response.status_code, response["Location"]) == (302, "/admin/login/")
    assert staff.user() is None
