"""The scenarios of the first half of issue 14. Each is ``(ctx) -> list[Row]``; the order of
:data:`SCENARIOS` is the order of the table."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .client import Connection
from .context import Context, Unavailable
from .faults import FAULT_SCENARIOS
from .load import Event, LoadResult, Mix
from .results import FAIL, SKIP, Row, Rule, row_from, strict
from .servers import AppServer

Scenario = Callable[[Context], list[Row]]

LOAD_STORES = ("redis", "postgresql", "mariadb", "sqlite", "memcached")
#: A worker may grow this much (MB of RSS) from 10% into a load run to its end.
RSS_GROWTH_BOUND_MB = 30.0
#: The memory store of the flood scenario.
FLOOD_MAX_ENTRIES = 500
WRITE_HEAVY = Mix(write=0.85, anon=0.05, login=0.02)
FLOOD = Mix(write=0.05, anon=0.0, login=0.0, flood=0.9)


def skipped(scenario: str, target: str, exc: Exception) -> Row:
    return Row(scenario, target, SKIP, notes=str(exc))


class RssWatch:
    """Worker RSS at 10% into a run (an event) and at its end."""

    def __init__(self, server: AppServer, duration: float) -> None:
        self.server = server
        self.start: dict[int, int] = {}
        self.event = Event(min(5.0, duration * 0.1), "rss", self._take)

    def _take(self) -> None:
        self.start = self.server.rss()

    def growth_mb(self) -> tuple[float, str]:
        """The largest growth of a worker alive at both ends, and a note."""
        end = self.server.rss()
        common = [pid for pid in self.start if pid in end]
        if not common:
            return 0.0, "RSS: no worker alive at both ends"
        growth = max(end[pid] - self.start[pid] for pid in common) / 1024
        start_mb = "/".join(f"{self.start[p] / 1024:.0f}" for p in common)
        end_mb = "/".join(f"{end[p] / 1024:.0f}" for p in common)
        return growth, f"worker RSS {start_mb} -> {end_mb} MB"

    def rule(self, growth: float) -> Rule:
        def check(result: LoadResult) -> list[str]:
            reasons = strict(result)
            if growth > RSS_GROWTH_BOUND_MB:
                reasons.append(f"RSS grew {growth:.1f} MB > {RSS_GROWTH_BOUND_MB:g}")
            return reasons

        return check


def _load_row(ctx: Context, scenario: str, app: str, store_kind: str, judged: bool = True) -> Row:
    target = f"{app} / {store_kind}"
    try:
        url = ctx.store_url(store_kind)
    except Unavailable as exc:
        return skipped(scenario, target, exc)
    try:
        server = ctx.server(app, url)
        watch = RssWatch(server, ctx.mode.duration)
        result = ctx.load(server, events=[watch.event])
    except RuntimeError as exc:  # a server that died: this row fails, the next ones run
        traceback.print_exc()
        return Row(scenario, target, FAIL, notes=f"crashed: {exc}"[:300])
    growth, note = watch.growth_mb()
    server.stop()
    return row_from(scenario, target, result, watch.rule(growth) if judged else None, note)


def load_asgi(ctx: Context) -> list[Row]:
    """satchel's ASGI middleware under uvicorn (2 workers) on each server store."""
    return [_load_row(ctx, "load", "satchel-asgi", kind) for kind in LOAD_STORES]


def load_flask(ctx: Context) -> list[Row]:
    """satchel's Flask extension under gunicorn (2 sync workers) on each server store."""
    return [_load_row(ctx, "load", "satchel-flask", kind) for kind in LOAD_STORES]


def _peer_row(ctx: Context, scenario: str, app: str, shared: bool) -> Row:
    target = f"{app} / redis"
    try:
        prefix = ctx.redis_prefix(app)
    except Unavailable as exc:
        return skipped(scenario, target, exc)
    server = ctx.server(app, "redis://127.0.0.1:6379/0", prefix=prefix)
    if shared:
        result = ctx.load(
            server,
            clients=ctx.mode.shared_clients,
            duration=ctx.mode.shared_duration,
            shared_session=True,
        )
        server.stop()
        return row_from(scenario, target, result, None)
    watch = RssWatch(server, ctx.mode.duration)
    result = ctx.load(server, events=[watch.event])
    _, note = watch.growth_mb()
    server.stop()
    return row_from(scenario, target, result, None, note)


