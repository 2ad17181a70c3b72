"""The cookie store, the keyring's encryption, revocation and encryption at rest."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from satchel import ConfigurationError, MemoryStore, SessionTooLarge, SQLiteStore, ids
from satchel.asgi import SessionMiddleware
from satchel.cookie import CookieBackend, CookieStore
from satchel.cookie.format import read_payload
from satchel.cookie.revocation import marker_key, revoke_all
from satchel.expiry import ExpiryPolicy
from satchel.keyring import Keyring
from satchel.ops import drive
from satchel.stores.base import Store
from satchel.testing import FakeClock
from satchel.testing.cookie_conformance import CookieConformance

from .conftest import KEY, OLD_KEY
from .helpers import CountingStore, set_cookie_value
from .test_asgi import ROUTES

pytestmark = pytest.mark.anyio
THIRD = "third-key-0123456789-0123456789-0123"


async def big(request: Request) -> Response:
    request.session["blob"] = "x" * int(request.query_params["n"])
    return PlainTextResponse("ok")


def make_app(
    store: CookieStore | str = "cookie://", revocation: Store | None = None, **options: Any
) -> SessionMiddleware:
    options.setdefault("secret_keys", [KEY])
    return SessionMiddleware(
        Starlette(routes=[*ROUTES, Route("/big", big)]),
        store=store,
        revocation_store=revocation,
        **options,
    )


def client_for(app: SessionMiddleware, raise_errors: bool = False) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(revocation=MemoryStore(), clock=clock)) as c:
        yield c


async def test_encrypted_by_default(client: httpx.AsyncClient) -> None:
    """Checklist 28: the payload cannot be read."""
    await client.get("/put?secret=hunter2-visible")
    value = client.cookies["satchel"]
    version, kid, body = value.split(".")
    assert (version, len(kid)) == ("e1", 8)
    raw = base64.urlsafe_b64decode(body + "==")
    assert b"hunter2" not in raw
    assert b"secret" not in raw
    assert (await client.get("/read")).status_code == 200


async def test_signed_mode_is_readable_but_tamper_proof() -> None:
    async with client_for(make_app("cookie://?signed=1")) as c:
        await c.get("/put?shown=yes")
        value = c.cookies["satchel"]
        version, _, body, _ = value.split(".")
        assert version == "s1"
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        assert payload["d"]["shown"] == '"yes"'
        forged_payload = dict(payload, d={"shown": '"no"'})
        forged_body = base64.urlsafe_b64encode(json.dumps(forged_payload).encode()).rstrip(b"=")
        parts = value.split(".")
        parts[2] = forged_body.decode()
        c.cookies.clear()
        response = await c.get("/read", headers={"cookie": "satchel=" + ".".join(parts)})
        assert response.status_code == 200


async def test_compression_is_opt_in() -> None:
    async with client_for(make_app("cookie://?compress=1")) as c:
        await c.get("/put?text=" + "a" * 2000)
        assert c.cookies["satchel"].startswith("e1z.")
        assert len(c.cookies["satchel"]) < 600
        assert (await c.get("/put?more=1")).status_code == 200


@pytest.mark.parametrize("mode", ["cookie://", "cookie://?signed=1"])
async def test_every_byte_flip_gives_a_fresh_session_and_a_warning(
    mode: str, security_log: pytest.LogCaptureFixture
) -> None:
    """Checklist 26: flip each position of a real cookie (version, key ID, payload, tag):
    never an exception, never a 500, always a fresh session, always a warning."""
    app = make_app(mode)
    async with client_for(app, raise_errors=True) as c:
        await c.get("/put?n=1")
        value = c.cookies["satchel"]
        c.cookies.clear()
        for position in range(len(value)):
            flipped = (
                value[:position] + ("B" if value[position] != "B" else "C") + value[position + 1 :]
            )
            security_log.clear()
            response = await c.get("/read", headers={"cookie": f"satchel={flipped}"})
            assert response.status_code == 200, position
            assert response.json()["n"] is None, position
            assert any(r.name == "satchel.security" for r in security_log.records), position


async def test_non_canonical_encoding_is_rejected() -> None:
    """The same bytes from a different text (stray low bits in the last base64 character)."""
    app = make_app()
    async with client_for(app) as c:
        for pad in range(3):  # a payload whose base64 text ends in a partial group
            await c.get("/put?n=1" + "x" * pad)
            value = c.cookies["satchel"]
            if len(value.split(".")[2]) % 4:
                break
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = value[-1]
        twins = [
            ch
            for ch in alphabet
            if ch != last
            and base64.urlsafe_b64decode(value.split(".")[2][:-1] + ch + "==")
            == base64.urlsafe_b64decode(value.split(".")[2] + "==")
        ]
        assert twins, "this ciphertext length leaves no spare bits; the test needs one that does"
        c.cookies.clear()
        response = await c.get("/read", headers={"cookie": f"satchel={value[:-1]}{twins[0]}"})
        assert response.json()["n"] is None


async def test_timeouts_are_inside_the_payload(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Checklist 15-18: a validly encrypted cookie past its idle or absolute lifetime is
    refused, whatever Max-Age the client claims."""
    await client.get("/incr")
    value = client.cookies["satchel"]
    clock.advance(30 * 60 + 1)
    client.cookies.clear()
    response = await client.get("/read", headers={"cookie": f"satchel={value}"})
    assert response.json()["n"] is None
    await client.get("/incr")
    for _ in range(47):  # used every 15 minutes: the idle timeout never fires
        clock.advance(15 * 60)
        assert (await client.get("/read")).json()["n"] == 1
    clock.advance(15 * 60)  # 12 h after creation
    assert (await client.get("/read")).json()["n"] is None


