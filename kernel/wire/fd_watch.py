"""A daemon's warning as it nears its limit of file descriptors. Each client connection holds
one; past the limit new clients get no connection at all and the store index cannot be
opened, which clients see only as silence (checker 272: the one line logged blamed the
store's disk)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from heirloom.store.descriptors import descriptor_use, raise_descriptor_limit
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.wire.fd_watch")

#: Seconds between two counts of the open descriptors.
CHECK_SECONDS = 2.0
#: Share of the limit from which the daemon warns (a flood of connections takes the rest in seconds).
WARN_SHARE = 0.9
#: Seconds between two such warnings.
WARN_SECONDS = 60.0


@contextlib.contextmanager
def watched_descriptors(every: float = CHECK_SECONDS) -> Iterator[None]:
    """First raise the soft limit to the hard one; while the block runs, count the process's open
    descriptors every ``every`` seconds and warn (at most once a minute) from ``WARN_SHARE`` of the
    limit on (on ipc:// libzmq 4.3 aborts the process at the limit: docs/OPERATIONS.md)."""
    if raised := raise_descriptor_limit():
        log.info("raised this process's limit of open file descriptors from %d to %d (its hard limit)", *raised)
    stop, warnings = threading.Event(), Every(WARN_SECONDS)

    def watch() -> None:
        while not stop.wait(every):
            use = descriptor_use()
            if use is not None and use[0] >= use[1] * WARN_SHARE:
                warnings.log(
                    log,
                    logging.WARNING,
                    "%d of this process's limit of %d file descriptors are open: at the limit new clients get no "
                    "connection (and libzmq's I/O thread spins on those waiting) and the store cannot be opened; "
                    "raise it (LimitNOFILE, ulimit -n) or find the idle connections (docs/OPERATIONS.md)",
                    *use,
                )

    threading.Thread(target=watch, name="heirloom-descriptors", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
