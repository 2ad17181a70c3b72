"""Store faults and failover under load (issue 14): a store is killed, frozen, cut off or
restarted, or a Redis primary fails over, while the load runs; only servers this module
starts (private ``redis-server``, ``memcached``, Sentinel and Cluster nodes) or proxies it
owns (``TcpProxy``, in a process of its own, in front of the shared PostgreSQL and
MariaDB) are touched.

What must hold, from the load's timeline (every request: start, latency, status):

- **during the fault** only clean 503s: no other status >= 400, no connection error or
  timeout at the client, no silent reset, and no request longer than the store's timeout
  plus :data:`HANG_SLACK` (on gunicorn, as its access log times it: a client's latency
  there includes the wait for one of the 2 sync workers, whatever the store does);
- **after it**, without restarting the app, recovery within :data:`RECOVERY_BOUND` seconds
  of the store answering again: the first 2xx, and the last failure, of the requests
  started after that moment;
- **no acknowledged write lost** on a store that persisted it (Redis with AOF ``always``,
  PostgreSQL, MariaDB). A restarted memcached loses its sessions by design: each client's
  first request after the restart finds an empty session (a counted reset, its increments
  "lost by design") and logs in again; any reset before the restart, a second one per
  client, or a write lost after the re-login fails the row.

Failover (Sentinel, Cluster): the same, with acknowledged writes lost to asynchronous
replication measured and reported; with ``wait_replicas=1`` (satchel's ``WAIT``) none may be.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.services import MemcachedServer, RedisServer, port_open

from .context import Context, Unavailable
from .load import Event, LoadResult, Mix
from .proxy import ProxyProcess
from .redis_nodes import AofRedis, ReplicatedCluster, Sentinels, kill
from .results import SKIP, Row, Rule, row_from
from .servers import AppServer

#: Store timeouts of the URLs under test (seconds): Redis and memcached; PostgreSQL and
#: MariaDB (psycopg's connect timeout is whole seconds, at least 1). Not shorter: on a
#: loaded 2-core machine a worker is sometimes descheduled for ~0.4 s with no fault at all.
FAST_TIMEOUT, SQL_TIMEOUT = 1.0, 1.0
#: A request during a fault may take its store timeout plus this much (seconds).
HANG_SLACK = 0.5
#: After the store answers again, the app must answer 2xx, and fail no more, within this.
RECOVERY_BOUND = 2.0


@dataclass(frozen=True)
class Timing:
    duration: float  # of the load run
    at: float  # the fault, seconds in
    down: float  # how long the store is down, killed, frozen or cut


TIMINGS = {"full": Timing(30.0, 10.0, 5.0), "short": Timing(8.0, 2.0, 3.0)}
#: The memcached run logs in once per client and never again: a login after the restart
#: would make a new session silently, hiding the loss the restart caused.
NO_RELOGIN = Mix(write=0.45, anon=0.08, login=0.0)


@dataclass
class Window:
    """When the fault began and when the store answered again (offsets into the load)."""

    start: float
    back: float


@dataclass
class Figures:
    statuses: dict[int, int]  # of the requests during the fault
    errors: int  # no response, during the fault
    max_s: float  # the longest request overlapping the fault, as the client saw it
    max_at: str  # its start and route
    server_max_s: float | None  # gunicorn: the longest request of the run, at the server
    first_ok_s: float | None  # the first 2xx started after the store was back (its end)
    last_bad_s: float  # the last failure started after it (its end; 0: none)
    bound_s: float  # the longest a request may take
    late: int = 0  # failures among the requests started after the store was back

    @property
    def hang_s(self) -> float:
        """What the bound applies to: the client's view, or on gunicorn the server's (a
        client's latency there includes its wait for one of the 2 busy sync workers)."""
        return self.max_s if self.server_max_s is None else self.server_max_s

    @property
    def recovery_s(self) -> float | None:
        return None if self.first_ok_s is None else max(self.first_ok_s, self.last_bad_s)

    def note(self, window: Window) -> str:
        during = ", ".join(f"{n} x {s}" for s, n in sorted(self.statuses.items()))
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.2f} s"
        first = "-" if self.first_ok_s is None else f"{self.first_ok_s:.2f}"
        longest = f"longest request {self.max_s:.2f} s ({self.max_at})"
        if self.server_max_s is not None:
            longest = (
                f"longest request at the server {self.server_max_s:.2f} s "
                f"(at the client, queued for a worker, {self.max_s:.2f} s)"
            )
        late = f" ({self.late} failed after it)" if self.late else ""
        return (
            f"fault {window.start:.1f}-{window.back:.1f} s{late}; during it: {during or 'nothing'}"
            f"{f', {self.errors} errors' if self.errors else ''}; {longest} (bound "
            f"{self.bound_s:.2f}); recovered in {recovery} (first 2xx {first} s, last "
            f"failure {self.last_bad_s:.2f} s after the store was back)"
        )