async def test_rotation_across_three_keys() -> None:
    """Checklist 27: made with the oldest key, accepted while it is listed, re-made with
    the newest on the next write, rejected once the key is removed."""
    async with client_for(make_app(secret_keys=[OLD_KEY])) as c:
        await c.get("/incr")
        old = c.cookies["satchel"]
    rotated = make_app(secret_keys=[THIRD, KEY, OLD_KEY])
    newest_kid = Keyring([THIRD]).current_kid
    async with client_for(rotated) as c:
        response = await c.get("/read", headers={"cookie": f"satchel={old}"})
        assert response.json()["n"] == 1
        assert "set-cookie" not in response.headers  # only a write re-makes it
        response = await c.get("/incr", headers={"cookie": f"satchel={old}"})
        remade = set_cookie_value(response.headers)
        assert remade is not None
        assert remade.split(".")[1] == newest_kid
    async with client_for(make_app(secret_keys=[THIRD, KEY])) as c:
        assert (await c.get("/read", headers={"cookie": f"satchel={old}"})).json()["n"] is None
        assert (await c.get("/read", headers={"cookie": f"satchel={remade}"})).json()["n"] == 2


async def test_too_large_a_session_raises_before_the_response_leaves() -> None:
    """Checklist 25."""
    async with client_for(make_app(), raise_errors=True) as c:
        assert (await c.get("/big?n=2000")).status_code == 200
        with pytest.raises(SessionTooLarge) as info:
            await c.get("/big?n=5000")
    assert info.value.limit == 4096
    assert info.value.size > 4096
    assert "4096" in str(info.value)
    assert str(info.value.size) in str(info.value)


async def test_logout_kills_a_replayed_cookie_with_a_revocation_store(
    tmp_path: Path,
) -> None:
    """Checklist 12, 13: logout revokes the session's handle in the SQLite marker."""
    revocation = SQLiteStore(tmp_path / "revocation.db")
    async with client_for(make_app(revocation=revocation)) as c:
        await c.get("/login?user=alice")
        stolen = c.cookies["satchel"]
        assert (await c.get("/read")).json()["user"] == "alice"
        await c.get("/logout")
        c.cookies.clear()
        replay = await c.get("/read", headers={"cookie": f"satchel={stolen}"})
        assert replay.json() == {"n": None, "user": None}
        await c.get("/login?user=alice")  # a new login still works
        assert (await c.get("/read")).json()["user"] == "alice"


async def test_log_out_everywhere_revokes_every_device(clock: FakeClock) -> None:
    revocation = MemoryStore()
    app = make_app(revocation=revocation, clock=clock)
    async with client_for(app) as phone, client_for(app) as laptop:
        await phone.get("/login?user=alice")
        await laptop.get("/login?user=alice")
        clock.advance(1)
        drive(revoke_all("alice", clock()), revocation)
        assert (await phone.get("/read")).json()["user"] is None
        assert (await laptop.get("/read")).json()["user"] is None
        clock.advance(1)
        await phone.get("/login?user=alice")
        assert (await phone.get("/read")).json()["user"] == "alice"


async def test_missing_marker_fails_closed() -> None:
    """Memcached may evict the marker: a missing marker means revoked, not allowed."""
    revocation = MemoryStore()
    async with client_for(make_app(revocation=revocation)) as c:
        await c.get("/login?user=alice")
        assert revocation.delete(marker_key("alice"))
        assert (await c.get("/read")).json()["user"] is None


async def test_revocation_lookup_costs_one_call_for_logged_in_sessions_only() -> None:
    revocation = CountingStore(MemoryStore())
    async with client_for(make_app(revocation=revocation)) as c:
        await c.get("/incr")
        revocation.reset()
        await c.get("/read")
        assert revocation.total == 0  # anonymous cookie session: nothing to revoke
        await c.get("/login")
        revocation.reset()
        await c.get("/read")
        assert dict(revocation.calls) == {"load": 1}


