"""Exceptions the kernel raises, each carrying enough context to act on."""

from __future__ import annotations

import attrs

from heirloom.suggest import did_you_mean as did_you_mean  # re-exported: the kernel imports it from here


class HeirloomError(Exception):
    """Base class of every error heirloom raises on purpose."""


def described(exc: BaseException) -> str:
    """Its message, led by its type unless raised on purpose: a plugin's ``KeyError('x')`` read only ``'x'``; a
    group's (cattrs' "While structuring TreatmentModel (1 sub-exception)" named no file or key: v23 F5), each's."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(described(inner) for inner in exc.exceptions)
    return str(exc) if isinstance(exc, HeirloomError) else f"{type(exc).__name__}: {exc}"


@attrs.frozen
class Problem:
    """One thing wrong with a profile: where (file and key path) and what."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        path = self.path if self.path.isprintable() else ascii(self.path)  # a key may hold a newline
        path = path if len(path) <= 300 else f"{path[:300]}... ({len(path):,} characters)"  # a 50,000-letter key
        where = f"{self.file}: {path}" if path else self.file
        return f"{where}: {self.message}" if where else self.message


class ProfileError(HeirloomError):
    """A profile cannot be resolved or validated; lists every problem found at once."""

    def __init__(self, problems: list[Problem] | str, partial: object = None):  # a plugin may raise one plain message
        self.problems = [Problem("", "", problems)] if isinstance(problems, str) else list(problems)
        self.partial = partial  # validation's: the profile as far as it validated, for profile check's store checks
        super().__init__("\n".join(str(p) for p in self.problems))


class RefError(HeirloomError):
    """A reference that is malformed or names nothing in the store (the CLI exits 2)."""


class PluginError(HeirloomError):
    """A plugin the current profile needs could not be loaded or is ambiguous."""


class ForeignState(HeirloomError):
    """A state another model type wrote (``State.expect_format``); from ``fit``, ``train`` puts it on ``inherit``."""


class LifecycleError(HeirloomError):
    """A system failed to start or stop; ``errors`` holds every underlying failure."""

    def __init__(self, message: str, errors: list[BaseException] | None = None):
        self.errors = list(errors or [])
        super().__init__(message + "".join(f"\n  - {e}" for e in self.errors))


class ResourceExhaustedError(HeirloomError):
    """A resource manager's limit was reached (memory, a quota); nothing written. RESOURCE_EXHAUSTED on the wire."""
