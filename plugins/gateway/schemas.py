"""JSON schemas from ``_routes`` made strict for OpenAPI 3.1, and their OIP datatypes."""

from __future__ import annotations

from typing import Any

#: Open Inference Protocol datatypes of JSON-schema scalar types.
DATATYPES = {"string": "BYTES", "integer": "INT64", "number": "FP64", "boolean": "BOOL"}


def clean(schema: Any) -> Any:
    """``_routes``' ``binary`` type as JSON Schema 2020-12 spells it (an older daemon's ``any`` left out)."""
    if isinstance(schema, list):
        return [clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    out = {key: clean(value) for key, value in schema.items() if key != "type"}
    if kind == "binary":
        out.update(type="string", contentEncoding="base64")
    elif kind is not None and kind != "any":
        out["type"] = kind
    return out


def hoisted(schema: Any, prefix: str, components: dict[str, Any]) -> Any:
    """A ``_routes`` schema whose ``$defs`` (a class holding itself: a tree's node) are moved into the document's
    ``components`` as ``PREFIX.Name``, its ``$ref`` pointing there: in an OpenAPI document ``#/$defs/Node`` would be
    looked up from the document's top, where it is not."""
    if isinstance(schema, list):
        return [hoisted(item, prefix, components) for item in schema]
    if not isinstance(schema, dict):
        return schema
    for name, described in (schema.get("$defs") or {}).items():
        components[f"{prefix}.{name}"] = hoisted(described, prefix, components)
    out = {key: hoisted(value, prefix, components) for key, value in schema.items() if key != "$defs"}
    if isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/$defs/"):
        out["$ref"] = f"#/components/schemas/{prefix}.{ref.removeprefix('#/$defs/')}"
    return out


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` as ``X`` (an optional field), for choosing a datatype."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    return options[0] if len(options) == 1 else schema


def properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An object schema's fields; of a reply that comes in several forms (``anyOf``), those of
    the first, the one-body form (Route.output)."""
    if "properties" not in schema and schema.get("anyOf"):
        schema = schema["anyOf"][0]
    return {name: without_null(value) for name, value in (schema.get("properties") or {}).items()}


def is_probability_map(schema: dict[str, Any]) -> bool:
    """``{label: number}``: served as an FP64 tensor, one column per label."""
    values = schema.get("additionalProperties")
    return schema.get("type") == "object" and isinstance(values, dict) and values.get("type") == "number"


def tensor_type(schema: dict[str, Any]) -> tuple[str, list[int]] | None:
    """The datatype and shape (per request of N rows) of an input field; None: not a tensor."""
    kind = schema.get("type")
    if kind in DATATYPES:
        return DATATYPES[kind], [-1]
    if kind == "array" and (schema.get("items") or {}).get("type") in DATATYPES:
        return DATATYPES[schema["items"]["type"]], [-1, -1]
    return None


def output_type(schema: dict[str, Any]) -> tuple[str, list[int]]:
    """The datatype and shape of an output field: scalars, label maps, else JSON in BYTES."""
    kind = schema.get("type")
    if kind in DATATYPES:
        return DATATYPES[kind], [-1]
    if is_probability_map(schema):
        return "FP64", [-1, -1]
    return "BYTES", [-1]
