"""What the embedded stores (SQLite, files) share about the files they keep on disk."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from ..errors import ConfigurationError, StoreUnavailable
from ..log import security

#: Bits that give anyone but the owner access.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def _owner(uid: int) -> str:
    """``uid 65534 (nobody)``, or just the number when the user has no name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def make_private(path: Path, mode: int, what: str) -> None:
    """Make sure ``path``, if it exists, is this process's own and private to it.

    Session files hold what a cookie is worth (store keys, user IDs, session data), so:

    - a symbolic link is refused, not followed: what it points at can change after the
      check, and its target's owner is not the link's (the path must name the real file);
    - a file owned by any user but this process's effective user is refused, whatever its
      mode and whoever runs the app (root included): its owner can read and rewrite every
      session stored in it, and can change its mode back at any time;
    - a file of ours left open to group or others (mode 0644 by an older version, a copy,
      a restore from backup) is tightened to ``mode`` (0600 files, 0700 directories) with a
      ``satchel.security`` warning.

    A refusal is a :class:`ConfigurationError` naming the file, its owner and what to do.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreUnavailable(f"cannot check {what} {path}: {exc}", exc) from exc
    if stat.S_ISLNK(st.st_mode):
        raise ConfigurationError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}); satchel does not "
            f"follow links for its session files: give the real path, owned by this process "
            f"({_owner(os.geteuid())})"
        )
    current = stat.S_IMODE(st.st_mode)
    loose = current & OPEN_TO_OTHERS
    euid = os.geteuid()
    if st.st_uid != euid:
        opened = f", and is open to other users (mode {current:o})" if loose else ""
        raise ConfigurationError(
            f"{what} {path} belongs to {_owner(st.st_uid)}, not to this process "
            f"({_owner(euid)}){opened}: its owner can read and rewrite every session in it. "
            f"Remove it, or make it this user's (`chown {euid} {path}` then "
            f"`chmod {mode:o} {path}`), or run the app as its owner"
        )
    if not loose:
        return
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


def check_parent(directory: Path, what: str) -> None:
    """Refuse a ``directory`` holding session files that others (its group, or every
    user) may write to without the sticky bit: whoever can write there can rename, delete
    and replace the files in it (SQLite's -wal and -shm files come and go as connections
    close), whoever owns them.
    A sticky directory (like /tmp, mode 1777) lets only a file's owner remove or rename it.
    """
    try:
        st = directory.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreUnavailable(f"cannot check the directory {directory}: {exc}", exc) from exc
    current = stat.S_IMODE(st.st_mode)
    if current & (stat.S_IWGRP | stat.S_IWOTH) and not current & stat.S_ISVTX:
        who = "every user" if current & stat.S_IWOTH else "its group"
        raise ConfigurationError(
            f"the directory {directory} holding the {what} is writable by {who} "
            f"(mode {current:o}) without the sticky bit, so they can replace the files "
            f"in it: keep the store in a directory only this user can write to (`chmod go-w "
            f"{directory}`, or `chmod +t {directory}`)"
        )
