"""Stores chosen by URL. Each scheme names a factory, imported only when used, so
``import satchel`` never imports an optional driver.

==============================  ================================================
``memory://``                   in-process; ``?max_entries=N`` (default 10000)
``sqlite:///relative/path.db``  SQLite file relative to the working directory
``sqlite:////abs/path.db``      SQLite file at an absolute path (``?timeout=`` seconds, 5;
                                ``?synchronous=normal|full``)
``file://relative/dir``         one file per session below a directory
``file:///abs/dir``             the same, absolute
``redis://host:6379/0``         Redis (``rediss://`` for TLS), extra ``redis`` needed
``redis+sentinel://h:26379/svc`` Redis behind Sentinel, primary of service ``svc``
``redis+cluster://h:7000,h:7001`` Redis Cluster, any reachable nodes
``postgresql://user@host/db``   PostgreSQL, extra ``postgres`` needed
``mysql://user:pw@host/db``     MariaDB or MySQL (``mariadb://`` too), extra ``mysql``
``memcached://host:11211``      Memcached (several hosts comma-separated), extra ``memcached``
``readthrough+<new>?from=<old>`` the new store, reading (and moving) from the old one
                                while migrating (``<old>`` percent-encoded; see
                                :mod:`satchel.stores.readthrough`)
==============================  ================================================
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ..errors import ConfigurationError
from ..redact import mask_url
from .base import Store

StoreFactory = Callable[[str], Store]

_SCHEMES: dict[str, str] = {
    "memory": "satchel.stores.registry:_memory",
    "sqlite": "satchel.stores.registry:_sqlite",
    "file": "satchel.stores.registry:_file",
    "redis": "satchel.stores.redis:from_url",
    "rediss": "satchel.stores.redis:from_url",
    "redis+sentinel": "satchel.stores.redis:from_url",
    "redis+cluster": "satchel.stores.redis:from_url",
    "postgresql": "satchel.stores.postgres:from_url",
    "postgres": "satchel.stores.postgres:from_url",
    "mysql": "satchel.stores.mysql:from_url",
    "mariadb": "satchel.stores.mysql:from_url",
    "memcached": "satchel.stores.memcached:from_url",
}


# the driver modules each scheme imports, and the extra that installs them
_DRIVERS: dict[str, tuple[tuple[str, ...], str]] = {
    "redis": (("redis",), "redis"),
    "postgresql": (("psycopg", "psycopg_pool"), "postgres"),
    "mysql": (("sqlalchemy", "pymysql", "aiomysql"), "mysql"),
    "memcached": (("pymemcache",), "memcached"),
}
_DRIVER_OF = {
    "rediss": "redis",
    "redis+sentinel": "redis",
    "redis+cluster": "redis",
    "postgres": "postgresql",
    "mariadb": "mysql",
}


def register_scheme(scheme: str, target: str) -> None:
    """Map ``scheme://`` to ``"module:function"``, a factory taking the whole URL."""
    _SCHEMES[scheme] = target


def url_options(url: str, casts: dict[str, Callable[[str], Any]]) -> tuple[str, dict[str, Any]]:
    """Take satchel's own query parameters (``casts``: name -> converter) out of a store URL;
    the URL with the rest of the query, and the converted options."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    options: dict[str, Any] = {}
    for name, cast in casts.items():
        if name in query:
            raw = query.pop(name)[0]
            try:
                options[name] = cast(raw)
            except ValueError:
                raise ConfigurationError(
                    f"store URL {mask_url(url)!r}: invalid {name}={raw!r}"
                ) from None
    rest = urlencode([(k, v) for k, values in query.items() for v in values])
    return parts._replace(query=rest).geturl(), options


def check_url(url: str) -> str:
    """The factory target for ``url``, after checking, without connecting or touching a
    file, that its scheme is known and its driver installed. Raises ConfigurationError
    naming the extra to install."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme.startswith("readthrough+"):
        from .readthrough import split_url

        for inner in split_url(url):
            check_url(inner)
        return "satchel.stores.readthrough:from_url"
    target = _SCHEMES.get(scheme)
    if target is None:
        known = ", ".join([*(f"{s}://" for s in sorted(_SCHEMES)), "readthrough+<url>"])
        raise ConfigurationError(f"store URL {mask_url(url)!r}: unknown scheme; use one of {known}")
    family = _DRIVER_OF.get(scheme, scheme)
    modules, extra = _DRIVERS.get(family, ((), ""))
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"store URL {mask_url(url)!r}: the {scheme}:// store needs the Python package "
                f"{module!r}, which is not installed; install it with "
                f'pip install "satchel[{extra}]"'
            ) from exc
    parser = _URL_PARSERS.get(family)
    if parser is not None:  # its query parameters too, without connecting or creating
        module_name, _, name = parser.partition(":")
        getattr(importlib.import_module(module_name), name)(url)
    return target


