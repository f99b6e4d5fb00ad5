"""``heirloom plugins``, ``profiles`` and ``profile show|check``: what a system is made of."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Column, Table
from rich.text import Text

from heirloom.cli.common import (
    console,
    echo,
    err_console,
    fail,
    get_kernel,
    inert,
    one_line,
    print_json,
    printable,
    report_profile_error,
    resolve_or_exit,
)
from heirloom.cli.options import PROFILE, set_option
from heirloom.cli.tables import print_table
from heirloom.core.catalog import PluginInfo
from heirloom.core.errors import HeirloomError, Problem, ProfileError
from heirloom.core.profile import MASK, SetValue, key_parts
from heirloom.core.schema import DEFAULT_RESOURCES, ResolvedProfile, validate
from heirloom.profile_toml import written
from heirloom.store.checks import store_problems
from heirloom.store.digest import profile_digest
from heirloom.wire.local_workers import too_many_workers


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List every plugin, what it provides, and any that failed to load.

    Imports all installed plugins (other commands import only what they use); one that
    HEIRLOOM_DISABLE_PLUGINS or HEIRLOOM_LOAD_PLUGINS leaves out is listed as disabled.
    """
    host = get_kernel().plugins
    host.load_all()
    root = click.get_current_context().find_root()
    root.command.list_commands(root)  # attaches every plugin's commands: their names, every time
    infos = sorted([*host.infos.values(), *host.disabled(), *host.shadowed], key=lambda i: i.name)
    registered = getattr(root.command, "registered", {})  # as attached now (the catalog's may lag)

    def commands_of(info: PluginInfo) -> list[str]:  # not a shadowed entry point's: it has another's name
        return [] if any(info is other for other in host.shadowed) else registered.get(info.name, info.commands or [])

    clashes = getattr(root.command, "clashes", {})  # commands two plugins register: neither runs
    conflicts = host.conflicts() | {f"command {c}": [host.infos[p].label for p in by] for c, by in clashes.items()}
    if as_json:
        shared: dict[str, list[str]] = {}  # plugin label -> the "kind name"s another plugin registers too
        for what, labels in conflicts.items():
            for label in labels:
                shared.setdefault(label, []).append(what)
        for name, commands in getattr(root.command, "shadowing", {}).items():
            shared.setdefault(host.infos[name].label, []).extend(f"command {c} (a built-in's)" for c in commands)
        print_json(
            [
                {
                    **info.to_json(),
                    "commands": sorted(commands_of(info)),
                    "conflicts": shared.get(info.label, []),
                }
                for info in infos
            ]
        )
    else:
        table = Table("plugin", "distribution", "status", "provides")
        for info in infos:
            commands = commands_of(info)
            provided = [*info.provides.items(), *info.named.items(), ("commands", commands)]
            provides = "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in provided if names)
            said = info.status if info.status in ("loaded", "disabled") else "failed"
            status = Text(said, {"loaded": "green", "disabled": "yellow"}.get(said, "red"))
            status += f": {info.error}" if info.error else ""  # a loaded one's commands hook may have raised
            dist = f"{info.distribution} {info.version}" if info.distribution else "-"
            table.add_row(inert(info.name), inert(dist), status, inert(provides or "-"))
        print_table(console, table)
    for what, labels in conflicts.items():
        err_console.print(f"conflict: {what} is registered by {' and '.join(labels)}", markup=False)


#: A ``profiles`` row's file where two plugins register the name: naming it is an error, so neither file is it.
CONFLICT = "conflict: naming it is an error (HEIRLOOM_DISABLE_PLUGINS one)"


@click.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def profiles_command(as_json: bool) -> None:
    """List the profiles available: HEIRLOOM_PROFILE_PATH, ./profiles and plugin profiles.

    A name means the first file found in that order: the files of that name it hides are said
    after the table ("shadows" in --json); such a file can extend the one it hides by its name.
    A name two plugins register is a conflict (naming it is an error): listed with both.
    """
    kernel = get_kernel()
    found = kernel.available_profiles()
    clashes = {
        what[len("profile ") :]: labels
        for what, labels in kernel.plugins.conflicts().items()
        if what.startswith("profile ")
    }
    if as_json:
        print_json([{**entry, "conflicts": clashes.get(entry["name"], [])} for entry in found])
        return
    table = Table(Column("profile", no_wrap=True), Column("file", overflow="fold"), "from")  # names are copied
    for entry in found:
        row = (entry["name"], entry["path"], entry["origin"])
        registered = [str(path) for _, path in kernel.plugins.profiles.get(entry["name"], [])]
        if (labels := clashes.get(entry["name"])) and entry["path"] in registered:  # no file is the one it means
            row = (entry["name"], CONFLICT, " and ".join(f"plugin {label}" for label in labels))
        table.add_row(*map(inert, row))
    print_table(console, table)
    for entry in [entry for entry in found if entry["shadows"]]:
        console.print(inert(f"{entry['name']}: {entry['path']} shadows {', '.join(entry['shadows'])}"))
    for name, labels in clashes.items():
        err_console.print(f"conflict: profile {name} is registered by {' and '.join(labels)}", markup=False)


@click.group("profile")
def profile_group() -> None:
    """Inspect and validate profiles."""


