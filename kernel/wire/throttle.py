"""Rate-limited warnings: what a stranger can make the daemon say, said at most so often."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

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


class Budget:
    """At most ``count`` lines per ``seconds`` of what peers can make the daemon say over and over
    by coming and going (a peer joining and leaving the worker endpoint in a loop wrote 600,000
    lines in 20 s); past them, one line when the period is over says how many were not logged."""

    def __init__(self, count: int, what: str, seconds: float = 60.0):
        self.count, self.what, self.seconds = count, what, seconds
        self._start = time.monotonic()
        self._used = self._held = 0

    def log(self, logger: logging.Logger, level: int, message: str, *args: object, always: bool = False) -> None:
        """``logger.log(level, message, *args)`` while the period's budget lasts, or ``always``
        (the daemon's own processes: not counted)."""
        if always or not logger.isEnabledFor(level):
            logger.log(level, message, *args)
            return
        self.roll(logger)
        if self._used < self.count:
            self._used += 1
            logger.log(level, message, *args)
        else:
            self._held += 1

    def roll(self, logger: logging.Logger) -> None:
        """Start a new period once this one is over, saying how many lines it held back (called
        on the daemon's periodic checks too: said even when the peers went quiet)."""
        now = time.monotonic()
        if now - self._start < self.seconds:
            return
        if self._held:
            logger.warning("%d more %s in the last %.0f s, not logged", self._held, self.what, self.seconds)
        self._start, self._used, self._held = now, 0, 0


class OncePerPeer:
    """A warning about what one peer sends wrong over and over (a worker of another language that guessed the wire
    wrong repeats it every heartbeat): said once per peer (the last ``peers`` said are remembered), within a
    ``Budget`` of ``count`` lines a minute, so a stranger making up peers cannot make the daemon say more."""

    def __init__(self, count: int, what: str, peers: int = 1024):
        self.budget = Budget(count, what)
        self._said: OrderedDict[bytes, None] = OrderedDict()
        self._peers = peers

    def first(self, peer: bytes) -> bool:
        """Whether nothing was said for ``peer`` yet (then say it with ``budget.log``: it counts as said)."""
        if peer in self._said:
            return False
        self._said[peer] = None
        if len(self._said) > self._peers:
            self._said.popitem(last=False)
        return True
