"""The OpenTelemetry integration (docs/observability.md): real requests through the ASGI and
WSGI middleware and Flask, on SQLite and Redis, read back with the SDK's in-memory metric
reader and span exporter. Django's run is in tests/test_integration_django.py (Django's
settings are process-wide; every Django test lives there).

Every run also checks that no attribute of any metric point or span holds a session ID, a
store key, a handle or a user ID: only satchel's own small vocabulary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from satchel import UserSessions, ids, instrumentation, login, logout, store_from_url
from satchel.asgi import SessionMiddleware as ASGIMiddleware
from satchel.auth import logout_other_devices
from satchel.integrations.opentelemetry import (
    DURATION_BUCKETS,
    instrument,
    instrumented,
    uninstrument,
)
from satchel.session import Session
from satchel.testing import FakeClock
from satchel.wsgi import ENVIRON_KEY
from satchel.wsgi import SessionMiddleware as WSGIMiddleware

from .conftest import KEY
from .services import store_url as checked_url
from .test_demo_cli import _SyncASGI

BASE = "https://testserver"
DEAD_REDIS = "redis://127.0.0.1:1/0?socket_timeout=0.5&connect_timeout=0.5"

#: Every attribute satchel may record, and the shape of its values.
ALLOWED = {
    "reason": r"[a-z_]+",
    "satchel.device.refusal": r"[a-z_]+",
    "satchel.store.kind": r"[a-z]+",
    "satchel.store.operation": r"[a-z_]+",
    "satchel.store.outcome": r"ok|miss|error",
    "error.type": r"[A-Z][A-Za-z]+",
}
SHORT = {
    "kind": "satchel.store.kind",
    "operation": "satchel.store.operation",
    "outcome": "satchel.store.outcome",
    "error": "error.type",
    "reason": "reason",
    "refusal": "satchel.device.refusal",
}


class Telemetry:
    """An OpenTelemetry SDK reading into memory, with satchel instrumented onto it."""

    def __init__(self, install: bool = True) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))
        if install:
            instrument(meter_provider=self.meters, tracer_provider=self.tracers)

    def close(self) -> None:
        uninstrument()
        self.meters.shutdown()
        self.tracers.shutdown()

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def count(self, name: str, **attributes: str) -> int:
        """The sum of a counter's points (a histogram's counts) with ``attributes``, named
        short: ``kind``, ``operation``, ``outcome``, ``error``, ``reason``, ``refusal``."""
        wanted = {SHORT[k]: v for k, v in attributes.items()}
        total = 0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in wanted.items()):
                total += point.count if isinstance(point, HistogramDataPoint) else point.value
        return int(total)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def attributes(self) -> list[dict[str, Any]]:
        """The attributes of every metric point and every span."""
        data = self.reader.get_metrics_data()
        found = [
            dict(point.attributes or {})
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        ]
        return found + [dict(span.attributes or {}) for span in self.spans()]

    def assert_nothing_personal(self, *secrets: str) -> None:
        """Only satchel's vocabulary in any attribute; none of ``secrets`` anywhere."""
        everything = self.attributes()
        assert everything
        for attributes in everything:
            for key, value in attributes.items():
                assert key in ALLOWED, key
                assert isinstance(value, str), (key, value)
                assert re.fullmatch(ALLOWED[key], value), (key, value)
        dump = json.dumps(everything) + "".join(span.name for span in self.spans())
        for secret in secrets:
            assert secret not in dump


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.close()


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    base = checked_url("redis://127.0.0.1:6379/0", tmp_path)
    return f"{base}?prefix=otel{uuid.uuid4().hex[:12]}:"  # this test's own keys


# -- one app, on the ASGI and the WSGI path ------------------------------------------------------


