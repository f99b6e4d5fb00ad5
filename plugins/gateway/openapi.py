"""The OpenAPI 3.1 document of a gateway, generated from the daemon's ``_routes``.

Each route is a ``POST /v1/routes/{route}`` operation with its input schema, its reply
schema when the route declares one, its limits in the description and every status the
gateway can answer; each model route is also an OIP v2 model under ``/v2/models``.
"""

from __future__ import annotations

from typing import Any

import heirloom
from heirloom_plugins.gateway.oip import MAX_ROWS, NUMERIC, Signature
from heirloom_plugins.gateway.routes import RouteTable
from heirloom_plugins.gateway.schemas import clean, hoisted

ERROR_STATUSES = {
    "400": "INVALID_ARGUMENT: a malformed body or header, naming the field",
    "401": "UNAUTHENTICATED: no or unknown bearer token, or the daemon refused its key",
    "403": "PERMISSION_DENIED: a Host name this gateway does not answer (--allow-host)",
    "404": "NOT_FOUND: no such route or model",
    "408": "DEADLINE_EXCEEDED: the body did not arrive whole within the gateway's --timeout",
    "413": "the body is larger than the route's max_payload (refused before forwarding)",
    "415": "a Content-Encoding other than identity: bodies are never decompressed",
    "431": "INVALID_ARGUMENT (field header): the request line and headers, a chunk line or a trailer are over "
    "64 KiB; the connection closes",
    "429": "RESOURCE_EXHAUSTED: queue full or admission refused; see Retry-After",
    "500": "INTERNAL: the handler failed",
    "501": "a Transfer-Encoding other than chunked (RFC 9112 6.1)",
    "503": "UNAVAILABLE: starting, draining or no trained model; see Retry-After",
    "504": "DEADLINE_EXCEEDED: the Heirloom-Deadline-Ms budget ran out",
}
#: What else a 403 says: where a request acts, a browser's request from another site's page.
CROSS_SITE = ", or a request a browser sent from another site's page (Sec-Fetch-Site, Origin)"
#: And for an admin route, the daemon's refusal of a key that is not an admin's.
NOT_ADMIN = ", or a key that is not an admin's (the route is admin)"
#: The kernel's routes (``_health``, ``_stats``...) take no body: empty, or JSON ``null``.
NO_BODY = {"type": "null", "description": "no body: send none, or null"}
#: What a probe may be answered besides its own: a bad deadline header, no token, a foreign Host, a head too large.
PROBE_STATUSES = ("400", "401", "403", "431")
#: What a GET may be answered: no body to be too large, too slow or in a coding not read.
READ_STATUSES = tuple(code for code in ERROR_STATUSES if code not in ("408", "413", "415", "501"))
DEADLINE = {
    "name": "Heirloom-Deadline-Ms",
    "in": "header",
    "required": False,
    "description": "The time budget in milliseconds, in decimal digits above 0 (250, 2.5); at most the gateway's "
    "--timeout.",
    # what the gateway reads: digits, a fraction if any, not 0 (a number schema allowed 1e3, which is a 400)
    "schema": {"type": "string", "pattern": r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"},
}
IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key (UTF-8) and body get the first attempt's reply (docs/HTTP.md).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
READINESS = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
ERROR = {
    "type": "object",
    "required": ["error", "code", "retryable"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "field": {"type": "string"},
        "retryable": {"type": "boolean"},
        "retry_after_ms": {"type": "integer"},
    },
}
TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {  # rows first, 1 to MAX_ROWS (the server refuses 0 and more, naming the shape: h404 F4)
            "type": "array",
            "minItems": 1,
            "prefixItems": [{"type": "integer", "minimum": 1, "maximum": MAX_ROWS}],
            "items": {"type": "integer", "minimum": 0},
        },
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
    "additionalProperties": False,  # the server refuses another key, naming it
}
SCHEMAS = {
    "Error": ERROR,
    "Tensor": TENSOR,
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"], "description": "echoed in the response; null is no id"},
            "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Tensor"}},
            "outputs": {
                "type": ["array", "null"],
                "minItems": 1,
                "description": "the outputs to answer; absent or null: all of them",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                    "additionalProperties": False,
                },
            },
            "parameters": {"type": "object"},
        },
        "additionalProperties": False,
    },
    "InferResponse": {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string", "description": "the request's id, as sent (absent when it sent none)"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"type": "object"}},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


#: The response headers a status carries (a generated client reads only what is declared).
HEADERS: dict[str, dict[str, Any]] = {
    "401": {"WWW-Authenticate": {"description": "Bearer (with --tokens)", "schema": {"type": "string"}}},
    "415": {"Accept-Encoding": {"description": "identity: the one content coding read", "schema": {"type": "string"}}},
    **{
        code: {"Retry-After": {"description": "Whole seconds to wait before a retry", "schema": {"type": "integer"}}}
        for code in ("429", "503")
    },
}


#: What the 200 of an api's route carries when a model's version computed the reply; the
#: kernel's routes and the OIP paths never send it (an infer reply says ``model_version``).
MODEL_VERSION = {
    "Heirloom-Model-Version": {
        "description": "The model version that computed the reply (news/sentiment@1), when one did",
        "schema": {"type": "string"},
    }
}
SERVER_METADATA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string", "description": "the server: heirloom"},
        "version": {"type": "string", "description": "heirloom's version"},
        "extensions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the protocol extensions served, under Triton's names (binary_tensor_data)",
        },
    },
}
LIVENESS = {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}


