"""The app under test in its own server process on a free loopback port: uvicorn with
``--workers N`` for ASGI apps, gunicorn with N sync workers for WSGI apps (as
benchmarks/bench_http.py starts them, with 2 workers instead of 1). Each server runs in its
own process group, so that stopping it stops its workers; :meth:`AppServer.stop` runs from
the run's exit stack at the end, on errors and on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from tests.services import LOOPBACK, free_port

from .apps import APPS, ENV_APP, ENV_PREFIX, ENV_STORE

ROOT = Path(__file__).resolve().parent.parent


def command(app: str, port: int, workers: int) -> list[str]:
    if APPS[app][0] == "asgi":
        return [
            sys.executable, "-m", "uvicorn", "--factory", "reliability.apps:asgi_from_env",
            "--host", LOOPBACK, "--port", str(port), "--workers", str(workers),
            "--loop", "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{LOOPBACK}:{port}",
        "--workers", str(workers), "--worker-class", "sync", "--backlog", "2048",
        "--timeout", "30", "--log-level", "warning", "reliability.apps:wsgi_from_env()",
    ]  # fmt: skip


def last_error(log: str) -> str:
    """The last exception line of a log (``Name: message`` at the start of a line, as a
    traceback ends), or its last line."""
    lines = [line for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"[\w.]*(Error|Exception|Unavailable|Exit)\b.*", line):
            return line
    return lines[-1] if lines else "(no output)"


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


class AppServer:
    """``AppServer(app, store_url, workers=2, prefix=...)``: started at once, ready when
    :meth:`wait_ready` returns. ``store`` is a satchel store URL (or a peer's Redis URL)."""

    def __init__(
        self,
        app: str,
        store: str,
        *,
        workers: int = 2,
        prefix: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.app, self.store, self.workers = app, store, workers
        self.port = free_port()
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        environment.update({ENV_APP: app, ENV_STORE: store, ENV_PREFIX: prefix})
        self.process = subprocess.Popen(
            command(app, self.port, workers),
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def label(self) -> str:
        return APPS[self.app][1]

    def output(self, tail: int = 4000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-tail:]

    def check(self) -> None:
        """Raise if the server process has exited: the last error its log names first
        (what a reader of a cut CI log needs), then the log's tail."""
        if self.process.poll() is not None:
            output = self.output()
            raise RuntimeError(
                f"{self.app}: server exited ({self.process.returncode}): "
                f"{last_error(output)}\n{output}"
            )

    def worker_pids(self) -> list[int]:
        if self.workers == 1 and APPS[self.app][0] == "asgi":  # uvicorn serves in-process
            return [self.process.pid] if self.process.poll() is None else []
        return [pid for pid in children(self.process.pid) if _is_worker(pid)]

    def _answers(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=2) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the server answers ``/health`` and all its workers run."""
        deadline = time.monotonic() + timeout
        while not (self._answers() and len(self.worker_pids()) >= self.workers):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.app}: not ready on port {self.port}:\n{self.output()}")
            time.sleep(0.1)

    def rss(self) -> dict[int, int]:
        """Each worker's RSS in kB, by pid."""
        return {pid: rss_kb(pid) for pid in self.worker_pids()}

    def kill_worker(self) -> int | None:
        """SIGKILL one worker (the server's master starts another); its pid."""
        pids = self.worker_pids()
        if not pids:
            return None
        try:
            os.kill(pids[0], signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pids[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers a dead master left behind
        self.log.close()
