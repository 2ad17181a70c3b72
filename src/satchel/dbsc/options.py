"""What an app chooses about device-bound sessions (the ``dbsc*`` options)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class DeviceBindingOptions:
    enabled: bool = False
    required: bool = False
    grace: float = 300.0
    cookie_lifetime: float = 600.0
    path: str = "/.satchel/dbsc"
    redirect: str | None = None

    def __post_init__(self) -> None:
        path = self.path
        if not path.startswith("/") or path.rstrip("/") == "" or any(c in path for c in "?#*"):
            raise ConfigurationError(
                f"dbsc_path: {path!r} must be a path below / (e.g. '/.satchel/dbsc'), without "
                "query or wildcards"
            )
        object.__setattr__(self, "path", path.rstrip("/"))
        if not 1 <= self.cookie_lifetime <= 86400:
            raise ConfigurationError(
                "dbsc_cookie_lifetime must be between 1 and 86400 seconds (default 600): it is "
                "how long a stolen pair of cookies keeps working"
            )
        if not 0 <= self.grace <= 86400:
            raise ConfigurationError("dbsc_grace must be between 0 and 86400 seconds")
        redirect = self.redirect
        if redirect is not None and (
            not redirect.startswith("/") or redirect[1:2] in ("/", "\\") or "\\" in redirect
        ):
            raise ConfigurationError(
                "dbsc_redirect must be a path on this site, e.g. '/login' (not '//host')"
            )

    @property
    def register_path(self) -> str:
        return self.path + "/register"

    @property
    def refresh_path(self) -> str:
        return self.path + "/refresh"
