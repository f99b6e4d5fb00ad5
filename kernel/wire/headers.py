"""A request's header as the daemon and a broker read it (docs/PROTOCOL.md, Request header), and
the buffer frames it describes.

Each key the daemon reads is checked for its type, before the route is looked up; a key the
header lacks that it holds in a near-miss form (sent as bin, with C's trailing NUL, in
another case, in camelCase or with - for _) is refused naming the key, not ignored: a deadline or an idempotency key the
daemon did not see would be a silent slip (a keyed write retried would run twice).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import Any

from heirloom.limits import nests_deeper
from heirloom.wire.protocol import (
    BUFFER_BODY_NESTING,
    DTYPES,
    HEADER_LIMIT,
    IDEMPOTENCY_KEY_LIMIT,
    INVALID_ARGUMENT,
    Buffer,
    RequestError,
    decoding_error,
    quoted,
    unpackb,
    wire_name,
)

#: The header keys the daemon reads: a near-miss of one of them the header lacks is refused.
HEADER_KEYS = ("id", "route", "deadline_ms", "idempotency_key", "buffers")
_KNOWN = frozenset(HEADER_KEYS)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # deadlineMs: deadline_Ms


def near_miss(mapping: dict[Any, Any], names: Collection[str], where: str = "the header") -> tuple[str, str] | None:
    """``(name, why)`` for the first key of ``mapping`` that is none of ``names`` but reads as one of them (a bin
    key, trailing NULs, another case): what to tell a client whose ``name`` was not found, else None. One pass
    over the keys, those of no name's length skipped: a 64 KiB header of 4,400 keys of 9 characters takes about 1 ms."""
    shortest, longest = min(map(len, names), default=0), max(map(len, names), default=-1) + 4  # and a few NULs
    for key in mapping:
        if ((kind := type(key)) is not str and kind is not bytes) or not shortest <= len(key) <= longest:
            continue
        if key in names:  # the name itself, nil: not a near-miss
            continue
        text = key.decode("utf-8", "replace") if kind is bytes else key
        if (name := _folded(text.rstrip("\0"))) not in names:
            continue
        shown = json.dumps(text, ensure_ascii=False)  # a NUL shows as \u0000
        if kind is bytes:
            return name, f"{where} has {shown} as binary: keys are msgpack strings"
        if text.rstrip("\0") != text:
            return (
                name,
                f"{where} has {shown}, which ends with a NUL: pack a key's characters only (C: strlen, not sizeof)",
            )
        if text.lower() != name:  # idempotency-key (HTTP's), idempotencyKey (JavaScript's): checker v5 F6
            return name, f"{where} has {shown}: keys are lower case, words joined by _ ({name})"
        return name, f"{where} has {shown}: keys are lower case"
    return None


def _folded(text: str) -> str:
    """``text`` in the header's spelling: lower case, a word's capital or a ``-`` read as ``_`` + the word."""
    return _CAMEL.sub("_", text).replace("-", "_").lower()


def _nothing(header: dict[str, Any], name: str) -> str:
    """``nothing``, for a required key ``name`` the header lacks, with the near-miss it holds if any."""
    found = near_miss(header, (name,))
    return "nothing" if found is None else f"nothing ({found[1]})"


def _misread(header: dict[str, Any]) -> None:
    """Refuse a header holding a near-miss of an optional key it lacks (the daemon would ignore it;
    a required key's own check tells its near-miss)."""
    if (found := near_miss(header, [name for name in HEADER_KEYS[2:] if name not in header])) is not None:
        name, why = found
        raise RequestError(INVALID_ARGUMENT, f"header.{name} is missing, and {why}", f"header.{name}")


def read_header(frame: bytes) -> dict[str, Any]:
    """A request header decoded and checked to be a map (RequestError otherwise)."""
    if len(frame) > HEADER_LIMIT:
        raise RequestError(INVALID_ARGUMENT, f"header is over {HEADER_LIMIT} bytes", "header")
    try:
        header = unpackb(frame)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
        raise RequestError(INVALID_ARGUMENT, decoding_error("header", exc), "header") from None
    if type(header) is not dict:
        raise RequestError(INVALID_ARGUMENT, f"header must be a map, got {wire_name(header)}", "header")
    return header


def header_id(header: dict[str, Any]) -> int | str:
    """The request id: an int or a string (a reply to anything else carries ``id`` nil)."""
    request_id = header.get("id")
    kind = type(request_id)
    if kind is not int and kind is not str:
        got = _nothing(header, "id") if request_id is None else quoted(request_id)
        raise RequestError(INVALID_ARGUMENT, f"header.id must be an integer or a string, got {got}", "header.id")
    return request_id


def header_route(header: dict[str, Any]) -> str:
    """The header's route name (RequestError naming ``header.route`` when it is not a string)."""
    route = header.get("route")
    if type(route) is not str:  # absent and nil are one: "got nothing", as header.id says it
        got = _nothing(header, "route") if route is None else quoted(route)
        raise RequestError(INVALID_ARGUMENT, f"header.route must be a string, got {got}", "header.route")
    return route


def header_deadline(header: dict[str, Any]) -> float | None:
    """``deadline_ms`` as a finite number of milliseconds (None when absent)."""
    budget = header.get("deadline_ms")
    if budget is None:
        return None
    if type(budget) not in (int, float) or not math.isfinite(budget):
        raise RequestError(
            INVALID_ARGUMENT, f"header.deadline_ms must be a finite number, got {quoted(budget)}", "header.deadline_ms"
        )
    return budget


