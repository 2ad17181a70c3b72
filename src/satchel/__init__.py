"""satchel: server-side HTTP sessions for Python web apps."""

from .auth import login, logout, regenerate_on_privilege_change
from .backend import DeviceInfo
from .cookie import CookieStore
from .cookies import CookieOptions
from .engine import Engine, RequestInfo
from .errors import (
    ConfigurationError,
    CorruptRecord,
    KeyCollision,
    SatchelError,
    SessionDataError,
    SessionStateError,
    SessionTooLarge,
    StoreError,
    StoreUnavailable,
)
from .events import SessionEvent
from .expiry import ExpiryPolicy
from .keyring import Keyring
from .record import Change, Meta, Record
from .request import csrf_token, use_bearer_token
from .session import Session
from .settings import Settings, load_settings
from .stores import FileStore, MemoryStore, SQLiteStore, Store, store_from_url
from .user_sessions import SessionInfo, UserSessions

__version__ = "0.1.0"

__all__ = [
    "Change",
    "ConfigurationError",
    "CookieOptions",
    "CookieStore",
    "CorruptRecord",
    "DeviceInfo",
    "Engine",
    "ExpiryPolicy",
    "FileStore",
    "KeyCollision",
    "Keyring",
    "MemoryStore",
    "Meta",
    "Record",
    "RequestInfo",
    "SQLiteStore",
    "SatchelError",
    "Session",
    "SessionDataError",
    "SessionEvent",
    "SessionInfo",
    "SessionStateError",
    "SessionTooLarge",
    "Settings",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UserSessions",
    "__version__",
    "csrf_token",
    "load_settings",
    "login",
    "logout",
    "regenerate_on_privilege_change",
    "store_from_url",
    "use_bearer_token",
]
