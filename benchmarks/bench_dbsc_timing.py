"""Does the DBSC refresh endpoint's time tell an attacker anything? (issue 13: "uniform
timing on the refresh endpoint").

One bound session on the memory store, the app called in process (no network). For each
way a refresh can be wrong, many requests, and the median and 90th percentile of their
time: the cases a prober could tell apart only by timing must not differ (an identifier
wrong in its first character against one wrong in its last; a proof by another key against
a malformed proof). The answers that differ anyway (a challenge, a new bound cookie) are
shown for scale.

    .venv/bin/python benchmarks/bench_dbsc_timing.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dbsc_device import Device, challenge_of, registration_offer

import satchel
from satchel.asgi import SessionMiddleware
from satchel.dbsc.proof import thumbprint

KEY = "bench-key-0123456789-0123456789-0123456789"
REFRESH = "/.satchel/dbsc/refresh"


async def login(request: Request) -> Response:
    session = request.session
    assert isinstance(session, satchel.Session)
    satchel.login(session, "alice")
    return PlainTextResponse("ok")


def _flip(text: str, at: int) -> str:
    swapped = "A" if text[at] != "A" else "B"
    return text[:at] + swapped + text[at + 1 :]


async def main(requests: int) -> None:
    logging.getLogger("satchel").setLevel(logging.ERROR)  # (each refusal is logged)
    app = SessionMiddleware(
        Starlette(routes=[Route("/login", login)]),
        store="memory://",
        secret_keys=[KEY],
        dbsc=True,
        dbsc_cookie_lifetime=600,
    )
    device, thief = Device(), Device()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        offer = (await c.get("/login")).headers["secure-session-registration"]
        path, challenge = registration_offer(offer)
        bound = await c.post(
            path, headers={"secure-session-response": device.proof(challenge, with_jwk=True)}
        )
        assert bound.status_code == 200, bound.text
        key_id = thumbprint(device.jwk)
        first = await c.post(REFRESH, headers={"sec-secure-session-id": key_id})
        fresh, _ = challenge_of(first.headers["secure-session-challenge"])

        def refresh(identifier: str, proof: str | None = None) -> dict[str, str]:
            headers = {"sec-secure-session-id": identifier}
            if proof is not None:
                headers["secure-session-response"] = proof
            return headers

        cases: dict[str, dict[str, str]] = {
            "identifier wrong in its first character": refresh(_flip(key_id, 0)),
            "identifier wrong in its last character": refresh(_flip(key_id, -1)),
            "identifier of another length": refresh(key_id[:-4]),
            "the right key, challenge wrong in its first character": refresh(
                key_id, device.proof(_flip(fresh, 0))
            ),
            "the right key, challenge wrong near its end": refresh(
                key_id, device.proof(_flip(fresh, -2))
            ),
            "proof signed by another key": refresh(key_id, thief.proof(fresh)),
            "malformed proof": refresh(key_id, "x.y.z"),
            "(for scale) the right identifier, no proof: a challenge": refresh(key_id),
        }
        rows: list[tuple[str, int, float, float]] = []
        for name, headers in cases.items():
            times: list[float] = []
            status = 0
            for _ in range(requests):
                start = time.perf_counter()
                response = await c.post(REFRESH, headers=headers)
                times.append(time.perf_counter() - start)
                status = response.status_code
            times.sort()
            rows.append((name, status, statistics.median(times), times[int(len(times) * 0.9)]))
    print(f"| refresh request ({requests} each) | status | median µs | p90 µs |")
    print("|---|---|---|---|")
    for name, status, median, p90 in rows:
        print(f"| {name} | {status} | {median * 1e6:,.0f} | {p90 * 1e6:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args: Any = parser.parse_args()
    asyncio.run(main(args.requests))
