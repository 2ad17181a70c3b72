"""Private Redis servers to break under load (the shared Redis on 6379 is never touched): a
single server persisting with AOF ``appendfsync always``, a Sentinel setup with a primary, a
replica and three sentinels, and a Redis Cluster of three primaries each with a replica.
Each can lose a node to SIGKILL and get it back on the same port and directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.services import (
    LOOPBACK,
    ClusterSetup,
    RedisServer,
    free_port,
    redis_cli,
    wait_for,
)

from .proxy import ProxyProcess

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"


def kill(server: RedisServer) -> None:
    """SIGKILL ``server`` (no shutdown, no final fsync); :meth:`RedisServer.start` brings it
    back on the same port, with the same arguments and directory."""
    process = server.process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    server.process = None


def replicating(port: int) -> bool:
    return "master_link_status:up" in redis_cli(port, "info", "replication")


class AofRedis(RedisServer):
    """A private ``redis-server`` with ``appendonly yes`` and ``appendfsync always``: every
    write it acknowledged is on disk, so a SIGKILL and a restart lose none."""

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK,
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / f"redis-{self.port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # a restart answers LOADING until the AOF is read back
        wait_for(lambda: redis_cli(self.port, "ping") == "PONG", f"redis-server :{self.port}")


class Sentinels:
    """A primary, a replica and three sentinels (quorum 2) watching them as ``satchel``;
    a primary is declared down after 1 s. :meth:`kill_primary` can make the replica lag
    first, through a proxy (:class:`~reliability.proxy.ProxyProcess`) it holds."""

    SERVICE = "satchel"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "a")
        self.link = ProxyProcess(self.primary.port)
        self.replica = RedisServer(directory / "b", "--replicaof", LOOPBACK, str(self.primary.port))
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        try:
            wait_for(lambda: replicating(self.replica.port), "replica in sync")
            self._start_sentinels()
        except BaseException:
            self.stop()
            raise

    def _start_sentinels(self, attempts: int = 3) -> None:
        """Three sentinels on free ports, until they know each other and the replica. A
        sentinel that died at start (its port taken in the meantime by another process:
        the machine runs tests in parallel) or a group that never settles is started again
        on new ports, up to ``attempts`` times (a CI run once failed here under load)."""
        for attempt in range(attempts):
            self.sentinels, self.ports = [], []
            for i in range(3):
                port = free_port()
                config = self.directory / f"sentinel-{attempt}-{i}.conf"
                config.write_text(
                    f"port {port}\nbind {LOOPBACK}\ndir {self.directory}\n"
                    f"sentinel monitor {self.SERVICE} {LOOPBACK} {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                    f"sentinel failover-timeout {self.SERVICE} 10000\n"
                )
                self.sentinels.append(
                    subprocess.Popen(
                        [REDIS_SERVER, str(config), "--sentinel"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                self.ports.append(port)
            try:
                wait_for(self._settled, "three sentinels that know each other and the replica", 30)
                return
            except TimeoutError:
                if attempt == attempts - 1:
                    raise
                self._stop_sentinels()

    def _stop_sentinels(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
            process.wait(10)

    def _settled(self) -> bool:
        if any(process.poll() is not None for process in self.sentinels):
            raise TimeoutError("a sentinel exited at start")  # (its port was taken)
        for port in self.ports:
            fields = redis_cli(port, "sentinel", "master", self.SERVICE).splitlines()
            info = dict(zip(fields[::2], fields[1::2], strict=False))
            if info.get("num-other-sentinels") != "2" or info.get("num-slaves") != "1":
                return False
        return self.master_port() == self.primary.port

    def _replication(self) -> str:
        return redis_cli(self.replica.port, "info", "replication")

    def master_port(self) -> int | None:
        reply = redis_cli(self.ports[0], "sentinel", "get-master-addr-by-name", self.SERVICE)
        lines = reply.splitlines()
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    @property
    def url(self) -> str:
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def kill_primary(self, down_for: float, marks: dict[str, float], lag: float = 0.0) -> None:
        """With ``lag``, first hold the replication stream that long (the replica falls
        behind, as behind a slow or partitioned link; what was held is never delivered).
        Then SIGKILL the primary, wait for the sentinels to promote the replica, restart the
        old primary ``down_for`` seconds after the kill (never before the promotion) and
        wait until it replicates from the new one. ``marks``: monotonic times of
        ``down``, ``promoted`` and ``replica``."""
        old = self.primary
        if lag:
            # through the proxy from now on (a partial resync); not from the start: the
            # sentinels point a replica of an address they do not know back at the
            # primary, failover-timeout (10 s) after they notice
            redis_cli(self.replica.port, "replicaof", LOOPBACK, str(self.link.port))
            wait_for(
                lambda: (
                    f"master_port:{self.link.port}" in self._replication().split()
                    and replicating(self.replica.port)
                ),
                "replica through the proxy",
            )
            self.link.freeze()
            time.sleep(lag)
        marks["down"] = time.monotonic()
        kill(old)
        self.link.cut()  # the held bytes are dropped
        wait_for(lambda: self.master_port() == self.replica.port, "promotion", 60)
        wait_for(lambda: "role:master" in redis_cli(self.replica.port, "info", "replication"), "")
        marks["promoted"] = time.monotonic()
        time.sleep(max(0.0, marks["down"] + down_for - time.monotonic()))
        old.start()
        # as an operator (or an orchestrator) would; Sentinel alone converts a returning old
        # primary only after ~10 s, and until then it would serve nothing
        redis_cli(old.port, "replicaof", LOOPBACK, str(self.replica.port))
        wait_for(lambda: replicating(old.port), "old primary back as a replica", 60)
        marks["replica"] = time.monotonic()
        self.primary, self.replica = self.replica, old

    def stop(self) -> None:
        self.link.close()
        for sentinel in self.sentinels:
            sentinel.terminate()
            sentinel.wait(10)
        self.sentinels = []
        self.replica.stop()
        self.primary.stop()


class ReplicatedCluster(ClusterSetup):
    """Three cluster primaries, each with a replica (``--cluster-replicas 1``); healthy once
    every replica is in sync too."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, replicas=1)

    def role(self, node: RedisServer) -> str:
        lines = redis_cli(node.port, "role").splitlines()
        return lines[0] if lines else ""

    def healthy(self) -> bool:
        live = [n for n in self.nodes if n.process is not None]
        if not all("cluster_state:ok" in redis_cli(n.port, "cluster", "info") for n in live):
            return False
        replicas = [n for n in live if self.role(n) == "slave"]
        return len(replicas) == 3 and all(replicating(n.port) for n in replicas)

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.nodes:
            if node is not primary and f"master_port:{primary.port}" in redis_cli(
                node.port, "info", "replication"
            ):
                return node
        raise RuntimeError(f"no replica of :{primary.port}")

    def kill_primary(self, down_for: float, marks: dict[str, float]) -> None:
        """SIGKILL one primary, wait until its replica is promoted and the cluster is ok,
        restart the old primary ``down_for`` seconds after the kill (never before) and wait
        until it replicates. ``marks`` as :meth:`Sentinels.kill_primary`."""
        primary = next(n for n in self.nodes if self.role(n) == "master")
        replica = self.replica_of(primary)
        others = [n for n in self.nodes if n is not primary]
        marks["down"] = time.monotonic()
        kill(primary)
        wait_for(
            lambda: (
                self.role(replica) == "master"
                and all("cluster_state:ok" in redis_cli(n.port, "cluster", "info") for n in others)
            ),
            "replica promoted, cluster ok",
            60,
        )
        marks["promoted"] = time.monotonic()
        time.sleep(max(0.0, marks["down"] + down_for - time.monotonic()))
        primary.start()
        wait_for(lambda: replicating(primary.port), "old primary back as a replica", 60)
        marks["replica"] = time.monotonic()
