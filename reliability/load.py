"""The bounded load generator: N virtual clients on asyncio, each with its own cookie jar
(or one jar shared by all, for the shared-session scenario) and connection.

Each client logs in as its own user, then loops until the duration is up: ``POST /incr``
(its own counter), ``GET /count`` (reads it back), a cookieless ``GET /anon`` now and then,
and a fresh login as the same user now and then (satchel regenerates the ID; the counter
must survive). At the end every client reads its counter once more: the increments that got
a 2xx and are not in it are **lost writes**. A 2xx carrying no user (or another one) for a
client that was logged in is a **silent reset**: its acknowledged increments count as lost,
and the client logs in again and counts from there.

Every request has a timeout; every loop stops by itself at the deadline. ``events`` run at
their offset while the load runs (in a thread, so a blocking action does not stall the
clients): the way a fault is injected. Each request is kept in ``timeline`` (start offset,
latency, status or 0 for an error) to measure what a fault did and when it recovered.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .client import Connection, CookieJar, ProtocolError, Response


@dataclass(frozen=True)
class Mix:
    """Shares of the loop's requests (the rest of 1.0 after these is ``GET /count``)."""

    write: float = 0.45
    anon: float = 0.08
    login: float = 0.02
    flood: float = 0.0  # cookieless POST /flood: a new anonymous session each


@dataclass(frozen=True)
class Event:
    """``action`` runs (in a thread) ``at`` seconds after the load started."""

    at: float
    name: str
    action: Callable[[], object]


@dataclass
class EventRun:
    name: str
    started: float  # offsets from the start of the load
    ended: float
    error: str | None = None


@dataclass(frozen=True)
class LoadConfig:
    clients: int
    duration: float
    timeout: float = 10.0  # per request
    shared_session: bool = False  # one jar for all; client i writes counter k<i>
    mix: Mix = Mix()
    seed: int = 0


class Sample(NamedTuple):
    t: float  # start, seconds after the load started
    latency: float  # seconds
    status: int  # 0: no response (an error)
    route: str


@dataclass
class LoadResult:
    config: LoadConfig
    elapsed: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    timeline: list[Sample] = field(default_factory=list)
    acked: int = 0  # increments that got a 2xx
    lost_writes: int = 0
    silent_resets: int = 0
    unverified: int = 0  # clients whose final read failed
    #: Logged out because a login's response never came (the connection was cut, e.g. by a
    #: killed worker): the old ID is gone and the new one never reached the client. Not
    #: counted as silent resets; the increments acknowledged before it are in ``cut_lost``.
    cut_logins: int = 0
    cut_lost: int = 0
    #: each silent reset: (offset, client, increments it dropped), to tell a store that
    #: loses sessions by design (a restarted memcached) from one that should not
    resets: list[tuple[float, int, int]] = field(default_factory=list)
    error_bodies: Counter[str] = field(default_factory=Counter)  # non-2xx/3xx, first 120 chars
    events: list[EventRun] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.timeline)

    def by_class(self) -> dict[str, int]:
        classes: Counter[str] = Counter()
        for status, n in self.statuses.items():
            classes[f"{status // 100}xx"] += n
        return {k: classes.get(k, 0) for k in ("2xx", "3xx", "4xx", "5xx")}

    def percentile_ms(self, q: float) -> float:
        latencies = sorted(s.latency for s in self.timeline if s.status)
        if not latencies:
            return 0.0
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    @property
    def bad_responses(self) -> int:
        """Responses other than 2xx/3xx."""
        return sum(n for status, n in self.statuses.items() if status >= 400)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect"
    if isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
        return "reset"
    if isinstance(exc, ProtocolError | ValueError):
        return "protocol"
    return type(exc).__name__


