"""Training held to the resource manager's memory budget (``check_memory``).

Two ways, because a model spends long stretches without reporting progress (building its
features, one large tensor operation): each progress update asks the manager (at most every
``MEMORY_CHECK_S``), and a watchdog thread asks it on the same beat meanwhile; past the
budget it interrupts the training in the main thread, which then raises the manager's
error. An allocation the machine refuses (torch's "can't allocate memory", MemoryError)
is the same kind of error, not a traceback.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from heirloom.core.components import Progress, Resources
from heirloom.core.errors import ResourceExhaustedError

MEMORY_CHECK_S = 0.1
#: The signal whose handler the watchdog calls in the main thread (never sent to the process).
WATCHDOG_SIGNAL = signal.SIGUSR1
#: What an allocator says when the machine cannot give it the memory (torch, CUDA).
_REFUSED_ALLOCATION = ("can't allocate memory", "out of memory")


class MemoryWatch:
    """Progress that also holds training to the memory budget: each update (at most every
    ``MEMORY_CHECK_S``) asks the resource manager, which raises past the budget."""

    def __init__(self, progress: Progress, resources: Resources, what: str):
        self.progress, self.resources, self.what = progress, resources, what
        self._checked = time.monotonic()

    def start(self, description: str, total: float | None = None) -> None:
        self._check()
        self.progress.start(description, total)

    def advance(self, amount: float = 1) -> None:
        self._check()
        self.progress.advance(amount)

    def log(self, message: str) -> None:
        self.progress.log(message)

    def _check(self) -> None:
        now = time.monotonic()
        if now - self._checked >= MEMORY_CHECK_S:
            self._checked = now
            self.resources.check_memory(self.what)


class _OverBudget(BaseException):
    """Raised in the main thread by the watchdog's signal handler (a BaseException, as
    KeyboardInterrupt is, so a plugin's ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def watched_memory(resources: Resources, what: str) -> Iterator[None]:
    """Around ``fit`` in the main thread: a watchdog interrupts it past the memory budget and
    the manager's ResourceExhaustedError is raised here. The interruption is a handler of
    SIGUSR1 called through ``_thread.interrupt_main``, not SIGINT: a job started in the
    background (``nohup ... &``, many CI runners) ignores SIGINT, and so would the watchdog."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread can be interrupted
        with _allocations(what):
            yield
        return
    stop, lock, over = threading.Event(), threading.Lock(), []

    def interrupted(signum: int, frame: Any) -> None:
        if over:  # a stray SIGUSR1 meanwhile is ignored rather than ending the process
            raise _OverBudget

    def watch() -> None:
        while not stop.wait(MEMORY_CHECK_S):
            try:
                resources.check_memory(what)
            except ResourceExhaustedError as exc:
                with lock:
                    if not stop.is_set():
                        over.append(exc)
                        _thread.interrupt_main(WATCHDOG_SIGNAL)
                return

    previous = signal.signal(WATCHDOG_SIGNAL, interrupted)
    watcher = threading.Thread(target=watch, name="heirloom-memory-watch", daemon=True)
    watcher.start()
    try:
        try:
            with _allocations(what):
                yield
        finally:
            with lock:  # after this no interrupt is sent; one sent before is delivered here
                stop.set()
            watcher.join()
    except _OverBudget:
        raise over[0] from None
    finally:
        signal.signal(WATCHDOG_SIGNAL, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _allocations(what: str) -> Iterator[None]:
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or any(words in str(exc) for words in _REFUSED_ALLOCATION):
            raise ResourceExhaustedError(
                f"{what}: the machine refused an allocation ({type(exc).__name__}: {str(exc)[:200]}); set "
                "resources.memory_budget_mb to stop earlier with less held, or train on a machine with more memory"
            ) from None
        raise