def header_key(header: dict[str, Any]) -> int | str | None:
    """``idempotency_key``: a string of at most IDEMPOTENCY_KEY_LIMIT characters or an int (None when absent)."""
    key = header.get("idempotency_key")
    if key is None or type(key) is int or (type(key) is str and 0 < len(key) <= IDEMPOTENCY_KEY_LIMIT):
        return key
    raise RequestError(
        INVALID_ARGUMENT,
        f"header.idempotency_key must be a non-empty string of at most {IDEMPOTENCY_KEY_LIMIT} characters or an "
        f"integer, got {quoted(key)}",
        "header.idempotency_key",
    )


def header_options(header: dict[str, Any]) -> tuple[int | str | None, float | None]:
    """``(idempotency_key, deadline_ms)`` of a request header, each None when absent, and
    ``buffers`` checked to be buffer descriptions: the header's own fields, checked before
    the route is looked up (RequestError naming the first bad one)."""
    if len(header) == 2 and "route" in header and "id" in header:  # the common case: nothing more
        return None, None
    key = header_key(header) if "idempotency_key" in header else None
    budget = header_deadline(header) if "deadline_ms" in header else None
    if not header.keys() <= _KNOWN:  # keys it does not read: one may be a slip
        _misread(header)
    if header.get("buffers") is not None:
        buffer_specs(header)
    return key, budget


def buffer_specs(header: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """``(dtype, shape)`` of each buffer ``header.buffers`` describes (RequestError naming
    ``header.buffers`` or the description at fault)."""
    specs = header.get("buffers")
    if type(specs) is not list:
        raise RequestError(
            INVALID_ARGUMENT,
            f"header.buffers must be an array of {{dtype, shape}} maps, got {quoted(specs)}",
            "header.buffers",
        )
    described = []
    for i, spec in enumerate(specs):
        dtype = spec.get("dtype") if type(spec) is dict else None
        shape = spec.get("shape") if type(spec) is dict else None
        if type(spec) is dict and dtype is not None and type(dtype) is not str:  # bin from C, say: its type told
            raise RequestError(
                INVALID_ARGUMENT,
                f"header.buffers[{i}].dtype must be a string (one of {', '.join(sorted(DTYPES))}), got {quoted(dtype)}",
                f"header.buffers[{i}]",
            )
        known = type(dtype) is str and dtype in DTYPES
        if not known or type(shape) is not list or any(type(d) is not int or d < 0 for d in shape):
            if known and type(shape) is list:  # a Perl length($b)/12 is the float 2.0: name the element (h330 F4)
                j, size = next((j, d) for j, d in enumerate(shape) if type(d) is not int or d < 0)
                raise RequestError(
                    INVALID_ARGUMENT,
                    f"header.buffers[{i}].shape[{j}] must be a non-negative integer, got {quoted(size)}",
                    f"header.buffers[{i}]",
                )
            raise RequestError(
                INVALID_ARGUMENT,
                f"header.buffers[{i}] must be a map with 'dtype' (one of {', '.join(sorted(DTYPES))}) and 'shape' "
                f"(an array of non-negative integers), got {quoted(spec, 120)}{_description_hint(spec, i)}",
                f"header.buffers[{i}]",
            )
        described.append((dtype, tuple(shape)))
    return described


def attach_buffers(body: Any, header: dict[str, Any], frames: list[bytes]) -> Any:
    """Replace ``{"$buffer": i}`` placeholders in ``body`` by :class:`Buffer` objects."""
    if header.get("buffers") is None:
        raise RequestError(
            INVALID_ARGUMENT,
            f"{len(frames)} buffer frame(s) sent without header.buffers to describe them",
            "header.buffers",
        )
    specs = buffer_specs(header)
    if len(specs) != len(frames):
        raise RequestError(
            INVALID_ARGUMENT,
            f"header.buffers describes {len(specs)}; it must describe each of the {len(frames)} buffer frame(s) sent",
            "header.buffers",
        )
    buffers = []
    for i, ((dtype, shape), frame) in enumerate(zip(specs, frames, strict=True)):
        try:
            buffers.append(Buffer(dtype, shape, frame))
        except ValueError as exc:
            raise RequestError(INVALID_ARGUMENT, f"buffer {i}: {exc}", f"header.buffers[{i}]") from None
    if nests_deeper(body, BUFFER_BODY_NESTING):  # the placeholder walk recurses: bound it before it starts
        raise RequestError(
            INVALID_ARGUMENT,
            f"a body with buffers nests arrays and maps deeper than {BUFFER_BODY_NESTING} levels",
            "body",
        )

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and "$buffer" in node:
                index = node["$buffer"]
                if type(index) is not int or not 0 <= index < len(buffers):
                    sent = f"0 to {len(buffers) - 1}" if buffers else "none was sent"
                    wanted = f"the index of a buffer frame sent ({sent})"
                    raise RequestError(
                        INVALID_ARGUMENT, f"$buffer must be {wanted}, got {quoted(index)}", "body.$buffer"
                    )
                return buffers[index]
            return {k: substitute(v) for k, v in node.items()}
        if isinstance(node, list):
            return [substitute(v) for v in node]
        return node

    return substitute(body)


def _description_hint(spec: Any, i: int) -> str:
    """A near-miss of ``dtype`` or ``shape`` that buffer description ``i`` holds instead, as ``; ...``."""
    if type(spec) is not dict:
        return ""
    for name in ("dtype", "shape"):
        if name not in spec and (found := near_miss(spec, (name,), f"header.buffers[{i}]")) is not None:
            return f"; {found[1]}"
    return ""
