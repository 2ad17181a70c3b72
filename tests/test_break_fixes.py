"""Trying to get around today's fixes of issue 17 (tests/test_attack_17.py) from outside:
an administrator's sessions ended *while* a request of theirs is in flight. The handler
ends them itself between loading the session and changing it, the deterministic form of
``end_user_sessions`` (or "log out everywhere" from another device) landing between a
request's load and its commit."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client as WerkzeugClient

import satchel
from satchel import wsgi
from satchel.session import Session
from satchel.testing import FakeClock

from .helpers import KEY
from .services import store_url

HTTPS = "https://127.0.0.1"
START = 1_800_000_000.0

STORES = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/s.db",
    "redis": "redis://127.0.0.1:6379/0?prefix=brk-{prefix}:",
    "cookie": "cookie://",
}


def _app(store: str, tmp: Path, clock: FakeClock) -> wsgi.SessionMiddleware:
    holder: list[wsgi.SessionMiddleware] = []

    def act(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = environ["satchel.session"]
        assert isinstance(session, Session)
        path, answer = environ["PATH_INFO"], "ok"
        if path == "/login":
            satchel.login(session, "admin", methods=["pwd"])
        elif path == "/impersonate":
            satchel.impersonate(session, "alice")
        elif path == "/end-then-impersonate":  # loaded as admin; ended; then acts as alice
            assert session.user_id == "admin"
            clock.advance(1)
            satchel.end_user_sessions(holder[0], "admin", reason="account_disabled")
            clock.advance(1)
            satchel.impersonate(session, "alice")
        elif path == "/end-then-stop":  # loaded acting as alice; admin ended; then stops
            assert session.impersonator == "admin"
            clock.advance(1)
            satchel.end_user_sessions(holder[0], "admin", reason="account_disabled")
            clock.advance(1)
            answer = satchel.stop_impersonating(session)
        elif path == "/me":
            answer = json.dumps({"user": session.user_id, "impersonator": session.impersonator})
        start_response("200 OK", [("content-type", "text/plain")])
        return [answer.encode()]

    options: dict[str, Any] = {}
    url = store_url(STORES[store].replace("{prefix}", uuid.uuid4().hex[:8]), tmp)
    if store == "cookie":
        options["revocation_store"] = f"sqlite:///{tmp}/revocation.db"
    app = wsgi.SessionMiddleware(act, store=url, secret_keys=[KEY], clock=clock, **options)
    holder.append(app)
    return app


def _me(client: WerkzeugClient) -> Any:
    return json.loads(client.get("/me", base_url=HTTPS).get_data(as_text=True))


@pytest.mark.parametrize("store", sorted(STORES))
def test_an_administrator_ended_during_stop_impersonating_gets_no_session(
    store: str, tmp_path: Path
) -> None:
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = WerkzeugClient(app)
        admin.get("/login", base_url=HTTPS)
        admin.get("/impersonate", base_url=HTTPS)
        assert _me(admin)["impersonator"] == "admin"
        clock.advance(5)
        admin.get("/end-then-stop", base_url=HTTPS)
        clock.advance(5)
        assert _me(admin)["user"] is None
    finally:
        if app.store is not None:
            app.store.close()


@pytest.mark.parametrize("store", sorted(STORES))
def test_an_administrator_ended_during_impersonate_gets_no_session(
    store: str, tmp_path: Path
) -> None:
    clock = FakeClock(START)
    app = _app(store, tmp_path, clock)
    try:
        admin = WerkzeugClient(app)
        admin.get("/login", base_url=HTTPS)
        clock.advance(5)
        admin.get("/end-then-impersonate", base_url=HTTPS)
        clock.advance(5)
        assert _me(admin)["user"] is None
    finally:
        if app.store is not None:
            app.store.close()


def test_wait_replicas_is_refused_with_a_cluster_client_of_the_apps_own() -> None:
    """Refused for a ``redis+cluster://`` URL only: given as ``client=`` the same Cluster
    client took it, and its pipeline (the write, then ``WAIT``) sent ``WAIT`` to whichever
    node redis-py picked for a keyless command (an acknowledgement of another connection's
    writes), while the sync client re-sends a pipelined write that met a connection error
    one command at a time (a write sent twice)."""
    from redis.asyncio.cluster import RedisCluster

    from satchel.errors import ConfigurationError
    from satchel.stores.redis import RedisStore

    client = RedisCluster(host="127.0.0.1", port=7000)  # (connects at its first command)
    with pytest.raises(ConfigurationError, match="Cluster"):
        RedisStore(async_client=client, wait_replicas=1)


@pytest.mark.parametrize("store", ["sqlite", "cookie"])
@pytest.mark.parametrize("assurance", [None, "aal2"])
def test_remember_me_after_stop_impersonating_never_moves_the_deadline(
    store: str, assurance: str | None, tmp_path: Path
) -> None:
    """``stop_impersonating`` restarts ``created`` (the administrator's facts kept as they
    were), and "remember me" counted its absolute timeout from there: each impersonate,
    stop, remember cycle moved the administrator's deadline later without any new
    authentication, past ``aal2``'s 24 hours since the login too (reauthenticate every
    24 hours, NIST SP 800-63B-4)."""
    from .test_attack_17 import DAY
    from .test_attack_17 import _app as _attack_app
    from .test_attack_17 import _Client as _AttackClient

    clock = FakeClock(START)
    more = {} if assurance is None else {"assurance": assurance}
    app = _attack_app(store, tmp_path, clock, **more)
    try:
        admin = _AttackClient(app)
        admin.get("/login?user=admin")
        admin.get("/remember")
        deadline = admin.get("/me").json()["deadline"]
        for _ in range(3):
            clock.advance(600)
            admin.get("/impersonate?user=alice")
            clock.advance(600)
            assert admin.get("/stop").text == "admin"
            admin.get("/remember")
            assert admin.get("/me").json()["deadline"] <= deadline
        if assurance is not None:
            assert deadline <= START + DAY
    finally:
        if app.store is not None:
            app.store.close()