@profile_group.command("show")
@click.argument("profile", type=PROFILE)
@set_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"profile", "project", "digest", "provenance", "secrets", "disabled"}.',
)
@click.option(
    "--show-secrets",
    is_flag=True,
    help=f"Print values interpolated from environment variables (${{VAR}}), in errors too; by default they read {MASK}"
    " (errors: ${VAR} as written).",
)
def profile_show(profile: str, overrides: tuple[str, ...], as_json: bool, show_secrets: bool) -> None:
    """Print the resolved PROFILE and, for every value, the file that set it (its path, as --json and errors say).

    Values interpolated from environment variables may be credentials: they are masked
    unless --show-secrets. A profile that merges but does not validate is still shown,
    so the file that set a bad value can be found; its problems follow on stderr (exit 2).
    The digest is the profile_digest a version trained with it records (models show).
    Components an `enabled = false` dropped are listed with the file that dropped them.
    """
    kernel = get_kernel()
    try:
        raw = kernel.load_profile(profile, overrides)
    except ProfileError as exc:  # the file itself does not merge (TOML, not found): nothing to show
        report_profile_error(exc)
    raw.revealed = show_secrets
    try:
        resolved = validate(raw, kernel.plugins)
        project, digest, problems = resolved.project, profile_digest(resolved), None
    except ProfileError as exc:
        project, digest, problems = str(raw.data.get("project") or raw.name), None, exc
    data = _masked(raw.data, set() if show_secrets else raw.secrets)
    project = data.get("project", project) if "project" in raw.secrets else project  # masked beside it too (h419 F6)
    provenance = dict(raw.provenance)
    if "resources.use" not in provenance and isinstance(data.setdefault("resources", {}), dict):
        data["resources"].setdefault("use", DEFAULT_RESOURCES)  # what runs when no file names a manager
        provenance["resources.use"] = KERNEL_DEFAULT
    if as_json:
        shown = {"project": project, "profile": data, "digest": digest, "provenance": provenance}
        print_json({**shown, "secrets": sorted(raw.secrets), "disabled": raw.disabled})
    else:
        named = "" if "project" in raw.data else " (the file's name: a project is never inherited)"
        console.print(Text(raw.name, "bold") + inert(f" ({raw.file}); project {project}{named}"))
        if digest is not None:
            console.print(inert(f"digest {digest[:12]} (the profile_digest of a version trained with it)"))
        console.print(inert(f"extends chain: {' -> '.join(raw.files)}"))
        for component, origin in sorted(raw.disabled.items()):  # dropped from the tree: said, or it is just gone
            console.print(inert(f"disabled: {component} (enabled = false in {origin})"))
        table = Table(Column("key", no_wrap=True), Column("value", overflow="fold"), Column("set by", overflow="fold"))
        for key, origin in sorted(provenance.items()):
            secret = " (from the environment)" if key in raw.secrets else ""
            table.add_row(*map(inert, (key, written(_lookup(data, key)) + secret, origin)))  # as --json: sub/base.toml
        print_table(console, table)
    if problems is not None:
        report_profile_error(problems)


#: The "set by" of a value no profile file set: the kernel's default resource manager.
KERNEL_DEFAULT = "(kernel default)"


def _masked(data: dict, secrets: set[str]) -> dict:
    """A copy of ``data`` as shown: the values at the ``secrets`` keys replaced by MASK, a ``--set``
    value that did not validate as typed (its repr, ``SetValue(text=...)``, was shown)."""
    masked = _typed_as_written(data)
    for key in secrets:
        *parents, last = key_parts(key)
        node = masked
        for part in parents:
            node = node[part]
        node[last] = MASK
    return masked


def _typed_as_written(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _typed_as_written(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_typed_as_written(value) for value in node]
    return node.text if isinstance(node, SetValue) else node


def _lookup(data: dict, key: str) -> Any:
    node: Any = data
    for part in key_parts(key):
        node = node[part]
    return node


@profile_group.command("check")
@click.argument("profile", type=PROFILE)
@set_option
def profile_check(profile: str, overrides: tuple[str, ...]) -> None:
    """Validate PROFILE: exit 0 when valid, else exit 2 with one error per line.

    Each error reads FILE: key.path: message. When the artifact store holds the versions
    the profile would serve, settings are also checked against them (a label-monitor's
    label must be one its model predicts), and so are inherit and serve values that look
    mistyped (a version or alias a stored model lacks, a name one typo from a stored one in names of 5
    characters or more; one that only adds to a stored name, team/m2 beside team/m, is another model),
    beside the profile's other problems, for each model table that validated. Where a table does not
    validate, the components that do are still checked (check_profile, check_parent, the
    state format an inherit names), so every problem is said at once.
    A check writes nothing: a store that is not there yet is not created, a note says so.
    """
    resolved = resolve_or_exit(profile, overrides, more=_built_components_problems)
    try:
        problems, note = store_problems(get_kernel(), resolved)
    except ProfileError as exc:  # the store a profile names cannot be used
        report_profile_error(exc)
    except HeirloomError as exc:
        fail(f"error: {exc}")
    if too_many := too_many_workers(workers := resolved.settings["server"].workers):
        key = "server.workers"
        problems.append(Problem(resolved.raw.provenance.get(key, resolved.raw.file), key, f"{workers}: {too_many}"))
    if note:
        click.echo(printable(note), err=True)
    if problems:
        report_profile_error(ProfileError(problems))
    names = ", ".join(spec.key for spec in resolved.components)
    echo(one_line(f"{resolved.raw.file}: ok ({names})"))


def _built_components_problems(error: ProfileError) -> list[Problem]:
    """Where a profile has problems, those the components that validated find too (``check_profile``,
    ``check_parent``, an ``inherit``'s state format) and, where its project, store and models validated,
    the ``inherit`` and ``serve`` values the store shows mistyped: every problem at once, not those only
    once the rest is fixed."""
    if not isinstance(partial := error.partial, ResolvedProfile):
        return []
    return store_problems(get_kernel(), partial, {problem.path.split(".")[0] for problem in error.problems})[0]


COMMANDS = [plugins_command, profiles_command, profile_group]
