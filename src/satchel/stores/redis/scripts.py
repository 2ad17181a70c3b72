"""The Redis store's Lua scripts, and the arguments and replies each one speaks.

Each session is one hash, ``{prefix}s:{store key}``:

========  ===========================================================
``d:*``   one field per app key, holding the encoded value
``m``     the metadata as JSON (``ls`` and ``v`` override what it says)
``ls``    last seen, epoch seconds
``it``    idle timeout, seconds
``ad``    absolute deadline, epoch seconds
``v``     record version
========  ===========================================================

Every script touches one key, so it is atomic and runs unchanged on Redis Cluster. The
hash's TTL is ``min(ls + it, ad)``: Redis drops a session by itself, and a TTL never
reaches past the absolute deadline. Numbers travel as ``repr`` of a float (exact).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import CorruptRecord
from ...record import Change, Meta, Record

# KEYS[1] session hash; ARGV: now, refresh_after (-1: never)
# Returns nil, or {the hash as one JSON object, refreshed 0/1}: a single bulk string is
# far cheaper for the client to parse than a flat HGETALL reply.
LOAD = """
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return nil end
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local now = tonumber(ARGV[1])
local ls, it, ad = tonumber(f['ls']), tonumber(f['it']), tonumber(f['ad'])
if not (ls and it and ad) then return {cjson.encode(f), 0} end
if now >= math.min(ls + it, ad) then return nil end
local refresh = tonumber(ARGV[2])
if refresh >= 0 and now - ls >= refresh and ls < ad then
  redis.call('HSET', KEYS[1], 'ls', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.min(now + it, ad) * 1000))
  return {cjson.encode(f), 1}
end
return {cjson.encode(f), 0}
"""

# KEYS[1]; ARGV: last_seen, now. Returns 1 if the session exists and is live, else 0.
TOUCH = """
local f = redis.call('HMGET', KEYS[1], 'ls', 'it', 'ad')
local ls, it, ad = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not (ls and it and ad) then return 0 end
local seen, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if now >= math.min(ls + it, ad) then return 0 end
if seen > ls then
  redis.call('HSET', KEYS[1], 'ls', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.min(seen + it, ad) * 1000))
end
return 1
"""

# KEYS[1]; ARGV: expire_at_ms, then field, value pairs. Refuses to overwrite.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1]; ARGV: now, clear (0/1), meta json, ls, it, ad, n_set, then n_set name/value
# pairs, then names to delete. Returns the new version, or nil if the session is gone.
UPDATE = """
local f = redis.call('HMGET', KEYS[1], 'ls', 'it', 'ad')
local ls, it, ad = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not (ls and it and ad) then return nil end
if tonumber(ARGV[1]) >= math.min(ls + it, ad) then return nil end
if ARGV[2] == '1' then
  local fields = redis.call('HKEYS', KEYS[1])
  for _, name in ipairs(fields) do
    if string.sub(name, 1, 2) == 'd:' then redis.call('HDEL', KEYS[1], name) end
  end
end
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i])
  i = i + 1
end
redis.call('HSET', KEYS[1], 'm', ARGV[3], 'ls', ARGV[4], 'it', ARGV[5], 'ad', ARGV[6])
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
local expires = math.min(tonumber(ARGV[4]) + tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expires * 1000))
return v
"""

# The per-user index: a sorted set {prefix}u:{sha256(user)}, member = store key, score =
# the session's absolute deadline. It lives in another slot than the sessions, so it is
# kept by its own single-key scripts and pruned when read: no keyspace notifications
# (which Redis Cluster keeps per node), no multi-key scripts.
# KEYS[1] index; ARGV: deadline, store key.
INDEX_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(top[2]) * 1000))
return 1
"""

# KEYS[1] index; ARGV: now. Drops members past their deadline, returns the rest.
INDEX_LIST = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def meta_of_fields(fields: Sequence[Any]) -> Meta:
    m, ls, v = fields
    return Meta.from_json(m, last_seen=float(ls), version=int(v))


def fields(record: Record) -> list[str | bytes]:
    meta = record.meta
    flat: list[str | bytes] = [
        "m",
        meta.to_json(),
        "ls",
        repr(meta.last_seen),
        "it",
        repr(meta.idle_timeout),
        "ad",
        repr(meta.absolute_deadline),
        "v",
        str(meta.version),
    ]
    for name, value in record.data.items():
        flat += ["d:" + name, value]
    return flat


def record_of(reply: Sequence[Any], now: float) -> Record:
    """A Record from the :data:`LOAD` script's reply (the hash before any refresh, and a flag)."""
    refreshed = bool(reply[1])
    try:
        fields: dict[str, str] = json.loads(reply[0])
        data = {name[2:]: value for name, value in fields.items() if name.startswith("d:")}
        last_seen = now if refreshed else float(fields["ls"])
        meta = Meta.from_json(fields["m"], last_seen=last_seen, version=int(fields["v"]))
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptRecord("Redis session hash cannot be decoded", exc) from exc
    return Record(data, meta, refreshed=refreshed)


def update_args(change: Change, now: float) -> list[str]:
    meta = change.meta
    args = [
        repr(now),
        "1" if change.clear else "0",
        meta.to_json(),
        repr(meta.last_seen),
        repr(meta.idle_timeout),
        repr(meta.absolute_deadline),
        str(len(change.set)),
    ]
    for name, value in change.set.items():
        args += [name, value]
    args += list(change.delete)
    return args


#: The hash fields a listing reads (HMGET), in this order.
LISTED_FIELDS = ("m", "ls", "v", "it", "ad")


def live_members(
    user_id: str, members: list[bytes], replies: list[list[bytes | None]], now: float
) -> tuple[list[tuple[str, Meta]], list[bytes]]:
    """From the :data:`LISTED_FIELDS` of each index member's hash: the live sessions of
    ``user_id``, and the members to drop (gone, expired, corrupt, or another user's)."""
    live, gone = [], []
    for member, (m, ls, v, it, ad) in zip(members, replies, strict=True):
        if m is None or ls is None or it is None or ad is None or v is None:
            gone.append(member)
            continue
        try:
            meta = Meta.from_json(m, last_seen=float(ls), version=int(v))
        except (CorruptRecord, ValueError):
            gone.append(member)
            continue
        if meta.expires_at <= now or meta.user_id != user_id:
            gone.append(member)
            continue
        live.append((member.decode(), meta))
    return live, gone
