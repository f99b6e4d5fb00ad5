"""Open Inference Protocol v2 (KServe V2, Triton, MLServer) over a heirloom model route.

Rows are requests: an infer request with tensors of first dimension N becomes N bodies
for the route (row i of every input tensor, under the tensor's name as the body key),
sent at once on the gateway's one connection so the daemon's batcher coalesces them.
The N replies become the output tensors:

- a string field (a label) -> ``BYTES [N]``; numbers and booleans -> ``FP64``/``INT64``/``BOOL [N]``;
- a ``{label: probability}`` map -> ``FP64 [N, K]``, the K labels in the output's
  ``parameters.labels`` (column order);
- anything else (ranked lists, multi-label sets) -> ``BYTES [N]`` holding one JSON document per row.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import attrs

from heirloom_plugins.gateway.schemas import is_probability_map, output_type, properties, tensor_type

#: Fields every reply carries that are not outputs (the version is the response's ``model_version``).
NOT_OUTPUTS = frozenset({"version"})
#: Rows of one infer request: each is a call of the route, so a small body must not become
#: an unbounded number of calls (the daemon's default route queue holds 1,024).
MAX_ROWS = 1024
NUMERIC = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"})


class InferError(ValueError):
    """A malformed infer request; ``field`` names the offending part (``inputs[0].shape``)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@attrs.frozen
class Signature:
    """A model route's tensors, read from its schemas once per route table (not per request)."""

    #: ``input field -> (datatype, shape)`` for the fields that are tensors.
    inputs: dict[str, tuple[str, list[int]]]
    #: ``reply field -> its schema``, as declared (may be empty: then the reply's own fields).
    outputs: dict[str, dict[str, Any]]
    #: ``reply field -> (datatype, encoding)`` of the declared outputs (see :func:`encoding`).
    encodings: dict[str, tuple[str, str]]

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Signature:
        fields = properties(entry.get("input") or {})
        typed = {name: tensor_type(schema) for name, schema in fields.items() if name not in batch_forms(fields)}
        outputs = properties(entry.get("output") or {})
        return cls(
            inputs={name: found for name, found in typed.items() if found is not None},
            outputs=outputs,
            encodings={name: encoding(schema) for name, schema in outputs.items()},
        )


def batch_forms(fields: dict[str, dict[str, Any]]) -> set[str]:
    """Fields that are another field's batch form: named like it plus ``s``, an array of its
    type (``texts`` beside ``text``). Not tensors: an infer request's rows already batch, and
    the route answers a batch form with a list, not with the outputs it declares."""
    return {
        name
        for name, schema in fields.items()
        if name.endswith("s")
        and name[:-1] in fields
        and schema.get("type") == "array"
        and (schema.get("items") or {}).get("type") == fields[name[:-1]].get("type")
    }


def encoding(schema: dict[str, Any]) -> tuple[str, str]:
    """An output field's datatype and how its values become tensor data: ``labels`` (a
    probability map, one column per label), ``json`` (a JSON document per row), ``plain``."""
    datatype, _ = output_type(schema)
    if is_probability_map(schema):
        return datatype, "labels"
    if datatype == "BYTES" and schema.get("type") != "string":
        return datatype, "json"
    return datatype, "plain"


def short_version(version: str | None) -> str:
    """``project/model@7`` -> ``7`` (OIP versions are plain strings)."""
    return version.rpartition("@")[2] if version else ""


def metadata(name: str, entry: dict[str, Any], signature: Signature, version: str | None) -> dict[str, Any]:
    inputs = [{"name": field, "datatype": typed[0], "shape": typed[1]} for field, typed in signature.inputs.items()]
    outputs = [
        {"name": field, "datatype": output_type(schema)[0], "shape": output_type(schema)[1]}
        for field, schema in signature.outputs.items()
        if field not in NOT_OUTPUTS
    ]
    return {
        "name": name,
        "versions": [short_version(version)] if version else [],
        "platform": "heirloom",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"route": entry["name"], "model": entry.get("model"), "description": entry.get("description")},
    }


#: The keys of an infer request and of one of its tensors: any other is a mistake, refused.
REQUEST_KEYS = ("id", "inputs", "outputs", "parameters")
TENSOR_KEYS = ("name", "shape", "datatype", "data", "parameters")
OUTPUT_KEYS = ("name", "parameters")
#: What each datatype's elements are in JSON (a bool is no number).
ELEMENTS = {"BYTES": ((str,), "a string"), "BOOL": ((bool,), "a boolean")}
NUMBER = ((int, float), "a number")


