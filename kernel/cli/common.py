"""What every command shares: the kernel of this invocation, errors, JSON, --set.

Command modules import from here, never from each other or from :mod:`heirloom.cli.main`,
so the command line has no import circles.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import functools
import io
import json
import logging
import os
import re
import signal
import sys
import traceback
import unicodedata
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from heirloom.cli.logs import writes_json
from heirloom.core.errors import HeirloomError, PluginError, Problem, ProfileError
from heirloom.files import NotRegularFile

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ResolvedProfile

EXIT_INVALID = 2
#: The answer is no, by design: a promotion declined, a daemon not ready.
EXIT_DECLINED = 3
KERNEL_KEY = "heirloom.kernel"
JSON_STDOUT_KEY = "heirloom.json_stdout"


class OutputFailed(BaseException):
    """The CLI's own write to stdout (or stderr) failed: the reader of a pipe went away (``train ... | head``), a
    full disk (``>/dev/full``), a closed stdout (``>&-``). No component's bug: a BaseException, as
    KeyboardInterrupt is, so the ``except Exception`` of a command that names the component whose code failed
    (:func:`fail_unexpectedly`) lets it pass; ``HeirloomGroup.invoke`` ends the command (:meth:`exit`). It said
    "training models.m (... plugin text) failed: BrokenPipeError" with a traceback, exit 1 (checker h342 F5, F12)."""

    def __init__(self, error: OSError, stream: TextIO | None, name: str = "stdout"):
        super().__init__(error)
        self.error, self.stream, self.name = error, stream, name

    def exit(self) -> NoReturn:
        """Exit 141 quietly for a pipe whose reader went away, as a tool killed by SIGPIPE; else one line, exit 1."""
        if isinstance(self.error, BrokenPipeError):
            reader_gone(self.stream)
        if self.name == "stderr":  # nowhere left to say it
            sys.exit(1)
        fail(f"error: cannot write the output to stdout: {self.error.strerror or self.error}")


def reader_gone(stream: TextIO | None) -> NoReturn:
    """Exit 141, as a tool killed by SIGPIPE exits in a shell: ``heirloom data show ... | head`` closed the pipe,
    and what it read was all it wanted. ``stream`` is pointed at /dev/null: no second error as Python flushes."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # ValueError: a stream already closed
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())  # type: ignore[union-attr]
    sys.exit(141)


