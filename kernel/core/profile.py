"""Profiles: TOML files that name components and wire them, resolved into one tree.

Resolution: load the file, resolve its ``extends`` chain (names or relative paths), deep-merge parents
then child (later wins; a table whose ``use`` changes is replaced, not merged; ``project`` is never
inherited), apply ``--set`` overrides, drop components with ``enabled = false``, and interpolate
``${VAR}`` / ``${data}`` / ``${project}``. Every leaf value remembers the file that set it, and values
from the environment are marked secret (``profile show`` masks them); :mod:`heirloom.core.schema` validates.
A file is bounded before it is parsed (:mod:`heirloom.toml_bounds`); merging is linear in the values."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.components import TABLES
from heirloom.core.errors import PluginError, Problem, ProfileError
from heirloom.core.paths import data_root
from heirloom.files import NotRegularFile
from heirloom.links import broken_link, broken_profile, found_in
from heirloom.profile_toml import BARE_KEY, as_written, dotted, hidden, list_key
from heirloom.set_value import HOLDS_NUL, SetValue
from heirloom.suggest import dotted_name_hint, extends_hint, no_such_component, undefined, whole_value_hint
from heirloom.toml_bounds import MAX_DEPTH, QUOTED, TOO_LONG_INTEGER, TwiceInToml, read_bounded

SINGLE_COMPONENT_TABLES = {"resources"}  # one resource manager per system: [resources]
OVERRIDE_SOURCE = "--set"
_Found = tuple[dict[str, str], dict[str, str]]  # (_interpolate's: keys' texts from the environment, texts by value)
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")  # the last: left unclosed
MAX_EXTENDS = 64  # files in one extends chain: 1,000 was a RecursionError
_KEY_PART = rf"{BARE_KEY.pattern}|{QUOTED}"  # a TOML key part: bare or quoted
_OVERRIDE = re.compile(rf"[ \t]*((?:{_KEY_PART})(?:[ \t]*\.[ \t]*(?:{_KEY_PART}))*)[ \t]*=(.*)", re.DOTALL)
PROFILE_IS = "a profile is a regular .toml file"  # in a path it was a raw ValueError, late


#: What a value from the environment shows instead of itself in ``profile show`` (errors: the text as written).
MASK = "********"


@attrs.define
class RawProfile:
    """A merged, not yet validated profile: the tree and where each leaf came from."""

    name: str
    file: str
    data: dict[str, Any]
    provenance: dict[str, str]
    files: list[str]
    #: Keys whose value came (in whole or part) from an environment variable, each with its text as written
    #: (``${DATA_DIR}/x``): an error shows that in the value's place, which named no folder tried (checker 305 F11);
    #: a list's, its items' texts that took one, joined by spaces (each ${VAR} an error's quote is told by).
    secrets: dict[str, str] = attrs.field(factory=dict)
    #: Components ``enabled = false`` dropped (``models.x``), with the file that said so.
    disabled: dict[str, str] = attrs.field(factory=dict)
    #: Problems that leave the tree whole (a value set on a disabled component): validation reports them.
    problems: list[Problem] = attrs.field(factory=list)
    #: Component tables a later file's (or --set's) other ``use`` replaced: why keys set before are missing.
    replaced: dict[str, str] = attrs.field(factory=dict)
    revealed: bool = False  # --show-secrets: errors quote values from the environment too
    #: Each text that took an environment variable, at any depth (an inline table's, a list's item), by its value.
    env_texts: dict[str, str] = attrs.field(factory=dict)

    def unexpanded(self, value: Any) -> Any:
        """``value`` with each text from the environment in it as the profile wrote it, for an error to quote (an
        inline table's or list's was quoted in clear, cut or not: checker v5 F1)."""
        if isinstance(value, dict):
            return {key: self.unexpanded(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.unexpanded(item) for item in value]
        return self.env_texts.get(value, value) if isinstance(value, str) and not self.revealed else value

    def hide_secrets(self, key: str, message: str) -> str:
        """``message`` with each value from the environment written as the profile wrote it (``${VAR}``): the values at
        ``key`` first (each under it, for a table: h411 F1; a list's items: h325 F11), then any (v5 F1); see hidden."""
        if self.revealed:
            return message
        for at in [at for at in self.secrets if at in (key, list_key(key)) or at.startswith(f"{key}.")]:
            node: Any = self.data
            for part in key_parts(at):
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(text := node.text if isinstance(node, SetValue) else node, str | int | float) and text != "":
                shown = str(text).lower() if isinstance(text, bool) else str(text)  # --set threads=${T}: h419 F3
                message = hidden(message, shown, self.secrets[at])  # at its own key first (the right one: h419 F8)
            for var in {match[1] for match in _VAR.finditer(self.secrets[at]) if match[1]}:
                if value := os.environ.get(var):  # quoted, as an error quotes a value: "1" is no word to replace
                    message = hidden(message, value, f"${{{var}}}")
        for value, text in sorted(self.env_texts.items(), key=lambda pair: -len(pair[0])):  # "ab" before "a"
            message = hidden(message, value, text)
        return message


def display_path(path: Path | str) -> str:
    """A path relative to the working directory when under it (shorter messages)."""
    path = Path(path)
    try:
        return str((path.parent.resolve() / path.name).relative_to(Path.cwd().resolve()))  # a link: its own name
    except (ValueError, RuntimeError, OSError):  # not under it; a symbolic link loop
        return str(path)


def profile_name(path: Path) -> str:
    return path.name.removesuffix(".toml")


ProfileLookup = Callable[[str], "Path | None"]


class ProfileLoader:
    """Finds profile files by name or path and resolves ``extends`` chains."""

    def __init__(self, registered: ProfileLookup | None = None, missing: Callable[..., str] | None = None):
        self._registered = registered or (lambda name: None)
        self._missing = missing or (lambda name, skip=None: "")  # why no profile has a name (a failed plugin...)

    def search_dirs(self) -> list[Path]:
        dirs = [Path(p) for p in os.environ.get("HEIRLOOM_PROFILE_PATH", "").split(os.pathsep) if p]
        return [*dirs, Path.cwd() / "profiles"]

    def find(self, ref: str, relative_to: Path | None = None, skip: Path | None = None) -> Path | None:
        """A path for ``ref``: a ``.toml`` that exists (``/etc/passwd`` is none; reading a FIFO or
        a folder says what it is), else a name found, other than the file ``skip`` (the extending
        one: a local ``minimal.toml`` extends the ``minimal`` it shadows)."""
        if ref.endswith(".toml") or "/" in ref or os.sep in ref:
            candidate = Path(ref) if relative_to is None else relative_to / ref
            return candidate if candidate.exists() and candidate.suffix == ".toml" else None
        if (path := found_in(f"{ref}.toml", self.search_dirs(), relative_to, skip)) is not None:
            return path
        registered = self._registered(ref)  # the extending file itself where ./profiles is the plugin's folder
        return registered if registered is None or Path(os.path.realpath(registered)) != skip else None

    def load(self, ref: str, overrides: Iterable[str] = ()) -> RawProfile:
        """Resolve ``ref`` and its ``extends`` chain into one merged tree, or raise."""
        if (path := self.find(ref)) is None and Path(ref).is_file():  # /etc/passwd
            named = "is a file whose name does not end in .toml"
            raise ProfileError([Problem(ref, "", f"not a profile: it {named} ({PROFILE_IS})")])
        if why := broken_profile(ref, self.search_dirs(), display_path) if path is None else "":
            raise ProfileError([Problem(ref, "", f"not a profile: {why}")])
        if (path := path or (Path(ref) if Path(ref).exists() else None)) is None:  # a folder, /dev/null: read, said
            searched = ", ".join(display_path(d) for d in self.search_dirs())
            why = f"no such profile file or profile name (searched: {searched} and plugin profiles){self._missing(ref)}"
            raise ProfileError([Problem(ref, "", why)])
        problems: list[Problem] = []
        data, provenance, files = {}, {}, []  # the merged tree, the file of each leaf's value, the files merged
        self._merged: set[Path] = set()
        self._replaced: dict[str, str] = {}
        self._merge_file(path, data, provenance, files, problems, chain=[])
        _apply_overrides(data, provenance, list(overrides), problems, self._replaced)
        _drop_disabled(data, provenance, late := [], disabled := {}, [*files, OVERRIDE_SOURCE])
        secrets: dict[str, str] = {}
        texts: dict[str, str] = {}
        own = {"project": data.pop("project")} if "project" in data else {}  # first: ${project} is its value
        _interpolate(own, provenance, problems, [], (secrets, texts), "")  # (the extending file's own project)
        project = str(getattr(given := own.get("project"), "text", given) or profile_name(path))
        data = own | _interpolate(data, provenance, problems, [], (secrets, texts), project)
        name, file = profile_name(path), display_path(path)
        if problems and file not in files:  # else what did merge is validated too, all at once
            raise ProfileError([*problems, *late])
        said = [*problems, *late]
        return RawProfile(name, file, data, provenance, files, secrets, disabled, said, self._replaced, env_texts=texts)

    def _merge_file(
        self,
        path: Path,
        data: dict,
        provenance: dict,
        files: list[str],
        problems: list[Problem],
        chain: list[Path],
        by: str = "",  # the file whose extends entry names ``path``: a cycle or a chain too long is its (h325 F7)
    ) -> None:
        label = display_path(path)
        resolved = Path(os.path.realpath(path))  # resolve() raised on a symbolic link loop: a traceback

        def refuse(key: str, message: str, where: str = label) -> None:
            problems.append(Problem(where, key, message))

        def unreadable(message: str) -> None:  # said at the extends naming it, which is what to mend (h365 F4)
            return refuse("extends", f"{label} is {message}", by) if by else refuse("", message)

        if resolved in chain:
            cycle = " -> ".join(display_path(p) for p in [*chain, resolved])
            return refuse("extends", f"extends cycle: {cycle}", by or label)
        if len(chain) >= MAX_EXTENDS:
            said = f"over {MAX_EXTENDS} files extend one another, from {display_path(chain[0])} to {label}"
            return refuse("extends", said, by or label)
        if resolved in self._merged:  # each file merges once, first seen: a shared base would undo a parent's edits
            return
        self._merged.add(resolved)
        try:
            tree = read_bounded(path)
        except TwiceInToml as exc:
            return refuse(exc.key, exc.said, f"{label}:{exc.at}")
        except tomllib.TOMLDecodeError as exc:
            return refuse("", f"invalid TOML: {exc}")
        except NotRegularFile as exc:  # a FIFO or a folder named x.toml: once "no such profile"
            return unreadable(f"not a profile: it {exc.strerror} ({PROFILE_IS})")
        except UnicodeDecodeError as exc:  # its "position 41" counted bytes: say the line and column
            before = exc.object[: exc.start]
            line, column = before.count(b"\n") + 1, len(before.rpartition(b"\n")[2].decode("utf-8-sig")) + 1
            said = f"not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"
            return refuse("", said, f"{label}:{line}:{column}")
        except OSError as exc:  # /proc/self/mem: EIO
            return unreadable(f"not a profile: it cannot be read ({exc.strerror or exc})")
        except (ValueError, RecursionError) as exc:
            return refuse("", str(exc) or f"nested more than {MAX_DEPTH} levels deep")
        if chain:  # a project's name (its artifact namespace) is never inherited: an extension stores its own
            tree.pop("project", None)
        parents = tree.pop("extends", [])
        parents = [parents] if isinstance(parents, str) else parents
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            refuse("extends", f"expected a profile name or a list of names, got {as_written(parents)}")
            parents = []
        for parent in parents:
            try:
                parent_path = self.find(parent, relative_to=path.parent, skip=resolved)
            except PluginError as exc:  # two plugins register the name: this file's extends is what meets it
                refuse("extends", str(exc))
                continue
            if parent_path is None and "://" in parent:  # the path's // was collapsed: a value not in the file
                refuse("extends", f"{parent!r} is a URL: extends names profile files and names (nothing is downloaded)")
            elif parent_path is None:
                rel = Path(parent if (by_path := parent.endswith(".toml") or "/" in parent) else f"{parent}.toml")
                link = Path(os.path.realpath(path.parent / rel.parent)) / rel.name  # as tried (h447 F4, v38 F2)
                file = f"no profile file {link}" + (f": it {why}" if (why := broken_link(link)) else "")
                file += "" if why else f" (a .toml file; {parent!r} read from {label}'s folder)"
                where = f"looked next to {label}, in {', '.join(display_path(d) for d in self.search_dirs())}"
                named = f"no profile named {parent!r} ({where} and plugin profiles)"
                itself = not by_path and _same(self.find(parent, path.parent), resolved)
                if itself:
                    named = f"no profile named {parent!r} but this file itself ({where} and plugin profiles: a name"
                    named += " finding the extending file is looked up further on)"  # no did-you-mean it (h325 F4)
                said = file if by_path or why else named + ("" if itself else self._missing(parent, resolved))
                refuse("extends", said + extends_hint(parent, path.parent, lambda name: self.find(name) is not None))
            if parent_path is not None:
                self._merge_file(parent_path, data, provenance, files, problems, [*chain, resolved], label)
        _merge(data, tree, provenance, label, [], self._replaced)
        files.append(label)


def _same(path: Path | None, resolved: Path) -> bool:
    return path is not None and Path(os.path.realpath(path)) == resolved


def _merge(base: dict, overlay: dict, provenance: dict[str, str], label: str, path: list[str], replaced: dict) -> None:
    """Deep-merge ``overlay`` into ``base``; record ``label`` as provenance of each leaf, and in ``replaced``
    the component tables whose ``use`` it changes. A replaced value forgets only its own provenance entries:
    linear in the values merged."""
    for key, value in overlay.items():
        here, old = [*path, key], base.get(key)
        swaps_type = isinstance(value, dict) and "use" in value and isinstance(old, dict) and "use" in old  # (v39 F3)
        if swaps_type and _is_component_table(here) and _env_text(value["use"]) != _env_text(old.get("use")):
            replaced[dotted(here)] = _replacement(provenance, here, old, value["use"], label)
            _clear(old, provenance, here)  # swapping the component type replaces the table
        if isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                _forget(provenance, here, old)  # None when absent: nothing to forget
                base[key] = {}
            _merge(base[key], value, provenance, label, here, replaced)
            if not value:
                provenance[dotted(here)] = label
        else:
            _forget(provenance, here, old)
            base[key] = value
            provenance[dotted(here)] = label


def _env_text(use: Any) -> Any:
    """A ``use`` as compared to the one it may replace: ``${VAR}`` read as interpolation will read it (the text
    was compared, so "${MT}" replaced a table of the very type MT names, silently: checker h325 F1)."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$" or match[1] is None:
            return "$" if match[0] == "$$" else match[0]
        value = os.environ.get(match[1])
        return value if value or (value is not None and match[2] is None) else match[2] or match[0]

    return _VAR.sub(one, use) if isinstance(use, str) else use


def _clear(table: dict, provenance: dict, path: list[str]) -> None:
    """Empty a component table another ``use`` replaces, but for an ``enabled = false`` and its file: the new
    type re-enabled the component, unsaid, where a value of the same type was refused (checker h325 F12)."""
    enabled, by = table.get("enabled"), provenance.get(dotted([*path, "enabled"]), "?")
    _forget(provenance, path, table)
    table.clear()
    if _disabled(enabled):
        table["enabled"], provenance[dotted([*path, "enabled"])] = enabled, by


def _replacement(provenance: dict[str, str], path: list[str], old: dict, use: str, label: str) -> str:
    """Why a key that an extended file set is missing: ``label`` gave the table at ``path`` another type."""
    was = f"{old.get('use')!r} ({provenance.get(dotted([*path, 'use']), '?')})"
    keys = ", ".join(dotted([key]) for key in old if key != "use")
    lost = f"; the keys set before no longer apply: {keys}" if keys else ""
    return f"{label} changed use from {was} to {use!r}: the table was replaced, not merged{lost}"


def _is_component_table(path: list[str]) -> bool:
    single = len(path) == 1 and path[0] in SINGLE_COMPONENT_TABLES
    return single or (len(path) == 2 and path[0] in TABLES.values() and path[0] not in SINGLE_COMPONENT_TABLES)


def _settable(parts: list[str]) -> bool:
    """Whether ``--set`` sets ``parts``: a key of a component's table or, as a file's table merges, of a table in
    it (``apis.t.window.end``: checker h301 F5); not a table itself, nor a list's item (a list is set whole)."""
    field = next((n for n in range(1, len(parts)) if _is_component_table(parts[:n])), None)
    return field is not None and (field == len(parts) - 1 or not parts[-1].isdigit())


def _forget(provenance: dict[str, str], path: list[str], old: Any) -> None:
    """Drop the provenance of ``old``, the value at ``path`` about to be replaced or removed."""
    provenance.pop(dotted(path), None)
    if isinstance(old, dict):
        for key, value in old.items():
            _forget(provenance, [*path, key], value)


def key_parts(key: str) -> list[str]:
    """The parts of a TOML dotted key (as dotted writes one); TOMLDecodeError when it is none."""
    node, parts = tomllib.loads(f"{key} = 0"), []
    while isinstance(node, dict):
        [(part, node)] = node.items()
        parts.append(part)
    return parts


def _override(item: str) -> tuple[list[str], str] | None:
    """``KEY.PATH=VALUE`` as (parts, VALUE), the key read as TOML's dotted key (``models."sent.v2".epochs``)."""
    if not (match := _OVERRIDE.fullmatch(item)) or match[1].count(".") >= MAX_DEPTH:  # as in a file; tomllib: slow
        return None
    try:
        return key_parts(match[1]), match[2]
    except tomllib.TOMLDecodeError:  # a quoted part's escape that TOML has not ("\q")
        return None


def _apply_overrides(data: dict, provenance: dict, items: list[str], problems: list[Problem], replaced: dict) -> None:
    split = {item: _override(item) for item in items}
    created = {
        tuple(parts[:-1]): SetValue(text).name() for parts, text in filter(None, split.values()) if parts[-1] == "use"
    }
    for at, use in created.items():
        old = functools.reduce(lambda node, part: node.get(part) if isinstance(node, dict) else None, at, data)
        if _is_component_table(list(at)) and isinstance(old, dict) and _env_text(old.get("use", use)) != _env_text(use):
            replaced[dotted(at)] = _replacement(provenance, list(at), old, use, OVERRIDE_SOURCE)
            _clear(old, provenance, list(at))  # another type replaces the table, as a file's `use` does: the
            # inherited keys were the old type's (then "unknown key"); other --set values stay
    for item in items:
        if (given := split[item]) is None:
            said = f'a TOML dotted key of {MAX_DEPTH} parts at most, one of more than A-Za-z0-9_- in quotes, x."y.z"=3'
            problems.append(Problem(OVERRIDE_SOURCE, "", f"expected KEY.PATH=VALUE ({said}), got {item!r:.200}"))
            continue
        parts, text = given
        key = dotted(parts)
        if parts[0] == "extends" or (parts[0] in TABLES.values() and not _settable(parts)):
            whole = "a --set sets one value (models.NAME.KEY=VALUE, resources.KEY=VALUE), not a table or extends"
            problems.append(Problem(OVERRIDE_SOURCE, key, whole + whole_value_hint(parts, data.get(parts[0]))))
            continue
        group = data.get(parts[0]) if _is_component_table(parts[:2]) and len(parts) > 2 else None
        if isinstance(group, dict) and parts[1] not in group and tuple(parts[:2]) not in created:  # a typo
            named = no_such_component(parts[0], parts[1], group, dotted_name_hint(parts, group))
            problems.append(Problem(OVERRIDE_SOURCE, key, named))
            continue
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(Problem(OVERRIDE_SOURCE, key, f"{part!r} is a value, not a table"))
                break
            node = child
        else:
            _forget(provenance, parts, node.get(parts[-1]))
            node[parts[-1]] = SetValue(text)
            provenance[key] = OVERRIDE_SOURCE


def _drop_disabled(data: dict, provenance: dict, problems: list[Problem], disabled: dict, order: list[str]) -> None:
    """Remove components whose merged table says ``enabled = false`` (into ``disabled``, each with the
    file that said so: a reference to one is told why it is gone); a value a later file (in ``order``,
    the extends chain then ``--set``) set on one is a problem naming both files: it was dropped unsaid."""
    rank = {file: i for i, file in enumerate(order)}
    for table_name in TABLES.values():
        if not isinstance(table := data.get(table_name), dict):
            continue
        if table_name in SINGLE_COMPONENT_TABLES:  # refused: it would drop every inherited setting, silently
            if _disabled(table.get("enabled")):
                why = "cannot be false: a system always has a resource manager (the default one, with every setting "
                why += "inherited dropped): set the keys to change instead, or another `use` to replace the table"
                problems.append(Problem(provenance.get(f"{table_name}.enabled", "?"), f"{table_name}.enabled", why))
            continue
        for name in [n for n, t in table.items() if isinstance(t, dict) and _disabled(t.get("enabled"))]:
            prefix = f"{dotted([table_name, name])}."
            by = provenance.get(f"{prefix}enabled", "?")
            if typo := undefined(table_name, name, table):  # the component it meant stayed, unsaid
                problems.append(Problem(by, f"{prefix}enabled", typo))
            else:
                disabled[prefix[:-1]] = by
            for key, origin in provenance.items():  # set after the file (or --set) that disabled it, not by it
                later = rank.get(origin, -1) > rank.get(by, len(order)) or origin == by == OVERRIDE_SOURCE
                if key.startswith(prefix) and later and key != f"{prefix}enabled":
                    said = f"{prefix[:-1]} is disabled (by enabled = false in {by}): this value would be dropped"
                    problems.append(Problem(origin, key, f"{said} (enabled = true where it is set brings it back)"))
            _forget(provenance, [table_name, name], table.pop(name))


def _disabled(value: Any) -> bool:
    return value.text.strip() == "false" if isinstance(value, SetValue) else value is False


def _interpolate(node: Any, provenance: dict, problems: list[Problem], path: list[str], found: _Found, project: str):
    """``node`` interpolated; ``found``: the keys whose value took an environment variable, each with its text as
    written (:attr:`RawProfile.secrets`), and each such text by its value (:attr:`RawProfile.env_texts`)."""
    secrets, texts = found
    if isinstance(node, dict):
        for key, said in ((key, len(problems)) for key in list(node)):  # said: the problems before its value's
            node[key] = _interpolate(node[key], provenance, problems, [*path, str(key)], found, project)
            if len(problems) > said and not isinstance(node[key], dict):  # unknown: validated as if not set
                _forget(provenance, [*path, str(key)], node.pop(key))  # nor shown (profile show), nor masked
                secrets.pop(dotted([*path, str(key)]), None)
        return node
    if isinstance(node, list):  # its items' texts, an inline table's in one too, are the list's (checker v5 F1)
        inner: dict[str, str] = {}
        items = [_interpolate(item, provenance, problems, path, (inner, texts), project) for item in node]
        if inner:
            secrets[dotted(path)] = " ".join(inner.values())
        return items
    if isinstance(node, SetValue):
        return SetValue(_substitute(node.text, provenance, problems, path, found, project))
    if node == f"\0{TOO_LONG_INTEGER}":  # what read_bounded read in place of such an integer
        problems.append(Problem(provenance.get(dotted(path), "?"), dotted(path), TOO_LONG_INTEGER))
    elif isinstance(node, str) and "\0" in node:
        problems.append(Problem(provenance.get(dotted(path), "?"), dotted(path), HOLDS_NUL))
    return _substitute(node, provenance, problems, path, found, project) if isinstance(node, str) else node


def _substitute(text: str, provenance: dict, problems: list[Problem], path: list[str], found: _Found, project: str):
    key, (secrets, texts), took = dotted(path), found, []

    def refused(match: re.Match[str], what: str) -> str:
        problems.append(Problem(provenance.get(key, "?"), key, what))
        return match.group(0)  # as written: the problem stops the profile anyway

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default, at = match.group(1), match.group(2), text[match.start() :][:40]
        if match.group(0) == "${":  # unclosed, or no name: a typo rather than text
            return refused(match, f"cannot interpolate {at!r}: ${{ takes a NAME (A-Z, 0-9, _) and }} ($$: a $)")
        if default is not None and "${" in default:  # ${A:-${B}} read '${B' as the default, then a '}'
            return refused(match, f"cannot interpolate {at!r}: a :- default is plain text, no ${{...}}")
        if name == "project":  # project = "p-${project}" would name itself
            return project if key != "project" else refused(match, "refers to itself (${project} is its name)")
        if name == "data":
            return str(data_root())
        if os.environ.get(name) or (name in os.environ and default is None):  # as in sh, :- takes "" as unset
            secrets[key] = f"{secrets[key]} {text}" if secrets.get(key, text) != text else text  # a list's items
            took.append(name)  # (an environment value may be a credential: never shown by default)
            return os.environ[name]
        if default is not None:
            return default
        return refused(match, f"cannot interpolate ${{{name}}}: environment variable {name} is not set")

    if (value := _VAR.sub(replace, text)) and took:
        texts[value] = text
    return value