def load_peers(ctx: Context) -> list[Row]:
    """The same load against starsessions and Flask-Session on Redis (reported, not
    judged)."""
    return [_peer_row(ctx, "load", app, shared=False) for app in ("starsessions", "flask-session")]


def shared_session(ctx: Context) -> list[Row]:
    """20 clients on one session, each incrementing its own key: satchel keeps every
    acknowledged write (both paths); the peers beside it."""
    rows = []
    for app in ("satchel-asgi", "satchel-flask"):
        target = f"{app} / redis"
        try:
            url = ctx.store_url("redis", "shared")
        except Unavailable as exc:
            rows.append(skipped("shared session", target, exc))
            continue
        server = ctx.server(app, url)
        result = ctx.load(
            server,
            clients=ctx.mode.shared_clients,
            duration=ctx.mode.shared_duration,
            shared_session=True,
        )
        server.stop()
        rows.append(row_from("shared session", target, result))
    for app in ("starsessions", "flask-session"):
        rows.append(_peer_row(ctx, "shared session", app, shared=True))
    return rows


def sqlite_workers(ctx: Context) -> list[Row]:
    """SQLite with 4 worker processes under a write-heavy load: no "database is locked"
    reaching a client, no 5xx."""
    rows = []
    for app in ("satchel-flask", "satchel-asgi"):
        url = ctx.store_url("sqlite", "workers")
        server = ctx.server(app, url, workers=4)
        result = ctx.load(server, mix=WRITE_HEAVY)
        server.stop()
        locked = sum(n for body, n in result.error_bodies.items() if "locked" in body)

        def rule(result: LoadResult, locked: int = locked) -> list[str]:
            return strict(result) + ([f"{locked} 'database is locked'"] if locked else [])

        rows.append(row_from("sqlite, 4 workers, 85% writes", f"{app} / sqlite", result, rule))
    return rows


async def _worker_stats(port: int, workers: int) -> dict[int, dict[str, int]]:
    """``/stats`` of every worker: new connections until each pid answered."""
    found: dict[int, dict[str, int]] = {}
    for _ in range(200):
        connection = Connection(port)
        try:
            response = await connection.request("GET", "/stats")
        finally:
            await connection.close()
        stats = json.loads(response.body)
        found[int(stats["pid"])] = stats
        if len(found) >= workers:
            break
    return found


def memory_flood(ctx: Context) -> list[Row]:
    """An anonymous flood (cookieless writes, each a new session) on the memory store of
    each worker: every worker stays within ``max_entries``, logged-in clients keep their
    sessions (anonymous traffic never evicts them), RSS bounded."""
    url = f"memory://?max_entries={FLOOD_MAX_ENTRIES}"
    server = ctx.server("satchel-asgi", url)
    watch = RssWatch(server, ctx.mode.short_duration)
    result = ctx.load(
        server, clients=ctx.mode.shared_clients, duration=ctx.mode.short_duration, mix=FLOOD,
        events=[watch.event],
    )  # fmt: skip
    stats = asyncio.run(_worker_stats(server.port, server.workers))
    growth, note = watch.growth_mb()
    server.stop()
    entries = [int(s["entries"]) for s in stats.values()]
    floods = sum(1 for s in result.timeline if s.route == "flood")

    def rule(result: LoadResult) -> list[str]:
        reasons = watch.rule(growth)(result)
        if len(entries) < server.workers:
            reasons.append(f"stats from {len(entries)} of {server.workers} workers")
        if any(n > FLOOD_MAX_ENTRIES for n in entries):
            reasons.append(f"entries {entries} > {FLOOD_MAX_ENTRIES}")
        return reasons

    note = f"{floods:,} anonymous sessions made; entries per worker {entries}; {note}"
    return [row_from("memory store flood", f"satchel-asgi / {url}", result, rule, note)]


