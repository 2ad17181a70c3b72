"""The Redis store's hash layout, its Lua scripts, and the arguments and replies each
one speaks.

Each session is one hash, ``{prefix}s:{store key}``, one short field per metadata field
and one per app value:

========  ===========================================================
``d:*``   one field per app key, holding the encoded value
``h``     handle
``c``     created, epoch seconds
``ls``    last seen, epoch seconds
``ad``    absolute deadline, epoch seconds
``it``    idle timeout, seconds
``u``     user ID (absent: none)
``ua``    user agent (absent: none)
``ip``    client IP (absent: none)
``p``     ``1`` if the session is persistent (absent: not)
``v``     record version
========  ===========================================================

Nothing is stored twice and nothing is JSON, so every field of a typical session is
shorter than ``hash-max-listpack-value`` (64 bytes by default) and Redis keeps the hash
as a compact listpack -- all but a browser's user agent, usually 100-150 bytes, which
turns the hash into a full hashtable unless that setting is raised (docs/stores.md).

A read is a plain ``HGETALL``, parsed and checked for expiry here (:func:`record_of`);
the throttled "last seen" refresh is :data:`TOUCH`, sent only when it is due. Every
script touches one key, so it is atomic and runs unchanged on Redis Cluster. The hash's
TTL is ``min(ls + it, ad)``: Redis drops a session by itself, and a TTL never reaches
past the absolute deadline. Numbers travel as the shortest text that reads back as the
same float (exact: :func:`number`), integral ones as integers.

Hashes written by 0.1 hold the metadata as JSON in one field ``m`` (with ``ls`` and
``v`` overriding what it says, ``it`` and ``ad`` copied out for the scripts). They are
still read and listed; the first update rewrites them in this layout and drops ``m``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..._json import dumps_bytes as _encode
from ...errors import CorruptRecord
from ...record import Change, Meta, Record, is_binding

# Lua's unpack() refuses a few thousand values at once: commands with a field per app key
# are sent in slices of this many arguments (even, so name/value pairs stay together).
_SLICE = """
local function sliced(command, list, first, last)
  for i = first, last, 1000 do
    redis.call(command, KEYS[1], unpack(list, i, math.min(i + 999, last)))
  end
end
"""

# KEYS[1]; ARGV: last_seen, now. Returns 1 if the session exists and is live, else 0.
# Reads only the three fields every layout has, so it serves 0.1's hashes too.
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

# A new record's ARGV, from ARGV[at] on (:func:`create_args`): the numbers, then the
# handle, then the values of the optional fields present, then the app values as
# field/value pairs. The numbers are one argument, "expire_ms c ls ad it v mask", each
# formatted by the client (no spaces), ``mask`` saying which of u, ua, ip, dv, au and p
# the record has ('1'/'0' each; p's value is always '1'): every argument costs the
# client's packer about 1,100 instructions however short, and the field names are the
# script's to know, so a login sends 7 arguments instead of 24. The hash holds the
# fields exactly as before (same names, values and order): records written by either
# layout of the arguments read the same. Fills ``fields`` (name, value pairs) and returns
# the TTL (ms) and the fields "last seen" and "absolute deadline" as sent, or an error
# reply for arguments that do not parse.
_RECORD = """
local OPTIONAL = {'u', 'ua', 'ip', 'dv', 'au'}
local function record(at, fields)
  local expire, c, ls, ad, it, v, mask = string.match(ARGV[at],
    '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ([01][01][01][01][01][01])$')
  if not mask then return nil end
  local n = 0
  local function add(name, value)
    fields[n + 1] = name
    fields[n + 2] = value
    n = n + 2
  end
  add('h', ARGV[at + 1])
  add('c', c)
  add('ls', ls)
  add('ad', ad)
  add('it', it)
  local i = at + 2
  for k = 1, 5 do
    if string.byte(mask, k) == 49 then
      add(OPTIONAL[k], ARGV[i])
      i = i + 1
    end
  end
  if string.byte(mask, 6) == 49 then add('p', '1') end
  add('v', v)
  for j = i, #ARGV do fields[n + j - i + 1] = ARGV[j] end
  return expire, ls, ad
end
"""

# KEYS[1]; ARGV: the record (_RECORD, from ARGV[1]). Refuses to overwrite.
CREATE = (
    _SLICE
    + _RECORD
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
local expire = record(1, fields)
if not expire then return redis.error_reply('satchel: malformed record arguments') end
sliced('HSET', fields, 1, #fields)
redis.call('PEXPIREAT', KEYS[1], expire)
return 1
"""
)

