"""``heirloom gateway`` with real third-party clients: Triton's tritonclient speaks the Open
Inference Protocol to a trained PhraseBank classifier, openapi-spec-validator checks the
generated document, urllib exercises the plain JSON routes and the status mapping.

Two daemons: one serving a small trained sentiment model; one bare (an untrained
classifier, the echo and testing apis, a queue of one) for the refusals.
"""

from __future__ import annotations

import errno
import gzip
import html
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import heirloom
from tests.daemons import Daemon
from tests.helpers import (
    HEIRLOOM,
    REPO,
    free_port,
    free_tcp_address,
    pythonpath,
    quiet_api_plugin,
    run_heirloom,
    write,
)
from tests.test_ui import SMALL

#: How long the gateway keeps a route table (plugins/gateway/routes.py Routes' ttl).
ROUTES_TTL = 5.0

pytest.importorskip("starlette", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")
httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the 'dev' extra)")
openapi_spec_validator = pytest.importorskip("openapi_spec_validator", reason="needs the 'dev' extra")

TEXTS = [
    "Profit rose sharply in the third quarter",
    "The company cut its outlook and shares fell",
    "The meeting is on Monday",
]
SENTIMENT = """
project = "news"
[store]
path = "{store}"
[sources.news]
use = "phrasebank"
path = "{data}/financial-phrasebank"
agreement = "all"
{small}
[apis.sentiment]
use = "classify"
model = "sentiment"
"""
BARE = (
    SENTIMENT
    + """
[server]
max_queue = 1
[apis.echo]
use = "echo"
[apis.t]
use = "testing"
"""
)


class Gateway:
    """``heirloom gateway --connect`` as a subprocess; ``url`` once it answers."""

    def __init__(self, tmp: Path, address: str, *args: str, env: dict[str, str] | None = None):
        port = free_port()
        self.log_path = tmp / f"gateway-{port}.log"
        self.process = subprocess.Popen(
            [*HEIRLOOM, "gateway", "--connect", address, "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("w"),
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/v2", timeout=2).close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # bound, still starting: under load
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError(f"heirloom gateway did not start:\n{self.log_path.read_text()}") from None
                time.sleep(0.2)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(20)


def http(url: str, body=None, *, method: str | None = None, headers=None, raw: bytes | None = None):
    """(status, headers, JSON or text) for one request; HTTP errors are answers, not exceptions."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, head, payload = error.code, error.headers, error.read()
    try:
        return status, head, json.loads(payload)
    except ValueError:
        return status, head, payload.decode()


def raw_response(connection: socket.socket) -> str:
    """One HTTP/1.1 response read off a raw socket: its headers, then ``Content-Length`` bytes
    of body, however the server's writes were split into segments, and not a byte more (a
    pipelined reply's bytes that arrived with it are the next call's)."""
    connection.settimeout(30)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = connection.recv(1)
        if not byte:
            break
        head += byte
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")),
        0,
    )
    body = b""
    while len(body) < length:
        segment = connection.recv(length - len(body))
        if not segment:
            break
        body += segment
    return (head + body).decode()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("gateway")
    profile = write(tmp / "sentiment.toml", SENTIMENT.format(store=tmp / "store", data=data_dir, small=SMALL))
    result = run_heirloom("train", str(profile), timeout=300)
    assert result.returncode == 0, result.stderr
    daemon = Daemon(tmp, profile=profile.read_text())
    daemon.wait_ready(timeout=120)
    gateway = Gateway(tmp, daemon.address)
    yield daemon, gateway
    assert gateway.stop() == 0, gateway.log_path.read_text()
    assert daemon.terminate() == 0, daemon.log()


@pytest.fixture(scope="module")
def bare(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("bare")
    daemon = Daemon(tmp, profile=BARE.format(store=tmp / "empty-store", data=data_dir, small=SMALL))
    deadline = time.monotonic() + 60
    with daemon.client(timeout=1) as client:
        while True:  # never ready (no trained model): wait until its routes are mounted
            try:
                if any(r["name"] == "sentiment.predict" for r in client.call("_routes")["routes"]):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
    gateway = Gateway(tmp, daemon.address, env={"HEIRLOOM_PLUGINS": "tests.gateway_console"})
    yield daemon, gateway
    assert gateway.stop() == 0, gateway.log_path.read_text()
    daemon.kill()


# -- the Open Inference Protocol, through Triton's own client ----------------------------------
def test_tritonclient_sees_a_live_ready_model_with_metadata(trained):
    _, gateway = trained
    client = httpclient.InferenceServerClient(url=gateway.host)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]  # it said [] though it is served
    assert client.is_model_ready("sentiment")
    assert client.is_model_ready("sentiment", model_version="1")
    metadata = client.get_model_metadata("sentiment")
    assert metadata["name"] == "sentiment" and metadata["versions"] == ["1"]
    assert {"name": "text", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
    assert outputs == {"label": ("BYTES", [-1]), "probabilities": ("FP64", [-1, -1])}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_tritonclient_infer_gives_the_labels_of_a_direct_zeromq_call(trained, binary):
    """JSON tensors, and Triton's binary tensor extension (binary_data=True) both ways."""
    daemon, gateway = trained
    with daemon.client(timeout=10) as direct:
        expected = direct.call("sentiment.predict", {"texts": TEXTS})["predictions"]
    client = httpclient.InferenceServerClient(url=gateway.host)
    text = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(__import__("numpy").array(TEXTS, dtype=object), binary_data=binary)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")]
    for version in ("", "1"):
        result = client.infer("sentiment", [text], outputs=wanted, model_version=version, request_id="r1")
        labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
        assert labels == [p["label"] for p in expected]
        probabilities = result.as_numpy("probabilities")
        columns = json.loads(result.get_output("probabilities")["parameters"]["labels"])
        assert probabilities.shape == (len(TEXTS), len(columns))
        for row, prediction in zip(probabilities, expected, strict=True):
            assert dict(zip(columns, row.tolist(), strict=True)) == pytest.approx(prediction["probabilities"])
        response = result.get_response()
        assert response["model_version"] == "1" and response["id"] == "r1"


def test_binary_tensors_decode_numbers_and_name_a_bad_body():
    """The extension's fixed-size datatypes, as numpy (and so Triton's clients) lay them out."""
    import numpy

    from heirloom_plugins.gateway.binary import decode
    from heirloom_plugins.gateway.oip import InferError

    values = numpy.array([0.5, -2.25, 3.0], dtype=numpy.float32)
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}
    ).encode()
    decoded = decode(header + values.tobytes(), str(len(header)))
    assert decoded["inputs"][0]["data"] == [0.5, -2.25, 3.0]
    with pytest.raises(InferError) as short:
        decode(header + values.tobytes()[:8], str(len(header)))
    assert short.value.field == "inputs[0].parameters.binary_data_size" and "past the body's end" in str(short.value)
    with pytest.raises(InferError) as bad:
        decode(header, "nope")
    assert bad.value.field == "header.Inference-Header-Content-Length"
    for size, shown in ((True, "true"), ("9", '"9"'), (1.5, "1.5"), (-1, "-1")):  # a size, not taken as one
        tensor = {"name": "x", "shape": [1], "datatype": "BOOL", "parameters": {"binary_data_size": size}}
        header = json.dumps({"inputs": [tensor]}).encode()
        with pytest.raises(InferError) as wrong:
            decode(header + b"\x01" * 9, str(len(header)))
        assert wrong.value.field == "inputs[0].parameters.binary_data_size", size
        assert str(wrong.value).endswith(f"must be a whole number of bytes, got {shown}"), size


def test_a_binary_infers_json_header_nested_too_deep_is_told_so(bare):
    """A binary infer's JSON header is held to a JSON body's 254 levels: 300 "[" were told "failed to
    allocate memory", a valid 300-deep header not refused for its depth at all (checker h320 F2)."""
    _, gateway = bare
    infer = gateway.url + "/v2/models/sentiment/infer"
    for header in (b"[" * 300, b"[" * 300 + b"]" * 300, b'{"inputs": ' + b"[" * 300 + b"]" * 300 + b"}"):
        raw = header + struct.pack("<I", 4) + b"good"
        status, _, body = http(infer, raw=raw, headers={"Inference-Header-Content-Length": str(len(header))})
        said = "the JSON header: the body nests arrays and objects deeper than 254 levels"
        assert (status, body["field"], body["error"]) == (400, "body", said), (header[:12], body)


