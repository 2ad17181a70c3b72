"""Session stores. Server-side stores derive from :class:`Store`."""

from .base import Store
from .filesystem import FileStore
from .memory import MemoryStore
from .registry import register_scheme, store_from_url
from .sqlite import SQLiteStore

__all__ = ["FileStore", "MemoryStore", "SQLiteStore", "Store", "register_scheme", "store_from_url"]
