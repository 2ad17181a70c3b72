"""``python -m reliability [--short] [--only NAME ...]``: run the scenarios, print the
table, exit 1 on any FAIL (a lost acknowledged write, a response a scenario forbids, a
crash of the harness or a server), or on a skipped row under CI."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from .context import FULL, SHORT, Context, in_ci
from .results import FAIL, SKIP, Row, table
from .scenarios import SCENARIOS


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(names: list[str], short: bool, keep: bool) -> tuple[list[Row], float]:
    mode = SHORT if short else FULL
    rows: list[Row] = []
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="satchel-reliability-"))
    with ExitStack() as stack:
        if not keep:
            stack.callback(_remove_tree, workdir)
        ctx = Context(mode, stack, workdir)
        for name in names:
            print(f"-- {name} ({mode.name})", file=sys.stderr, flush=True)
            with ExitStack() as scenario_stack:  # each scenario's servers stop after it
                ctx.stack = scenario_stack
                try:
                    new = SCENARIOS[name](ctx)
                except Exception as exc:
                    traceback.print_exc()
                    new = [Row(name, "(harness)", FAIL, notes=f"crashed: {exc!r}"[:300])]
                finally:
                    ctx.stack = stack
            for row in new:
                print(
                    f"   {row.verdict:4} {row.target:42} {row.requests:8,} req "
                    f"lost {row.lost_writes}/{row.acked} {row.notes}",
                    file=sys.stderr,
                    flush=True,
                )
            rows += new
    return rows, time.monotonic() - began


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI mode: 20 clients x 5 s")
    parser.add_argument(
        "--only", action="append", default=[], help=f"scenarios, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    names = [n for n in SCENARIOS if not args.only or n in args.only]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        sys.exit(f"unknown scenarios: {sorted(unknown)}")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    load = os.getloadavg()[0]
    rows, elapsed = run(names, args.short, args.keep)
    mode = SHORT if args.short else FULL
    print(
        f"\nsatchel reliability, {mode.name} mode: {mode.clients} clients x {mode.duration:g} s "
        f"per load run; {os.cpu_count()} CPUs, load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"{elapsed:.0f} s in all\n"
    )
    print(table(rows))
    failed = [r for r in rows if r.verdict == FAIL or (r.verdict == SKIP and in_ci())]
    if failed:
        print(f"\n{len(failed)} rows failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: servers stopped, keys and tables removed")
