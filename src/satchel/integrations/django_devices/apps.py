"""The app's configuration, and a system check that the session engine is satchel's:
without it there is no per-user listing to show."""

from __future__ import annotations

from typing import Any

from .. import missing_framework

try:
    from django.apps import AppConfig
    from django.conf import settings
    from django.core import checks
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

ENGINE = "satchel.integrations.django"


def check_session_engine(**kwargs: Any) -> list[Any]:
    if settings.SESSION_ENGINE == ENGINE:
        return []
    return [
        checks.Error(
            f"satchel.integrations.django_devices needs SESSION_ENGINE = {ENGINE!r}",
            hint="Django's own session backends keep no list of a user's sessions.",
            id="satchel_devices.E001",
        )
    ]


class DevicesConfig(AppConfig):
    name = "satchel.integrations.django_devices"
    label = "satchel_devices"
    verbose_name = "Sessions and devices"

    def ready(self) -> None:
        checks.register(check_session_engine)
