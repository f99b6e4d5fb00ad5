"""The heirloom wire format (docs/PROTOCOL.md is the language-neutral description).

A message is a list of ZeroMQ frames::

    [SIGNATURE, header (msgpack map), body (msgpack value), *raw buffers]

The header of a request carries ``id``, ``route`` and optionally ``deadline_ms`` (a
relative budget), ``idempotency_key`` and ``buffers`` (dtype and shape of each raw
buffer frame; the body refers to buffer ``i`` as ``{"$buffer": i}``). A reply header
carries ``id``, ``status`` (a gRPC canonical code name) and timings; an error reply's
body is ``{"code", "message", "retryable", ...}``. Nothing received is ever unpickled:
msgpack decodes only plain data.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import attrs
import msgpack

from heirloom.core.paths import home
from heirloom.limits import leaves, shortened

SIGNATURE = b"HLM1"
#: Frames a worker and its broker use for control messages start with an empty frame.
CONTROL = b""

OK = "OK"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
NOT_FOUND = "NOT_FOUND"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
UNAVAILABLE = "UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
INTERNAL = "INTERNAL"
CODES = (
    OK,
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    DEADLINE_EXCEEDED,
    UNAUTHENTICATED,
    PERMISSION_DENIED,
    INTERNAL,
)
#: A worker's reply tag ends with one byte: the index of its status in CODES (docs/PROTOCOL.md).
STATUS_BYTE = {code: bytes([index]) for index, code in enumerate(CODES)}
CODE_OF_BYTE = {byte: code for code, byte in STATUS_BYTE.items()}
#: Codes a client may retry after a pause (with the same idempotency key for writes).
RETRYABLE = frozenset({RESOURCE_EXHAUSTED, UNAVAILABLE})

DTYPES = frozenset({"uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"})
#: The struct codes of a typed view (numpy's memoryview) that hold each dtype's items; raw bytes
#: (``B``, ``b``, ``c``) are any dtype's. 4- and 8-byte integers have two codes each.
_FORMATS = {
    "uint8": "B",
    "int8": "b",
    "bool": "?",
    "int16": "h",
    "float16": "e",
    "int32": "il",
    "int64": "lq",
    "float32": "f",
    "float64": "d",
}
_ITEMSIZE = {
    "uint8": 1,
    "int8": 1,
    "bool": 1,
    "int16": 2,
    "float16": 2,
    "int32": 4,
    "float32": 4,
    "int64": 8,
    "float64": 8,
}

packb = msgpack.Packer(use_bin_type=True, datetime=False).pack
#: Deepest nesting of arrays and maps a body may have (msgpack's packer refuses past 511).
MAX_NESTING = 500
#: Deepest nesting of a body that carries buffers, in arrays and maps inside one another
#: (placeholders sit near the top of a body; finding them recurses).
BUFFER_BODY_NESTING = 64
#: ``packb(None)``: the body of a request that sends nothing.
NIL = b"\xc0"
#: Longest ``idempotency_key`` string accepted.
IDEMPOTENCY_KEY_LIMIT = 256


#: Python's type names as this protocol says them (docs/PROTOCOL.md), for error messages.
WIRE_NAMES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "bytes": "binary"}
WIRE_NAMES |= {"list": "array", "tuple": "array", "dict": "map", "NoneType": "nil", "None": "nil", "Buffer": "buffer"}


def wire_name(value: Any) -> str:
    """The protocol's name of ``value``'s type: a client in another language knows maps, not dicts."""
    return WIRE_NAMES.get(type(value).__name__, type(value).__name__)


def quoted(value: Any, limit: int = 80) -> str:
    """``value`` as an error message quotes it: its type in this protocol's words, then the
    value as JSON writes it (``true``, not Python's ``True``), cut at ``limit`` characters."""
    if value is None:
        return "nil"
    try:
        shown = json.dumps(value, ensure_ascii=False, default=_shown)
    except (TypeError, ValueError, RecursionError):  # a key that is bin or an array; deep nesting
        shown = "(not shown)"
    return f"{wire_name(value)} {cut(shown, limit)}"


#: Characters of a field's path that lead a message about the body: the rest, why, must fit in its 1,000.
FIELD_SHOWN = 200


def cut(text: str, limit: int = 80) -> str:
    """``text`` cut at ``limit`` characters, ending ``...`` when it was."""
    return f"{text[:limit]}{'...' if len(text) > limit else ''}"


#: An absolute path: quoted whole (spaces and all; a quote's content of two steps or more is
#: a path, see _masked), a ``file:`` URL, else one of two steps or more standing alone, after a
#: space, a quote, ``:`` or ``=`` (``path:/srv/x``), not a URL's (``http://h/a``) nor ``a/b`` in
#: a word, and ending where a bracket, a quote or a space does. Every alternative scans to the
#: next quote, space or line end without backtracking into it: time linear in the text (a
#: client's text in a message must not stall the I/O thread).
_ABSOLUTE_PATH = re.compile(
    r"""'/(?!/)[^'\n]*'|"/(?!/)[^"\n]*"|(?i:\bfile):/[^\s'"()\[\],;]*"""
    r"""|(?<![\w.$<>/\]])/(?!/)[^\s'"()\[\],;/]+(?:/[^\s'"()\[\],;/]*)+"""
)
#: What may follow a root for it to be the root, not a longer name's start (``/srv/home2``).
_ROOT_END = r"""(?=[/\s'"()\[\],;:]|\.(?!\w)|$)"""


def without_paths(text: str, *roots: Path) -> str:
    """``text`` with the daemon's home and ``roots`` (a store elsewhere) shown by name, and any
    other absolute path as ``<a server path>``: a client learns no server path from an error
    (a plugin's log elsewhere, a file its handler opened); the daemon's log keeps them whole."""
    for root, name in [*((root, "<store>") for root in roots), (home(), "$HEIRLOOM_HOME")]:
        for form in dict.fromkeys((str(root.absolute()), str(root.resolve()))):
            if form != "/":  # the root folder is every path's start: naming it would hide nothing
                text = re.sub(re.escape(form) + _ROOT_END, name, text)
    return _ABSOLUTE_PATH.sub(_masked, text)


def _masked(found: re.Match[str]) -> str:
    """A path found by _ABSOLUTE_PATH as ``<a server path>`` (in its quotes); a quoted ``'/x'``
    of one step is left alone, as an unquoted one is."""
    path = found[0]
    if path[0] in "'\"":
        return path if "/" not in path[2:-1] else f"{path[0]}<a server path>{path[0]}"
    return "<a server path>"


def _shown(value: Any) -> str:
    """A value JSON has no form for, as ``quoted`` shows it: bin as the text it holds."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension types are not accepted (plain data only; this is type {code})")


#: ``unpackb(data)``: one msgpack value, plain data only: extension types (timestamps
#: included) are refused; msgpack caps every container and string length by the frame's
#: size, so a hostile frame cannot balloon. A C partial: no Python frame on the hot path.
unpackb = functools.partial(msgpack.unpackb, strict_map_key=False, max_ext_len=0, ext_hook=_refuse_extension)
#: How deep msgpack's decoder lets arrays and maps nest (deeper: StackError).
DECODE_NESTING = 1024


def decoding_error(what: str, exc: Exception) -> str:
    """Why ``unpackb`` refused a frame, for a client (several of msgpack's errors say nothing)."""
    if isinstance(exc, msgpack.exceptions.StackError):
        reason = f"arrays and maps nest deeper than {DECODE_NESTING} levels"
    elif isinstance(exc, msgpack.ExtraData):  # JSON's "{" and "[" are the msgpack ints 123 and 91
        json_like = exc.unpacked in (ord("{"), ord("["))
        reason = "bytes follow the first msgpack value" + (" (it reads as JSON: send msgpack)" if json_like else "")
    elif isinstance(exc, msgpack.exceptions.FormatError):
        reason = "a byte that starts no msgpack value (such as 0xc1)"
    elif isinstance(exc, UnicodeDecodeError):
        reason = f"a string is not UTF-8 ({exc.reason} at byte {exc.start}); send bytes as bin"
    elif isinstance(exc, TypeError):
        reason = "a map key is an array or a map"
    elif "max_ext_len" in str(exc) or "timestamp" in str(exc):  # with data, or msgpack's own timestamp (-1)
        reason = "msgpack extension types are not accepted (plain data only: a time as seconds or ISO text, "
        reason += "not a timestamp)"  # a JavaScript Date is packed as one (checker h436 F3)
    elif "incomplete input" in str(exc) or "exceeds max_" in str(exc):  # or a length past the frame's end
        reason = "the frame ends inside a msgpack value (truncated)"
    else:  # an extension type without data: our own hook's words say it
        reason = str(exc)
    return f"cannot decode the {what}: {reason}"


@attrs.frozen
class Buffer:
    """A raw tensor-like buffer travelling as its own frame: dtype, shape and bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes | memoryview = attrs.field(repr=False)  # an error quoting a buffer given for text stays short

    def __attrs_post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        expected = _ITEMSIZE[self.dtype]
        for dim in self.shape:
            if type(dim) is not int or dim < 0:
                raise ValueError(f"shape must be a list of non-negative ints, got {list(self.shape)}")
            expected *= dim
        try:
            view = memoryview(self.data)
        except TypeError:
            raise ValueError(f"a buffer's data must be bytes or a memoryview, got {type(self.data).__name__}") from None
        if not view.c_contiguous:  # a strided view cannot go as one frame: sending it would fail mid-message
            raise ValueError("a buffer's data must be contiguous: send bytes(view) or numpy.ascontiguousarray(a)")
        order, code = (view.format[0], view.format[1:]) if view.format[:1] in "<>=!@" else ("@", view.format)
        if code not in "Bbc" and (order in ">!" or code not in _FORMATS[self.dtype]):  # typed items: the dtype's
            raise ValueError(
                f"a {self.dtype} buffer's data holds {view.format!r} items: send little-endian {self.dtype} "
                "(numpy: a.astype(a.dtype.newbyteorder('<'))) or plain bytes"
            )
        if expected != view.nbytes:  # nbytes: a view of float32s has len() of its items, not its bytes
            raise ValueError(
                f"a {self.dtype} buffer of shape {list(self.shape)} has {expected} bytes, got {view.nbytes}"
            )

    def frame(self) -> bytes | memoryview:
        """The data as one frame of plain bytes (a typed view cast to bytes, so its length is its size;
        an empty one is b"", as a view of zero rows of a matrix cannot be cast)."""
        if isinstance(self.data, bytes):
            return self.data
        view = memoryview(self.data)
        return view.cast("B") if view.nbytes else b""


class RequestError(Exception):
    """A request that cannot be served as sent; ``field`` names the offending part.

    Handlers raise it (or return it as one item of a batched result) to answer with a
    specific status code instead of INTERNAL.
    """

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        retry_after_ms: int | None = None,
        retryable: bool = True,
    ):
        """``retryable``: False for a code that is otherwise (a keyed write lost with its worker may have run)."""
        if code not in CODES or code == OK:  # a typo would otherwise reach clients as a code they cannot know
            raise ValueError(f"RequestError code {code!r} is not an error status: use one of {', '.join(CODES[1:])}")
        self._whole = message  # led_by_field shortens it once more, led by the field: not the cut one again
        message = shortened(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = shortened(field) if field is not None else None
        self.retry_after_ms = retry_after_ms
        self.retryable = retryable and code in RETRYABLE

    def led_by_field(self) -> RequestError:
        """This error, its message led by the body field it names, as the daemon's own validation
        messages are (``body.label: label 'x' is not one the model predicts``)."""
        field = self.field or ""
        lead = cut(field, FIELD_SHOWN)  # a long key's, cut: whole, it crowded out why (h461 F2, v45 F3)
        if not (field == "body" or field.startswith(("body.", "body["))) or self.message.startswith((field, lead)):
            return self
        return RequestError(self.code, f"{lead}: {self._whole}", self.field, self.retry_after_ms, self.retryable)

    def body(self) -> dict[str, Any]:
        """The error reply body."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.field is not None:
            body["field"] = self.field
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
        return body


#: The largest header frame accepted.
HEADER_LIMIT = 64 << 10


def error_reply(request_id: Any, error: RequestError) -> list[bytes]:
    """An error reply's header and body frames."""
    return [packb({"id": request_id, "status": error.code}), packb(error.body())]


def error_frames(envelope: list[bytes], request_id: Any, error: RequestError) -> list[bytes]:
    """A complete error reply for a request that arrived with ``envelope``."""
    return [*envelope, SIGNATURE, *error_reply(request_id, error)]


#: Frames a request's routing envelope may have (the ROUTER's identity frame and three more).
MAX_ENVELOPE = 4
#: Bytes an envelope frame may hold, as a ZeroMQ routing id: a reply carries the envelope back,
#: so larger frames would be memory a client that never reads makes the daemon hold uncounted.
MAX_ENVELOPE_FRAME = 255
#: Buffer frames one request may carry (PROTOCOL.md, Size limits): a bound on a message's frames, whose
#: count nothing else bounds (an empty frame is 2 bytes on the wire, and a Python object once read).
MAX_BUFFERS = 1024
#: Frames of a client's message the daemon keeps: envelope, signature, header, body and one buffer frame
#: more than a request may have, so a message cut there is still seen to have too many.
MAX_FRAMES = MAX_ENVELOPE + 3 + MAX_BUFFERS + 1


def split_envelope(frames: list[bytes]) -> int:
    """Index of the signature frame (after the routing envelope), or -1 if not an envelope
    (or one with a frame over MAX_ENVELOPE_FRAME bytes: the identity too, which a client of its own ZMTP
    code may make as large as a message, and every reply held for it copied, h363 F1)."""
    if len(frames[0]) > MAX_ENVELOPE_FRAME:
        return -1
    if len(frames) >= 4 and frames[1] == SIGNATURE:
        return 1
    for index in range(2, min(len(frames) - 2, MAX_ENVELOPE + 1)):
        if frames[index] == SIGNATURE:
            return index if max(map(len, frames[1:index])) <= MAX_ENVELOPE_FRAME else -1
    return -1


def detach_buffers(body: Any) -> tuple[Any, list[dict[str, Any]], list[bytes | memoryview]]:
    """The inverse of :func:`attach_buffers`: placeholders, buffer specs and raw frames
    (``body`` itself when it holds no buffer); ValueError for a body nested deeper than MAX_NESTING."""
    if not any([isinstance(leaf, Buffer) for leaf in leaves(body, MAX_NESTING)]):  # the whole walk: depth everywhere
        return body, [], []
    specs: list[dict[str, Any]] = []
    frames: list[bytes | memoryview] = []

    def extract(node: Any) -> Any:
        if isinstance(node, Buffer):
            specs.append({"dtype": node.dtype, "shape": list(node.shape)})
            frames.append(node.frame())
            return {"$buffer": len(frames) - 1}
        if isinstance(node, dict):
            return {k: extract(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [extract(v) for v in node]
        return node

    return extract(body), specs, frames


def request_frames(
    request_id: Any,
    route: str,
    body: Any = None,
    *,
    deadline_ms: float | None = None,
    idempotency_key: str | int | None = None,
) -> list[bytes | memoryview]:
    """Frames of a request (what a DEALER sends)."""
    header: dict[str, Any] = {"id": request_id, "route": route}
    if deadline_ms is not None:
        header["deadline_ms"] = deadline_ms
    if idempotency_key is not None:
        header["idempotency_key"] = idempotency_key
    try:  # at C speed: walking a body for buffers first cost 250 ms a MiB of small arrays
        packed, specs, buffers = packb(body), [], []
    except TypeError:  # a Buffer, no msgpack type (or an object that fails again below)
        body, specs, buffers = detach_buffers(body)
        packed = packb(body)
    if specs:
        header["buffers"] = specs
    return [SIGNATURE, packb(header), packed, *buffers]