def test_bad_infer_requests_name_what_is_wrong(trained):
    _, gateway = trained
    infer = gateway.url + "/v2/models/sentiment/infer"
    status, _, body = http(infer, {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["x"]}]})
    assert status == 400 and body["field"] == "inputs[0].name" and "'txt'" in body["error"]
    status, _, body = http(infer, {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["x"]}]})
    assert status == 400 and body["field"] == "inputs[0].data" and "needs 2 values" in body["error"]
    status, _, body = http(infer, {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
    assert status == 400 and "BYTES" in body["error"]
    status, _, body = http(infer, raw=b"{not json")
    assert status == 400 and body["field"] == "body"
    # what an attack sent (each was a 500): a name that is not a string, a name twice, a
    # boolean dimension, binary parameters that are not an object, a non-ASCII digit length
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    for tensors, field, said in (
        ([{**text, "name": None}], "inputs[0].name", "the input name null must be"),  # JSON's words, not Python's
        ([text, text], "inputs[1].name", 'the input name "text" is given twice'),
        ([{**text, "shape": [True]}], "inputs[0].shape", "got [true]"),
    ):
        status, _, body = http(infer, {"inputs": tensors})
        assert status == 400 and body["field"] == field and said in body["error"], (tensors, body)
    twice = {"inputs": [text], "outputs": [{"name": "label"}, {"name": "label"}]}  # it sent the tensor twice
    status, _, body = http(infer, twice)
    assert (status, body["field"]) == (400, "outputs[1].name"), body
    assert "'label' is asked for more than once" in body["error"]
    status, _, body = http(infer, {"inputs": [text], "outputs": [{"name": "label"}, {"name": "nope"}]})
    assert (status, body["field"]) == (400, "outputs[1].name") and "no output named 'nope'" in body["error"], body
    huge = {**text, "shape": [2_000_000_000], "data": []}  # rows were built before they were counted
    status, _, body = http(infer, {"inputs": [huge]})
    assert (status, body["field"]) == (400, "inputs[0].shape") and "an infer request takes at most 1024" in body[
        "error"
    ]
    status, _, body = http(infer, {"id": 5, "inputs": [text]})  # was echoed as a number; the protocol's is a string
    assert (status, body["field"], body["error"]) == (400, "id", "'id' must be a string, got 5"), body
    status, _, body = http(infer, {"id": None, "inputs": [{**text, "data": [TEXTS[0]]}]})  # OIP's id is optional
    assert status == 200 and "id" not in body, body
    status, _, document = http(gateway.url + "/openapi.json")  # and the document says what the server takes
    schemas = document["components"]["schemas"]
    assert schemas["InferRequest"]["properties"]["id"]["type"] == ["string", "null"]
    assert schemas["InferRequest"]["additionalProperties"] is schemas["Tensor"]["additionalProperties"] is False
    assert schemas["InferRequest"]["properties"]["outputs"]["items"]["additionalProperties"] is False
    assert schemas["InferResponse"]["properties"]["id"]["type"] == "string"
    # h337 F2: a generated client sent `inputs: []`, `shape: []` and unknown names, all refused
    request = document["paths"]["/v2/models/sentiment/infer"]["post"]["requestBody"]["content"]["application/json"]
    inputs = request["schema"]["properties"]["inputs"]
    tensor = inputs["items"]["properties"]
    assert (inputs["minItems"], inputs["maxItems"], tensor["name"], tensor["datatype"]) == (
        1,
        1,
        {"const": "text"},
        {"enum": ["BYTES"]},
    )
    assert tensor["shape"] == {
        "type": "array",
        "minItems": 1,
        "maxItems": 1,
        "prefixItems": [{"type": "integer", "minimum": 1, "maximum": 1024}],  # the rows the server takes (h404 F4)
        "items": {"type": "integer", "minimum": 0},
    }
    status, _, body = http(infer, {"inputs": [{**text, "shape": []}]})
    assert (status, body["field"]) == (400, "inputs[0].shape") and "at least one non-negative int" in body["error"]
    two = {"name": "text", "shape": [2], "datatype": "BYTES", "data": [TEXTS[0], "x" * 10_001]}
    status, _, body = http(infer, {"inputs": [two]})
    assert status == 400 and body["field"] == "body.text" and body["error"].startswith("row 1: "), body
    one = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x" * 10_001]}  # one row: said all the same
    status, _, body = http(infer, {"inputs": [one]})
    assert status == 400 and body["field"] == "body.text" and body["error"].startswith("row 0: "), body
    header = json.dumps({"inputs": [{**text, "parameters": [1]}]}).encode()
    status, _, body = http(infer, raw=header, headers={"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and body["field"] == "inputs[0].parameters", body
    status, _, body = http(infer, raw=header, headers={"Inference-Header-Content-Length": "\u00b2"})
    assert status == 400 and body["field"] == "header.Inference-Header-Content-Length", body
    both = {**text, "data": ["json"], "parameters": {"binary_data_size": 9}}  # the binary bytes won
    header = json.dumps({"inputs": [both]}).encode()
    status, _, body = http(
        infer, raw=header + b"\x05\0\0\0bytes", headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert (status, body["field"]) == (400, "inputs[0].parameters.binary_data_size"), body
    assert "inputs[0] has both 'data' and binary_data_size" in body["error"], body
    # without the header the body is all JSON: a size there was ignored (200 with 'data'), or
    # missing 'data' was all that was said; either way the client forgot the header
    for tensor in (both, {key: value for key, value in both.items() if key != "data"}):
        status, _, body = http(infer, {"inputs": [tensor]})
        assert (status, body["field"]) == (400, "inputs[0].parameters.binary_data_size"), (tensor, body)
        assert "needs the Inference-Header-Content-Length header" in body["error"], body
    # what was taken (200) though malformed: nesting that disagrees with the shape, data that
    # is no list, unknown keys, parameters that are no object; a null element was the route's 'row 0'
    for request, field in (
        ({"inputs": [{**text, "shape": [2], "data": [["a", "b"]]}]}, "inputs[0].data"),
        ({"inputs": [{**text, "data": [["a"], "b"]}]}, "inputs[0].data"),
        ({"inputs": [{**text, "data": "x"}]}, "inputs[0].data"),
        ({"inputs": [text], "extra": 1}, "extra"),
        ({"inputs": [{**text, "shapes": [1]}]}, "inputs[0].shapes"),
        ({"inputs": [text], "parameters": []}, "parameters"),
        ({"inputs": [text], "parameters": "x"}, "parameters"),
        ({"inputs": [{**text, "parameters": "x"}]}, "inputs[0].parameters"),
        ({"inputs": [{**text, "data": [None]}]}, "inputs[0].data[0]"),
        ({"inputs": [{**text, "shape": [2], "data": ["a", 5]}]}, "inputs[0].data[1]"),
        ({"inputs": [text], "outputs": [{"name": "label", "x": 1}]}, "outputs[0].x"),  # as an input's unknown key
        ({"inputs": [text], "outputs": [{"name": "label", "parameters": 1}]}, "outputs[0].parameters"),
        ({"inputs": [text], "outputs": []}, "outputs"),  # ran the model and answered no tensor (h432 F3)
    ):
        status, _, body = http(infer, request)
        assert status == 400 and body["field"] == field, (request, body)
    nested = {**text, "shape": [2], "data": [TEXTS[0], TEXTS[1]]}
    assert http(infer, {"inputs": [nested], "parameters": {}})[0] == 200  # flat data and an empty object pass
    status, _, body = http(gateway.url + "/v2/models/sentiment/versions/9/infer", {"inputs": []})
    assert status == 404 and "serving 1" in body["error"]
    status, _, body = http(gateway.url + "/v2/models/nothing")
    assert status == 404 and "sentiment" in body["error"]


# -- plain JSON routes and OpenAPI ----------------------------------------------------------
def test_every_route_is_plain_json_with_the_wire_errors_as_http_statuses(trained):
    _, gateway = trained
    status, headers, body = http(gateway.url + "/v1/routes/sentiment.predict", {"text": TEXTS[0]})
    assert status == 200 and body["label"] in ("positive", "negative", "neutral")
    assert headers["Heirloom-Model-Version"] == "news/sentiment@1"
    status, _, body = http(gateway.url + "/v1/routes/sentiment.labels", method="POST", raw=b"")
    assert status == 200 and sorted(body["labels"]) == ["negative", "neutral", "positive"]
    status, _, body = http(gateway.url + "/v1/routes/sentiment.predict", {"text": 3})
    assert status == 400 and body["code"] == "INVALID_ARGUMENT" and body["field"] == "body.text"
    status, _, body = http(gateway.url + "/v1/routes/sentiment.predit", {"text": "x"})
    assert status == 404 and body["code"] == "NOT_FOUND" and "sentiment.predict" in body["error"]
    assert body["field"] == "path.route", body  # the URL carries it (the wire's name was header.route)
    # only the headers of a 2 MB body are sent: the refusal comes before the body is read
    host, port = gateway.host.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            b"POST /v1/routes/sentiment.predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2000000\r\n\r\n"
        )
        answer = raw_response(connection)
    assert answer.startswith("HTTP/1.1 413") and "accepts at most 1048576" in answer
    # a chunked body (no Content-Length) is refused once it passes the limit, unfinished: its
    # size is unknown (the bytes read so far were told as the size of a body of 2,000,011)
    size = 1048576 + 1
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            b"POST /v1/routes/sentiment.predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % size + b" " * size + b"\r\n"
        )
        answer = raw_response(connection)
    assert answer.startswith("HTTP/1.1 413") and "the body is over 1048576 bytes, the most" in answer
    status, headers, _ = http(gateway.url + "/v1/routes/sentiment.predict")
    assert status == 405 and headers["Allow"] == "POST"
    for deadline in ("x", "0", "-5", "inf"):
        status, _, body = http(
            gateway.url + "/v1/routes/_ready", method="POST", raw=b"", headers={"Heirloom-Deadline-Ms": deadline}
        )
        assert status == 400 and body["code"] == "INVALID_ARGUMENT", deadline
        assert body["field"] == "header.Heirloom-Deadline-Ms", deadline


def test_a_body_that_is_not_strict_json_is_400_naming_the_body(trained):
    """NaN and Infinity literals and nesting deeper than 1,024 are not JSON the daemon can
    take, nor is nesting past 254 levels (the deepest reply orjson writes; echo answers with
    what it was sent): refused by the gateway as 400s naming the body, never a 500."""
    _, gateway = trained
    predict = gateway.url + "/v1/routes/sentiment.predict"
    not_json = (b'{"text": NaN}', b'{"text": "x", "n": -Infinity}', b'{"text": "' + b"[" * 300 + b'", }')
    for raw in not_json:  # the last: brackets in a string do not nest
        status, _, body = http(predict, method="POST", raw=raw)
        assert status == 400 and body["field"] == "body" and "not JSON" in body["error"], (raw[:20], body)
    too_deep = [b'{"text": ' + b"[" * depth + b"]" * depth + b"}" for depth in (300, 600, 1000, 5000)]
    too_deep += [b"[" * 260, b'{"a": ' * 300, b'{"text": "]]", "x": ' + b"[" * 300]  # the parser gives up on these
    for raw in too_deep:
        status, _, body = http(predict, method="POST", raw=raw)
        assert status == 400 and body["field"] == "body" and "deeper than 254 levels" in body["error"], (raw[:20], body)
    for raw in (b"[" * 200 + b"x", b'{"text": ' + b"[" * 253):  # orjson's words: "failed to allocate memory"
        status, _, body = http(predict, method="POST", raw=raw)
        said = body["error"]
        assert (status, body["field"]) == (400, "body") and said.startswith("the body is not JSON: Expecting"), said
    status, _, body = http(predict, method="POST", raw=b'{"text": "\xff\xfe"}')  # orjson's words: "surrogates"
    assert (status, body["field"]) == (400, "body") and "byte 0xff at offset 10 is not UTF-8" in body["error"], body
    status, _, body = http(predict, method="POST", raw=b'{"text": ' + b"[" * 200 + b"]" * 200 + b"}")
    assert status == 400 and body["field"] == "body.text"  # carried to the daemon, which names the field
    status, _, body = http(gateway.url + "/v1/routes/sentiment.predict", {"text": TEXTS[0]})
    assert status == 200


def test_a_body_holding_a_key_twice_is_400_naming_it(bare):
    """``{"text": "Profit rose", "text": "Profit fell"}`` was served with the last value, where a
    proxy or firewall in front that read the first saw another request. Refused, small bodies
    and large (over 64 KiB, counted before they are searched) alike, and only those."""
    _, gateway = bare
    echo = gateway.url + "/v1/routes/echo.echo"
    pad = "x" * 70_000
    repeated = [
        (b'{"text": "Profit rose", "text": "Profit fell"}', "text"),
        (b'[{"a": 1}, {"b": {"c": 1, "d": 2, "c": 3}}]', "c"),
        (b'{"pad": "%s", "q": {"k": 1, "k": 1}}' % pad.encode(), "k"),
        (b'{"n": 1, "s": "\\u0022:", "n": 2, "pad": "%s"}' % pad.encode(), "n"),  # a quote written as \u0022
    ]
    for raw, key in repeated:
        status, _, body = http(echo, raw=raw)
        assert (status, body["field"]) == (400, "body"), (raw[:40], body)
        assert body["error"].startswith(f"an object of the body holds the key {key!r} more than once"), body
    # the same keys in different objects, and keys written inside strings, are no repeats
    fine = [{"a": [{"x": 1}, {"x": 2}], "s": 'x": 1, "a": "\\"'}, {"s": '":' * 40_000, "t": '\\":' * 20_000, "u": pad}]
    for value in fine:
        status, _, body = http(echo, value)
        assert (status, body) == (200, value)


def test_a_body_of_more_arrays_and_objects_than_a_body_may_hold_is_400_before_it_is_parsed(bare):
    """One client sending, one after another, 880 KB bodies of 40,000 ``[[[[[[[[[[1]]]]]]]]]]`` (under the route's
    1 MiB) held the gateway's event loop some 2 s each: an honest client's p50 went from 2.4 ms to 4.4 s. A body of
    more than 100,000 arrays and objects is refused, counted on its bytes before it is parsed, on a route and on an
    infer alike; one at the limit is served, and brackets inside strings are not counted."""
    _, gateway = bare
    echo = gateway.url + "/v1/routes/echo.echo"
    arrays = b",".join([b"[[[[[[[[[[1]]]]]]]]]]"] * 40_000)
    for url, raw, count in (
        (echo, b'{"x": [' + arrays + b"]}", 400_002),
        (echo, b"[" + b",".join([b"[]"] * 340_000) + b"]", 340_001),
        (gateway.url + "/v2/models/sentiment/infer", b'{"inputs": [], "parameters": {"x": [%s]}}' % arrays, 400_004),
    ):
        status, _, body = http(url, raw=raw)
        assert (status, body["field"]) == (400, "body"), (url, body)
        said = f"the body holds {count:,} arrays and objects; a body holds at most 100,000 (send fewer per request)"
        assert body["error"] == said, body
    for fine in ({"x": [[1]] * 99_998}, {"text": "[{" * 200_000}):  # 100,000 with x and the object; none in a string
        status, _, body = http(echo, fine)
        assert (status, body) == (200, fine)


def test_an_idempotency_key_header_makes_a_retried_feedback_count_once(trained):
    _, gateway = trained
    feedback = gateway.url + "/v1/routes/sentiment.feedback"
    correction = {"text": "Profit rose sharply", "label": "positive"}
    key = {"Idempotency-Key": "retry-me-7f3a"}
    first = http(feedback, correction, headers=key)
    again = http(feedback, correction, headers=key)
    assert first[0] == again[0] == 200 and first[2]["id"] == again[2]["id"]  # recorded once
    assert http(feedback, correction)[2]["id"] != first[2]["id"]  # without a key: a new record
    status, _, body = http(feedback, {**correction, "label": "negative"}, headers=key)
    assert status == 400  # the same key promises the same request
    # named as the header sent, as the gateway's own refusals of it are (it was the wire's header.idempotency_key)
    assert body["field"] == "header.Idempotency-Key", body
    assert body["error"].startswith("Idempotency-Key 'retry-me-7f3a' was already used by this client"), body


def test_requests_for_unknown_names_do_not_each_read_the_route_table(trained):
    """An unknown route or model makes the gateway read ``_routes`` again (a daemon may have
    gained it), but at most once a second: 40 misses cost the daemon a call or two, not 40."""
    daemon, gateway = trained

    def table_reads() -> int:
        with daemon.client(timeout=10) as client:
            return client.call("_stats")["routes"].get("_routes", {}).get("count", 0)

    before = table_reads()
    for i in range(20):
        assert http(gateway.url + f"/v1/routes/nope{i}", {"x": 1})[0] == 404
        assert http(gateway.url + f"/v2/models/nope{i}/infer", {"inputs": []})[0] == 404
    assert table_reads() - before <= 3


def test_a_burst_that_finds_the_route_table_stale_reads_it_once(trained):
    """Each request that found the table stale read it itself: 64 at once after an idle
    spell were 19 ``_routes`` calls. They now await the one read in flight."""
    daemon, gateway = trained

    def table_reads() -> int:
        with daemon.client(timeout=10) as client:
            return client.call("_stats")["routes"].get("_routes", {}).get("count", 0)

    time.sleep(ROUTES_TTL + 0.5)
    before = table_reads()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(http(gateway.url + "/v1/routes")[0])) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 64 and table_reads() - before <= 2


def test_the_gateways_own_404_and_405_are_json_errors(trained):
    _, gateway = trained
    status, _, body = http(gateway.url + "/v3/nothing")
    assert status == 404 and body["code"] == "NOT_FOUND" and "/v3/nothing" in body["error"]
    status, headers, body = http(gateway.url + "/v1/routes/sentiment.predict")
    assert status == 405 and headers["Allow"] == "POST" and "GET is not allowed" in body["error"]
    assert body["code"] == "INVALID_ARGUMENT"
    status, headers, body = http(gateway.url + "/v2/health/live", {"x": 1})
    assert status == 405 and "POST is not allowed" in body["error"] and body["code"] == "INVALID_ARGUMENT"
    assert set(headers["Allow"].split(", ")) == {"GET", "HEAD"}
    for path in ("/v1/routes/", "/v2/health/live/"):  # Starlette answered a 307 to the path without the slash
        status, _, body = http(gateway.url + path, {"x": 1})
        assert status == 404 and body["code"] == "NOT_FOUND", (path, body)


def test_infer_rows_are_one_text_each(trained):
    """``texts`` (the batch form of ``text``) is no OIP input: rows batch already."""
    _, gateway = trained
    status, _, metadata = http(gateway.url + "/v2/models/sentiment")
    assert status == 200 and [i["name"] for i in metadata["inputs"]] == ["text"]
    batch_form = {"name": "texts", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}
    status, _, body = http(gateway.url + "/v2/models/sentiment/infer", {"inputs": [batch_form]})
    assert status == 400 and body["field"] == "inputs[0].name" and "inputs: text" in body["error"]


def test_a_large_infer_tensor_never_fills_the_routes_queue_by_itself(trained, tmp_path):
    """1,000 rows against a queue of 300: sent 256 at a time, every row is answered (all at
    once, most would be refused 429 although the daemon is otherwise idle); past 1,024 rows
    an infer request is refused, so a small body cannot become unbounded work."""
    daemon, _ = trained
    profile = (daemon.log_path.parent / "daemon.toml").read_text() + "\n[server]\nmax_queue = 300\n"
    small_queue = Daemon(tmp_path, profile=profile)
    small_queue.wait_ready(timeout=120)
    gateway = Gateway(tmp_path, small_queue.address)
    try:
        rows = [TEXTS[i % 3] for i in range(1000)]
        tensor = {"name": "text", "shape": [1000], "datatype": "BYTES", "data": rows}
        status, _, body = http(gateway.url + "/v2/models/sentiment/infer", {"inputs": [tensor]})
        assert status == 200, body
        labels = next(o for o in body["outputs"] if o["name"] == "label")
        assert labels["shape"] == [1000] and labels["data"][:3] == labels["data"][3:6]
        many = {"name": "text", "shape": [1025], "datatype": "BYTES", "data": ["a"] * 1025}
        status, _, body = http(gateway.url + "/v2/models/sentiment/infer", {"inputs": [many]})
        assert status == 400 and body["field"] == "inputs[0].shape" and "at most 1024" in body["error"]
    finally:
        assert gateway.stop() == 0
        assert small_queue.terminate() == 0


def test_an_infer_whose_rows_all_fail_for_a_refused_key_says_why_once_naming_no_row(trained, tmp_path):
    """A refused Curve key failed every row with one shared error, to which each row added ``row N: ``:
    ``row 7: row 6: ... row 0: the daemon refused ...``, and 1,024 rows cut the reason off (checker h302 F5).
    The connection's failure is no row's: it names none."""
    daemon, _ = trained
    for folder, name in (("server", "server"), ("clients", "app"), ("strangers", "stranger")):
        assert run_heirloom("keys", "new", str(tmp_path / folder), "--name", name).returncode == 0
    server = tmp_path / "server"
    profile = (daemon.log_path.parent / "daemon.toml").read_text()
    curve = ("--curve-secret", str(server / "server.key_secret"), "--curve-clients", str(tmp_path / "clients"))
    secure = Daemon(tmp_path, *curve, profile=profile, address=free_tcp_address())
    secure.wait_ready(
        timeout=120, curve=heirloom.CurveClient(tmp_path / "clients/app.key_secret", server / "server.key")
    )
    app, stranger = "a-long-token-for-the-app", "a-long-token-for-a-stranger"
    tokens = write(
        tmp_path / "tokens.toml",
        f'[tokens]\n"{app}" = "clients/app.key_secret"\n"{stranger}" = "strangers/stranger.key_secret"\n',
    )
    tokens.chmod(0o600)
    gateway = Gateway(tmp_path, secure.address, "--tokens", str(tokens), "--curve-server", str(server / "server.key"))
    try:  # the route table, read on the app's connection, is kept 5 s: the stranger's rows are sent
        assert http(gateway.url + "/v1/routes", headers={"Authorization": f"Bearer {app}"})[0] == 200
        rows = {"name": "text", "shape": [8], "datatype": "BYTES", "data": (TEXTS * 3)[:8]}
        infer = gateway.url + "/v2/models/sentiment/infer"
        status, _, body = http(infer, {"inputs": [rows]}, headers={"Authorization": f"Bearer {stranger}"})
        said = "the daemon refused this client's Curve key (not in its authorised clients)"
        assert (status, body["code"], body["error"]) == (401, "UNAUTHENTICATED", said), body
    finally:
        assert gateway.stop() == 0
        assert secure.terminate() == 0


@pytest.mark.parametrize(
    "room", ["[server]\nmax_queue = 2\n", '[resources]\nuse = "local"\nmax_in_flight = 2\n'], ids=["queue", "in-flight"]
)
def test_an_infer_request_of_more_rows_than_the_daemon_holds_is_answered(trained, tmp_path, room):
    """40 rows at a daemon that holds 2 requests at once: the gateway sent them all, the daemon
    refused the rows past its room RESOURCE_EXHAUSTED, and the request was 429 on every try
    although the daemon was otherwise idle (OPERATIONS.md's max_in_flight = 256 failed a 256-row
    request whenever anything else was in flight). A refused row waits for a row of the
    gateway's to be answered and is sent again: each request is answered, several at once too."""
    daemon, _ = trained
    small = Daemon(tmp_path, profile=(daemon.log_path.parent / "daemon.toml").read_text() + room)
    small.wait_ready(timeout=120)
    gateway = Gateway(tmp_path, small.address)
    try:
        rows = [TEXTS[i % 3] for i in range(40)]
        tensor = {"name": "text", "shape": [40], "datatype": "BYTES", "data": rows}
        url = gateway.url + "/v2/models/sentiment/infer"
        status, _, body = http(url, {"inputs": [tensor]})
        assert status == 200, body
        labels = next(o for o in body["outputs"] if o["name"] == "label")["data"]
        with small.client() as client:
            alone = [client.call("sentiment.predict", {"text": text})["label"] for text in TEXTS]
        assert labels == alone * 13 + alone[:1]
        answers: list[int] = []  # requests at once share the room: a row waits for any of theirs
        threads = [
            threading.Thread(target=lambda: answers.append(http(url, {"inputs": [tensor]})[0])) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200, 200, 200]
    finally:
        assert gateway.stop() == 0
        assert small.terminate() == 0


def test_the_openapi_document_validates_and_describes_each_route(trained):
    _, gateway = trained
    status, _, document = http(gateway.url + "/openapi.json")
    assert status == 200
    openapi_spec_validator.validate(document)
    predict = document["paths"]["/v1/routes/sentiment.predict"]["post"]
    # the headers a web developer's generated client reads are declared (none were)
    headers = {code: set(answer.get("headers", {})) for code, answer in predict["responses"].items()}
    assert headers["200"] == {"Heirloom-Model-Version"} and headers["429"] == headers["503"] == {"Retry-After"}
    assert headers["415"] == {"Accept-Encoding"} and headers["501"] == set()
    ready = document["paths"]["/v2/health/ready"]["get"]
    assert [parameter["name"] for parameter in ready["parameters"]] == ["Heirloom-Deadline-Ms"]
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"text", "texts"} and schema["additionalProperties"] is False
    assert "max_payload 1048576 bytes" in predict["description"]
    assert {"400", "404", "408", "413", "415", "429", "501", "503", "504"} <= set(predict["responses"])
    metadata = document["paths"]["/v2/models/sentiment"]["get"]["responses"]
    assert "404" in metadata and not {"408", "413", "415", "501"} & set(metadata)  # a GET has no body to refuse
    probe = document["paths"]["/v2/health/ready"]["get"]["responses"]
    assert {"400", "401", "403", "503"} <= set(probe)  # a bad deadline header, no token, a foreign Host
    # statuses every operation is answered were listed on none (431) or not on GET /v2 (400): checker h320 F5
    unlisted = {path for path, ops in document["paths"].items() for op in ops.values() if "431" not in op["responses"]}
    assert not unlisted, unlisted
    assert {"400", "403", "431"} <= set(document["paths"]["/v2"]["get"]["responses"])
    assert http(gateway.url + "/v2", headers={"X-A": "a" * 70_000})[0] == 431
    host, port = gateway.host.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nOrigin: a\r\nOrigin: b\r\n\r\n")
        assert raw_response(connection).startswith("HTTP/1.1 400")
    assert "/v2/models/sentiment/versions/{version}/infer" in document["paths"]
    assert "Idempotency-Key" in {parameter["name"] for parameter in predict["parameters"]}
    infer = document["paths"]["/v2/models/sentiment/infer"]["post"]
    assert f"max_payload {4 * 1048576} bytes" in infer["description"]  # what the gateway accepts
    ready = document["paths"]["/v2/models/sentiment/ready"]["get"]["responses"]["503"]
    assert ready["content"]["application/json"]["schema"]["properties"] == {"ready": {"type": "boolean"}}
    assert "get" in document["paths"]["/v1/routes"]
    # the kernel's routes take no body: the document said any ({}), and {} is a 400
    health = document["paths"]["/v1/routes/_health"]["post"]["requestBody"]
    assert health["content"]["application/json"]["schema"]["type"] == "null" and not health["required"]
    labels = document["paths"]["/v1/routes/sentiment.labels"]["post"]["requestBody"]  # an api's route taking none
    assert labels["content"]["application/json"]["schema"]["type"] == "null" and not labels["required"]
    assert (
        http(gateway.url + "/v1/routes/_health", raw=b"")[0] == http(gateway.url + "/v1/routes/_health", raw=b"null")[0]
    )
    assert http(gateway.url + "/v1/routes/_health", {})[0] == 400
    # a 403 says what refuses it there (it said "an admin route" everywhere, GET /v2 too)
    said = {
        path: next(iter(ops.values()))["responses"]["403"]["description"] for path, ops in document["paths"].items()
    }
    assert "Host" in said["/v2"] and not {"admin", "Sec-Fetch-Site"} & set(said["/v2"].split())
    assert "Sec-Fetch-Site" in said["/v2/models/sentiment/infer"] and "admin" not in said["/v2/models/sentiment/infer"]
    assert "admin" in said["/v1/routes/_reload"] and "admin" not in said["/v1/routes/sentiment.predict"]
    assert "security" not in document and "securitySchemes" not in document["components"]  # no --tokens
    # Heirloom-Model-Version is declared where the gateway sends it: an api's route (it was on every 200)
    versioned = {
        path for path, ops in document["paths"].items() for op in ops.values() if op["responses"]["200"].get("headers")
    }
    assert versioned == {path for path in document["paths"] if re.fullmatch(r"/v1/routes/[^_].*", path)}, versioned
    server = document["paths"]["/v2"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(server["required"]) == {"name", "version", "extensions"}  # was {"type": "object"}
    assert set(http(gateway.url + "/v2")[2]) == set(server["properties"])
    # the deadline header's schema takes what the gateway takes (it was a number: 1e3, a 400)
    deadline = document["paths"]["/v2/health/live"]["get"]["parameters"][0]["schema"]
    for value in ("250", "2.5", "0.5", "007", "0", "0.0", "1e3", ".5", "1.", "1_000", "-5"):
        answered = http(gateway.url + "/v2/health/live", headers={"Heirloom-Deadline-Ms": value})[0]
        assert (answered != 400) == bool(re.search(deadline["pattern"], value)), (value, answered)  # 0.5 ms: 504
    status, headers, page = http(gateway.url + "/docs")
    assert status == 200 and "/v1/routes/sentiment.feedback" in page
    assert page.startswith("<!doctype html><html lang='en'>")  # the page's language (checker 267: WCAG 3.1.1)
    # each form's default is a body its operation takes (the predict form sent {"text": null, "texts": null}: a 400)
    labelled = r'<label for="[^"]+-body">request body \(JSON\)</label><textarea id="[^"]+-body" rows="4" name="body">'
    forms = dict(re.findall(rf'data-path="([^"]+)"[^>]*>{labelled}([^<]*)</textarea>', page))
    # (the feedback form sent "label": "example", a 400: its schema now gives the served model's labels as examples)
    examples = document["paths"]["/v1/routes/sentiment.feedback"]["post"]["requestBody"]["content"]["application/json"]
    assert sorted(examples["schema"]["properties"]["label"]["examples"]) == ["negative", "neutral", "positive"]
    for path in (
        "/v1/routes/sentiment.predict",
        "/v2/models/sentiment/infer",
        "/v1/routes/sentiment.labels",
        "/v1/routes/sentiment.feedback",
    ):
        status, _, body = http(gateway.url + path, raw=html.unescape(forms[path]).encode())
        assert status == 200, (path, forms[path], body)
    # a path's {version} is a field of its form, filled with the served version (the form sent '{version}': a 404)
    field = r'<label>version <input data-param="version" required value="([^"]*)"></label> '
    path = "/v2/models/sentiment/versions/{version}/infer"
    versioned = re.search(rf'data-path="{re.escape(path)}"[^>]*>{field}{labelled}([^<]*)<', page)
    assert versioned and versioned[1] == "1", page[page.find(path) :][:500]
    status, _, body = http(gateway.url + path.format(version=versioned[1]), raw=html.unescape(versioned[2]).encode())
    assert status == 200 and body["model_version"] == "1", body
    assert "<link rel='icon' href='data:,'>" in page  # a browser asks for no /favicon.ico (a 404 on every load)
    # h416 F1, F5: each body has a label, each button names its operation, a reply is announced, headings in order,
    # a phone lays the page out at its own width
    assert page.count("<textarea") == page.count('<label for="') == len(forms) + 1
    assert '<button aria-label="Send POST /v1/routes/sentiment.predict">Send</button>' in page
    assert page.count('role="status" aria-live="polite"') == page.count("<form ") and "<h3" not in page
    assert "<main>" in page and "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    for said in (
        headers,
        http(gateway.url + "/v2/nothing")[1],
        http(gateway.url + "/v1/routes/sentiment.predict", {"text": "up"})[1],
    ):
        assert said["X-Content-Type-Options"] == "nosniff"  # on every reply: pages, JSON, errors
        assert said["Cache-Control"] == "no-store"  # a browser or proxy kept a console's patient record (h460 F1)
    # another site must not frame the page and lay its try-it-out buttons under a user's click
    assert headers["X-Frame-Options"] == "DENY" and headers["Content-Security-Policy"] == "frame-ancestors 'none'"


# -- refusals from a daemon that cannot serve ------------------------------------------------
def test_an_untrained_model_is_503_with_retry_after(bare):
    _, gateway = bare
    status, _, body = http(gateway.url + "/v2/health/ready")
    assert status == 503 and body == {"ready": False}
    status, _, body = http(gateway.url + "/v2/models/sentiment/ready")
    assert status == 503, body
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}
    status, headers, body = http(gateway.url + "/v2/models/sentiment/infer", {"inputs": [tensor]})
    assert status == 503 and body["code"] == "UNAVAILABLE" and headers["Retry-After"] == "5"


