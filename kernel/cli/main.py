"""The ``heirloom`` command line. PROFILE arguments are a ``.toml`` path or a profile name.

Every command comes from a plugin through ``heirloom_register_commands``: the kernel's
own (``serve``, ``train``, ``models``...) from its built-in commands plugin
(:mod:`heirloom.cli.commands`), which the environment cannot disable. Commands are
attached lazily: the plugin catalog says which plugin adds which command, so ``heirloom
COMMAND`` imports only the plugin that provides it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from heirloom.cli.commands import BUILTIN, builtin_commands
from heirloom.cli.common import (
    OutputFailed,
    echo,
    err_console,
    fail,
    get_kernel,
    interrupted,
    reader_gone,
    say_error,
)
from heirloom.cli.logs import TextFormatter, configure, writes_json
from heirloom.cli.options import too_long, too_long_part
from heirloom.core.errors import HeirloomError, PluginError
from heirloom.links import broken_path
from heirloom.selection import unknown_plugins
from heirloom.wire.cores import PARENT_ENV


class HeirloomGroup(click.Group):
    """A click group that also offers the commands plugins register."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Plugin name -> the commands it registered (``heirloom plugins`` lists them), and
        #: those under a built-in's name, left out (the built-in always runs).
        self.registered: dict[str, list[str]] = {}
        self.shadowing: dict[str, list[str]] = {}
        #: Command name -> the plugins that registered it, when two did: neither runs.
        self.clashes: dict[str, list[str]] = {}
        self._owners: dict[str, str | None] = {}
        self._attaching: str | None = None

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Add a command, noting which plugin added it; one named like a built-in is left out,
        and one another plugin added too is a clash (see :meth:`_attach`)."""
        name = str(name or cmd.name)
        shadows = name in BUILTIN and getattr(cmd.callback, "__module__", None) != BUILTIN[name]
        if self._attaching is not None:
            (self.shadowing if shadows else self.registered).setdefault(self._attaching, []).append(name)
        if not shadows:
            owner = self._owners.setdefault(name, self._attaching)
            if owner != self._attaching and name not in BUILTIN:  # a built-in is added by no plugin, too
                self.clashes.setdefault(name, [str(owner)]).append(str(self._attaching))
            super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = get_kernel(ctx).plugins
        plugins.ensure()
        return sorted(set(super().list_commands(ctx)) | set(plugins.command_plugins()) | set(self._attach(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name in BUILTIN:  # no plugin can take a built-in's name: no need to ask them
            for builtin in builtin_commands(BUILTIN[name]):
                self.add_command(builtin)
            return self.commands[name]
        plugins = get_kernel(ctx).plugins
        plugins.ensure()
        if owners := [  # every plugin that adds it, as far as the catalog knows, or may (new): two clash
            plugin
            for plugin, info in plugins.infos.items()
            if name in (info.commands or ()) or (info.commands is None and "heirloom_register_commands" in info.hooks)
        ]:
            self._attach(ctx, owners)
        if name not in self.commands:
            self._attach(ctx)
        return self.commands.get(name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, but a command nothing provides says which plugins failed to load (the
        one that provided it last time, if known) or were left out by the environment."""
        try:
            name, command, rest = super().resolve_command(ctx, args)
            return name, _help_through_echo(command), rest
        except click.exceptions.NoSuchCommand:
            from heirloom.core.schema import did_you_mean  # here: `heirloom call` must not import the profile code

            name, plugins = click.utils.make_str(args[0]), get_kernel(ctx).plugins
            plugins.load_all()  # one the catalog remembers failing, never loaded, may provide it: named (v37 F2)
            owner = plugins.command_plugins().get(name)
            if owner is not None and plugins.infos[owner].status == "failed":
                info = plugins.infos[owner]
                fail(f"error: command {name!r} comes from a plugin that failed to load: {info.label}: {info.error}", 2)
            if owner is not None and plugins.infos[owner].error:  # its commands hook raised: click's bare "No such"
                fail(f"error: command {name!r} is missing: {plugins.infos[owner].error}", 2)  # (checker h390 F3)
            if left_out := plugins.left_out("commands", name):  # as a type or profile of it says (checker h356 F3)
                fail(f"error: command {name!r} comes from {left_out}", 2)
            failed = "; ".join(f"{info.label}: {info.error}" for info in plugins.failures())
            if failed or plugins.selection():
                more = f"; these plugins failed to load: {failed}" if failed else ""
                fail(
                    f"error: no command {name!r}{did_you_mean(name, list(self.commands))}{more}{plugins.selection()}", 2
                )
            raise

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _our_help(self, ctx)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Ctrl-C or SIGTERM while the command line is read (``heirloom --help`` printing) exits as in a command:
        click said "Aborted!", exit 1 (checker v24 F4)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt as exc:
            interrupted(exc)

    def invoke(self, ctx: click.Context) -> object:
        """Ctrl-C in a command without its own handling (train, call, eval): exit 130 as a
        shell expects of SIGINT, saying what holds, where click said only "Aborted!" (exit 1)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            interrupted(exc)
        except OutputFailed as failed:  # the CLI's own output, inside a command's `except Exception` too
            failed.exit()
        except BrokenPipeError:  # `heirloom data show ... | head` closed the pipe: what it read was all it wanted
            reader_gone(sys.stdout)
        except click.ClickException as exc:  # click says it as `Error: ...`, but not into a log of JSON lines
            if not writes_json():
                raise
            fail(f"error: {exc.format_message()}", exc.exit_code)  # as serve's own; the gateway's were text (h342 F9)

    def _attach(self, ctx: click.Context, only: list[str] | None = None) -> list[str]:
        plugins = get_kernel(ctx).plugins
        attached = ctx.find_root().meta.setdefault("heirloom.attached", set())
        for name in only if only is not None else plugins.plugins_with_commands():
            if name not in attached:
                attached.add(name)
                self._attaching = name
                with contextlib.redirect_stdout(sys.stderr):  # what it prints: stdout may be --json (h433 F4)
                    errors = plugins.add_commands(self, name)
                for error in errors:
                    err_console.print(f"warning: {error}", markup=False)
                self._attaching = None
                for command in self.shadowing.get(name, []):
                    label = plugins.infos[name].label
                    err_console.print(
                        f"warning: plugin {label} registers command {command!r}, a built-in's name: "
                        "the built-in always runs; rename it",
                        markup=False,
                    )
        for command, owners in self.clashes.items():
            self.commands[command] = _clash(
                command, " and ".join(sorted(plugins.infos[owner].label for owner in owners))
            )
        return list(self.commands)


def _show_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--help``'s output through the CLI's stdout writer (``common.echo``), as every command's own output: click's
    wrote nothing under ``>&-`` (exit 0), said ``error: No space left on device`` under ``>/dev/full`` and exited 1
    without a word when the reader went away (checker v9 F4); now the README's exit codes: 1 saying so, or 141."""
    if value and not ctx.resilient_parsing:
        echo(ctx.get_help())
        ctx.exit()


