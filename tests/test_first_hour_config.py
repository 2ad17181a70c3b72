"""Issue 15: configuration mistakes are caught at start in every integration, naming the
setting, the valid choices and the closest match; durations are accepted as seconds, a
``datetime.timedelta`` or text like ``"30m"``, ``"2h"``, ``"1d"`` everywhere a duration
option is read."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from satchel import asgi, wsgi
from satchel.errors import ConfigurationError
from satchel.integrations.flask import Satchel
from satchel.option_schema import DURATION_HELP, duration
from satchel.settings import load_settings

from .conftest import KEY

NO_APP: Any = None  # built, never called


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1800, 1800.0),
        (90.5, 90.5),
        ("1800", 1800.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        (" 45 s ", 45.0),
        ("2H", 7200.0),
        (timedelta(minutes=30), 1800.0),
        (timedelta(days=1, seconds=1), 86401.0),
    ],
)
def test_durations(raw: Any, seconds: float) -> None:
    assert duration(raw) == seconds


@pytest.mark.parametrize("raw", ["30 mins", "m", "1y", "", "nan", True, [1], None, "inf"])
def test_what_is_not_a_duration(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"give seconds \(1800\), a datetime.timedelta"):
        duration(raw)


@pytest.mark.parametrize("middleware", [asgi.SessionMiddleware, wsgi.SessionMiddleware])
def test_middleware_keywords_take_durations(middleware: Any) -> None:
    app = middleware(
        None,
        store="memory://",
        secret_keys=[KEY],
        idle_timeout=timedelta(minutes=30),
        absolute_timeout="12h",
        refresh_interval="1m",
    )
    expiry = app.backend.expiry
    assert (expiry.idle_timeout, expiry.absolute_timeout, expiry.refresh_interval) == (
        1800.0,
        43200.0,
        60.0,
    )


def test_dbsc_durations_too() -> None:
    app = asgi.SessionMiddleware(
        NO_APP,
        store="memory://",
        secret_keys=[KEY],
        dbsc=True,
        dbsc_grace="5m",
        dbsc_cookie_lifetime=timedelta(minutes=10),
    )
    assert (app.policy.device.grace, app.policy.device.cookie_lifetime) == (300.0, 600.0)


def test_a_middleware_duration_that_is_not_one_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError) as caught:
        asgi.SessionMiddleware(NO_APP, store="memory://", secret_keys=[KEY], idle_timeout="30 mins")
    assert str(caught.value) == (
        f"idle_timeout (from SessionMiddleware): invalid value '30 mins': {DURATION_HELP}"
    )


def test_settings_files_and_environment_take_durations(tmp_path: Path) -> None:
    path = tmp_path / "satchel.toml"
    path.write_text(f'secret_keys = ["{KEY}"]\nidle_timeout = "30m"\nabsolute_timeout = "1d"\n')
    settings = load_settings(path, env={"SATCHEL_REFRESH_INTERVAL": "2m"})
    assert (settings.idle_timeout, settings.absolute_timeout, settings.refresh_interval) == (
        1800.0,
        86400.0,
        120.0,
    )


def _flask(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SATCHEL_STORE="memory://", SATCHEL_SECRET_KEYS=[KEY])
    app.config.update(config)
    Satchel(app)
    return app


def test_flask_config_takes_durations() -> None:
    app = _flask(SATCHEL_IDLE_TIMEOUT=timedelta(minutes=20), SATCHEL_ABSOLUTE_TIMEOUT="8h")
    expiry = Satchel.runtime(app).backend.expiry  # type: ignore[attr-defined]
    assert (expiry.idle_timeout, expiry.absolute_timeout) == (1200.0, 28800.0)


def test_a_flask_typo_is_refused_at_start_naming_the_closest() -> None:
    with pytest.raises(ConfigurationError) as caught:
        _flask(SATCHEL_IDLE_TIMOUT=60)
    message = str(caught.value)
    assert message.startswith(
        "app.config: unknown option 'SATCHEL_IDLE_TIMOUT' (did you mean "
        "'SATCHEL_IDLE_TIMEOUT'?); valid options: "
    )
    assert "SATCHEL_COOKIE_NAME" in message


# -- Django: settings are process-wide, so each case runs in its own interpreter ------------------

_DJANGO = """
import sys
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="x" * 50,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    SESSION_ENGINE="satchel.integrations.django",
    SATCHEL=eval(sys.argv[1]),
)
django.setup()
from django.http import HttpResponse
from django.urls import path

def view(request):
    request.session["x"] = 1
    return HttpResponse(str(request.session.get_expiry_age()))

urlpatterns = [path("", view)]
from django.core.wsgi import get_wsgi_application
from satchel.errors import ConfigurationError
try:
    get_wsgi_application()  # builds the middleware, as every server does at start
except ConfigurationError as exc:
    print("at start:", exc)
    sys.exit(1)
from django.test import Client
print("served:", Client().get("/").content.decode())
"""


def _django(config: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _DJANGO, config],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_a_django_typo_stops_the_start_naming_the_closest() -> None:
    code, out = _django("{'store': 'memory://', 'idle_timout': 60}")
    assert code == 1, out
    assert out.startswith(
        "at start: settings.SATCHEL: unknown option 'idle_timout' (did you mean "
        "'idle_timeout'?); valid options: absolute_timeout, "
    )


def test_the_cookie_store_on_django_says_what_to_use() -> None:
    code, out = _django("{'store': 'cookie://'}")
    assert (code, out) == (
        1,
        "at start: settings.SATCHEL['store']: cookie sessions do not apply under Django: use "
        "Django's SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'",
    )


def test_django_takes_durations() -> None:
    code, out = _django(
        "{'store': 'memory://', 'idle_timeout': __import__('datetime').timedelta(minutes=20)}"
    )
    assert (code, out) == (0, "served: 1200"), out
    code, out = _django("{'store': 'memory://', 'idle_timeout': '45m'}")
    assert (code, out) == (0, "served: 2700"), out
