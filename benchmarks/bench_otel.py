"""What satchel's OpenTelemetry instrumentation costs per request (docs/observability.md).

One WSGI request that loads its session and writes one key on ``memory://`` (two store
calls: a load and an update), called in process, in each mode:

* ``off``: ``instrument()`` never called (the default);
* ``noop``: ``instrument()`` with opentelemetry-api and no SDK set up (no-op providers);
* ``metrics``: the SDK's MeterProvider (an in-memory reader), no spans;
* ``sdk``: the SDK's MeterProvider and TracerProvider (spans made, none exported).

    .venv/bin/python benchmarks/bench_otel.py [--requests 5000]     # CPU microseconds
    .venv/bin/python benchmarks/bench_otel.py --callgrind           # instructions, exact

``--callgrind`` runs each mode under valgrind twice (100 and 600 requests) and prints the
difference over 500: the instructions of one request, start-up excluded. Compare ``off``
with a checkout before the instrumentation point existed by running the same command with
``PYTHONPATH=<that checkout>/src``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

MODES = ("off", "noop", "metrics", "sdk")


def _instrument(mode: str) -> None:
    if mode == "off":
        return
    from satchel.integrations.opentelemetry import instrument

    if mode == "noop":
        instrument()  # opentelemetry-api alone: the API's no-op providers
        return
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracers = TracerProvider() if mode == "sdk" else trace.NoOpTracerProvider()
    instrument(meter_provider=meters, tracer_provider=tracers)


def _requester() -> Callable[[], None]:
    from satchel.wsgi import SessionMiddleware

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["satchel.session"]
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    middleware = SessionMiddleware(app, "memory://", secret_keys=["benchmark-key-" + "0" * 30])
    cookie: list[str] = []

    def request() -> None:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "bench",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "https",
        }
        if cookie:
            environ["HTTP_COOKIE"] = cookie[0]
        headers: list[tuple[str, str]] = []

        def start_response(status: str, sent: list[tuple[str, str]], *exc: Any) -> Any:
            headers.extend(sent)

        body = middleware(environ, start_response)
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()
        for name, value in headers:
            if name.lower() == "set-cookie" and value.startswith("satchel="):
                cookie[:] = [value.split(";", 1)[0]]

    return request


def run(mode: str, requests: int) -> float:
    """CPU microseconds per request in ``mode`` (this process's CPU time, so a busy
    machine inflates it less), after one request that makes the session."""
    _instrument(mode)
    request = _requester()
    request()
    start = time.process_time()
    for _ in range(requests):
        request()
    return (time.process_time() - start) / requests * 1e6


def _instructions(mode: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = [
            shutil.which("valgrind") or "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--requests",
            str(requests),
        ]
        done = subprocess.run(  # noqa: S603 - our own command line
            command,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, help="run one mode in this process")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    args = parser.parse_args()
    if args.mode:
        print(f"{args.mode}: {run(args.mode, args.requests):.1f} us/request")
        return
    for mode in MODES:
        if args.callgrind:
            per = (_instructions(mode, 600) - _instructions(mode, 100)) / 500
            print(f"{mode:8} {per / 1000:8.1f}k instructions/request")
        else:
            command = [sys.executable, __file__, "--mode", mode, "--requests", str(args.requests)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
            print(done.stdout, end="")


if __name__ == "__main__":
    main()
