"""What a request body may hold, said before anything is sent: msgpack's packer raised a bare TypeError or
OverflowError that named neither the value nor where in the body it was."""

from __future__ import annotations

from typing import Any

from heirloom.wire.protocol import MAX_NESTING, Buffer, quoted

#: What msgpack carries (subclasses too: a numpy float64 is a float), and the buffers a body may hold.
SENDABLE = (type(None), bool, int, float, str, bytes, bytearray, memoryview, list, tuple, dict, Buffer)


def unsendable(value: Any, where: str) -> str | None:
    """Where in ``value`` and why msgpack cannot carry it, or None: a string with a lone surrogate
    (it has no UTF-8 form), an integer past 64 bits, a value of no msgpack type (the packer's own
    error said none of where: a numpy int64 user id, a set, a datetime was a bare TypeError, h357 F1)
    or lists and maps nested past MAX_NESTING (the packer's bare ValueError; a list holding itself).
    An explicit stack, in the body's order: recursion would exhaust Python's stack at that depth."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, at, depth = stack.pop()
        if isinstance(node, list | tuple | dict) and depth == MAX_NESTING:  # a list that holds itself too
            at = at if len(at) <= 60 else f"{at[:60].rsplit('[', 1)[0]}..."  # not 500 times [0]
            return f"{at}: arrays and maps nest deeper than {MAX_NESTING} levels, the most this client packs"
        if isinstance(node, list | tuple):
            stack.extend((item, f"{at}[{i}]", depth + 1) for i, item in reversed(list(enumerate(node))))
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                stack += [(item, f"{at}.{key}", depth + 1), (key, f"{at} (a key)", depth + 1)]
        elif why := _unsendable_leaf(node, at):
            return why
    return None


def _unsendable_leaf(value: Any, where: str) -> str | None:
    """Why msgpack cannot carry ``value``, which is no list or map, or None."""
    if not isinstance(value, SENDABLE):
        kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
        numpy = "; a numpy scalar: .item(), an array: .tolist() or heirloom.Buffer" if kind.startswith("numpy.") else ""
        sent = "None, a bool, int, float, str, bytes, a list or a map with those"
        return f"{where}: {kind} is no msgpack type (send {sent}{numpy})"
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            surrogate = ascii(value[exc.start])[1:-1]
            return f"{where}: a string holds {surrogate}, a lone surrogate: no UTF-8 form (msgpack strings are UTF-8)"
        return None
    if type(value) is int and not -(2**63) <= value < 2**64:
        fits = "msgpack's 64 bits (-2^63 to 2^64-1); write a larger number as a float (1e30)"
        return f"{where}: {quoted(value)} does not fit {fits}"
    return None
