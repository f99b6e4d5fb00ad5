"""Where a value msgpack cannot carry is, and why: said of a request body before anything is sent (the
packer's bare TypeError, OverflowError or ValueError named neither the value nor where in the body it was),
and of a reply a plugin made unsendable (its INTERNAL answer and log line). One bounded walk serves both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from heirloom.wire.protocol import DECODE_NESTING, MAX_NESTING, Buffer, quoted

#: What msgpack carries (subclasses too: a numpy float64 is a float), and the buffers a body may hold.
SENDABLE = (type(None), bool, int, float, str, bytes, bytearray, memoryview, list, tuple, dict, Buffer)
#: What to send instead of a value of no msgpack type, by its type's module (a datetime got the list alone: v43 F8).
HINTS = {  # the first prefix that names the type: .isoformat() is no timedelta's, .item() of a datetime64 no text
    "numpy.datetime64": "; a numpy datetime64: str()",
    "numpy.timedelta64": "; a numpy timedelta64: .astype(float) of a unit, or str()",
    "numpy.complex": "; a complex number: [its .real, its .imag]",
    "numpy.": "; a numpy scalar: .item(), an array: .tolist() or heirloom.Buffer",
    "complex": "; a complex number: [its .real, its .imag]",
    "datetime.timedelta": "; a timedelta: .total_seconds()",
    "datetime.timezone": "; a time zone: str()",
    "datetime.": "; a date or time: its .isoformat() text",
    "decimal.": "; a Decimal: float() or str()",
    "fractions.": "; a Fraction: float() or str()",
}
#: Parts of a value looked at to say where: a reply's walk runs on the I/O thread.
WHERE_BUDGET = 100_000


def unsendable(value: Any, where: str = "body") -> str | None:
    """``body.user: numpy.int64 is no msgpack type (...)``: where in a request body and why msgpack cannot
    carry it, or None. Nested past DECODE_NESTING levels (msgpack's packer refuses there, and the daemon's
    reader), a list holding itself, a string with a lone surrogate (no UTF-8 form), an integer past 64 bits, a
    value of no msgpack type (a numpy int64 user id, a set, a datetime: h357 F1; v11 F1, v12 F1)."""
    if (found := _first_unpackable(value, where, DECODE_NESTING, None)) is None:
        return None
    path, problem, part = found
    said = {
        "deep": f": arrays and maps nest deeper than {DECODE_NESTING} levels, the most msgpack packs",
        "tuple key": ": a key is a tuple, which msgpack packs as an array, a key the daemon refuses",
    }
    if problem in said:
        return path + said[problem]
    return _leaf_mistake(part, f"{path} (a key)" if problem == "key" else path)


def unpackable_at(value: Any, root: str = "reply", *, advice: bool = False) -> str:
    """The path of the first part of a reply msgpack cannot pack (``reply.labels``, ``reply.items[3]``), with
    why where the path alone does not say it; ``root`` when the first WHERE_BUDGET parts showed nothing. With
    ``advice``, a value's mistake as a request body's is said, with what to send instead (a handler's numpy
    scalar got msgpack's words alone: h458 F5)."""
    path, problem, part = _first_unpackable(value, root, MAX_NESTING, WHERE_BUDGET) or (root, "", None)
    if problem in ("leaf", "key") and advice:  # a key's too, as a request body's is said (v44 F7)
        return _leaf_mistake(part, path if problem == "leaf" else f"{path} (a key)") or path
    return path + {
        "deep": f" (nested deeper than {MAX_NESTING} levels)",
        "tuple key": ": a key is a tuple, which msgpack packs as an array, a key no client decodes",
        "key": f" (a key {type(part).__name__})",
    }.get(problem, "")


def _first_unpackable(value: Any, root: str, depth_limit: int, budget: int | None) -> tuple[str, str, Any] | None:
    """``(path, problem, part)`` of the first part msgpack cannot pack, in the value's order; problem is
    ``deep``, ``tuple key``, ``key`` (``part`` the key) or ``leaf``; None when ``budget`` parts (None: all)
    showed none. A stack of iterators, one per container open: memory bounded by the depth, whatever a value
    holds or however it holds itself (its paths built for every pending item took 1.7 GB, v12 F2; a budget for
    memory's sake gave up on a list of 100 holding itself, v13 F1). A path is a chain of (parent, step) links,
    spelt out only for the part reported."""
    stack: list[tuple[Any, Iterator[tuple[Any, Any]]]] = [(None, iter([(None, value)]))]
    while stack:
        parent, children = stack[-1]
        if (child := next(children, None)) is None:
            stack.pop()
            continue
        step, part = child
        path = parent if step is None else (parent, step)
        if budget is not None and (budget := budget - 1) < 0:
            return None
        if isinstance(part, dict | list | tuple) and len(stack) > depth_limit:  # a value that holds itself, too
            return _spelt(root, path), "deep", part
        if isinstance(part, dict):
            for key in part:
                if isinstance(key, tuple):  # packed as an array: a key no client decodes
                    return _spelt(root, path), "tuple key", key
                if _leaf_mistake(key, ""):
                    return _spelt(root, path), "key", key
            stack.append((path, iter(part.items())))
        elif isinstance(part, list | tuple):
            stack.append((path, (([index], item) for index, item in enumerate(part))))
        elif _leaf_mistake(part, ""):
            return _spelt(root, path), "leaf", part
    return None


def _spelt(root: str, path: Any) -> str:
    """``reply.items[3]`` from a chain of (parent, key) links (``[index]`` a list's step), each
    key cut at 40 characters and the whole at 300, its middle left out, so what follows the
    path in the message (why it is there) survives the message's own limit."""
    steps = []
    while path is not None:
        path, key = path
        steps.append(f"[{key[0]}]" if isinstance(key, list) else f".{str(key)[:40]}")
    spelt = root + "".join(reversed(steps))
    return spelt if len(spelt) <= 300 else f"{spelt[:200]}...{spelt[-97:]}"


def _leaf_mistake(value: Any, where: str) -> str | None:
    """Why msgpack cannot carry ``value``, which is no list nor map, said at ``where``; None when it can."""
    if not isinstance(value, SENDABLE):
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        hint = next((said for prefix, said in HINTS.items() if kind.startswith(prefix)), "")
        sent = "None, a bool, int, float, str, bytes, a list or a map with those"
        return f"{where}: {kind} is no msgpack type (send {sent}{hint})"
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            surrogate = ascii(value[exc.start])[1:-1]
            return f"{where}: a string holds {surrogate}, a lone surrogate: no UTF-8 form (msgpack strings are UTF-8)"
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        fits = "msgpack's 64 bits (-2^63 to 2^64-1); write a larger number as a float (1e30)"
        return f"{where}: {quoted(value)} does not fit {fits}"
    return None