def test_a_full_queue_is_429_with_retry_after_and_a_spent_deadline_504(bare):
    daemon, gateway = bare
    answers = []

    def slow():
        answers.append(http(gateway.url + "/v1/routes/t.slow", {"ms": 400}))

    threads = [threading.Thread(target=slow) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert refused and all(h["Retry-After"] and b["code"] == "RESOURCE_EXHAUSTED" for h, b in refused)
    status, _, body = http(gateway.url + "/v1/routes/t.slow", {"ms": 300}, headers={"Heirloom-Deadline-Ms": "50"})
    assert status == 504 and body["code"] == "DEADLINE_EXCEEDED"
    # the gateway stopped waiting: its budget ran out, which says nothing of the daemon (nor where it is)
    assert body["error"].startswith("no reply to t.slow within the request's budget of 50 ms"), body
    assert body["error"].endswith("the request may still run: send a write again only with the same Idempotency-Key")
    assert daemon.address not in body["error"] and "running" not in body["error"], body


def test_a_routes_bytes_reach_json_clients_as_base64(bare):
    """A route answering bytes was a 500 (orjson cannot write bytes)."""
    _, gateway = bare
    status, _, body = http(gateway.url + "/v1/routes/t.bulk", 3)
    assert status == 200 and body == {"$base64": "AAAA"}


#: A request echo answers at once, as a client that pipelines sends it.
ECHO = b'POST /v1/routes/echo.echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n{"a": 1}'


def test_pipelined_requests_are_answered_in_order(bare):
    _, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    requests = [ECHO.replace(b'{"a": 1}', b'{"a": %d}' % i) for i in range(3)]
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"".join(requests))  # all three before any reply
        answers = [raw_response(connection) for _ in requests]
    assert [json.loads(answer.partition("\r\n\r\n")[2]) for answer in answers] == [{"a": 0}, {"a": 1}, {"a": 2}]