def _known_keys(found: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """InferError naming the first key not in ``known`` (``where``: the object's field)."""
    unknown = next((key for key in found if key not in known), None)
    if unknown is not None:
        field = f"{where}.{unknown}" if where else unknown
        raise InferError(f"unknown field {field!r:.60} (one of {', '.join(known)})", field)
    if not isinstance(found.get("parameters", {}), dict):
        field = f"{where}.parameters" if where else "parameters"
        raise InferError(f"{field} must be an object, got {json.dumps(found['parameters'])[:40]}", field)


def _flatten(data: Any, shape: list[int], where: str) -> list[Any]:
    """A tensor's values in row-major order: ``data`` flat, or nested exactly as ``shape``."""
    if not isinstance(data, list):
        raise InferError(f"{where}.data must be a list, got {json.dumps(data)[:40]}", f"{where}.data")
    if not any(isinstance(value, list) for value in data):
        flat = data
    else:
        level = [data]
        for size in shape:
            if not all(isinstance(node, list) and len(node) == size for node in level):
                raise InferError(f"{where}.data is not nested as its shape {shape}", f"{where}.data")
            level = [value for node in level for value in node]
        if any(isinstance(value, list) for value in level):
            raise InferError(f"{where}.data is nested deeper than its shape {shape}", f"{where}.data")
        flat = level
    if len(flat) != math.prod(shape):
        raise InferError(f"{where}: shape {shape} needs {math.prod(shape)} values, got {len(flat)}", f"{where}.data")
    return flat


def _check_elements(flat: list[Any], datatype: str, where: str) -> None:
    """InferError naming the first element that is not of ``datatype`` (the input's)."""
    types, what = ELEMENTS.get(datatype, NUMBER)
    numeric = datatype not in ELEMENTS
    for index, value in enumerate(flat):
        if not isinstance(value, types) or (numeric and isinstance(value, bool)):
            field = f"{where}.data[{index}]"
            raise InferError(f"{field} must be {what} ({datatype}), got {json.dumps(value)[:40]}", field)


def rows(request: Any, signature: Signature) -> list[dict[str, Any]]:
    """The route bodies of an infer request, one per row; InferError names what is wrong."""
    if not isinstance(request, dict):
        raise InferError("an infer request is a JSON object with 'inputs'", "body")
    _known_keys(request, REQUEST_KEYS, "")
    if request.get("id") is not None and not isinstance(request["id"], str):  # the protocol's; null is none
        raise InferError(f"'id' must be a string, got {json.dumps(request['id'])[:40]}", "id")
    _check_outputs(request.get("outputs"))  # before any row is sent: a wrong one is no reason to call the route
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InferError("'inputs' must be a non-empty list of tensors", "inputs")
    columns: dict[str, list[Any]] = {}
    count = None
    for position, tensor in enumerate(tensors):
        where = f"inputs[{position}]"
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if isinstance(parameters, dict) and "binary_data_size" in parameters:
            field = f"{where}.parameters.binary_data_size"  # its bytes are nowhere: binary.decode takes it out
            message = "needs the Inference-Header-Content-Length header (the JSON's size in bytes, the binary after it)"
            raise InferError(f"{field} {message}: without it, send the values as 'data'", field)
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= set(tensor):
            raise InferError(f"{where} must have 'name', 'shape', 'datatype' and 'data'", where)
        _known_keys(tensor, TENSOR_KEYS, where)
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        if not isinstance(name, str) or name in columns:
            problem = "is given twice" if isinstance(name, str) else "must be a string"
            raise InferError(f"{where}: the input name {json.dumps(name)[:40]} {problem}", f"{where}.name")
        expected = signature.inputs.get(name)
        if expected is None:
            known = ", ".join(signature.inputs) or "none"
            raise InferError(f"{where}: no input named {name!r} (inputs: {known})", f"{where}.name")
        if not (isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape)):
            said = f"{where}.shape must be a list of at least one non-negative int, got {json.dumps(shape)[:40]}"
            raise InferError(said, f"{where}.shape")
        if len(shape) != len(expected[1]):
            raise InferError(
                f"{where}: {name!r} has {len(expected[1])} dimensions, got shape {shape}", f"{where}.shape"
            )
        if shape[0] > MAX_ROWS:  # before a row is built: [1000000000, 0] with no data is 89 bytes
            raise InferError(
                f"{shape[0]} rows: an infer request takes at most {MAX_ROWS} (one call each)", f"{where}.shape"
            )
        if datatype != expected[0] and not (expected[0] in NUMERIC and datatype in NUMERIC):
            raise InferError(
                f"{where}: {name!r} is {expected[0]}, got {json.dumps(datatype)[:40]}", f"{where}.datatype"
            )
        flat = _flatten(tensor["data"], shape, where)
        _check_elements(flat, expected[0], where)
        width = shape[1] if len(shape) == 2 else 1
        columns[name] = [
            flat[row * width : (row + 1) * width] if len(shape) == 2 else flat[row] for row in range(shape[0])
        ]
        if count is not None and shape[0] != count:
            raise InferError(f"{where}: {shape[0]} rows, but an earlier input has {count}", f"{where}.shape")
        count = shape[0]
    if not count:
        raise InferError("the inputs have no rows (first dimension 0)", "inputs[0].shape")
    return [{name: column[row] for name, column in columns.items()} for row in range(count)]


