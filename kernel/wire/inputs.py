"""Request bodies: validation against a route's attrs input class, and its JSON schema.

The same strict cattrs converter as profiles: unknown keys and wrong types are refused
with the field's path, so every api gets precise INVALID_ARGUMENT errors for free.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import logging
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from heirloom.converter import _enum as enum_by_value
from heirloom.converter import make_converter, scalar_or_enum
from heirloom.core.schema import flatten_errors
from heirloom.store.labels import blank as is_blank
from heirloom.store.labels import visible_pattern
from heirloom.wire.bodies import binary_key, field_of
from heirloom.wire.protocol import (
    FIELD_SHOWN,
    INTERNAL,
    INVALID_ARGUMENT,
    WIRE_NAMES,
    Buffer,
    RequestError,
    cut,
    quoted,
    wire_name,
    without_paths,
)

log = logging.getLogger("heirloom.wire.inputs")


def _quote_buffer(value: Any) -> str | None:
    """A buffer as messages name it, ``a buffer (uint8, shape [2])`` (its repr was cut mid-quote); None for the rest."""
    return f"a buffer ({value.dtype}, shape {list(value.shape)})" if isinstance(value, Buffer) else None


_converter = make_converter(_quote_buffer)


def _buffer(value: Any, _: type) -> Buffer:
    """A field typed ``heirloom.Buffer`` takes the buffer a client sent as a frame, nothing else."""
    if not isinstance(value, Buffer):
        raise TypeError(f"expected a buffer ({{'$buffer': N}} naming a frame), got {quoted(value)}")
    return value


_converter.register_structure_hook(Buffer, _buffer)


def _integer(value: Any, _: type) -> int:
    """An integer field takes a float with no fraction too (``5.0``): JSON Schema's ``integer``
    says so, and a JSON client (the HTTP gateway's) cannot tell 5.0 from 5. Another float is refused
    for its value (``2.5``, ``1e20``), not as a wrong type: "expected integer" misled the client."""
    if type(value) is float:
        if not value.is_integer():  # nan and the infinities too
            raise TypeError(f"must be a whole number, got {value!r}")
        if abs(value) > 2**53:
            raise TypeError(f"{value!r} is out of range: integers must be within +-2**53")
        return int(value)
    if type(value) is not int:
        raise TypeError(f"expected int, got {_quote_buffer(value) or f'{type(value).__name__} {value!r}'}")
    return value


_converter.register_structure_hook(int, _integer)


_by_value = functools.cache(lambda tp: enum_by_value(tp, _quote_buffer, lambda value, text: text(value)))
for _plain in (str, int, float, bool):
    _converter.register_structure_hook(_plain, scalar_or_enum(_converter.get_structure_hook(_plain), _by_value))
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def _a_set(tp: Any) -> Callable[[Any, Any], Any]:
    """A ``set``/``frozenset`` field takes an array, as ``_routes`` says (repeats are dropped, so the schema does
    not say ``uniqueItems``: a generated client refused what the route took, v7 F1), its elements checked
    as a list's (``body.tags[2]: expected string``): cattrs made a text into a set of its characters."""
    element = typing.get_args(tp)[:1] or (Any,)
    as_list = _converter.get_structure_hook(list[element[0]])
    made = set if (typing.get_origin(tp) or tp) in (set, collections.abc.MutableSet) else frozenset
    return lambda value, _: made(as_list(value, list[element[0]]))


_converter.register_structure_hook_factory(lambda tp: (typing.get_origin(tp) or tp) in _SETS, _a_set)
#: What a client sends for a buffer field: the placeholder naming its frame (docs/PROTOCOL.md).
BUFFER_SCHEMA = {
    "type": "object",
    "properties": {"$buffer": {"type": "integer", "minimum": 0}},
    "required": ["$buffer"],
    "additionalProperties": False,
    "description": "a raw buffer: {'$buffer': N} names the body's frame N (its dtype and shape in the header)",
}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", bytes: "binary"}
#: attrs' ``ge``/``gt``/``le``/``lt`` (and ``heirloom.at_least``/``above``, which read alike) as JSON schema.
_BOUND_KEYWORDS = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}
#: How the values of a nil or a boolean read in the protocol (Python's ``repr`` says None, True).
_JSON_WORDS = {"nil None": "nil", "boolean True": "boolean true", "boolean False": "boolean false"}