def test_a_request_offering_an_h2c_upgrade_keeps_its_body_and_the_next_request_its_place(bare):
    """Java's HttpClient offers HTTP/2 (``Upgrade: h2c``) on every first request: httptools
    skipped such a request's body (the route got none: 400) and read the body as the next
    request ("Invalid HTTP request received.", text/plain). It is HTTP/1.1 like any other."""
    _, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    offer = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    upgrading = ECHO.replace(b"Host: localhost\r\n", b"Host: localhost\r\n" + offer).replace(b'{"a": 1}', b'{"a": 0}')
    with socket.create_connection((host, int(port))) as connection:
        for split in (len(upgrading) - 3, len(upgrading)):  # the body in a later segment, and in one with the headers
            connection.sendall(upgrading[:split])
            time.sleep(0.05)
            connection.sendall(upgrading[split:] + ECHO)
            answers = [raw_response(connection) for _ in range(2)]
            assert [json.loads(answer.partition("\r\n\r\n")[2]) for answer in answers] == [{"a": 0}, {"a": 1}]
    daemon, _ = bare

    def echoed() -> int:
        with daemon.client(timeout=10) as client:
            return client.call("_stats")["routes"]["echo.echo"]["count"]

    # Java sends a streamed body chunked, and offers h2c on every request: the chunks are decoded
    head = upgrading.split(b"Content-Length")[0] + b"Transfer-Encoding: chunked\r\n\r\n"
    chunked = head + b'3;ext=1\r\n{"a\r\n5\r\n": 2}\r\n0\r\nX-Trailer: t\r\n\r\n'
    with socket.create_connection((host, int(port))) as connection:
        for split in (len(head) + 4, len(chunked) - 1):
            connection.sendall(chunked[:split])
            time.sleep(0.05)
            connection.sendall(chunked[split:] + ECHO)
            answers = [raw_response(connection) for _ in range(2)]
            assert [json.loads(answer.partition("\r\n\r\n")[2]) for answer in answers] == [{"a": 2}, {"a": 1}]
    before = echoed()
    refused = (
        (b"GARBAGE\r\n\r\n", "malformed HTTP/1.1 request"),
        # errors raised in uvicorn's own callbacks were named "User callback error"
        (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", "the target example.com:443 is no path (a CONNECT's host:port"),
        # (a URL within the head's 64 KiB, HTTP.md: one past it is the 431 of the next test)
        (b"GET /" + b"a" * 66_000 + b" HTTP/1.1\r\n\r\n", "url length of 66001 bytes exceeds the maximum"),
        (b"CONNECT " + b"h" * 60_000 + b":443 HTTP/1.1\r\n\r\n", "more characters)"),  # not echoed whole
        (head + b"zz\r\n{}\r\n0\r\n\r\n", "malformed chunked body: bad chunk size b'zz'"),
    )
    for tail, said in refused:
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(ECHO + tail)  # the refused request after one to answer, in one segment
            first, refusal = raw_response(connection), raw_response(connection)
        assert json.loads(first.partition("\r\n\r\n")[2]) == {"a": 1}, first  # it was lost to the 400
        head_, _, body = refusal.partition("\r\n\r\n")
        assert head_.startswith("HTTP/1.1 400") and "application/json" in head_, refusal
        assert json.loads(body)["code"] == "INVALID_ARGUMENT" and said in json.loads(body)["error"], body
    assert echoed() - before == len(refused)  # only the requests before them: the malformed chunked one never ran


def test_a_body_in_a_coding_the_gateway_does_not_decode_is_refused_naming_the_header(bare):
    """``Transfer-Encoding: gzip, chunked`` was read as plain chunked: the route got the gzip
    bytes and the client a 400 saying the body is not UTF-8. RFC 9112 6.1: a transfer coding
    the server does not understand is 501; a content coding it does not decode, 415 (RFC 9110).
    The body's framing is known (chunked, or Content-Length) and it arrived whole: the connection serves on."""
    _, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    gzipped = gzip.compress(b'{"a": 0}')
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(gzipped), gzipped)
    head = ECHO.split(b"Content-Length")[0]
    te, ce, h2c = b"Transfer-Encoding: ", b"Content-Encoding: ", b"Upgrade: h2c\r\nConnection: Upgrade\r\n"
    sent = [  # (headers, body, status, the header named, its codings as said)
        (te + b"gzip, chunked", chunks, 501, "Transfer-Encoding", "'gzip, chunked'"),
        (te + b"gzip\r\n" + te + b"chunked", chunks, 501, "Transfer-Encoding", "'gzip, chunked'"),  # one list
        (h2c + te + b"gzip, chunked", chunks, 501, "Transfer-Encoding", "'gzip, chunked'"),  # a body read here
        (ce + b"gzip\r\nContent-Length: %d" % len(gzipped), gzipped, 415, "Content-Encoding", "'gzip'"),
        (ce + b"GZIP\r\n" + te + b"chunked", chunks, 415, "Content-Encoding", "'gzip'"),
    ]
    for headers, body, status, header, said in sent:
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + headers + b"\r\n\r\n" + body + ECHO)
            refusal, after = raw_response(connection), raw_response(connection)
        top, _, error = refusal.partition("\r\n\r\n")
        assert top.startswith(f"HTTP/1.1 {status} ") and "application/json" in top, (headers, refusal)
        assert json.loads(error)["code"] == "INVALID_ARGUMENT" and json.loads(error)["field"] == f"header.{header}"
        assert f"header {header} {said}" in json.loads(error)["error"], error
        assert status == 501 or "accept-encoding: identity" in top.lower(), top
        assert json.loads(after.partition("\r\n\r\n")[2]) == {"a": 1}, after
    plain = b'{"a": 2}'
    for headers, body in (
        (te + b"Chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(plain), plain)),  # a coding's case is no matter
        (ce + b"identity\r\nContent-Length: %d" % len(plain), plain),
    ):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + headers + b"\r\n\r\n" + body)
            assert json.loads(raw_response(connection).partition("\r\n\r\n")[2]) == {"a": 2}
    for path in ("/v2", "/v1/routes", "/openapi.json"):  # no body is read: nothing to refuse (it was a 415)
        status, _, body = http(gateway.url + path, headers={"Content-Encoding": "gzip"})
        assert status == 200, (path, body)
    for coded in (b"gzip", b"chunked, chunked"):  # no chunked last, or twice: the parser's 400 (RFC 9112 6.3)
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + te + coded + b"\r\n\r\n" + chunks)
            top, _, error = raw_response(connection).partition("\r\n\r\n")
        assert top.startswith("HTTP/1.1 400 ") and "Transfer-Encoding" in json.loads(error)["error"], error


def test_a_refusal_sent_before_the_body_arrived_closes_the_connection(bare):
    """After a 413 on a 100 GB Content-Length (or a 404, 405, 415 sent before the body), the connection
    stayed open and the gateway read the body to throw it away, without bound or --timeout (17 GB in
    15 s, other clients' p50 0.6 -> 37 ms: checker h320 F1). The refusal says ``Connection: close`` and
    the connection closes while the client still sends; a body that arrived whole keeps it (above)."""
    _, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    endless = b"Host: localhost\r\nContent-Length: 100000000000\r\n\r\n"
    for head, status in (
        (b"POST /v1/routes/echo.echo HTTP/1.1\r\n" + endless, "413"),
        (b"POST /v1/routes/echo.echo HTTP/1.1\r\nContent-Encoding: gzip\r\n" + endless, "415"),
        (b"PUT /v1/routes/echo.echo HTTP/1.1\r\n" + endless, "405"),
        (b"POST /v3/x HTTP/1.1\r\n" + endless, "404"),
    ):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head + b"[" * 1000)
            answer = raw_response(connection)
            assert answer[9:12] == status and "\r\nconnection: close\r\n" in answer.lower(), answer
            stop, sent = threading.Event(), [0]

            def send(connection=connection, stop=stop, sent=sent) -> None:
                try:
                    while not stop.is_set():
                        sent[0] += connection.send(b"[" * 65536)
                except OSError:  # the gateway closed: a reset
                    pass

            sender = threading.Thread(target=send)
            sender.start()
            connection.settimeout(5)
            try:
                closed = connection.recv(1) == b""
            except ConnectionResetError:
                closed = True
            except TimeoutError:  # still open 5 s on, the body read and thrown away as it came
                closed = False
            finally:
                stop.set()
                sender.join(10)
            assert closed, (status, f"{sent[0]:,} bytes sent after the {status}, the connection still open")
    status, _, body = http(gateway.url + "/v1/routes/echo.echo", {"a": 1})  # others are served meanwhile
    assert (status, body) == (200, {"a": 1})


