"""The performance tables of issue 12, for the current code, with one command:

    make bench-instructions        # or: .venv/bin/python benchmarks/bench_table.py

1. Client instructions per request (thousands), counted with valgrind's callgrind: each app
   runs in its own process under ``valgrind --tool=callgrind``; for each scenario the
   process makes the warm-up requests, then this script runs ``callgrind_control --zero
   PID``, the process makes the measured requests, and ``callgrind_control --dump PID``
   closes the window. The count of an empty window (no request) is subtracted, and the
   rest divided by the number of requests. ``PYTHONHASHSEED`` is fixed so repeats agree.
2. Redis server CPU per request (native run, not under valgrind): ``CONFIG RESETSTAT``,
   the measured requests, then the change in ``INFO cpu`` (used_cpu_user + used_cpu_sys),
   the minimum of three repetitions; ``INFO commandstats`` says which commands ran.
3. Redis memory of one small logged-in session (a user ID and a counter): ``MEMORY USAGE``
   of every key that a login plus one write creates.
4. Wall-clock medians per request from the native run of part 2 (noisy: a shared machine).

Apps and routes: benchmarks/bench_apps.py. Redis keys go under a fresh prefix, removed at
the end. Options: ``--requests`` (measured, default 200), ``--warmup`` (100), ``--repeats``
(callgrind runs per app, default 2: the table shows the first and the largest spread),
``--only`` (apps whose name contains a word), ``--jobs`` (callgrind processes at once).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apps import APPS, SCENARIOS, asgi_scope, build, chosen

EMPTY = "empty"  # a measured window without requests: the handshake's own cost
SIGNAL = "@@bench "  # how the measured process talks to this script on stdout
REDIS_URL = "redis://127.0.0.1:6379/0"
Counts = dict[str, float]


# Driving an app ----------------------------------------------------------------------------


class Driver:
    """Sends the scenarios' requests to one app in process (ASGI or WSGI alike).

    By default a request is a direct call of the app (an ASGI scope or a WSGI environ
    built here, the response's headers collected), so the counts are the app's own, as
    the issue's targets define them; ``via_httpx`` sends it through httpx's
    ``ASGITransport`` / ``WSGITransport`` instead, which adds about a million
    instructions of client stack (and Set-Cookie parsing into httpx's jar) per request.
    """

    def __init__(self, name: str, redis_url: str, prefix: str, via_httpx: bool = False) -> None:
        self.app, self.close_app = build(name, redis_url, prefix)
        self.asgi = APPS[name].kind == "asgi"
        self.via_httpx = via_httpx
        self.async_client: Any = None
        self.client: Any = None
        if via_httpx:
            import httpx

            base = "https://testserver"
            if self.asgi:
                transport = httpx.ASGITransport(app=self.app)
                self.async_client = httpx.AsyncClient(transport=transport, base_url=base)
            else:
                wsgi = httpx.WSGITransport(app=self.app)
                self.client = httpx.Client(transport=wsgi, base_url=base)

    async def request(self, path: str, cookie: str | None) -> list[tuple[str, str]]:
        """One GET; returns the response's headers (lower-case names)."""
        if self.via_httpx:
            headers = {"cookie": cookie} if cookie else {}
            client = self.async_client or self.client
            client.cookies.clear()
            sent = client.get(path, headers=headers)
            response = await sent if self.asgi else sent
            status, pairs = response.status_code, list(response.headers.multi_items())
        elif self.asgi:
            status, pairs = await call_asgi(self.app, path, cookie)
        else:
            status, pairs = call_wsgi(self.app, path, cookie)
        assert status == 200, (path, status)
        return pairs

    async def live_cookie(self, path: str = "/write", cookie: str | None = None) -> str | None:
        """The Cookie header of the session that a request to ``path`` starts."""
        headers = await self.request(path, cookie)
        pairs = [v.split(";", 1)[0] for k, v in headers if k == "set-cookie"]
        return "; ".join(pairs) or None

    async def scenario(self, name: str, requests: int, cookie: str | None) -> list[float]:
        """``requests`` requests of scenario ``name``; the seconds each took."""
        path, sent = f"/{name}", cookie if name in ("read", "write") else None
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            await self.request(path, sent)
            times.append(time.perf_counter() - start)
        return times

    async def close(self) -> None:
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.client is not None:
            self.client.close()
        await self.close_app()


async def call_asgi(app: Any, path: str, cookie: str | None) -> tuple[int, list[tuple[str, str]]]:
    scope = asgi_scope(path, cookie)
    status = 0
    pairs: list[tuple[str, str]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            pairs.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])

    await app(scope, receive, send)
    return status, pairs


def call_wsgi(app: Any, path: str, cookie: str | None) -> tuple[int, list[tuple[str, str]]]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "HTTP_USER_AGENT": "bench/1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [int(status.split(" ", 1)[0]), [(k.lower(), v) for k, v in headers]]
        return lambda data: None

    body = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return started[0], started[1]


def signal(message: str) -> None:
    """Tell the parent where we are, then wait for its go-ahead (it zeroes or dumps the
    counters meanwhile)."""
    sys.stdout.write(SIGNAL + message + "\n")
    sys.stdout.flush()
    sys.stdin.readline()


def quiet_heap() -> None:
    """Collect, then freeze what is left: a full collection of the imported modules' objects
    would otherwise land in some measured windows and not others (millions of
    instructions, depending on where the allocation counts stand). Collections of the
    objects that requests create still run and count."""
    gc.collect()
    gc.freeze()


async def serve(
    name: str, redis_url: str, prefix: str, warmup: int, requests: int, via_httpx: bool
) -> None:
    """The process measured under callgrind: per scenario, warm up, then a window."""
    driver = Driver(name, redis_url, prefix, via_httpx)
    cookie = await driver.live_cookie()
    for scenario in (EMPTY, *SCENARIOS):
        measured = 0 if scenario == EMPTY else requests
        await driver.scenario(scenario if measured else "anonymous", warmup, cookie)
        quiet_heap()
        signal(f"zero {scenario}")
        await driver.scenario(scenario if measured else "anonymous", measured, cookie)
        signal(f"dump {scenario}")
    await driver.close()


# Part 1: instructions under callgrind --------------------------------------------------------


def callgrind_control(*args: str) -> None:
    subprocess.run(  # noqa: S603 - our own command line
        [shutil.which("callgrind_control") or "callgrind_control", *args],
        check=True,
        capture_output=True,
    )


def count_instructions(
    name: str, redis_url: str, prefix: str, warmup: int, requests: int, out: Path, via_httpx: bool
) -> Counts:
    """Thousands of instructions per request of each scenario, in one callgrind process."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--serve",
        name,
        "--redis",
        redis_url,
        "--prefix",
        prefix,
        "--warmup",
        str(warmup),
        "--requests",
        str(requests),
        *(["--httpx"] if via_httpx else []),
    ]
    log = out.with_suffix(".log")
    with (
        log.open("w") as stderr,
        subprocess.Popen(  # noqa: S603 - our own command line
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        assert process.stdin is not None
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith(SIGNAL):
                continue
            action, scenario = line[len(SIGNAL) :].split()
            callgrind_control(
                f"--{action}" + (f"={scenario}" if action == "dump" else ""), str(process.pid)
            )
            process.stdin.write("go\n")
            process.stdin.flush()
        if process.wait() != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{name}: the measured process exited with {process.returncode}\n{tail}"
            )
    totals: dict[str, int] = {}
    for dump in out.parent.glob(out.name + ".*"):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: dump (\S+)", text, re.M)
        summary = re.search(r"^summary: (\d+)", text, re.M)
        if trigger and summary:
            totals[trigger.group(1)] = int(summary.group(1))
    empty = totals.pop(EMPTY)
    return {s: (totals[s] - empty) / requests / 1000 for s in SCENARIOS}


# Parts 2 to 4: native runs against Redis -----------------------------------------------------


def redis_cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_stats(control: Any, requests: int) -> tuple[str, bool]:
    """``get 1x1.1us, set 1x2.3us``: calls per request and microseconds per call; and
    whether the window was clean. Every command of a scenario runs a whole number of times
    per request, so a count that is not a multiple of ``requests`` came from another client
    of the same server (whose CPU time then counts too)."""
    parts = []
    clean = True
    for key, stats in sorted(control.info("commandstats").items()):
        command = key.removeprefix("cmdstat_")
        if command in ("info", "config|resetstat", "config"):
            continue
        clean = clean and stats["calls"] % requests == 0
        calls = stats["calls"] / requests
        parts.append(f"{command} {calls:.2f}x{float(stats['usec_per_call']):.1f}us")
    return ", ".join(parts), clean


async def native(
    names: list[str],
    redis_url: str,
    prefix: str,
    warmup: int,
    requests: int,
    repeats: int,
    via_httpx: bool,
) -> tuple[dict[str, Counts], dict[str, Counts], dict[str, dict[str, str]]]:
    """Redis CPU microseconds per request (min of ``repeats``), wall-clock median
    microseconds per request, and the commands each scenario ran."""
    import redis

    control = redis.Redis.from_url(redis_url)
    cpu: dict[str, Counts] = {}
    wall: dict[str, Counts] = {}
    commands: dict[str, dict[str, str]] = {}
    for name in names:
        driver = Driver(name, redis_url, app_prefix(prefix, "n", name), via_httpx)
        cookie = await driver.live_cookie()
        cpu[name], wall[name], commands[name] = {}, {}, {}
        for scenario in SCENARIOS:
            await driver.scenario(scenario, warmup, cookie)
            quiet_heap()
            times: list[float] = []
            clean_runs: list[float] = []
            dirty_runs: list[float] = []
            for _ in range(repeats * 4):  # up to 4x the tries to get clean windows
                control.config_resetstat()
                before = redis_cpu(control.info("cpu"))
                times += await driver.scenario(scenario, requests, cookie)
                after = redis_cpu(control.info("cpu"))
                stats, clean = command_stats(control, requests)
                (clean_runs if clean else dirty_runs).append((after - before) / requests * 1e6)
                if clean or scenario not in commands[name]:
                    commands[name][scenario] = stats
                if len(clean_runs) == repeats:
                    break
            cpu[name][scenario] = min(clean_runs or dirty_runs)
            if not clean_runs:
                commands[name][scenario] += " (OTHER CLIENTS' COMMANDS IN EVERY WINDOW)"
            wall[name][scenario] = statistics.median(times) * 1e6
        await driver.close()
    control.close()
    return cpu, wall, commands


async def memory_per_session(
    name: str, redis_url: str, prefix: str, via_httpx: bool
) -> tuple[int, list[tuple[str, str, int]]]:
    """Bytes of Redis memory that one logged-in session with a counter takes: a login
    (no cookie), then one write with the cookie it got. Returns the total and, per key,
    its name (prefix removed), encoding and bytes. Key names count in MEMORY USAGE, so
    every app gets a prefix of the same length."""
    import redis

    driver = Driver(name, redis_url, prefix, via_httpx)
    cookie = await driver.live_cookie("/login")
    await driver.request("/write", cookie)
    await driver.close()
    control = redis.Redis.from_url(redis_url)
    keys = []
    for key in sorted(control.scan_iter(match=prefix + "*", count=1000)):
        size = int(control.memory_usage(key, samples=0) or 0)
        encoding = control.object("encoding", key)
        shown = key.decode()[len(prefix) :]
        keys.append((shown[:12] + ("..." if len(shown) > 12 else ""), encoding.decode(), size))
    control.close()
    return sum(size for _, _, size in keys), keys


def clean(redis_url: str, prefix: str) -> int:
    import redis

    control = redis.Redis.from_url(redis_url)
    removed = 0
    for key in control.scan_iter(match=prefix + "*", count=1000):
        removed += int(control.delete(key))
    control.close()
    return removed


# Tables --------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def targets(k: dict[str, Counts], cpu: dict[str, Counts], mem: dict[str, int]) -> str:
    """The issue's targets, each with its measured value (apps not measured: n/a)."""

    def get(app: str, scenario: str, source: dict[str, Counts] = k) -> float | None:
        return source.get(app, {}).get(scenario)

    def layer(app: str, scenario: str) -> float | None:
        value, bare = get(app, scenario), get("bare", scenario)
        return None if value is None or bare is None else value - bare

    def verdict(value: float | None, bound: float) -> str:
        return "n/a" if value is None else ("met" if value <= bound else "missed")

    rows = []
    for scenario in ("read", "write", "login"):
        a, b = get("satchel-redis", scenario), get("floor", scenario)
        value = None if a is None or b is None else a / b
        rows.append(
            [f"satchel + Redis {scenario} / floor", ratio(a, b), "<= 1.25x", verdict(value, 1.25)]
        )
    for app in ("satchel-redis", "satchel-cookie"):
        over = layer(app, "anonymous")
        shown = "n/a" if over is None else f"{over:+.0f}k"
        rows.append([f"{APPS[app].label} anonymous - bare", shown, "<= 5k", verdict(over, 5)])
    for scenario, bound in (("read", 1.0), ("write", 1.0), ("login", 1.2)):
        a, b = layer("satchel-cookie", scenario), layer("starlette-cookie", scenario)
        value = None if a is None or b is None or b == 0 else a / b
        label = f"cookie store layer {scenario} / Starlette's layer"
        rows.append([label, ratio(a, b), f"<= {bound}x", verdict(value, bound)])
    for scenario in ("read", "write"):
        a, b = get("flask-satchel", scenario), get("flask-session", scenario)
        value = None if a is None or b is None else a / b
        rows.append(
            [
                f"Flask + satchel {scenario} / Flask-Session",
                ratio(a, b),
                "<= 1.0x",
                verdict(value, 1.0),
            ]
        )
    for scenario in ("read", "write"):
        a, b = get("satchel-redis", scenario, cpu), get("floor", scenario, cpu)
        value = None if a is None or b is None else a / b
        rows.append(
            [f"Redis CPU, satchel {scenario} / floor", ratio(a, b), "<= 1.5x", verdict(value, 1.5)]
        )
    a2, b2 = mem.get("satchel-redis"), mem.get("starsessions")
    value2 = None if a2 is None or b2 is None else a2 / b2
    rows.append(
        [
            "Redis bytes per session, satchel / starsessions",
            ratio(a2, b2),
            "<= 1.5x",
            verdict(value2, 1.5),
        ]
    )
    return table(["target", "measured", "bound", ""], rows)


def spread(runs: list[dict[str, Counts]]) -> tuple[float, str]:
    """The largest relative difference between repeats of one cell, and which cell."""
    worst, where = 0.0, ""
    for name in runs[0]:
        for scenario in SCENARIOS:
            values = [run[name][scenario] for run in runs]
            gap = (max(values) - min(values)) / min(values) if min(values) > 0 else 0.0
            if gap > worst:
                worst, where = gap, f"{name} {scenario}"
    return worst, where


# Main ----------------------------------------------------------------------------------------


@contextmanager
def timed(what: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    print(f"<!-- {what}: {time.monotonic() - start:.0f} s -->", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="callgrind runs per app")
    parser.add_argument("--native-repeats", type=int, default=3)
    parser.add_argument("--native-requests", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="apps (a name, or a word of names), comma-separated or repeated: " + ", ".join(APPS),
    )
    parser.add_argument("--httpx", action="store_true", help="send requests through httpx")
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--skip-callgrind", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run = serve(args.serve, args.redis, args.prefix, args.warmup, args.requests, args.httpx)
        asyncio.run(run)
        return

    wanted = chosen(args.only)
    names = [n for n in wanted if installed(n)]
    missing = [n for n in wanted if n not in names]
    prefix = f"satchel-bench-{uuid.uuid4().hex[:8]}:"
    try:
        runs: list[dict[str, Counts]] = []
        if not args.skip_callgrind:
            with timed("callgrind"), tempfile.TemporaryDirectory() as tmp:
                runs = run_callgrind(names, args, prefix, Path(tmp))
        redis_names = [n for n in names if APPS[n].redis]
        with timed("native"):
            cpu, wall, commands = asyncio.run(
                native(
                    names,
                    args.redis,
                    prefix,
                    args.warmup,
                    args.native_requests,
                    args.native_repeats,
                    args.httpx,
                )
            )
        mem: dict[str, int] = {}
        keys: dict[str, list[tuple[str, str, int]]] = {}
        for name in redis_names:
            mem[name], keys[name] = asyncio.run(
                memory_per_session(name, args.redis, app_prefix(prefix, "m", name), args.httpx)
            )
    finally:
        removed = clean(args.redis, prefix)
    report(names, runs, cpu, wall, commands, mem, keys, args)
    if missing:
        print(f"\nNot measured (not installed): {', '.join(APPS[n].label for n in missing)}")
    print(f"\n<!-- removed {removed} benchmark keys under {prefix} -->")


def app_prefix(prefix: str, part: str, name: str) -> str:
    """A key prefix of one app in one part of the run, the same length for every app (key
    names count in MEMORY USAGE and in the bytes each command moves)."""
    return f"{prefix}{part}{list(APPS).index(name):02d}:"


def installed(name: str) -> bool:
    module = {"starsessions": "starsessions", "flask-session": "flask_session"}.get(name)
    if name.startswith("flask"):
        module = module or "flask"
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_callgrind(
    names: list[str], args: argparse.Namespace, prefix: str, tmp: Path
) -> list[dict[str, Counts]]:
    jobs = [(rep, name) for rep in range(args.repeats) for name in names]

    def one(job: tuple[int, str]) -> Counts:
        rep, name = job
        return count_instructions(
            name,
            args.redis,
            app_prefix(prefix, f"c{rep}", name),
            args.warmup,
            args.requests,
            tmp / f"{name}-{rep}.out",
            args.httpx,
        )

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one, jobs))
    runs: list[dict[str, Counts]] = [{} for _ in range(args.repeats)]
    for (rep, name), counts in zip(jobs, results, strict=True):
        runs[rep][name] = counts
    return runs