def in_wire_words(message: str) -> str:
    """cattrs' messages about a value of the wrong shape, in the protocol's words: a client
    in another language knows maps and strings, not ``'str' object has no attribute 'keys'``."""
    if found := re.fullmatch(r"'(\w+)' object has no attribute '(keys|get|items)'", message):
        return f"expected a map, got {WIRE_NAMES.get(found[1], found[1])}"
    if found := re.fullmatch(r"argument of type '(\w+)' is not iterable", message):  # a number or nil for a map
        return f"expected a map, got {WIRE_NAMES.get(found[1], found[1])}"
    if found := re.fullmatch(r"(.*) \(<class '(\w+)'>\) not part of (.+)", message, re.DOTALL):
        wanted = [WIRE_NAMES.get(name.strip(), name.strip()) for name in found[3].split("|")]
        shown = found[1] if len(found[1]) <= 40 else f"{found[1][:40]}..."  # as a lone type's message quotes it
        message = f"expected {' or '.join(dict.fromkeys(wanted))}, got {WIRE_NAMES.get(found[2], found[2])} {shown}"
    else:  # "expected a table (Point), got str 'x'" (the converter's words, a profile's) and "expected int or str"
        message = re.sub(r"^expected a table( \(\w+\)| of [^,]+)?, got", "expected a map, got", message)
        message = re.sub(r"^expected (\w+(?: or \w+)+), got", _wire_words, message)
        message = re.sub(r"\b(expected |got )(an? )?(\w+)", _wire_word, message)  # "expected str, got int 5"
    return re.sub(r"got (nil None|boolean True|boolean False)\b", lambda got: f"got {_JSON_WORDS[got[1]]}", message)


def _wire_words(found: re.Match[str]) -> str:
    return f"expected {' or '.join(WIRE_NAMES.get(name, name) for name in found[1].split(' or '))}, got"


def _wire_word(found: re.Match[str]) -> str:
    name = WIRE_NAMES.get(found[3])
    if name is None:
        return found[0]
    article = ("an " if name[0] in "aeiou" else "a ") if found[2] else ""
    return f"{found[1]}{article}{name}"


def wire_type(value: Any) -> str:
    """What a client sent, in the protocol's words (docs/PROTOCOL.md), not Python's."""
    if value is None:
        return "nil (no body)"
    return wire_name(value)


