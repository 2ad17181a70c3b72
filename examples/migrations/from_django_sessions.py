"""Moving a Django project from Django's own sessions to satchel: the settings before and
after. Views, ``django.contrib.auth`` and templates do not change.

Django's session records (the ``django_session`` table, or its cache or files) are not
read by satchel, so users log in once more after the switch (docs/migrating/django-sessions.md
says why). tests/test_integration_django.py runs examples/django_app.py's views under both.
"""

import os

# --8<-- [start:before]
BEFORE = {
    "INSTALLED_APPS": [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",  # the django_session table
    ],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    "SESSION_ENGINE": "django.contrib.sessions.backends.db",  # Django's default
    "SESSION_COOKIE_AGE": 8 * 3600,  # seconds: two weeks by default
    "SESSION_COOKIE_SECURE": True,
}
# --8<-- [end:before]

# --8<-- [start:after]
AFTER = {
    "INSTALLED_APPS": [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        # django.contrib.sessions can go once its table is no longer wanted
    ],
    "MIDDLEWARE": [
        "satchel.integrations.django.DeviceMiddleware",  # device info; 503 if the store is down
        "satchel.integrations.django.SessionMiddleware",  # in place of Django's
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    "SESSION_ENGINE": "satchel.integrations.django",
    "SATCHEL": {"store": os.environ.get("SESSION_STORE", "redis://localhost:6379/0")},
    "SESSION_COOKIE_AGE": 8 * 3600,  # unchanged: now the session's whole life, on the server
    "SESSION_COOKIE_SECURE": True,
}
# --8<-- [end:after]
