"""The strict cattrs converter that structures profile tables and request bodies, and the field types it can give.

It imports no layer of the kernel, so the plugin host can check a component type's fields when a plugin registers it
(``complex`` or a class of the plugin's own fails the plugin's load then, not the first profile that uses it)."""

from __future__ import annotations

import collections.abc
import enum
import functools
import types
import typing
from reprlib import repr as short
from typing import Any

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.strategies import configure_union_passthrough

from heirloom.suggest import did_you_mean

SEQUENCES = (list, tuple, collections.abc.Sequence)
#: What a component's field may be typed, as the converter structures a TOML value into it.
SUPPORTED = (
    "str, int, float, bool, Any, pathlib.Path, Literal[...] of str/int/bool, an Enum (by its value), "
    "X | None, unions of str/int/float/bool, list/tuple/set/frozenset/Sequence of these, dict/Mapping with str keys, "
    "and a nested attrs class whose fields have these types"
)


#: How a caller names, in its messages, a value of a type of its own (the wire's buffer: ``a buffer (uint8, shape
#: [2])``, not a repr cut mid-quote); None for the others, named by their type and repr.
Quote = typing.Callable[[Any], "str | None"]
#: How a message writes a value after its type, given how to write a text (``repr``, or ``reprlib.repr`` where it
#: may be long): as Python does (the wire's words, docs/PROTOCOL.md), or as TOML does (a profile's: ``as_written``).
Show = typing.Callable[[Any, typing.Callable[[str], str]], str]


def _as_python(value: Any, text: typing.Callable[[Any], str]) -> str:
    return text(value)


def _named(value: Any, quote: Quote, show: Show, text: typing.Callable[[str], str] = repr) -> str:
    if quoted := quote(value):
        return quoted
    try:
        shown = show(value, text)
    except RecursionError:  # nested deeper than repr goes: the message was "maximum recursion depth exceeded" (h363 F2)
        shown = "(not shown)"
    return f"{type(value).__name__} {shown}"


def _strict(expected: type, accepts: tuple[type, ...], quote: Quote, show: Show):
    def structure(value: Any, _: type) -> Any:
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, accepts):
            raise TypeError(f"expected {expected.__name__}, got {_named(value, quote, show)}")
        return expected(value)

    return structure


def _strict_sequence(tp: Any, converter: cattrs.Converter, quote: Quote, show: Show) -> Any:
    """Structure ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` from an array (of that length) only: cattrs
    would iterate a string or a map, and fail a number saying "object of type 'int' has no len()"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    fixed = len(args) if origin is tuple and Ellipsis not in args else 0
    factory = list_structure_factory if origin is list else homogenous_tuple_structure_factory
    inner = None if fixed else factory(tp, converter)

    def structure(value: Any, cl: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != (fixed or len(value)):
            raise TypeError(f"expected a list{f' of {fixed}' * bool(fixed)}, got {_named(value, quote, show, short)}")
        return _fixed(converter, value, args, tp) if inner is None else inner(value, cl)

    return structure


def _fixed(converter: cattrs.Converter, value: Any, args: tuple[Any, ...], tp: Any) -> tuple[Any, ...]:
    """A fixed-length tuple's items, each structured; every item's error carries its index, as cattrs gives
    a list's (``char_ngrams[1]: expected int``, where the tuple's key alone was said)."""
    items, errors = [], []
    for index, (item, arg) in enumerate(zip(value, args, strict=True)):
        try:
            items.append(converter.structure(item, arg))
        except Exception as exc:  # noqa: BLE001 - each said at its index, together, as cattrs does
            exc.add_note(IterableValidationNote(f"Structuring {tp} @ index {index}", index, arg))
            errors.append(exc)
    if errors:
        raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
    return tuple(items)


#: What a set (``set[X]``, ``frozenset[X]``) is structured from: an array, each item X (a string is no set of letters).
SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def _strict_set(tp: Any, converter: cattrs.Converter, quote: Quote, show: Show) -> Any:
    """Structure ``set[X]``, ``frozenset[X]`` from an array only: cattrs made ``"abc"`` a set of its letters and
    said "'int' object is not iterable" of a number. Its items are checked as ``list[X]``'s, at their index."""
    items = list[typing.get_args(tp)[0]] if typing.get_args(tp) else list
    made = frozenset if typing.get_origin(tp) is frozenset else set

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {_named(value, quote, show, short)}")
        return made(converter.structure(value, items))

    return structure


def _table_of(tp: Any) -> str:
    """How a message names a table of type ``tp``: ``a table (Inner)``, ``a table of lists``, ``a table``."""
    if isinstance(tp, type) and attrs.has(tp):
        return f"a table ({tp.__name__})"
    args = typing.get_args(tp)
    value = args[1] if len(args) == 2 else Any
    origin = typing.get_origin(value) or value
    if value is Any:
        return "a table"
    if origin in SEQUENCES or origin in SETS:
        return "a table of lists"
    if (isinstance(origin, type) and attrs.has(origin)) or origin in (
        dict,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
    ):
        return "a table of tables"
    return f"a table of {type_name(value)}"