async def test_without_a_revocation_store_the_app_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="satchel")
    app = make_app()
    assert any("stays valid until it expires" in r.getMessage() for r in caplog.records)
    async with client_for(app) as c:
        await c.get("/login")
        stolen = c.cookies["satchel"]
        await c.get("/logout")
        c.cookies.clear()
        replay = await c.get("/read", headers={"cookie": f"satchel={stolen}"})
        assert replay.json()["user"] == "alice"  # the documented limit without a store


def test_cookie_store_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="cookie sessions are encrypted"):
        make_app(encrypt_at_rest=True)
    with pytest.raises(ConfigurationError, match="cookie sessions only"):
        SessionMiddleware(
            Starlette(), store=MemoryStore(), secret_keys=[KEY], revocation_store=MemoryStore()
        )
    with pytest.raises(ConfigurationError, match="needs secret_keys"):
        SessionMiddleware(Starlette(), store="cookie://")
    with pytest.raises(ConfigurationError, match="needs secret_keys"):
        SessionMiddleware(Starlette(), store="cookie://", insecure_unsigned_cookies=True)


async def test_nested_changes_and_last_writer_wins(client: httpx.AsyncClient) -> None:
    """The conformance points that apply to cookie sessions: nested changes are saved;
    concurrent writes cannot be merged (each response carries a whole cookie)."""
    await client.get("/cart?item=a")
    assert (await client.get("/cart?item=b")).json() == ["a", "b"]
    base = client.cookies["satchel"]
    first = await client.get("/put?k1=1", headers={"cookie": f"satchel={base}"})
    second = await client.get("/put?k2=2", headers={"cookie": f"satchel={base}"})
    assert set_cookie_value(first.headers) != set_cookie_value(second.headers)


def test_engine_decode_rejects_other_cookie_names() -> None:
    """The cookie name is bound into the authenticated data: a value cannot be moved to a
    cookie of another name."""
    from satchel import CookieOptions, ExpiryPolicy

    def engine(name: str) -> CookieBackend:
        return CookieBackend(
            secret_keys=[KEY],
            cookie=CookieOptions(name=name),
            expiry=ExpiryPolicy(),
            revocation_store=MemoryStore(),
        )

    a, b = engine("a"), engine("b")
    meta = a.expiry.new_meta("h", 0)
    value = a.encode({"x": "1"}, meta)
    assert a.decode(value) is not None
    assert b.decode(value) is None


# -- encryption at rest --------------------------------------------------------------------------


async def test_encryption_at_rest_hides_values_not_metadata(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    app = SessionMiddleware(
        Starlette(routes=ROUTES), store=SQLiteStore(path), secret_keys=[KEY], encrypt_at_rest=True
    )
    async with client_for(app) as c:
        await c.get("/put?card=4111-1111-1111-1111")
        await c.get("/login?user=alice")
        assert (await c.get("/read")).json()["user"] == "alice"
    with sqlite3.connect(path) as db:
        data, meta, user_id, expires_at = db.execute(
            "SELECT data, meta, user_id, expires_at FROM satchel_sessions"
        ).fetchone()
    assert "4111" not in data
    assert json.loads(data)["card"].startswith("!")
    assert user_id == "alice"  # what the index and expiry need stays readable
    assert expires_at > 0
    assert '"user_id":"alice"' in meta


async def test_encryption_at_rest_rotation_and_plaintext_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    plain = SessionMiddleware(Starlette(routes=ROUTES), store=store, secret_keys=[OLD_KEY])
    async with client_for(plain) as c:
        await c.get("/put?a=old-plaintext")
        cookie = c.cookies["satchel"]

    def app(keys: list[str]) -> SessionMiddleware:
        return SessionMiddleware(
            Starlette(routes=ROUTES), store=store, secret_keys=keys, encrypt_at_rest=True
        )

    async with client_for(app([KEY, OLD_KEY])) as c:  # plaintext still loads
        c.cookies.set("satchel", cookie)
        await c.get("/put?b=new")
        assert (await c.get("/put?a=rewritten")).status_code == 200
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM satchel_sessions").fetchone()
    values = json.loads(data)
    assert all(v.startswith("!" + Keyring([KEY]).current_kid) for v in values.values())
    async with client_for(app([THIRD])) as c:  # every key that encrypted it removed
        c.cookies.set("satchel", cookie)
        response = await c.get("/read")
        assert response.status_code == 200
        assert response.json()["n"] is None


def test_stored_ids_are_hashes_in_the_revocation_marker() -> None:
    assert ids.is_store_key(marker_key("alice"))
    assert "alice" not in marker_key("alice")


# -- the shipped cookie conformance suite, with markers in several real stores ------------------


class TestCookieConformanceMemory(CookieConformance):
    def make_revocation_store(self) -> Store:
        return MemoryStore()


class TestCookieConformanceSQLite(CookieConformance):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def make_revocation_store(self) -> Store:
        return SQLiteStore(self.tmp_path / "revocation.db")


class TestCookieConformanceRedis(CookieConformance):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url: str) -> None:
        self.url = redis_url

    def make_revocation_store(self) -> Store:
        from satchel.stores.redis import RedisStore

        return RedisStore(self.url, prefix="satchel-cookie-conformance:")


