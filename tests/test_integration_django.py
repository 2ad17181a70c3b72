"""The Django session engine through Django's own test Client, with Django's auth and CSRF.

Django's settings are process-wide, so this module configures them once (from the tested
example) and every Django test lives here."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import KEY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    import importlib.util
    import sys

    directory = tmp_path_factory.mktemp("django")
    os.environ["SECRET_KEYS"] = KEY
    os.environ["SESSION_STORE"] = f"sqlite:///{directory}/sessions.db"
    os.environ["DJANGO_DB"] = str(directory / "django.sqlite3")
    spec = importlib.util.spec_from_file_location("example_django_app", EXAMPLES / "django_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    User.objects.create_user("alice", password="wonderland")
    User.objects.create_user("bob", password="builder")
    yield module
    for name in ("SECRET_KEYS", "SESSION_STORE", "DJANGO_DB"):
        os.environ.pop(name, None)


def client(**kwargs: Any) -> Any:
    """Django's test Client enforcing CSRF; over HTTPS Django also checks the Referer."""
    from django.test import Client

    return Client(
        HTTP_HOST="testserver",
        HTTP_REFERER="https://testserver/",
        HTTP_USER_AGENT="DjangoTest/1",
        **{"enforce_csrf_checks": True, **kwargs},
    )


def csrf(c: Any) -> str:
    return str(c.get("/csrf", secure=True).json()["csrf_token"])


def log_in(c: Any, user: str = "alice", password: str = "wonderland") -> Any:
    return c.post(
        "/login", {"username": user, "password": password}, secure=True, HTTP_X_CSRFTOKEN=csrf(c)
    )


def test_login_cycles_the_key_and_logout_kills_replay(django_app: ModuleType) -> None:
    from satchel import ids
    from satchel.integrations.django import runtime

    c = client()
    c.post("/notes/pre", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    before = c.cookies["sessionid"].value
    assert ids.is_session_id(before)
    assert log_in(c).status_code == 200
    after = c.cookies["sessionid"].value
    assert after != before
    store = runtime()[0]
    assert store.load(ids.store_key(before), 0) is None  # the pre-login key is gone
    record = store.load(ids.store_key(after), 0)
    assert record is not None
    assert record.meta.user_id is not None  # filed under the user for listing and revoking
    assert (record.meta.user_agent, record.meta.client_ip) == ("DjangoTest/1", "127.0.0.1")
    assert [k for k, _ in store.list_user(record.meta.user_id, 0)] == [ids.store_key(after)]
    assert c.get("/me", secure=True).json()["user"] == "alice"
    c.post("/logout", secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    replay = client()
    replay.cookies["sessionid"] = after
    assert replay.get("/me", secure=True).status_code == 401


def test_csrf_refused_without_token(django_app: ModuleType) -> None:
    c = client()
    log_in(c)
    assert c.post("/notes/a", {"value": "1"}, secure=True).status_code == 403
    assert (
        c.post("/notes/a", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c)).status_code == 200
    )


def test_concurrent_disjoint_writes_persist(django_app: ModuleType) -> None:
    c = client()
    log_in(c)
    token, session_id = csrf(c), c.cookies["sessionid"].value
    csrf_cookie = c.cookies["csrftoken"].value
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            own = client()
            own.cookies["sessionid"] = session_id
            own.cookies["csrftoken"] = csrf_cookie
            response = own.post(
                f"/notes/k{i}", {"value": str(i)}, secure=True, HTTP_X_CSRFTOKEN=token
            )
            assert response.status_code == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    data = c.get("/me", secure=True).json()["data"]
    assert {k: v for k, v in data.items() if k.startswith("k")} == {
        f"k{i}": str(i) for i in range(20)
    }


def test_unknown_and_malformed_keys_are_never_adopted(django_app: ModuleType) -> None:
    from satchel import ids
    from satchel.integrations.django import SessionStore, runtime

    planted = ids.new_session_id()
    c = client()
    c.cookies["sessionid"] = planted
    c.post("/notes/x", {"value": "1"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    assert c.cookies["sessionid"].value != planted
    assert runtime()[0].load(ids.store_key(planted), 0) is None
    assert SessionStore("../../etc/passwd").session_key is None
    assert not SessionStore().exists("x" * 43 + "\x00")


def test_no_resurrection_after_logout(django_app: ModuleType) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    from satchel.integrations.django import SessionStore

    c = client()
    log_in(c)
    key = c.cookies["sessionid"].value
    in_flight = SessionStore(key)
    in_flight["late"] = "write"
    in_flight.load()
    SessionStore(key).delete()
    with pytest.raises(UpdateError):
        in_flight.save()
    assert not SessionStore().exists(key)


def test_another_users_login_starts_from_empty_data(django_app: ModuleType) -> None:
    """Django's own ``login`` flushes a session that belongs to another user; satchel's
    engine keeps that: bob's data never reaches alice, the same user keeps his."""
    c = client()
    log_in(c, "bob", "builder")
    c.post("/notes/theme", {"value": "dark"}, secure=True, HTTP_X_CSRFTOKEN=csrf(c))
    assert c.get("/me", secure=True).json()["data"] == {"theme": "dark"}
    log_in(c, "bob", "builder")  # the same user again: kept
    assert c.get("/me", secure=True).json()["data"] == {"theme": "dark"}
    bobs = c.cookies["sessionid"].value
    log_in(c, "alice")
    assert c.get("/me", secure=True).json() == {"user": "alice", "data": {}}
    assert c.cookies["sessionid"].value != bobs