class App:
    """The routes of every test, and where the admin of the race reaches the store."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.url, self.clock = url, clock

    def route(self, session: Session, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/login":
            login(session, query.get("user", "alice"))
        elif path == "/logout":
            logout(session)
        elif path == "/others":  # a password change: every other device logged out
            logout_other_devices(session)
        elif path == "/race":  # an admin revokes alice everywhere while this request runs
            seen = session.get("n", 0)
            admin = store_from_url(self.url)
            try:
                UserSessions(admin, clock=self.clock).revoke_all("alice")
            finally:
                admin.close()
            session["n"] = seen + 1  # dropped: the session ended under this request
        elif path == "/incr":
            session["n"] = session.get("n", 0) + 1
        return 200, {"user": session.user_id, "n": session.get("n")}

    def asgi(self, **options: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            session = request.session
            assert isinstance(session, Session)
            status, body = self.route(session, request.url.path, dict(request.query_params))
            return JSONResponse(body, status_code=status)

        routes = [Route("/{rest:path}", endpoint, methods=["GET", "POST"])]
        return ASGIMiddleware(Starlette(routes=routes), self.url, **options)

    def wsgi(self, **options: Any) -> Any:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            status, body = self.route(environ[ENVIRON_KEY], environ["PATH_INFO"], query)
            start_response(f"{status} X", [("content-type", "application/json")])
            return [json.dumps(body).encode()]

        return WSGIMiddleware(app, self.url, **options)


class Clients:
    """Several browsers on one app (sharing its transport)."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport
        self.made: list[httpx.Client] = []

    def __call__(self) -> httpx.Client:
        client = httpx.Client(transport=self.transport, base_url=BASE)
        self.made.append(client)
        return client


