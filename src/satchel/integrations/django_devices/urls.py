"""``path("account/sessions/", include("satchel.integrations.django_devices.urls"))``:
the page (``satchel_devices:list``), revoke one (``satchel_devices:revoke``, POST
``session=<handle>``), log out the other devices (``satchel_devices:others``, POST)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "satchel_devices"

urlpatterns = [
    path("", views.sessions_page, name="list"),
    path("revoke/", views.revoke, name="revoke"),
    path("others/", views.logout_others, name="others"),
]
