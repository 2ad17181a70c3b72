"""The Redis store: ``RedisStore``, and ``from_url`` for ``redis://``, ``rediss://``,
``redis+sentinel://`` and ``redis+cluster://`` URLs.

:mod:`.store` implements the store contract, :mod:`.scripts` holds the Lua scripts and
their arguments, :mod:`.calls` how one call reaches Redis, :mod:`.connect` the client
factory (single server, TLS, Sentinel, Cluster) and :mod:`.pools` its connection pools.
Importing this package imports no driver: redis-py is loaded when a client is made.
"""

from .connect import DEFAULT_MAX_CONNECTIONS, DEFAULT_SENTINEL_CHECK, DEFAULT_TIMEOUT, make_client
from .scripts import CREATE, INDEX_ADD, INDEX_LIST, TOUCH, UPDATE, create_args
from .store import DEFAULT_PREFIX, RedisStore, from_url

__all__ = [
    "CREATE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PREFIX",
    "DEFAULT_SENTINEL_CHECK",
    "DEFAULT_TIMEOUT",
    "INDEX_ADD",
    "INDEX_LIST",
    "TOUCH",
    "UPDATE",
    "RedisStore",
    "create_args",
    "from_url",
    "make_client",
]
