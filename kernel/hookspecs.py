"""The hook contract between the kernel and plugins.

Hooks only *register* and *notify*: the kernel drives the lifecycle itself, so one
plugin's failure can never silently skip another plugin's teardown. Every hook name
starts with ``heirloom_`` and pluggy validates implementations against these specs,
so a typo in a plugin is an error rather than a silently ignored function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "heirloom"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``register(name, cls)``: adds a component type under ``name``.
Register = Callable[[str, type], None]


@hookspec
def heirloom_register_sources(register: Register) -> None:
    """Register data source component types: ``register("csv", CsvSource)``."""


@hookspec
def heirloom_register_models(register: Register) -> None:
    """Register model component types: ``register("text-classifier", TextClassifier)``."""


@hookspec
def heirloom_register_apis(register: Register) -> None:
    """Register api component types (route providers): ``register("echo", EchoApi)``."""


@hookspec
def heirloom_register_resource_managers(register: Register) -> None:
    """Register resource manager component types: ``register("local", LocalResources)``."""


@hookspec
def heirloom_register_profiles(register: Callable[[str, Any], None]) -> None:
    """Register profiles this plugin package ships: ``register("medical", path)``.

    ``path`` is a filesystem path or an ``importlib.resources`` traversable to a TOML file,
    so other projects can ``extends = ["medical"]`` without copying files.
    """


@hookspec
def heirloom_register_pretrained(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register pretrained states a plugin ships: ``register("news-sentiment", load)``.

    ``load()`` returns a ``heirloom.State`` (called only when a profile inherits it with
    ``inherit = "pretrained:NAME"``). It must not download anything.
    """


@hookspec
def heirloom_register_commands(cli: Any) -> None:
    """Add commands to the ``heirloom`` click group: ``cli.add_command(my_command)``."""


@hookspec
def heirloom_system_started(system: Any) -> None:
    """Notification: every component of ``system`` has started."""


@hookspec
def heirloom_system_stopping(system: Any) -> None:
    """Notification: ``system`` is about to stop its components (in reverse order)."""
