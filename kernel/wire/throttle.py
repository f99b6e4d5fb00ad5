"""Rate-limited warnings: what a stranger can make the daemon say, said at most so often."""

from __future__ import annotations

import logging
import time

#: Seconds between the lines a process logs for ``_reload``, which any client may call on a daemon
#: without Curve: 1,000 calls wrote 3,000 lines (the broker's and each of two workers'). A person's
#: reloads are each said; a flood is one line a second, counting the calls held back.
RELOAD_LOG_SECONDS = 1.0


class Every:
    """At most once per ``seconds``: whether a warning a stranger could repeat without end
    is due, and how many were held back before it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last = float("-inf")
        self._held = 0

    def due(self) -> int | None:
        """None when the last one was under ``seconds`` ago (this one is held back); else
        how many were held back since it."""
        now = time.monotonic()
        if now - self._last < self.seconds:
            self._held += 1
            return None
        held, self._last, self._held = self._held, now, 0
        return held

    def log(
        self, logger: logging.Logger, level: int, message: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        """``logger.log(level, message, *args)`` when due, saying how many were held back."""
        held = self.due()
        if held is None:
            return
        if held:
            message, args = f"{message} (%d more since the previous one)", (*args, held)
        logger.log(level, message, *args, exc_info=exc_info)
