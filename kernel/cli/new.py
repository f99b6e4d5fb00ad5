"""``heirloom new plugin NAME``: a plugin package to start from, whose tests pass at once.

The package is rendered from the templates in ``heirloom/cli/scaffold/`` with the
standard library's ``string.Template``: whole files (``*.tmpl``) and, in ``parts.toml``,
per-kind fragments joined into ``__init__.py``, the profile, the tests and the README.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import keyword
import re
import shlex
import tomllib
from importlib.resources import files
from pathlib import Path
from string import Template

import click

from heirloom.cli.common import echo, fail, get_kernel
from heirloom.cli.options import a_path
from heirloom.core.version import VERSION
from heirloom.selection import ENTRY_POINT_GROUP, holder
from heirloom.suggest import did_you_mean

KINDS = ("source", "model", "api")
#: The type each kind's component registers, after the plugin's short name (``foo-texts``).
TYPE_SUFFIXES = {"source": "texts", "model": "model", "api": "api"}
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SCAFFOLD = files("heirloom.cli") / "scaffold"


def _template(path: str) -> Template:
    return Template(SCAFFOLD.joinpath(*path.split("/")).read_text(encoding="utf-8"))


def render_plugin(dist: str, kinds: list[str]) -> dict[str, str]:
    """``{relative path: text}`` of a plugin package named ``dist`` providing ``kinds``."""
    short = dist.removeprefix("heirloom-")
    module = dist.replace("-", "_")
    values = {
        "dist": dist,
        "short": short,
        "module": module,
        "module_short": short.replace("-", "_"),
        "prefix": "".join(part.capitalize() for part in short.split("-")),
        "api_table": short.replace("-", "_"),
        "kinds": ",".join(kinds),
        "heirloom_version": VERSION,
        "description": f"A heirloom plugin providing {_listing(kinds)}.",
    } | {f"{kind}_type": f"{short}-{suffix}" for kind, suffix in TYPE_SUFFIXES.items()}
    parts = tomllib.loads(SCAFFOLD.joinpath("parts.toml").read_text(encoding="utf-8"))
    chosen = [parts[kind] for kind in kinds]
    if "model" in kinds and "source" not in kinds:
        chosen.insert(0, parts["builtin_source"])
    if "api" in kinds:
        chosen.append(parts["api_with_model" if "model" in kinds else "api_alone"])

    def joined(key: str, separator: str) -> str:
        return separator.join(Template(part[key].strip()).substitute(values) for part in chosen if key in part)

    checks = ", ".join(f"check_{kind}" for kind in sorted(kinds))
    values |= {
        "imports": "\n".join(sorted(joined("import", "\n").splitlines())),
        "hooks": joined("hook", "\n\n\n"),
        "tables": joined("table", "\n\n"),
        "tests": joined("test", "\n\n\n"),
        "provides": joined("provides", "\n"),
        "layout": joined("layout", "\n"),
        "try_it": _aligned([part["try_it"] for part in [parts["common"], *chosen] if "try_it" in part], values),
        "checks": "\n".join([*joined("test_import", "\n").splitlines(), f"from heirloom.testing import {checks}"]),
    }
    rendered = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{module}/__init__.py": "package/__init__.py.tmpl",
        f"{module}/profiles/{short}.toml": "package/profile.toml.tmpl",
        f"tests/test_{values['module_short']}.py": "tests/test_plugin.py.tmpl",
    }
    if "source" in kinds:
        rendered[f"{module}/source.py"] = "package/source.py.tmpl"
    if "model" in kinds:
        rendered[f"{module}/model.py"] = "package/model.py.tmpl"
    if "api" in kinds:
        api = "api_with_model" if "model" in kinds else "api_alone"
        rendered[f"{module}/api.py"] = f"package/{api}.py.tmpl"
    output = {path: _template(template).substitute(values) for path, template in rendered.items()}
    if "source" in kinds or "model" in kinds:
        output[f"{module}/data/sample.jsonl"] = SCAFFOLD.joinpath("package", "sample.jsonl").read_text(encoding="utf-8")
    return output


def _aligned(blocks: list[str], values: dict[str, str]) -> str:
    """The README's "Try it" lines, ``COMMAND   # COMMENT`` each, with the comments in one column: aligned in the
    fragments, a name longer or shorter than the one they were written for moved them out of line (checker h356 F5)."""
    lines = [Template(line).substitute(values).partition("   # ") for block in blocks for line in block.splitlines()]
    width = max(len(command) for command, _, _ in lines) + 3
    return "\n".join(f"{command:<{width}}# {comment}" if comment else command for command, _, comment in lines)


def _taken(dist: str, kinds: list[str]) -> list[str]:
    """What the package ``dist`` would register that a plugin here registers already, each with who does: naming
    it is then an error (two plugins register it), so the package's own tests would fail (checker h301 F3)."""
    short = dist.removeprefix("heirloom-")
    plugins = get_kernel().plugins
    plugins.load_all()
    # one that failed to load this time, or that HEIRLOOM_DISABLE_PLUGINS leaves out, registers what it last did as
    # soon as it loads again: its names count too, as its catalog entry remembers them (checker h341 F2)
    absent = [
        (info, f" ({info.error})" if info.status == "disabled" else " (it failed to load this time)")
        for info in [*plugins.failures(), *plugins.disabled()]
    ]
    wanted = [("profile", plugins.profiles, "profiles", short)]
    wanted += [(f"{k} type", plugins.components[k], k, f"{short}-{TYPE_SUFFIXES[k]}") for k in kinds]
    taken = []
    for what, table, listed, name in wanted:
        by = [plugins.infos[plugin].label for plugin, _ in table.get(name, [])]
        by += [info.label + why for info, why in absent if name in (info.provides | info.named).get(listed, ())]
        taken += [f"{what} {name!r}, as {' and '.join(by)} does"] if by else []
    return taken


