"""Requests per second over real HTTP (issue 12), with one command:

    make bench-http                # or: .venv/bin/python benchmarks/bench_http.py

Every app of benchmarks/bench_apps.py runs in its own server process on 127.0.0.1 (a free
port): the ASGI apps under uvicorn (one worker, ``--http h11`` by default, ``--loop
asyncio``, no access log), the WSGI (Flask) apps under gunicorn (one ``gthread`` worker with
``--wsgi-threads`` threads by default; ``--wsgi-worker sync`` for the sync worker). ``wrk``
(Debian's package) drives each route on keep-alive connections with fixed threads,
connections and duration, and ``--latency`` gives the percentiles.

- ``read`` and ``write`` send one live session cookie on every request (wrk's ``-H
  'Cookie: ...'``; the cookie comes from one ``GET /write`` made before the run), so all
  connections share one session, as concurrent tabs of one user would; with ``--sessions
  N`` they cycle through N sessions instead (a wrk script; each started by a ``GET
  /write``), as N users would, and a write rarely meets another on its session;
- ``anonymous`` and ``login`` send no cookie (a login starts a new session and a new user
  on every request).

All servers start first and warm up (``--warmup`` seconds of wrk per route). Then each
round runs every scenario on every app back to back (the app order rotates by round), so
the apps of one scenario are measured within seconds of one another: the ratios to
starsessions and to the floor are taken within a round, and the table gives their median
over the rounds (and the range of the requests per second). The machine is shared, so only
ratios of one run mean much. Redis keys go under a fresh prefix, deleted at the end; every
process started here is stopped at the end, on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apps import APPS, ENV_APP, ENV_PREFIX, ENV_REDIS_URL, SCENARIOS
from bench_apps import chosen as chosen_apps

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
REDIS_URL = "redis://127.0.0.1:6379/0"
WRK = shutil.which("wrk") or "/usr/bin/wrk"  # Debian's package
REFERENCES = ("starsessions", "floor")  # the ratio columns
COOKIE_SCENARIOS = ("read", "write")


# Servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(name: str, port: int, args: argparse.Namespace) -> list[str]:
    if APPS[name].kind == "asgi":
        return [
            sys.executable, "-m", "uvicorn", "--factory", "bench_apps:from_env",
            "--host", HOST, "--port", str(port), "--workers", "1",
            "--http", args.http, "--loop", "asyncio",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}",
        "--workers", "1", "--worker-class", args.wsgi_worker,
        "--threads", str(args.wsgi_threads if args.wsgi_worker == "gthread" else 1),
        "--log-level", "warning", "--chdir", str(HERE), "bench_apps:from_env()",
    ]  # fmt: skip


@dataclass
class Server:
    """One app in its own server process (its own process group, so that gunicorn's worker
    stops with its master)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    cookie: str | None = None
    script: str | None = None  # a wrk script cycling through several sessions' cookies

    @classmethod
    def start(cls, name: str, prefix: str, args: argparse.Namespace) -> Server:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(HERE), PYTHONHASHSEED="0")
        env.update({ENV_APP: name, ENV_REDIS_URL: args.redis, ENV_PREFIX: prefix})
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        process = subprocess.Popen(  # noqa: S603 - our own command line
            server_command(name, port, args),
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return cls(name, port, process, log)

    def url(self, scenario: str) -> str:
        return f"http://{HOST}:{self.port}/{scenario}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name}: server exited ({self.process.returncode}):\n" + self.output()
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            try:
                self.get("anonymous")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: no answer on port {self.port}") from None
                time.sleep(0.1)

    def get(self, scenario: str) -> list[str]:
        """One GET; the response's Set-Cookie headers."""
        with urllib.request.urlopen(self.url(scenario), timeout=5) as response:  # noqa: S310
            assert response.status == 200, (self.name, scenario, response.status)
            response.read()
            return response.headers.get_all("set-cookie") or []

    def start_session(self) -> None:
        """The Cookie header of a live session: the one that a ``GET /write`` starts."""
        self.cookie = self.new_cookie()

    def new_cookie(self) -> str | None:
        pairs = [value.split(";", 1)[0] for value in self.get("write")]
        return "; ".join(pairs) or None

    def start_sessions(self, count: int, directory: str) -> None:
        """A wrk script sending the cookies of ``count`` live sessions in turn."""
        cookies = [self.new_cookie() or "" for _ in range(count)]
        path = Path(directory) / f"{self.name}.lua"
        listed = ",\n".join(f"  {json.dumps(cookie)}" for cookie in cookies)
        path.write_text(
            f"local cookies = {{\n{listed}\n}}\nlocal i = 0\n"
            "request = function()\n  i = i % #cookies + 1\n"
            "  return wrk.format(nil, nil, {Cookie = cookies[i]})\nend\n"
        )
        self.script = str(path)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes so far (gunicorn's worker too)."""
        return sum(process_cpu(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.log.close()


TICK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (Linux)."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        for child in children:
            tree += process_tree(int(child))
    return tree


def process_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


@contextmanager
def servers(names: list[str], prefix: str, args: argparse.Namespace) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for index, name in enumerate(names):
            started.append(Server.start(name, f"{prefix}{index:02d}:", args))
        for server in started:
            server.wait_ready()
            server.start_session()
            if args.sessions > 1:
                server.start_sessions(args.sessions, args.scripts)
        yield started
    finally:
        for server in started:
            server.stop()


# wrk -------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: dict[str, int] = field(default_factory=dict)
    cpu_us: float = 0.0  # the server's CPU time per request


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> Result:
    """Requests/sec, the 50th and 99th latency percentiles, and any errors of wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    percentiles = {
        p: float(value) * UNITS_MS[unit]
        for p, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    if rps is None or total is None or "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    errors: dict[str, int] = {}
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        kinds = ("connect", "read", "write", "timeout")
        errors.update({k: int(v) for k, v in zip(kinds, sockets.groups(), strict=True)})
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors["non-2xx"] = int(non_2xx.group(1))
    errors = {k: v for k, v in errors.items() if v}
    return Result(
        float(rps.group(1)), percentiles["50"], percentiles["99"], int(total.group(1)), errors
    )


def wrk(server: Server, scenario: str, seconds: int, args: argparse.Namespace) -> Result:
    command = [
        WRK, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
        "--timeout", "10s", "--latency",
    ]  # fmt: skip
    if scenario in COOKIE_SCENARIOS and server.script:
        command += ["-s", server.script]
    elif scenario in COOKIE_SCENARIOS and server.cookie:
        command += ["-H", f"Cookie: {server.cookie}"]
    command.append(server.url(scenario))
    cpu = server.cpu_seconds()
    done = subprocess.run(  # noqa: S603 - our own command line
        command, capture_output=True, text=True, check=False
    )
    server.check()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed on {server.name} {scenario}:\n{done.stdout}{done.stderr}")
    result = parse_wrk(done.stdout)
    result.cpu_us = (server.cpu_seconds() - cpu) * 1e6 / max(result.requests, 1)
    return result


# The table -------------------------------------------------------------------------------

Runs = dict[tuple[str, str], list[Result]]  # (app, scenario) -> one result per round


def span(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    middle = f"{statistics.median(values):,.{digits}f}"
    return middle if len(values) == 1 else f"{middle} ({low:,.{digits}f}-{high:,.{digits}f})"


def ratios(runs: Runs, app: str, reference: str, scenario: str) -> list[float]:
    """This app's requests per second over the reference's, round by round."""
    mine, theirs = runs.get((app, scenario), []), runs.get((reference, scenario), [])
    return [a.rps / b.rps for a, b in zip(mine, theirs, strict=False) if b.rps]


def report(runs: Runs, names: list[str], scenarios: list[str]) -> str:
    references = [r for r in REFERENCES if r in names]
    header = ["app", "scenario", "req/s median (range)", "p50 ms", "p99 ms", "server CPU us/req"]
    header += [f"x {r}" for r in references] + ["errors"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for app in names:
        for scenario in scenarios:
            results = runs.get((app, scenario), [])
            if not results:
                continue
            row = [
                app,
                scenario,
                span([r.rps for r in results], 0),
                f"{statistics.median(r.p50_ms for r in results):.1f}",
                f"{statistics.median(r.p99_ms for r in results):.1f}",
                f"{statistics.median(r.cpu_us for r in results):,.0f}",
            ]
            for reference in references:
                values = ratios(runs, app, reference, scenario)
                row.append(span(values, 2) if values and app != reference else "")
            errors: dict[str, int] = {}
            for result in results:
                for kind, count in result.errors.items():
                    errors[kind] = errors.get(kind, 0) + count
            row.append(", ".join(f"{k} {v}" for k, v in errors.items()))
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- {app}: {APPS[app].label}" for app in names]
    return "\n".join(lines)


def cpu_ratios(runs: Runs, app: str, reference: str, scenario: str) -> list[float]:
    """The reference's server CPU per request over this app's, round by round: the ratio of
    requests per second that a server with a core of its own would reach."""
    mine, theirs = runs.get((app, scenario), []), runs.get((reference, scenario), [])
    return [b.cpu_us / a.cpu_us for a, b in zip(mine, theirs, strict=False) if a.cpu_us]


def targets(runs: Runs) -> str:
    """The issue's bar: satchel + Redis at least 1x starsessions and 0.85x the floor, in
    requests per second; the same ratio in server CPU per request alongside, which a shared
    machine disturbs less."""
    lines = []
    for scenario in COOKIE_SCENARIOS:
        for reference, bound in (("starsessions", 1.0), ("floor", 0.85)):
            values = ratios(runs, "satchel-redis", reference, scenario)
            if values:
                median = statistics.median(values)
                verdict = "met" if median >= bound else "NOT met"
                by_cpu = cpu_ratios(runs, "satchel-redis", reference, scenario)
                lines.append(
                    f"- satchel + Redis {scenario} / {reference}: {span(values, 2)} "
                    f"(target >= {bound:g}): {verdict}; by server CPU per request "
                    f"{span(by_cpu, 2)}"
                )
    return "\n".join(lines)


# Running ---------------------------------------------------------------------------------


def clean(redis_url: str, prefix: str) -> int:
    import redis

    control = redis.Redis.from_url(redis_url)
    removed, batch = 0, []
    for key in control.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) == 500:
            removed += int(control.unlink(*batch))
            batch = []
    if batch:
        removed += int(control.unlink(*batch))
    control.close()
    return removed


def installed(name: str) -> bool:
    import importlib.util

    modules = {"starsessions": "starsessions", "flask-session": "flask_session"}
    module = modules.get(name, "flask" if name.startswith("flask") else "starlette")
    server = "uvicorn" if APPS[name].kind == "asgi" else "gunicorn"
    return all(importlib.util.find_spec(m) is not None for m in (module, server))


def measure(
    started: list[Server], scenarios: list[str], args: argparse.Namespace, runs: Runs
) -> None:
    if args.warmup > 0:
        for server in started:
            for scenario in scenarios:
                wrk(server, scenario, args.warmup, args)
    for round_ in range(args.rounds):
        order = started[round_ % len(started) :] + started[: round_ % len(started)]
        for scenario in scenarios:
            for server in order:
                result = wrk(server, scenario, args.duration, args)
                runs.setdefault((server.name, scenario), []).append(result)
                print(
                    f"  round {round_ + 1} {scenario:9} {server.name:16} {result.rps:9,.0f} "
                    f"req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"server CPU {result.cpu_us:5.0f} us/req"
                    + (f"  {result.errors}" if result.errors else ""),
                    file=sys.stderr,
                    flush=True,
                )


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="apps (a name, or a word of names), comma-separated or repeated: " + ", ".join(APPS),
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds per route, once")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="read and write cycle through this many sessions (default: one, shared)",
    )
    parser.add_argument(
        "--http",
        choices=("h11", "httptools"),
        default="h11",
        help="uvicorn's HTTP parser (httptools must be installed)",
    )
    parser.add_argument("--wsgi-worker", choices=("gthread", "sync"), default="gthread")
    parser.add_argument("--wsgi-threads", type=int, default=4, help="gthread threads")
    parser.add_argument("--redis", default=REDIS_URL)
    args = parser.parse_args()

    if not Path(WRK).exists():
        sys.exit("wrk is missing: apt-get install wrk")
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenarios: {sorted(unknown)}")
    chosen = chosen_apps(args.only)
    names = [n for n in chosen if installed(n)]
    skipped = sorted(set(chosen) - set(names))
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    prefix = f"satchel-bench-http-{uuid.uuid4().hex[:8]}:"
    runs: Runs = {}
    began, load = time.monotonic(), os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as scripts:
            args.scripts = scripts
            with servers(names, prefix, args) as started:
                measure(started, scenarios, args, runs)
    finally:
        removed = clean(args.redis, prefix)
    elapsed = time.monotonic() - began

    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
        + (
            f"read and write cycling through {args.sessions} sessions, "
            if args.sessions > 1
            else "read and write on one shared session, "
        )
        + f"{args.rounds} rounds; uvicorn 1 worker --http {args.http} --loop asyncio; "
        f"gunicorn 1 {args.wsgi_worker} worker"
        + (f" x {args.wsgi_threads} threads" if args.wsgi_worker == "gthread" else "")
        + f"; {os.cpu_count()} CPUs, load {load[0]:.1f} -> {os.getloadavg()[0]:.1f}\n"
    )
    print(report(runs, names, scenarios))
    verdicts = targets(runs)
    if verdicts:
        print("\n" + verdicts)
    if skipped:
        print(f"\nskipped (not installed): {', '.join(skipped)}")
    print(f"\n<!-- {elapsed:.0f} s; removed {removed} benchmark keys under {prefix} -->")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: servers stopped, benchmark keys removed")
