"""What a scenario gets: the run's mode (clients, durations), a private working directory,
unique names on the shared services, servers that stop themselves, and ``load``."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.services import MemcachedServer, port_open, redis_cli

from .load import Event, LoadConfig, LoadResult, Mix, run_load
from .servers import AppServer

REDIS = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB = "mysql://root@127.0.0.1:3306/test"


class Unavailable(Exception):
    """A service a scenario needs does not answer (the row is skipped; under CI it fails)."""


@dataclass(frozen=True)
class Mode:
    name: str
    clients: int  # the load scenarios
    duration: float  # seconds per load run
    shared_clients: int = 20  # the shared-session scenario
    shared_duration: float = 5.0
    short_duration: float = 5.0  # flood and crash runs
    timeout: float = 10.0  # per request


FULL = Mode("full", clients=100, duration=60.0, shared_duration=20.0, short_duration=15.0)
SHORT = Mode("short", clients=20, duration=5.0, shared_duration=5.0, short_duration=5.0)


class Context:
    """One per run. Everything started through it is stopped by ``stack`` (in reverse)."""

    def __init__(self, mode: Mode, stack: ExitStack, workdir: Path) -> None:
        self.mode, self.workdir = mode, workdir
        #: the run's stack (what lives for the whole run: the private memcached) and the
        #: current scenario's (its servers, keys and tables), unwound after the scenario
        self.run_stack = self.stack = stack
        self.run_id = uuid.uuid4().hex[:8]
        self._memcached: MemcachedServer | None = None
        self._names = 0

    # names and stores ---------------------------------------------------------------------

    def name(self, what: str) -> str:
        """A name unique to this run: ``satchel_rel_<run>_<n>_<what>``."""
        self._names += 1
        return f"satchel_rel_{self.run_id}_{self._names}_{what}"

    def directory(self, what: str) -> Path:
        path = self.workdir / self.name(what)
        path.mkdir(mode=0o700)
        return path

    def redis_prefix(self, what: str) -> str:
        """A key prefix on the shared Redis; its keys are deleted at the end of the run."""
        if redis_cli(6379, "ping") != "PONG":
            raise Unavailable("Redis on 127.0.0.1:6379")
        prefix = self.name(what) + ":"
        self.stack.callback(delete_redis_keys, REDIS, prefix)
        return prefix

    def store_url(self, kind: str, what: str = "load") -> str:
        """A satchel store URL of ``kind`` (redis, postgresql, mariadb, sqlite, memcached,
        file, memory) under names of its own; cleaned up at the end of the run."""
        if kind == "redis":
            return f"{REDIS}?prefix={self.redis_prefix(what)}"
        if kind == "postgresql":
            if not port_open(5432):
                raise Unavailable("PostgreSQL on 127.0.0.1:5432")
            table = self.name(what)
            self.stack.callback(drop_table, "postgresql", table)
            return f"{POSTGRES}?table={table}"
        if kind == "mariadb":
            if not port_open(3306):
                raise Unavailable("MariaDB on 127.0.0.1:3306")
            table = self.name(what)
            self.stack.callback(drop_table, "mariadb", table)
            return f"{MARIADB}?table={table}"
        if kind == "sqlite":
            return f"sqlite:///{self.directory(what)}/sessions.db"
        if kind == "file":
            return f"file://{self.directory(what)}/sessions"
        if kind == "memcached":
            return f"{self.memcached().url}?prefix={self.name(what)}:"
        if kind.startswith("memory"):
            return kind if "://" in kind else "memory://"
        raise ValueError(f"unknown store kind {kind!r}")

    def memcached(self) -> MemcachedServer:
        """A private memcached for the run (the machine runs none)."""
        if self._memcached is None:
            if shutil.which("memcached") is None:
                raise Unavailable("memcached (apt-get install memcached)")
            self._memcached = MemcachedServer()
            self.run_stack.callback(self._memcached.stop)
        return self._memcached

    # servers and load ---------------------------------------------------------------------

    def server(
        self, app: str, store: str, *, workers: int = 2, prefix: str = "", **env: str
    ) -> AppServer:
        """``app`` (a key of reliability.apps.APPS) on ``store``, ready; stopped at the end
        of the run (or earlier with ``server.stop()``)."""
        server = AppServer(app, store, workers=workers, prefix=prefix, env=env)
        self.stack.callback(server.stop)
        server.wait_ready()
        return server

    def load(
        self,
        server: AppServer,
        *,
        clients: int | None = None,
        duration: float | None = None,
        shared_session: bool = False,
        mix: Mix | None = None,
        events: Iterable[Event] = (),
    ) -> LoadResult:
        """Run the load generator against ``server`` (the mode's clients and duration unless
        given), with ``events`` at their offsets; raise if the server died meanwhile."""
        config = LoadConfig(
            clients=clients or self.mode.clients,
            duration=duration or self.mode.duration,
            timeout=self.mode.timeout,
            shared_session=shared_session,
        )
        if mix is not None:
            config = replace(config, mix=mix)
        tag = f"{self.name('u')}-"
        result = asyncio.run(run_load(server.port, config, tuple(events), tag=tag))
        server.check()
        return result

    def cleanup(self, action: Callable[[], Any]) -> None:
        self.stack.callback(action)


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(batch), 500):
            client.unlink(*batch[start : start + 500])
    finally:
        client.close()


def drop_table(kind: str, table: str) -> None:
    """Drop a table this run made (only names of the form satchel_rel_<run>_...)."""
    assert table.startswith("satchel_rel_")
    assert table.replace("_", "").isalnum()
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        return
    import pymysql

    link = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        with link.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        link.commit()
    finally:
        link.close()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
