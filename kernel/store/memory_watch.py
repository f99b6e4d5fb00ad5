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
import threading
import time
from collections.abc import Iterator

from heirloom.core.components import Progress, Resources
from heirloom.core.errors import ResourceExhaustedError

MEMORY_CHECK_S = 0.1
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


@contextlib.contextmanager
def watched_memory(resources: Resources, what: str) -> Iterator[None]:
    """Around ``fit`` in the main thread: a watchdog interrupts it past the memory budget and
    the manager's ResourceExhaustedError is raised here (a Ctrl-C stays a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread can be interrupted
        with _allocations(what):
            yield
        return
    stop, lock, over = threading.Event(), threading.Lock(), []

    def watch() -> None:
        while not stop.wait(MEMORY_CHECK_S):
            try:
                resources.check_memory(what)
            except ResourceExhaustedError as exc:
                with lock:
                    if not stop.is_set():
                        over.append(exc)
                        _thread.interrupt_main()
                return

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
    except KeyboardInterrupt:
        if over:
            raise over[0] from None
        raise


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
