"""What a command did inside a system, kept when the system then fails to stop.

``train`` stores a version and ``eval`` scores one before their system stops: a component's
``stop()`` raising still fails the command (it may have lost its own writes), but what was done
must not vanish with it. ``with Outcome() as kept, kernel.system(...) as system:`` and
``return kept(result)``: a teardown failure after that is raised as :class:`StoppedAfter`,
carrying the result for the command to print, and to name, before its error.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

from heirloom.core.errors import HeirloomError, LifecycleError

T = TypeVar("T")


class StoppedAfter(HeirloomError):
    """The work inside a system was done (``result``), then the system failed to stop: the message is
    the teardown's failures (``models.m (type) failed to stop: ...``), for the command to put after what it did."""

    def __init__(self, result: Any, teardown: LifecycleError):
        self.result = result
        super().__init__("; ".join(str(error) for error in teardown.errors) or str(teardown))


class Outcome:
    """The result of the work inside the system entered after it."""

    def __init__(self) -> None:
        self.kept: tuple[Any] | None = None

    def __call__(self, result: T) -> T:
        self.kept = (result,)
        return result

    def __enter__(self) -> Outcome:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.kept is not None and isinstance(error, LifecycleError):  # raised by the system's __exit__
            raise StoppedAfter(*self.kept, error) from error
