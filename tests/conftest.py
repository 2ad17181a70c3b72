from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import settings

from satchel.testing import FakeClock

# Under CI the property tests run the same examples every time (a failure found while
# exploring locally becomes a regression test; CI never fails on a new random draw).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

KEY = "test-key-0123456789-0123456789-0123456789"
OLD_KEY = "old-key-0123456789-0123456789-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytestmark = pytest.mark.anyio``) run on asyncio."""
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time() + 86_400)


@pytest.fixture
def security_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="satchel")
    return caplog


@pytest.fixture
def artifacts() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


pytest_plugins = ["tests.services"]