def store_from_url(url: str) -> Store:
    target = check_url(url)
    module, _, name = target.partition(":")
    factory: StoreFactory = getattr(importlib.import_module(module), name)
    return factory(url)


def _path_of(url: str, what: str, *, sqlalchemy_style: bool = False) -> str:
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if sqlalchemy_style and rest.startswith("/"):  # sqlite:///rel.db, sqlite:////abs.db
        rest = rest[1:]
    if not rest:
        raise ConfigurationError(f"store URL {mask_url(url)!r} names no {what}")
    return unquote(rest)


def refuse_unknown_params(
    url: str,
    own: Collection[str],
    driver: Collection[str] = (),
    driver_name: str = "",
) -> None:
    """Refuse a query parameter of ``url`` that neither satchel (``own``) nor the driver
    the rest of the query goes to (``driver``, named ``driver_name``) knows, naming the
    closest valid one and every valid one: a misspelt ``?tabel=`` must not be ignored,
    nor reach the driver as a ``TypeError`` at the first request."""
    given = parse_qs(urlsplit(url).query, keep_blank_values=True)
    valid = set(own) | set(driver)
    unknown = sorted(name for name in given if name not in valid)
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = f"satchel's: {', '.join(sorted(own)) or 'none'}"
    extra = sorted(set(driver) - set(own))
    if extra:
        listed += f"; {driver_name}'s: {', '.join(extra)}"
    raise ConfigurationError(
        f"store URL {mask_url(url)!r}: unknown parameter {name!r}{hint}; valid parameters: {listed}"
    )


def local_path(url: str) -> str | None:
    """The file an ``sqlite://`` URL names, or the directory of a ``file://`` URL (as
    the store would open it, relative to the working directory); None for any other
    store (and for SQLite's ``:memory:``)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = _path_of(url, "database file", sqlalchemy_style=True)
        return None if path == ":memory:" or path.startswith("file:") else path
    if scheme == "file":
        return _path_of(url, "directory")
    return None


def read_url(
    url: str,
    own: dict[str, Callable[[str], Any]],
    driver: Collection[str] = (),
    driver_name: str = "",
) -> tuple[str, dict[str, Any]]:
    """A store URL without satchel's own query parameters (``own``: name -> converter),
    and their values; a parameter neither satchel nor the driver (``driver``) reads is
    refused, naming the valid ones, as is a value that does not convert. Nothing is
    connected or created: the stores' ``parse_url`` and ``check_url`` use it."""
    refuse_unknown_params(url, own, driver, driver_name)
    return url_options(url, own)


def _own_options(url: str, casts: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The query options of an embedded store's URL (its query goes to no driver)."""
    return read_url(url, casts)[1]


_MEMORY_PARAMS: dict[str, Callable[[str], Any]] = {"max_entries": int}


def _sqlite_params() -> dict[str, Callable[[str], Any]]:
    return {"timeout": float, "synchronous": _synchronous}


def _check_memory(url: str) -> None:
    _own_options(url, _MEMORY_PARAMS)


def _check_sqlite(url: str) -> None:
    _own_options(url, _sqlite_params())


def _check_file(url: str) -> None:
    _own_options(url, {})


# How check_url reads a store URL's parameters without connecting or creating anything.
_URL_PARSERS = {
    "memory": "satchel.stores.registry:_check_memory",
    "sqlite": "satchel.stores.registry:_check_sqlite",
    "file": "satchel.stores.registry:_check_file",
    "redis": "satchel.stores.redis.store:parse_url",
    "postgresql": "satchel.stores.postgres.store:parse_url",
    "mysql": "satchel.stores.mysql.store:parse_url",
    "memcached": "satchel.stores.memcached:parse_url",
}


def _synchronous(value: str) -> str:
    if value not in ("normal", "full"):
        raise ValueError(value)
    return value


def _memory(url: str) -> Store:
    from .memory import MemoryStore

    return MemoryStore(**_own_options(url, _MEMORY_PARAMS))


def _sqlite(url: str) -> Store:
    from .sqlite import SQLiteStore

    options = _own_options(url, _sqlite_params())
    return SQLiteStore(_path_of(url, "database file", sqlalchemy_style=True), **options)


def _file(url: str) -> Store:
    from .filesystem import FileStore

    _own_options(url, {})
    return FileStore(_path_of(url, "directory"))
