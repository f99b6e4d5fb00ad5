"""What the gateway does between requests: SIGHUP, and noticing that its child daemon exited.

uvicorn calls ``on_tick`` on its event loop ten times a second; the gateway acts there, never in a
signal handler (logging inside a flood of signals recursed until the process died, as the daemon's
own SIGHUP handler notes), and without a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

import heirloom
from heirloom_plugins.gateway.app import Gateway
from heirloom_plugins.gateway.auth import read_tokens
from heirloom_plugins.gateway.command import exit_said

log = logging.getLogger("heirloom.gateway")


class HangUps:
    """SIGHUP, counted by its handler and acted on by the event loop (its default killed the gateway
    with every request in flight: exit 129). Installed before the daemon loads: a hang-up meanwhile
    waits for the loop."""

    def __init__(self) -> None:
        self.asked = False
        signal.signal(signal.SIGHUP, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.asked = True


class StopCuts(logging.Filter):
    """uvicorn's words for the requests its stop cut off at ``--timeout`` (a client not reading its replies), as one
    warning each, not an error and "Exception in ASGI application" with a traceback (checker h397 F1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
        if cancelled or record.getMessage().endswith("timeout graceful shutdown exceeded"):
            said = "a request still answering at the stop's --timeout was cut off" if cancelled else record.getMessage()
            record.msg, record.args, record.exc_info, record.exc_text = said, (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class GatewayServer(uvicorn.Server):
    """uvicorn's server, which on each tick also does what SIGHUP asked (``reload``) and watches
    the ``heirloom serve`` child the gateway runs, if any: once it exits, the gateway says so and
    stops (``exited`` holds what it said), for its supervisor to restart it; a gateway in front of
    no daemon answered every request 504 and its liveness probe, ``GET /v2``, 200."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        hang_ups: HangUps,
        reload: Callable[[], None],
        child: subprocess.Popen | None = None,
        profile: str | None = None,
    ):
        super().__init__(config)
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(each, StopCuts) for each in uvicorn_log.filters):
            uvicorn_log.addFilter(StopCuts())
        self.hang_ups = hang_ups
        self.reload = reload
        self.child = child
        self.profile = profile
        self.exited: str | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's, less its force quit on a second SIGINT, which skipped the app's shutdown: the daemon in
        the gateway's process was never drained nor its components stopped, and a traceback followed (checker
        h358 F1). A stop signal sent again changes nothing: ``--timeout`` already bounds the stop. The first
        one alone is raised again once uvicorn is done, for ``stop`` in the command to unwind the rest."""
        if not self.should_exit:
            self._captured_signals.append(sig)
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.hang_ups.asked:
            self.hang_ups.asked = False
            self.reload()
        if self.child is not None and self.exited is None and (code := self.child.poll()) is not None:  # reaped
            self.exited = f"heirloom serve {self.profile} exited with {exit_said(code)}"
            log.error("%s: stopping the gateway (exit 1) for its supervisor to restart it", self.exited)
            self.should_exit = True
        return await super().on_tick(counter)


def reread_tokens(gateway: Gateway, path: Path, curve_server_key: Path | None) -> None:
    """The tokens file read again (SIGHUP), with the checks of the start: a token removed from it is
    refused from now on. A file that fails them is logged and the tokens in use are kept, as the daemon
    keeps its Curve keys when a key folder cannot be read."""
    try:
        tokens = read_tokens(path, curve_server_key)
    except heirloom.HeirloomError as exc:
        log.warning("received SIGHUP: kept the %d token(s) in use: %s", len(gateway.tokens), exc)
        return
    log.info("received SIGHUP: read %s again: %d token(s)", path, len(tokens))
    gateway.use_tokens(tokens)