def _check_outputs(asked: Any) -> None:
    """InferError when ``outputs`` (None: absent, as JSON's null is: all outputs) is not a list of one or more
    ``{"name", "parameters"?}``: an empty one ran the model and answered no tensor (checker h432 F3)."""
    if asked is None:
        return
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise InferError("'outputs' must be a list of {'name': ...}", "outputs")
    if not asked:
        raise InferError("'outputs' names no output: name one, or leave it out for all of them", "outputs")
    for position, output in enumerate(asked):
        _known_keys(output, OUTPUT_KEYS, f"outputs[{position}]")


def requested(request: dict[str, Any], available: list[str]) -> list[str]:
    """The outputs asked for (all when ``outputs`` is absent; :func:`rows` checked its form);
    InferError for unknown ones."""
    asked = request.get("outputs")
    if asked is None:
        return available
    names = [o["name"] for o in asked]
    for position, name in enumerate(names):  # the exact part, as inputs[0].name is named
        if name not in available:
            field = f"outputs[{position}].name"
            raise InferError(f"{field}: no output named {name!r:.80} (outputs: {', '.join(available)})", field)
        if name in names[:position]:  # a client asking twice would get the tensor twice, under one name
            raise InferError(f"output {name!r:.80} is asked for more than once", f"outputs[{position}].name")
    return names


def response(
    name: str, signature: Signature, replies: list[Any], version: str | None, request: dict[str, Any]
) -> dict[str, Any]:
    """The infer response for the replies to :func:`rows`' bodies, in order."""
    schemas = signature.outputs
    first = replies[0] if isinstance(replies[0], dict) else {"output": replies[0]}
    available = [f for f in (schemas or first) if f not in NOT_OUTPUTS]
    outputs = []
    for field in requested(request, available):
        values = [reply.get(field) if isinstance(reply, dict) else reply for reply in replies]
        found = signature.encodings.get(field) or encoding(_guess(values[0]))
        outputs.append(_tensor(field, found, values))
    body: dict[str, Any] = {"model_name": name, "model_version": short_version(version), "outputs": outputs}
    if request.get("id") is not None:
        body["id"] = request["id"]
    return body


def _guess(value: Any) -> dict[str, Any]:
    for kind, python in (("boolean", bool), ("integer", int), ("number", float), ("string", str)):
        if isinstance(value, python):
            return {"type": kind}
    return {}


def _tensor(name: str, found: tuple[str, str], values: list[Any]) -> dict[str, Any]:
    datatype, how = found
    if how == "labels":
        labels = tuple(values[0])
        data = [float(value.get(label, 0.0)) for value in values for label in labels]
        return {
            "name": name,
            "datatype": datatype,
            "shape": [len(values), len(labels)],
            "data": data,
            "parameters": {"labels": _labels_json(labels)},
        }
    if how == "json":
        values = [json.dumps(value) for value in values]
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}


@functools.lru_cache(maxsize=256)
def _labels_json(labels: tuple[str, ...]) -> str:
    """The ``labels`` parameter: a model's label set, the same on nearly every reply."""
    return json.dumps(list(labels))
