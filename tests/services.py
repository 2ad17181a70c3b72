"""Real servers for the tests, on loopback only.

The shared services (Redis 6379, PostgreSQL 5432, MariaDB 3306) are used when they answer.
What does not run is started here on a free port (Redis Cluster and Sentinel nodes, private
Redis servers, memcached) and stopped afterwards. With CI=true a service that can be neither
reached nor started fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"


def unavailable(what: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is not available, and CI must not skip it")
    pytest.skip(f"{what} is not available")


_SHARED_PORTS = {
    "redis": (6379, "Redis"),
    "postgresql": (5432, "PostgreSQL"),
    "mysql": (3306, "MariaDB"),
}


def store_url(template: str, tmp: Path) -> str:
    """A test's store URL from its template (``{tmp}`` for a private directory): a URL of
    one of the shared services (Redis, PostgreSQL, MariaDB on loopback) is checked first,
    and its test skipped locally (failed under CI) when the service is not running."""
    url = template.format(tmp=tmp)
    scheme = url.partition("://")[0]
    if scheme in _SHARED_PORTS:
        port, name = _SHARED_PORTS[scheme]
        if not port_open(port):
            unavailable(f"{name} on {LOOPBACK}:{port}")
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            port = 20000 + port % 30000
        pair = []
        try:
            for candidate in (port, port + 10000):
                s = socket.socket()
                pair.append(s)
                s.bind((LOOPBACK, candidate))
            return port
        except OSError:
            continue
        finally:
            for s in pair:
                s.close()
    raise RuntimeError("no free port pair for a cluster node")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def redis_cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", LOOPBACK, "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip()


class RedisServer:
    """A private ``redis-server`` process on a free loopback port."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            unavailable("redis-server")
        self.port = port or free_port()
        self.directory = directory
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                *self.args,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / f"redis-{self.port}.log"),
                # a replica syncs at once (the default waits 5 s for more replicas to join)
                "--repl-diskless-sync-delay",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis_cli(self.port, "ping") == "PONG", f"redis-server :{self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis on 6379, or a private one when it does not answer."""
    if port_open(6379) and redis_cli(6379, "ping") == "PONG":
        yield f"redis://{LOOPBACK}:6379/0"
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three cluster primaries shared by the session (see :class:`ClusterSetup`)."""
    setup = ClusterSetup(tmp_path_factory.mktemp("cluster"))
    try:
        yield setup.url
    finally:
        setup.stop()


class SentinelSetup:
    """A primary, a replica and one sentinel watching them as service ``satchel``."""

    def __init__(self, directory: Path) -> None:
        self.primary = RedisServer(directory / "primary")
        self.replica = RedisServer(
            directory / "replica", "--replicaof", LOOPBACK, str(self.primary.port)
        )
        wait_for(
            lambda: "master_link_status:up" in redis_cli(self.replica.port, "info", "replication"),
            "replica in sync",
        )
        self.sentinel_port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind {LOOPBACK}\ndir {directory}\n"
            f"sentinel monitor satchel {LOOPBACK} {self.primary.port} 1\n"
            "sentinel down-after-milliseconds satchel 1000\n"
            "sentinel failover-timeout satchel 10000\n"
        )
        self.sentinel = subprocess.Popen(
            ["redis-server", str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.master_port() == self.primary.port, "sentinel sees the primary")
        wait_for(
            lambda: (
                "num-slaves" in redis_cli(self.sentinel_port, "sentinel", "master", "satchel")
                and redis_cli(self.sentinel_port, "sentinel", "replicas", "satchel") != ""
            ),
            "sentinel sees the replica",
        )

    def master_port(self) -> int | None:
        reply = redis_cli(self.sentinel_port, "sentinel", "get-master-addr-by-name", "satchel")
        lines = reply.splitlines()
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    @property
    def url(self) -> str:
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel_port}/satchel/0"

    def failover(self) -> None:
        """Force a failover and wait until the replica is the primary."""
        old = self.master_port()
        deadline = time.monotonic() + 60
        while self.master_port() in (None, old):
            # Sentinel refuses (NOGOODSLAVE, INPROG) while its view of the replica is stale;
            # ask again until it promotes one.
            redis_cli(self.sentinel_port, "sentinel", "failover", "satchel")
            try:
                wait_for(lambda: self.master_port() not in (None, old), "failover", timeout=3)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        new = self.master_port()
        assert new is not None
        wait_for(
            lambda: "role:master" in redis_cli(new, "info", "replication"), "new primary ready"
        )

    def stop(self) -> None:
        self.sentinel.terminate()
        self.sentinel.wait(10)
        self.replica.stop()
        self.primary.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A Sentinel setup shared by the conformance tests."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    yield setup
    setup.stop()


@pytest.fixture
def private_sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A Sentinel setup of one's own, to fail over."""
    setup = SentinelSetup(tmp_path)
    yield setup
    setup.stop()


