"""The demo app (``satchel demo``): login, profile and logout on any satchel store."""

from .app import USERS, create_app

__all__ = ["USERS", "create_app"]