def _ok(status: int) -> bool:
    return 200 <= status < 400


def figures(
    result: LoadResult, window: Window, timeout: float, server_max: float | None = None
) -> Figures:
    timeline = result.timeline
    during = [s for s in timeline if s.t <= window.back and s.t + s.latency >= window.start]
    statuses: dict[int, int] = {}
    for s in during:
        if s.status:
            statuses[s.status] = statuses.get(s.status, 0) + 1
    longest = max(during, key=lambda s: s.latency, default=None)
    after = [s for s in timeline if s.t >= window.back]
    first_ok = min((s.t + s.latency for s in after if 200 <= s.status < 300), default=None)
    last_bad = max((s.t + s.latency for s in after if not _ok(s.status)), default=window.back)
    return Figures(
        statuses=statuses,
        errors=sum(1 for s in during if not s.status),
        max_s=longest.latency if longest else 0.0,
        max_at=f"{longest.route} at {longest.t:.1f} s" if longest else "",
        server_max_s=server_max,
        first_ok_s=None if first_ok is None else first_ok - window.back,
        last_bad_s=last_bad - window.back,
        bound_s=timeout + HANG_SLACK,
        late=sum(1 for s in after if not _ok(s.status)),
    )


def fault_rule(
    fig: Figures, *, lossless: bool = True, resets_from: float | None = None, clients: int = 0
) -> Rule:
    """The fault rule (see the module's doc). ``lossless=False``: acknowledged writes lost
    and sessions reset are reported, not judged (asynchronous replication).
    ``resets_from``: sessions are lost by design from that offset on (memcached): one reset
    per client after it is allowed."""

    def check(result: LoadResult) -> list[str]:
        reasons = []
        bad = {s: n for s, n in result.statuses.items() if s >= 400 and s != 503}
        if bad:
            reasons.append(f"responses {bad}")
        if result.errors:
            reasons.append(f"client errors {dict(result.errors)}")
        if result.unverified:
            reasons.append(f"{result.unverified} clients unverified")
        if not result.acked:
            reasons.append("no increment acknowledged")
        if fig.hang_s > fig.bound_s:
            reasons.append(f"a request took {fig.hang_s:.2f} s > {fig.bound_s:.2f}")
        if fig.recovery_s is None or fig.recovery_s > RECOVERY_BOUND:
            reasons.append(f"recovery {fig.recovery_s} s > {RECOVERY_BOUND:g}")
        by_design = 0
        if resets_from is None:
            if lossless and result.silent_resets:
                reasons.append(f"{result.silent_resets} silent resets")
        else:
            early = [r for r in result.resets if r[0] < resets_from]
            late = [r[1] for r in result.resets if r[0] >= resets_from]
            by_design = sum(r[2] for r in result.resets if r[0] >= resets_from)
            if early:
                reasons.append(f"{len(early)} silent resets before the restart")
            if len(late) != len(set(late)) or len(late) > clients:
                reasons.append("more than one reset per client after the restart")
        if lossless and result.lost_writes - by_design:
            reasons.append(f"{result.lost_writes - by_design} acknowledged writes lost")
        return reasons

    return check