class _Client:
    def __init__(
        self, index: int, port: int, run: _Run, jar: CookieJar, user: str, key: str
    ) -> None:
        self.index, self.run, self.jar, self.user, self.key = index, run, jar, user, key
        self.connection = Connection(port)
        self.random = random.Random(run.config.seed * 100_003 + index)
        self.acked = 0  # increments acknowledged since the last (re)login
        self.last_error = False  # the last call got no response
        self.logged_in = False  # a login was acknowledged (and no reset seen since)
        self.login_cut = False  # the last login got no response at all

    async def call(
        self, method: str, path: str, route: str, cookies: bool = True
    ) -> Response | None:
        run = self.run
        started = time.monotonic()
        try:
            async with asyncio.timeout(run.config.timeout):
                response = await self.connection.request(
                    method, path, self.jar.header() if cookies else ""
                )
        except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
            run.record(started, 0, route, error=_error_kind(exc))
            self.last_error = True
            return None
        self.last_error = False
        run.record(started, response.status, route)
        if cookies:
            self.jar.update(response)
        if response.status >= 400:
            run.result.error_bodies[response.body[:120].decode(errors="replace")] += 1
        return response if 200 <= response.status < 300 else None

    def answer(self, response: Response | None) -> dict[str, Any] | None:
        """The JSON of a 2xx, after checking it still names our user (else: a silent reset,
        and a new login)."""
        if response is None:
            return None
        try:
            body: dict[str, Any] = json.loads(response.body)
        except ValueError:
            self.run.result.errors["bad body"] += 1
            return None
        if body.get("user") != self.user:
            result = self.run.result
            if self.logged_in and self.login_cut:
                result.cut_logins += 1
                result.cut_lost += self.acked
            elif self.logged_in:
                result.silent_resets += 1
                result.resets.append((time.monotonic() - self.run.t0, self.index, self.acked))
                result.lost_writes += self.acked
            self.acked = 0
            self.logged_in = False
            self.run.relogin.add(self.index)
        else:
            self.login_cut = False  # whatever a cut login did, the session is still ours
        return body

    async def login(self) -> bool:
        response = await self.call("POST", f"/login?user={self.user}", "login")
        if response is None:
            # a 4xx/5xx is an answer (the old session stays); no answer at all may have
            # logged in under an ID the client never saw
            self.login_cut = self.last_error
            return False
        body = self.answer(response)
        if body is None or body.get("user") != self.user:
            return False
        self.logged_in, self.login_cut = True, False
        return True

    async def incr(self) -> None:
        body = self.answer(await self.call("POST", f"/incr?key={self.key}", "incr"))
        if body is not None and self.index not in self.run.relogin:
            self.acked += 1
            self.run.result.acked += 1

    async def loop(self, deadline: float) -> None:
        mix, shared = self.run.config.mix, self.run.config.shared_session
        while time.monotonic() < deadline:
            if self.index in self.run.relogin:
                if shared:  # one session for all: someone logs it in again
                    self.run.relogin.discard(self.index)
                    await self.login()
                elif await self.login():
                    self.run.relogin.discard(self.index)
                else:
                    await asyncio.sleep(0.05)
                continue
            roll = self.random.random()
            if roll < mix.write:
                await self.incr()
            elif roll < mix.write + mix.anon:
                await self.call("GET", "/anon", "anon", cookies=False)
            elif roll < mix.write + mix.anon + mix.flood:
                await self.call("POST", "/flood", "flood", cookies=False)
            elif roll < mix.write + mix.anon + mix.flood + mix.login and not shared:
                await self.login()
            else:
                self.answer(await self.call("GET", "/count", "count"))

    async def verify(self, counters: dict[str, int] | None) -> None:
        """Compare the stored counter with the acknowledged increments."""
        result = self.run.result
        if counters is None:
            result.unverified += 1
            return
        result.lost_writes += max(0, self.acked - int(counters.get(self.key, 0)))

    async def final_read(self) -> dict[str, int] | None:
        for _ in range(3):
            body = self.answer(await self.call("GET", "/count", "final"))
            if body is not None and body.get("user") == self.user:
                counters: dict[str, int] = body.get("counters", {})
                return counters
        return None


class _Run:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.result = LoadResult(config)
        self.relogin: set[int] = set()
        self.t0 = time.monotonic()

    def record(self, started: float, status: int, route: str, error: str = "") -> None:
        self.result.timeline.append(
            Sample(started - self.t0, time.monotonic() - started, status, route)
        )
        if status:
            self.result.statuses[status] += 1
        else:
            self.result.errors[error] += 1


async def _event(run: _Run, event: Event) -> None:
    await asyncio.sleep(max(0.0, event.at - (time.monotonic() - run.t0)))
    started = time.monotonic() - run.t0
    error = None
    try:
        await asyncio.to_thread(event.action)
    except Exception as exc:  # recorded in the result, never fatal to the load
        error = f"{type(exc).__name__}: {exc}"
    run.result.events.append(EventRun(event.name, started, time.monotonic() - run.t0, error))


async def run_load(
    port: int, config: LoadConfig, events: list[Event] | tuple[Event, ...] = (), tag: str = ""
) -> LoadResult:
    """Drive the app on ``127.0.0.1:port`` with ``config.clients`` virtual clients for
    ``config.duration`` seconds (users ``<tag>u<i>``), running ``events`` meanwhile."""
    run = _Run(config)
    shared = CookieJar()
    tag = tag or f"{time.time_ns():x}-"
    clients = [
        _Client(
            i,
            port,
            run,
            shared if config.shared_session else CookieJar(),
            f"{tag}shared" if config.shared_session else f"{tag}u{i}",
            f"k{i}" if config.shared_session else "n",
        )
        for i in range(config.clients)
    ]
    deadline = run.t0 + config.duration
    if config.shared_session:
        while not await clients[0].login() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    else:
        for client in clients:  # a login that fails is retried in the loop
            if not await client.login():
                run.relogin.add(client.index)
    tasks = [asyncio.create_task(_event(run, e)) for e in events]
    await asyncio.gather(*(c.loop(deadline) for c in clients))
    if config.shared_session:
        counters = await clients[0].final_read()
        for client in clients:
            await client.verify(counters)
    else:
        finals = await asyncio.gather(*(c.final_read() for c in clients))
        for client, counters in zip(clients, finals, strict=True):
            await client.verify(counters)
    await asyncio.gather(*tasks)
    for client in clients:
        await client.connection.close()
    run.result.elapsed = time.monotonic() - run.t0
    return run.result
