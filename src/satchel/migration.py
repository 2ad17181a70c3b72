"""Copying every live session from one server store to another, without logging anyone
out (``satchel sessions migrate``; docs/migrating-stores.md).

Records are copied by store key (the SHA-256 of the session ID), with their data, their
metadata (version, last seen, deadlines: a store derives its TTL from them, so a copy
ends when the original would) and their user's index entry. Copying is idempotent: a
record the target already holds unchanged is skipped, one the target holds in a newer
version (written there since, through a :class:`~satchel.stores.readthrough.ReadThroughStore`)
is never overwritten, and one it holds in an older version (a previous run's copy) is
brought up to date key by key, as a request writes, so that a request writing it
meanwhile keeps its keys. An interrupted run is resumed by running it again.

A copy must not bring back a session destroyed while it ran: after each create in the
target, the source is read again, and a record gone from the source by then is deleted
from the target (a read-through store deletes the old copy first, then the new record,
so one of the two deletes always comes after our create; see
:mod:`satchel.stores.readthrough`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from .dbsc.state import DeviceState
from .errors import ConfigurationError, CorruptRecord, KeyCollision
from .record import Change, Meta, Record
from .stores.base import Store
from .stores.capabilities import Exportable, HasSchema, Listable

BATCH = 1000
WORKERS = 8
Outcome = Literal["copied", "updated", "present", "kept_newer", "vanished"]


@dataclass
class MigrationReport:
    """What one run did (or, with ``dry_run``, would do), by record."""

    dry_run: bool = False
    seen: int = 0
    """Live records read from the source."""
    copied: int = 0
    """Created in the target (absent there)."""
    updated: int = 0
    """Held by the target in an older version (a previous run's copy), brought up to date."""
    present: int = 0
    """Already in the target, identical: skipped."""
    kept_newer: int = 0
    """The target holds a newer version (written there since): kept, never overwritten."""
    vanished: int = 0
    """Destroyed in the source while this run copied them: not kept in the target."""
    source_live: int | None = None
    """The final check: sessions live in the source at the end (None on a dry run)."""
    missing: int = 0
    """The final check: sessions live in the source at the end that the target lacks
    (created in the source during the run: run the command again)."""
    seconds: float = 0.0
    _accounted: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _compare(target: Record, source: Record) -> Literal["same", "older", "touched", "newer"]:
    """How the target's copy stands to the source's record: the same, older (the source
    was written since), the same but seen earlier (the source was only read since), or
    newer (written in the target since; also when both were written: the target wins)."""
    t, s = target.meta, source.meta
    if t.version < s.version:
        return "older"
    if t.version > s.version or dict(target.data) != dict(source.data):
        return "newer"
    if t._replace(last_seen=s.last_seen) != s:
        return "newer"
    return "touched" if t.last_seen < s.last_seen else "same"


_verdicts: dict[str, Outcome] = {
    "same": "present",
    "newer": "kept_newer",
    "older": "updated",
    "touched": "updated",
}


def _catching_up(copy: Record, source: Record) -> Change:
    """The change that brings an older ``copy`` up to ``source``: written as a request's
    change is, key by key over what the copy held (never a delete and a create), so a
    request writing the target's record meanwhile keeps the keys it wrote. The record
    takes the source's version (:meth:`Change.version_over`), so that a later run finds
    it the same, or newer once the app writes it in the target; "last seen" never moves
    back, and the device binding is the stronger of the two (:func:`_stronger_device`).
    A session the source started over (its ``created`` moved on: a fresh start, or a
    login that kept the record) is started over in the target too."""
    meta = source.meta
    if meta.created > copy.meta.created:
        return Change(meta, dict(source.data), clear=True, base=copy.meta)
    device = _stronger_device(copy.meta.device, meta.device)
    if copy.meta.last_seen > meta.last_seen or device != meta.device:
        meta = meta._replace(last_seen=max(meta.last_seen, copy.meta.last_seen), device=device)
    data = source.data
    stale = frozenset(name for name in copy.data if name not in data)
    fresh = {name: value for name, value in data.items() if copy.data.get(name) != value}
    return Change(meta, fresh, stale, base=copy.meta)


def _stronger_device(copy: str | None, source: str | None) -> str | None:
    """The device binding a catch-up keeps when the two stores disagree (each may have
    been written since the copy was made): a binding over none (registered on either
    side), of the same key the one that answered the later challenge (its replay guard:
    the other would accept that answer again), of two keys the one registered first (as
    on one store, where a second registration is refused); and a binding requirement
    over nothing."""
    if copy == source:
        return source
    mine, theirs = DeviceState.decode(copy), DeviceState.decode(source)
    if mine.bound != theirs.bound:
        chosen = mine if mine.bound else theirs
    elif mine.bound:
        if mine.corrupt or theirs.corrupt:
            chosen = mine
        elif mine.jwk == theirs.jwk:
            chosen = theirs if theirs.answered_ms > mine.answered_ms else mine
        else:
            chosen = theirs if theirs.bound_ms < mine.bound_ms else mine
    else:
        chosen = mine if mine.required or not theirs.required else theirs
    if chosen.corrupt:  # kept as stored: it reads as bound to no usable key (refused)
        return copy if chosen is mine else source
    required = mine.required or theirs.required
    if chosen.jwk is None and not required:
        return None
    return chosen._replace(required=required).encode()


def _files_anew(copy: Meta, source: Meta) -> bool:
    """Whether the user's index must be told of the session again before a catch-up:
    it has a user the copy did not (a login by an update), or a later absolute deadline
    (the index entry would end first, and the session drop out of its user's list)."""
    return source.user_id is not None and (
        source.user_id != copy.user_id or source.absolute_deadline > copy.absolute_deadline
    )


def _create(store: Store, key: str, record: Record) -> None:
    """Create ``record`` under ``key``, filed under its user as a login files it."""
    record = Record(record.data, record.meta)
    if record.meta.user_id is None:
        store.create(key, record)
    else:
        store.create_indexed(key, record, record.meta.user_id)


def _made_again(target: Store, key: str, record: Record) -> Outcome | None:
    """Create ``record`` where the target holds nothing live (None: then checked against
    the source, as any copy), or "present" when it was created again meanwhile (copied by
    a read-through store)."""
    try:
        _create(target, key, record)
    except KeyCollision:
        return "present"
    return None


class Migration:
    """One run from ``source`` (an :class:`~satchel.stores.capabilities.Exportable` store)
    to ``target``, ``batch_size`` records at a time, each batch copied by ``workers``
    threads (a copy is a few round trips, mostly spent waiting on the network).
    ``on_progress`` is called with each batch's size."""

    def __init__(
        self,
        source: Store,
        target: Store,
        *,
        dry_run: bool = False,
        batch_size: int = BATCH,
        workers: int = WORKERS,
        on_progress: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(source, Exportable):
            raise ConfigurationError(
                f"{type(source).__name__} cannot list its records, so it cannot be the source "
                "of a migration (Memcached has no way to enumerate its keys): put the app on "
                "a read-through store (readthrough+<new URL>?from=<this URL>) and let "
                "sessions be copied as they are used (docs/migrating-stores.md)"
            )
        if batch_size < 1 or workers < 1:
            raise ConfigurationError("batch_size and workers must be at least 1")
        self.source, self.target = source, target
        self.dry_run, self.batch_size, self.workers = dry_run, batch_size, workers
        self.on_progress, self.clock = on_progress, clock

    def records(self) -> Iterator[tuple[str, Record]]:
        assert isinstance(self.source, Exportable)
        return self.source.iter_records(self.clock())

    def run(self) -> MigrationReport:
        started = time.monotonic()
        report = MigrationReport(dry_run=self.dry_run)
        if not self.dry_run and isinstance(self.target, HasSchema):
            self.target.init_schema()  # once, before the workers all race to make it
        records = self.records()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="satchel-migrate") as pool:
            while batch := list(itertools.islice(records, self.batch_size)):
                outcomes = pool.map(lambda item: self.copy(*item), batch)
                for (key, _), outcome in zip(batch, outcomes, strict=True):
                    setattr(report, outcome, getattr(report, outcome) + 1)
                    if outcome != "vanished":
                        report._accounted.add(key)
                report.seen += len(batch)
                if self.on_progress is not None:
                    self.on_progress(len(batch))
        if not self.dry_run:
            self.check(report)
        report.seconds = time.monotonic() - started
        return report

    def copy(self, key: str, record: Record) -> Outcome:
        """Copy one record (see the module docstring); what happened. A create comes
        first (one round trip for a record the target lacks, the common case); only when
        the target has the key is its record read and compared."""
        if self.dry_run:
            current = self.target.load(key, self.clock())
            return "copied" if current is None else _verdicts[_compare(current, record)]
        try:
            _create(self.target, key, record)
            outcome: Outcome = "copied"
        except KeyCollision:
            verdict = self._over(key, record)
            if verdict is not None:
                return verdict
            outcome = "updated"
        if self.source.load(key, self.clock()) is None:  # destroyed meanwhile: undo
            self.target.delete(key)
            return "vanished"
        return outcome

    def _over(self, key: str, record: Record) -> Outcome | None:
        """The target holds ``key``: leave it (what happened), or bring it up to
        ``record`` (None, once done)."""
        target, now = self.target, self.clock()
        try:
            current = target.load(key, now)
        except CorruptRecord:  # as a request would: discarded, the source's copy instead
            current = None
        if current is None:  # an expired record not purged yet: nothing live to keep
            target.delete(key)
            return _made_again(target, key, record)
        verdict = _compare(current, record)
        if verdict in ("same", "newer"):
            device = _stronger_device(current.meta.device, record.meta.device)
            if device == current.meta.device:
                return _verdicts[verdict]
            # the target's record stays, but the source holds a stronger device binding
            # (registered, refreshed or required there during a rollout's overlap)
            bound = Change(current.meta._replace(device=device), base=current.meta)
            return "updated" if target.update(key, bound, now) is not None else "vanished"
        if verdict == "touched":  # only read since: move "last seen", nothing else
            target.touch(key, record.meta.last_seen, now)
            return "updated"
        meta = record.meta
        if _files_anew(current.meta, meta):
            assert meta.user_id is not None
            target.index_add(meta.user_id, key, meta.absolute_deadline)
        if target.update(key, _catching_up(current, record), now) is not None:
            return None
        return _made_again(target, key, record)  # gone or expired meanwhile: checked after

    def check(self, report: MigrationReport) -> None:
        """The final count: every session still live in the source is in the target."""
        now = self.clock()
        keys: Iterator[str]
        if isinstance(self.source, Listable):
            keys = (key for key, _ in self.source.iter_sessions(now))
        else:
            keys = (key for key, _ in self.records())
        live = missing = 0
        for key in keys:
            live += 1
            missing += key not in report._accounted
        report.source_live, report.missing = live, missing


def migrate(
    source: Store,
    target: Store,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH,
    workers: int = WORKERS,
    on_progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy every live session of ``source`` into ``target`` (see :class:`Migration`);
    what was done."""
    return Migration(
        source,
        target,
        dry_run=dry_run,
        batch_size=batch_size,
        workers=workers,
        on_progress=on_progress,
    ).run()