def test_malformed_requests_are_counted_in_the_log_without_their_bytes(bare, tmp_path):
    """Each malformed request was a plain-text WARNING line carrying up to 1,000 of the
    client's bytes (a token sent to the wrong port), even with --log-format json: 300 bad
    connections, 300 lines. They are now counted in a JSON line at most once a minute."""
    daemon, _ = bare
    gateway = Gateway(tmp_path, daemon.address, "--log-format", "json")
    host, port = gateway.host.split(":")
    try:
        for _ in range(30):
            with socket.create_connection((host, int(port))) as connection:
                connection.sendall(b"CONNECT secret-token-abc:443 HTTP/1.1\r\n\r\n")
                assert raw_response(connection).startswith("HTTP/1.1 400")
    finally:
        assert gateway.stop() == 0
    log = gateway.log_path.read_text()
    assert "secret-token-abc" not in log
    lines = [json.loads(line) for line in log.splitlines() if "malformed" in line]
    assert {(line["logger"], line["level"]) for line in lines} == {("heirloom.gateway", "warning")}, log
    counted = [int(re.search(r"refused (\d+)", line["message"])[1]) for line in lines]
    assert len(counted) == 2 and sum(counted) == 30, log  # the first, then the rest as it stopped (they were lost)


def test_a_header_over_the_protocols_limit_is_400_at_once_not_504_at_the_deadline(bare):
    """An idempotency key of 70,000 characters made a header the daemon refuses unread, so with
    no id to answer: the request waited out the gateway's --timeout (30 s), then 504. The
    gateway now refuses a key over the wire's 256 characters itself, in the header's terms."""
    _, gateway = bare
    began = time.monotonic()
    # (within the 64 KiB of a request's head: past it, a 431 before the gateway reads it, next tests)
    status, _, body = http(gateway.url + "/v1/routes/echo.echo", [1], headers={"Idempotency-Key": "k" * 60_000})
    assert (status, body["field"]) == (400, "header.Idempotency-Key") and "got 60000" in body["error"], body
    assert time.monotonic() - began < 10


def test_an_idempotency_key_header_is_read_as_utf8(bare):
    """The gateway read the header as latin-1: a key of 200 "é" (400 UTF-8 bytes) was 400
    characters, refused as too long, and not the key a ZeroMQ client sends (issue 165)."""
    _, gateway = bare
    write = gateway.url + "/v1/routes/t.write"
    key = {"Idempotency-Key": ("é" * 200).encode()}
    first, again = http(write, None, headers=key, raw=b"null"), http(write, None, headers=key, raw=b"null")
    assert first[0] == again[0] == 200 and first[2] == again[2], (first, again)  # one write, remembered
    status, _, body = http(write, None, headers={"Idempotency-Key": b"k\xff"}, raw=b"null")
    assert (status, body["field"]) == (400, "header.Idempotency-Key") and "not UTF-8" in body["error"], body
    # empty or too long: the wire's words were header.idempotency_key, "...or an integer"
    for key, length in ((b"", 0), (b"k" * 257, 257), ("é".encode() * 257, 257)):
        status, _, body = http(write, None, headers={"Idempotency-Key": key}, raw=b"null")
        assert (status, body["field"]) == (400, "header.Idempotency-Key"), (key, body)
        assert body["error"] == f"header Idempotency-Key must be 1 to 256 characters, got {length}", body


def test_a_header_whose_value_matters_is_refused_when_sent_twice_or_not_in_digits(bare):
    """``Heirloom-Deadline-Ms: 1_000`` was read as 1000 (Python's float() takes underscores,
    exponents, nan), and a header sent twice was read as its first line, where a proxy in front
    may have read the last: each is a 400 naming the header, before anything is forwarded."""
    _, gateway = bare
    for deadline in ("1_000", "1e3", "nan", "0x10", ".5"):
        status, _, body = http(gateway.url + "/v1/routes/echo.echo", 1, headers={"Heirloom-Deadline-Ms": deadline})
        assert (status, body["field"]) == (400, "header.Heirloom-Deadline-Ms"), (deadline, body)
    arabic = "\u0661\u0660\u0660".encode()  # 100 in Arabic-Indic digits: was echoed as latin-1 letters (mojibake)
    status, _, body = http(gateway.url + "/v1/routes/echo.echo", 1, headers={"Heirloom-Deadline-Ms": arabic})
    assert (status, body["field"]) == (400, "header.Heirloom-Deadline-Ms"), body
    assert body["error"].endswith(f"got {arabic!r}, not ASCII") and "\u00d9" not in body["error"], body
    for deadline in ("2500.5", "1" + "0" * 400):  # digits past a float's range: cut to --timeout like any larger
        status, _, body = http(gateway.url + "/v1/routes/echo.echo", 1, headers={"Heirloom-Deadline-Ms": deadline})
        assert (status, body) == (200, 1), deadline
    host, port = gateway.host.rsplit(":", 1)
    for name, first, second in (
        ("Heirloom-Deadline-Ms", "5000", "1"),
        ("Idempotency-Key", "key-b", "key-c"),
        ("Authorization", "Bearer one", "Bearer two"),
    ):
        request = (
            b"POST /v1/routes/echo.echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
            + f"{name}: {first}\r\n{name.lower()}: {second}\r\n\r\n1".encode()
        )
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(request)
            head, _, payload = raw_response(connection).partition("\r\n\r\n")
        body = json.loads(payload)
        assert head.startswith("HTTP/1.1 400") and body["field"] == f"header.{name}", (name, head, body)
        assert body["error"] == f"header {name} is sent 2 times: send it once", body


def test_a_path_that_encodes_a_slash_is_refused_before_routing(bare):
    """``%2F`` was decoded into a separator: ``/v1/routes%2F_reload`` was served as the admin
    route, past a reverse proxy's rule on the path as sent (HTTP.md tells operators to write one)."""
    daemon, gateway = bare
    with daemon.client(timeout=10) as client:
        before = client.call("_stats")["routes"].get("echo.echo", {}).get("count", 0)
    for path in (
        "/v1/routes%2Fecho.echo",
        "/v1/routes/echo%2fecho",
        "/v1%2Froutes/echo.echo",
        "/v2/models/sentiment%2Finfer",
        "/v1/routes%5Cecho.echo",
    ):
        status, _, body = http(gateway.url + path, [1])
        assert (status, body["field"]) == (400, "path") and "encodes a separator" in body["error"], (path, body)
    with daemon.client(timeout=10) as client:
        assert client.call("_stats")["routes"].get("echo.echo", {}).get("count", 0) == before  # none was forwarded
    assert http(gateway.url + "/v1/routes/echo.echo?a=%2F", [2])[:3:2] == (200, [2])  # a query is no path


def test_a_path_of_bytes_that_are_not_utf8_or_a_long_name_is_quoted_as_sent_and_cut(bare):
    """A percent-encoded name that is not UTF-8 was named as U+FFFD ('\ufffd'), which the client never
    sent, and the console's 404 page echoed a 5,000-character name whole where a JSON error cuts it at 80."""
    _, gateway = bare
    for path in ("/v1/routes/%ff%FE", "/console/%ff", "/v2/models/%c3/infer"):
        status, _, body = http(gateway.url + path, {})
        assert (status, body["field"]) == (404, "path"), (path, body)
        sent = path.replace("%ff", "\\xff").replace("%FE", "\\xfe").replace("%c3", "\\xc3")
        assert f"no such path: b'{sent}' is not UTF-8" in body["error"] and "\ufffd" not in body["error"], body
    # a query's too: a console looked up a user '\ufffd' (checker h460 F6)
    status, _, body = http(gateway.url + "/console/recs?user=%FFa&k=3")
    assert (status, body["field"]) == (400, "query.user"), body
    assert body["error"] == "query.user: b'\\xffa' is not UTF-8 (byte 0)", body
    name = "a" * 5000
    status, _, body = http(gateway.url + "/v1/routes/" + name, {})
    assert status == 404 and f"no route '{'a' * 80}...'" in body["error"], body
    status, _, page = http(gateway.url + "/console/" + name)
    assert status == 404 and f"No console for &#x27;{'a' * 80}...&#x27; on this daemon" in page, page[:300]


