"""satchel: server-side HTTP sessions for Python web apps.

This namespace holds what apps use. Store authors find theirs in :mod:`satchel.stores`
(``Store``, ``Record``, ``Meta``, ``Change``, the capability interfaces) and
:mod:`satchel.testing` (the conformance suite); the core's seams are documented in
docs/architecture.md.
"""

from .accounts import aend_user_sessions, end_user_sessions
from .auth import (
    alogout_everywhere,
    alogout_other_devices,
    arevoke,
    asessions_of,
    impersonate,
    login,
    logout,
    logout_everywhere,
    logout_other_devices,
    reauthenticate,
    regenerate_on_privilege_change,
    revoke,
    sessions_of,
    stop_impersonating,
)
from .cookie import CookieStore
from .cookies import CookieOptions
from .dbsc.state import device_bound, require_device_binding
from .errors import (
    ConfigurationError,
    CorruptRecord,
    KeyCollision,
    ReauthenticationRequired,
    SatchelError,
    SessionDataError,
    SessionStateError,
    SessionTooLarge,
    StoreError,
    StoreUnavailable,
)
from .events import SessionEvent
from .expiry import ExpiryPolicy
from .flash import flash, get_flashed_messages
from .request import csrf_token, use_bearer_token
from .session import Session
from .settings import Settings, load_settings
from .stores import FileStore, MemoryStore, SQLiteStore, store_from_url
from .user_sessions import SessionInfo, UserSessions

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "CookieOptions",
    "CookieStore",
    "CorruptRecord",
    "ExpiryPolicy",
    "FileStore",
    "KeyCollision",
    "MemoryStore",
    "ReauthenticationRequired",
    "SQLiteStore",
    "SatchelError",
    "Session",
    "SessionDataError",
    "SessionEvent",
    "SessionInfo",
    "SessionStateError",
    "SessionTooLarge",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "UserSessions",
    "__version__",
    "aend_user_sessions",
    "alogout_everywhere",
    "alogout_other_devices",
    "arevoke",
    "asessions_of",
    "csrf_token",
    "device_bound",
    "end_user_sessions",
    "flash",
    "get_flashed_messages",
    "impersonate",
    "load_settings",
    "login",
    "logout",
    "logout_everywhere",
    "logout_other_devices",
    "reauthenticate",
    "regenerate_on_privilege_change",
    "require_device_binding",
    "revoke",
    "sessions_of",
    "stop_impersonating",
    "store_from_url",
    "use_bearer_token",
]
