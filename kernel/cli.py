"""The ``heirloom`` command line. PROFILE arguments are a ``.toml`` path or a profile name.

Plugin commands are attached lazily: the plugin catalog says which plugin adds which
command, so ``heirloom COMMAND`` imports only the plugin that provides it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

import heirloom
from heirloom.errors import HeirloomError, ProfileError
from heirloom.kernel import Kernel
from heirloom.schema import ResolvedProfile

EXIT_INVALID = 2
KERNEL_KEY = "heirloom.kernel"
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def get_kernel(ctx: click.Context | None = None) -> Kernel:
    """One Kernel per command invocation, created on first use."""
    root = (ctx or click.get_current_context()).find_root()
    if KERNEL_KEY not in root.meta:
        root.meta[KERNEL_KEY] = Kernel()
    return root.meta[KERNEL_KEY]


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` to stderr and exit with ``code``."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def report_profile_error(exc: ProfileError) -> NoReturn:
    """Every problem on its own line (``FILE: key.path: message``), exit 2."""
    for problem in exc.problems:
        click.echo(str(problem), err=True)
    sys.exit(EXIT_INVALID)


def resolve_or_exit(profile: str, overrides: tuple[str, ...] = ()) -> ResolvedProfile:
    """The resolved PROFILE, or every problem on stderr and exit 2."""
    try:
        return get_kernel().resolve(profile, overrides)
    except ProfileError as exc:
        report_profile_error(exc)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


class HeirloomGroup(click.Group):
    """A click group that also offers the commands plugins register."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = get_kernel(ctx).plugins
        plugins.ensure()
        return sorted(set(super().list_commands(ctx)) | set(plugins.command_plugins()) | set(self._attach(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugins = get_kernel(ctx).plugins
        plugins.ensure()
        owner = plugins.command_plugins().get(name)
        if owner is not None:
            self._attach(ctx, [owner])
        if name not in self.commands:
            self._attach(ctx)
        return self.commands.get(name)

    def _attach(self, ctx: click.Context, only: list[str] | None = None) -> list[str]:
        plugins = get_kernel(ctx).plugins
        attached = ctx.find_root().meta.setdefault("heirloom.attached", set())
        for name in only if only is not None else plugins.plugins_with_commands():
            if name not in attached:
                attached.add(name)
                for error in plugins.add_commands(self, name):
                    err_console.print(f"warning: {error}", markup=False)
        return list(self.commands)


@click.group(cls=HeirloomGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(heirloom.__version__, prog_name="heirloom")
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Verbosity of log lines on stderr.",
)
def cli(log_level: str) -> None:
    """heirloom: compose machine-learning systems from plugins and inherit earlier projects.

    A profile (a TOML file, or the name of one in ./profiles, HEIRLOOM_PROFILE_PATH or a
    plugin) names the components of a system and wires them together.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List every plugin, what it provides, and any that failed to load.

    Imports all installed plugins (other commands import only what they use).
    """
    host = get_kernel().plugins
    host.load_all()
    infos = sorted(host.infos.values(), key=lambda i: i.name)
    if as_json:
        print_json([info.to_json() for info in infos])
    else:
        table = Table("plugin", "distribution", "status", "provides")
        for info in infos:
            provides = "; ".join(
                f"{kind}: {', '.join(sorted(names))}" for kind, names in info.provides.items() if names
            )
            status = "[green]loaded[/]" if info.status == "loaded" else f"[red]failed[/]: {info.error}"
            dist = f"{info.distribution} {info.version}" if info.distribution else "-"
            table.add_row(info.name, dist, status, provides or "-")
        console.print(table)
    for what, labels in host.conflicts().items():
        err_console.print(f"conflict: {what} is registered by {' and '.join(labels)}", markup=False)


@cli.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def profiles_command(as_json: bool) -> None:
    """List the profiles available: ./profiles, HEIRLOOM_PROFILE_PATH and plugin profiles."""
    found = get_kernel().available_profiles()
    if as_json:
        print_json(found)
        return
    table = Table("profile", "file", "from")
    for entry in found:
        table.add_row(entry["name"], entry["path"], entry["origin"])
    console.print(table)


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a value, typed by the schema (repeatable): --set models.sentiment.epochs=3",
)


@cli.group("profile")
def profile_group() -> None:
    """Inspect and validate profiles."""


@profile_group.command("show")
@click.argument("profile")
@set_option
@click.option("--json", "as_json", is_flag=True, help='Print {"profile": ..., "provenance": ...}.')
def profile_show(profile: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved PROFILE and, for every value, the file that set it."""
    resolved = resolve_or_exit(profile, overrides)
    raw = resolved.raw
    if as_json:
        print_json({"profile": raw.data, "provenance": raw.provenance})
        return
    console.print(f"[bold]{raw.name}[/] ({raw.file}); extends chain: {' -> '.join(raw.files)}")
    table = Table("key", "value", "set by")
    for key, origin in sorted(raw.provenance.items()):
        table.add_row(key, repr(_lookup(raw.data, key)), origin)
    console.print(table)


def _lookup(data: dict, key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


@profile_group.command("check")
@click.argument("profile")
@set_option
def profile_check(profile: str, overrides: tuple[str, ...]) -> None:
    """Validate PROFILE: exit 0 when valid, else exit 2 with one error per line.

    Each error reads FILE: key.path: message.
    """
    resolved = resolve_or_exit(profile, overrides)
    names = ", ".join(spec.key for spec in resolved.components)
    click.echo(f"{resolved.raw.file}: ok ({names})")


def main() -> None:
    """Console-script entry point: expected errors become messages, not tracebacks."""
    try:
        cli(standalone_mode=True)
    except HeirloomError as exc:
        fail(f"error: {exc}")


def _add_kernel_commands() -> None:
    """The kernel's own command groups live in their modules; they import this one."""
    from heirloom.cli_data import data_group
    from heirloom.cli_models import models_group
    from heirloom.cli_serve import COMMANDS
    from heirloom.cli_train import COMMANDS as TRAINING

    for command in [*COMMANDS, *TRAINING, data_group, models_group]:
        cli.add_command(command)


_add_kernel_commands()
