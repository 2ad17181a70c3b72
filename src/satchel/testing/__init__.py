"""Test helpers for satchel and for stores built on it.

``satchel.testing.conformance.StoreConformance`` is the suite every server-side store
passes: subclass it in a pytest module and give it a ``make_store`` method. Requires
pytest.
"""

from ..locate import find_middleware
from .client import session_transaction
from .clock import FakeClock
from .drivers import StoreDriver

__all__ = ["FakeClock", "StoreDriver", "find_middleware", "session_transaction"]
