"""The ``heirloom`` console script: Ctrl-C while the command line still loads exits 130
quietly, as it does once a command runs (``HeirloomGroup.invoke``), not with a traceback."""

from __future__ import annotations

import signal
import sys
from typing import Any


def _interrupted(signum: int, frame: Any) -> None:
    sys.stderr.write("interrupted: stopped at Ctrl-C before the command started\n")
    sys.exit(130)


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
    from heirloom.cli.main import main as run  # click, rich, the commands: a noticeable moment

    if loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if running not in DAEMONS | {"ui"}:  # a daemon drains on SIGTERM, by its own handler
        from heirloom.cli.common import terminate_as_interrupt

        terminate_as_interrupt()
    run()
