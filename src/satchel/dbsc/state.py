"""A session's device binding, as its metadata keeps it (``Meta.device``, compact JSON).

Three states: a session never asked to bind has no ``device`` at all; one that must bind
(the app required it) holds ``{"q": 1}`` until it does; a bound one holds the device's
public key, its identifier (the key's RFC 7638 thumbprint, which the browser sends back
as ``Sec-Secure-Session-Id``) and the issue time of the last challenge it answered, so
no challenge is accepted twice. A value that does not read back as one of these (edited
or damaged in the store) reads as bound to no usable key: the session is refused, never
let through unbound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _json
from ..record import is_binding

if TYPE_CHECKING:
    from ..session import Session


class DeviceState(NamedTuple):
    jwk: dict[str, str] | None = None  # the bound public key; None: not bound
    identifier: str = ""  # the browser's name for the binding (the key's thumbprint)
    answered_ms: int = 0  # issue time of the last challenge accepted
    bound_ms: int = 0  # when the session was bound (epoch milliseconds)
    required: bool = False  # the app requires a binding (refused after the grace period)
    corrupt: bool = False  # the stored value did not read back

    @property
    def bound(self) -> bool:
        return self.jwk is not None or self.corrupt

    def encode(self) -> str:
        raw: dict[str, Any] = {}
        if self.jwk is not None:  # the key first: stores tell a binding by BINDING_PREFIX
            raw = {"k": self.jwk, "i": self.identifier, "n": self.answered_ms, "b": self.bound_ms}
        if self.required:
            raw["q"] = 1
        text = _json.dumps(raw)
        assert is_binding(text) == (self.jwk is not None)
        return text

    @classmethod
    def decode(cls, text: str | None) -> DeviceState:
        if text is None:
            return _UNBOUND
        try:
            raw = _json.loads(text)
        except (ValueError, RecursionError):
            return _CORRUPT
        if type(raw) is not dict or not raw.keys() <= {"k", "i", "n", "b", "q"}:
            return _CORRUPT
        required = raw.get("q") == 1
        if "k" not in raw:
            return cls(required=required) if raw.keys() <= {"q"} else _CORRUPT
        jwk, identifier, answered, bound = raw["k"], raw.get("i"), raw.get("n"), raw.get("b")
        if (
            type(jwk) is not dict
            or not all(type(k) is str and type(v) is str for k, v in jwk.items())
            or type(identifier) is not str
            or not identifier
            or type(answered) is not int
            or answered < 0
            or type(bound) is not int
            or bound < 0
        ):
            return _CORRUPT
        return cls(jwk, identifier, answered, bound, required)


_UNBOUND = DeviceState()
_CORRUPT = DeviceState(corrupt=True)


def device_bound(session: Session) -> bool:
    """Whether ``session`` is bound to its device (as loaded or committed)."""
    meta = session.meta
    return meta is not None and meta.device is not None and DeviceState.decode(meta.device).bound


def require_device_binding(session: Session) -> None:
    """Require that ``session`` binds to its device: unless it does within ``dbsc_grace``
    of its login, its requests are refused (401). For privileged users or sessions, where
    ``dbsc_required`` would ask it of every one; a browser without DBSC cannot comply."""
    meta = session.meta
    state = DeviceState.decode(None if meta is None else meta.device)
    if state.bound:
        return  # nothing to ask, and no write: a stale one could restore a dropped binding
    if not state.required:
        session.set_device(state._replace(required=True).encode())
