"""The short fuzz run of issue 14: every target of ``fuzz/targets.py`` under atheris for a
few seconds, from its seed corpus (two at a time); any crash fails the test and leaves its
input in the test's temporary directory. The long run is ``make fuzz`` (docs/reliability.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 3


@pytest.mark.slow
def test_every_fuzz_target_runs_without_a_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    command = [sys.executable, str(ROOT / "fuzz" / "run.py"), "--seconds", str(SECONDS)]
    command += ["--jobs", "2", "--artifacts", str(tmp_path / "crashes")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stdout + done.stderr[-6000:]
    assert done.returncode == 0, report
    assert "12 targets, 0 crashed" in done.stdout, report
    assert not list((tmp_path / "crashes").glob("*")), report


def test_every_target_has_a_seed_corpus_its_seeds_pass() -> None:
    sys.path.insert(0, str(ROOT / "fuzz"))
    try:
        from targets import TARGETS
    finally:
        sys.path.remove(str(ROOT / "fuzz"))
    for name, target in TARGETS.items():
        seeds = list((ROOT / "fuzz" / "corpus" / name).iterdir())
        assert seeds, name
        for seed in seeds:
            target(seed.read_bytes())