def _strict_table(tp: Any, converter: cattrs.Converter, quote: Quote, show: Show) -> Any:
    """Structure a nested attrs class or a ``dict[str, X]`` from a table only: cattrs said Python's words
    of anything else (``argument of type 'int' is not iterable``, ``'str' object has no attribute 'keys'``)."""
    inner = converter.gen_structure_mapping(tp) if _is_mapping(tp) else converter.gen_structure_attrs_fromdict(tp)

    def structure(value: Any, cl: Any) -> Any:
        if not isinstance(value, collections.abc.Mapping):
            raise TypeError(f"expected {_table_of(tp)}, got {_named(value, quote, show, short)}")
        return inner(value, cl)

    return structure


def _is_mapping(tp: Any) -> bool:
    return (typing.get_origin(tp) or tp) in (dict, collections.abc.Mapping, collections.abc.MutableMapping)


#: The types a union of plain values (``int | str``, ``str | int | None``) is made of.
SCALARS = (str, int, float, bool, bytes, type(None))


def _scalar_union(tp: Any) -> bool:
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    return len([m for m in members if m is not type(None)]) > 1 and all(m in SCALARS for m in members)


def _strict_union(tp: Any, converter: cattrs.Converter, quote: Quote, show: Show) -> Any:
    """A union of plain values takes a value of one of its types, by that type's own hook: a boolean is no
    ``int`` (cattrs' passthrough took ``true`` for ``int | str``, as ``isinstance(True, int)``), an integer is a
    ``float`` and a float with no fraction an ``int`` where that member's hook says so, as for a lone field, but
    not in a union with ``str``: an id that may be a string or an integer takes only those (PROTOCOL.md; ``1.0``
    was recorded as user ``"1"``, checker h345 F1)."""
    members = typing.get_args(tp)
    hooks = {member: converter.get_structure_hook(member) for member in members if member is not type(None)}
    names = " or ".join("None" if member is type(None) else member.__name__ for member in members)
    # the member a number of the other kind may be given to
    numbers = {int: float} if str in members else {int: float, float: int}

    def structure(value: Any, _: Any) -> Any:
        if value is None and type(None) in members:
            return None
        for member in (type(value), numbers.get(type(value))):
            if member in hooks:
                try:
                    return hooks[member](value, member)
                except (TypeError, ValueError):  # 1.5 for an int member: said as the union's below
                    continue
        raise TypeError(f"expected {names}, got {_named(value, quote, show)}")

    return structure


def _plain_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Literal and all(type(arg) in (str, int, bool) for arg in typing.get_args(tp))


def _literal(allowed: tuple[Any, ...], quote: Quote, show: Show) -> Any:
    """A ``Literal`` of texts and numbers (``allowed``), refused as the other types are (cattrs says ``c not in
    literal typing.Literal['a', 'b']``); ``true`` is not ``1``."""

    def structure(value: Any, _: type) -> Any:
        if not any(type(value) is type(arg) and value == arg for arg in allowed):
            close = did_you_mean(value, [arg for arg in allowed if isinstance(arg, str)]) if type(value) is str else ""
            raise ValueError(
                f"expected one of {', '.join(map(repr, allowed))}; found {quote(value) or show(value, short)}{close}"
            )
        return value

    return structure


def _plain_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum) and all(type(m.value) in (str, int, bool) for m in tp)


def _enum(tp: type[enum.Enum], quote: Quote, show: Show) -> Any:
    """An Enum of texts and numbers, set by its value and refused as a ``Literal`` of its values is: Python's own
    words (``'slwo' is not a valid Mode``) named a class, not the values nor the closest (checker h301 F6)."""
    value_of = _literal(tuple(member.value for member in tp), quote, show)
    return lambda value, _: value if isinstance(value, tp) else tp(value_of(value, tp))


def scalar_or_enum(scalar: Any, enums: Any) -> Any:
    """The hook ``scalar`` of a scalar type (``str``'s, ``int``'s), which cattrs also gives the type's subclasses:
    an IntEnum or a ``str`` Enum field goes to its Enum's hook (``enums(tp)``) instead; the type's hook took any
    int or text for one, and kept it unconverted (h336, fix336's note)."""
    return lambda value, tp: enums(tp)(value, tp) if _plain_enum(tp) else scalar(value, tp)


def entry_type(tp: Any, name: str) -> Any:
    """The type of the key ``name`` in a table of type ``tp``: an attrs class's field's or a mapping's values' (Any
    where ``tp`` says none), so a ``--set`` of a key in a nested table (``apis.t.window.end=0``) is typed."""
    members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(members) == 1:  # Window | None
        return entry_type(members[0], name)
    if attrs.has(tp):
        return next((field.type for field in attrs.fields(attrs.resolve_types(tp)) if field.name == name), Any)
    mapping = typing.get_origin(tp) in (dict, collections.abc.Mapping, collections.abc.MutableMapping)
    return typing.get_args(tp)[1] if mapping and len(typing.get_args(tp)) == 2 else Any


