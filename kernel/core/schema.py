"""Validate a merged profile against component schemas; report every problem at once.

Each component table is structured into its attrs class with cattrs (extra keys forbidden, no
silent coercion), references between components are checked, and the dependency graph must be
acyclic. Every problem names the file that set the offending value and its key path."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from heirloom.converter import entry_type, make_converter
from heirloom.core.catalog import UNKNOWN_HOOKS
from heirloom.core.components import KINDS, PATH_KEY, TABLES, declared_references, references
from heirloom.core.errors import Problem, ProfileError
from heirloom.core.paths import data_root
from heirloom.core.plugins import PluginHost
from heirloom.core.profile import OVERRIDE_SOURCE, SINGLE_COMPONENT_TABLES, RawProfile, SetValue, key_parts
from heirloom.core.settings import NAME_PATTERN, SECTIONS, UNSETS, ComponentKeys, ModelKeys
from heirloom.links import checked_path, missing_path
from heirloom.profile_toml import as_written, dotted, joined, list_key, written
from heirloom.suggest import did_you_mean, no_component_to_change

TOP_LEVEL = ("extends", "description", "project", *TABLES.values(), *SECTIONS)
EXPECTED_TOP_LEVEL, DEFAULT_RESOURCES = f"expected one of: {', '.join(TOP_LEVEL)}", "local"
EMPTY = 'an empty path, where one is required ("" unsets only a path that may be unset)'
NOT_INSTALLED = "a plugin's type? install its package (one in development: HEIRLOOM_PLUGINS=its.module)"


@attrs.frozen
class ComponentSpec:
    """A validated component: its type and its configuration, ready to instantiate."""

    kind: str
    name: str
    use: str
    cls: type
    config: dict[str, Any]
    #: The kernel's keys of the table (``ComponentKeys``, or ``ModelKeys`` for models).
    keys: ComponentKeys
    #: ``(kind, name)`` of every component this one references.
    depends: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        table = TABLES[self.kind]
        return table if table in SINGLE_COMPONENT_TABLES else dotted([table, self.name])


@attrs.define
class ResolvedProfile:
    """A profile that passed validation: components in dependency order and settings."""

    raw: RawProfile
    project: str
    description: str
    components: list[ComponentSpec]
    settings: dict[str, Any]
    converter: cattrs.Converter

    @property
    def name(self) -> str:
        return self.raw.name

    def instantiate(self, spec: ComponentSpec) -> Any:
        """A fresh component object for ``spec`` (config only; ``start`` does the work)."""
        return self.converter.structure(spec.config, spec.cls)


class Validator:
    """Collects problems across a whole profile, then raises them together."""

    def __init__(self, raw: RawProfile, host: PluginHost):
        self.raw, self.host = raw, host
        self.problems: list[Problem] = list(raw.problems)  # the loader's that left the tree whole
        self.converter = make_converter(show=self.shown)  # a value found, as the file would write it

    def shown(self, value: Any, text: Callable[[str], str] | None = None) -> str:
        """``value`` as the file wrote it: a text from the environment as its ``${VAR}`` (checker v5 F1)."""
        return as_written(self.raw.unexpanded(value), text)

    def file_of(self, key: str) -> str:
        """The file that set ``key``, else the most derived one (``--set`` first) that set something under it (an
        extension's check across fields: its file), or under its table (a missing key: h447 F3), else above."""
        prov, key = self.raw.provenance, list_key(key)  # an item's file is its list's
        if key in prov:
            return prov[key]
        for scope in (key, key.rpartition(".")[0]):
            if below := [f for k, f in prov.items() if k.startswith(scope + ".")]:
                return max(below, key=lambda f: self.raw.files.index(f) if f in self.raw.files else len(self.raw.files))
        for above in (key.rsplit(".", cut)[0] for cut in range(1, key.count(".") + 1)):
            if above in prov:
                return prov[above]
        return self.raw.file

    def problem(self, key: str, message: str) -> None:
        if key.split("[")[0] in self.raw.secrets and ", got str " in message:  # epochs = "${EP}" is text in TOML
            message += " (${VAR} interpolates text: write the number or true/false in TOML, or use --set)"
        if message == "required key missing" and (why := self.raw.replaced.get(key.rpartition(".")[0])):
            message += f" ({why})"
        self.problems.append(Problem(self.file_of(key), key, self.raw.hide_secrets(key, message)))

    def run(self) -> ResolvedProfile:
        data = self.raw.data
        for key in [key for key in data if key not in TOP_LEVEL]:
            self.problem(dotted([key]), f"unknown top-level key{did_you_mean(key, TOP_LEVEL)} ({EXPECTED_TOP_LEVEL})")
        project = self._name("project", self._text(data, "project", default=self.raw.name), "project" not in data)
        description = self._text(data, "description", default="")
        settings = {name: self._section(name, cls) for name, cls in SECTIONS.items()}
        tables = self._component_tables(data)
        self.host.ensure(components=[(kind, use) for kind, _, use, _ in tables if isinstance(use, str)])
        specs = [spec for spec in (self._component(*entry) for entry in tables) if spec is not None]
        resolved = ResolvedProfile(self.raw, project, description, self._order(specs), settings, self.converter)
        read = {*self.raw.files, OVERRIDE_SOURCE, "?"}  # a parent not read: extends names none, or its TOML is invalid
        if any(p.path == "extends" or re.sub(r":\d+:\d+$", "", p.file) not in read for p in self.raw.problems):
            self.problems = [self._unread_parent(problem) for problem in self.problems]
        if self.problems:  # with the components that validated: profile check checks those against the store too
            raise ProfileError(self.problems, partial=resolved)
        return resolved

    def _unread_parent(self, problem: Problem) -> Problem:
        """``problem`` said to follow from a parent profile not read where that parent may be what is missing: a table
        no file gave a ``use`` (``no `use```, a manager's key read as a typo, ``enabled = false``: ``no such``)."""
        said = ("no `use`", "unknown key", "no such component", "no component")  # "no component 'x' to change" (v20)
        if not problem.path or not problem.message.startswith(said):
            return problem  # a file's own (its TOML invalid)
        parts = key_parts(problem.path)
        if f"{dotted(parts[:1] if parts[0] == TABLES['resources'] else parts[:2])}.use" in self.raw.provenance:
            return problem
        return attrs.evolve(problem, message=f"{problem.message} (or the profile `extends` names, not read, sets it)")

    def _text(self, data: dict, key: str, default: str) -> str:
        value = data.get(key, default)
        if isinstance(value, SetValue):  # as a text setting of a component reads it: quotes are TOML's
            try:
                value = data[key] = value.typed(str)
            except ValueError as exc:
                return self.problem(key, str(exc)) or default
        if not isinstance(value, str):
            return self.problem(key, f"expected str, got {type(value).__name__} {self.shown(value)}") or default
        return value

    def _name(self, key: str, value: str, from_file_name: bool = False) -> str:
        """``value`` if it is safe as a file name (a project's or a component's), else a problem."""
        if not NAME_PATTERN.fullmatch(value):
            rule = "ASCII letters, digits, '_', '.' and '-', not starting with '.', at most 100 (it names files)"
            hint = ' (taken from the profile\'s file name: set project = "...")' if from_file_name else ""
            self.problem(key, f"invalid name {written(value)}{hint}: {rule}")
        return value

    def _section(self, name: str, cls: type) -> Any:
        table = self.raw.data.get(name, {})
        if not isinstance(table, dict):
            table = self.problem(name, f"expected a table, got {type(table).__name__}") or {}
        typed = self._typed(name, table, cls)
        stand_ins = self._resolve_paths(name, typed, cls)  # [store] path: from the file that set it
        table.update(typed)
        return self._structure(name, typed | stand_ins, cls)

    def _component_tables(self, data: dict) -> list[tuple[str, str, Any, dict]]:
        """``(kind, name, use, table)`` for every component, shape-checked."""
        found = []
        for kind in KINDS:
            table_name = TABLES[kind]
            if table_name in SINGLE_COMPONENT_TABLES:
                table = data.get(table_name, {"use": DEFAULT_RESOURCES})
                if not isinstance(table, dict):
                    self.problem(table_name, f"expected a table, got {type(table).__name__}")
                    continue
                table.setdefault("use", DEFAULT_RESOURCES)
                found.append((kind, kind, _use(table), table))
                continue
            group = data.get(table_name, {})
            if not isinstance(group, dict):
                self.problem(table_name, f"expected a table of {kind} components, got {type(group).__name__}")
                continue
            for name, table in group.items():
                self._name(where := dotted([table_name, name]), name)
                if not isinstance(table, dict):
                    self.problem(where, f'expected a table like [{where}] with use = "...", got {self.shown(table)}')
                    continue
                found.append((kind, name, _use(table), table))
        return found

    def _component(self, kind: str, name: str, use: Any, table: dict) -> ComponentSpec | None:
        key = TABLES[kind] if TABLES[kind] in SINGLE_COMPONENT_TABLES else dotted([TABLES[kind], name])
        if use is None:  # never written (a typo of a defined component's name?), or a ${VAR} in it said so
            off = {key_parts(k)[1]: f for k, f in self.raw.disabled.items() if key_parts(k)[0] == TABLES[kind]}
            typo = no_component_to_change(name, self.raw.data[TABLES[kind]], off)
            typo = typo or f"no `use` (a new {kind} needs one)"
            return None if f"{key}.use" in {p.path for p in self.problems} else self.problem(key, typo)
        if not isinstance(use, str):
            return self.problem(f"{key}.use", f"expected the name of a type of {kind}, got {self.shown(use)}")
        try:
            cls = self.host.component_type(kind, use)
        except Exception as exc:  # noqa: BLE001 - ambiguity between plugins is reported, not raised
            return self.problem(f"{key}.use", str(exc))
        if cls is None:
            return self.problem(f"{key}.use", self._unknown_type(kind, use))
        keys_cls = ModelKeys if kind == "model" else ComponentKeys
        reserved = {f.name for f in attrs.fields(keys_cls)}
        kernel_keys = self._typed(key, {k: v for k, v in table.items() if k in reserved}, keys_cls)
        unsets = [f.name for f in attrs.fields(keys_cls) if f.metadata.get(UNSETS)]  # "": None, shown `not set`
        kernel_keys |= {name: None for name in unsets if kernel_keys.get(name) == ""}
        kernel_keys["use"] = use
        config = self._typed(key, {k: v for k, v in table.items() if k not in reserved}, cls)
        stand_ins = self._resolve_paths(key, config, cls)
        table.update(kernel_keys)
        table.update(config)  # the tree now shows typed, resolved values (profile show)
        config.update(stand_ins)
        keys = self._structure(key, kernel_keys, keys_cls)
        reported, defaults = len(self.problems), {f.name: f.default for f in attrs.fields(cls) if _plain_default(f)}
        defaults = {name: value for name, value in defaults.items() if name not in table}  # a refused --set: said
        instance = self._structure(key, defaults | config, cls, also=sorted(reserved))  # cattrs checks no default
        by = getattr(self.host.provider(kind, use), "label", "?")
        for i, problem in enumerate(self.problems[reported:], reported):  # a default the profile left, said so
            if (field := problem.path.removeprefix(f"{key}.").split("[")[0]) in defaults.keys() - config.keys():
                said = f"the default of {kind} type {use!r} (plugin {by}), {defaults[field]!r}, is refused"
                fix = f" (a plugin bug: set {field} in the profile meanwhile)" * problem.message.startswith("expected ")
                self.problems[i] = attrs.evolve(problem, message=f"{said}: {problem.message}{fix}")
        if instance is None or keys is None:  # every problem at once: the references it names are checked too
            found = [(f, k, t) for f, k, t in declared_references(cls, config) if isinstance(t, str)]
            return self._check_references(key, found)
        self._check_references(key, found := references(instance))
        return ComponentSpec(kind, name, use, cls, config, keys, tuple(sorted({(k, t) for _, k, t in found})))

    def _unknown_type(self, kind: str, use: str) -> str:
        failed = self.host.failures()
        if providers := [info for info in failed if use in info.provides[kind]]:  # known from an earlier load
            details = "; ".join(f"{info.label}: {info.error}" for info in providers)
            return f"{kind} type {use!r} comes from a plugin that failed to load this time: {details}"
        if left_out := self.host.left_out(kind, use):
            return f"{kind} type {use!r} comes from {left_out}"
        known = self.host.known_names(kind)
        message = f"unknown {kind} type {use!r}{did_you_mean(use, known)} (known: {', '.join(known) or 'none'}"
        hinted = did_you_mean(use, known) or not self.host.use_entry_points  # then selection() says what to do
        message += f"{self.host.selection()})" + ("" if hinted else f"; {NOT_INSTALLED}")
        if could := [info for info in failed if info.hooks in ([], UNKNOWN_HOOKS)]:  # known: what others provide
            details = "; ".join(f"{info.label}: {info.error}" for info in could)
            message += f". This profile needs it and these plugins failed to load: {details}"
        return message

    def _typed(self, key: str, table: dict, tp: Any) -> dict:
        """Replace ``--set`` texts by values of the field's schema type (or a problem, the key left out), one
        in a table of a field (``apis.t.window.end=0``) by the type of its key in the field's (``entry_type``)."""
        typed = {}
        for name, value in table.items():
            try:
                typed[name] = value.typed(entry_type(tp, name)) if isinstance(value, SetValue) else value
            except ValueError as exc:
                self.problem(f"{key}.{dotted([name])}", str(exc))
            if isinstance(value, dict):
                typed[name] = self._typed(f"{key}.{dotted([name])}", value, entry_type(tp, name))
        return typed

    def _resolve_paths(self, key: str, config: dict, cls: type) -> dict[str, str]:  # stand-ins of bad names
        stand_ins = {}
        for field in attrs.fields(cls):
            default = field.name not in config  # a relative default is the profile file's too, and is checked
            value, where = config.get(field.name, field.default or None), f"{key}.{field.name}"
            if (must_exist := field.metadata.get(PATH_KEY)) is None or not isinstance(value, str):
                continue
            if value == "":  # unsets a path an extended profile set, where the field may be unset
                config[field.name] = None if field.default is None else self.problem(where, EMPTY) or ""
                continue
            base = Path.cwd() if (origin := self.file_of(where)) == OVERRIDE_SOURCE else Path(origin).parent
            path = Path(os.path.realpath(base / value)) if not Path(value).is_absolute() else Path(value)  # loops too
            config[field.name] = str(path)
            exists, unusable = checked_path(self.raw.hide_secrets(where, value), path)
            if unusable:  # the component checks a name its checks cannot raise on, so every other problem is said
                self.problem(where, unusable)
                stand_ins[field.name] = os.path.join(base, "(an unusable name)")  # v13 F2
            elif must_exist and not exists:  # a path from the environment as written, resolved or not (h419 F1)
                shown = Path(self.raw.secrets[where]) if where in self.raw.secrets and not self.raw.revealed else path
                said = missing_path(value, base / value, shown, data_root(), self._datasets)
                self.problem(where, said + " (the default of its type)" * default)
        return stand_ins

    def _datasets(self) -> list[str]:
        """The data sets plugins register: imported for a missing path only, whose hint may name one to fetch."""
        self.host.ensure(hooks=["heirloom_register_datasets"])
        return list(self.host.named["datasets"])

    def _structure(self, key: str, config: dict, cls: type, also: typing.Sequence[str] = ()) -> Any:
        """``config`` structured into ``cls``, or None after reporting every problem; ``also``:
        keys of the table that are valid though not ``cls``'s (the kernel's ``use``, ``inherit``...)."""
        reported = len(self.problems)
        try:
            return self.converter.structure(config, cls)
        except (ClassValidationError, IterableValidationError) as exc:
            said = {problem.path for problem in self.problems}  # a --set value _typed refused is not "missing" too
            for path, message in flatten_errors(exc, [], {cls: also}):
                if joined(key, path) not in said or message != "required key missing":
                    self.problem(joined(key, path), message)
        except Exception as exc:  # noqa: BLE001 - attrs validators and __init__ errors
            field = _field_named_in(exc, cls)
            self.problem(f"{key}.{field}" if field else key, _raised(exc))
        named = {problem.path for problem in self.problems[reported:]}  # attrs and cattrs stop early: check each
        for field, message in self._field_problems(config, cls):
            if not any(path.split("[")[0] == f"{key}.{field}" for path in named):  # l2_search[0] said it
                self.problem(f"{key}.{field}", message)
        return None

    def _field_problems(self, config: dict, cls: type) -> typing.Iterator[tuple[str, str]]:
        """``(field, message)`` for each field of ``config`` whose value fails its validator."""
        for field in [f for f in attrs.fields(attrs.resolve_types(cls)) if f.name in config and f.validator]:
            try:
                field.validator(None, field, self.converter.structure(config[field.name], field.type))
            except ValueError as exc:
                yield field.name, _message(exc)
            except Exception:  # noqa: BLE001 - a wrong type (reported above) or a check across fields
                continue

    def _check_references(self, key: str, found: list[tuple[str, str, Any]]) -> None:
        for field, kind, target in found:
            group = table if isinstance(table := self.raw.data.get(TABLES[kind]), dict) else {}  # `models = 3`: said
            where, named = f"{key}.{field}", dotted([TABLES[kind], str(target)])
            if (off := self.raw.disabled.get(named)) is not None:  # its table dropped: "no model named" misled
                self.problem(where, f"{named} is disabled (by enabled = false in {off}), but {where} still uses it")
            elif not isinstance(target, str) or target not in group:
                said = f"no {kind} named {target!r}{did_you_mean(str(target), names := sorted(group))}"
                shown = [name if name.isprintable() else repr(name) for name in names]  # one line: v22 F5
                self.problem(where, f"{said} ({TABLES[kind]} defined: {', '.join(shown) or 'none'})")

    def _order(self, specs: list[ComponentSpec]) -> list[ComponentSpec]:
        """Dependency order (resources first); a cycle is a problem naming the chain."""
        by_key = {(s.kind, s.name): s for s in specs}
        edges = {k: [d for d in s.depends if d in by_key] for k, s in by_key.items()}
        ordered: list[ComponentSpec] = []
        state: dict[tuple[str, str], str] = {}

        def visit(node: tuple[str, str], chain: list[tuple[str, str]]) -> None:
            if state.get(node) == "done":
                return
            if state.get(node) == "active":
                cycle = [*chain[chain.index(node) :], node]
                return self.problem(by_key[node].key, "dependency cycle: " + " -> ".join(by_key[n].key for n in cycle))
            state[node] = "active"
            for target in edges[node]:
                visit(target, [*chain, node])
            state[node] = "done"
            ordered.append(by_key[node])

        for node in sorted(by_key, key=lambda n: (n[0] != "resources", KINDS.index(n[0]), n[1])):
            visit(node, [])
        return ordered


def flatten_errors(
    exc: BaseException, path: list[str], also: typing.Mapping[type, typing.Sequence[str]] | None = None
) -> typing.Iterator[tuple[list[str], str]]:
    """(key path, message) for every leaf error inside a cattrs validation error; ``also``:
    more valid keys of a class's table, offered with its own for an unknown key."""
    also = also or {}
    if isinstance(exc, ForbiddenExtraKeysError):
        names = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        names += [name for name in also.get(exc.cl, ()) if name not in names]
        for key in sorted(map(str, exc.extra_fields)):  # a msgpack map key may be a number
            yield [*path, key], f"unknown key{did_you_mean(key, names)} (valid keys: {', '.join(names) or 'none'})"
    elif isinstance(exc, (ClassValidationError, IterableValidationError)):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            index = getattr(note, "index", None)  # a list's item; a mapping's key is a key (weights.y, not [y])
            step = note.name if hasattr(note, "name") else f"[{index}]" if isinstance(index, int) else str(index)
            yield from flatten_errors(sub, [*path, step], also)
        for sub in without_notes:  # __init__'s (attrs validators, a check across fields) or an unknown key
            field = _field_named_in(sub, getattr(exc, "cl", None))  # "'field' must ...": at its field
            where = [*path, field] if field else path
            cattrs_own = isinstance(sub, ClassValidationError | IterableValidationError | ForbiddenExtraKeysError)
            yield from flatten_errors(sub, where, also) if cattrs_own else [(where, _raised(sub))]
    elif isinstance(exc, KeyError):
        yield path, "required key missing"
    else:
        yield path, _message(exc)


def _plain_default(field: attrs.Attribute) -> bool:
    """A default a profile could have written (a TOML value; no factory, no converter to apply)."""
    return field.init and field.converter is None and isinstance(field.default, str | int | float | bool | list | dict)


def _message(exc: BaseException) -> str:  # attrs' own validators raise (message, attribute, ...); in_ adds its choices
    if len(exc.args) == 4 and isinstance(exc.args[2], tuple | list | set | frozenset) and isinstance(exc.args[3], str):
        return exc.args[0] + did_you_mean(exc.args[3], map(str, exc.args[2]))
    return exc.args[0] if len(exc.args) > 1 and isinstance(exc.args[0], str) else str(exc)


def _raised(exc: BaseException) -> str:  # a check's words; any other exception (a KeyError too) is a bug
    checked = isinstance(exc, ValueError | TypeError | ProfileError) and _message(exc)
    return checked or f"{type(exc).__name__}: {_message(exc)} (raised by the component's own code: a plugin bug?)"


def _field_named_in(exc: BaseException, cls: type | None) -> str | None:
    """The attrs field a message starts with (``'epochs' must be > 0``, ``'texts[2]' is``), if any."""
    if cls is None or not attrs.has(cls) or isinstance(exc, ForbiddenExtraKeysError):  # its str() fails on int keys
        return None
    message = _message(exc)
    starts = [(f"'{f.name}'", f"'{f.name}[", f"Length of '{f.name}'") for f in attrs.fields(cls)]  # attrs' min_len
    return message.split("'")[1] if any(message.startswith(forms) for forms in starts) else None


def validate(raw: RawProfile, host: PluginHost) -> ResolvedProfile:
    """Validate ``raw`` with the component types ``host`` provides; raise ProfileError."""
    return Validator(raw, host).run()


def _use(table: dict) -> Any:
    """A component table's ``use``, a ``--set`` override's text taken as the type name (the
    plugin that provides it must be imported before the table is checked)."""
    use = table.get("use")
    if isinstance(use, SetValue):
        use = table["use"] = use.name()
    return use
