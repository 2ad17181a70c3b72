"""The asyncio Redis Cluster store under concurrent load, against private clusters: no
self-inflicted errors on a healthy cluster, and after a primary is SIGKILLed and its replica
promoted, every call reaches the new primary within a bound and no write acknowledged after
the kill is lost (issue 14). Run with ``-s`` for the figures."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from satchel import StoreError, ids
from satchel.ops import adrive, drive
from satchel.stores.redis import RedisStore
from satchel.testing.conformance import cookie_id, request

from .helpers import make_engine
from .services import ClusterSetup, RedisServer, redis_cli, wait_for

pytestmark = pytest.mark.anyio

#: Concurrent calls on one store: an ASGI worker of the reliability harness has about 50.
WRITERS = 60
#: After the replica is promoted, every call must succeed from this long on (seconds).
FOLLOW_BOUND = 1.0
TIMEOUT = 1.0


@dataclass
class Load:
    """What the writers saw: each call's start (monotonic), and its error, if any."""

    calls: list[tuple[float, str]] = field(default_factory=list)
    acked: list[tuple[float, str, str]] = field(default_factory=list)  # (when, sid, key)

    def failures(self, since: float = 0.0) -> list[tuple[float, str]]:
        return [(t, error) for t, error in self.calls if error and t >= since]

    def summary(self, since: float = 0.0) -> str:
        kinds = Counter(error[:70] for _, error in self.failures(since))
        calls = sum(t >= since for t, _ in self.calls)
        return f"{calls} calls, {sum(kinds.values())} failed: {dict(kinds)}"


def _sessions(store: RedisStore, count: int) -> list[str]:
    engine = make_engine()
    sids = []
    for _ in range(count):
        _, cookie = drive(request(engine, None, start=True), store)
        sid = cookie_id(cookie)
        assert sid is not None
        sids.append(sid)
    return sids


async def _writers(store: RedisStore, sids: list[str], load: Load, stop: asyncio.Event) -> None:
    engine = make_engine()

    async def writer(n: int) -> None:
        i = n
        while not stop.is_set():
            sid, key = sids[i % len(sids)], f"w{i}"
            i += WRITERS
            started = time.monotonic()
            try:
                await adrive(request(engine, sid, **{key: i}), store)
            except StoreError as exc:
                load.calls.append((started, str(exc)))
                await asyncio.sleep(0.01)
                continue
            load.calls.append((started, ""))
            load.acked.append((started, sid, key))

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))


async def test_concurrent_calls_on_a_healthy_cluster_all_succeed(redis_cluster: str) -> None:
    """A fresh store, 60 calls at a time: redis-py routed the first ones to random
    primaries (MOVED), and every fifth MOVED closed the connections of every call in
    flight, which failed and began it again: a few failures a second, for good."""
    store = RedisStore(redis_cluster, socket_timeout=TIMEOUT, prefix="satchel-cf-healthy:")
    sids = _sessions(store, 100)
    load, stop = Load(), asyncio.Event()
    task = asyncio.create_task(_writers(store, sids, load, stop))
    await asyncio.sleep(3)
    stop.set()
    await task
    print(f"\nhealthy cluster, {WRITERS} at a time: {load.summary()}")
    await store.aclose()
    store.close()
    assert load.acked
    assert load.failures() == []


class _Failover:
    """Kill a primary of ``cluster`` (SIGKILL), wait until its replica is promoted, then
    start the old one again (empty: no persistence) and wait until it replicates."""

    def __init__(self, cluster: ClusterSetup) -> None:
        self.cluster = cluster
        self.killed = self.promoted = self.back = 0.0

    @staticmethod
    def _role(node: RedisServer) -> str:
        lines = redis_cli(node.port, "role").splitlines()
        return lines[0] if lines else ""

    def run(self) -> None:
        nodes = self.cluster.nodes
        primary = next(n for n in nodes if self._role(n) == "master")
        replica = next(
            n
            for n in nodes
            if f"master_port:{primary.port}" in redis_cli(n.port, "info", "replication")
        )
        others = [n for n in nodes if n is not primary]
        assert primary.process is not None
        self.killed = time.monotonic()
        os.kill(primary.process.pid, signal.SIGKILL)
        primary.process.wait(10)
        primary.process = None
        wait_for(
            lambda: (
                self._role(replica) == "master"
                and all("cluster_state:ok" in redis_cli(n.port, "cluster", "info") for n in others)
            ),
            "replica promoted",
            60,
        )
        self.promoted = time.monotonic()
        time.sleep(0.5)
        primary.start()
        wait_for(
            lambda: "master_link_status:up" in redis_cli(primary.port, "info", "replication"),
            "old primary back as a replica",
            60,
        )
        self.back = time.monotonic()


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ClusterSetup]:
    """Three primaries of one's own, each with a replica (and each replica in sync)."""
    setup = ClusterSetup(tmp_path, replicas=1)
    wait_for(
        lambda: (
            sum(
                "master_link_status:up" in redis_cli(n.port, "info", "replication")
                for n in setup.nodes
            )
            == 3
        ),
        "replicas in sync",
        60,
    )
    yield setup
    setup.stop()


