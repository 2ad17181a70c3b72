"""The benchmark commands of issue 12 still run and print their tables (docs/performance.md,
"Measuring"): a benchmark that crashes is found here, not by the next person measuring.

Each runs once, as short as it goes (a few requests, one repeat): the figures mean
nothing, only that every part runs and every table and target row is printed. Speed
itself is never asserted here (timings on this machine swing by 1.5x)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .services import unavailable

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
APPS = ["bare", "passthrough", "floor", "starlette-cookie", "starsessions", "satchel"]

pytestmark = pytest.mark.slow


def run(script: str, *args: str, redis_url: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--redis", redis_url, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def target_rows(output: str) -> dict[str, str]:
    """The "Targets of issue 12" table: each target's verdict."""
    section = output.split("## Targets of issue 12", 1)[1]
    rows = re.findall(r"^\| (.+?) \| .+? \| .+? \| (met|missed|n/a) \|$", section, re.M)
    return dict(rows)


def test_the_instruction_count_table_runs_with_one_command(redis_url: str) -> None:
    """``make bench-instructions``, its callgrind part: the bare app and satchel counted
    under valgrind, side by side, and the anonymous target's verdict from them."""
    if shutil.which("valgrind") is None:
        unavailable("valgrind (apt-get install valgrind)")
    output = run(
        "bench_table.py",
        *("--only", "bare", "--only", "satchel-redis"),
        *("--requests", "3", "--warmup", "2", "--repeats", "1"),
        *("--native-repeats", "1", "--native-requests", "20"),
        redis_url=redis_url,
    )
    assert "## 1. Client CPU" in output
    assert re.search(r"^\| satchel \+ Redis \| \d+ \| \d+ \| \d+ \| \d+ \|$", output, re.M), output
    assert target_rows(output)["satchel + Redis anonymous - bare"] != "n/a", output


def test_the_redis_tables_and_targets_of_every_peer(redis_url: str) -> None:
    """The same command's other parts for every ASGI app against the peers (without
    callgrind, which the test above runs): Redis CPU and commands, memory, wall clock, and
    a verdict for each Redis target."""
    output = run(
        "bench_table.py",
        "--skip-callgrind",
        *("--only", ",".join(APPS)),
        *("--native-repeats", "1", "--native-requests", "20"),
        redis_url=redis_url,
    )
    for heading in ("## 2. Redis server CPU", "## 3. Redis memory", "## 4. Wall clock"):
        assert heading in output
    verdicts = target_rows(output)
    for target in (
        "Redis CPU, satchel read / floor",
        "Redis CPU, satchel write / floor",
        "Redis bytes per session, satchel / starsessions",
    ):
        assert verdicts[target] != "n/a", output
    assert re.search(
        r"^\| satchel \+ Redis \| [\d,]+ \| [\d.]+x \| s:.+ listpack \d+, u:.+$", output, re.M
    )
    assert "removed" in output  # its keys cleaned up


def test_the_http_benchmark_runs_with_one_command(redis_url: str) -> None:
    """``make bench-http``: the apps under uvicorn driven by wrk, on one shared session and
    on several in turn, every request answered 2xx."""
    if shutil.which("wrk") is None:
        unavailable("wrk (apt-get install wrk)")
    for scenarios, sessions in (("read,write", "5"), ("write", "1")):
        output = run(
            "bench_http.py",
            *("--only", "satchel-redis", "--only", "floor"),
            *("--scenarios", scenarios, "--rounds", "1", "--duration", "1"),
            *("--warmup", "0", "--connections", "4", "--sessions", sessions),
            redis_url=redis_url,
        )
        rows = re.findall(
            r"^\| (satchel-redis|floor) \| (read|write) \| ([\d,]+) .*$", output, re.M
        )
        assert len(rows) == 2 * len(scenarios.split(",")), output
        assert all(int(rps.replace(",", "")) > 0 for _, _, rps in rows), output
        assert "| errors |" in output
        assert "non-2xx" not in output, output