def _our_help(command: click.Command, ctx: click.Context) -> click.Option | None:
    """``command``'s help option (click's: its names, its text), printing through :func:`_show_help`."""
    option = click.Command.get_help_option(command, ctx)
    if option is not None:
        option.callback = _show_help
    return option


def _help_through_echo(command: click.Command | None) -> click.Command | None:
    """``command`` (and, for a group, each command it resolves) with ``--help`` printing through :func:`_show_help`:
    a plugin's command is click's own class, so the option is replaced where it is resolved, not by subclassing.
    A group's ``get_command`` is wrapped, not its ``commands``: a group that builds its subcommands there (lazy
    loading) holds none until then (checker v10 F1)."""
    if command is not None and "get_help_option" not in vars(command):
        command.get_help_option = functools.partial(_our_help, command)  # type: ignore[method-assign]
        if isinstance(command, click.Group):
            resolve = command.get_command
            command.get_command = lambda ctx, name: _help_through_echo(resolve(ctx, name))  # type: ignore[method-assign]
    return command


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``--version`` through the CLI's stdout writer, as ``--help`` (checker v9 F4); the words click's said."""
    if value and not ctx.resilient_parsing:
        from heirloom.core.version import VERSION

        echo(f"heirloom, version {VERSION}")
        ctx.exit()


def _clash(name: str, labels: str) -> click.Command:
    """What ``heirloom NAME`` runs when two plugins register NAME: neither's command (which one
    would win depends on import order), but an error naming both, whatever the arguments."""

    def refuse() -> None:
        fail(
            f"error: command {name!r} is registered by two plugins: {labels}; neither runs: uninstall or "
            "disable one (HEIRLOOM_DISABLE_PLUGINS)",
            2,
        )

    settings = {"ignore_unknown_options": True, "allow_extra_args": True}
    return click.Command(
        name,
        callback=refuse,
        help=f"Registered by {labels}: neither runs.",
        context_settings=settings,
        add_help_option=False,
    )


@click.group(cls=HeirloomGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_show_version,
    help="Show the version and exit.",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Verbosity of log lines on stderr.",
)
def cli(log_level: str) -> None:
    """heirloom: compose machine-learning systems from plugins and inherit earlier projects.

    A profile (a TOML file, or the name of one in HEIRLOOM_PROFILE_PATH, ./profiles or a
    plugin, looked up in that order) names the components of a system and wires them together.
    """
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=log_level.upper(), handlers=[handler])


def _log_format_unparsed() -> None:
    """Set up the log format before click has parsed ``--log-format``: a JSON line when the command line asks
    for JSON (a unit's bad HEIRLOOM_HOME was the one plain-text line of its JSON log)."""
    args = sys.argv[1:]
    if "--log-format=json" in args or ("--log-format", "json") in itertools.pairwise(args):
        configure(fmt="json")


def fail_unparsed(message: str) -> NoReturn:
    """``fail`` before click has parsed ``--log-format``, exit 2."""
    _log_format_unparsed()
    fail(message, 2)


def warn_unparsed(message: str) -> None:
    """Say ``message`` on stderr before click has parsed ``--log-format``; the command goes on."""
    _log_format_unparsed()
    say_error(message, logging.WARNING)


#: The folders the environment names, each said as a user would set it: every command refuses one that is set but
#: empty or names a file (exit 2), where each command failed its own way (HEIRLOOM_STORE: exit 1 or 2, checker 305).
FOLDERS = {
    "HEIRLOOM_HOME": "heirloom's folder (its store, logs, data)",
    "HEIRLOOM_STORE": "an artifact store's folder",
    "HEIRLOOM_DATA": "the data root, the folder ${data} names in profiles",
}


def _environment_warnings() -> None:
    if unknown := unknown_plugins():  # a warning: leaving out a plugin a host lacks is done; a typo is said
        warn_unparsed(unknown)
    entries = dict.fromkeys(filter(None, os.environ.get("HEIRLOOM_PROFILE_PATH", "").split(os.pathsep)))  # once each
    for entry in entries:  # was ignored unsaid (checker h325 F6); a folder made later is searched then: a warning only
        if not os.path.isdir(entry):
            why = "is a file: the variable takes folders" if os.path.exists(entry) else "is no folder (not found)"
            warn_unparsed(f"warning: HEIRLOOM_PROFILE_PATH entry {entry} {why} (ignored)")


def main() -> None:
    """Console-script entry point: expected errors become messages, not tracebacks."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        # PYTHONIOENCODING=ascii, a latin-1 locale: a character stdout cannot write is shown escaped, as on stderr;
        # it was a UnicodeEncodeError, blamed on the plugin whose record held it (checker h342 F2)
        sys.stdout.reconfigure(errors="backslashreplace")
    for variable, what in FOLDERS.items():  # the library reads "" as unset: `HEIRLOOM_HOME=$TYPO heirloom models
        if (path := os.environ.get(variable)) == "":  # list` read the user's store
            fail_unparsed(f"error: {variable} is set but empty (an unset variable?): name a folder, or unset it")
        if path and os.path.exists(path) and not os.path.isdir(path):  # else blamed on store/blobs, a data file...
            fail_unparsed(f"error: {variable}={path} is not a folder: set it to {what}, or unset it")
        if path and (why := broken_path(Path(path))):  # a link loop: profile check said ok, train exit 1 (v13 F4)
            fail_unparsed(f"error: {variable}={path} {why}: set it to {what}, or unset it")
    if PARENT_ENV not in os.environ:  # a broker's worker: its broker said them, once (checker v5 F4: 3 times)
        _environment_warnings()
    try:
        cli(standalone_mode=True)
    except OutputFailed as failed:  # `heirloom --help` or `--version`, which click runs before any command
        failed.exit()
    except PluginError as exc:  # a name no plugin registers, or two do: it cannot work as installed
        fail(f"error: {exc}", 2)
    except HeirloomError as exc:
        fail(f"error: {exc}")
    except OSError as exc:  # a full disk, a folder without permission: the path and the reason, not a traceback
        if exc.errno == errno.ENAMETOOLONG:  # a name no path can have (a profile name, a folder): a usage error
            fail(f"error: {too_long(too_long_part(str(exc.filename)))}", 2)
        fail(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
