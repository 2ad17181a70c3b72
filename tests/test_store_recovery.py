"""A store that was unreachable for a while serves again as soon as its server is back.

psycopg_pool replaces the connections an outage broke in the background, retrying with
exponential backoff (1, 3, 7, 15 s ... after the first failure): after an outage of a few
seconds, satchel 0.1 kept answering 503 for up to as long again after PostgreSQL was back
(the reliability suite's fault-sql scenario measured 1.8 s after a 5 s outage, and longer
after longer ones). Now a pool that has lost its connections to failed attempts is checked
with one direct connection (at most one every half second), and replaced once that
connection succeeds.

The link goes through a :class:`~tests.services.TcpProxy` the test owns: the shared server
behind it is never touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from satchel import ids
from satchel.errors import StoreUnavailable
from satchel.record import Record
from satchel.stores.postgres import PostgresStore
from satchel.testing.conformance import _meta

from .services import TcpProxy, port_open, unavailable

OUTAGE = 4.0  # the pool's own retries fall at about 1, 3 and 7 s: the next is 3 s past this
RECOVERED_WITHIN = 1.5  # seconds after the link is back
TIMEOUT = 0.5
SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    link = TcpProxy(5432)
    yield link
    link.close()


def _store(proxy: TcpProxy) -> PostgresStore:
    return PostgresStore(
        f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
        table="satchel_recovery_test",
        timeout=TIMEOUT,
    )


def _record() -> Record:
    return Record({"n": "1"}, _meta(time.time()))


def test_sync_pool_serves_again_once_postgres_is_back(proxy: TcpProxy) -> None:
    store = _store(proxy)
    key = ids.store_key(ids.new_session_id())
    try:
        store.create(key, _record())
        proxy.cut()
        began = time.monotonic()
        while time.monotonic() - began < OUTAGE:  # requests keep coming during the outage
            with pytest.raises(StoreUnavailable):
                store.load(key, time.time())
            time.sleep(0.05)
        proxy.restore()
        back = time.monotonic()
        while True:
            try:
                assert store.load(key, time.time()) is not None
                break
            except StoreUnavailable:
                assert time.monotonic() - back < RECOVERED_WITHIN + 10, "never recovered"
                time.sleep(0.05)
        assert time.monotonic() - back < RECOVERED_WITHIN
        store.delete(key)
    finally:
        store.close()


def test_async_pool_serves_again_once_postgres_is_back(proxy: TcpProxy) -> None:
    async def run() -> float:
        store = _store(proxy)
        key = ids.store_key(ids.new_session_id())
        try:
            await store.acreate(key, _record())
            proxy.cut()
            began = time.monotonic()
            while time.monotonic() - began < OUTAGE:
                with pytest.raises(StoreUnavailable):
                    await store.aload(key, time.time())
                await asyncio.sleep(0.05)
            proxy.restore()
            back = time.monotonic()
            while True:
                try:
                    assert await store.aload(key, time.time()) is not None
                    break
                except StoreUnavailable:
                    assert time.monotonic() - back < RECOVERED_WITHIN + 10, "never recovered"
                    await asyncio.sleep(0.05)
            recovered = time.monotonic() - back
            await store.adelete(key)
            return recovered
        finally:
            await store.aclose()

    assert asyncio.run(run()) < RECOVERED_WITHIN


def test_an_unreachable_server_fails_calls_at_once(proxy: TcpProxy) -> None:
    """While the checks fail, calls answer StoreUnavailable without waiting the whole
    timeout for a pooled connection that cannot come (a 503 now, not in ``timeout``)."""
    store = _store(proxy)
    key = ids.store_key(ids.new_session_id())
    try:
        store.create(key, _record())
        proxy.cut()
        with pytest.raises(StoreUnavailable):
            store.load(key, time.time())  # finds the pool's connection broken
        time.sleep(1.2)  # the pool has failed to reconnect by now
        waits = []
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match="PostgreSQL"):
                store.load(key, time.time())
            waits.append(time.monotonic() - began)
        assert max(waits) < TIMEOUT / 2, waits
        proxy.restore()
    finally:
        store.close()


@pytest.mark.parametrize("path", ["sync", "async"])
def test_concurrent_first_calls_open_one_pool(path: str) -> None:
    """Calls arriving together on a store whose pool is not open yet (a cold start under
    load, or a pool just replaced), in threads or tasks, share one pool: in 0.1 each
    opened a pool of its own, and PostgreSQL saw up to two connections per call at once
    (under the reliability suite's load: "sorry, too many clients already")."""
    if not port_open(5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    name = f"satchel_pools_{time.monotonic_ns()}"
    url = f"postgresql://postgres@127.0.0.1:5432/test?application_name={name}"
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        with psycopg.connect(SERVER, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (name,),
                ).fetchone()
                peak = max(peak, int(row[0]) if row else 0)
                time.sleep(0.005)

    async def run() -> None:
        store = PostgresStore(url, table="satchel_recovery_test", min_size=2, max_size=2)
        try:
            await asyncio.gather(*(store.aload("0" * 64, time.time()) for _ in range(30)))
            await asyncio.sleep(0.2)
        finally:
            await store.aclose()

    def run_threads() -> None:
        store = PostgresStore(url, table="satchel_recovery_test", min_size=2, max_size=2)
        try:
            barrier = threading.Barrier(30)

            def call() -> None:
                barrier.wait()
                store.load("0" * 64, time.time())

            threads = [threading.Thread(target=call) for _ in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(0.2)
        finally:
            store.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        if path == "sync":
            run_threads()
        else:
            asyncio.run(run())
    finally:
        done.set()
        watcher.join()
    assert peak <= 3  # the pool's two, and its opening check