def make_converter(quote: Quote = lambda value: None, show: Show = _as_python) -> cattrs.Converter:
    """A cattrs converter that refuses unknown keys and never coerces types silently; ``quote``, ``show``: see
    them (a profile's shows ``true``, ``{a = 1}``, ``1979-05-27`` as its file writes them: checker 277 F17)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    sequences = lambda tp, converter: _strict_sequence(tp, converter, quote, show)  # noqa: E731 - cattrs reads its arguments
    converter.register_structure_hook_factory(lambda tp: typing.get_origin(tp) in SEQUENCES, sequences)
    converter.register_structure_hook_factory(_plain_literal, lambda tp: _literal(typing.get_args(tp), quote, show))
    converter.register_structure_hook_factory(_plain_enum, lambda tp: _enum(tp, quote, show))
    enums = functools.cache(lambda tp: _enum(tp, quote, show))
    for expected, accepts in ((str, (str,)), (int, (int,)), (float, (int, float)), (bool, (bool,))):
        converter.register_structure_hook(expected, scalar_or_enum(_strict(expected, accepts, quote, show), enums))
    configure_union_passthrough(str | int | float | bool | bytes | None, converter)  # whichever member the value is
    converter.register_structure_hook_factory(_scalar_union, lambda tp: _strict_union(tp, converter, quote, show))
    converter.register_structure_hook_factory(
        lambda tp: typing.get_origin(tp) in SETS, lambda tp: _strict_set(tp, converter, quote, show)
    )
    tables = lambda tp: (isinstance(tp, type) and attrs.has(tp)) or _is_mapping(tp)  # noqa: E731
    converter.register_structure_hook_factory(tables, lambda tp: _strict_table(tp, converter, quote, show))
    return converter


#: One converter asked by every registration's check (its hooks cached), not one built per component type.
_checking_converter = functools.cache(make_converter)


def type_name(tp: Any) -> str:
    """``complex``, ``datetime.date``, ``list[mine.Thing]``: as a plugin author wrote it."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return str(tp).replace("typing.", "")


def field_type_problem(cls: type) -> str | None:
    """Why no profile could set some field of the attrs class ``cls`` (its type is one the converter cannot
    structure: ``complex``, ``datetime.date``, ``list[Mine]``), naming each such field and its type; else None."""
    converter = _checking_converter()
    try:
        fields = attrs.fields(attrs.resolve_types(cls))
        bad = [(f, part) for f in fields if f.init and f.type and (part := _unsupported(f.type, converter, {cls}))]
    except Exception as exc:  # noqa: BLE001 - a NameError from a type not defined where the class is
        return f"{cls.__name__}'s field types cannot be resolved: {type(exc).__name__}: {exc}"
    if not bad:
        return None
    said = [f"{f.name} ({type_name(f.type)}{f': {type_name(part)}' * (part is not f.type)})" for f, part in bad]
    return f"{cls.__name__} has field(s) of a type no profile can give: {', '.join(said)} ({SUPPORTED})"


def abstract_problem(cls: type, base: type) -> str | None:
    """Why ``cls`` cannot be instantiated: the abstract methods of ``base`` (or its own) it leaves unimplemented, each
    named; else None. Found when its plugin registers it, not by the first profile that uses it (a bare TypeError)."""
    if missing := sorted(getattr(cls, "__abstractmethods__", ())):
        methods = ", ".join(f"{name}()" for name in missing)
        return f"{cls.__name__} does not implement {methods}, abstract in heirloom.{base.__name__}: define each"
    return None


def _unsupported(tp: Any, converter: cattrs.Converter, seen: set[type]) -> Any:
    """The first part of ``tp`` the converter has no structure hook for, else None. Its parts are looked into
    first: the hook of ``X | None`` (of a nested class's field too) looks for X's only when a value comes."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return None
    if attrs.has(tp) and isinstance(tp, type):
        parts = [] if tp in seen else [f.type for f in attrs.fields(attrs.resolve_types(tp)) if f.init and f.type]
        seen.add(tp)
    else:  # Annotated's metadata is no type; Callable's arguments come as a list
        args = typing.get_args(tp)[:1] if origin is typing.Annotated else typing.get_args(tp)
        parts = [arg for arg in args if arg not in (Ellipsis, type(None)) and not isinstance(arg, list)]
    for part in parts:
        if (found := _unsupported(part, converter, seen)) is not None:
            return found
    try:
        converter.get_structure_hook(tp)
    except Exception:  # noqa: BLE001 - StructureHandlerNotFoundError, or another refusal to build one
        return tp
    return None
