"""How long ``satchel sessions migrate`` takes to move sessions from SQLite to Redis.

Seeds ``--count`` live sessions (default 100,000; half logged in, over 10,000 users, each
with a few small values) into a new SQLite file through the store's own ``create``, then
runs the real command, ``satchel sessions migrate --from sqlite:///... --to redis://...``,
in a subprocess, twice: the copy, and a second run that finds everything already there
(what resuming an interrupted run costs at worst). Prints wall-clock seconds and
sessions per second for each; the Redis keys are removed afterwards.

    .venv/bin/python benchmarks/bench_migrate.py [--count 100000] [--redis redis://127.0.0.1:6379/0]
                                                 [--workers 8] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from satchel import SQLiteStore, ids
from satchel.record import Record
from satchel.testing.flows import make_meta


def seed(path: Path, count: int) -> float:
    store = SQLiteStore(path)
    now = time.time()
    started = time.perf_counter()
    for i in range(count):
        user = f"user{i % 10_000}" if i % 2 else None
        record = Record({"n": str(i), "theme": '"dark"', "cart": '["a","b"]'}, make_meta(now))
        key = ids.store_key(ids.new_session_id())
        if user is None:
            store.create(key, record)
        else:
            meta = record.meta.with_changes(user_id=user)
            store.create_indexed(key, Record(record.data, meta), user)
    store.close()
    return time.perf_counter() - started


def run(source: str, target: str, workers: int) -> tuple[float, dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "satchel.cli",
        "sessions",
        "migrate",
        "--from",
        source,
        "--to",
        target,
        "--workers",
        str(workers),
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    return time.perf_counter() - started, json.loads(done.stdout)


def clean(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    names = list(client.scan_iter(match=prefix + "*", count=10_000))
    for start in range(0, len(names), 10_000):
        client.delete(*names[start : start + 10_000])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    prefix = f"bench-migrate-{uuid.uuid4().hex[:8]}:"
    target = f"{args.redis}?prefix={prefix}"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "sessions.db"
        print(f"seeding {args.count:,} sessions into SQLite: {seed(path, args.count):.1f} s")
        source = f"sqlite:///{path}"
        try:
            for label in ("copy", "again (all present)"):
                seconds, report = run(source, target, args.workers)
                rate = report["seen"] / seconds
                print(
                    f"{label}: {seconds:.1f} s, {rate:,.0f} sessions/s "
                    f"(copied {report['copied']:,}, present {report['present']:,}, "
                    f"missing {report['missing']})"
                )
        finally:
            clean(args.redis, prefix)


if __name__ == "__main__":
    main()
