"""A reusable Django app: "Your sessions" for each user, and sessions per user in the admin.

    # settings.py (the session engine must be satchel's)
    SESSION_ENGINE = "satchel.integrations.django"
    INSTALLED_APPS = [..., "django.contrib.auth", "django.contrib.admin",
                      "satchel.integrations.django_devices"]

    # urls.py
    path("account/sessions/", include("satchel.integrations.django_devices.urls")),

The page (``satchel_devices:list``) shows each of the user's sessions: the device (a
readable name from the user agent when ua-parser is installed, the ``devices`` extra, else
the raw string), the IP, when it signed in, when it was last seen, which one is this
device; a POST revokes one (``satchel_devices:revoke``) or logs out the others
(``satchel_devices:others``). Templates live under ``templates/satchel/devices/`` and a
project overrides them by name. In the admin, the user model's admin gains a "Sessions"
page per user (list, revoke one, log out everywhere) and an action that logs out the
selected users (:mod:`.admin`). The store work goes through the session engine's flows
(:mod:`.devices`). Nothing here is imported by ``import satchel``.
"""
