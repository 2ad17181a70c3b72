"""The MariaDB / MySQL store: :class:`MySQLStore`, and ``from_url`` for ``mysql://`` and
``mariadb://``.

:mod:`.store` implements the store contract, :mod:`.statements` holds its SQL. Importing
this package imports no driver: SQLAlchemy is loaded when an engine is made.
"""

from .statements import DEFAULT_TABLE, SCHEMA
from .store import MySQLStore, from_url

__all__ = ["DEFAULT_TABLE", "SCHEMA", "MySQLStore", "from_url"]
