"""Which installed plugins the environment selects: ``HEIRLOOM_LOAD_PLUGINS`` and ``HEIRLOOM_DISABLE_PLUGINS`` name
entry points of the ``heirloom`` group or their distributions. It imports none of the kernel's layers, so every
command checks those names before it loads anything (``heirloom call``, a readiness probe, builds no plugin host)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from importlib.metadata import Distribution, EntryPoint, entry_points
from pathlib import Path

from heirloom.suggest import did_you_mean

ENTRY_POINT_GROUP = "heirloom"
#: The kernel's own plugins, by name and module: always listed, never disabled.
BUILTIN_PLUGINS = {"heirloom.store": "heirloom.store.plugin", "heirloom.commands": "heirloom.cli.commands"}
BUILTINS = [EntryPoint(name=name, value=module, group=ENTRY_POINT_GROUP) for name, module in BUILTIN_PLUGINS.items()]
SELECTING = ("HEIRLOOM_LOAD_PLUGINS", "HEIRLOOM_DISABLE_PLUGINS")  # the variables that leave plugins out


def env_list(variable: str) -> set[str]:
    return {item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()}


@functools.cache  # ``Distribution.name`` and ``.version`` parse the metadata file at each call: 65 times a command
def release(dist: Distribution) -> tuple[str, str]:
    return (metadata := dist.metadata)["Name"], metadata["Version"]


def selected(ep: EntryPoint) -> bool:
    """Apply ``HEIRLOOM_DISABLE_PLUGINS`` / ``HEIRLOOM_LOAD_PLUGINS`` (names or distributions)."""
    names = {ep.name} if ep.dist is None else {ep.name, release(ep.dist)[0]}
    allowed = env_list("HEIRLOOM_LOAD_PLUGINS")
    return not (allowed and not names & allowed) and not names & env_list("HEIRLOOM_DISABLE_PLUGINS")


def listed_entry_points() -> tuple[list[EntryPoint], list[EntryPoint], list[tuple[EntryPoint, EntryPoint]]]:
    """``(listed, left_out, shadowed)``: the plugins to list (installed entry points the environment selects, then the
    modules ``HEIRLOOM_PLUGINS`` names that no installed entry point does, as ``PYTEST_PLUGINS``), those it leaves out,
    and each later entry point whose name an earlier one (heirloom's own first) has, with that one: the plugin host
    knows a plugin by its entry-point name, and dropped the later one unsaid (checker h354 F1)."""
    named = dict.fromkeys(m.strip() for m in os.environ.get("HEIRLOOM_PLUGINS", "").split(",") if m.strip())
    installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not _ours(ep))  # heirloom's own first
    modules = {ep.value for ep in installed}  # a module installed too is listed once, as installed
    extra = [EntryPoint(name=m, value=m, group=ENTRY_POINT_GROUP) for m in named if m not in modules]
    taken = {ep.name: ep for ep in BUILTINS}
    listed: list[EntryPoint] = []
    shadowed: list[tuple[EntryPoint, EntryPoint]] = []
    for ep in [*installed, *extra]:
        if not selected(ep):
            continue
        if ep.name in taken:
            shadowed.append((ep, taken[ep.name]))
        else:
            listed.append(taken.setdefault(ep.name, ep))
    return listed, [ep for ep in installed if not selected(ep)], shadowed


def _ours(ep: EntryPoint) -> bool:
    return ep.dist is not None and release(ep.dist)[0] == "heirloom"


def holder(ep: EntryPoint) -> str:
    """Who ships the entry point ``ep``: ``DISTRIBUTION VERSION``, heirloom itself, or the module."""
    if ep.dist is not None:
        return " ".join(release(ep.dist))
    return "heirloom itself" if ep.name in BUILTIN_PLUGINS else f"the module {ep.value} (HEIRLOOM_PLUGINS)"


def shadowed_error(ep: EntryPoint, first: EntryPoint) -> str:
    """Why ``ep`` is not loaded: ``first`` (another distribution's, or the kernel's own) has its entry-point name."""
    return (
        f"its entry point {ep.name!r} has the name of {holder(first)}'s, which is loaded instead: rename the entry "
        f"point in [project.entry-points.{ENTRY_POINT_GROUP}] of {holder(ep)} and reinstall it"
    )


def unknown_plugins() -> str:
    """A warning line for each name in ``HEIRLOOM_DISABLE_PLUGINS`` / ``HEIRLOOM_LOAD_PLUGINS`` that no plugin has
    ("" if none): a typo (``txt`` for ``text``) was ignored unsaid, the plugin staying loaded (checker h307 F3). The
    names: the entry points' and their distributions', listed without importing a plugin, as the kernel lists them,
    the kernel's own and the modules ``HEIRLOOM_PLUGINS`` names."""
    chosen = {variable: env_list(variable) for variable in SELECTING}
    if not any(chosen.values()):
        return ""
    installed = entry_points(group=ENTRY_POINT_GROUP)
    dists = {release(ep.dist)[0] for ep in installed if ep.dist is not None}
    known = sorted({*BUILTIN_PLUGINS, *env_list("HEIRLOOM_PLUGINS"), *installed.names, *dists})
    said = [
        f"warning: {variable} names no plugin {name!r}{did_you_mean(name, known)}"
        for variable, names in chosen.items()
        for name in sorted(names.difference(known))
    ]
    listed = f"(ignored; the plugins, by entry-point or distribution name: {', '.join(known)})"
    return "\n".join([*said, listed]) if said else ""


def where(exc: BaseException, module: str) -> str:
    """`` (at FILE:LINE)``: the deepest line of the plugin's own code (``module``'s package) that a failed import or
    registration ran (a NameError's message names no file; attrs' error at class creation names no class)."""
    top, frames = module.partition(".")[0], traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).stem == top or f"/{top}/" in f.filename]
    return f" (at {own[-1].filename}:{own[-1].lineno})" if own else ""


def trace(message: str) -> None:
    """One line of ``HEIRLOOM_TRACE_PLUGINS`` output (a plugin's import or hook call), on stderr."""
    print(f"heirloom trace: {message}", file=sys.stderr, flush=True)
