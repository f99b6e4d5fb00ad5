"""Whose a file is: whoever owns a secret key, a tokens file or a log may read and rewrite it whatever its mode
bits say (``chmod`` is theirs), so a mode check alone let another local user's file pass. Beside the layers, as
the store (logs), the wire (key files) and plugins (the gateway's tokens) all ask."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def owner_name(uid: int) -> str:
    """``NAME (uid N)``, or ``uid N`` for a uid without a user (a file copied from another host)."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def not_mine(uid: int) -> str | None:
    """``owner_name(uid)`` when a file owned by ``uid`` is not this process's user's, root's included (a backup
    writes only into its own user's folders); else None."""
    return None if uid == os.geteuid() else owner_name(uid)


def foreign_owner(uid: int) -> str | None:
    """``owner_name(uid)`` when a file owned by ``uid`` is another local user's: neither this process's
    user nor root (who may read and change every file anyway; Kubernetes mounts a Secret's files as
    root's); else None."""
    return None if uid == 0 else not_mine(uid)


def unreadable(path: Path) -> str:
    """Why this process may not read ``path``, a file of the store that is intact but not its user's to read (a
    version trained by hand as root under ``umask 077`` into a service user's store was called damaged, with
    advice to restore it from a backup: checker v8)."""
    found = os.stat(path)
    return (
        f"{path} cannot be read by {owner_name(os.geteuid())}, who runs this: it belongs to "
        f"{owner_name(found.st_uid)}, mode {found.st_mode & 0o777:03o} (run heirloom as the user that owns the "
        "store, or chown the file to that user)"
    )
