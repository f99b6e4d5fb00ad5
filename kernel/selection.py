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
