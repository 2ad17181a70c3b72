"""The MariaDB / MySQL store's schema, its 0.1 migration and its statements (``{t}``: the
table name, checked to be a plain identifier before it is put in).

The per-key commit is one ``UPDATE`` whose ``JSON_MERGE_PATCH`` sets the changed keys and
removes the deleted ones (a JSON null in a merge patch removes a key; stored values are
JSON strings, never null), under InnoDB's row lock: no read-modify-write race. The new
version comes back in the OK packet through ``LAST_INSERT_ID(version + 1)``, so the update
needs no second round trip.

``user_id`` is ``VARBINARY``: every byte counts. MariaDB's ``utf8mb4_bin`` (and every
``_bin``/``_ci`` collation but the ``nopad`` ones) is PAD SPACE, so ``"alice "`` would match
``"alice"`` in listings, revoke-all and the per-user cap. A table made by satchel 0.1
(``VARCHAR`` ``utf8mb4_bin``) is converted when the schema step runs (first use with
``create_table=True``, or ``satchel db init``).
"""

from __future__ import annotations

import re

DEFAULT_TABLE = "satchel_sessions"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    skey               CHAR(64) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    data               LONGTEXT NOT NULL,   -- JSON object: app key -> encoded value
    meta               TEXT NOT NULL,       -- JSON of satchel.Meta
    last_seen          DOUBLE NOT NULL,     -- epoch seconds
    idle_timeout       DOUBLE NOT NULL,
    absolute_deadline  DOUBLE NOT NULL,
    expires_at         DOUBLE NOT NULL,     -- least(last_seen + idle, deadline)
    user_id            VARBINARY(1020) NULL, -- bytes: no PAD SPACE, "alice " is not "alice"
    handle             VARCHAR(32) NOT NULL,
    version            BIGINT NOT NULL,
    INDEX {t}_expires_at (expires_at),
    INDEX {t}_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"""

# satchel 0.1 made user_id a PAD SPACE VARCHAR; same length in bytes (255 x 4), as bytes.
USER_COLUMN = """
SELECT DATA_TYPE FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'user_id'
"""
MIGRATE_USER = "ALTER TABLE {t} MODIFY user_id VARBINARY(1020) NULL"
# Workers starting at once take turns: one creates or converts, the others then see it done.
DUP_ENTRY = 1062  # ER_DUP_ENTRY
LOCK = "SELECT GET_LOCK(:name, :wait)"
UNLOCK = "SELECT RELEASE_LOCK(:name)"

_LOAD = "SELECT data, meta, last_seen, version FROM {t} WHERE skey = :key AND expires_at > :now"
# MariaDB and MySQL assign left to right: expires_at sees the new last_seen.
_TOUCH = """
UPDATE {t} SET last_seen = GREATEST(last_seen, :seen),
               expires_at = LEAST(last_seen + idle_timeout, absolute_deadline)
WHERE skey = :key AND expires_at > :now
"""
_CREATE = """
INSERT INTO {t} (skey, data, meta, last_seen, idle_timeout, absolute_deadline, expires_at,
                 user_id, handle, version)
VALUES (:key, :data, :meta, :ls, :it, :ad, :exp, :uid, :handle, :version)
"""
_UPDATE = """
UPDATE {t} SET
    data = JSON_MERGE_PATCH(IF(:clear, '{{}}', data), :patch),
    meta = IF((:keep_device AND NOT (:device_null AND (LOCATE('"device"\\:null', meta) > 0
                                                      OR LOCATE('"device"\\: null', meta) > 0)))
              OR (:unbinds AND LEFT(JSON_UNQUOTE(JSON_EXTRACT(meta, '$.device')), 5) = '{{"k":'),
              JSON_SET(:meta, '$.device',
                       IF(JSON_TYPE(JSON_EXTRACT(meta, '$.device')) = 'STRING',
                          JSON_UNQUOTE(JSON_EXTRACT(meta, '$.device')), NULL)),
              :meta),
    last_seen = :ls, idle_timeout = :it, absolute_deadline = :ad,
    expires_at = :exp, user_id = :uid, handle = :handle,
    version = LAST_INSERT_ID(GREATEST(version + 1, :version))
WHERE skey = :key AND expires_at > :now
"""
_DELETE = "DELETE FROM {t} WHERE skey = :key"
_PURGE = "DELETE FROM {t} WHERE expires_at <= :now LIMIT {batch}"
_COUNT = "SELECT count(*) FROM {t} WHERE expires_at > :now"
_COUNT_EXPIRED = "SELECT count(*) FROM {t} WHERE expires_at <= :now"
_ALL = "SELECT skey, meta, last_seen, version FROM {t} WHERE expires_at > :now ORDER BY skey"
_EXPORT = (
    "SELECT skey, data, meta, last_seen, version FROM {t}"
    " WHERE expires_at > :now AND skey > :after ORDER BY skey LIMIT {batch}"
)
_LIST_USER = (
    "SELECT skey, meta, last_seen, version FROM {t} WHERE user_id = :user AND expires_at > :now"
)


#: Every statement by name; ``{t}`` is the table (``{batch}``: the purge batch size).
STATEMENTS = {
    "load": _LOAD,
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
}
