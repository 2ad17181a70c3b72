"""Session stores. Server-side stores derive from :class:`Store`."""

from ..record import Change, Meta, Record
from .base import Store
from .filesystem import FileStore
from .memory import MemoryStore
from .registry import register_scheme, store_from_url
from .sqlite import SQLiteStore

__all__ = [
    "Change",
    "FileStore",
    "MemoryStore",
    "Meta",
    "Record",
    "SQLiteStore",
    "Store",
    "register_scheme",
    "store_from_url",
]