def _stored_keys(kind: str, url: str) -> list[str]:
    """Every key on disk, corrupt records included."""
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            return [k for (k,) in conn.execute("SELECT key FROM satchel_sessions")]
    directory = Path(url.removeprefix("file://"))
    return [p.name.removesuffix(".session") for p in directory.glob("*.session")]


def _temp_files(url: str) -> int:
    directory = Path(url.removeprefix("file://"))
    return sum(1 for d in (directory, directory / ".users") for _ in d.glob(".tmp-*"))


def _check_store(kind: str, url: str) -> tuple[int, int, list[str], str]:
    """Open the store with satchel's API and load every stored key: (loaded, discarded,
    failures, temp-file note)."""
    from satchel.errors import CorruptRecord
    from satchel.stores import FileStore, store_from_url

    store = store_from_url(url)
    loaded = discarded = 0
    failures: list[str] = []
    now = time.time()
    try:
        for key in _stored_keys(kind, url):
            try:
                record = store.load(key, now)
            except CorruptRecord:
                discarded += 1
                continue
            except Exception as exc:  # anything else is a failure of the scenario
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            loaded += record is not None
            discarded += record is None
        note = ""
        if isinstance(store, FileStore):
            left = _temp_files(url)
            store.TEMP_MAX_AGE = 0.0  # no writer runs now: every temp file is a crash's
            store.purge_expired(now)
            after = _temp_files(url)
            note = f"temp files left by the kills {left}, after purge {after}"
            if after:
                failures.append(f"{after} temp files survive purge")
    finally:
        store.close()
    return loaded, discarded, failures, note


def crash(ctx: Context) -> list[Row]:
    """A worker SIGKILLed every second during a write burst on SQLite and the file store.
    Connections cut by a kill are errors (counted, allowed); still required: 0 acknowledged
    writes lost, 0 silent resets, 0 5xx (including the final reads after the kills); then
    every stored session loads or is discarded as corrupt through satchel's API, and the
    file store's temp files are all removed by purge."""
    rows = []
    duration = ctx.mode.short_duration
    for kind in ("sqlite", "file"):
        for app in ("satchel-flask", "satchel-asgi"):
            url = ctx.store_url(kind, "crash")
            server = ctx.server(app, url)
            kills: list[int] = []

            def kill(server: AppServer = server, kills: list[int] = kills) -> None:
                pid = server.kill_worker()
                if pid is not None:
                    kills.append(pid)

            events = [Event(t + 0.5, "kill", kill) for t in range(int(duration) - 1)]
            result = ctx.load(server, duration=duration, mix=WRITE_HEAVY, events=events)
            server.stop()
            loaded, discarded, failures, note = _check_store(kind, url)

            def rule(result: LoadResult, failures: list[str] = failures) -> list[str]:
                reasons = []
                if result.lost_writes:
                    reasons.append(f"{result.lost_writes} lost writes")
                if result.silent_resets:
                    reasons.append(f"{result.silent_resets} silent resets")
                if result.by_class()["5xx"]:
                    reasons.append(f"{result.by_class()['5xx']} 5xx")
                if result.unverified:
                    reasons.append(f"{result.unverified} clients unverified")
                return reasons + failures[:3]

            notes = (
                f"{len(kills)} workers killed; stored sessions: {loaded} load, "
                f"{discarded} discarded" + (f"; {note}" if note else "")
            )
            rows.append(row_from("crash (SIGKILL)", f"{app} / {kind}", result, rule, notes))
    return rows


SCENARIOS: dict[str, Scenario] = {
    "load-asgi": load_asgi,
    "load-flask": load_flask,
    "load-peers": load_peers,
    "shared-session": shared_session,
    "sqlite-workers": sqlite_workers,
    "memory-flood": memory_flood,
    "crash": crash,
}
SCENARIOS.update(FAULT_SCENARIOS)
