"""The HTTP gateway against FastAPI serving the same model directly, and against ZeroMQ.

In one run, on the same machine, a small PhraseBank sentiment classifier (trained here
into a temporary store) answers one text per request through:
  (a) heirloom's ZeroMQ: ``heirloom serve`` answering ``sentiment.predict`` (msgpack);
  (b) ``heirloom gateway PROFILE``, the daemon in the gateway's process over inproc://:
      ``POST /v1/routes/sentiment.predict`` (JSON);
  (c) the same gateway's Open Inference Protocol: ``POST /v2/models/sentiment/infer``;
  (d) ``heirloom gateway --connect`` to (a), the daemon in another process: ``/v1/routes``;
  (e) the same, OIP infer;
  (f) FastAPI + uvicorn serving the same stored model in its own process, the usual way
      (a pydantic body, a ``def`` endpoint on the thread pool calling ``model.predict``).
Every HTTP server runs under ``uvicorn.run`` with the gateway's own UVICORN_SETTINGS (uvloop,
httptools, no access log), and the model computes on one torch thread in each (the
daemon's ``[resources] threads = 1``, FastAPI's ``torch.set_num_threads(1)``). Each server
runs in its own process; the load generator is a lean loop in this one (raw keep-alive
HTTP/1.1 connections, one per request in flight; a raw DEALER for ZeroMQ).
Requests per second and p50 latency at 1 and 64 in flight, medians of --repeats rounds;
ratios are to (f), the FastAPI baseline, measured in the same run. At 64 in flight (a)-(e)
batch the requests that queue (the api's ``max_wait_ms = 0``) and (f) predicts each on its
own, so those ratios are mostly batching; at 1 in flight nothing is batched.

    .venv/bin/python bench/gateway.py [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # bench/serve.py's load generators
from options import (
    default_data,
    not_ready,
    positive_float,
    positive_int,
    require_data,
    run_child,
    scratch,
    still_running,
)
from serve import ZmqLoad, free_port, wait_ready

REPO = Path(__file__).resolve().parent.parent
TEXT = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007"
IN_FLIGHT = (1, 64)
BASELINE = "(f) FastAPI + uvicorn"
PROFILE = """
project = "bench-gateway"
[store]
path = "{store}"
[resources]
threads = 1
[sources.news]
use = "phrasebank"
path = "{data}/financial-phrasebank"
agreement = "all"
[models.sentiment]
use = "text-classifier"
data = "news"
buckets = 16384
char_ngrams = [0, 0]
epochs = 3
validation_fraction = 0.0
refit = false
[apis.sentiment]
use = "classify"
model = "sentiment"
max_wait_ms = 0.0   # a lone request never waits for company; what queues is batched
"""
FASTAPI_SERVER = textwrap.dedent("""
    import sys, torch, uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    import heirloom
    from heirloom_plugins.gateway.command import UVICORN_SETTINGS

    torch.set_num_threads(1)
    system = heirloom.Kernel().system(sys.argv[1], serve_models=True)
    system.start()
    model, version = system.model("sentiment").current

    class PredictIn(BaseModel):
        text: str

    app = FastAPI()

    @app.post("/predict")
    def predict(body: PredictIn):
        return {**model.predict([body.text])[0], "version": version}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), **UVICORN_SETTINGS)
""")


class HttpLoad(serve.HttpLoad):
    """bench/serve.py's keep-alive HTTP/1.1 load, POSTing ``body`` to ``path``, timing each request."""

    def __init__(self, port: int, path: str, body: object):
        data = json.dumps(body).encode()
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data

    def run(self, in_flight: int, seconds: float) -> tuple[float, list[float]]:
        """(requests per second, latencies in seconds) with ``in_flight`` always outstanding."""

        async def worker(reader, writer, end, samples):
            while time.perf_counter() < end:
                began = time.perf_counter()
                await self._one(reader, writer)
                samples.append(time.perf_counter() - began)

        async def main():
            connections = [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(in_flight)]
            samples: list[float] = []
            began = time.perf_counter()
            await asyncio.gather(*(worker(r, w, began + seconds, samples) for r, w in connections))
            elapsed = time.perf_counter() - began
            for _, writer in connections:
                writer.close()
            return len(samples) / elapsed, samples

        return asyncio.run(main())


class ZmqTimedLoad(ZmqLoad):
    """bench/serve.py's DEALER loop, timing each request by its id."""

    def run(self, in_flight: int, seconds: float) -> tuple[float, list[float]]:
        sent: dict[int, float] = {}
        samples: list[float] = []
        for i in range(in_flight):
            sent[i] = time.perf_counter()
            self.send(i)
        next_id, began = in_flight, time.perf_counter()
        while True:
            frames = self._recv()
            header = msgpack.unpackb(frames[1])
            assert header["status"] == "OK", header
            samples.append(time.perf_counter() - sent.pop(header["id"]))
            if time.perf_counter() >= began + seconds:
                break
            sent[next_id % 1024] = time.perf_counter()
            self.send(next_id)
            next_id += 1
        elapsed = time.perf_counter() - began
        for _ in range(len(sent)):
            self._recv()
        return len(samples) / elapsed, samples


