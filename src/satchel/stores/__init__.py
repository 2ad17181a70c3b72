"""Session stores. Server-side stores derive from :class:`Store`; what a store can do
beyond that contract is said by the interfaces of :mod:`.capabilities` (``Countable``,
``Listable``, ``Exportable``, ``ExpiryCountable``, ``HasSchema``), checked with ``isinstance``."""

from ..record import Change, Meta, Record
from .base import Store
from .capabilities import Countable, ExpiryCountable, Exportable, HasSchema, Listable
from .filesystem import FileStore
from .memory import MemoryStore
from .registry import register_scheme, store_from_url
from .sqlite import SQLiteStore

__all__ = [
    "Change",
    "Countable",
    "ExpiryCountable",
    "Exportable",
    "FileStore",
    "HasSchema",
    "Listable",
    "MemoryStore",
    "Meta",
    "Record",
    "SQLiteStore",
    "Store",
    "register_scheme",
    "store_from_url",
]
