"""What the embedded stores (SQLite, files) share about the files they keep on disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigurationError, StoreUnavailable
from ..log import security

#: Bits that give anyone but the owner access.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def make_private(path: Path, mode: int, what: str) -> None:
    """Make sure ``path``, if it exists, is not readable or writable by group or others.

    Session files hold what a cookie is worth (store keys, user IDs, session data), so a
    file left mode 0644 by an older version, a copy, or a restore from backup is tightened
    to ``mode`` (0600 files, 0700 directories) when this process owns it, with a
    ``satchel.security`` warning. A file owned by another user is not ours to change:
    opening the store is refused with a :class:`ConfigurationError` that says what to do.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreUnavailable(f"cannot check {what} {path}: {exc}", exc) from exc
    loose = stat.S_IMODE(st.st_mode) & OPEN_TO_OTHERS
    if not loose:
        return
    current = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{what} {path} is open to other users (mode {current:o}) and belongs to uid "
            f"{st.st_uid}, not to this process (uid {os.geteuid()}), so satchel will not "
            f"change it: run `chmod {mode:o} {path}` as its owner, or run the app as that user"
        )
    try:
        path.chmod(mode)
    except OSError as exc:
        raise ConfigurationError(
            f"{what} {path} is open to other users (mode {current:o}) and its mode cannot "
            f"be changed ({exc}): run `chmod {mode:o} {path}`"
        ) from exc
    security.warning(
        "%s %s was open to other users (mode %o): changed to %o", what, path, current, mode
    )