# The full write (FULL_UPDATE below). KEYS[1]; ARGV: now, clear (0/1), partial (0/1), n_set,
# then n_set/2 field/value pairs (metadata fields first, then app values, named as stored;
# the last is 'v' with the least version to write (Change.version_over), which the script
# raises to one above the stored one), n_absent, then n_absent
# metadata fields that must not be there (a None or False), then the app fields to
# delete. Returns the new version, nil if the session is gone or expired, or -1 if a
# partial write (only the metadata fields that changed) met a hash of 0.1's layout, which
# needs every field: nothing is written then, and the client sends the whole metadata.
# Three commands in all, usually (each costs Redis a few microseconds in a script): one
# HMGET reads what the checks need, the version and which fields to drop; one HSET
# writes; PEXPIREAT moves the TTL to min(ls + it, ad) of the fields as written. Deletions
# (an HDEL, only when there are any) go first, so a field both cleared and set ends up
# set (Change.apply's order). The fields that must be absent are only deleted when
# present: a session without a user costs no HDEL on every write. 0.1's ``m`` is dropped
# on the way.
_FULL_UPDATE = """
local f = redis.call('HMGET', KEYS[1], 'ls', 'it', 'ad', 'v', 'm', 'u', 'ua', 'ip', 'p', 'dv', 'au')
local ls, it, ad = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if not (ls and it and ad) then return nil end
if tonumber(ARGV[1]) >= math.min(ls + it, ad) then return nil end
if f[5] and ARGV[3] == '1' then return -1 end
local at = 5 + tonumber(ARGV[4])
-- a stored device binding is never replaced by an unbound state, but in a fresh start
local bound = f[10] and string.sub(f[10], 1, 5) == '{"k":' and ARGV[2] ~= '1'
for i = 5, at - 2, 2 do
  local name = ARGV[i]
  if name == 'ls' then ls = tonumber(ARGV[i + 1])
  elseif name == 'it' then it = tonumber(ARGV[i + 1])
  elseif name == 'ad' then ad = tonumber(ARGV[i + 1])
  elseif name == 'dv' then
    if bound and string.sub(ARGV[i + 1], 1, 5) ~= '{"k":' then ARGV[i + 1] = f[10] end
  elseif string.byte(name, 2) == 58 then break end  -- 'd:': the metadata fields are first
end
local absent_to = at + tonumber(ARGV[at])
local drop = {}
if f[5] then drop[1] = 'm' end
for i = at + 1, absent_to do
  local name = ARGV[i]
  if (name == 'u' and f[6]) or (name == 'ua' and f[7]) or (name == 'ip' and f[8])
      or (name == 'p' and f[9]) or (name == 'dv' and f[10] and not bound)
      or (name == 'au' and f[11]) then
    drop[#drop + 1] = name
  end
end
if ARGV[2] == '1' then
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, 2) == 'd:' then drop[#drop + 1] = name end
  end
end
for i = absent_to + 1, #ARGV do drop[#drop + 1] = ARGV[i] end
for i = 1, #drop, 1000 do
  redis.call('HDEL', KEYS[1], unpack(drop, i, math.min(i + 999, #drop)))
end
local v = math.max((tonumber(f[4]) or 0) + 1, tonumber(ARGV[at - 1]) or 0)
ARGV[at - 1] = string.format('%d', v)  -- (tostring writes 1e+14 from 10^14 on)
for i = 5, at - 1, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, at - 1)))
end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.min(ls + it, ad) * 1000))
return v
"""

# KEYS[1]; ARGV: the expected version (or ''), the TTL as an epoch in ms (or ''), then
# the full write's ARGV (above), the placeholder of 'v' holding the new version when
# there is an expected one (:func:`update_args`). The fast path: when the hash still
# holds the version the client read it at, every field the client read is still there
# as read (every writer bumps ``v``; TOUCH moves only ``ls``, which a write sets
# anyway), so the client has worked out in Python what the full write would do -- the
# fields to drop are those the base had and the change makes absent (n_absent's list,
# by meta_changes) and the deleted app keys, the fields to set are the pairs, the TTL is
# min(ls + it, ad) of the metadata as written -- and the script checks one field instead
# of reading eleven: HGET, HDEL (only when something is to go), HSET, PEXPIREAT, with no
# Lua loop over the fields (issue 12: about half the full write's Redis CPU). Any other
# version (a write in between, no hash), or no expected version (the client cannot vouch
# for what it read, or a rule of the full write's would act: :func:`update_args`), takes the
# full write, unchanged, with the rest of ARGV.
UPDATE = (
    """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'v') == ARGV[1] then
  local at, last = 7 + ARGV[6], #ARGV
  for i = at + 1, last, 1000 do
    redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, last)))
  end
  for i = 7, at - 1, 1000 do
    redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, at - 1)))
  end
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  return tonumber(ARGV[at - 1])
end
table.remove(ARGV, 1)
table.remove(ARGV, 1)
"""
    + _FULL_UPDATE
)