class TcpProxy:
    """A loopback TCP proxy whose link can be cut and restored, to fail a shared database
    server for one test without stopping it for the others.

    :meth:`drop_replies` fails it the other way: the client's bytes still reach the server,
    which acts on them, but its replies are thrown away (a reply lost on the way back; the
    client waits until its own timeout). :meth:`freeze` holds every byte in both directions
    (a frozen link: nothing reaches the server until :meth:`restore`, then all of it does)."""

    def __init__(self, target_port: int, target_host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut_off = False
        self.dropping = False
        self._drop_from: bytes | None = None  # start dropping at the request holding this
        self._freeze_from: bytes | None = None  # freeze at the request holding this
        self.frozen = threading.Event()
        self.frozen.set()  # set: bytes flow; cleared: the link is frozen
        self._links: list[socket.socket] = []
        self._tainted: set[socket.socket] = set()  # links that lost a reply
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # a frozen or idle link stays open however long it is silent
            with self._lock:
                self._links += [client, upstream]
            for a, b, reply in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, reply), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                while not self.frozen.wait(0.05):  # frozen: hold the bytes
                    if self._closed:
                        return
                if not replies and self._drop_from is not None and self._drop_from in data:
                    self.dropping, self._drop_from = True, None  # before the server answers
                if not replies and self._freeze_from is not None and self._freeze_from in data:
                    self._freeze_from = None
                    self.frozen.clear()  # this request is held too
                if replies and self.dropping:
                    with self._lock:
                        self._tainted.add(sink)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop_replies(self, reset_after: float | None = None, from_request: bytes = b"") -> None:
        """From now on the server gets every request and its replies are discarded. With
        ``from_request``, replies flow until a request holding those bytes has passed (e.g.
        b"COMMIT": the statement ran, its commit too, and the client never hears of it).
        With ``reset_after``, the links open then are reset that many seconds later (for a
        client that has no timeout of its own and would otherwise wait forever)."""
        if from_request:
            self._drop_from = from_request
        else:
            self.dropping = True
        if reset_after is not None:
            with self._lock:
                links = list(self._links)
            timer = threading.Timer(reset_after, self._reset, args=(links,))
            timer.daemon = True
            timer.start()

    def freeze(self, from_request: bytes = b"") -> None:
        """Hold every byte, both ways, until :meth:`restore` (connections stay open); with
        ``from_request``, from the request holding those bytes on (that one held too)."""
        if from_request:
            self._freeze_from = from_request
        else:
            self.frozen.clear()

    def thaw(self) -> None:
        """Forward again after :meth:`freeze` (what was held is delivered)."""
        self.frozen.set()

    def _reset(self, links: list[socket.socket]) -> None:
        for s in links:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.cut_off = True
        with self._lock:
            for s in self._links:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._links = []

    def restore(self) -> None:
        """Accept and forward again. A link that lost a reply is reset: the client's
        protocol state on it is out of step with the server's."""
        self.cut_off = self.dropping = False
        self._drop_from = self._freeze_from = None
        with self._lock:
            tainted, self._tainted = list(self._tainted), set()
        self._reset(tainted)
        self.frozen.set()

    def close(self) -> None:
        self._closed = True
        self.frozen.set()
        self.cut()
        self.listener.close()


class MemcachedServer:
    """A private ``memcached`` (Debian's package) on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            unavailable("memcached (apt-get install memcached)")
        self.binary = str(binary)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [self.binary, "-l", LOOPBACK, "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), f"memcached :{self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    @property
    def url(self) -> str:
        return f"memcached://{LOOPBACK}:{self.port}"


@pytest.fixture(scope="session")
def memcached() -> Iterator[MemcachedServer]:
    server = MemcachedServer()
    yield server
    server.stop()


@pytest.fixture
def private_memcached() -> Iterator[MemcachedServer]:
    server = MemcachedServer()
    yield server
    server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (its own download cannot run here)."""
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        unavailable("Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@contextlib.contextmanager
def serve_asgi(app: Any, **config: Any) -> Iterator[str]:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread: its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn")
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class ClusterSetup:
    """Three cluster primaries from redis-server, each with ``replicas`` replicas (none by
    default), joined with ``redis-cli --cluster create``; a node is failed after 2 s
    without an answer (``cluster-node-timeout``)."""

    def __init__(self, directory: Path, replicas: int = 0) -> None:
        if shutil.which("redis-cli") is None:
            unavailable("redis-cli")
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(3 * (1 + replicas)):
                port = free_cluster_port()
                self.nodes.append(
                    RedisServer(
                        directory / str(port),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(directory / f"nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        port=port,
                    )
                )
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *self.addresses,
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=60,
                check=True,
            )
            wait_for(self.healthy, "cluster state ok", 60)
        except BaseException:
            self.stop()
            raise

    def healthy(self) -> bool:
        return all("cluster_state:ok" in redis_cli(n.port, "cluster", "info") for n in self.nodes)

    @property
    def addresses(self) -> list[str]:
        return [f"{LOOPBACK}:{n.port}" for n in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(self.addresses)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[ClusterSetup]:
    """A Redis Cluster of one's own, to freeze."""
    setup = ClusterSetup(tmp_path)
    yield setup
    setup.stop()


@pytest.fixture
def mariadb_table() -> Iterator[str]:
    """A fresh table name in MariaDB's ``test`` database (on 127.0.0.1:3306), dropped
    afterwards; fails under CI, skips elsewhere, when MariaDB is not running."""
    if not port_open(3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    name = f"satchel_test_{uuid.uuid4().hex[:10]}"
    yield name
    import pymysql

    conn = pymysql.connect(host=LOOPBACK, user="root", database="test")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
    finally:
        conn.close()
