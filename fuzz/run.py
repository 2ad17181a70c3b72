"""Run the fuzz targets of ``fuzz/targets.py`` with atheris (libFuzzer for Python).

    python fuzz/run.py --seconds 30                  # every target, 30 s each
    python fuzz/run.py --seconds 600 cookie_store    # one target, the long run
    python fuzz/run.py --list

Each target runs in its own process (libFuzzer exits when it is done), with satchel's
modules instrumented for coverage, starting from its seed corpus ``fuzz/corpus/<target>/``.
New inputs the fuzzer finds go to a scratch directory (``--keep-corpus DIR`` keeps them);
the seeds are never changed. A crash (a parser raising what it must not, or an assertion of
the target failing) leaves its input in ``--artifacts`` (default ``fuzz/crashes/``) and makes
the run exit 1; reproduce it with ``python fuzz/run.py --reproduce FILE TARGET``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
MAX_LEN = 16384  # the longest input tried (proofs are under 2 KB; form bodies grow more)


def target_names() -> list[str]:
    sys.path.insert(0, str(HERE))
    from targets import TARGETS

    return list(TARGETS)


def fuzz_one(name: str, seconds: int, artifacts: Path, corpus: Path) -> None:
    """In a child process: fuzz ``name`` for ``seconds`` (libFuzzer then exits)."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["satchel", "targets"]):
        from targets import TARGETS
    target = TARGETS[name]
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{name}-",
        str(corpus),
        str(CORPUS / name),
    ]
    atheris.Setup(args, target)
    atheris.Fuzz()


def run(name: str, seconds: int, artifacts: Path, keep: Path | None) -> tuple[str, int, str]:
    """Fuzz ``name`` in a child process; its exit status and the tail of its output."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as scratch:
        corpus = keep / name if keep else Path(scratch)
        corpus.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--child", name, "--seconds", str(seconds)]
        command += ["--artifacts", str(artifacts), "--corpus", str(corpus)]
        done = subprocess.run(  # noqa: S603 - this script, with its own arguments
            command,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    output = done.stdout + done.stderr
    return name, done.returncode, output


def summary(output: str) -> str:
    """Executions and coverage from libFuzzer's final statistics."""
    stats = {
        name.strip(): value.strip()
        for name, _, value in (
            line.removeprefix("stat::").partition(":")
            for line in output.splitlines()
            if line.startswith("stat::")
        )
    }
    runs = stats.get("number_of_executed_units", "?").strip()
    cov = next(
        (
            line.split("cov: ")[1].split()[0]
            for line in reversed(output.splitlines())
            if "cov: " in line
        ),
        "?",
    )
    return f"{runs:>9} runs  cov {cov}"


def reproduce(path: Path, name: str) -> None:
    sys.path.insert(0, str(HERE))
    from targets import TARGETS

    TARGETS[name](path.read_bytes())
    print(f"{name}: {path} passes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--seconds", type=int, default=30, help="per target (default 30)")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at the same time")
    parser.add_argument("--artifacts", type=Path, default=HERE / "crashes")
    parser.add_argument("--keep-corpus", type=Path, help="keep the inputs found here")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--reproduce", type=Path, help="run one input through a target")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fuzz_one(args.child, args.seconds, args.artifacts.resolve(), args.corpus)
        return 0
    names = target_names()
    if args.list:
        print("\n".join(names))
        return 0
    if args.reproduce:
        reproduce(args.reproduce, args.targets[0])
        return 0
    unknown = set(args.targets) - set(names)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))} (see --list)")
    chosen = args.targets or names
    keep = args.keep_corpus.resolve() if args.keep_corpus else None
    started = time.monotonic()
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = [pool.submit(run, n, args.seconds, args.artifacts.resolve(), keep) for n in chosen]
        for job in jobs:
            name, status, output = job.result()
            verdict = "ok" if status == 0 else f"CRASH (exit {status})"
            print(f"{name:<20} {verdict:<18} {summary(output)}", flush=True)
            if status != 0:
                failed.append(name)
                print(output[-4000:], file=sys.stderr)
    print(f"{len(chosen)} targets, {len(failed)} crashed, {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
