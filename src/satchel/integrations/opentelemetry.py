"""OpenTelemetry metrics and spans for satchel: one call, every path.

::

    from satchel.integrations.opentelemetry import instrument

    instrument()  # once at start-up, after your OpenTelemetry SDK set-up

From then on every app in the process reports -- ASGI, WSGI, Flask, FastAPI, Django, sync
and async -- because the core reports at the one place they all go through
(:mod:`satchel.instrumentation`). Needs the ``otel`` extra (``opentelemetry-api``); with
no SDK installed or configured, the API's no-op providers make it cost next to nothing.
Until ``instrument()`` is called satchel does no telemetry work at all.

Metrics (docs/observability.md has the table and Prometheus alerts):

* ``satchel.sessions.created``, ``.regenerated``, ``.destroyed``, ``.expired``
  (attribute ``reason``: ``timeout`` or ``not_found``), ``.revoked`` (``reason``:
  ``handle``, ``all``, ``cap``);
* ``satchel.security.events`` (``reason``: ``csrf_failure``, ``tampered_cookie``,
  ``dropped_write``, ``corrupt_record``, ``device_refused`` with
  ``satchel.device.refusal``, ...);
* ``satchel.store.duration`` (seconds) and ``satchel.store.errors``, by
  ``satchel.store.kind`` and ``satchel.store.operation`` (and ``error.type``, the
  :mod:`satchel.errors` class, on errors).

Spans: one ``satchel.store.<operation>`` span per store call, a child of the current span
(the request's, with an HTTP instrumentation), with the store kind, the operation and its
outcome (``ok``, ``miss``, ``error``) only: never a session ID, a store key, a user ID or
session data, in any attribute, span or metric.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import instrumentation
from ..errors import StoreError
from ..events import SessionEvent
from ..ops import Delete, Load, Op, Touch, Update
from ..stores.base import Store
from . import missing_framework

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.context import Context
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise missing_framework(exc, "otel") from exc

__all__ = ["DURATION_BUCKETS", "OpenTelemetry", "instrument", "instrumented", "uninstrument"]

R = TypeVar("R")

SCOPE = "satchel"
"""The instrumentation scope: the meter's and the tracer's name."""

DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds. A local store answers in tens of microseconds, a network one in a
millisecond or so, a store in trouble in seconds (up to its timeout): the SDK's default
buckets (0, 5, 10, 25 ... as if in milliseconds) would put every call in the first."""

LIFECYCLE = ("created", "regenerated", "destroyed", "expired", "revoked")
"""The events counted as ``satchel.sessions.<kind>``."""

_NETWORK_STORES = frozenset({"redis", "postgresql", "mysql", "memcached"})
_STORE_KINDS = {
    "MemoryStore": "memory",
    "SQLiteStore": "sqlite",
    "FileStore": "file",
    "RedisStore": "redis",
    "PostgresStore": "postgresql",
    "MySQLStore": "mysql",
    "MemcachedStore": "memcached",
}
_MISSES = (Load, Touch, Update, Delete)
"""Operations whose None (or False) answer means the record was not there."""


def store_kind(store_type: type) -> str:
    """The ``satchel.store.kind`` of a store class: its URL scheme's family for the stores
    satchel ships (``sqlite``, ``redis``, ``postgresql``, ...), else the class name in
    lower case without ``Store``."""
    for cls in store_type.__mro__:
        if cls.__name__ in _STORE_KINDS and cls.__module__.startswith("satchel."):
            return _STORE_KINDS[cls.__name__]
    name = store_type.__name__.removesuffix("Store") or store_type.__name__
    return name.lower()


