"""The ``heirloom`` console script: Ctrl-C (SIGTERM) while the command line still loads exits 130 (143) with one
line, as it does once a command runs (``HeirloomGroup.invoke``), not with a traceback; once the command is over, it
ends the process with the command's own status."""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any


def _interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM while the command line still loads: one line, 130 or 143 (SIGTERM killed it silently
    within its first 0.3 to 0.8 s: checker h431 F3)."""
    stopped_by = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    sys.stderr.write(f"interrupted: stopped at {stopped_by} before the command started\n")
    sys.exit(130 if signum == signal.SIGINT else 143)


def _ignore_stops() -> None:
    """The last exit function: Ctrl-C and SIGTERM are ignored while the interpreter tears down (its modules, torch's
    operators: 1.7 s of a train's exit), where Python's default handling is back and either killed it silently,
    143 or 130 for a command that had done its work (checker v34 F1)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _ended(status: int) -> None:
    """Once the command is over, Ctrl-C or SIGTERM ends the process at once with the command's own status: one as
    Python shut down printed a traceback (``Exception ignored in atexit callback``) and exited 0, or killed it
    silently (checker h431 F1). Its output is flushed first; nothing it reported done is undone."""
    from heirloom.files import flush_std_streams  # here: this module's imports delay its first signal handler

    flush_std_streams()
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda *_: os._exit(status))


#: Commands that run as daemons: SIGHUP reloads them (``heirloom.wire.daemon.on_hang_up``; the gateway's own).
DAEMONS = frozenset({"serve", "worker", "gateway"})


def command(args: list[str]) -> str | None:
    """The command a command line runs: its first argument that is no option nor ``--log-level``'s value. Any
    argument was taken for it: ``heirloom train worker`` (a profile so named) died silently on SIGTERM (v23 F1)."""
    values = iter(args)
    for arg in values:
        if arg == "--log-level":
            next(values, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    running = command(sys.argv[1:])
    if running in DAEMONS:  # a hang-up while the daemon still loads killed it (exit 129)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    loading = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not when ignored (nohup, &)
    if loading:
        signal.signal(signal.SIGINT, _interrupted)
    daemon = running in DAEMONS | {"ui"}  # drains on SIGTERM by its own handler; a broker's loading worker just ends
    if not daemon and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)
    from heirloom.cli.main import main as run  # click, rich, the commands: a noticeable moment

    if loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if daemon:
        run()
        return
    from heirloom.cli.common import terminate_as_interrupt

    terminate_as_interrupt()
    atexit.register(_ignore_stops)  # registered first, so run last: after every plugin's own exit function
    try:
        run()
    except SystemExit as done:  # click ends every command so
        _ended(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
        raise