def _window(result: LoadResult, event: str, marks: dict[str, float] | None = None) -> Window:
    """The fault's window from its event run: it began when the action started and the
    store was back when the action ended (or, with ``marks``, at ``marks['back']``, a
    monotonic time, measured from ``marks['t0']`` = the action's start)."""
    run = next(e for e in result.events if e.name == event)
    if run.error:
        raise RuntimeError(f"the fault action failed: {run.error}")
    if marks is None:
        return Window(run.started, run.ended)
    return Window(run.started, run.started + marks["back"] - marks["t0"])


def store_messages(server: AppServer, top: int = 2) -> str:
    """The server's most frequent log lines about the store (why it answered 503)."""
    lines = [line for line in server.output(2_000_000).splitlines() if " store " in line]
    counts = Counter(line.split(": ", 1)[-1][:140] for line in lines)
    return "; ".join(f"{n} x {message!r}" for message, n in counts.most_common(top))


def _longest(access_log: Path) -> float:
    """The longest request in a gunicorn access log of ``%(D)s`` lines, in seconds."""
    lines = access_log.read_text().split()
    return max((int(n) for n in lines if n.isdigit()), default=0) / 1e6


def _skip(scenario: str, target: str, exc: Exception) -> Row:
    return Row(scenario, target, SKIP, notes=str(exc))


def _run_fault(
    ctx: Context,
    scenario: str,
    app: str,
    target: str,
    url: str,
    action: Callable[[], object],
    timeout: float,
    sessions_lost: dict[str, float] | None = None,
    mix: Mix | None = None,
) -> Row:
    """``app`` on ``url`` under load, ``action`` (the whole fault: break, wait, repair,
    wait until the store answers) at the timing's offset; one row. ``sessions_lost``: the
    store loses its sessions by design when it starts again at ``sessions_lost['spawn']``
    (a monotonic time; the action started at ``sessions_lost['t0']``)."""
    timing = TIMINGS[ctx.mode.name]
    log = None
    if app == "satchel-flask":  # the time each request took at the server, in us
        log = ctx.directory("access") / "access.log"
        args = f"--access-logfile {log} --access-logformat %(D)s"
        server = ctx.server(app, url, GUNICORN_CMD_ARGS=args)
    else:
        server = ctx.server(app, url)
    fault = Event(timing.at, "fault", action)
    result = ctx.load(server, duration=timing.duration, mix=mix, events=[fault])
    messages = store_messages(server)
    server.stop()
    window = _window(result, "fault")
    fig = figures(result, window, timeout, None if log is None else _longest(log))
    resets_from = None
    if sessions_lost is not None:
        resets_from = window.start + sessions_lost["spawn"] - sessions_lost["t0"]
    check = fault_rule(fig, resets_from=resets_from, clients=ctx.mode.clients)
    note = fig.note(window)
    if resets_from is not None:
        late = [r for r in result.resets if r[0] >= resets_from]
        note += (
            f"; sessions lost with the restart (by design): {len(late)} clients logged in "
            f"again, {sum(r[2] for r in late)} increments gone with them"
        )
    return row_from(scenario, f"{app} / {target}", result, check, f"{note}; log: {messages}")


# -- Redis: killed (AOF always) and frozen ----------------------------------------------------


def _private_redis(ctx: Context, what: str, aof: bool) -> RedisServer:
    if shutil.which("redis-server") is None:
        raise Unavailable("redis-server")
    kind = AofRedis if aof else RedisServer
    server = kind(ctx.directory(what))
    ctx.cleanup(server.stop)
    return server


