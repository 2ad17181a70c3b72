"""Device-bound sessions (W3C DBSC): the browser proves, with a key it keeps in hardware,
that it is the device a session was bound to. This package holds the checks of the
browser's proofs and of the challenges they answer, the bound cookie, the binding kept in
the session's metadata, and the protocol every middleware speaks
(:mod:`satchel.dbsc.protocol`)."""

from .bound_cookie import bound_cookie_valid, new_bound_cookie
from .challenge import check_challenge, new_challenge
from .options import DeviceBindingOptions
from .proof import ALGORITHMS, InvalidProof, Registration, read_refresh, read_registration
from .state import DeviceState, device_bound, require_device_binding

__all__ = [
    "ALGORITHMS",
    "DeviceBindingOptions",
    "DeviceState",
    "InvalidProof",
    "Registration",
    "bound_cookie_valid",
    "check_challenge",
    "device_bound",
    "new_bound_cookie",
    "new_challenge",
    "read_refresh",
    "read_registration",
    "require_device_binding",
]
