"""Optional hooks a component may implement, asked where the profile is checked.

A model's word on the parent its ``inherit`` names, asked before any record is read:
``fit`` refuses a parent it cannot use (another type's state, other hashing settings), but only once
``train`` had read the data, with exit 1 and no file, while ``profile check`` passed (checker 275 F6).
A model class may implement the optional ``check_parent(metadata)`` (docs/PLUGINS.md): given the
parent state's metadata (its tensors unread), it returns ``(setting, problem)`` pairs, as
``Api.check`` does; ``profile check`` and ``train`` put each on the model's key, with its file.
Any component may implement ``check_profile(profile)`` likewise: what it finds wrong with the rest
of the profile that no reference field can say (a feedback source naming an api the profile lacks).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from heirloom.core.errors import ForeignState, HeirloomError, Problem

if TYPE_CHECKING:
    from heirloom.core.schema import ComponentSpec, ResolvedProfile
    from heirloom.store.artifacts import Artifact

log = logging.getLogger(__name__)


def checks_parents(spec: ComponentSpec) -> bool:
    """Whether ``spec``'s model type implements the optional ``check_parent`` hook."""
    return callable(getattr(spec.cls, "check_parent", None))


def parent_problems(
    profile: ResolvedProfile, spec: ComponentSpec, parent: str, model_type: str, metadata: dict[str, Any]
) -> list[Problem]:
    """The problems ``spec``'s model finds with ``parent`` (a ref, of ``model_type``), each at its key and file."""
    return ask(profile, spec, "check_parent", metadata, said=f"{parent_named(parent, model_type, spec)}: ")


def parent_named(ref: str, model_type: str, spec: ComponentSpec) -> str:
    """A parent as errors name it: its ref, and its model type where that is not ``spec``'s own."""
    return ref + (f" is of model type {model_type}" if model_type != spec.use else "")


def ask(profile: ResolvedProfile, spec: ComponentSpec, hook: str, *args: Any, said: str = "") -> list[Problem]:
    """Each ``(field, problem)`` the optional method ``hook`` of ``spec``'s component returns (none where its
    class lacks it), at ``spec``'s key and the file that set it, ``said`` before the problem. The component is
    constructed from the profile, not started; what the method raises is a problem naming it (a plugin's bug)."""
    if not callable(getattr(spec.cls, hook, None)):
        return []
    try:
        answer = getattr(profile.instantiate(spec), hook)(*args)
        found = list(answer) if isinstance(answer, Iterable) and not isinstance(answer, str | bytes) else None
    except Exception as exc:  # a plugin's bug is a problem naming it, not a crash of check or train
        log.warning("%s.%s raised", spec.cls.__name__, hook, exc_info=True)
        found = [("use", f"{spec.cls.__name__}.{hook} raised {type(exc).__name__}: {exc} (a plugin bug?)")]
    if found is None or not all(isinstance(pair, tuple | list) and len(pair) == 2 for pair in found):  # not a crash
        wrong = f"returned a {type(answer).__name__} ({answer!r:.80}), not [(field, problem), ...]"
        found = [("use", f"{spec.cls.__name__}.{hook} {wrong} (a plugin bug?)")]
    problems = []
    for field, message in found:
        key = f"{spec.key}.{field}"
        problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, f"{said}{message}"))
    return problems


@contextlib.contextmanager
def naming_a_foreign_parent(spec: ComponentSpec, parent: Artifact | None) -> Iterator[None]:
    """A fit refusing its parent (``ForeignState``) names the ``inherit`` key, the parent and,
    of another model type, what it is: the model cannot know these. Only that error: a retriever
    inheriting an encoder is normal, and its data errors were blamed on ``inherit``."""
    try:
        yield
    except ForeignState as exc:
        if parent is None:
            raise
        raise HeirloomError(f"{spec.key}.inherit: {parent_named(parent.ref, parent.model_type, spec)}: {exc}") from None
