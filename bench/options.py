"""Options and checks several benchmark scripts share, said once.

A bench is not a test, but a stranger re-runs it: a wrong option, missing data, an unwritable
output or a failed ``heirloom`` child is one line naming what is wrong (exit 2 for usage, 1 for
a failed child), never a traceback after minutes of work.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import heirloom

#: The shared data sets beside the repository's folder (``../shared/data``).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


#: Seconds a bench waits for one reply before it says its server died or hangs (it waited for ever: h414 F2).
REPLY_TIMEOUT = 60


def no_reply(server: str) -> NoReturn:
    """Exit 1 naming the server that stopped answering (the caller's ``finally`` stops the others)."""
    sys.exit(f"{Path(sys.argv[0]).name}: error: no reply from {server} in {REPLY_TIMEOUT} s: it died or hangs")


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, ``timeout``, a cancelled CI job) ends a bench as Ctrl-C does: its ``finally`` stops the
    servers it started and ``atexit`` removes its folders, which outlived it under init (checker h414 F1); a
    second one waits for that (it stopped the stopping: v29 F3)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _interrupted(kind: type[BaseException], value: BaseException, trace: object) -> None:
    """A Ctrl-C says one line, not the traceback of wherever the measurement was (the exit stays 130)."""
    if issubclass(kind, KeyboardInterrupt):
        print(f"{Path(sys.argv[0]).name}: interrupted", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, trace)  # type: ignore[arg-type]


signal.signal(signal.SIGTERM, _terminated)
sys.excepthook = _interrupted


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data``: the data root, :func:`default_data` unless given."""
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data(),
        help="data root (default: $HEIRLOOM_DATA, else ../shared/data where it exists, else $HEIRLOOM_HOME/data, "
        "where `heirloom data fetch` puts the data sets)",
    )


def default_data() -> Path:
    """The data root of a script: ``$HEIRLOOM_DATA``, else ``../shared/data`` where it exists, else heirloom's own
    (``$HEIRLOOM_HOME/data``, where ``heirloom data fetch`` puts the data sets: a newcomer who fetched them got
    "no data at ../shared/data", checker h366 F1)."""
    if configured := os.environ.get("HEIRLOOM_DATA"):
        return Path(configured)
    return SHARED_DATA if SHARED_DATA.is_dir() else heirloom.data_root()


def require_data(parser: argparse.ArgumentParser, root: Path, *paths: str) -> None:
    """A usage error (exit 2) unless ``root`` and each ``root/path`` (a folder, or a file the script reads: a
    folder half fetched was a traceback) exist: ``NAME.py: error: no data at PATH (set HEIRLOOM_DATA)``."""
    for path in (root, *(root / name for name in paths)):
        if not path.exists():
            parser.error(f"no data at {path} (set HEIRLOOM_DATA)")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (counts: repeats, requests, rounds, shots)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number above 0 (durations in seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def positive_ints(text: str) -> list[int]:
    """argparse type: ``"5,10,20"`` -> ``[5, 10, 20]``, each at least 1, at least one."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected a comma list of whole numbers of at least 1, got {text!r}")
    try:
        return [positive_int(part) for part in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of whole numbers of at least 1, got {text!r}"
        ) from None


def choice_list(valid: Sequence[str]) -> Callable[[str], list[str]]:
    """argparse type: a comma list of names from ``valid``; an unknown name lists the valid ones."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in valid]
        if unknown or not names:
            said = f"unknown {', '.join(unknown)}" if unknown else f"none given in {text!r}"
            raise argparse.ArgumentTypeError(f"{said}; choose from {', '.join(valid)}")
        return names

    return parse


def writable_file(text: str) -> Path:
    """argparse type: a file path this process can write (checked before the run, not after it)."""
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {path}: no folder {folder}")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path}: permission denied")
    return path


def scratch(prefix: str) -> Path:
    """A temporary folder removed when the script exits, also after a failure or Ctrl-C
    (``HEIRLOOM_BENCH_KEEP=1`` keeps it, to read a daemon's log)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("HEIRLOOM_BENCH_KEEP") == "1":
        print(f"keeping {path} (HEIRLOOM_BENCH_KEEP=1)", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def shown(command: Sequence[str]) -> str:
    """``python -m heirloom train x`` -> ``heirloom train x`` (how a reader would type it)."""
    parts = [str(part) for part in command]
    if parts[1:3] == ["-m", "heirloom"]:
        return " ".join(["heirloom", *parts[3:]])
    return " ".join(parts)


def child_failed(command: Sequence[str], code: int, stderr: str) -> None:
    """Say which child failed, with its own error output, and exit 1."""
    name = Path(sys.argv[0]).name
    print(f"{name}: error: `{shown(command)}` failed (exit {code}):", file=sys.stderr)
    if stderr.strip():
        print(stderr.rstrip(), file=sys.stderr)
    sys.exit(1)


def run_child(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` with output captured; on failure ``child_failed`` (its stderr, exit 1)."""
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        child_failed(command, done.returncode, done.stderr)
    return done


def still_running(processes: Sequence[subprocess.Popen], logs: dict[int, Path] | None = None) -> None:
    """``child_failed`` for the first of ``processes`` that has exited (a daemon that could not start),
    with its log (``logs`` by pid) or a pointer to its error output above (where it went to this terminal)."""
    for process in processes:
        if (code := process.poll()) is not None:
            log = (logs or {}).get(process.pid)
            child_failed(process.args, code, log.read_text() if log else "(its error output is above)")


def not_ready(what: str, timeout: float) -> None:
    """A daemon that neither answered nor exited in ``timeout`` seconds: said, exit 1."""
    sys.exit(f"{Path(sys.argv[0]).name}: error: {what} not ready after {timeout:.0f}s")