def _lost(
    cluster: ClusterSetup, store: RedisStore, acked: list[tuple[float, str, str]]
) -> list[float]:
    """When each acknowledged write that the cluster no longer has was acknowledged."""
    live = next(n for n in cluster.nodes if n.process is not None)
    client = redis.RedisCluster(host="127.0.0.1", port=live.port)
    try:
        return [
            when
            for when, sid, key in acked
            if client.hget(store.hash_key(ids.store_key(sid)), "d:" + key) is None
        ]
    finally:
        client.close()


async def test_async_store_follows_a_cluster_failover(replicated_cluster: ClusterSetup) -> None:
    store = RedisStore(replicated_cluster.url, socket_timeout=TIMEOUT, prefix="satchel-cf:")
    sids = _sessions(store, 200)
    load, stop = Load(), asyncio.Event()
    task = asyncio.create_task(_writers(store, sids, load, stop))
    failover = _Failover(replicated_cluster)
    try:
        await asyncio.sleep(1)
        await asyncio.to_thread(failover.run)
        await asyncio.sleep(max(0.0, failover.promoted + 6 - time.monotonic()))
    finally:
        stop.set()
        await task
    await store.aclose()
    store.close()
    lost = _lost(replicated_cluster, store, load.acked)
    late = load.failures(since=failover.promoted + FOLLOW_BOUND)
    last = max((t for t, _ in load.failures()), default=failover.killed)
    after = load.summary(failover.promoted + FOLLOW_BOUND)
    print(
        f"\ncluster failover, {WRITERS} at a time: promoted "
        f"{failover.promoted - failover.killed:.1f} s after the kill, old primary back "
        f"{failover.back - failover.killed:.1f} s after it; last failure "
        f"{last - failover.promoted:+.2f} s from the promotion; {len(load.acked)} writes "
        f"acknowledged, {len(lost)} lost ({sum(t > failover.killed for t in lost)} "
        f"acknowledged after the kill); after the bound: {after}"
    )
    assert late == [], f"{len(late)} calls failed more than {FOLLOW_BOUND} s after the promotion"
    assert [t for t in lost if t > failover.killed] == []


# -- a write is sent once on Cluster too -------------------------------------------------------


def _del_calls(port: int) -> int:
    stats = redis_cli(port, "info", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_del:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def _cut_after_the_next_command(port: int) -> None:
    """Pause the node's clients, and queue a kill of them all behind what they send
    meanwhile: when the pause ends the node runs the store's command, then the kill, and
    its reply is never sent (a reply lost after the server acted)."""
    killer = redis.Redis(host="127.0.0.1", port=port)
    try:
        killer.execute_command("CLIENT", "PAUSE", "600", "ALL")  # type: ignore[no-untyped-call]
        time.sleep(0.3)  # the store's command is sent, and held, meanwhile
        kill = ("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        killer.execute_command(*kill)  # type: ignore[no-untyped-call]
    finally:
        killer.close()


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_cluster_write_whose_reply_is_lost_is_not_sent_again(
    private_cluster: ClusterSetup, path: str
) -> None:
    """redis-py's Cluster clients send a command again after a connection error (to the
    node a refreshed map names): a DEL sent again answers 0, which the core reads as "a
    logout won the race" and so withdraws the login that had in fact worked (the silent
    resets of issue 14). A write is sent once: a lost reply is a 503."""
    store = RedisStore(private_cluster.url, socket_timeout=3.0, prefix="satchel-cf-once:")
    key = ids.store_key(ids.new_session_id())
    probe = redis.RedisCluster(host="127.0.0.1", port=private_cluster.nodes[0].port)
    port = int(probe.get_node_from_key(store.hash_key(key)).port)  # type: ignore[no-untyped-call]
    probe.close()
    # the client knows the cluster, and has a connection to the node
    assert (
        store.load(key, time.time()) if path == "sync" else await store.aload(key, time.time())
    ) is None
    before = _del_calls(port)
    cut = asyncio.create_task(asyncio.to_thread(_cut_after_the_next_command, port))
    await asyncio.sleep(0.1)  # the node is paused
    outcome: object
    try:
        outcome = store.delete(key) if path == "sync" else await store.adelete(key)
    except StoreError as exc:
        outcome = exc
    await cut
    sent = _del_calls(port) - before
    print(f"\n{path}: DEL run {sent} times by the server; the call: {outcome!r}")
    await store.aclose()
    store.close()
    assert sent == 1
    assert isinstance(outcome, StoreError)
