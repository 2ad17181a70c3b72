"""Pieces the SQL stores (PostgreSQL, MariaDB/MySQL) share: the metadata columns."""

from __future__ import annotations

from typing import Any

from ..record import Meta


def meta_of(row: Any) -> Meta:
    """Metadata from a ``(meta json, last_seen, version)`` row; the columns win."""
    meta, last_seen, version = row
    return Meta.from_json(meta, last_seen=last_seen, version=version)


def meta_params(meta: Meta) -> dict[str, Any]:
    """The metadata columns as named statement parameters."""
    return {
        "meta": meta.to_json(),
        "ls": meta.last_seen,
        "it": meta.idle_timeout,
        "ad": meta.absolute_deadline,
        "exp": meta.expires_at,
        "uid": meta.user_id,
        "handle": meta.handle,
    }