def _responses(
    ok: str, schema: dict[str, Any], codes: tuple[str, ...] = tuple(ERROR_STATUSES), forbidden: str = ""
) -> dict[str, Any]:
    """200 with ``schema``, and ``codes``' errors, each with the headers it carries;
    ``forbidden``: what else a 403 means there."""
    error = _json({"$ref": "#/components/schemas/Error"})
    said = {**ERROR_STATUSES, "403": ERROR_STATUSES["403"] + forbidden}
    answers: dict[str, Any] = {"200": {"description": ok, "content": _json(schema)}}
    answers.update({code: {"description": said[code], "content": error} for code in codes})
    for code, answer in answers.items():
        if code in HEADERS:
            answer["headers"] = HEADERS[code]
    return answers


def _limits(entry: dict[str, Any], payload_factor: int = 1) -> str:
    parts = [f"max_payload {entry['max_payload'] * payload_factor} bytes"]
    if entry.get("batched"):
        parts.append(f"batched (max_batch {entry['max_batch']}, max_wait_ms {entry['max_wait_ms']})")
    if entry.get("admin"):
        parts.append("admin: needs an admin key")
    return "; ".join(parts)


def _route_operation(name: str, entry: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/routes/NAME``; the classes its schemas describe under ``$defs`` go into ``defs`` (components)."""
    api = name.rpartition(".")[0]
    body = hoisted(clean(entry.get("input") or {}), f"{name}.input", defs) if api else NO_BODY
    forbidden = CROSS_SITE + (NOT_ADMIN if entry.get("admin") else "")
    output = hoisted(clean(entry.get("output") or {}), f"{name}.output", defs)
    responses = _responses("the route's reply", output, forbidden=forbidden)
    if api:
        responses["200"]["headers"] = MODEL_VERSION
    return {
        "post": {
            "operationId": f"route_{name}",
            "summary": entry.get("description") or name,
            "description": f"Calls `{name}` on the daemon. Limits: {_limits(entry)}.",
            "tags": [api or "kernel"],
            "parameters": [DEADLINE, IDEMPOTENCY],
            "requestBody": {
                "required": bool(api and entry.get("input")) and body.get("type") != "null",
                "content": _json(body),
            },
            "responses": responses,
        }
    }


def infer_request(signature: Signature) -> dict[str, Any]:
    """The InferRequest schema narrowed to one model's inputs: each tensor's name, datatype (or any numeric one
    for a numeric input, as the gateway converts) and number of dimensions, so a client generated from it
    sends what the gateway takes (a shared schema let schemathesis send ``inputs: []`` and unknown names)."""
    tensors = []
    for name, (datatype, dimensions) in signature.inputs.items():
        allowed = sorted(NUMERIC) if datatype in NUMERIC else [datatype]
        shape = {**TENSOR["properties"]["shape"], "minItems": len(dimensions), "maxItems": len(dimensions)}
        narrowed = {"name": {"const": name}, "datatype": {"enum": allowed}, "shape": shape}
        tensors.append({**TENSOR, "properties": {**TENSOR["properties"], **narrowed}})
    request = SCHEMAS["InferRequest"]
    inputs = {"type": "array", "minItems": 1, "maxItems": len(tensors)}
    inputs["items"] = tensors[0] if len(tensors) == 1 else {"oneOf": tensors}
    return {**request, "properties": {**request["properties"], "inputs": inputs}}


def _model_paths(name: str, entry: dict[str, Any], signature: Signature, served: str | None) -> dict[str, Any]:
    """The OIP operations of one model; ``served``, its served version's number, is the
    ``{version}`` parameter's example (``/docs`` fills it into the form)."""
    ident = name.replace(".", "_")
    operations: dict[str, Any] = {}
    infer_body = _json(infer_request(signature))
    infer_body["application/json"]["example"] = infer_example(signature)
    for prefix, suffix in ((f"/v2/models/{name}", ""), (f"/v2/models/{name}/versions/{{version}}", "_version")):
        number = {"type": "string", "description": "the served version's number (7 for project/model@7)"}
        if served:
            number = {**number, "examples": [served]}
        version = [{"name": "version", "in": "path", "required": True, "schema": number}] if suffix else []
        operations[prefix] = {
            "get": {
                "operationId": f"model_metadata_{ident}{suffix}",
                "summary": f"OIP metadata of {name} (route {entry['name']})",
                "tags": ["inference"],
                "parameters": [*version, DEADLINE],
                "responses": _responses(
                    "inputs and outputs", {"$ref": "#/components/schemas/ModelMetadata"}, READ_STATUSES
                ),
            }
        }
        operations[f"{prefix}/ready"] = {
            "get": {
                "operationId": f"model_ready_{ident}{suffix}",
                "summary": f"Whether {name} is ready",
                "tags": ["inference"],
                "parameters": [*version, DEADLINE],  # 429: a client limit refused the route table's read
                "responses": _ready_responses((*PROBE_STATUSES, "404", "429")),
            }
        }
        operations[f"{prefix}/infer"] = {
            "post": {
                "operationId": f"model_infer_{ident}{suffix}",
                "summary": f"OIP inference on {name}: each row of the inputs is one call of {entry['name']}",
                "description": f"Limits: {_limits(entry, 4)} (JSON tensors are verbose; each row is one call).",
                "tags": ["inference"],
                "parameters": [*version, DEADLINE],
                "requestBody": {"required": True, "content": infer_body},
                "responses": _responses(
                    "output tensors", {"$ref": "#/components/schemas/InferResponse"}, forbidden=CROSS_SITE
                ),
            }
        }
    return operations


def infer_example(signature: Signature) -> dict[str, Any]:
    """An infer request of one row the model takes (``/docs``' form sends it as it is)."""
    inputs = []
    for field, (datatype, shape) in signature.inputs.items():
        width = shape[1] if len(shape) == 2 and shape[1] > 0 else 1
        value = "example" if datatype == "BYTES" else False if datatype == "BOOL" else 0
        inputs.append({"name": field, "shape": [1, width][: len(shape)], "datatype": datatype, "data": [value] * width})
    return {"inputs": inputs}


def _health_paths() -> dict[str, Any]:
    return {
        "/v2": {
            "get": {
                "operationId": "server_metadata",
                "tags": ["inference"],
                # 400: a header sent twice (Origin), malformed HTTP/1.1; 431: a head over 64 KiB
                "responses": _responses("the server's metadata", SERVER_METADATA, ("400", "403", "431")),
            }
        },
        "/v2/health/live": {
            "get": {
                "operationId": "live",
                "tags": ["inference"],
                "parameters": [DEADLINE],
                "responses": _responses("live", LIVENESS, (*PROBE_STATUSES, "503", "504")),
            }
        },
        "/v2/health/ready": {
            "get": {
                "operationId": "ready",
                "tags": ["inference"],
                "parameters": [DEADLINE],
                "responses": _ready_responses(PROBE_STATUSES),
            }
        },
        "/v1/routes": {
            "get": {
                "operationId": "route_table",
                "summary": "Every route of the daemon, as its _routes lists them",
                "tags": ["kernel"],
                "responses": _responses(
                    "the routes", {"type": "object", "properties": {"routes": {"type": "array"}}}, READ_STATUSES
                ),
            }
        },
    }


def _ready_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    """200 and 503 both answer a readiness body (503: not ready), plus ``codes``' errors."""
    answers = _responses("ready", READINESS, codes)
    answers["503"] = {"description": "not ready (starting, draining, no trained model)", "content": _json(READINESS)}
    return answers


def openapi(table: RouteTable, tokens: bool = False, served: dict[str, str] | None = None) -> dict[str, Any]:
    """The document; with ``tokens`` (``--tokens``) every operation but ``GET /v2`` says it
    needs a bearer token, so generated clients send one; ``served``: each model's served
    version's number, where known."""
    paths = _health_paths()
    for name, entry in sorted(table.models.items()):
        paths.update(_model_paths(name, entry, table.signatures[name], (served or {}).get(name)))
    defs: dict[str, Any] = {}
    for name, entry in sorted(table.routes.items()):
        paths[f"/v1/routes/{name}"] = _route_operation(name, entry, defs)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "heirloom gateway",
            "version": heirloom.__version__,
            "description": "Open Inference Protocol v2 for model routes, and every daemon route as JSON.",
        },
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **defs}},
    }
    if tokens:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
        paths["/v2"]["get"]["security"] = []  # server metadata: answered to anyone
    return document