def test_http_0_9_and_unknown_methods_are_refused_naming_what_was_wrong(bare):
    """A request line without a version (HTTP/0.9) was served, a POST of the admin _reload too; a method HTTP/1.1
    does not define was a 400 "Invalid method encountered" that did not name it (RFC 9110 15.6.2: 501)."""
    _, gateway = bare
    host, port = gateway.host.split(":")
    ok = b"GET /v2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for sent, replies in (
        (b"POST /v1/routes/_reload\r\n\r\n", ["400"]),
        (b"GET /v2\r\n\r\n", ["400"]),
        (b"BREW /v2 HTTP/1.1\r\nHost: localhost\r\n\r\n", ["501"]),
        (
            ok + b"POST /v1/routes/echo.echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n[1]XYZZY / HTTP/1.1\r\n\r\n" + ok,
            ["200", "200", "501"],
        ),
    ):
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(sent)
            answers = [raw_response(connection) for _ in replies]
            assert connection.recv(1) == b"", answers  # the connection closes after the refusal
        assert [answer[9:12] for answer in answers] == replies, answers
        refused = json.loads(answers[-1].split("\r\n\r\n", 1)[1])
        if replies[-1] == "400":
            assert refused["error"].startswith("malformed HTTP/1.1 request: HTTP/0.9"), refused
        else:
            method = "BREW" if sent.startswith(b"BREW") else "XYZZY"
            assert refused == {
                "error": f"method '{method}' is not one HTTP/1.1 defines",
                "code": "INVALID_ARGUMENT",
                "retryable": False,
                "field": "method",
            }
    with socket.create_connection((host, int(port))) as connection:  # a version, not HTTP/0.9's none (h302 F4)
        connection.sendall(b"GET /v2 HTTP/2.0\r\nHost: localhost\r\n\r\n")
        answer = raw_response(connection)
    said = "malformed HTTP/1.1 request: HTTP/2.0 in the request line: the gateway speaks HTTP/1.1 (and HTTP/1.0)"
    assert answer.startswith("HTTP/1.1 400") and json.loads(answer.split("\r\n\r\n", 1)[1])["error"] == said, answer
    with socket.create_connection((host, int(port))) as connection:  # HTTP/2's preface: llhttp's words (h460 F4)
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        answer = raw_response(connection)
    said = "malformed HTTP/1.1 request: HTTP/2's connection preface (PRI * HTTP/2.0): the gateway speaks HTTP/1.1"
    assert answer.startswith("HTTP/1.1 400") and said in answer, answer
    with socket.create_connection((host, int(port))) as connection:  # RFC 9110's asterisk form: no path "/*" (F5)
        connection.sendall(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = raw_response(connection)
    assert answer.startswith("HTTP/1.1 405") and "OPTIONS is not allowed on *" in answer, answer
    with socket.create_connection((host, int(port))) as connection:  # OPTIONS's alone (v44 F10): a 405 allowed GET
        connection.sendall(b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = raw_response(connection)
    assert answer.startswith("HTTP/1.1 400") and "the request target * is OPTIONS's alone, not GET's" in answer, answer


def test_a_one_line_http_0_9_request_is_refused_at_once(bare):
    """HTTP/0.9's request is its line alone (RFC 1945 4.1): ``GET /v2`` CRLF was never answered, the
    parser waiting for headers that never came (checker h320 F4); a 400 at once now, as with a blank line."""
    _, gateway = bare
    host, port = gateway.host.split(":")
    ok = b"GET /v2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for before, sent in (
        (b"", [b"GET /v2\r\n"]),
        (b"", [b"\r\nPOST /v1/routes/_reload\r\n"]),
        (b"", [b"GET /v2\n"]),
        (b"", [b"GET /v", b"2\r\n"]),  # the line in two sends
        (ok, [b"GET /v2\r\n"]),  # after a request answered on the connection
    ):
        with socket.create_connection((host, int(port))) as connection:
            if before:
                connection.sendall(before)
                assert raw_response(connection).startswith("HTTP/1.1 200"), before
            for part in sent:
                connection.sendall(part)
                time.sleep(0.1)
            connection.settimeout(5)
            try:
                answer = connection.recv(4096).decode()
            except TimeoutError:
                answer = "no reply in 5 s"
            assert answer.startswith("HTTP/1.1 400"), (sent, answer)
            error = json.loads(answer.split("\r\n\r\n", 1)[1])["error"]
            assert error.startswith("malformed HTTP/1.1 request: HTTP/0.9 (a request line without a version)"), error
            assert connection.recv(1) == b""


def test_a_client_that_pipelines_and_hangs_up_leaves_no_traceback(bare):
    """With a request queued behind the one being answered, uvicorn told only the queued one
    that its client hung up: the reply of the one being answered was written to the closed
    connection, a 16-line 'Exception in ASGI application' traceback per such client."""
    daemon, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    slow = b'{"ms": 300}'
    answered = b"POST /v1/routes/t.slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n" + slow
    before = gateway.log_path.read_text().count("Traceback")
    with daemon.client(timeout=10) as client:
        done = client.call("_stats")["routes"].get("t.slow", {}).get("count", 0)
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(answered + ECHO)  # the echo is parsed and queued behind the slow one
            while client.call("_stats")["in_flight"] == 0:  # the slow one reached the daemon
                time.sleep(0.01)
        while client.call("_stats")["routes"]["t.slow"]["count"] == done:  # its reply went to the gateway
            time.sleep(0.01)
    # an answer through the gateway's connection to the daemon, behind the slow one's reply
    status, _, body = http(gateway.url + "/v1/routes/echo.echo", [7])
    assert (status, body) == (200, [7])
    assert gateway.log_path.read_text().count("Traceback") == before, gateway.log_path.read_text()


def test_a_pipelining_client_that_reads_no_replies_meets_flow_control(bare):
    """uvicorn parsed and queued every pipelined request it read, reading on after each reply:
    a client that sent requests and never read the replies grew the gateway by a parsed request
    per request sent (2.5 KB per 100 bytes). The gateway parses a connection's next request
    only once the one before is answered, and reads no further meanwhile: once the replies fill
    the connection, it stops answering, then reading, and the client's sends stall with what it
    sent beyond the requests answered in TCP's buffers and one read of the gateway's."""
    daemon, gateway = bare

    def forwarded() -> int:
        with daemon.client(timeout=10) as client:
            return client.call("_stats")["routes"]["echo.echo"]["count"]

    before = forwarded()
    host, port = gateway.host.rsplit(":", 1)
    payload = memoryview(ECHO * (8_000_000 // len(ECHO)))
    sent = 0
    with socket.socket() as connection:
        for buffer in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # small, so that TCP's share is small too
            connection.setsockopt(socket.SOL_SOCKET, buffer, 4096)
        connection.connect((host, int(port)))
        connection.setblocking(False)
        progress = time.monotonic()
        while sent < len(payload) and time.monotonic() - progress < 1.0:
            try:
                sent += connection.send(payload[sent : sent + 65536])
                progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        unanswered = sent // len(ECHO) - (forwarded() - before)
    # without the bound: 6.7 MB of the 8 sent past what was answered, parsed and held (~250 MB)
    assert unanswered * len(ECHO) < 3_000_000, (sent, unanswered)


def test_a_request_head_over_64_kib_is_431_and_the_gateway_answers_others_meanwhile(bare):
    """httptools joins a header's value anew on each 4 KiB piece the gateway fed it: a 24 MB
    header, token or none, held the event loop for a minute (every other client waiting), and
    unfinished ones held what they sent. A head (or a chunked body's trailer) past 64 KiB is
    now a 431 naming ``header``, and the connection closes, nothing more parsed."""
    daemon, gateway = bare
    host, port = gateway.host.rsplit(":", 1)
    head = b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nX-Big: "
    chunked = b"POST /v1/routes/echo.echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    sends = {
        "a 1 MB header": [head + b"a" * (1 << 20) + b"\r\n\r\n"],
        "an unfinished one": [head] + [b"a" * 16384] * 64,  # never ends: the refusal is not at its end
        "a 1 MB trailer": [chunked + b"3\r\n[1]\r\n0\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"],
        "an 80 KB URL": [b"GET /" + b"a" * 80_000 + b" HTTP/1.1\r\n\r\n"],
        "a 68 KiB head": [head + b"a" * (69_632 - len(head) - 4) + b"\r\n\r\n"],  # 73,665 bytes were read
    }
    answers: dict[str, str] = {}

    def send(name: str) -> None:
        with socket.create_connection((host, int(port))) as connection:
            try:
                for data in sends[name]:
                    connection.sendall(data)
            except OSError:  # the gateway closed the connection before the client was done sending
                pass
            answers[name] = raw_response(connection)

    for name in sends:
        sender = threading.Thread(target=send, args=(name,))
        sender.start()
        # another client, on another connection: answered
        assert http(gateway.url + "/v1/routes/echo.echo", [name])[:3:2] == (200, [name])
        sender.join(60)
        head_, _, body = answers[name].partition("\r\n\r\n")
        assert head_.startswith("HTTP/1.1 431 ") and "connection: close" in head_, (name, answers[name][:300])
        said = json.loads(body)
        assert (said["code"], said["field"]) == ("INVALID_ARGUMENT", "header"), said
        assert (
            "header fields (request line and headers, or a chunked body's chunk line or trailer) are over 65536 bytes"
            in said["error"]
        )
    # a head within the limit is read whole, as before, 64 KiB to the byte
    status, _, body = http(gateway.url + "/v1/routes/echo.echo", [1], headers={"X-Big": "a" * 60_000})
    assert (status, body) == (200, [1])
    closing = b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: "
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(closing + b"a" * (65_536 - len(closing) - 4) + b"\r\n\r\n")
        assert raw_response(connection).startswith("HTTP/1.1 200 ")
    with daemon.client(timeout=10) as client:
        assert client.call("_health")["live"]


def test_hook_heirloom_register_consoles(bare):
    """A third-party plugin's console is served for every api with the routes it needs."""
    _, gateway = bare
    status, _, page = http(gateway.url + "/console")
    assert status == 200 and "/console/echo" in page and "Echo" in page
    assert "<thead><tr><th>api</th><th>console</th>" in page and "content='width=device-width" in page  # h416 F5, F7
    status, _, page = http(gateway.url + "/console/echo?say=hi%3Cb%3E")
    assert status == 200 and "{&#x27;said&#x27;: &#x27;hi&lt;b&gt;&#x27;}" in page
    status, _, page = http(gateway.url + "/console/t")
    assert status == 404 and "<h1>No console</h1><p class='error'>No console for &#x27;t&#x27; on this daemon." in page
    # the name is shown as the JSON errors quote it: ESC and U+202E (which reversed the line) escaped
    status, _, page = http(gateway.url + "/console/%1b%5b2J%e2%80%aetxt%3Cb%3E")
    assert status == 404 and "No console for &#x27;\\x1b[2J\\u202etxt&lt;b&gt;&#x27; on this" in page, page
    assert "\x1b" not in page and "\u202e" not in page
    # a parameter sent twice was read as its last value, where a key or header twice is refused
    status, _, body = http(gateway.url + "/console/echo?say=a&say=b")
    assert (status, body["field"]) == (400, "query.say"), body
    assert body["error"].startswith("query parameter 'say' is sent 2 times: send it once"), body


def test_with_tokens_every_call_needs_a_known_bearer_token(bare, tmp_path):
    daemon, _ = bare
    keys = run_heirloom("keys", "new", str(tmp_path / "keys"), "--name", "clinic")
    assert keys.returncode == 0, keys.stderr
    token = "a-long-token-for-the-clinic-app"
    tokens = write(tmp_path / "tokens.toml", f'[tokens]\n"{token}" = "keys/clinic.key_secret"\n')
    tokens.chmod(0o600)
    gateway = Gateway(tmp_path, daemon.address, "--tokens", str(tokens))
    try:
        status, headers, body = http(gateway.url + "/v1/routes/echo.echo", {"a": 1})
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and "Bearer" in body["error"]
        status, _, body = http(
            gateway.url + "/v1/routes/echo.echo", {"a": 1}, headers={"Authorization": "Bearer " + "x" * 20}
        )
        assert status == 401 and body["error"] == "unknown bearer token"
        guesses = "refused 1 request(s) with an unknown bearer token in the last"  # said (checker 272), not the token
        assert guesses in gateway.log_path.read_text() and "x" * 20 not in gateway.log_path.read_text()
        status, _, body = http(
            gateway.url + "/v1/routes/echo.echo", {"a": 1}, headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and body == {"a": 1}
        # the token is checked before a name is looked up (HTTP.md): no probing the names without one
        assert http(gateway.url + "/v1/routes/nope.nothing", {"a": 1})[0] == 401
        assert http(gateway.url + "/v2/models/nomodel")[0] == 401
        assert http(gateway.url + "/v3/nothing")[0] == 404 and http(gateway.url + "/v1/routes/echo.echo")[0] == 405
        status, _, document = http(gateway.url + "/openapi.json")
        assert status == 200 and document["security"] == [{"bearer": []}]  # generated clients send the token
        assert document["paths"]["/v2"]["get"]["security"] == []  # the server's metadata needs none
        openapi_spec_validator.validate(document)
    finally:
        assert gateway.stop() == 0


@pytest.mark.parametrize(
    ("token", "key", "said"),
    [
        ("short", "missing.key_secret", "a token must be at least 16 characters"),
        (" a-long-token-with-a-space", "missing.key_secret", "a token holds only ASCII letters"),  # never matched
        ("a-long-token-with-é", "missing.key_secret", "a token holds only ASCII letters"),
        ("keys/app-key-file-name", "s3cr3tBearerTokenXYZ0123", "its key file does not exist"),  # columns swapped
        ("a-long-token-for-a-fifo", "fifo.key_secret", "its key file is a FIFO, not a regular file"),  # was "does not"
        ("a-long-token-for-a-folder", ".", "its key file is a directory, not a file"),
        ("a-long-token-for-a-nul-path", r"gk/\u0000x", "its key file's path holds a NUL character"),  # was a traceback
        ("a-long-token-for-a-long-path", "a" * 5000, "its key file cannot be looked up (File name too long)"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_file_and_never_the_token(tmp_path, token, key, said):
    os.mkfifo(tmp_path / "fifo.key_secret")
    tokens = write(tmp_path / "tokens.toml", f'[tokens]\n"{token}" = "{key}"\n')
    tokens.chmod(0o600)
    result = run_heirloom("gateway", "--connect", "ipc:///nowhere", "--tokens", str(tokens))
    assert result.returncode == 1 and f"{tokens}: token 1 of [tokens]: {said}" in result.stderr
    assert token.strip()[:4] not in result.stderr and "s3cr3t" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\xff\xfe[tokens]\n", "the tokens file is not UTF-8 text (byte 0)"),  # was a UnicodeDecodeError traceback
        (b'[tokens]\n"a-long-token-for-the-clinic" = 5\n', "its value must be its key file's path"),
        (None, "the tokens file is a FIFO, not a regular file"),  # was a gateway that never answered
        (b"a = " + b"[" * 2000 + b"]" * 2000, "nested more than 32 levels deep"),  # was a RecursionError traceback
        (b"[tokens]\n" + b"#" * (1 << 20), "the tokens file is over 1,048,576 bytes"),
        # checker v5 F2: tomllib's "Cannot redefine namespace ('tokens', 'TOPSECRET...')" printed the token
        (b"[tokens.TOPSECRETIIIIIIII]\nx = 1\n[tokens]\nTOPSECRETIIIIIIII.y = 2\n", "declared twice (by a [table]"),
        (b"[tokens]\nTOPSECRETHHHHHHHH = [1]\n[[tokens.TOPSECRETHHHHHHHH]]\n", "set twice (an array or inline table"),
        (b'[tokens]\nx = {TOPSECRETJJJJJJJJ = "a", TOPSECRETJJJJJJJJ = "b"}\n', "set twice in an inline table"),
    ],
)
def test_a_tokens_file_that_is_no_utf8_toml_file_is_one_line_naming_it(tmp_path, content, said):
    tokens = tmp_path / "tokens.toml"
    if content is None:
        os.mkfifo(tokens, 0o600)
    else:
        tokens.write_bytes(content)
        tokens.chmod(0o600)
    result = run_heirloom("gateway", "--connect", "ipc:///nowhere", "--port", "0", "--tokens", str(tokens), timeout=30)
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {tokens}: ") and said in result.stderr
    assert (
        "Traceback" not in result.stderr
        and "does not exist" not in result.stderr
        and "TOPSECRET" not in (result.stderr)
    )


def test_serve_and_the_gateway_warn_when_they_listen_beyond_loopback_for_anyone(tmp_path):
    """``serve --bind tcp://0.0.0.0:PORT`` without Curve and ``gateway --host 0.0.0.0`` without
    --tokens started in silence, though whoever reaches them may call _reload (PROTOCOL.md and
    HTTP.md said to keep such a daemon or gateway on loopback): each now says so, once."""
    said = "without Curve: whoever reaches it can call every route, admin ones (_reload) too"
    daemons = [Daemon(tmp_path / name, address=f"tcp://{host}:{free_port()}") for name, host in
               (("open", "0.0.0.0"), ("loopback", "127.0.0.1"))]  # fmt: skip
    gateways = []
    try:
        for daemon in daemons:
            daemon.wait_ready()
        assert daemons[0].log().count(f"listening on {daemons[0].address} {said}") == 1, daemons[0].log()
        assert said not in daemons[1].log(), daemons[1].log()
        for host in ("0.0.0.0", "127.0.0.1"):
            gateways.append(Gateway(tmp_path, daemons[1].address, "--host", host))
        open_, loopback = (gateway.log_path.read_text() for gateway in gateways)
        port = gateways[0].host.rsplit(":", 1)[1]
        warned = (
            f"listening on 0.0.0.0 without --tokens: whoever reaches port {port} can call every route of the daemon"
        )
        assert open_.count(warned) == 1 and "without --tokens" not in loopback, (open_, loopback)
    finally:
        for gateway in gateways:
            assert gateway.stop() == 0
        for daemon in daemons:
            assert daemon.terminate() == 0


def test_the_gateway_starts_on_no_tokens_others_can_read_nor_on_a_key_that_is_none(tmp_path):
    """Tokens are secrets (a world-readable file hands them to every user of the host), and a
    token whose key file is broken would fail its first caller rather than the operator's start."""
    keys = run_heirloom("keys", "new", str(tmp_path / "keys"), "--name", "server")
    assert keys.returncode == 0, keys.stderr
    write(tmp_path / "keys" / "app.key_secret", "not a key\n")
    tokens = write(tmp_path / "tokens.toml", '[tokens]\n"a-long-token-for-the-app" = "keys/app.key_secret"\n')
    tokens.chmod(0o644)
    command = ("gateway", "--connect", "ipc:///nowhere", "--tokens", str(tokens))
    result = run_heirloom(*command)
    assert result.returncode == 1, result.stderr
    assert f"{tokens}: other users may read or change its tokens (mode 644): chmod 600" in result.stderr
    tokens.chmod(0o640)
    result = run_heirloom(*command, "--curve-server-key", str(tmp_path / "keys" / "server.key"))
    assert result.returncode == 1 and "app.key_secret" in result.stderr and "Traceback" not in result.stderr
    # a token naming a public .key (mode 644, as keys new makes it): the error, not a warning to chmod 600 it first
    write(tmp_path / "tokens.toml", '[tokens]\n"a-long-token-for-the-app" = "keys/server.key"\n')
    result = run_heirloom(*command, "--curve-server", str(tmp_path / "keys" / "server.key"))
    assert result.returncode == 1 and "server.key holds no secret key (pass the .key_secret" in result.stderr, result
    assert "chmod 600" not in result.stderr, result.stderr


@pytest.mark.skipif(not Path("/sys/class/net/lo").exists(), reason="Linux names its loopback interface lo")
def test_serve_bound_to_the_loopback_interface_by_name_is_not_warned_of_as_open(caplog):
    """h423 F4: ``--bind tcp://lo:PORT`` listens on 127.0.0.1 alone, and was warned of as open to the network."""
    from heirloom.wire.daemon import warn_open

    with caplog.at_level(logging.WARNING, logger="heirloom"):
        warn_open(["tcp://lo:5555", "tcp://127.0.0.1:5556", "tcp://eth-not-there:5557"])
    assert [record.getMessage().split(" without")[0] for record in caplog.records] == [
        "listening on tcp://eth-not-there:5557"
    ]


@pytest.mark.skipif(not socket.has_ipv6 or not Path("/proc/net/if_inet6").read_text().strip(), reason="no IPv6")
def test_a_daemon_binds_and_clients_reach_an_ipv6_address_in_brackets(tmp_path):
    """v31 F4: ``--bind tcp://[::1]:PORT`` (SCALE.md writes IPv6 so) was refused, exit 2: "its host names no interface
    of this host"; ZeroMQ sockets are IPv4 only unless told."""
    daemon = Daemon(tmp_path, address=f"tcp://[::1]:{free_port()}")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            assert client.call("echo.echo", "six") == "six"
        called = run_heirloom("call", "--connect", daemon.address, "echo.echo", '"cli"')
        assert called.returncode == 0 and "cli" in called.stdout, called.stderr
        assert "without Curve" not in daemon.log()  # ::1 is loopback
    finally:
        assert daemon.terminate() == 0


def test_a_loopback_gateway_answers_only_loopback_host_names(tmp_path):
    """DNS rebinding: a page whose own name now resolves to 127.0.0.1 is same-origin to the
    browser (no Origin check can tell), but its requests carry that name as Host."""
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    gateway = Gateway(tmp_path, daemon.address)
    proxied = Gateway(tmp_path, daemon.address, "--allow-host", "API.example.com.")  # normalised: any case, final dot
    port = gateway.url.rsplit(":", 1)[1]
    try:
        for name in (
            "rebound.example",
            "127.0.0.1.rebound.example",
            "a@localhost",
            "localhost:80/x",
            "localhost:99999",
        ):
            status, _, body = http(gateway.url + "/v1/routes/echo.echo", [1], headers={"Host": f"{name}:{port}"})
            assert status == 403 and body["code"] == "PERMISSION_DENIED" and name in body["error"], body
            assert body["field"] == "header.Host", body
            status, _, _ = http(gateway.url + "/v2/health/ready", headers={"Host": name})
            assert status == 403  # reads too: a rebound page could read the daemon's routes and stats
        for name in ("localhost", "127.0.0.1", "[::1]", "LocalHost"):
            status, _, body = http(gateway.url + "/v1/routes/echo.echo", [1], headers={"Host": f"{name}:{port}"})
            assert (status, body) == (200, [1]), name
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:  # two Host headers
            raw.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nHost: rebound.example\r\n\r\n")
            assert raw.recv(4096).startswith(b"HTTP/1.1 403")
        for target, answer in (("rebound.example", "403"), (f"localhost:{port}", "200")):
            with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:  # absolute form: was 200
                raw.sendall(f"GET http://{target}/v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                reply = raw_response(raw)  # RFC 9112 3.2.2: the target's authority is the host, not Host
            assert reply.startswith(f"HTTP/1.1 {answer}") and (answer == "200" or target in reply), reply
        for target in (f"localhost:{port}", f"localhost:{port}?x=1"):  # an empty path is "/" (checker h397 F2)
            with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:  # was 400 "callback error"
                raw.sendall(f"GET http://{target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                reply = raw_response(raw)
            assert not reply.startswith("HTTP/1.1 400") and "User callback error" not in reply, reply
        status, _, body = http(proxied.url + "/v1/routes/echo.echo", [2], headers={"Host": "api.example.com"})
        assert (status, body) == (200, [2])
        assert http(proxied.url + "/v2/health/ready", headers={"Host": "rebound.example"})[0] == 403
        for never in ("api.example.com:443", "*.example.com", "https://api.example.com"):  # could match no Host
            refused = run_heirloom("gateway", "--connect", daemon.address, "--allow-host", never)
            assert refused.returncode == 2 and "is not a host name" in refused.stderr, never
    finally:
        assert gateway.stop() == 0
        assert proxied.stop() == 0
        assert daemon.terminate() == 0


def test_gateway_profile_serves_the_daemon_in_its_own_process_and_stops_it(tmp_path):
    """With PROFILE the daemon runs in the gateway's process, on its event loop (reached
    over inproc://, docs/HTTP.md): its _health names the gateway's pid; SIGTERM drains it,
    stops its components and exits 0."""
    process, port = gateway_process(tmp_path, "minimal", stderr=subprocess.PIPE)
    try:
        status, _, body = http(f"http://127.0.0.1:{port}/v1/routes/echo.echo", {"hello": "world"})
        assert status == 200 and body == {"hello": "world"}
        status, _, health = http(f"http://127.0.0.1:{port}/v1/routes/_health", method="POST", raw=b"null")
        assert status == 200 and health["pid"] == process.pid
    finally:
        process.terminate()
        assert process.wait(30) == 0
    log = process.stderr.read().decode()
    assert "heirloom.core.system: stopped apis.echo" in log and "heirloom.wire.daemon: stopped" in log


def test_sigterm_stops_the_gateway_within_timeout_although_a_client_never_ends_its_body(tmp_path):
    """A client that holds an unfinished chunked body kept the gateway from ever exiting:
    after a stop signal, a request gets --timeout more at most, then the gateway drains
    its daemon and exits 0."""
    process, port = gateway_process(tmp_path, "minimal", "--timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", port)) as held:
            held.sendall(
                b'POST /v1/routes/echo.echo HTTP/1.1\r\nHost: [::1]\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"tex\r\n'
            )
            time.sleep(0.3)
            process.terminate()
            assert process.wait(15) == 0  # while the body is still unfinished
    finally:
        process.kill()


def test_a_body_that_trickles_past_the_timeout_is_refused_408(tmp_path):
    """A client sending its body a byte at a time held a connection and a buffer for ever."""
    process, port = gateway_process(tmp_path, "minimal", "--timeout", "1")
    try:
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"POST /v1/routes/echo.echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n[")
            started = time.monotonic()
            reply = raw_response(slow)
            slow.settimeout(10)
            try:  # a 408 ends the connection (RFC 9110 15.5.9): it stayed open, the rest of the body read as it came
                closed = slow.recv(1) == b""
            except TimeoutError:
                closed = False
        assert reply.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in reply, reply
        assert "\r\nconnection: close\r\n" in reply.lower() and closed, reply
        assert time.monotonic() - started < 10
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_requests_deadline_holds_while_the_route_table_is_read_again(tmp_path):
    """The table (older than 5 s) was re-read with a fixed 5 s budget, whatever the request's."""
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    gateway = Gateway(tmp_path, daemon.address)
    echo = gateway.url + "/v1/routes/echo.echo"
    try:
        assert http(echo, [1])[:3:2] == (200, [1])  # the table is read
        time.sleep(ROUTES_TTL + 0.5)
        os.kill(daemon.process.pid, signal.SIGSTOP)  # a daemon that answers nothing, the table stale
        status, _, body = http(echo, [2], headers={"Heirloom-Deadline-Ms": "1000"})
        assert status == 504 and "budget of 1000 ms" in body["error"] and daemon.address not in body["error"], body
        assert body["error"].startswith("no reply to the daemon's route table within"), body  # not "_routes"
        began = time.monotonic()
        status, _, body = http(gateway.url + "/v1/routes", headers={"Heirloom-Deadline-Ms": "500"})
        assert status == 504 and time.monotonic() - began < 3, body  # the request's budget, not a fixed 5 s
        status, _, body = http(gateway.url + "/v2/health/ready", headers={"Heirloom-Deadline-Ms": "500"})
        assert (status, body) == (503, {"ready": False})  # a silent daemon is not ready; not a gateway timeout
        # a model's readiness, with the table stale and no daemon to read it again from: it was a 504
        status, _, body = http(gateway.url + "/v2/models/echo/ready", headers={"Heirloom-Deadline-Ms": "500"})
        assert (status, body) == (503, {"name": "echo", "ready": False})
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
        stopped = gateway.stop()
        assert (stopped, daemon.terminate()) == (0, 0)  # both stopped, whatever failed above


def test_the_pages_that_read_the_route_table_keep_the_requests_deadline(tmp_path):
    """/openapi.json, /docs and /console read the table with a fixed 5 s budget, whatever
    --timeout or Heirloom-Deadline-Ms said, and took a malformed header."""
    silent = socket.socket()  # a daemon that never answers: an address nothing serves
    silent.bind(("127.0.0.1", 0))
    gateway = Gateway(tmp_path, f"tcp://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "2")
    try:
        for path, deadline, budget in (("/openapi.json", None, 2000), ("/docs", "300", 300), ("/console", "300", 300)):
            began = time.monotonic()
            status, _, body = http(gateway.url + path, headers={"Heirloom-Deadline-Ms": deadline} if deadline else {})
            took = time.monotonic() - began
            assert status == 504 and f"budget of {budget} ms" in body["error"] and took < budget / 1000 + 1, body
        status, _, body = http(gateway.url + "/openapi.json", headers={"Heirloom-Deadline-Ms": "abc"})
        assert status == 400 and body["field"] == "header.Heirloom-Deadline-Ms", body
        # a request that joins a read begun by another waits its own budget, not the first one's
        first = threading.Thread(target=http, args=(gateway.url + "/openapi.json",))
        first.start()
        time.sleep(1)
        began = time.monotonic()
        status, _, body = http(gateway.url + "/openapi.json")  # it was answered when the first read gave up, at 1 s
        took = time.monotonic() - began
        first.join()
        assert status == 504 and "budget of 2000 ms" in body["error"] and took > 1.8, (took, body)
    finally:
        silent.close()
        assert gateway.stop() == 0


def test_a_child_daemon_is_serving_its_routes_before_the_gateway_listens(tmp_path):
    """--separate-daemon: the gateway waits for the child's routes, as for a daemon in its
    own process, so its first request is answered, not refused as too early (503)."""
    profile = write(tmp_path / "p.toml", '[apis.echo]\nuse = "echo"\n[apis.t]\nuse = "testing"\nstart_ms = 2000\n')
    port = free_port()
    process = subprocess.Popen(
        [*HEIRLOOM, "gateway", str(profile), "--port", str(port), "--separate-daemon"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_PLUGINS": "tests.testing_api"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the first moment the port takes a connection
            assert process.poll() is None and time.monotonic() < deadline
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        status, _, body = http(f"http://127.0.0.1:{port}/v1/routes/echo.echo", {"first": True})
        assert (status, body) == (200, {"first": True}), body
    finally:
        process.terminate()
        assert process.wait(30) == 0


SLOW_PLUGIN = quiet_api_plugin(
    'if os.environ.get("SLOW_PLUGIN_MARKER"):\n'
    '    pathlib.Path(os.environ["SLOW_PLUGIN_MARKER"]).touch()\n'
    "    time.sleep(5)\n"
)


def test_sigterm_while_a_plugin_imports_stops_the_gateway_with_0(tmp_path):
    """A SIGTERM that lands while the profile's plugin imports (a slow import: torch,
    transformers) reaches the import as SystemExit, which the kernel takes for that
    plugin's failure: the gateway must still stop with 0, not fail on the plugin. Its port
    is held from before the import: no other process can take it while the daemon loads."""
    write(tmp_path / "slow_plugin.py", SLOW_PLUGIN)
    profile = write(tmp_path / "p.toml", '[apis.echo]\nuse = "echo"\n[apis.quiet]\nuse = "quiet"\n')
    marker = tmp_path / "importing"
    env = {
        **os.environ,
        "HEIRLOOM_HOME": str(tmp_path / "home"),
        "HEIRLOOM_PLUGINS": "slow_plugin",
        "PYTHONPATH": pythonpath(tmp_path),
    }
    (tmp_path / "home").mkdir()  # the catalog's cache is written only in a home that exists (checker 305 F13)
    run_heirloom("plugins", env=env)  # what each plugin provides is now known: the next run imports on demand
    process = subprocess.Popen(
        [*HEIRLOOM, "gateway", str(profile), "--port", str(port := free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**env, "SLOW_PLUGIN_MARKER": str(marker)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.02)
        with socket.socket() as rival, pytest.raises(OSError) as taken:  # the port is the gateway's from the start
            rival.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rival.bind(("127.0.0.1", port))
            rival.listen()
        assert taken.value.errno == errno.EADDRINUSE
        process.terminate()
        assert process.wait(30) == 0, process.stderr.read().decode()
    finally:
        process.kill()
    assert "serving HTTP at http://" not in process.stderr.read().decode()


@pytest.mark.parametrize(
    ("server", "options"),
    [("[server]\nworkers = 2\n", []), ("", ["--separate-daemon"]), ("", ["--set", "server.workers=2"])],
    ids=["workers", "asked", "set"],
)
def test_gateway_profile_runs_a_child_daemon_for_workers_or_when_asked(tmp_path, server, options):
    """A daemon of several workers cannot live in the gateway's process, and
    --separate-daemon asks for one that does not: it runs as a ``heirloom serve`` child
    (another pid), stopped with the gateway. ``--set`` reaches it as ``serve --set`` does
    (the gateway had none: a setting meant a profile of its own)."""
    profile = write(tmp_path / "p.toml", f'extends = ["minimal"]\n{server}')
    port = free_port()
    process = subprocess.Popen(
        [*HEIRLOOM, "gateway", str(profile), "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "HEIRLOOM_HOME": str(tmp_path / "home")},
    )
    try:
        deadline = time.monotonic() + 60
        while not http_up(f"http://127.0.0.1:{port}/v2/health/ready"):  # the workers are up
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        status, _, body = http(f"http://127.0.0.1:{port}/v1/routes/echo.echo", [1, 2])
        assert status == 200 and body == [1, 2]
        status, _, health = http(f"http://127.0.0.1:{port}/v1/routes/_health", method="POST", raw=b"null")
        assert status == 200 and health["pid"] != process.pid
        daemon_pid = health["pid"]
    finally:
        process.terminate()
        assert process.wait(30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(daemon_pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
@pytest.mark.parametrize("options", [["--set", "server.workers=2"], ["--separate-daemon"]], ids=["workers", "asked"])
def test_a_child_daemon_stops_when_the_gateway_is_killed(tmp_path, options):
    """SIGKILL runs none of the gateway's clean-up: its child daemon (a broker and its workers,
    or one process) served on for ever under pid 1. The child gets SIGTERM when the gateway
    dies, drains and stops, its workers with it; the folder of its socket stays (HTTP.md)."""
    profile = write(tmp_path / "p.toml", 'extends = ["minimal"]\n')
    process, port = gateway_process(tmp_path, str(profile), *options)
    pids: list[int] = []
    folder = None
    try:
        workers = 2 if "--separate-daemon" not in options else 0
        deadline = time.monotonic() + 60
        while True:  # every worker is up
            status, _, stats = http(f"http://127.0.0.1:{port}/v1/routes/_stats", method="POST", raw=b"null")
            if status == 200 and len([w for w in stats.get("workers", []) if w["ready"]]) == workers:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.2)
        _, _, health = http(f"http://127.0.0.1:{port}/v1/routes/_health", method="POST", raw=b"null")
        pids = [health["pid"], *(worker["pid"] for worker in stats.get("workers", []))]
        command = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
        folder = Path(command[command.index(b"--bind") + 1].decode().removeprefix("ipc://")).parent
        process.kill()
        process.wait()
        deadline = time.monotonic() + 60
        while any(map(running, pids)):
            assert time.monotonic() < deadline, [pid for pid in pids if running(pid)]
            time.sleep(0.2)
    finally:
        process.kill()
        for pid in filter(running, pids):
            os.kill(pid, signal.SIGKILL)
        if folder is not None:  # what no process is left to remove (docs/HTTP.md)
            shutil.rmtree(folder, ignore_errors=True)


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, which an init that reaps nothing leaves, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_gateway_profile_whose_system_cannot_start_exits_saying_why(tmp_path):
    """A component failing at start ends the gateway with exit 1 and the component's reason,
    instead of an HTTP server in front of nothing."""
    profile = write(
        tmp_path / "p.toml",
        '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\n'
        'data = "s"\nfail_start = true\n[apis.a]\nuse = "toy-api"\nmodel = "m"\n',
    )
    result = run_heirloom(
        "gateway",
        str(profile),
        "--port",
        str(free_port()),
        env={"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_PLUGINS": "tests.toys"},
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    said = "the system did not start: models.m (toy-model, plugin tests.toys) failed to start: RuntimeError: m refuses"
    assert said in result.stderr
    # a profile that cannot work at all is exit 2, as for serve (it was 1)
    for named in ("no-such-profile", str(write(tmp_path / "typo.toml", '[apis.a]\nuse = "toy-apii"\n'))):
        refused = run_heirloom("gateway", named, "--port", str(free_port()), env={"HEIRLOOM_PLUGINS": "tests.toys"})
        assert refused.returncode == 2, refused.stderr


def gateway_process(tmp_path: Path, *args: str, stderr: int = subprocess.DEVNULL) -> tuple[subprocess.Popen, int]:
    """``heirloom gateway ARGS`` on a free port (HEIRLOOM_HOME in ``tmp_path``), once it
    answers HTTP; the caller stops it."""
    port = free_port()
    process = subprocess.Popen(
        [*HEIRLOOM, "gateway", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=REPO,
        env={**os.environ, "HEIRLOOM_HOME": str(tmp_path)},
    )
    deadline = time.monotonic() + 60
    while not http_up(f"http://127.0.0.1:{port}/v2"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"heirloom gateway {' '.join(args)} did not start (exit {process.poll()})")
        time.sleep(0.2)
    return process, port


def http_up(url: str) -> bool:
    """Whether ``url`` answers (not yet: refused, reset, or slower than 2 s on a busy machine)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except (urllib.error.URLError, OSError):  # a read timeout is a bare TimeoutError
        return False


def test_http_commands_share_their_listen_options():
    """`heirloom gateway` and `heirloom ui` take --host and --port from one definition
    (heirloom.options.listen_options): the same words, each with its own default port."""
    helps = {command: run_heirloom(command, "--help").stdout for command in ("gateway", "ui")}
    for command, port in (("gateway", 8000), ("ui", 8765)):
        text = " ".join(helps[command].split())
        assert "--host TEXT Address to listen on (0.0.0.0: every interface). [default: 127.0.0.1]" in text
        assert f"--port INTEGER RANGE HTTP port. [default: {port}; 0<=x<=65535]" in text


def test_the_gateway_stays_ready_while_one_of_two_workers_is_replaced(tmp_path):
    """A Kubernetes readiness probe on /v2/health/ready must not pull a pod whose broker
    still serves on its other worker (``_ready``'s ``serving``)."""
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    gateway = Gateway(tmp_path, daemon.address)
    try:
        with daemon.client(timeout=10) as client:
            victim = client.call("_stats")["workers"][0]["pid"]
        os.kill(victim, 9)
        deadline = time.monotonic() + 5
        while True:  # until the broker notices the loss
            with daemon.client(timeout=10) as client:
                ready = client.call("_ready")
            if not ready["ready"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready["serving"] and not ready["ready"], ready
        status, _, body = http(gateway.url + "/v2/health/ready")
        assert status == 200 and body == {"ready": True}
    finally:
        assert gateway.stop() == 0
        assert daemon.terminate() == 0


def test_a_request_another_sites_page_sends_through_a_browser_is_refused(tmp_path):
    """A page open in a browser on the gateway's host could POST feedback (a text/plain body
    needs no CORS preflight) or call _reload; programs send neither Origin nor Sec-Fetch-Site."""
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    gateway = Gateway(tmp_path, daemon.address, env={"HEIRLOOM_PLUGINS": "tests.gateway_console"})
    echo = gateway.url + "/v1/routes/echo.echo"
    try:
        for forged in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            status, _, body = http(echo, [1], headers=forged)
            assert status == 403 and body["code"] == "PERMISSION_DENIED", (forged, body)
            assert body["field"] == f"header.{next(iter(forged))}", body  # it named no header
            status, headers, _ = http(gateway.url + "/console/echo?text=x", headers=forged)
            assert status == 403, forged  # a console's GET form calls a route
            assert headers["Content-Type"] == "application/json", headers  # refused before any console: as HTTP.md says
        status, _, body = http(echo, [1], headers={"Origin": gateway.url, "Sec-Fetch-Site": "same-origin"})
        assert (status, body) == (200, [1])  # the gateway's own pages
        status, _, body = http(echo, [2])  # a program
        assert (status, body) == (200, [2])
        status, _, _ = http(gateway.url + "/v2/health/ready", headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 200  # a read with no side effect stays open (a link from a wiki page)
        for page in ("/console", "/console/echo"):  # the index, a console's empty form: a link was a JSON 403
            status, headers, shown = http(gateway.url + page, headers={"Sec-Fetch-Site": "cross-site"})
            assert status == 200 and headers["Content-Type"].startswith("text/html"), (page, shown)
    finally:
        assert gateway.stop() == 0
        assert daemon.terminate() == 0


def test_a_port_in_use_is_one_line_and_exit_1_before_anything_starts(tmp_path):
    """As `heirloom serve` says it; uvicorn logged its error after the banner and exited 3,
    the code `models promote --if-better` uses for "not promoted"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for command in (("gateway", "--connect", "tcp://127.0.0.1:5555"), ("ui",)):
            result = run_heirloom(*command, "--port", port, env={"HEIRLOOM_HOME": str(tmp_path)})
            assert result.returncode == 1, (command, result.stderr)
            assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_port_0_prints_the_port_the_system_chose(tmp_path):
    """``--port 0`` (any free port, as test rigs and sidecars use) printed ``:0``; the banner
    names the port the gateway and the dashboard actually listen on."""
    # the gateway's budget well inside the client's 30 s: its 504 (no daemon) must come first
    for command in (("gateway", "--connect", "ipc:///nowhere", "--timeout", "2"), ("ui",)):
        process = subprocess.Popen(
            [*HEIRLOOM, *command, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "HEIRLOOM_HOME": str(tmp_path)},
        )
        try:
            banner = process.stderr.readline()
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", banner)[1])
            assert port != 0, banner
            status, _, _ = http(f"http://127.0.0.1:{port}/")  # an HTTP answer (the gateway's daemon is nowhere)
            assert status in (200, 504), status
        finally:
            process.terminate()
            assert process.wait(30) == 0


def test_a_route_whose_input_class_holds_itself_is_described_in_the_openapi_document_and_called(tmp_path):
    """Checker h336 F2: ``_routes`` describes a class that holds itself once, under the schema's ``$defs``; in the
    OpenAPI document ``#/$defs/Node`` would be looked up from the document's top, so the gateway moves it into its
    components, and a validator reading the document takes the tree the route takes and refuses the one it refuses."""
    import jsonschema

    daemon = Daemon(tmp_path, profile='[apis.t]\nuse = "testing"\nrich = true\n')
    daemon.wait_ready()
    gateway = Gateway(tmp_path, daemon.address)
    try:
        status, _, document = http(gateway.url + "/openapi.json")
        assert status == 200
        openapi_spec_validator.validate(document)
        assert '"#/$defs/' not in json.dumps(document)
        node = document["components"]["schemas"]["t.tree.input.Node"]
        assert node["properties"]["children"]["items"] == {"$ref": "#/components/schemas/t.tree.input.Node"}
        pointer = "#/paths/~1v1~1routes~1t.tree/post/requestBody/content/application~1json/schema"
        body = jsonschema.Draft202012Validator({**document, "$ref": pointer})
        tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
        assert body.is_valid(tree) and not body.is_valid({"name": "a", "children": [{"name": 3}]})
        status, _, answer = http(gateway.url + "/v1/routes/t.tree", tree)
        assert status == 200 and answer["children"][0]["children"][0] == {"name": "c", "children": []}
    finally:
        assert gateway.stop() == 0, gateway.log_path.read_text()
        assert daemon.terminate() == 0, daemon.log()
