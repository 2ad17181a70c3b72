"""satchel for OpenTelemetry's zero-code instrumentation: ``opentelemetry-instrument``.

satchel registers :class:`SatchelInstrumentor` under the ``opentelemetry_instrumentor``
entry point, so ``opentelemetry-instrument gunicorn app:app`` (or ``uvicorn``) instruments
satchel with the other libraries it finds, as if the app had called
:func:`satchel.integrations.opentelemetry.instrument`.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=satchel`` leaves it out. Apps that set OpenTelemetry
up in code call ``instrument()`` instead, or ``SatchelInstrumentor().instrument()`` like
any contrib instrumentor. Needs ``opentelemetry-instrumentation`` (which
``opentelemetry-instrument`` comes with).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,  # the module opts out of type checking
)

from .opentelemetry import instrument, uninstrument

__all__ = ["SatchelInstrumentor"]


class SatchelInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``instrument(meter_provider=..., tracer_provider=...)`` and ``uninstrument()``,
    through OpenTelemetry's instrumentor interface."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # satchel instruments itself: no other package to look for

    def _instrument(self, **kwargs: Any) -> None:
        instrument(
            meter_provider=kwargs.get("meter_provider"),
            tracer_provider=kwargs.get("tracer_provider"),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
