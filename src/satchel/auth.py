"""Log a user in and out the safe way: a new session ID at login, the record gone at logout."""

from __future__ import annotations

from .session import Session


def login(session: Session, user_id: str) -> None:
    """Bind ``user_id`` to the session under a new ID (the pre-login ID then resolves to
    nothing), restart its absolute timeout and record the device it logged in from."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    session.regenerate()
    session._update_meta(user_id=user_id, restart=True, device=True)


def logout(session: Session) -> None:
    """Destroy the session: the record is deleted and the cookie expired."""
    session.destroy()


def regenerate_on_privilege_change(session: Session) -> None:
    """A new ID for the same user and data, e.g. after sudo-mode or a role change."""
    session.regenerate()
