"""Device-bound sessions (W3C DBSC): the browser proves, with a key it keeps in hardware,
that it is the device a session was bound to. Work in progress (issue 13): so far the
checks of the browser's proofs and of the challenges they answer, and the bound cookie."""

from .bound_cookie import bound_cookie_valid, new_bound_cookie
from .challenge import check_challenge, new_challenge
from .proof import ALGORITHMS, InvalidProof, Registration, read_refresh, read_registration

__all__ = [
    "ALGORITHMS",
    "InvalidProof",
    "Registration",
    "bound_cookie_valid",
    "check_challenge",
    "new_bound_cookie",
    "new_challenge",
    "read_refresh",
    "read_registration",
]
