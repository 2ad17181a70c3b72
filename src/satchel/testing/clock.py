"""A settable clock for expiry tests."""

from __future__ import annotations

import time


class FakeClock:
    """Callable returning a UTC epoch time that only moves when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