@pytest.fixture(params=["asgi", "wsgi"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def served(path: str, app: App, **options: Any) -> Iterator[Clients]:
    """Browsers on ``app`` through the ``path`` middleware."""
    options = {"secret_keys": [KEY], "clock": app.clock, **options}
    if path == "asgi":
        asgi = app.asgi(**options)
        transport = _SyncASGI(httpx.ASGITransport(app=asgi))
        clients = Clients(transport)
        try:
            yield clients
        finally:
            if asgi.store is not None:
                transport.runner.run(asgi.store.aclose())  # on the loop that opened it
            for client in clients.made:
                client.close()  # and the transport with it
            transport.close()
    else:
        wsgi = app.wsgi(**options)
        clients = Clients(httpx.WSGITransport(app=wsgi))
        try:
            yield clients
        finally:
            for client in clients.made:
                client.close()
            wsgi.store.close()


def session_ids(*clients: httpx.Client) -> list[str]:
    """The session IDs (and their store keys) the clients were ever given."""
    found = []
    for client in clients:
        value = client.cookies.get("satchel")
        if value:
            session_id = value.partition(".")[0]
            found += [value, session_id, ids.store_key(session_id)]
    return found


# -- the counters ------------------------------------------------------------------------------


def test_every_lifecycle_and_security_counter_on_a_real_store(
    telemetry: Telemetry, path: str, url: str
) -> None:
    app = App(url, FakeClock())
    seen: list[str] = []
    with served(path, app) as browser:
        laptop, phone, attacker, bob = browser(), browser(), browser(), browser()
        laptop.get("/incr")  # a new session: created
        laptop.get("/login")  # alice logs in on it: regenerated
        phone.get("/login")  # and on her phone, from no session: created
        seen += session_ids(laptop, phone)
        assert laptop.get("/others").status_code == 200  # phone revoked; laptop regenerated
        seen += session_ids(laptop)
        assert phone.get("/incr").json() == {"user": None, "n": 1}  # expired (not found), created
        seen += session_ids(phone)

        assert laptop.post("/incr").status_code == 403  # no CSRF token
        attacker.get("/incr", headers={"cookie": "satchel=forged.value"})  # tampered; created

        assert laptop.get("/race").status_code == 200  # revoked under the request: dropped
        bob.get("/login", params={"user": "bob"})  # created
        seen += session_ids(bob)
        bob.get("/logout")  # destroyed

        carol = browser()
        carol.get("/login", params={"user": "carol"})  # created
        seen += session_ids(carol)
        app.clock.advance(31 * 60)  # past the idle timeout
        assert carol.get("/incr").json() == {"user": None, "n": 1}  # expired; created

    t = telemetry
    assert t.count("satchel.sessions.created") == 7
    assert t.count("satchel.sessions.regenerated") == 2
    assert t.count("satchel.sessions.destroyed") == 1
    assert t.count("satchel.sessions.revoked", reason="all") == 2  # the phone; then the laptop
    assert t.count("satchel.sessions.expired") == 2
    assert t.count("satchel.sessions.expired", reason="not_found") >= 1
    assert t.count("satchel.security.events", reason="csrf_failure") == 1
    assert t.count("satchel.security.events", reason="tampered_cookie") == 1
    assert t.count("satchel.security.events", reason="dropped_write") == 1
    assert t.count("satchel.security.events") == 3

    kind = url.partition(":")[0]
    for operation in ("load", "create", "create_indexed", "update", "delete", "list_user"):
        assert t.count("satchel.store.duration", kind=kind, operation=operation) >= 1, operation
    assert t.count("satchel.store.duration", operation="update", outcome="miss") == 1  # the race
    assert t.count("satchel.store.errors") == 0
    t.assert_nothing_personal(*seen, "alice", "bob", "carol")


def test_the_store_histogram_and_spans(telemetry: Telemetry, path: str, url: str) -> None:
    app = App(url, FakeClock())
    with served(path, app) as browser:
        client = browser()
        for _ in range(3):
            client.get("/incr")
        secrets = session_ids(client)
        client.get("/incr", headers={"cookie": "satchel=" + ids.new_session_id()})

    kind = url.partition(":")[0]
    (create,) = [
        p for p in telemetry.points("satchel.store.duration")
        if p.attributes["satchel.store.operation"] == "create"
    ]  # fmt: skip
    assert create.attributes == {
        "satchel.store.kind": kind,
        "satchel.store.operation": "create",
        "satchel.store.outcome": "ok",
    }
    assert create.count == 2  # the first request's session, and the unsigned cookie's new one
    assert tuple(create.explicit_bounds) == DURATION_BUCKETS  # seconds, fit for store calls
    assert 0 < create.sum < 5
    assert telemetry.count("satchel.store.duration", operation="update", outcome="ok") == 2
    assert telemetry.count("satchel.store.duration", operation="load", outcome="ok") == 2

    spans = telemetry.spans()
    assert [s.name for s in spans].count("satchel.store.load") == 2
    for span in spans:
        assert span.name.startswith("satchel.store.")
        assert span.kind == (SpanKind.CLIENT if kind == "redis" else SpanKind.INTERNAL)
        assert span.status.status_code == StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["satchel.store.kind"] == kind
        assert span.attributes["satchel.store.outcome"] == "ok"
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "satchel"
    telemetry.assert_nothing_personal(*secrets)


def test_store_spans_are_children_of_the_request_span(telemetry: Telemetry, url: str) -> None:
    tracer = telemetry.tracers.get_tracer("the-app")
    with served("wsgi", App(url, FakeClock())) as browser:
        client = browser()
        with tracer.start_as_current_span("GET /incr") as request_span:
            client.get("/incr")
    store_spans = [s for s in telemetry.spans() if s.name.startswith("satchel.store.")]
    assert store_spans
    for span in store_spans:
        assert span.parent is not None
        assert span.parent.span_id == request_span.get_span_context().span_id


def test_store_errors_by_class_on_an_unreachable_redis(telemetry: Telemetry, path: str) -> None:
    with served(path, App(DEAD_REDIS, FakeClock())) as browser:
        client = browser()
        assert client.get("/login").status_code == 503
        assert client.get("/incr", headers={"cookie": "satchel=" + ids.new_session_id()})

    errors = telemetry.points("satchel.store.errors")
    assert errors
    for point in errors:
        assert point.attributes["satchel.store.kind"] == "redis"
        assert point.attributes["error.type"] == "StoreUnavailable"
        assert point.attributes["satchel.store.outcome"] == "error"
    assert telemetry.count("satchel.store.errors", operation="create_indexed") == 1
    failed = [s for s in telemetry.spans() if s.status.status_code == StatusCode.ERROR]
    assert {s.name for s in failed} >= {"satchel.store.create_indexed"}
    for span in failed:
        assert span.status.description == "StoreUnavailable"
        assert not span.events  # no exception event: its message is not for telemetry
        assert span.attributes is not None
        assert span.attributes["error.type"] == "StoreUnavailable"
    assert telemetry.count("satchel.store.duration", outcome="error") == len(failed)
    telemetry.assert_nothing_personal("alice")


def test_device_binding_refusals_are_security_events(telemetry: Telemetry, path: str) -> None:
    with served(path, App("memory://", FakeClock()), dbsc=True) as browser:
        client = browser()
        refused = client.post("/.satchel/dbsc/register", headers={"secure-session-response": "x"})
        assert refused.status_code == 403
    assert (
        telemetry.count("satchel.security.events", reason="device_refused", refusal="no_session")
        == 1
    )
    telemetry.assert_nothing_personal()


# -- Flask --------------------------------------------------------------------------------------


def test_flask_on_a_real_store(telemetry: Telemetry, url: str) -> None:
    from flask import Flask, session

    from satchel.integrations.flask import Satchel

    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE=url, TESTING=True)
    satchel = Satchel(app)

    @app.get("/login")
    def log_in() -> dict[str, Any]:
        login(session, "alice")  # type: ignore[arg-type]
        return {"user": "alice"}

    @app.get("/logout")
    def log_out() -> dict[str, Any]:
        logout(session)  # type: ignore[arg-type]
        return {"user": None}

    @app.post("/incr")
    def incr() -> dict[str, Any]:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    client = app.test_client()
    client.get(f"{BASE}/login")
    cookie = client.get_cookie("satchel", domain="testserver")
    assert cookie is not None
    assert client.post(f"{BASE}/incr").status_code == 403  # no CSRF token
    client.get(f"{BASE}/logout")
    satchel.runtime(app).store.close()  # type: ignore[union-attr]

    kind = url.partition(":")[0]
    assert telemetry.count("satchel.sessions.created") == 1
    assert telemetry.count("satchel.sessions.destroyed") == 1
    assert telemetry.count("satchel.security.events", reason="csrf_failure") == 1
    assert telemetry.count("satchel.store.duration", kind=kind, operation="create_indexed") == 1
    assert telemetry.count("satchel.store.duration", kind=kind, operation="delete") == 1
    session_id = cookie.value.partition(".")[0]
    telemetry.assert_nothing_personal(cookie.value, session_id, ids.store_key(session_id), "alice")


# -- on, off, cost ----------------------------------------------------------------------------


def test_nothing_is_recorded_before_instrument_or_after_uninstrument(url: str) -> None:
    import satchel.integrations.opentelemetry  # noqa: F401  (importing it turns nothing on)

    assert instrumentation.installed is None
    assert not instrumented()
    telemetry = Telemetry()
    assert instrumented()
    telemetry.close()
    assert instrumentation.installed is None
    with served("wsgi", App(url, FakeClock())) as browser:
        browser().get("/login")
    assert telemetry.reader.get_metrics_data() is None or not telemetry.points(
        "satchel.store.duration"
    )
    assert not telemetry.spans()


def test_instrument_twice_counts_once(telemetry: Telemetry) -> None:
    second = Telemetry()  # replaces the first: nothing is counted twice, nor by the first
    try:
        with served("wsgi", App("memory://", FakeClock())) as browser:
            browser().get("/login")
        assert second.count("satchel.sessions.created") == 1
        assert telemetry.count("satchel.sessions.created") == 0
    finally:
        second.close()


def test_the_instrumentor_interface_and_its_entry_point() -> None:
    """``SatchelInstrumentor`` as any contrib instrumentor, registered where
    ``opentelemetry-instrument`` (zero-code instrumentation) looks for it."""
    from importlib.metadata import entry_points

    from satchel.integrations.opentelemetry_instrumentor import SatchelInstrumentor

    (found,) = entry_points(group="opentelemetry_instrumentor", name="satchel")
    assert found.load() is SatchelInstrumentor
    telemetry = Telemetry(install=False)
    SatchelInstrumentor().instrument(
        meter_provider=telemetry.meters, tracer_provider=telemetry.tracers
    )
    try:
        assert instrumented()
        with served("wsgi", App("memory://", FakeClock())) as browser:
            browser().get("/login")
    finally:
        SatchelInstrumentor().uninstrument()
    assert not instrumented()
    assert telemetry.count("satchel.sessions.created") == 1
    assert "satchel.store.create_indexed" in {s.name for s in telemetry.spans()}


# -- docs/observability.md ------------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "observability.md"

SCRAPE_DRIVER = """
import httpx, urllib.request
from satchel.wsgi import SessionMiddleware

def app(environ, start_response):
    environ["satchel.session"]["n"] = 1
    start_response("200 OK", [])
    return [b"ok"]

for url in ("memory://", {dead!r}):
    middleware = SessionMiddleware(app, url, secret_keys=[{key!r}])
    client = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="https://t")
    client.get("/")  # a new session (or a store error)
    client.post("/")  # no CSRF token
    client.get("/", headers={{"cookie": "satchel=forged"}})  # tampered
print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics").read().decode())
"""


def test_the_metrics_table_names_every_instrument() -> None:
    from satchel.integrations.opentelemetry import OpenTelemetry

    table = re.findall(r"^\| `(satchel\.[a-z_.]+)` \|", DOC.read_text(), re.M)
    assert sorted(table) == sorted(OpenTelemetry(MeterProvider(), TracerProvider()).instruments)


def test_the_prometheus_snippet_serves_what_the_alerts_query(tmp_path: Path) -> None:
    """The doc's Prometheus block, run as written on a free port, then scraped: every
    metric and label its PromQL alerts use is there."""
    from .services import free_port

    text = DOC.read_text()
    snippet = re.search(r"## Prometheus\n.*?```python\n(.*?)```", text, re.S)
    assert snippet is not None
    port = free_port()
    assert "start_http_server(9464)" in snippet.group(1)
    code = snippet.group(1).replace("9464", str(port)) + SCRAPE_DRIVER.format(
        dead=DEAD_REDIS, key=KEY, port=port
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    scraped = done.stdout
    series = set(re.findall(r"^(satchel_\w+)\{", scraped, re.M))
    assert {
        "satchel_sessions_created_total",
        "satchel_security_events_total",
        "satchel_store_duration_seconds_bucket",
        "satchel_store_duration_seconds_count",
        "satchel_store_errors_total",
    } <= series
    assert 'reason="csrf_failure"' in scraped
    assert 'reason="tampered_cookie"' in scraped
    assert 'error_type="StoreUnavailable"' in scraped
    assert 'le="0.0001"' in scraped  # the advised buckets, in seconds

    alerts = "\n".join(re.findall(r"```promql\n(.*?)```", text, re.S))
    assert len(re.findall(r"```promql", text)) == 4
    used = set(re.findall(r"\b(satchel_[a-z_]+?)(?:\{|\[)", alerts))
    assert used
    assert used <= series, used - series
    for label in set(re.findall(r"\b(satchel_store_\w+|reason|error_type)\s*[=~]*\"", alerts)):
        assert f'{label}="' in scraped, label
    for label in re.findall(r"by \(([\w, ]+)\)", alerts):
        for name in label.replace(" ", "").split(","):
            assert name == "le" or f'{name}="' in scraped, name
