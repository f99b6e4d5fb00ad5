"""Serving overhead: the heirloom daemon against raw pyzmq and FastAPI + uvicorn.

In one run, on the same machine, each server answers an echo of a small map:
  (a) raw pyzmq + msgpack ROUTER/DEALER echo: the limit of Python on ZeroMQ;
  (b) ``heirloom serve minimal`` answering ``echo.echo`` (and ``--workers 2``);
  (c) FastAPI + uvicorn (uvloop, httptools) answering ``POST /echo`` with JSON.
Each server runs in its own process; the load generator is a lean loop in this one
(a raw DEALER for (a)/(b), raw keep-alive HTTP/1.1 connections for (c)), so the clients
cost the same for everyone. Sequential p50/p99 latency, then throughput with 1, 8 and 64
requests in flight. Ratios are to (a) measured in the same run.

    .venv/bin/python bench/serve.py [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import msgpack
import zmq

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = {"text": "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "n": 7}
IN_FLIGHT = (1, 8, 64)

RAW_SERVER = textwrap.dedent("""
    import sys, msgpack, zmq
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(sys.argv[1])
    while True:
        ident, payload = sock.recv_multipart()
        sock.send_multipart([ident, msgpack.packb(msgpack.unpackb(payload))])
""")

FASTAPI_SERVER = textwrap.dedent("""
    import sys, uvicorn
    from fastapi import FastAPI, Request
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request):
        return await request.json()

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
""")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZmqLoad:
    """Keeps N requests in flight on one DEALER, as cheaply as Python allows for both
    protocols: frames go through heirloom.wire.transport's lean send/recv, request headers are
    pre-encoded for a ring of ids, and every reply is decoded."""

    def __init__(self, address: str, heirloom: bool, route: str = "echo.echo", bodies: list | None = None):
        from zmq.backend import Socket

        from heirloom.wire.transport import sender

        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.heirloom = heirloom
        self.bodies = [msgpack.packb(body) for body in (bodies or [PAYLOAD])]
        self.body = self.bodies[0]
        self.headers = [msgpack.packb({"id": i, "route": route}) for i in range(1024)]
        self._send, self._recv_frame = sender(self.sock), Socket.recv.__get__(self.sock)

    def _recv(self) -> list[bytes]:
        frame = self._recv_frame(0, False)
        frames = [frame.bytes]
        while frame.more:
            frame = self._recv_frame(0, False)
            frames.append(frame.bytes)
        return frames

    def send(self, request_id: int) -> None:
        if self.heirloom:
            self._send([b"HLM1", self.headers[request_id % 1024], self.bodies[request_id % len(self.bodies)]])
        else:
            self._send([self.body])

    def receive(self) -> str:
        """One reply (blocking); returns its status."""
        frames = self._recv()
        if not self.heirloom:
            msgpack.unpackb(frames[0])
            return "OK"
        header = msgpack.unpackb(frames[1])
        msgpack.unpackb(frames[2])
        return header["status"]

    def latencies(self, count: int) -> list[float]:
        samples = []
        for i in range(count):
            began = time.perf_counter()
            self.send(i)
            self.receive()
            samples.append(time.perf_counter() - began)
        return samples

    def throughput(self, in_flight: int, seconds: float) -> float:
        for i in range(in_flight):
            self.send(i)
        done, began = 0, time.perf_counter()
        end = began + seconds
        while True:
            self.receive()
            done += 1
            if time.perf_counter() >= end:
                break
            self.send(done)
        elapsed = time.perf_counter() - began
        for _ in range(in_flight - 1):
            self.receive()
        return done / elapsed


class HttpLoad:
    """Raw keep-alive HTTP/1.1 POSTs over asyncio streams: one connection per request in flight."""

    def __init__(self, port: int):
        import json

        body = json.dumps(PAYLOAD).encode()
        self.port = port
        self.request = (
            f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200"), head

    async def _connections(self, n: int):
        return [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(n)]

    def latencies(self, count: int) -> list[float]:
        async def run():
            ((reader, writer),) = await self._connections(1)
            samples = []
            for _ in range(count):
                began = time.perf_counter()
                await self._one(reader, writer)
                samples.append(time.perf_counter() - began)
            writer.close()
            return samples

        return asyncio.run(run())

    def throughput(self, in_flight: int, seconds: float) -> float:
        async def worker(reader, writer, end, counts):
            while time.perf_counter() < end:
                await self._one(reader, writer)
                counts[0] += 1

        async def run():
            connections = await self._connections(in_flight)
            counts = [0]
            began = time.perf_counter()
            end = began + seconds
            await asyncio.gather(*(worker(r, w, end, counts) for r, w in connections))
            elapsed = time.perf_counter() - began
            for _, writer in connections:
                writer.close()
            return counts[0] / elapsed

        return asyncio.run(run())


def wait_ready(address: str, timeout: float = 120) -> None:
    """Until the heirloom daemon at ``address`` says it is ready."""
    from heirloom.wire.client import Client, RemoteError

    deadline = time.monotonic() + timeout
    with Client(address, timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if client.call("_ready")["ready"]:
                    return
            except RemoteError:
                time.sleep(0.2)
    raise TimeoutError(f"{address} did not become ready")


def measure_throughput(load: ZmqLoad, in_flight: int, seconds: float) -> float:
    load.throughput(in_flight, 0.5)  # warm-up
    return load.throughput(in_flight, seconds)


def wait_zmq(address: str, heirloom: bool, timeout: float = 60) -> None:
    load = ZmqLoad(address, heirloom)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        load.send(0)
        if load.sock.poll(500) and load.receive() == "OK":
            return
        time.sleep(0.2)
    raise TimeoutError(f"no echo from {address}")


def wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            HttpLoad(port).latencies(1)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no HTTP echo on port {port}")


def measure_once(load, seconds: float) -> dict[str, float]:
    """One round: sequential latency percentiles, then throughput at each concurrency."""
    load.latencies(200)  # warm-up
    samples = sorted(load.latencies(2000))
    row = {"p50_us": samples[len(samples) // 2] * 1e6, "p99_us": samples[int(len(samples) * 0.99)] * 1e6}
    for n in IN_FLIGHT:
        row[f"rps_{n}"] = load.throughput(n, seconds)
    return row


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--skip-fastapi", action="store_true", help="skip (c) when fastapi/uvicorn are not installed")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="heirloom-bench-"))
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home")}

    def heirloom_serve(socket: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "heirloom", "serve", "minimal", "--bind", f"ipc://{tmp}/{socket}",
                "--log-level", "WARNING", *extra]  # fmt: skip

    servers = [
        ("(a) raw pyzmq + msgpack", "zmq", False, [sys.executable, "-c", RAW_SERVER, f"ipc://{tmp}/raw"],
         f"ipc://{tmp}/raw"),
        ("(b) heirloom echo.echo", "zmq", True, heirloom_serve("h1"), f"ipc://{tmp}/h1"),
        ("(b) heirloom --workers 2", "zmq", True, heirloom_serve("h2", "--workers", "2"), f"ipc://{tmp}/h2"),
    ]  # fmt: skip
    if not args.skip_fastapi:
        port = free_port()
        servers.append(
            ("(c) FastAPI + uvicorn", "http", False, [sys.executable, "-c", FASTAPI_SERVER, str(port)], port)
        )
    # All servers start first and idle between turns; rounds interleave them so that the
    # machine's drift (other processes, frequency) hits every row alike.
    processes, loads = [], {}
    try:
        for label, kind, heirloom, command, target in servers:
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL))
            if kind == "zmq":
                wait_zmq(target, heirloom)
                loads[label] = ZmqLoad(target, heirloom)
            else:
                wait_http(target)
                loads[label] = HttpLoad(target)
        rounds: dict[str, list[dict[str, float]]] = {label: [] for label in loads}
        for round_number in range(args.repeats):
            for label, load in loads.items():
                rounds[label].append(measure_once(load, args.seconds))
            print(f"round {round_number + 1}/{args.repeats} done", file=sys.stderr)
        rows = {label: medians(samples) for label, samples in rounds.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    print_table(rows, args.repeats)


def print_table(rows: dict[str, dict[str, float]], repeats: int) -> None:
    base = rows["(a) raw pyzmq + msgpack"]
    print(
        f"\nEcho of a small map, {os.cpu_count()} cores; medians of {repeats} interleaved rounds; "
        "ratios are to (a) in this run.\n"
    )
    header = ["server", "seq p50 µs", "seq p99 µs", "req/s @1", "req/s @8", "req/s @64", "p50 vs (a)", "@64 vs (a)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, row in rows.items():
        cells = [label, f"{row['p50_us']:.0f}", f"{row['p99_us']:.0f}"]
        cells += [f"{row[f'rps_{n}']:,.0f}" for n in IN_FLIGHT]
        cells += [f"{row['p50_us'] / base['p50_us']:.2f}x", f"{row['rps_64'] / base['rps_64']:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    heirloom, fastapi = rows.get("(b) heirloom echo.echo"), rows.get("(c) FastAPI + uvicorn")
    if heirloom and fastapi:
        print(f"\nheirloom vs FastAPI + uvicorn at 64 in flight: {heirloom['rps_64'] / fastapi['rps_64']:.1f}x")


if __name__ == "__main__":
    main()
