"""satchel's loggers. ``satchel.security`` carries what an operator may want to alert on
(tampered cookies, corrupt records, writes dropped after a logout). No raw ID is logged:
at most :func:`satchel.ids.log_ref` of a store key."""

from __future__ import annotations

import logging

logger = logging.getLogger("satchel")
security = logging.getLogger("satchel.security")
