"""satchel: server-side HTTP sessions for Python web apps."""

from .auth import login, logout, regenerate_on_privilege_change
from .cookies import CookieOptions
from .engine import Engine, RequestInfo
from .errors import (
    ConfigurationError,
    CorruptRecord,
    SatchelError,
    SessionDataError,
    SessionStateError,
    SessionTooLarge,
    StoreError,
    StoreUnavailable,
)
from .keyring import Keyring
from .policy import ExpiryPolicy
from .record import Change, Meta, Record
from .session import Session
from .stores import FileStore, MemoryStore, SQLiteStore, Store, store_from_url

__version__ = "0.1.0"

__all__ = [
    "Change",
    "ConfigurationError",
    "CookieOptions",
    "CorruptRecord",
    "Engine",
    "ExpiryPolicy",
    "FileStore",
    "Keyring",
    "MemoryStore",
    "Meta",
    "Record",
    "RequestInfo",
    "SQLiteStore",
    "SatchelError",
    "Session",
    "SessionDataError",
    "SessionStateError",
    "SessionTooLarge",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "__version__",
    "login",
    "logout",
    "regenerate_on_privilege_change",
    "store_from_url",
]
