"""Where a durable log may be written: its folders below HEIRLOOM_HOME opened one at a time, never through a
link, each this user's (or root's) and closed to other writers; the file itself this user's alone, mode 0600.

A log holds clients' texts (a customer's words, a patient's). Another local user who made the file before the
daemon did (``0666``, theirs), or who made a folder on its way a link to a folder of theirs
(``feedback/PROJECT -> /their/folder``), read every text the daemon appended and could write records the next
training learns from; the checks of the mode bits alone saw nothing wrong.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from heirloom.core.errors import HeirloomError
from heirloom.core.paths import home
from heirloom.files import not_regular
from heirloom.owners import foreign_owner, owner_name

log = logging.getLogger("heirloom.store.logs")

#: A folder opened only to go on from it (no read permission needed where O_PATH exists), never a link.
_FOLDER = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW


class UnsafeLog(HeirloomError):
    """A log's folder is a link, another user's, or open to other writers; the message names it and the fix."""


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of the log file ``path`` (created ``0600``, never through a link in its place) in its folder,
    reached one folder at a time from HEIRLOOM_HOME when it is below it (else from its nearest existing folder,
    the profile's own path): a missing folder is made ``0700``, and one that is a link, another user's (root
    aside) or writable by others without a sticky bit raises UnsafeLog naming it. The file is the caller's to
    check (``file_problem``) once it knows it is a regular file."""
    folder = _folder(path.parent)
    try:
        return os.open(path.name, flags | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=folder)
    finally:
        os.close(folder)


def file_problem(found: os.stat_result) -> str | None:
    """What makes an open log file no private regular file of this user's, and the fix, or None."""
    if not stat.S_ISREG(found.st_mode):
        return not_regular(found.st_mode)
    if found.st_uid != os.geteuid():
        return (
            f"belongs to another user, {owner_name(found.st_uid)}, not to {_us()}: clients' texts go only to a "
            "file of heirloom's own user (run heirloom as the owner of its logs; a file someone else made there: "
            "remove it, or chown it and chmod 600 it)"
        )
    if found.st_mode & 0o077:
        return f"is open to others than its owner (mode {found.st_mode & 0o777:03o}): chmod 600 it"
    return None


def _folder(folder: Path) -> int:
    """A descriptor of ``folder`` reached as ``open_private`` says (the caller closes it)."""
    base, below = _start(folder)
    fd = os.open(base, _FOLDER & ~os.O_NOFOLLOW)  # HEIRLOOM_HOME, or a profile's path: links there are theirs
    try:
        for depth, name in enumerate(below, 1):
            here = base.joinpath(*below[:depth])
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fd)
            try:
                child = os.open(name, _FOLDER, dir_fd=fd)
            except OSError as exc:  # a link: ELOOP, or ENOTDIR under O_PATH
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode):
                    raise UnsafeLog(
                        f"{here} is a symbolic link: a log's folders are never followed through one below {base} "
                        "(make it a folder of the user that runs heirloom)"
                    ) from None
                raise
            os.close(fd)
            fd = child
            if (problem := folder_problem(os.fstat(fd))) is not None:
                raise UnsafeLog(f"{here} {problem}")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _start(folder: Path) -> tuple[Path, tuple[str, ...]]:
    """Where the walk to ``folder`` starts, and the names it goes through: HEIRLOOM_HOME (made if missing) for
    a folder below it, else the nearest folder of ``folder`` that exists (the walk makes the rest)."""
    root, target = Path(os.path.abspath(home())), Path(os.path.abspath(folder))
    if target.is_relative_to(root):
        _made(root)
        return root, target.relative_to(root).parts
    base = target
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    return base, target.relative_to(base).parts


def _made(folder: Path) -> None:
    """Create ``folder`` and each missing parent with mode 0700 (``mkdir(parents=True)`` gives the parents the
    umask's mode)."""
    if not os.path.lexists(folder):
        _made(folder.parent)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)


def folder_problem(found: os.stat_result) -> str | None:
    """What lets another user replace the logs in a folder, and the fix, or None."""
    mode = found.st_mode & 0o777
    if (owner := foreign_owner(found.st_uid)) is not None:
        return (
            f"belongs to another user, {owner}, not to {_us()}, who may replace the logs in it (run heirloom as "
            "its owner; a folder someone else made there: remove it, or chown it and chmod 700 it)"
        )
    if mode & 0o022 and not found.st_mode & stat.S_ISVTX:
        return (
            f"may be written by others than its owner (mode {mode:03o}, no sticky bit), who may replace the logs "
            "in it: chmod 700 it"
        )
    return None


def _us() -> str:
    """This process's user, as an error names it beside a file's owner."""
    return f"{owner_name(os.geteuid())}, who runs this"


#: What another user may do in a home of theirs or one open to them.
REPLACE = "they may replace its store and logs with their own"


def warn_open_home() -> None:
    """A warning when HEIRLOOM_HOME belongs to another user (root aside) or others may write it without a
    sticky bit: they may then rename its store and logs away and put their own in their place. Said at the
    start of ``serve`` and ``train``."""
    root = home()
    try:
        found = os.stat(root)
    except OSError:  # not made yet: made private
        return
    mode = found.st_mode & 0o777
    if (owner := foreign_owner(found.st_uid)) is not None:
        why = f"belongs to another user, {owner}, not to {_us()}: {REPLACE} (run heirloom as its owner)"
    elif mode & 0o022 and not found.st_mode & stat.S_ISVTX:
        why = f"may be written by others than its owner (mode {mode:03o}, no sticky bit): {REPLACE} (chmod 700 it)"
    else:
        return
    log.warning("the heirloom home %s (HEIRLOOM_HOME) %s", root, why)