def operation_name(op_type: type) -> str:
    """``Load`` -> ``load``, ``CreateIndexed`` -> ``create_indexed``: the store method."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", op_type.__name__).lower()


@dataclass(frozen=True, slots=True)
class _Call:
    """Everything recorded about one kind of call (store class x operation), made once:
    the span name, its kind, and the attribute sets per outcome."""

    span: str
    span_kind: trace.SpanKind
    base: Mapping[str, str]
    ok: Mapping[str, str]
    miss: Mapping[str, str]
    can_miss: bool

    @classmethod
    def of(cls, store_type: type, op_type: type) -> _Call:
        kind, operation = store_kind(store_type), operation_name(op_type)
        base = {"satchel.store.kind": kind, "satchel.store.operation": operation}
        return cls(
            span=f"satchel.store.{operation}",
            span_kind=trace.SpanKind.CLIENT if kind in _NETWORK_STORES else trace.SpanKind.INTERNAL,
            base=base,
            ok={**base, "satchel.store.outcome": "ok"},
            miss={**base, "satchel.store.outcome": "miss"},
            can_miss=issubclass(op_type, _MISSES),
        )

    def outcome(self, result: object) -> Mapping[str, str]:
        return self.miss if self.can_miss and (result is None or result is False) else self.ok

    def failed(self, exc: BaseException) -> dict[str, str]:
        return {**self.base, "satchel.store.outcome": "error", "error.type": type(exc).__name__}


class OpenTelemetry:
    """The :class:`~satchel.instrumentation.Instrument` that records OpenTelemetry
    metrics and spans. Use :func:`instrument`; this class is public for tests and for
    apps that install it themselves."""

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        from .. import __version__

        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        self._lifecycle = {
            kind: meter.create_counter(
                f"satchel.sessions.{kind}", unit="{session}", description=f"Sessions {kind}"
            )
            for kind in LIFECYCLE
        }
        self._security = meter.create_counter(
            "satchel.security.events",
            unit="{event}",
            description="Security events (CSRF refusals, tampered cookies, dropped writes, "
            "device-binding refusals, ...) by reason",
        )
        self._duration = meter.create_histogram(
            "satchel.store.duration",
            unit="s",
            description="Duration of store operations",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._errors = meter.create_counter(
            "satchel.store.errors",
            unit="{error}",
            description="Store operations that failed, by satchel.errors class",
        )
        self.instruments: Mapping[str, object] = {
            **{f"satchel.sessions.{kind}": counter for kind, counter in self._lifecycle.items()},
            "satchel.security.events": self._security,
            "satchel.store.duration": self._duration,
            "satchel.store.errors": self._errors,
        }
        """Every instrument, by name (docs/observability.md's table)."""
        self._calls: dict[tuple[type, type], _Call] = {}
        self._reasons: dict[tuple[str | None, str | None], Mapping[str, str]] = {}

    # -- events -----------------------------------------------------------------------------

    def event(self, event: SessionEvent) -> None:
        kind = event.kind
        counter = self._lifecycle.get(kind)
        if counter is not None:
            counter.add(1, self._attributes(None, event.reason))
        elif kind == "security":
            self._security.add(1, self._attributes(event.reason or "unknown", None))
        elif kind == "device_refused":
            self._security.add(1, self._attributes("device_refused", event.reason))

    def _attributes(self, security: str | None, reason: str | None) -> Mapping[str, str]:
        """An event's attributes, made once per reason: ``reason`` (the security event's
        own, else the lifecycle event's) and ``satchel.device.refusal``. Reasons are
        satchel's own constants, never a request's input: a small, fixed set."""
        found = self._reasons.get((security, reason))
        if found is None:
            if security is None:
                found = {} if reason is None else {"reason": reason}
            elif reason is None:
                found = {"reason": security}
            else:
                found = {"reason": security, "satchel.device.refusal": reason}
            self._reasons[(security, reason)] = found
        return found

    # -- store calls ------------------------------------------------------------------------

    def _call_of(self, op: Op[Any], store: Store) -> _Call:
        types = (type(store), type(op))
        call = self._calls.get(types)
        if call is None:
            call = self._calls[types] = _Call.of(*types)
        return call

    def _begin(self, call: _Call) -> tuple[trace.Span, Token[Context] | None]:
        """The call's span, made the current one while it runs when it records (so a
        driver's own spans nest under it); a span that does not record (no SDK, or not
        sampled) costs nothing more."""
        span = self._tracer.start_span(call.span, kind=call.span_kind, attributes=call.base)
        if not span.is_recording():
            return span, None
        return span, context.attach(trace.set_span_in_context(span))

    def _done(
        self, span: trace.Span, recording: bool, call: _Call, start: float, result: object
    ) -> None:
        attributes = call.outcome(result)
        self._duration.record(time.perf_counter() - start, attributes)
        if recording:
            span.set_attribute("satchel.store.outcome", attributes["satchel.store.outcome"])

    def _failed(
        self, span: trace.Span, recording: bool, call: _Call, start: float, exc: Exception
    ) -> None:
        attributes = call.failed(exc)
        self._duration.record(time.perf_counter() - start, attributes)
        if isinstance(exc, StoreError):
            self._errors.add(1, attributes)
        if recording:  # not the exception itself: its message is not for telemetry
            span.set_attributes(attributes)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))

    @staticmethod
    def _end(span: trace.Span, token: Token[Context] | None) -> None:
        if token is not None:
            context.detach(token)
            span.end()

    def call(self, op: Op[R], store: Store) -> R:
        call = self._call_of(op, store)
        span, token = self._begin(call)
        start = time.perf_counter()
        try:
            result = op.run(store)
        except Exception as exc:
            self._failed(span, token is not None, call, start, exc)
            raise
        else:
            self._done(span, token is not None, call, start, result)
            return result
        finally:
            self._end(span, token)

    async def acall(self, op: Op[R], store: Store) -> R:
        call = self._call_of(op, store)
        span, token = self._begin(call)
        start = time.perf_counter()
        try:
            result = await op.arun(store)
        except Exception as exc:
            self._failed(span, token is not None, call, start, exc)
            raise
        else:
            self._done(span, token is not None, call, start, result)
            return result
        finally:
            self._end(span, token)


def instrument(
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> OpenTelemetry:
    """Report satchel's metrics and spans to OpenTelemetry, for every app in the process,
    from now on. The global providers are used unless others are given. Calling it again
    replaces the previous instrumentation (no double counting)."""
    instrumented = OpenTelemetry(meter_provider, tracer_provider)
    instrumentation.install(instrumented)
    return instrumented


def uninstrument() -> None:
    """Stop reporting: satchel goes back to doing no telemetry work at all."""
    instrumentation.install(None)


def instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return isinstance(instrumentation.installed, OpenTelemetry)
