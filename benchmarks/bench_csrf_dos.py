"""What one crafted multipart POST costs a real server, and whether a GET waits for it.

Starts uvicorn in a subprocess (a satchel-wrapped Starlette app on a MemoryStore, CSRF on)
on a free loopback port, then over real HTTP, for each attack body:

- ``attack``: the time of one attack POST, alone (answered 403: no token found);
- ``get during``: the time of a GET sent while ``--parallel`` attack POSTs are in flight.

The bodies are just under ``satchel.csrf.MAX_FORM_BYTES``: ``disposition_params`` is one
part whose ``Content-Disposition`` carries ~125,000 parameters; ``tiny_parts`` is ~19,000
parts of a few bytes. Prints seconds (median of ``--rounds``).

    .venv/bin/python benchmarks/bench_csrf_dos.py [--rounds 3] [--parallel 2] [--size 1000000]
        [--delay 0.1]  # seconds between starting the attack POSTs and sending the GET

To measure another version of satchel, put its ``src`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

KEY = "benchmark-key-0123456789-0123456789-0123"
BOUNDARY = "satchel-attack-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def disposition_params(size: int) -> bytes:
    params = "".join(f"; p{i}=v" for i in range(size // 8))
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"'
    tail = f"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    return (head + params[: size - len(head) - len(tail)] + tail).encode()


def tiny_parts(size: int) -> bytes:
    part = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n".encode()
    end = f"--{BOUNDARY}--\r\n".encode()
    return part * ((size - len(end)) // len(part)) + end


ATTACKS: dict[str, Callable[[int], bytes]] = {
    "disposition_params": disposition_params,
    "tiny_parts": tiny_parts,
}


def make_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from satchel import MemoryStore
    from satchel.asgi import SessionMiddleware

    async def page(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route("/", page), Route("/form", page, methods=["POST"])]
    return SessionMiddleware(Starlette(routes=routes), store=MemoryStore(), secret_keys=[KEY])


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(), host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])  # noqa: S603
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("uvicorn did not start")


def attack_once(base: str, body: bytes) -> float:
    with httpx.Client(base_url=base, timeout=600) as client:
        start = time.perf_counter()
        response = client.post("/form", content=body, headers={"content-type": MULTIPART})
        elapsed = time.perf_counter() - start
    assert response.status_code == 403, response.status_code
    return elapsed


def get_during(base: str, body: bytes, parallel: int, delay: float) -> float:
    attackers = [threading.Thread(target=attack_once, args=(base, body)) for _ in range(parallel)]
    for thread in attackers:
        thread.start()
    time.sleep(delay)  # the attack bodies are on their way or being parsed
    with httpx.Client(base_url=base, timeout=600) as client:
        start = time.perf_counter()
        assert client.get("/").status_code == 200
        elapsed = time.perf_counter() - start
    for thread in attackers:
        thread.join()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds before the GET")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    import satchel

    process, base = start_server()
    print(f"satchel from {satchel.__file__}; body {args.size} bytes; median of {args.rounds}")
    try:
        httpx.get(base)  # warm up
        for name, make in ATTACKS.items():
            body = make(args.size)
            attack = [attack_once(base, body) for _ in range(args.rounds)]
            during = [get_during(base, body, args.parallel, args.delay) for _ in range(args.rounds)]
            print(
                f"{name:20} attack {statistics.median(attack):8.3f} s   "
                f"GET during {args.parallel} attacks {statistics.median(during):8.3f} s"
            )
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
