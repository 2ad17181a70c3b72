"""The PostgreSQL store's schema and statements (``{t}``: the table name, checked to be a
plain identifier before it is put in)."""

from __future__ import annotations

import re

DEFAULT_TABLE = "satchel_sessions"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    key                text PRIMARY KEY,          -- SHA-256 of the session ID, hex
    data               jsonb NOT NULL,            -- app key -> encoded value (JSON text)
    meta               text NOT NULL,             -- JSON of satchel.Meta
    last_seen          double precision NOT NULL, -- epoch seconds
    idle_timeout       double precision NOT NULL, -- seconds
    absolute_deadline  double precision NOT NULL, -- epoch seconds
    expires_at         double precision NOT NULL, -- least(last_seen + idle, deadline)
    user_id            text,                      -- NULL until login
    handle             text NOT NULL,             -- public handle shown in UIs
    version            bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t} (expires_at);
CREATE INDEX IF NOT EXISTS {t}_user_id ON {t} (user_id) WHERE user_id IS NOT NULL;
"""

# data is read as text and decoded by _record: psycopg's jsonb loader would raise
# RecursionError on a deeply nested (corrupt) document, past any handling.
_LOAD = "SELECT data::text, meta, last_seen, version FROM {t} WHERE key = %s AND expires_at > %s"

# One statement: refresh "last seen" when due, and return the row either way.
_LOAD_REFRESH = """
WITH touched AS (
    UPDATE {t} SET last_seen = %(now)s,
                   expires_at = least(%(now)s + idle_timeout, absolute_deadline)
    WHERE key = %(key)s AND expires_at > %(now)s
      AND %(now)s - last_seen >= %(refresh)s AND last_seen < absolute_deadline
    RETURNING data, meta, last_seen, version
)
SELECT data::text, meta, last_seen, version, true FROM touched
UNION ALL
SELECT data::text, meta, last_seen, version, false FROM {t}
WHERE key = %(key)s AND expires_at > %(now)s AND NOT EXISTS (SELECT 1 FROM touched)
"""

_TOUCH = """
UPDATE {t} SET last_seen = greatest(last_seen, %(seen)s),
               expires_at = least(greatest(last_seen, %(seen)s) + idle_timeout,
                                  absolute_deadline)
WHERE key = %(key)s AND expires_at > %(now)s
"""

_CREATE = """
INSERT INTO {t} (key, data, meta, last_seen, idle_timeout, absolute_deadline, expires_at,
                 user_id, handle, version)
VALUES (%(key)s, %(data)s, %(meta)s, %(ls)s, %(it)s, %(ad)s, %(exp)s, %(uid)s, %(handle)s,
        %(version)s)
"""

_UPDATE = """
UPDATE {t} SET
    data = (CASE WHEN %(clear)s THEN '{{}}'::jsonb ELSE data - %(delete)s::text[] END)
           || %(set)s::jsonb,
    meta = CASE WHEN (%(keep_device)s AND NOT (%(device_null)s
                                          AND (strpos(meta, '"device":null') > 0
                                               OR strpos(meta, '"device": null') > 0)))
                      OR (%(unbinds)s AND left(meta::jsonb ->> 'device', 5) = '{{"k":')
                THEN (%(meta)s::text::jsonb
                      || jsonb_build_object('device', meta::jsonb -> 'device'))::text
                ELSE %(meta)s::text END,
    last_seen = %(ls)s, idle_timeout = %(it)s,
    absolute_deadline = %(ad)s, expires_at = %(exp)s, user_id = %(uid)s,
    handle = %(handle)s, version = GREATEST(version + 1, %(version)s)
WHERE key = %(key)s AND expires_at > %(now)s
RETURNING version
"""

_DELETE = "DELETE FROM {t} WHERE key = %s"

# Small batches, skipping rows other transactions hold: the table is never locked for long.
_PURGE = """
DELETE FROM {t} WHERE key IN (
    SELECT key FROM {t} WHERE expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED
)
"""

_COUNT = "SELECT count(*) FROM {t} WHERE expires_at > %s"
_COUNT_EXPIRED = "SELECT count(*) FROM {t} WHERE expires_at <= %s"
_ALL = "SELECT key, meta, last_seen, version FROM {t} WHERE expires_at > %s ORDER BY key"
_EXPORT = (
    "SELECT key, data::text, meta, last_seen, version FROM {t}"
    " WHERE expires_at > %s AND key > %s ORDER BY key LIMIT %s"
)
_LIST_USER = "SELECT key, meta, last_seen, version FROM {t} WHERE user_id = %s AND expires_at > %s"


#: Every statement by name; ``{t}`` is the table.
STATEMENTS = {
    "load": _LOAD,
    "load_refresh": _LOAD_REFRESH,
    "touch": _TOUCH,
    "create": _CREATE,
    "update": _UPDATE,
    "delete": _DELETE,
    "purge": _PURGE,
    "count": _COUNT,
    "count_expired": _COUNT_EXPIRED,
    "all": _ALL,
    "export": _EXPORT,
    "list_user": _LIST_USER,
    "schema": SCHEMA,
}
