"""Assurance presets (issue 17; NIST SP 800-63B-4): ``assurance="aal1" | "aal2" |
"aal3"`` sets the timeouts a session of that level may have where none is set, keeps
stricter explicit ones, and refuses weaker ones at start unless
``assurance_allow_weaker=True``. Observed on the stored record, through every entry point
(middleware argument, environment, Flask config; tests/test_option_sweep.py and, for
Django, tests/test_integration_django.py sweep the same keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import satchel
from satchel import asgi
from satchel.errors import ConfigurationError
from satchel.session import Session
from satchel.settings import load_settings
from satchel.stores.sqlite import SQLiteStore

from .helpers import KEY


def _timeouts(tmp_path: Path, **options: Any) -> tuple[float, float]:
    """(idle, absolute) of the record a login stores."""

    async def login(request: Request) -> Response:
        session = request.session
        assert isinstance(session, Session)
        satchel.login(session, "alice")
        return PlainTextResponse("ok")

    db = tmp_path / f"{len(list(tmp_path.iterdir()))}.db"
    app = asgi.SessionMiddleware(
        Starlette(routes=[Route("/login", login)]),
        store=f"sqlite:///{db}",
        secret_keys=[KEY],
        **options,
    )
    TestClient(app, base_url="https://127.0.0.1").get("/login")
    store = SQLiteStore(db)
    try:
        ((_, meta),) = list(store.iter_sessions(0))
        return meta.idle_timeout, meta.absolute_deadline - meta.created
    finally:
        store.close()


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (None, (1800.0, 43200.0)),
        ("aal1", (1800.0, 30 * 86400.0)),
        ("aal2", (3600.0, 86400.0)),
        ("aal3", (900.0, 43200.0)),
    ],
)
def test_presets_set_the_timeouts(
    level: str | None, expected: tuple[float, float], tmp_path: Path
) -> None:
    assert _timeouts(tmp_path, assurance=level) == expected


def test_stricter_settings_win_and_weaker_ones_are_refused(tmp_path: Path) -> None:
    assert _timeouts(tmp_path, assurance="aal2", idle_timeout=600) == (600.0, 86400.0)
    with pytest.raises(ConfigurationError, match=r"idle_timeout=7200 s .*aal2.*3600 s"):
        _timeouts(tmp_path, assurance="aal2", idle_timeout=7200)
    with pytest.raises(ConfigurationError, match="absolute_timeout"):
        _timeouts(tmp_path, assurance="aal3", absolute_timeout=86400)
    allowed = _timeouts(tmp_path, assurance="aal2", idle_timeout=7200, assurance_allow_weaker=True)
    assert allowed == (7200.0, 86400.0)
    with pytest.raises(ConfigurationError, match="aal4"):
        _timeouts(tmp_path, assurance="aal4")


def test_settings_from_the_environment() -> None:
    env = {"SATCHEL_SECRET_KEYS": KEY, "SATCHEL_ASSURANCE": "aal3"}
    settings = load_settings(env=env, use_file=False)
    options = settings.middleware_options()
    assert "idle_timeout" not in options  # the level's, not satchel's default
    with pytest.raises(ConfigurationError, match="idle_timeout"):
        load_settings(env={**env, "SATCHEL_IDLE_TIMEOUT": "1h"}, use_file=False)
    with pytest.raises(ConfigurationError, match="SATCHEL_ASSURANCE"):
        load_settings(env={**env, "SATCHEL_ASSURANCE": "high"}, use_file=False)
