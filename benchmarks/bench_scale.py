"""Does a read cost the same with a thousand or a million stored sessions?

Fills two stores of each kind (SQLite, Redis, PostgreSQL), one with the first size and
one with the second, then times ``aload`` of random existing sessions in both, in
alternating rounds (the order flips every round) so that a load spike on the shared
machine hits both alike: median microseconds per read and the median of the per-round
ratios large/small. The two Redis stores live in two logical databases of one server
(each has its own keyspace), the PostgreSQL ones in two tables of the ``test`` database,
the SQLite ones in two files. Everything is removed afterwards.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,1000000]

``--memory`` measures Redis memory instead: N small logged-in sessions (a user ID and a
counter, each of another user, as benchmarks/bench_table.py's login makes them), each
with its per-user index, written with pipelined CREATE and INDEX_ADD scripts; then
``MEMORY USAGE`` of one hash and one index, and the growth of ``used_memory`` per session.
For comparison, starsessions' layout (one JSON string per session) at the same N. Keys
have the length bench_table's have; all are removed afterwards.

    .venv/bin/python benchmarks/bench_scale.py --memory --sizes 1000,1000000 \
        --redis redis://127.0.0.1:6391/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import tempfile
import time
from functools import partial
from typing import Any

import redis

from satchel import SQLiteStore, ids
from satchel.record import Record
from satchel.stores.redis import CREATE, INDEX_ADD, RedisStore, create_args
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


def clean(client: Any, prefix: str) -> None:
    names: list[bytes] = []
    for name in client.scan_iter(match=prefix + "*", count=10_000):
        names.append(name)
        if len(names) == 5000:
            client.delete(*names)
            names = []
    if names:
        client.delete(*names)


def fill_logged_in(client: Any, prefix: str, size: int, now: float) -> tuple[str, str]:
    """``size`` sessions of satchel's layout, each with the user's index; one hash key and
    one index key."""
    create, index_add = client.register_script(CREATE), client.register_script(INDEX_ADD)
    store = RedisStore(client=client, prefix=prefix)
    pipe = client.pipeline(transaction=False)
    hash_key = index_key = ""
    for i in range(size):
        user = f"user{i}"
        meta = _meta(now, user_id=user, user_agent="bench/1")
        key = ids.store_key(ids.new_session_id())
        hash_key, index_key = store.hash_key(key), store.index_key(user)
        create(keys=[hash_key], args=create_args(Record({"n": "1"}, meta)), client=pipe)
        index_add(
            keys=[index_key], args=[repr(meta.absolute_deadline), key, repr(now)], client=pipe
        )
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return hash_key, index_key


def fill_starsessions(client: Any, prefix: str, size: int) -> str:
    """starsessions' layout (2.2, as bench_table's app writes it): one JSON string per
    session, its own metadata inside, under a random hex ID."""
    pipe = client.pipeline(transaction=False)
    name = ""
    now = time.time()
    for i in range(size):
        name = prefix + secrets.token_hex(16)
        meta = {"lifetime": 3600, "created": now, "last_access": now + 0.0034}
        value = {"user_id": f"user{i}", "n": 1, "__metadata__": meta}
        pipe.set(name, json.dumps(value), ex=3600)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return name


def memory(url: str, sizes: list[int]) -> None:
    client = redis.Redis.from_url(url)
    now = time.time()
    tag = secrets.token_hex(4)
    print("| layout | sessions | hash bytes (encoding) | index bytes | used_memory per session |")
    print("|---|---|---|---|---|")
    for size in sizes:
        for layout in ("satchel", "starsessions"):
            prefix = f"satchel-bench-{tag}:m{'04' if layout == 'satchel' else '03'}:"
            client.memory_purge()
            before = int(client.info("memory")["used_memory"])
            try:
                if layout == "satchel":
                    hash_key, index_key = fill_logged_in(client, prefix, size, now)
                    index = f"{client.memory_usage(index_key, samples=0)}"
                else:
                    hash_key, index = fill_starsessions(client, prefix, size), "-"
                after = int(client.info("memory")["used_memory"])
                encoding = client.object("encoding", hash_key).decode()
                usage = client.memory_usage(hash_key, samples=0)
                print(
                    f"| {layout} | {size:,} | {usage} ({encoding}) | {index} | "
                    f"{(after - before) / size:.0f} |",
                    flush=True,
                )
            finally:
                clean(client, prefix)
    client.close()


async def load_any(store: Any, keys: list[str], now: float) -> Any:
    return await store.aload(random.choice(keys), now)


async def timed(op: Any, rounds: int = 5, n: int = 500) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            await op()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


def fill_postgres(url: str, table: str, keys: list[str], now: float) -> Any:
    import psycopg

    from satchel.stores.postgres import PostgresStore

    store = PostgresStore(url, table=table)
    store.init_schema()
    columns = "key, data, meta, last_seen, idle_timeout, absolute_deadline, expires_at, "
    columns += "user_id, handle, version"
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for i, key in enumerate(keys):
                m = _meta(now, user_id=f"user{i % 1000}")
                times = (m.last_seen, m.idle_timeout, m.absolute_deadline, m.expires_at)
                copy.write_row((key, '{"n":"1"}', m.to_json(), *times, m.user_id, m.handle, 1))
        conn.execute(f"ANALYZE {table}")
    return store


def drop_postgres(url: str, table: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


async def reads(sizes: list[int], redis_url: str, pg_url: str, rounds: int) -> None:
    """Read cost in a small and a large store of each kind, measured side by side."""
    now = time.time()
    small, large = sizes
    keys = {size: [ids.store_key(ids.new_session_id()) for _ in range(size)] for size in sizes}
    base = redis_url.rsplit("/", 1)[0]
    tables = {size: f"satchel_scale_{secrets.token_hex(4)}" for size in sizes}
    stores: dict[str, dict[int, Any]] = {"sqlite": {}, "redis": {}, "postgres": {}}
    tmp = tempfile.mkdtemp()
    try:
        for size, db in zip(sizes, (14, 15), strict=True):
            started = time.monotonic()
            sqlite = SQLiteStore(f"{tmp}/scale{size}.db")
            fill_sqlite(sqlite, keys[size], now)
            stores["sqlite"][size] = sqlite
            client = redis.Redis.from_url(f"{base}/{db}")
            clean(client, PREFIX)
            fill_redis(client, keys[size], now)
            client.close()
            stores["redis"][size] = RedisStore(f"{base}/{db}", prefix=PREFIX)
            stores["postgres"][size] = fill_postgres(pg_url, tables[size], keys[size], now)
            print(f"filled {size:,} sessions in each store: {time.monotonic() - started:.0f} s")
        print(f"{'store':9} {small:>12,} {large:>12,}  large/small (median, range)")
        for name, by_size in stores.items():
            times: dict[int, list[float]] = {small: [], large: []}
            ratios = []
            for r in range(rounds):
                order = sizes if r % 2 == 0 else sizes[::-1]
                for size in order:
                    read = partial(load_any, by_size[size], keys[size], now)
                    times[size].append(await timed(read, rounds=1))
                ratios.append(times[large][-1] / times[small][-1])
            print(
                f"{name:9} {statistics.median(times[small]):>10.1f}us "
                f"{statistics.median(times[large]):>10.1f}us  "
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    finally:
        for by_size in stores.values():
            for store in by_size.values():
                await store.aclose()
        for size, db in zip(sizes, (14, 15), strict=True):
            client = redis.Redis.from_url(f"{base}/{db}")
            clean(client, PREFIX)
            client.close()
            drop_postgres(pg_url, tables[size])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--memory", action="store_true", help="Redis memory per session")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.memory:
        memory(args.redis, sizes)
        return
    if len(sizes) != 2:
        parser.error("--sizes: two sizes, small and large")
    await reads(sizes, args.redis, args.postgres, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