def wait_http(load: HttpLoad, processes: list[subprocess.Popen], logs: dict[int, Path], timeout: float = 120) -> None:
    """Until the HTTP server behind ``load`` answers; one of ``processes`` exiting, or ``timeout``
    passing, is said (with that process's log) and the bench exits 1."""
    deadline = time.monotonic() + timeout
    while True:
        still_running(processes, logs)
        try:
            load.run(1, 0.05)
            return
        except OSError:
            if time.monotonic() > deadline:
                not_ready(f"HTTP server on port {load.port}", timeout)
            time.sleep(0.3)


def measure(load, seconds: float) -> dict[str, float]:
    row = {}
    for n in IN_FLIGHT:
        load.run(n, 0.5)  # warm-up
        rps, samples = load.run(n, seconds)
        row[f"rps_{n}"], row[f"p50_ms_{n}"] = rps, statistics.median(samples) * 1000
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=positive_int, default=3, help="rounds; the table shows medians")
    args = parser.parse_args()
    data = default_data()
    require_data(parser, data, "financial-phrasebank")
    tmp = scratch("heirloom-bench-gateway-")
    profile = tmp / "sentiment.toml"
    profile.write_text(PROFILE.format(store=tmp / "store", data=data))
    heirloom = [sys.executable, "-m", "heirloom"]
    print("training the model ...", file=sys.stderr)
    run_child([*heirloom, "train", str(profile)], cwd=REPO)

    address = f"ipc://{tmp}/daemon.sock"
    own_port, connect_port, fastapi_port = free_port(), free_port(), free_port()
    commands = [
        [*heirloom, "serve", str(profile), "--bind", address],
        [*heirloom, "gateway", str(profile), "--port", str(own_port)],
        [*heirloom, "gateway", "--connect", address, "--port", str(connect_port)],
        [sys.executable, "-c", FASTAPI_SERVER, str(profile), str(fastapi_port)],
    ]
    processes, logs = [], {}
    for number, command in enumerate(commands):
        with (tmp / f"server{number}.log").open("w") as log:  # said if the server exits before it answers
            processes.append(subprocess.Popen(command, stderr=log, cwd=REPO))
        logs[processes[-1].pid] = tmp / f"server{number}.log"
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}
    predict, infer = "/v1/routes/sentiment.predict", "/v2/models/sentiment/infer"
    loads = {
        "(a) heirloom ZeroMQ": ZmqTimedLoad(address, True, "sentiment.predict", [{"text": TEXT}]),
        "(b) gateway PROFILE /v1": HttpLoad(own_port, predict, {"text": TEXT}),
        "(c) gateway PROFILE infer": HttpLoad(own_port, infer, {"inputs": [tensor]}),
        "(d) gateway --connect /v1": HttpLoad(connect_port, predict, {"text": TEXT}),
        "(e) gateway --connect infer": HttpLoad(connect_port, infer, {"inputs": [tensor]}),
        BASELINE: HttpLoad(fastapi_port, "/predict", {"text": TEXT}),
    }
    try:
        wait_ready(address, processes=processes[:1])
        for load in loads.values():
            if isinstance(load, HttpLoad):
                wait_http(load, processes, logs)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in loads}
        for _ in range(args.repeats):
            for name, load in loads.items():
                rounds[name].append(measure(load, args.seconds))
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    rows = {name: {key: statistics.median(r[key] for r in got) for key in got[0]} for name, got in rounds.items()}
    print_table(rows, args.repeats)


def print_table(rows: dict[str, dict[str, float]], repeats: int) -> None:
    baseline = rows[BASELINE]
    print(f"\nsentiment.predict, one text per request; medians of {repeats} rounds; ratio: req/s / FastAPI's")
    heads = ("req/s @1", "p50 ms @1", "req/s @64", "p50 ms @64", "x @1", "x @64")
    print(f"{'server':<28}" + "".join(f" {head:>10}" for head in heads))
    for name, row in rows.items():
        ratios = (row["rps_1"] / baseline["rps_1"], row["rps_64"] / baseline["rps_64"])
        cells = (f"{row['rps_1']:.0f}", f"{row['p50_ms_1']:.2f}", f"{row['rps_64']:.0f}", f"{row['p50_ms_64']:.2f}")
        print(f"{name:<28}" + "".join(f" {cell:>10}" for cell in (*cells, *(f"{r:.2f}" for r in ratios))))


if __name__ == "__main__":
    main()
