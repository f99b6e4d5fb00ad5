"""Triton's binary tensor extension on requests: a JSON header of
``Inference-Header-Content-Length`` bytes, then each input whose ``parameters`` carry
``binary_data_size`` as raw bytes, in order. Decoded here into the JSON form (``data``
lists, ``binary_data_size`` taken out), so the rest of the infer path is the same for both.

BYTES elements are a 4-byte little-endian length and the bytes (UTF-8 text); numbers and
booleans are little-endian arrays of their datatype. Replies stay JSON, which Triton's
clients read whatever ``binary_data`` their outputs asked for.
"""

from __future__ import annotations

import struct
from typing import Any

from heirloom_plugins.gateway.front import TOO_DEEP, NotServed, from_json, opens_deeper, to_json
from heirloom_plugins.gateway.oip import InferError

#: struct codes of the fixed-size datatypes (little-endian).
FIXED = {
    "BOOL": "?",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}


def decode(raw: bytes, header_length: str) -> Any:
    """The infer request in ``raw`` with every binary input's ``data`` filled in."""
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(raw):
        message = f"Inference-Header-Content-Length must be the JSON header's size in bytes (at most {len(raw)})"
        raise InferError(f"{message}, got {header_length!r}", "header.Inference-Header-Content-Length")
    size = int(header_length)
    header = raw[:size]
    try:
        request = from_json(header)
    except NotServed as exc:
        raise InferError(f"the JSON header: {exc}", "body") from None
    except ValueError as exc:  # the parser's own words for 300 "[" were "failed to allocate memory"
        said = f"the JSON header: {TOO_DEEP}" if opens_deeper(header) else f"the JSON header is not JSON: {exc}"
        raise InferError(said, "body") from None
    if opens_deeper(header):  # held to a JSON body's depth (docs/HTTP.md, Strict JSON)
        raise InferError(f"the JSON header: {TOO_DEEP}", "body")
    offset = size
    tensors = request.get("inputs") if isinstance(request, dict) else None
    for position, tensor in enumerate(tensors if isinstance(tensors, list) else []):
        where = f"inputs[{position}]"
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if parameters is not None and not isinstance(parameters, dict):
            raise InferError(f"{where}.parameters must be an object, got {parameters!r:.40}", f"{where}.parameters")
        binary = (parameters or {}).pop("binary_data_size", None)  # taken: oip.rows refuses one left in JSON
        if binary is None:
            continue
        field = f"{where}.parameters.binary_data_size"
        if "data" in tensor:  # which one counts would be a guess (the bytes won): Triton refuses it too
            raise InferError(f"{where} has both 'data' and binary_data_size: send its values in one", field)
        if type(binary) is not int or binary < 0:  # not bool: JSON's true is no size
            raise InferError(f"{field} must be a whole number of bytes, got {to_json(binary).decode()}", field)
        if offset + binary > len(raw):
            raise InferError(f"{where}: binary_data_size {binary} runs past the body's end", field)
        tensor["data"] = _values(raw[offset : offset + binary], tensor.get("datatype"), where)
        offset += binary
    if offset != len(raw):
        raise InferError(f"{len(raw) - offset} bytes after the last binary input", "body")
    return request


def _values(chunk: bytes, datatype: Any, where: str) -> list[Any]:
    if datatype == "BYTES":
        values, at = [], 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise InferError(f"{where}: a BYTES element's length prefix is cut short", f"{where}.data")
            (length,) = struct.unpack_from("<I", chunk, at)
            element = chunk[at + 4 : at + 4 + length]
            if len(element) != length:
                raise InferError(f"{where}: a BYTES element is shorter than its length prefix", f"{where}.data")
            try:
                values.append(element.decode())
            except UnicodeDecodeError:
                raise InferError(f"{where}: a BYTES element is not UTF-8 text", f"{where}.data") from None
            at += 4 + length
        return values
    code = FIXED.get(datatype) if isinstance(datatype, str) else None
    if code is None:
        raise InferError(f"{where}: no binary form for datatype {datatype!r}", f"{where}.datatype")
    width = struct.calcsize(code)
    if len(chunk) % width:
        raise InferError(f"{where}: {len(chunk)} bytes is not a whole number of {datatype}", f"{where}.data")
    return list(struct.unpack(f"<{len(chunk) // width}{code}", chunk))
