"""Client instructions per request, counted with valgrind's callgrind: a figure that does
not swing between runs the way timings do on a shared machine.

Each route runs the app twice under callgrind, in process through httpx's ASGI transport
on the local Redis (127.0.0.1:6379, a fresh key prefix): 100 warm-up requests then N
measured ones, and 100 warm-up requests alone. The difference divided by N is the cost of
one request, the client's HTTP stack included (compare rows of one run, or of one
``--src`` against another):

    .venv/bin/python benchmarks/bench_instructions.py [--requests 300] [--src path/to/src]

``--src`` measures another checkout's ``src`` (e.g. an export of an older commit) with
this environment's dependencies. ``PYTHONHASHSEED`` is fixed so repeats agree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROUTES = ("read", "write", "login")
KEY = "benchmark-key-0123456789-0123456789-0123"


def serve(route: str, requests: int) -> None:
    """The measured process: warm up, then ``requests`` requests on ``route``."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from satchel import login
    from satchel.asgi import SessionMiddleware

    users = iter(range(10**9))

    async def read(request: Request) -> Response:
        return PlainTextResponse(str(request.session.get("n", 0)))

    async def write(request: Request) -> Response:
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse("ok")

    async def log_in(request: Request) -> Response:
        login(request.session, f"user{next(users)}")  # type: ignore[arg-type]
        return PlainTextResponse("ok")

    handlers = (read, write, log_in)
    routes = [Route(f"/{n}", f, methods=["POST"]) for n, f in zip(ROUTES, handlers, strict=True)]
    app = SessionMiddleware(
        Starlette(routes=routes),
        store=f"redis://127.0.0.1:6379/0?prefix=bench-{uuid.uuid4().hex[:8]}:",
        secret_keys=[KEY],
        csrf=False,
    )

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            first = await c.post("/write")
            cookie = first.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            headers = {} if route == "login" else {"cookie": f"satchel={cookie}"}
            for _ in range(100 + requests):
                c.cookies.clear()
                response = await c.post(f"/{route}", headers=headers)
                assert response.status_code == 200, response.text

    asyncio.run(main())


VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"


def instructions(src: Path, route: str, requests: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(src)}
    result = subprocess.run(  # noqa: S603 - our own command line
        [
            VALGRIND,
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--serve",
            route,
            "--requests",
            str(requests),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match is not None, result.stderr[-2000:]
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    parser.add_argument("--serve", choices=ROUTES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.requests)
        return
    print(f"k instructions per request, satchel + Redis, src={args.src}")
    for route in ROUTES:
        base = instructions(args.src, route, 0)
        total = instructions(args.src, route, args.requests)
        print(f"{route:6} {(total - base) / args.requests / 1000:8.0f}")


if __name__ == "__main__":
    main()