class InputValidator:
    """Structures request bodies into one attrs class; raises RequestError naming the field."""

    def __init__(self, cls: type, named: Callable[[], str] = lambda: "a route"):
        """``named()``: the route and whose api it is, for the log line of the class's own bug."""
        self.cls = attrs.resolve_types(cls)
        self.named = named
        self._structure = _converter.get_structure_hook(cls)

    def __call__(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise RequestError(INVALID_ARGUMENT, f"body must be {self.shape()}, got {wire_type(body)}", "body")
        try:
            return self._structure(body, self.cls)
        except (ClassValidationError, IterableValidationError) as exc:
            raised = _raised_by_class(exc)
            if isinstance(raised, RequestError):  # the class's own refusal, led by its field as any refusal is
                raise raised.led_by_field() from None
            if raised is not None:
                raise self._bug(raised) from None
            if (misread := self._misread(body)) is not None:
                raise RequestError(INVALID_ARGUMENT, f"{misread[0]}: {misread[1]}", misread[0]) from None
            errors = list(flatten_errors(exc, []))  # a misspelt key first: it is why a required one is missing
            path, message = min(errors, key=lambda error: not error[1].startswith("unknown key"))
            path, message = binary_key(body, path, message) or (path, message)
            message = in_wire_words(_as_sent(message, body, path))
            field = field_of(path)  # cut where it leads: a 5,000-character key left no room for why (h461 F2)
            raise RequestError(INVALID_ARGUMENT, f"{cut(field, FIELD_SHOWN)}: {message}", field) from None
        except (ValueError, TypeError) as exc:
            named = re.match(r"'(\w+)((?:\[\d+\])*)'", str(exc))  # 'text' or an element, 'texts[3]'
            field = f"body.{named[1]}{named[2]}" if named and named[1] in self.keys() else "body"
            message = _as_sent(str(exc), body, [field.removeprefix("body")])
            raise RequestError(INVALID_ARGUMENT, f"{field}: {message}", field) from None
        except RequestError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a validator's SystemExit or KeyboardInterrupt, not cattrs'
            raise self._bug(exc) from None

    def _misread(self, body: dict[str, Any]) -> tuple[str, str] | None:
        """``(field, message)`` of the input class's ``misread_body(body)`` for a body it does not take, if it has
        one: a body of another kind its words name (a FHIR Bundle for a record), not its first unknown key."""
        said = getattr(self.cls, "misread_body", None)
        try:
            misread = said(body) if callable(said) else None
            if misread is not None and not (
                type(misread) is tuple and len(misread) == 2 and all(type(part) is str and part for part in misread)
            ):  # a bare string was shown as "s: e", a dict raised KeyError past this (checker 265)
                raise TypeError(f"misread_body returned {misread!r:.80}, not None or a (field, message) of two texts")
            return misread
        except Exception as exc:  # noqa: BLE001 - its bug, as a validator's would be
            raise self._bug(exc) from None

    def _bug(self, raised: BaseException) -> RequestError:
        """INTERNAL for an exception the input class's own code raised: its bug, not the client's
        request, logged whole (it killed the daemon, or a batcher thread, when not an Exception)."""
        log.error("%s: input class %s raised", self.named(), self.cls.__qualname__, exc_info=raised)
        bug = f"{type(raised).__name__}: {raised}"
        return RequestError(INTERNAL, f"the route's input class raised {without_paths(bug)} (a plugin bug)")

    def keys(self) -> list[str]:
        return [f.name for f in attrs.fields(self.cls)]

    def shape(self) -> str:
        """``a map (keys: text; optional: top)``: the keys a body needs, then those with a default."""
        fields = [f for f in attrs.fields(self.cls) if f.init]  # as cattrs structures them: by name, init=False not
        needed = [f.name for f in fields if f.default is attrs.NOTHING]
        optional = [f.name for f in fields if f.default is not attrs.NOTHING]
        said = [f"keys: {', '.join(needed)}"] if needed else []
        said += [f"optional{'' if needed else ' keys'}: {', '.join(optional)}"] if optional else []
        return f"a map ({'; '.join(said) or 'no keys: {}'})"


def _as_sent(message: str, body: Any, path: list[str]) -> str:
    """A check's message quotes the float a float field holds: a client that sent the integer 0
    reads ``got 0``, as sent, not ``got 0.0`` (the handler is given 0.0 all the same). ``path``:
    the field's steps, ``["points", "[3]", "x"]`` or ``["values[3]"]``."""
    sent = body
    for name, index in re.findall(r"(\w+)|\[(\d+)\]", "".join(path)):
        if name:
            sent = sent.get(name) if isinstance(sent, dict) else None
        else:
            sent = sent[int(index)] if isinstance(sent, list) and int(index) < len(sent) else None
    if type(sent) is not int:
        return message
    try:
        return message.replace(f"got {float(sent)!r}", f"got {sent!r}")
    except OverflowError:  # an int no float holds (a JSON client's): quoted as sent already
        return message


def _raised_by_class(exc: ClassValidationError | IterableValidationError) -> BaseException | None:
    """What an input class's own code (a validator, ``__attrs_post_init__``) raised other than a
    check's ValueError or TypeError: a RequestError it meant, or a bug; None when nothing did."""
    with_notes, without_notes = exc.group_exceptions()
    for sub in [*(sub for sub, _ in with_notes), *without_notes]:
        if isinstance(sub, ClassValidationError | IterableValidationError) and (found := _raised_by_class(sub)):
            return found
    checks = ValueError | TypeError | ClassValidationError | IterableValidationError | ForbiddenExtraKeysError
    return next((sub for sub in without_notes if not isinstance(sub, checks)), None)


#: How many levels a route's ``input`` or ``output`` schema may nest (arrays and maps; ``{"type": "object",
#: "properties": {...}}`` is two): a worker's heartbeat carries each schema below its own levels (broker_workers).
MAX_SCHEMA_DEPTH = 61
#: The field types a request body can carry, as ``_routes`` describes them (a route's input class is checked at start).
BODY_TYPES = (
    "str, int, float, bool, bytes, None, Any, heirloom.Buffer, Literal[...] of str/int/float/bool, an Enum (by its "
    "value), unions of these, list/tuple/set/frozenset/Sequence of these, dict/Mapping with str keys, and a nested "
    "attrs class whose fields have these types"
)
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_CARRIED = (str, int, float, bool, type(None))


def json_schema(tp: Any) -> dict[str, Any]:
    """A JSON-schema (2020-12) description of an input or output type, for ``_routes`` introspection: a class that
    holds itself (``Node.children: list[Node]``) is described once, under ``$defs``, and referred to by ``$ref``."""
    schemas = _Schemas()
    schema = schemas.of(tp)
    return {**schema, "$defs": schemas.defs} if schemas.defs else schema


def unsupported_field(tp: Any) -> tuple[str, Any] | None:
    """``(path, type)`` of the first field of the input class ``tp`` whose type no request body can carry
    (``body.when.at``, ``datetime.datetime``; ``[*]`` an element, ``.*`` a map's value), else None."""
    schemas = _Schemas()
    schemas.of(tp)
    return schemas.unknown[0] if schemas.unknown else None


class _Schemas:
    """One walk of a type into its schema: the classes being described (a class met again inside itself is
    referred to, ``$ref``), those described under ``$defs``, and the parts no schema describes, with their path."""

    def __init__(self) -> None:
        self.within: list[type] = []
        self.looped: set[type] = set()
        self.defs: dict[str, dict[str, Any]] = {}
        self.names: dict[type, str] = {}
        self.path = ["body"]
        self.unknown: list[tuple[str, Any]] = []

    def ref(self, cls: type) -> dict[str, Any]:
        if cls not in self.names:  # two classes of one name (in two modules) get two entries: Node, Node2
            taken, name = set(self.names.values()), cls.__name__
            names = (name + str(n or "") for n in range(len(taken) + 2))
            self.names[cls] = next(candidate for candidate in names if candidate not in taken)
        return {"$ref": f"#/$defs/{self.names[cls]}"}

    def of(self, tp: Any, step: str = "") -> dict[str, Any]:
        self.path.append(step)
        try:
            return self._of(tp)
        finally:
            self.path.pop()

    def _of(self, tp: Any) -> dict[str, Any]:
        if tp is None or tp is Any or tp is object:
            return {}
        if tp is type(None):  # a route that takes no body
            return {"type": "null"}
        if tp is Buffer:
            return dict(BUFFER_SCHEMA)
        if isinstance(tp, type) and tp in _JSON_TYPES:
            return {"type": _JSON_TYPES[tp]}
        if isinstance(tp, type) and attrs.has(tp):
            return self._object(tp)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, [member.value for member in tp])
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            return self.of(args[0])
        if origin is typing.Literal:
            return self._enum(tp, [arg.value if isinstance(arg, enum.Enum) else arg for arg in args])
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(arg) for arg in args]}
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, float]: each its own type
            each = [] if args == ((),) else [self.of(arg, f"[{i}]") for i, arg in enumerate(args)]
            return {"type": "array", "prefixItems": each, "minItems": len(each), "maxItems": len(each)}
        if origin in _SEQUENCES or tp in _SEQUENCES:
            return {"type": "array", "items": self.of(args[0], "[*]") if args else {}}
        if origin in _SETS or tp in _SETS:
            return {"type": "array", "items": self.of(args[0], "[*]") if args else {}}
        if origin in _MAPPINGS or tp in _MAPPINGS:
            return {"type": "object", "additionalProperties": self.of(args[1], ".*") if len(args) == 2 else {}}
        self.unknown.append(("".join(self.path), tp))
        return {}

    def _enum(self, tp: Any, values: list[Any]) -> dict[str, Any]:
        if all(type(value) in _CARRIED for value in values):
            return {"enum": values}
        self.unknown.append(("".join(self.path), tp))
        return {}

    def _object(self, cls: type) -> dict[str, Any]:
        if cls in self.within or self.names.get(cls, "") in self.defs:  # described, or being described: referred to
            self.looped.add(cls)
            return self.ref(cls)
        self.within.append(cls)
        try:
            fields = attrs.fields(attrs.resolve_types(cls))
            schema: dict[str, Any] = {
                "type": "object",
                # the bounds of validators it reads (stated_bounds); others a field states in metadata={"schema": ...}
                "properties": {f.name: _field_schema(f, self.of(f.type, f".{f.name}")) for f in fields},
                "additionalProperties": False,
            }
        finally:
            self.within.pop()
        required = [f.name for f in fields if f.default is attrs.NOTHING]
        if required:
            schema["required"] = required
        if cls.__doc__:
            schema["description"] = " ".join(cls.__doc__.split())
        schema |= getattr(cls, "__schema__", {})  # rules across fields, which no one field's validator states
        if cls not in self.looped:
            return schema
        self.defs[self.ref(cls)["$ref"].rpartition("/")[2]] = schema
        return schema if not self.within else self.ref(cls)  # the body's own class is described where it is, too