def redis_faults(ctx: Context) -> list[Row]:
    """A private Redis with AOF ``appendfsync always`` SIGKILLed and restarted 5 s later
    (ASGI and Flask), and one frozen with SIGSTOP for 5 s (ASGI)."""
    down = TIMINGS[ctx.mode.name].down
    query = f"socket_timeout={FAST_TIMEOUT}&connect_timeout={FAST_TIMEOUT}"
    rows = []
    for app in ("satchel-asgi", "satchel-flask"):
        scenario, target = "fault: Redis SIGKILL, AOF always", "redis (private)"
        try:
            redis = _private_redis(ctx, "redis-aof", aof=True)
        except Unavailable as exc:
            rows.append(_skip(scenario, f"{app} / {target}", exc))
            continue

        def killed(redis: RedisServer = redis) -> None:
            kill(redis)
            time.sleep(down)
            redis.start()  # returns once it answers PING (the AOF read back)

        url = f"{redis.url}?prefix={ctx.name('k')}:&{query}"
        rows.append(_run_fault(ctx, scenario, app, target, url, killed, FAST_TIMEOUT))
    scenario, target = "fault: Redis SIGSTOP", "redis (private)"
    try:
        redis = _private_redis(ctx, "redis-frozen", aof=False)
    except Unavailable as exc:
        return [*rows, _skip(scenario, f"satchel-asgi / {target}", exc)]

    def frozen() -> None:
        redis.pause()
        time.sleep(down)
        redis.resume()

    url = f"{redis.url}?prefix={ctx.name('f')}:&{query}"
    rows.append(_run_fault(ctx, scenario, "satchel-asgi", target, url, frozen, FAST_TIMEOUT))
    return rows


# -- PostgreSQL and MariaDB: connections cut at a proxy -----------------------------------------


def sql_faults(ctx: Context) -> list[Row]:
    """The shared PostgreSQL (ASGI and Flask) and MariaDB (ASGI) behind a proxy of this
    run's that cuts every connection and refuses new ones for 5 s."""
    down = TIMINGS[ctx.mode.name].down
    rows = []
    for kind, port, apps in (
        ("postgresql", 5432, ("satchel-asgi", "satchel-flask")),
        ("mariadb", 3306, ("satchel-asgi",)),
    ):
        for app in apps:
            scenario, target = f"fault: {kind} link cut", f"{kind} via proxy"
            if not port_open(port):
                rows.append(_skip(scenario, f"{app} / {target}", Unavailable(f"{kind} :{port}")))
                continue
            proxy = ProxyProcess(port)
            ctx.cleanup(proxy.close)
            url = ctx.store_url(kind, "cut").replace(
                f"127.0.0.1:{port}/", f"127.0.0.1:{proxy.port}/"
            )

            def cut(proxy: ProxyProcess = proxy) -> None:
                proxy.cut()
                time.sleep(down)
                proxy.restore()

            url += f"&timeout={SQL_TIMEOUT:g}"
            rows.append(_run_fault(ctx, scenario, app, target, url, cut, SQL_TIMEOUT))
    return rows


# -- Memcached restarted --------------------------------------------------------------------


def memcached_restart(ctx: Context) -> list[Row]:
    """A private memcached stopped for 2 s and started again, empty (ASGI)."""
    scenario, target = "fault: memcached restart", "memcached (private)"
    if shutil.which("memcached") is None:
        return [_skip(scenario, f"satchel-asgi / {target}", Unavailable("memcached"))]
    memcached = MemcachedServer()
    ctx.cleanup(memcached.stop)

    marks: dict[str, float] = {}

    def restart() -> None:
        marks["t0"] = time.monotonic()
        memcached.stop()
        time.sleep(2.0)
        marks["spawn"] = time.monotonic()  # a reset before this is no restart's doing
        memcached.start()

    url = f"{memcached.url}?prefix={ctx.name('m')}:&timeout={FAST_TIMEOUT}"
    return [
        _run_fault(
            ctx, scenario, "satchel-asgi", target, url, restart, FAST_TIMEOUT,
            sessions_lost=marks, mix=NO_RELOGIN,
        )
    ]  # fmt: skip


# -- failover: Sentinel and Cluster ------------------------------------------------------------


