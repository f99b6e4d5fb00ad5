"""The private temp folder of a broker's default worker socket, and those a killed broker left behind.

``serve --workers N`` without ``--worker-bind`` binds its worker endpoint in a folder of its own
(``$TMPDIR/heirloom-broker-XXXX/workers``, mode 0700), removed when it stops. A broker killed by SIGKILL
(systemd's ``TimeoutStopSec``, the OOM killer) cannot remove it: each start made another, and a shared
host gathered them by the hundred. A starting broker removes those of its user whose socket nothing
listens on: a connection to it is refused (the test ``--bind`` makes of a stale ipc:// socket), and it was
bound a while ago (a broker binds just after making its folder).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

log = logging.getLogger("heirloom.wire.broker")

PREFIX = "heirloom-broker-"
#: The socket's name in the folder.
SOCKET = "workers"
#: Seconds since its socket was bound before a folder may be taken for a dead broker's.
SETTLED = 60.0


def worker_folder() -> tempfile.TemporaryDirectory[str]:
    """A new private folder for the worker socket, once the dead brokers' folders are removed."""
    remove_dead(Path(tempfile.gettempdir()))
    return tempfile.TemporaryDirectory(prefix=PREFIX)


def remove_dead(tmp: Path) -> list[Path]:
    """Remove the folders of ``tmp`` a broker of this user was killed in (see the module), and say so; the
    removed ones. Anything else is left alone: another user's folder, a link, a folder holding anything but
    its socket, or one with no socket yet (a broker starting, or one with ``--worker-bind``)."""
    removed = []
    for folder in sorted(tmp.glob(f"{PREFIX}*")):
        with contextlib.suppress(OSError):  # gone meanwhile (another broker starting), or not ours to read
            found = os.lstat(folder)
            if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or os.listdir(folder) != [SOCKET]:
                continue
            path = folder / SOCKET
            bound = os.lstat(path)
            if stat.S_ISSOCK(bound.st_mode) and time.time() - bound.st_mtime > SETTLED and _refused(path):
                path.unlink()
                folder.rmdir()
                removed.append(folder)
    if removed:
        log.info(
            "removed %d worker socket folder(s) of brokers that were killed (nothing listens on them): %s",
            len(removed),
            ", ".join(str(folder) for folder in removed[:3]) + (", ..." if len(removed) > 3 else ""),
        )
    return removed


def _refused(path: Path) -> bool:
    """Whether a connection to the unix socket ``path`` is refused: nothing listens on it (a busy or stopped
    listener, whose queue is full, is not refused but times out: kept)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError as exc:
            return exc.errno == errno.ECONNREFUSED
    return False