def _field_schema(field: attrs.Attribute, schema: dict[str, Any]) -> dict[str, Any]:
    """A field's type (``schema``), the bounds its validator states, and its metadata's own keywords last (a
    function's, for keywords that follow what is served: a classifier's labels as ``examples``)."""
    bounds = stated_bounds(field.validator)
    types = {schema.get("type"), *(branch.get("type") for branch in schema.get("anyOf", ()))}
    if "array" in types:  # a list's length is minItems/maxItems; str | list[str] states both (each applies to its type)
        kept = bounds if "string" in types else {k: v for k, v in bounds.items() if not k.endswith("Length")}
        bounds = {**kept, **{k.replace("Length", "Items"): v for k, v in bounds.items() if k.endswith("Length")}}
        if "items" in bounds:  # an element's bounds (list_limit's each) join the element's type
            array = next(branch for branch in (schema, *schema.get("anyOf", ())) if branch.get("type") == "array")
            bounds["items"] = {**array.get("items", {}), **bounds["items"]}
    stated = field.metadata.get("schema", {})  # or a function of no arguments, called at each reading
    return {**schema, **bounds, **(stated() if callable(stated) else stated)}


def stated_bounds(validator: Any) -> dict[str, Any]:
    """The JSON-schema keywords of what a field's validator enforces, where it is one whose
    bounds can be read: attrs' ``ge``/``gt``/``le``/``lt``, ``in_``, ``min_len``/``max_len``,
    ``and_`` (the tightest of its parts) and ``optional`` of them, ``heirloom.at_least``/
    ``above``, :func:`text_limit` (any validator carrying ``min_length``/``max_length``) and
    :func:`list_limit` (its elements' bounds under ``items``). A
    client generated from ``_routes`` then refuses what the daemon would; another validator, or
    a bound JSON and msgpack cannot carry (infinite, past 2**53), states nothing."""
    parts = getattr(validator, "_validators", None)  # and_
    if parts is not None:
        stated: dict[str, Any] = {}
        for part in parts:
            for key, value in stated_bounds(part).items():
                stated[key] = value if key not in stated else _tighter(key, stated[key], value)
        return stated
    inner = getattr(validator, "validator", None)
    if inner is not None and type(validator) is _OPTIONAL:  # None passes too (not_'s inner bounds are refused ones)
        stated = stated_bounds(inner)
        return {**stated, "enum": [*stated["enum"], None]} if "enum" in stated else stated
    keyword, bound = _BOUND_KEYWORDS.get(getattr(validator, "compare_op", None)), getattr(validator, "bound", None)
    if keyword and _carried(bound):
        return {keyword: bound}
    options = getattr(validator, "options", None)
    if isinstance(options, tuple | list | frozenset | set) and all(_carried(o) or isinstance(o, str) for o in options):
        return {"enum": sorted(options, key=str) if isinstance(options, set | frozenset) else list(options)}
    stated = {"minLength": getattr(validator, "min_length", None), "maxLength": getattr(validator, "max_length", None)}
    pattern = getattr(validator, "pattern", None)  # text_limit's (attrs' matches_re holds a compiled one: not stated)
    each = getattr(validator, "each", None)  # list_limit's element validator
    return (
        {key: value for key, value in stated.items() if _carried(value)}
        | ({"pattern": pattern} if isinstance(pattern, str) else {})
        | ({"items": stated_bounds(each)} if each is not None else {})
    )