def _failover_row(
    ctx: Context, scenario: str, target: str, setup: Sentinels | ReplicatedCluster,
    query: str, back: str, lossless: bool, lag: float = 0.0,
) -> Row:  # fmt: skip
    """satchel-asgi on ``setup`` under load (with ``lag``, its replica that far behind),
    its primary SIGKILLed (and restarted as a
    replica); the store is back at ``marks[back]`` (``promoted``, or ``replica`` when
    writes need a replica)."""
    timing = TIMINGS[ctx.mode.name]
    marks: dict[str, float] = {}

    def fail() -> None:
        marks["t0"] = time.monotonic()
        if isinstance(setup, ReplicatedCluster):
            setup.kill_primary(timing.down, marks)
        else:
            setup.kill_primary(timing.down, marks, lag)

    url = f"{setup.url}?prefix={ctx.name('fo')}:&socket_timeout={FAST_TIMEOUT}&{query}"
    server = ctx.server("satchel-asgi", url.rstrip("&"))
    result = ctx.load(server, duration=timing.duration, events=[Event(timing.at, "fault", fail)])
    messages = store_messages(server)
    server.stop()
    run = _window(result, "fault")

    def offset(mark: str) -> float:
        return run.start + marks[mark] - marks["t0"]

    window = Window(offset("down"), offset(back))
    fig = figures(result, window, FAST_TIMEOUT)
    switched = offset("promoted") - offset("down")
    lost = result.lost_writes
    note = (
        f"new primary {switched:.1f} s after the kill, old one back as its replica at "
        f"{offset('replica'):.1f} s; {fig.note(window)}; acknowledged writes lost "
        f"{lost} of {result.acked} ({100 * lost / max(result.acked, 1):.3f} %), "
        f"sessions reset {result.silent_resets}; log: {messages}"
    )
    check = fault_rule(fig, lossless=lossless)
    return row_from(scenario, f"satchel-asgi / {target}", result, check, note)


#: How far behind the replica falls (its replication stream held) before the primary dies.
LAG = 1.0


def sentinel_failover(ctx: Context) -> list[Row]:
    """Sentinel (primary, replica, 3 sentinels): the primary SIGKILLed under load (its
    replica in step: asynchronous replication on loopback is ~1 ms behind); then again
    with the replica :data:`LAG` seconds behind, by default (the loss measured) and with
    ``wait_replicas=1`` (satchel's ``WAIT``: a write is acknowledged once the replica has
    it; none may be lost, and writes answer 503 while the replica does not confirm)."""
    rows = []
    for query, what, back, lossless, lag in (
        ("", "in step, default", "promoted", False, 0.0),
        ("", f"{LAG:g} s behind, default", "promoted", False, LAG),
        ("wait_replicas=1", f"{LAG:g} s behind, wait_replicas=1", "replica", True, LAG),
    ):
        scenario, target = "failover: Sentinel, primary SIGKILL", f"sentinel, replica {what}"
        if shutil.which("redis-server") is None:
            rows.append(_skip(scenario, target, Unavailable("redis-server")))
            continue
        setup = Sentinels(ctx.directory("sentinel"))
        ctx.cleanup(setup.stop)
        rows.append(_failover_row(ctx, scenario, target, setup, query, back, lossless, lag))
    return rows


def cluster_failover(ctx: Context) -> list[Row]:
    """Redis Cluster (3 primaries, 3 replicas): one primary SIGKILLed under load, its
    replica promoted. ``wait_replicas`` is refused on Cluster: the loss is measured, not
    judged. It is Redis's asynchronous replication (what the primary acknowledged in the
    last moment before it died and had not sent to its replica): a restarted old primary
    refuses commands for its first 2 s and is a replica by then, and the store sends no
    write twice (docs/reliability.md, "Redis Cluster: the storm a failover started")."""
    scenario, target = "failover: Cluster, primary SIGKILL", "cluster, 3+3 nodes"
    if shutil.which("redis-server") is None:
        return [_skip(scenario, target, Unavailable("redis-server"))]
    setup = ReplicatedCluster(ctx.directory("cluster"))
    ctx.cleanup(setup.stop)
    return [_failover_row(ctx, scenario, target, setup, "", "promoted", False)]


FAULT_SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "fault-redis": redis_faults,
    "fault-sql": sql_faults,
    "fault-memcached": memcached_restart,
    "failover-sentinel": sentinel_failover,
    "failover-cluster": cluster_failover,
}