class TestCookieConformanceMemcached(CookieConformance):
    @pytest.fixture(autouse=True)
    def _server(self, memcached: Any) -> None:
        self.url = memcached.url

    def make_revocation_store(self) -> Store:
        from satchel.stores.memcached import from_url

        return from_url(self.url)


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({}, 10),  # an anonymous session's cookie ends at the version, as 0.1's
        ({"device": '{"b":1}'}, 11),
        ({"auth": '{"t":1.5,"m":[]}'}, 12),
        ({"user_id": "alice", "auth": '{"t":1.5,"m":[]}'}, 12),  # a login: device left null
        ({"device": '{"b":1}', "auth": '{"t":1.5,"m":[]}'}, 12),
    ],
)
def test_payload_leaves_out_only_trailing_absent_metadata(
    changes: dict[str, str], fields: int
) -> None:
    """The metadata travels by position: trailing absent fields are left out (a cookie
    0.1 can read), every other field is written, and the payload reads back as written."""
    backend = make_app().backend
    assert isinstance(backend, CookieBackend)
    meta = ExpiryPolicy().new_meta(ids.new_handle(), 1.0e9).with_changes(**changes)
    found = backend.format.authentic(backend.encode({"k": '"v"'}, meta))
    assert found is not None
    raw, compressed, kid = found
    assert json.loads(raw) == {"d": {"k": '"v"'}, "m": list(meta)[:fields]}
    payload = read_payload(raw, compressed, kid)
    assert payload is not None
    assert payload.meta == meta
    assert payload.data == {"k": '"v"'}


@pytest.mark.parametrize(("written", "read"), [(False, True), (True, False)])
def test_a_cookie_of_the_other_compression_setting_still_reads(written: bool, read: bool) -> None:
    """Turning compression on or off keeps the sessions already issued: the associated
    data is that of the cookie's own version (``e1`` or ``e1z``), not the app's."""
    writer = make_app(CookieStore(compress=written)).backend
    reader = make_app(CookieStore(compress=read)).backend
    assert isinstance(writer, CookieBackend)
    assert isinstance(reader, CookieBackend)
    meta = ExpiryPolicy().new_meta(ids.new_handle(), 1.0e9)
    value = writer.encode({"k": '"v"'}, meta)
    assert value.startswith("e1z." if written else "e1.")
    payload = reader.decode(value)
    assert payload is not None
    assert payload.data == {"k": '"v"'}
    assert payload.meta == meta
    tampered = value.replace("e1z.", "e1.") if written else value.replace("e1.", "e1z.")
    assert reader.decode(tampered) is None  # the version is bound: no downgrade or upgrade


@pytest.mark.parametrize("via", ["hook", "instrument"])
async def test_cookie_commits_report_their_events(via: str) -> None:
    """A cookie session's login (created), regeneration and end reach an ``on_event``
    hook or an installed instrument alike; with neither, the commit asks once and makes
    no event."""
    from satchel import instrumentation
    from satchel.events import SessionEvent

    events: list[SessionEvent] = []

    class Recorder:
        def event(self, event: SessionEvent) -> None:
            events.append(event)

        def call(self, op: Any, store: Store) -> Any:
            return op.run(store)

        async def acall(self, op: Any, store: Store) -> Any:
            return await op.arun(store)

    app = make_app(on_event=events.append) if via == "hook" else make_app()
    previous = instrumentation.install(Recorder()) if via == "instrument" else None
    try:
        async with client_for(app) as client:
            await client.get("/login", params={"user": "alice"})
            await client.get("/regen")
            await client.get("/logout")
    finally:
        if via == "instrument":
            instrumentation.install(previous)
    kinds = [(e.kind, e.user_id) for e in events]
    assert kinds == [("created", "alice"), ("regenerated", "alice"), ("destroyed", "alice")]
    events.clear()
    async with client_for(make_app()) as client:  # neither: nothing made
        await client.get("/login", params={"user": "alice"})
    assert events == []