def cells(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f}-{high:,.{digits}f}"


def report(
    names: list[str],
    runs: list[dict[str, Counts]],
    cpu: dict[str, Counts],
    wall: dict[str, Counts],
    commands: dict[str, dict[str, str]],
    mem: dict[str, int],
    keys: dict[str, list[tuple[str, str, int]]],
    args: argparse.Namespace,
) -> None:
    # the fewest instructions of the repeats: the run that waited least for Redis's replies
    k = {n: {s: min(run[n][s] for run in runs) for s in SCENARIOS} for n in names} if runs else {}
    if runs:
        print(
            f"## 1. Client CPU: thousands of instructions per request (callgrind, "
            f"{args.warmup} warm-up + {args.requests} measured requests, {args.repeats} runs)\n"
        )
        rows = [
            [APPS[n].label, *(cells([run[n][s] for run in runs]) for s in SCENARIOS)] for n in names
        ]
        print(table(["app", *SCENARIOS], rows))
        print(
            "\nSession layer (the app minus the bare app of its framework, thousands of "
            "instructions) and, for the ASGI apps on Redis, the app against the floor:\n"
        )
        rows = []
        for n in names:
            bare = "flask-bare" if APPS[n].kind == "wsgi" else "bare"
            row = [APPS[n].label]
            row += [f"{k[n][s] - k[bare][s]:+.0f}" if bare in k else "n/a" for s in SCENARIOS]
            on_redis = APPS[n].redis and APPS[n].kind == "asgi"
            row += [
                ratio(k[n][s], k.get("floor", {}).get(s)) if on_redis else "" for s in SCENARIOS[1:]
            ]
            rows.append(row)
        header = [f"layer: {s}" for s in SCENARIOS] + [f"{s} x floor" for s in SCENARIOS[1:]]
        print(table(["app", *header], rows))
        if len(runs) > 1:
            worst, where = spread(runs)
            over = sum(
                1
                for n in names
                for s in SCENARIOS
                if max(r[n][s] for r in runs) > 1.005 * min(r[n][s] for r in runs)
            )
            print(
                f"\nRepeat agreement: the largest difference between {len(runs)} runs of one "
                f"cell is {worst * 100:.2f}% ({where}); {over} of {len(names) * len(SCENARIOS)} "
                "cells differ by more than 0.5%. The ratios use each cell's lowest count."
            )
    print(
        "\n## 2. Redis server CPU, microseconds per request (INFO cpu user + sys, "
        f"min of {args.native_repeats} native runs of {args.native_requests})\n"
    )
    redis_names = [n for n in names if APPS[n].redis]
    rows = []
    for n in redis_names:
        row = [APPS[n].label, *(f"{cpu[n][s]:.1f}" for s in SCENARIOS)]
        row += [
            ratio(cpu[n]["read"], cpu.get("floor", {}).get("read")),
            ratio(cpu[n]["write"], cpu.get("floor", {}).get("write")),
        ]
        rows.append(row)
    print(table(["app", *SCENARIOS, "read x floor", "write x floor"], rows))
    print("\nINFO commandstats (calls per request x microseconds per call):\n")
    rows = [[APPS[n].label, s, commands[n][s] or "-"] for n in redis_names for s in SCENARIOS[1:]]
    print(table(["app", "scenario", "commands"], rows))
    print("\n## 3. Redis memory of one small logged-in session (user ID + counter), MEMORY USAGE\n")
    rows = [
        [
            APPS[n].label,
            f"{mem[n]:,}",
            ratio(mem[n], mem.get("starsessions")),
            ", ".join(f"{key} {enc} {size}" for key, enc, size in keys[n]),
        ]
        for n in redis_names
    ]
    print(table(["app", "bytes", "x starsessions", "keys (encoding, bytes)"], rows))
    print(
        "\n## 4. Wall clock, median microseconds per request (NOISY: a shared machine; "
        "compare rows of one run only)\n"
    )
    rows = [[APPS[n].label, *(f"{wall[n][s]:.0f}" for s in SCENARIOS)] for n in names]
    print(table(["app", *SCENARIOS], rows))
    print("\n## Targets of issue 12\n")
    print(targets(k, cpu, mem))


if __name__ == "__main__":
    main()
