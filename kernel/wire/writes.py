"""Durable writes a route makes for a client (feedback, an event, a handoff): what the client
hears when one fails. The operator's log names the file; the client learns no server path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from heirloom.store.logs import LogFull, LogWriteError
from heirloom.wire.protocol import RESOURCE_EXHAUSTED, UNAVAILABLE, RequestError
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.wire.writes")
#: A full or failing disk fails every write a client retries: said once a minute, not each time.
_said = {"full": Every(60.0), "failed": Every(60.0)}


def _log(kind: str, exc: Exception) -> None:
    _said[kind].log(log, logging.ERROR, "%s", exc)


@contextlib.contextmanager
def durable_write(what: str, limit: str | None = None) -> Iterator[None]:
    """Around an ``AppendLog``/``FeedbackLog`` write of ``what`` (``"feedback"``): a full log
    is RESOURCE_EXHAUSTED naming the limit it reached and its value (``limit``, the setting
    that sizes the log, e.g. ``apis.x.feedback_max_mb = 256 MiB``, else the log's size in
    bytes; or the project's log quota), a write that did not reach the disk UNAVAILABLE
    (retryable); either way nothing was recorded."""
    try:
        yield
    except LogFull as exc:
        _log("full", exc)
        reached = exc.limit if exc.quota or limit is None else limit
        full = f"the {what} log is full: {reached} reached; nothing was recorded"
        raise RequestError(RESOURCE_EXHAUSTED, full) from None
    except LogWriteError as exc:
        _log("failed", exc)
        raise RequestError(
            UNAVAILABLE,
            f"the {what} could not be written to disk; nothing was recorded, retry later",
            retry_after_ms=1000,
        ) from None
