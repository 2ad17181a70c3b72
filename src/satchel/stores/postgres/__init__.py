"""The PostgreSQL store: :class:`PostgresStore`, and ``from_url`` for ``postgresql://``.

:mod:`.store` implements the store contract, :mod:`.statements` holds its SQL. Importing
this package imports no driver: psycopg is loaded when a pool is made.
"""

from .statements import DEFAULT_TABLE, SCHEMA
from .store import PostgresStore, from_url

__all__ = ["DEFAULT_TABLE", "SCHEMA", "PostgresStore", "from_url"]
