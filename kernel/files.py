"""Files, durably and safely: writes that a crash leaves either old or new, never half; reads of only a regular
file, whole or hashed as it streams. A FIFO named by mistake would hang a read (a source's fingerprint read its
files before anything else opened them), and a folder raised IsADirectoryError from deep inside a plugin. Every
layer writes and reads through these, so they sit beside the layers, not in one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class NotRegularFile(OSError):
    """The path names a folder, a FIFO, a device or a socket; ``strerror`` says which (not "missing")."""


def not_regular(mode: int) -> str:
    """``is a FIFO, not a regular file`` (a socket, a device), or ``is a directory, not a file``."""
    kind = {stat.S_IFDIR: "directory", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket"}.get(stat.S_IFMT(mode), "device")
    return f"is a {kind}, not a {'file' if kind == 'directory' else 'regular file'}"


def irregular(path: Path) -> str | None:
    """not_regular's words when ``path`` is there but no regular file, else None: by a stat (an open may block)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # nothing there, unreadable or a NUL in the name: the caller's open says which
        return None
    return None if stat.S_ISREG(mode) else not_regular(mode)


def open_regular(path: Path, flags: int = 0) -> int:
    """A read-only descriptor of ``path``, a regular file (else NotRegularFile), opened without
    blocking: a FIFO cannot hang the reader. ``flags`` adds to the open (``os.O_NOFOLLOW``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | flags)
    except OSError as exc:  # a socket: ENXIO, "No such device or address"
        if exc.errno == errno.ENXIO:
            raise NotRegularFile(errno.EINVAL, not_regular(os.stat(path).st_mode), str(path)) from None
        raise
    if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, not_regular(mode), str(path))
    return fd


def fsync_dir(directory: Path) -> None:
    """Persist a directory entry (a rename or a new file) on POSIX filesystems."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int | None:
    """The umask from ``/proc/self/status`` (Linux 4.7 on), None where it cannot be read there."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    if (found := _read_umask()) is not None:
        return found
    mask = os.umask(0o077)  # set and restored once, at import: os.umask changes it for every thread meanwhile
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it for every thread at once): from
    ``/proc/self/status``, else the one it had when heirloom was imported."""
    found = _read_umask()
    return _UMASK_AT_IMPORT if found is None else found


def temp_beside(path: Path, suffix: str) -> Path:
    """A new hidden name beside ``path`` for its temp file (16 random hex digits), named before the file is made so
    that a ``try`` around the making can remove it: SIGTERM as ``mkstemp`` returned (the file made, its name not
    yet ours) left a blob's temp file in the store (CI). The name is kept within 255 bytes, as the final one."""
    name = os.fsencode(path.name)[:230].decode(errors="ignore")
    return path.parent / f".{name}.{secrets.token_hex(8)}{suffix}"


def create_new(path: Path) -> int:
    """A write descriptor of a file made at ``path`` (mode 0600), which must not exist: never a link followed."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def cannot_create_in(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (the error's words), None when one can: by a probe file made and
    removed, as a mode check passes root on a read-only mount (which serves fine)."""
    probe = temp_beside(folder / "write-probe", ".tmp")
    try:
        os.close(create_new(probe))
    except OSError as exc:
        return exc.strerror
    finally:
        with contextlib.suppress(OSError):  # nothing there, or a read-only mount refusing even that
            probe.unlink()
    return None


def write_atomic(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` via a synced temp file in the same folder and a rename: a link at ``path`` is
    replaced, never written through. The file gets ``mode`` less the umask, as ``open`` gives a new file: under
    umask 022 stored files are shared readable (0644), under ``UMask=0077`` nothing is readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, ".tmp")
    try:
        fd = create_new(tmp)
        os.fchmod(fd, mode & ~umask())  # the new file is 0600 whatever the umask; a fixed 0644 ignored UMask=0077
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replaces_read_file(path: Path, files: Iterable[str | Path], folders: Iterable[Path]) -> str | None:
    """Why writing ``path`` would replace what a command reads: it is one of ``files``, or lies in one of
    ``folders`` (the store, the data); None otherwise. ``eval --html`` over the store's index and an export over the
    log it read replaced them whole, exit 0 (checker h426 F2). A link at ``path`` is not followed: writes
    rename over it (``write_atomic``)."""
    target = path.parent.resolve() / path.name
    for file in files:
        if target == Path(file).resolve():
            return f"it is {file}, which heirloom reads or keeps"
    for folder in folders:
        if target.is_relative_to(folder.resolve()):
            return f"it is inside {folder}, which heirloom reads or keeps"
    return None


def read_regular(path: str | Path) -> bytes:
    """The bytes of ``path``; NotRegularFile (one line from ``train`` and ``eval``) when it is a
    folder, a FIFO or a device."""
    with os.fdopen(open_regular(Path(path)), "rb") as handle:
        return handle.read()


def hash_regular(path: str | Path, digest: Any = None) -> Any:
    """``digest`` (a new ``hashlib.sha256()`` when None) updated with the bytes of ``path``, read 1 MiB at a time,
    and returned: a ``fingerprint()`` of a multi-GB file holds no more than that (``read_regular`` holds it all).
    Refuses what ``read_regular`` refuses."""
    digest = hashlib.sha256() if digest is None else digest
    with os.fdopen(open_regular(Path(path)), "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest


def unwritable(path: Path, error: OSError) -> str:
    """Why ``write_atomic(path, ...)`` failed, for an error to quote: its reason, and for a folder this user may not
    write in, that the file is made there and renamed into place (a writable ``path`` in a folder of someone
    else's said only "Permission denied", naming the file: checker v8)."""
    reason = error.strerror or str(error)
    if isinstance(error, PermissionError) and not os.access(path.parent, os.W_OK):
        return f"{reason}: the file is written new beside it, in {path.parent}, which this user may not write in"
    return reason


def flush_std_streams() -> None:
    """Flush stdout and stderr before an ``os._exit``, which skips Python's own flush (a command's output, a
    daemon's last lines); a reader gone, a stream closed or None (``>&-``) is no error then."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
