"""Does a read cost the same with a thousand or a few hundred thousand stored sessions?

Fills SQLite and Redis with N sessions, then times ``aload`` of random existing ones
(median microseconds over rounds). Also times listing one user's sessions among N.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,100000,300000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from typing import Any

import redis

from satchel import SQLiteStore, ids
from satchel.record import Record
from satchel.stores.redis import CREATE, RedisStore, create_args
from satchel.testing.conformance import _meta

PREFIX = "satchel-scale:"


def fill_sqlite(store: SQLiteStore, keys: list[str], now: float) -> None:
    rows = []
    for i, key in enumerate(keys):
        meta = _meta(now, user_id=f"user{i % 1000}")
        rows.append(
            (key, '{"n":"1"}', meta.to_json(), meta.expires_at, meta.user_id, meta.handle, 1)
        )
    db = store._connection()
    db.execute("BEGIN")
    db.executemany("INSERT INTO satchel_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")


def fill_redis(client: Any, keys: list[str], now: float) -> None:
    script = client.register_script(CREATE)
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        meta = _meta(now, user_id=f"user{i % 1000}")
        record = Record({"n": "1"}, meta)
        script(
            keys=[PREFIX + "s:" + key],
            args=create_args(record),
            client=pipe,
        )
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


async def timed(op: Any, rounds: int = 5, n: int = 500) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await op()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,300000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    now = time.time()
    client = redis.Redis()
    print(f"{'store':8} {'sessions':>9} {'load us':>9} {'list user us':>13}")
    for size in sizes:
        keys = [ids.store_key(ids.new_session_id()) for _ in range(size)]
        tmp = tempfile.mkdtemp()
        sqlite = SQLiteStore(f"{tmp}/scale.db")
        fill_sqlite(sqlite, keys, now)
        for name in ("sqlite", "redis"):
            store: Any = sqlite
            if name == "redis":
                for old in client.scan_iter(match=PREFIX + "*", count=10_000):
                    client.delete(old)
                fill_redis(client, keys, now)
                store = RedisStore("redis://127.0.0.1:6379/0", prefix=PREFIX)
            load = await timed(lambda s=store, k=keys: s.aload(random.choice(k), now))
            if name == "sqlite":
                listing = await timed(lambda s=store: s.alist_user("user7", now), n=50)
                print(f"{name:8} {size:>9} {load:>9.1f} {listing:>13.1f}")
            else:
                print(f"{name:8} {size:>9} {load:>9.1f} {'-':>13}")
            await store.aclose()
    for old in client.scan_iter(match=PREFIX + "*", count=10_000):
        client.delete(old)
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