class _ClosedStdout(io.TextIOBase):
    """What the CLI writes its output to when there is no stdout (``heirloom ... >&-``): an error, as ``echo hi
    >&-`` says one; rich printed into nothing, and ``--json`` went to stderr, exit 0 (checker h342 F3)."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "stdout is closed")


class PipedConsole(Console):
    """rich's Console, but a write that fails (a reader gone away, a full disk, a closed stdout) is
    :class:`OutputFailed`: exit 141 for a pipe, as with ``--json``, where rich exits 1 ("it failed"); and
    at least NARROWEST columns wide, ``COLUMNS=0`` read as unset, as a terminal of 0 columns is: rich printed
    every table and report as nothing at 0 (exit 0, a train's report and ``stored`` line gone) and as empty
    cells at 1 to 5 (a script's ``COLUMNS=$(tput cols)`` where no terminal is sized: checker h409 F1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._width == 0:
            self._width = None

    @property
    def size(self) -> ConsoleDimensions:
        found = super().size
        return ConsoleDimensions(max(found.width, NARROWEST), found.height)

    @property
    def found_width(self) -> int:
        """The terminal's own width, under NARROWEST too: a table too wide for it prints as blocks (``tables``)."""
        return super().size.width

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    @property  # type: ignore[override]
    def file(self) -> TextIO:
        if self._file is None and not self.stderr and sys.stdout is None:
            return _ClosedStdout()
        return super().file

    @file.setter
    def file(self, new_file: TextIO) -> None:
        self._file = new_file

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to print: the rest would only fail again
        raise BrokenPipeError

    def _check_buffer(self) -> None:  # where rich writes (and calls on_broken_pipe): its only OSError
        try:
            super()._check_buffer()
        except OSError as exc:
            raise OutputFailed(exc, self.file, "stderr" if self.stderr else "stdout") from exc


#: Columns a table needs to show its cells: a narrower terminal wraps the lines it gets, not the cells.
NARROWEST = 40
#: No emoji codes: rich turned the line number of ``train.csv:100:`` into 💯 and a label ``:smile:`` into 😄.
console = PipedConsole(soft_wrap=True, emoji=False)
#: Unwrapped too: a message or progress line piped to a log stays one line to grep.
err_console = PipedConsole(stderr=True, soft_wrap=True, emoji=False)


#: C0 and C1 control characters: escape sequences would drive the operator's terminal; and
#: bidi embeddings, overrides and isolates, which would reorder the cells after them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: The same, but line breaks and tabs, which a message of several lines keeps.
_CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(value: Any, *, lines: bool = False) -> Text:
    """``value`` (text a client sent) for a terminal: rich markup shown as typed, control
    characters shown escaped (``\\x1b``), never obeyed; ``lines`` keeps line breaks (a cell
    of one item per line)."""
    return Text(_encodable((_CONTROL_IN_LINES if lines else _CONTROL).sub(_escaped, str(value))))


def _encodable(text: str) -> str:
    """``text`` as stdout's encoding writes it, each character it lacks as its escape, so a table measures what it
    prints: in an ASCII locale ``caf\\xe9`` ran past the border of a column measured for ``café`` (v32 F6)."""
    encoding = codecs.lookup(console.encoding or "utf-8").name
    return text if encoding == "utf-8" else text.encode(encoding, "backslashreplace").decode(encoding)


def printable(message: str) -> str:
    """An error message for a terminal: it may quote what a file or a daemon held (a CSV
    header, a client's key), so escape sequences in it are shown escaped, never obeyed."""
    return _CONTROL_IN_LINES.sub(_escaped, message)


def one_line(message: str) -> str:
    """``message`` as one line of a list of them (a profile's problems: a file's name may hold a line
    break, F13): every control character shown escaped, line breaks and tabs too."""
    return _CONTROL.sub(_escaped, message)


def _escaped(match: re.Match[str]) -> str:
    return ascii(match[0])[1:-1]


def get_kernel(ctx: click.Context | None = None) -> Kernel:
    """One Kernel per command invocation, created on first use."""
    root = (ctx or click.get_current_context()).find_root()
    if KERNEL_KEY not in root.meta:
        from heirloom.core.kernel import Kernel  # here: a command that needs no kernel (call) starts faster

        root.meta[KERNEL_KEY] = Kernel()
    return root.meta[KERNEL_KEY]


#: What a command interrupted by Ctrl-C says, exit 130 (``HeirloomGroup.invoke``, :func:`fail_unexpectedly`).
INTERRUPTED = "interrupted: stopped at Ctrl-C; what was reported done is kept, nothing half-written is"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, a CI cancel) in a command that is no daemon: unwound as Ctrl-C is, so
    what was half-written is removed, then exit 143. It killed ``train`` mid-write, silently, a blob's temp file
    left in the store at each try (checker h398 F1)."""


def terminate_as_interrupt() -> None:
    """SIGTERM raises :class:`Terminated` from here on (a daemon's own handler replaces this one as it starts)."""

    def raised(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, raised)


def interrupted(exc: BaseException) -> NoReturn:
    """Exit as a shell expects of the signal that stopped the command, saying what holds: first what the layers it
    unwound noted it had done (``add_note``: a gc stopped between its two steps names the versions it removed)."""
    for note in getattr(exc, "__notes__", ()):
        say_error(note, logging.WARNING)
    if isinstance(exc, Terminated) or any(isinstance(cause, Terminated) for cause in _chain(exc)):
        fail(INTERRUPTED.replace("Ctrl-C", "SIGTERM"), 143)
    fail(INTERRUPTED, 130)


def fail_unexpectedly(doing: str, exc: BaseException) -> NoReturn:
    """An exception no one raised on purpose (a plugin's bug, or heirloom's): its traceback,
    then a last line naming what was being done (``training models.clf (my-model)``), so the
    end of the output says which component failed. A path that is no regular file (a folder or
    a FIFO where a profile names a file) is the user's mistake: one line. A Ctrl-C that Python
    wrapped (a RuntimeError from ``__set_name__`` while a class body ran, in a lazy import) is a
    Ctrl-C: exit 130, as any, not a plugin's bug (checker 305 F10)."""
    if _caused_by_ctrl_c(exc):
        interrupted(exc)
    if isinstance(exc, NotRegularFile):
        fail(f"error: {doing} failed: {exc.filename} {exc.strerror}")  # "is a FIFO, not a regular file"
    traceback.print_exception(exc)
    fail(f"error: {doing} failed: {type(exc).__name__}: {exc} (the traceback above shows where)")


def _caused_by_ctrl_c(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt or was raised while handling one (``__cause__``, ``__context__``)."""
    return any(isinstance(cause, KeyboardInterrupt) for cause in _chain(exc))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, in turn."""
    seen: set[int] = set()  # a chain may loop back on itself
    while exc is not None and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__


def whose(kernel: Kernel, kind: str, key: str, use: str) -> str:
    """``models.m (my-model, plugin P (DIST VER))``: a component and the plugin whose code failed, as a
    daemon names it (a model type of one plugin under another's api: whose bug is it?)."""
    info = kernel.plugins.provider(kind, use)
    return f"{key} ({use}, plugin {info.label})" if info is not None else f"{key} ({use})"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr (a JSON log line under ``--log-format json``), exit ``code``."""
    say_error(message)
    sys.exit(code)


def say_error(message: str, level: int = logging.ERROR) -> None:
    """Print ``message`` to stderr (a JSON log line of ``level`` under ``--log-format json``): an error the command
    goes on past, or a warning."""
    if writes_json():
        logging.getLogger("heirloom.cli").log(level, "%s", message)
    else:
        err_console.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def report_profile_error(exc: ProfileError) -> NoReturn:
    """Every problem on its own line (``FILE: key.path: message``; JSON log lines under
    ``--log-format json``), exit 2. A message of several lines (a formulary file's mistakes, one
    each) is a line each at its key, not one line of ``\\n``s (checker h395 F1)."""
    for problem in exc.problems:
        if writes_json():
            logging.getLogger("heirloom.cli").error("%s", problem)
        else:
            for line in problem.message.split("\n"):
                click.echo(one_line(str(Problem(problem.file, problem.path, line))), err=True)
    sys.exit(EXIT_INVALID)


def resolve_or_exit(
    profile: str,
    overrides: tuple[str, ...] = (),
    *,
    store: bool = False,
    more: Callable[[ProfileError], list[Problem]] = lambda exc: [],
) -> ResolvedProfile:
    """The resolved PROFILE, or every problem (and those ``more`` finds then) on stderr and exit 2. With
    ``store`` (a command that opens the profile's artifact store), that it opens too (:func:`store_or_exit`)."""
    try:
        resolved = get_kernel().resolve(profile, overrides)
    except HeirloomError as exc:
        _exit_for(exc, more)
    if store:
        store_or_exit(resolved)
    return resolved


def store_or_exit(resolved: ResolvedProfile, create: bool = True) -> Any:
    """The profile's artifact store, opened (made where there is none yet: ``train`` asks once it refused what it
    can without it, so a refused train makes no store), or exit: a ``[store] path`` that cannot be a store (a file,
    a folder it may not write) names the file and ``store.path``, as ``profile check`` does. Without ``create`` (a
    command that only reads the store: ``eval``), where there is none: ``no store yet``, exit 1, nothing made."""
    from heirloom.store.artifacts import StoreMissing
    from heirloom.store.checks import open_store

    try:
        return open_store(get_kernel(), resolved, create)
    except StoreMissing as exc:
        fail(f"error: no store yet: {exc}: no version trained (heirloom train makes one)")
    except HeirloomError as exc:
        _exit_for(exc)


def _exit_for(exc: HeirloomError, more: Callable[[ProfileError], list[Problem]] = lambda exc: []) -> NoReturn:
    """A ProfileError's problems (and those ``more`` finds then), exit 2; another error in one line: exit 2 for a
    plugin's (a name two register), else 1 (the default store's)."""
    if isinstance(exc, ProfileError):
        from heirloom.store.checks import cut_short_problems

        report_profile_error(ProfileError([*exc.problems, *more(exc), *cut_short_problems(get_kernel(), exc)]))
    fail(f"error: {exc}", EXIT_INVALID if isinstance(exc, PluginError) else 1)


def plugin_output_to_stderr(command: Callable[..., None]) -> Callable[..., None]:
    """For a command with ``--json`` that runs plugin code: under ``--json``, what that code prints
    (a ``print()`` in ``fit``) goes to stderr, so stdout holds the JSON alone (:func:`echo_json`)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        if not kwargs.get("as_json"):
            return command(*args, **kwargs)
        click.get_current_context().meta[JSON_STDOUT_KEY] = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            return command(*args, **kwargs)

    return run


def echo_json(text: str) -> None:
    """One JSON document (or line) to stdout: the real one under :func:`plugin_output_to_stderr`, each character
    its encoding cannot write as its ``\\u`` escape (the same JSON); a write that fails is :class:`OutputFailed`."""
    context = click.get_current_context(silent=True)
    meta = context.meta if context is not None else {}
    stdout: TextIO | None = meta.get(JSON_STDOUT_KEY, sys.stdout)
    encoding = getattr(stdout, "encoding", None)
    ascii_only = encoding and codecs.lookup(encoding).name not in ("utf-8", "ascii")
    if (fd := _descriptor(stdout)) is None:
        return _echo(_writable(text, encoding), stdout)
    try:  # PYTHONIOENCODING=utf-16 wrote UTF-16 bytes (a mark, NULs) no JSON reader takes (v25 F3): ASCII bytes
        stdout.flush()  # type: ignore[union-attr]
        data = memoryview(_writable(text, encoding).encode("ascii" if ascii_only else "utf-8", "backslashreplace"))
        while data:  # each byte or an OSError: a pipe whose reader left mid-write took 64 KiB of a larger reply,
            data = data[os.write(fd, data) :]  # and Python's buffered write dropped the rest, exit 0 (h409 F4)
        os.write(fd, b"\n")
    except OSError as exc:
        raise OutputFailed(exc, stdout) from exc
    return None


def _descriptor(stream: TextIO | None) -> int | None:
    """The file descriptor ``stream`` writes to, or None for one without (a test's StringIO, a closed stdout)."""
    try:
        return stream.fileno() if stream is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def echo(text: str, *, nl: bool = True) -> None:
    """``text`` (a line) to stdout, as a command's own output: a write that fails (a full disk, a closed stdout, a
    reader gone away) is :class:`OutputFailed`, where ``click.echo`` wrote nothing under ``>&-``, exit 0, and
    said ``error: No space left on device`` under ``>/dev/full`` (checker v8 F3). For what a command prints
    alone: a plugin's ``print()`` in a daemon goes to Python's stdout, whose failures fail no request."""
    _echo(text, sys.stdout, nl)


def _echo(text: str, stream: TextIO | None, nl: bool = True) -> None:
    try:
        if stream is None:  # `>&-` (under plugin_output_to_stderr, stderr stands in stdout's place: JSON_STDOUT_KEY)
            raise OSError(errno.EBADF, "stdout is closed")
        click.echo(text, file=stream, nl=nl)
    except OSError as exc:
        raise OutputFailed(exc, stream) from exc


def _writable(text: str, encoding: str | None) -> str:
    """JSON ``text`` for a stdout of ``encoding``: on one that is not UTF-8 (PYTHONIOENCODING=ascii, a latin-1
    locale) each character past ASCII as its ``\\u`` escape, so the bytes are UTF-8 as RFC 8259 asks: stdout's
    backslashreplace wrote ``\\xf1``, no JSON, and latin-1's own ``é`` byte failed UTF-8 readers (h407 F5)."""
    if not encoding or codecs.lookup(encoding).name == "utf-8":
        return text
    return _NOT_ASCII.sub(lambda found: json.dumps(found[0])[1:-1], text)


def print_json(data: Any) -> None:
    echo_json(json_text(data, indent=2))


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as strict JSON, as every --json prints it: a non-finite number (a NaN metric) is
    null, where json.dumps writes a bare NaN that no JSON reader but Python's takes."""
    from heirloom.store.content import finite  # here: `heirloom call` (a probe) imports this module, not the store

    return terminal_safe(json.dumps(finite(data), indent=indent, default=str, ensure_ascii=False, allow_nan=False))


#: Characters a terminal acts on or reorders by rather than shows: controls (the C1 ``\x9b`` starts an
#: escape sequence as ``ESC [`` does), format characters (bidi overrides and isolates, zero-width
#: ones), line and paragraph separators. ``json.dumps`` escapes only those below ``\x20``.
_ACTED_ON = frozenset({"Cc", "Cf", "Zl", "Zp"})  # not store.labels' INVISIBLE: `heirloom call` skips the store
_NOT_ASCII = re.compile(r"[^\x00-\x7e]")


def terminal_safe(text: str) -> str:
    """JSON ``text`` with every _ACTED_ON character in it as its ``\\u`` escape: the same JSON (such a
    character is only ever inside a string), where a customer's ``\\u202e`` or ``\\x9b31m`` in a handoff
    printed raw turned the reader's terminal. Other letters and emoji stay as they are."""
    return _NOT_ASCII.sub(_acted_on_escaped, text)


def _acted_on_escaped(found: re.Match[str]) -> str:
    char = found.group()
    return json.dumps(char)[1:-1] if unicodedata.category(char) in _ACTED_ON else char
