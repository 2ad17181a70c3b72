"""URLs of tests/test_integration_django_devices.py: the example app's, the devices app
where the docs put it, and the admin."""

from __future__ import annotations

import sys

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    *sys.modules["example_django_app"].urlpatterns,
    path("account/sessions/", include("satchel.integrations.django_devices.urls")),
    path("admin/", admin.site.urls),
    # an instance namespace of a project's own
    path(
        "elsewhere/",
        include(("satchel.integrations.django_devices.urls", "satchel_devices"), namespace="x"),
    ),
]