# The per-user index: a sorted set {prefix}u:{sha256(user)}, member = store key, score =
# the session's absolute deadline. It lives in another slot than the sessions, so it is
# kept by its own single-key scripts and pruned when read: no keyspace notifications
# (which Redis Cluster keeps per node), and no multi-key scripts but CREATE_INDEXED,
# used only where every key lives on one server.
# KEYS[1] index; ARGV: deadline, store key, now. Drops members past their deadline;
# returns how many members the index holds then (sessions deleted before their deadline
# still count until a listing prunes them: an upper bound of the user's live sessions).
_FILE = """
local function file(index, deadline, member, now)
  redis.call('ZADD', index, deadline, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #top == 0 then return 0 end
  redis.call('PEXPIREAT', index, string.format('%.0f', tonumber(top[2]) * 1000))
  return redis.call('ZCARD', index)
end
"""

INDEX_ADD = _FILE + "return file(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"

# A login's record, filed under its user in the same script: KEYS[1] session hash,
# KEYS[2] the user's index (another slot: only where every key lives on one server, not
# on Cluster); ARGV: the store key (the index's member), then CREATE's ARGV. The index
# entry's score is the record's absolute deadline, and members past their deadline when
# the record was last seen are dropped. Returns -1 on a key collision (nothing written),
# else the index's size, as INDEX_ADD.
CREATE_INDEXED = (
    _SLICE
    + _FILE
    + _RECORD
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local fields = {}
local expire, ls, ad = record(2, fields)
if not expire then return redis.error_reply('satchel: malformed record arguments') end
local count = file(KEYS[2], ad, ARGV[1], ls)
sliced('HSET', fields, 1, #fields)
redis.call('PEXPIREAT', KEYS[1], expire)
return count
"""
)

# KEYS[1] index; ARGV: now. Drops members past their deadline, returns the rest.
INDEX_LIST = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def number(value: float) -> str:
    """A float as Redis stores it: exact, and as an integer when it is one (``1800``, not
    ``1800.0``: shorter, and an integer in a listpack). Other values are ``repr``'s text;
    from 1e-4 to 1e15 (where ``repr`` writes no exponent) it comes from msgspec's encoder,
    the same shortest digits that read back as the same float, at about 1,000
    instructions instead of the 6,000-9,000 of ``repr``'s digit search (callgrind)."""
    if -1e15 < value < 1e15:  # (not inf or nan, which take repr; ints pass too)
        if value % 1 == 0:
            return str(int(value))
        if not -1e-4 < value < 1e-4:
            return _encode(value).decode()
    return repr(value)


def meta_fields(meta: Meta) -> tuple[list[str], list[str]]:
    """The metadata as field/value pairs, and the fields that must be absent (a None,
    or ``persistent`` False). The version is left out: the scripts own it."""
    created = number(meta.created)
    pairs = [
        "h",
        meta.handle,
        "c",
        created,
        "ls",
        created if meta.last_seen == meta.created else number(meta.last_seen),
        "ad",
        number(meta.absolute_deadline),
        "it",
        number(meta.idle_timeout),
    ]
    absent = []
    for name, value in (
        ("u", meta.user_id),
        ("ua", meta.user_agent),
        ("ip", meta.client_ip),
        ("dv", meta.device),
        ("au", meta.auth),
    ):
        if value is None:
            absent.append(name)
        else:
            pairs += (name, value)
    if meta.persistent:
        pairs += ("p", "1")
    else:
        absent.append("p")
    return pairs, absent


def create_args(record: Record) -> list[str]:
    """ARGV of :data:`CREATE`: the numbers (expiry in ms, created, last seen, absolute
    deadline, idle timeout, version, and which optional fields follow) as one argument,
    the handle, the optional fields' values, then the app values as field/value pairs
    (the layout :data:`_RECORD` reads). Unrolled: this runs on every login."""
    (handle, created, seen, deadline, idle, user, agent, ip, persistent, version, device, auth) = (
        record.meta
    )
    args = ["", handle]
    if user is not None:
        args.append(user)
    if agent is not None:
        args.append(agent)
    if ip is not None:
        args.append(ip)
    if device is not None:
        args.append(device)
    if auth is not None:
        args.append(auth)
    created_text = number(created)
    idle_end = seen + idle
    args[0] = (
        f"{int((idle_end if idle_end < deadline else deadline) * 1000)} {created_text} "
        f"{created_text if seen == created else number(seen)} {number(deadline)} "
        f"{number(idle)} {int(version)} {'0' if user is None else '1'}"
        f"{'0' if agent is None else '1'}{'0' if ip is None else '1'}"
        f"{'0' if device is None else '1'}{'0' if auth is None else '1'}"
        f"{'1' if persistent else '0'}"
    )
    for name, value in record.data.items():
        args += ("d:" + name, value)
    return args


def create_indexed_args(key: str, record: Record) -> list[str]:
    """ARGV of :data:`CREATE_INDEXED`: the store key (the index's member), then
    :func:`create_args`."""
    return [key, *create_args(record)]


def meta_changes(meta: Meta, base: Meta, seen: str | None = None) -> tuple[list[str], list[str]]:
    """:func:`meta_fields` of only what ``meta`` changes from ``base`` ("last seen"
    always, as ``seen`` when given): a plain write sends two metadata fields instead of
    nine."""
    pairs = ["ls", number(meta.last_seen) if seen is None else seen]
    if meta.handle != base.handle:
        pairs += ("h", meta.handle)
    if meta.created != base.created:
        pairs += ("c", number(meta.created))
    if meta.absolute_deadline != base.absolute_deadline:
        pairs += ("ad", number(meta.absolute_deadline))
    if meta.idle_timeout != base.idle_timeout:
        pairs += ("it", number(meta.idle_timeout))
    absent = []
    for name, value, old in (
        ("u", meta.user_id, base.user_id),
        ("ua", meta.user_agent, base.user_agent),
        ("ip", meta.client_ip, base.client_ip),
        ("dv", meta.device, base.device),
        ("au", meta.auth, base.auth),
    ):
        if value != old:
            if value is None:
                absent.append(name)
            else:
                pairs += (name, value)
    if meta.persistent != base.persistent:
        if meta.persistent:
            pairs += ("p", "1")
        else:
            absent.append("p")
    return pairs, absent


def update_args(change: Change, now: float, whole: bool = False) -> list[str]:
    """ARGV of :data:`UPDATE`: the metadata fields that changed from ``change.base``
    when it is known, unless ``whole``; when the fast path may run, the expected version,
    the TTL; in the place of the placeholder, the least version to write (the new version
    when the fast path may run: :meth:`Change.version_over`).

    The fast path may run only from the hash as read (:class:`ReadMeta`, so not 0.1's
    layout), and only when no rule of the full write's that looks at the stored fields
    would act on them (the stored fields being the base's): not in a fresh start
    (``clear``, which drops every app key), not once the session has expired (the full
    write returns nil), not when the change would replace a stored device binding by an
    unbound state (the full write keeps the binding)."""
    meta, base = change.meta, change.base
    expected = expire = ""
    version = str(meta.version)  # the least the full write may write (it raises it)
    # "last seen" is usually the write's own time: formatted once (repr is not cheap)
    when = number(now)
    seen = when if meta.last_seen == now else None
    if base is not None and not whole:
        pairs, absent = meta_changes(meta, base, seen)
        partial = "1"
        device = meta.device
        if (
            type(base) is ReadMeta
            and not change.clear
            and now < base.last_seen + base.idle_timeout
            and now < base.absolute_deadline
            and (device == base.device or not is_binding(base.device) or is_binding(device))
        ):
            expected, version = str(base.version), str(change.version_over(base.version))
            idle_end, deadline = meta.last_seen + meta.idle_timeout, meta.absolute_deadline
            # round() as the full write's '%.0f' (both half to even), at a tenth of the cost
            expire = str(round((idle_end if idle_end < deadline else deadline) * 1000))
    else:
        pairs, absent = meta_fields(meta)
        partial = "0"
    for name, value in change.set.items():
        pairs += ("d:" + name, value)
    pairs += ("v", version)
    args = [
        expected,
        expire,
        when,
        "1" if change.clear else "0",
        partial,
        str(len(pairs)),
        *pairs,
        str(len(absent)),
        *absent,
    ]
    if change.delete:
        args += ["d:" + name for name in change.delete]
    return args


class ReadMeta(Meta):
    """Metadata exactly as a session hash of this layout held it at its version (read by
    :func:`meta_of`; "last seen" maybe moved since by TOUCH). Only such a base lets a
    write take :data:`UPDATE`'s fast path: anything derived from it (``_replace``,
    :meth:`Meta.with_changes`) is a plain :class:`Meta`, since a session's metadata
    after a commit is what it wrote, which may differ from the hash (a merge with a
    parallel write, a device binding kept)."""

    __slots__ = ()

    def _replace(self, **changes: Any) -> Meta:  # type: ignore[override]
        meta = Meta._make(map(changes.pop, self._fields, self))
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return meta

    def seen(self, last_seen: float) -> ReadMeta:
        """This metadata with "last seen" moved by a TOUCH (the hash still holds the rest)."""
        return ReadMeta._make(map({"last_seen": last_seen}.pop, self._fields, self))


def meta_of(fields: Mapping[bytes, bytes]) -> Meta:
    """The metadata of a session hash (``HGETALL`` or the :data:`LISTED_FIELDS`), either
    layout. Raises :class:`CorruptRecord` (or a ValueError, KeyError or TypeError, which
    callers read the same way) unless every field is there with its type."""
    get = fields.get
    old = get(b"m")
    if old is not None:  # 0.1: JSON, with ls and v kept apart
        return Meta.from_json(old, last_seen=float(fields[b"ls"]), version=int(fields[b"v"]))
    created, last_seen = float(fields[b"c"]), float(fields[b"ls"])
    deadline, idle = float(fields[b"ad"]), float(fields[b"it"])
    if not math.isfinite(created + last_seen + deadline + idle):  # inf or nan in any
        raise CorruptRecord("Redis session hash holds a time that is not finite")
    user, agent, ip, persistent = get(b"u"), get(b"ua"), get(b"ip"), get(b"p")
    device, auth = get(b"dv"), get(b"au")
    if persistent is not None and persistent != b"1":
        raise CorruptRecord("Redis session hash: 'p' is neither absent nor 1")
    return ReadMeta(
        fields[b"h"].decode(),
        created,
        last_seen,
        deadline,
        idle,
        None if user is None else user.decode(),
        None if agent is None else agent.decode(),
        None if ip is None else ip.decode(),
        persistent is not None,
        int(fields[b"v"]),
        None if device is None else device.decode(),
        None if auth is None else auth.decode(),
    )


def record_of(fields: Mapping[bytes, bytes]) -> Record:
    """A Record from a session hash's ``HGETALL`` (not empty)."""
    try:
        meta = meta_of(fields)
        data = {
            name[2:].decode(): value.decode() for name, value in fields.items() if name[:2] == b"d:"
        }
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptRecord("Redis session hash cannot be decoded", exc) from exc
    return Record(data, meta)


#: The hash fields a listing reads (HMGET), in this order: both layouts' metadata.
LISTED_FIELDS = ("m", "h", "c", "ls", "ad", "it", "u", "ua", "ip", "p", "v", "dv", "au")


def listed_meta(values: Sequence[bytes | None]) -> Meta:
    """The metadata from the values of :data:`LISTED_FIELDS`; raises :class:`CorruptRecord`
    if the hash is incomplete or a field cannot be read."""
    fields = {
        name.encode(): v for name, v in zip(LISTED_FIELDS, values, strict=True) if v is not None
    }
    try:
        return meta_of(fields)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptRecord("Redis session hash cannot be decoded", exc) from exc


def live_members(
    user_id: str, members: list[bytes], replies: list[list[bytes | None]], now: float
) -> tuple[list[tuple[str, Meta]], list[bytes]]:
    """From the :data:`LISTED_FIELDS` of each index member's hash: the live sessions of
    ``user_id``, and the members to drop (gone, expired, corrupt, or another user's)."""
    live, gone = [], []
    for member, values in zip(members, replies, strict=True):
        try:
            meta = listed_meta(values)
        except CorruptRecord:
            gone.append(member)
            continue
        if meta.expires_at <= now or meta.user_id != user_id:
            gone.append(member)
            continue
        live.append((member.decode(), meta))
    return live, gone
