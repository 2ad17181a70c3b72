"""What the embedded stores' bounds and durability cost.

* memory: a create into a full ``MemoryStore`` (eviction), at 10,000 and 100,000 entries;
* file: one ``FileStore.update`` (temp file, fsync, rename, directory fsync), and the same
  with ``os.fsync`` patched out (what 0.1 did);
* SQLite: one ``SQLiteStore.update``, with ``synchronous`` normal (default) and full.

Median microseconds per call over rounds.

    .venv/bin/python benchmarks/bench_stores.py [--sizes 10000,100000] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from satchel import FileStore, MemoryStore, SQLiteStore, ids
from satchel.record import Change, Record
from satchel.testing.conformance import _meta


def median_us(op: Callable[[], object], rounds: int, n: int) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            op()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


def memory_create_at_capacity(size: int, rounds: int) -> float:
    """A create into a store already holding ``size`` live sessions, half of them logged in."""
    now = time.time()
    store = MemoryStore(max_entries=size)
    for i in range(size):
        meta = _meta(now, user_id=f"user{i % 1000}" if i % 2 else None)
        store.create(ids.store_key(ids.new_session_id()), Record({"n": "1"}, meta))
    record = Record({"n": "1"}, _meta(now))
    keys = [ids.store_key(ids.new_session_id()) for _ in range(rounds * 20)]
    it = iter(keys)
    return median_us(lambda: store.create(next(it), record), rounds, 20)


def update_cost(store: FileStore | SQLiteStore, rounds: int) -> float:
    now = time.time()
    key = ids.store_key(ids.new_session_id())
    store.create(key, Record({"n": "1"}, _meta(now)))
    counter = iter(range(10**9))

    def op() -> None:
        meta = _meta(now)
        store.update(key, Change(meta=meta, set={"n": str(next(counter))}), now)

    return median_us(op, rounds, 50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where the file and SQLite stores live")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        us = memory_create_at_capacity(size, args.rounds)
        print(f"memory   create at capacity, {size:>7,} entries: {us:9.1f} us")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        files = FileStore(Path(tmp) / "files")
        print(f"file     update: {update_cost(files, args.rounds):9.1f} us")
        real_fsync = os.fsync
        os.fsync = lambda fd: None  # what a write cost before it fsynced (0.1)
        try:
            print(f"file     update, fsync patched out: {update_cost(files, args.rounds):9.1f} us")
        finally:
            os.fsync = real_fsync
        for synchronous in ("normal", "full"):
            sqlite = SQLiteStore(Path(tmp) / f"{synchronous}.db", synchronous=synchronous)
            us = update_cost(sqlite, args.rounds)
            print(f"sqlite   update, synchronous={synchronous}: {us:9.1f} us")
            sqlite.close()


if __name__ == "__main__":
    main()
