"""The process's file descriptors counted against its limit. A daemon out of them accepts no
connection and cannot open its store index, and SQLite says only "unable to open database
file": whoever reports either failure says which it is (checker 272)."""

from __future__ import annotations

import errno
import os
import resource

#: Descriptors short of the limit that count as run out (listing /proc/self/fd takes one itself).
EXHAUSTED_MARGIN = 4
#: Where the hard limit is unlimited, the most a soft limit is raised to (Linux's default fs.nr_open).
UNLIMITED_CAP = 1 << 20


def descriptor_use() -> tuple[int, int] | None:
    """(open, soft limit) of this process's file descriptors; None where that cannot be told
    (no /proc, no limit). When none is left to list them with, every one is open."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        return len(os.listdir("/proc/self/fd")), limit
    except OSError as exc:
        return (limit, limit) if exc.errno in (errno.EMFILE, errno.ENFILE) else None


def out_of_descriptors() -> str | None:
    """A clause naming the exhaustion, for an error whose own message hides it; None when some are left."""
    use = descriptor_use()
    if use is None or use[1] - use[0] > EXHAUSTED_MARGIN:
        return None
    return f"this process is out of file descriptors ({use[0]} open of a limit of {use[1]})"


def raise_descriptor_limit() -> tuple[int, int] | None:
    """Raise the soft limit to the hard one, as Go's runtime does at start: the soft 1,024 of a
    shell let 1,100 idle connections lock new clients out. (before, after) when raised, else None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a cap below the hard limit (fs.nr_open): keep what was given
            return None
        return soft, target
    return None