def text_limit(max_chars: int, *, blank: bool = True) -> Any:
    """An attrs validator for a text in a request body: at most ``max_chars`` characters and,
    with ``blank=False``, not empty, whitespace or invisible characters only (a zero-width space
    is no text to learn from). ``_routes`` states both (``maxLength``; ``minLength`` 1 and the
    ``pattern`` of ``visible_pattern``, a character that is no space, control or zero-width one),
    and the errors name the field."""

    def check(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
        if value is None:  # an optional text; its type is checked before validators run
            return
        if not blank and is_blank(value):
            raise ValueError(f"'{attribute.name}' is blank")
        if len(value) > max_chars:
            raise ValueError(f"'{attribute.name}' is {len(value)} characters; at most {max_chars} are accepted")

    check.max_length = max_chars  # type: ignore[attr-defined]  # read by stated_bounds, as attrs' max_len's
    if not blank:
        check.min_length, check.pattern = 1, visible_pattern()  # type: ignore[attr-defined]
    return check


def list_limit(max_items: int, *, each: Any = None, min_items: int = 1) -> Any:
    """An attrs validator for a list in a request body: ``min_items`` to ``max_items`` elements,
    each checked by ``each`` (an attrs validator such as :func:`text_limit`) with its errors naming
    the element (``'texts[3]' is 12000 characters``). ``_routes`` states ``minItems``/``maxItems``
    and, under ``items``, what ``each`` states."""

    def check(instance: Any, attribute: attrs.Attribute, value: list[Any] | None) -> None:
        if value is None:  # an optional list; its type is checked before validators run
            return
        if len(value) < min_items:
            has, wanted = f"has {len(value)} items" if value else "is an empty list", f"{min_items} items"
            raise ValueError(f"'{attribute.name}' {has}; send at least {'one item' if min_items == 1 else wanted}")
        if len(value) > max_items:
            raise ValueError(f"'{attribute.name}' has {len(value)} items; at most {max_items} are accepted")
        if each is None:
            return
        for position, item in enumerate(value):
            try:
                each(instance, attribute, item)
            except ValueError as exc:
                name = f"'{attribute.name}'"
                raise ValueError(str(exc).replace(name, f"'{attribute.name}[{position}]'", 1)) from None

    check.min_length, check.max_length, check.each = min_items, max_items, each  # type: ignore[attr-defined]
    return check


#: The class of attrs' ``optional`` validator: of the validators wrapping another, the one
#: whose inner bounds still hold (``not_`` wraps one too, and means the opposite).
_OPTIONAL = type(attrs.validators.optional(attrs.validators.instance_of(int)))


def _carried(value: Any) -> bool:
    """A number JSON and msgpack carry as it is: a finite float (``above(-1e300)`` was left out of
    ``_routes``, though enforced), an int within a double's exact integers (JSON readers' numbers)."""
    return (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) <= 2**53)


def _tighter(key: str, old: Any, new: Any) -> Any:
    """Of two parts of an ``and_`` stating ``key``, what holds for both."""
    if key == "enum":
        return [option for option in old if option in new]
    return max(old, new) if key.startswith(("min", "exclusiveMin")) else min(old, new)


def one_of(**fields: str | list[str]) -> dict[str, Any]:
    """A ``__schema__`` for a body that takes exactly one of ``fields`` (name -> JSON type), as an
    ``__attrs_post_init__`` enforces: ``__schema__ = heirloom.one_of(text="string", texts="array")``.
    A field sent as null counts as absent, as the class reads it."""
    return {"oneOf": [{"required": [name], "properties": {name: {"type": kind}}} for name, kind in fields.items()]}