def _entry_point_holders(dist: str) -> list[str]:
    """Who has the entry point the package ``dist`` would declare (``foo`` for heirloom-foo): installed, disabled or
    not, a second one of that name is never loaded (heirloom-echo's ``echo`` was the built-in's; checker h354 F1)."""
    short = dist.removeprefix("heirloom-")
    return sorted({holder(ep) for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == short})


def _installed(dist: str) -> list[str]:
    """The plugins of the distribution ``dist`` installed here (loaded, failed or left out), else the distribution
    or the module of that name: a package of that name would replace it on ``pip install`` (``attrs``, ``click``:
    heirloom itself then failed to import; checker v8)."""
    if found := _plugin_distributions(dist):
        return found
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return [f"the distribution {dist} {importlib.metadata.version(dist)}"]
    module = dist.replace("-", "_")
    return [f"the module {module}"] if importlib.util.find_spec(module) is not None else []


def _plugin_distributions(name: str) -> list[str]:
    """The plugins whose distribution is called ``name`` (the selection variables take either name)."""
    plugins = get_kernel().plugins
    infos = [*plugins.infos.values(), *plugins.disabled()]
    return sorted({info.label for info in infos if (info.distribution or "").lower() == name.lower()})


def _listing(kinds: list[str]) -> str:
    names = [f"an {kind}" if kind == "api" else f"a {kind}" for kind in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _kinds(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    asked = [kind.strip() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in asked if kind not in KINDS]
    if unknown or not asked:
        close = "".join(f" ({kind!r}{did_you_mean(kind, KINDS)})" for kind in unknown)  # modle: model (h383 F5)
        raise click.BadParameter(f"expected a comma list of {', '.join(KINDS)}; got {value!r}{close}")
    return [kind for kind in KINDS if kind in asked]


@click.group("new")
def new_group() -> None:
    """Start something new from a template."""


@new_group.command("plugin")
@click.argument("name")
@click.option(
    "--kinds",
    default="source,model,api",
    show_default=True,
    callback=_kinds,
    help="Component types to generate, one of each (comma list of source, model, api).",
)
@click.option(
    "--dir",
    "target",
    type=a_path(file_okay=False),
    help="Folder to create (default: ./NAME). It must not exist or be empty.",
)
def new_plugin(name: str, kinds: list[str], target: Path | None) -> None:
    """Write a plugin package NAME (e.g. heirloom-demo) to start from.

    It holds a pyproject.toml with the entry point, one component per kind asked, a
    profile shipped as package data, tests using heirloom's pytest plugin
    (heirloom.testing) and a README. Its tests pass right after `pip install -e '.[test]'`.
    A NAME whose entry point (heirloom-foo's is foo) an installed package has, or whose
    profile (foo) or types (foo-model, ...) a plugin here registers already, is refused:
    a second entry point of a name is not loaded, and a name two plugins register is an
    error to use. So is one whose entry point is an installed plugin's distribution name,
    and one starting with test (its classes, TestModel, read as tests to pytest).
    """
    if not NAME.match(name):
        fail(f"error: invalid plugin name {name!r}: lower-case letters, digits and single dashes (heirloom-foo)", 2)
    if name.removeprefix("heirloom-") in ("", "heirloom"):
        fail(f"error: {name!r} leaves no name for the plugin: use heirloom-SOMETHING", 2)
    if not name.removeprefix("heirloom-")[0].isalpha():  # heirloom-1x wrote `class 1xModel`: no Python
        fail(f"error: invalid plugin name {name!r}: the part after heirloom- must start with a letter", 2)
    if len(name) > 80 or keyword.iskeyword(name.replace("-", "_")):  # its module and folder are named after it
        fail(f"error: invalid plugin name {name[:100]!r}: at most 80 characters, and not a Python keyword", 2)
    if (short := name.removeprefix("heirloom-")).startswith("test"):  # TestModel: pytest collects it (h374 F3)
        said = "its classes (TestModel) would read as tests to pytest, and `tests` is the test folder's name"
        fail(f"error: invalid plugin name {name!r}: a name starting with 'test': {said}", 2)
    if installed := _installed(name):
        fail(f"error: {name} is installed here already ({', '.join(installed)}): choose another plugin name", 2)
    if clash := _plugin_distributions(short):  # HEIRLOOM_DISABLE_PLUGINS=NAME would name both (h374 F4)
        said = f"{name}'s entry point {short!r} is the distribution name of {' and '.join(clash)}"
        fail(f"error: {said} (HEIRLOOM_LOAD_PLUGINS and _DISABLE_PLUGINS would name both): choose another name", 2)
    if taken := _taken(name, kinds):
        clash = "a name two plugins register is an error to use"
        fail(f"error: {name} would register {'; '.join(taken)} ({clash}): choose another plugin name", 2)
    if holders := _entry_point_holders(name):
        said = f"{name}'s entry point {name.removeprefix('heirloom-')!r} is {' and '.join(holders)}'s already"
        fail(f"error: {said} (a second one of a name is never loaded): choose another plugin name", 2)
    folder = target or Path(name)
    if folder.exists() and any(folder.iterdir()):
        fail(f"error: {folder} exists and is not empty; choose another --dir", 2)
    created = render_plugin(name, kinds)
    for relative, text in created.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    echo(f"created {folder}/ ({name}: {', '.join(kinds)})")
    for relative in sorted(created):
        echo(f"  {relative}")
    go = "" if folder.resolve() == Path.cwd() else f"cd {shlex.quote(str(folder))} && "  # pastes as it is
    echo(f"next: {go}pip install -e '.[test]' && pytest")


COMMANDS = [new_group]
