"""The hook contract between the kernel and plugins.

Hooks only *register*, *notify* or *open* something: the kernel drives the lifecycle itself, so one plugin's failure can
never silently skip another plugin's teardown. Every hook name starts with ``heirloom_`` and pluggy validates
implementations against these specs, so a typo in a plugin is an error rather than a silently ignored function. Hooks
are called through pluggy, one plugin at a time (``tryfirst``/``trylast`` order them, hook wrappers wrap them,
``HEIRLOOM_TRACE_PLUGINS=1`` logs each call)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from heirloom.core.components import State
    from heirloom.core.consoles import Console
    from heirloom.core.serving import VersionStore
    from heirloom.core.system import System
    from heirloom.datasets import Dataset

PROJECT = "heirloom"

hookspec, hookimpl = pluggy.HookspecMarker(PROJECT), pluggy.HookimplMarker(PROJECT)

#: ``register(name, cls)``: adds a component type under ``name``.
Register = Callable[[str, type], None]


@hookspec
def heirloom_register_sources(register: Register) -> None:
    """Register data source component types: ``register("csv", CsvSource)``.

    :param register: call it once per type with a lower-case name and an attrs class subclassing
        ``heirloom.Source``; a name another plugin registered is an error naming both when a profile uses it."""


@hookspec
def heirloom_register_models(register: Register) -> None:
    """Register model component types: ``register("text-classifier", TextClassifier)``.
    :param register: as for sources; the class subclasses ``heirloom.Model``."""


@hookspec
def heirloom_register_apis(register: Register) -> None:
    """Register api component types (route providers): ``register("echo", EchoApi)``.
    :param register: as for sources; the class subclasses ``heirloom.Api``."""


@hookspec
def heirloom_register_resource_managers(register: Register) -> None:
    """Register resource manager component types: ``register("local", LocalResources)``.
    :param register: as for sources; the class subclasses ``heirloom.Resources``."""


@hookspec
def heirloom_register_profiles(register: Callable[[str, Path], None]) -> None:
    """Register profiles this plugin package ships: ``register("medical", path)``.

    :param register: call it with a profile name and the path of its TOML file (a ``Path``, or an
        ``importlib.resources`` traversable of a file inside the package), so other projects can ``extends``."""


@hookspec
def heirloom_register_pretrained(register: Callable[[str, Callable[[], State]], None]) -> None:
    """Register pretrained states a plugin ships: ``register("news-sentiment", load)``.

    :param register: call it with a name and a function ``load() -> heirloom.State``;
        ``load`` runs only when a profile inherits ``pretrained:NAME``, and must not download anything."""


@hookspec
def heirloom_register_datasets(register: Callable[[str, Dataset], None]) -> None:
    """Register public data sets for ``heirloom data fetch``: ``register("banking77", heirloom.Dataset(...))``.

    :param register: call it with a folder name under the data root and a ``heirloom.Dataset``."""


@hookspec
def heirloom_register_consoles(register: Callable[[str, Console], None]) -> None:
    """Register web console pages: ``register("recommend", heirloom.Console(...))``.

    :param register: call it with a name and a ``heirloom.Console``; ``heirloom gateway`` serves it at
        ``/console/<api>`` for every api of the connected daemon with all the routes it needs (``Console.routes``)."""


@hookspec
def heirloom_register_commands(cli: click.Group) -> None:
    """Add commands to the ``heirloom`` command line: ``cli.add_command(my_command)``.

    :param cli: the root click group of ``heirloom``."""


@hookspec(firstresult=True)
def heirloom_open_store(path: str | None, create: bool) -> VersionStore | None:
    """Open the artifact store a profile uses (the first non-None answer wins).

    The kernel's own store plugin answers with ``heirloom.store.ArtifactStore``; a plugin that keeps versions
    elsewhere implements this with ``tryfirst=True`` and returns an object with the same methods (docs/PLUGINS.md
    lists them), or None to decline.

    :param path: its ``[store] path``, or None for the default (``HEIRLOOM_STORE``, else ``$HEIRLOOM_HOME/store``).
    :param create: False from ``profile check`` and ``heirloom ui``, which write nothing: read only a store there."""


@hookspec
def heirloom_system_started(system: System) -> None:
    """Notification: every component of ``system`` has started.

    :param system: the running system (``system.components()``, ``system.profile``)."""


@hookspec
def heirloom_system_stopping(system: System) -> None:
    """Notification: ``system`` is about to stop its components (in reverse order).

    :param system: the system being stopped; its components are still running."""
