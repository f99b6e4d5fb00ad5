"""Serving overhead and batching: the heirloom daemon against a raw pyzmq ceiling and FastAPI.

In one run, on the same machine, each server answers while the others idle:
  (a) raw pyzmq + msgpack ROUTER echo, with the same lean calls as heirloom.wire.transport
      (Cython send/recv bound once, frames without copies): the ceiling of Python on ZeroMQ;
  (a2) the same raw server speaking heirloom's frames (signature, header, body each way; it
      reads the request id from the header and writes a reply header): what the protocol
      itself costs, with none of the daemon's checks, routing or accounting;
  (b) ``heirloom serve minimal`` answering ``echo.echo``, in one process and ``--workers 2``;
  (c) FastAPI + uvicorn (uvloop, httptools) answering ``POST /echo`` with JSON;
  (d) finance-sentiment's ``sentiment.predict``, one text a request: adaptive batching (the
      defaults) against ``batching = false``;
  (e) a CPU-bound unbatched route: ``sentiment.predict`` with 64 texts a request and
      ``batching = false``, in one process and ``--workers 2``.
The load generator is a lean loop in this process (a raw DEALER for ZeroMQ, raw keep-alive
HTTP/1.1 connections for (c)), so the clients cost the same for everyone; throughput counts
OK replies only. Sequential p50/p99 latency, then throughput with 1, 8 and 64 requests in
flight; medians of interleaved rounds. "cores @64" is the CPU time the server's processes
(a broker's workers included) spent per second of the 64-in-flight measurement, from
/proc: on a machine whose cores are all busy, a server that already uses more than one
core cannot be made much faster by more processes.

Targets (issue 10): (b) one process >= 0.6x (a) at 64 in flight; (d) batched p50 at one in
flight within 1.2x of unbatched, and at 64 in flight at least today's defaults; (e) two
workers >= 1.5x one process; (b) two workers >= 0.6x today's one process on echo at 64 in
flight. "Today's" figures come from running this script against the previous code (its own
virtualenv) with ``--json``; the rows (d)/(e) need HEIRLOOM_DATA (``--skip-model`` leaves them out).

    .venv/bin/python bench/serve.py [--seconds 2] [--repeats 5] [--json rows.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import msgpack
import zmq
from options import (
    REPLY_TIMEOUT,
    default_data,
    no_reply,
    not_ready,
    positive_float,
    positive_int,
    require_data,
    run_child,
    scratch,
    still_running,
    writable_file,
)

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = {"text": "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "n": 7}
IN_FLIGHT = (1, 8, 64)
RAW = "(a) raw pyzmq + msgpack (lean calls)"
RAW_PROTOCOL = "(a2) raw pyzmq, heirloom's frames"
ECHO, ECHO_WORKERS = "(b) heirloom echo.echo", "(b) heirloom echo.echo --workers 2"
FASTAPI = "(c) FastAPI + uvicorn"
BATCHED, UNBATCHED = "(d) predict, adaptive batching", "(d) predict, batching = false"
HEAVY, HEAVY_WORKERS = "(e) predict 64 texts, unbatched", "(e) predict 64 texts, unbatched --workers 2"

RAW_SERVER = textwrap.dedent("""
    import signal, sys, msgpack, zmq
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C to the terminal's group: no traceback of its own
    from zmq.backend import zmq_poll
    from heirloom.wire.transport import drain, receiver, sender

    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(sys.argv[1])
    recv, send = receiver(sock), sender(sock)
    packb, unpackb = msgpack.Packer().pack, msgpack.unpackb

    def echo(frames, user):
        send([frames[0], packb(unpackb(frames[1]))])

    while True:
        zmq_poll([(sock, zmq.POLLIN)], -1)
        drain(sock, recv, echo, 1000)
""")

# (a2): the raw server above, answering heirloom's frames: [identity, signature, header, body].
RAW_PROTOCOL_SERVER = RAW_SERVER.replace(
    "send([frames[0], packb(unpackb(frames[1]))])",
    'send([frames[0], frames[1], packb({"id": unpackb(frames[2])["id"], "status": "OK"}), packb(unpackb(frames[3]))])',
)

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


TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


class ZmqLoad:
    """Keeps N requests in flight on one DEALER, as cheaply as Python allows for both
    protocols: frames go through heirloom.wire.transport's lean send/recv, request headers are
    pre-encoded for a ring of ids, and every reply is decoded."""

    def __init__(self, address: str, heirloom: bool, route: str = "echo.echo", bodies: list | None = None):
        from zmq.backend import Socket

        from heirloom.wire.transport import sender

        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT * 1000)  # a server that died is said, not waited for
        self.sock.connect(address)
        self.address = address
        self.heirloom = heirloom
        self.bodies = [msgpack.packb(body) for body in (bodies or [PAYLOAD])]
        self.body = self.bodies[0]
        self.headers = [msgpack.packb({"id": i, "route": route}) for i in range(1024)]
        self._send, self._recv_frame = sender(self.sock), Socket.recv.__get__(self.sock)

    def _recv(self) -> list[bytes]:
        try:
            frame = self._recv_frame(0, False)
        except zmq.Again:
            no_reply(self.address)
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
            if self.receive() == "OK":
                samples.append(time.perf_counter() - began)
        return samples

    def throughput(self, in_flight: int, seconds: float) -> float:
        """OK replies per second with ``in_flight`` requests outstanding."""
        for i in range(in_flight):
            self.send(i)
        sent, ok, began = in_flight, 0, time.perf_counter()
        end = began + seconds
        while True:
            ok += self.receive() == "OK"
            if time.perf_counter() >= end:
                break
            self.send(sent)
            sent += 1
        elapsed = time.perf_counter() - began
        for _ in range(in_flight - 1):
            self.receive()
        return ok / elapsed


class HttpLoad:
    """Raw keep-alive HTTP/1.1 POSTs over asyncio streams: one connection per request in flight."""

    def __init__(self, port: int):
        body = json.dumps(PAYLOAD).encode()
        self.port = port
        self.request = (
            f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.request)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REPLY_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            no_reply(f"http://127.0.0.1:{self.port}")
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


def wait_ready(address: str, timeout: float = 120, processes: Sequence[subprocess.Popen] = ()) -> None:
    """Until the heirloom daemon at ``address`` says it is ready; if one of ``processes`` (the
    daemon) exits first, or ``timeout`` passes, the bench says so and exits 1."""
    from heirloom.wire.client import Client, RemoteError

    deadline = time.monotonic() + timeout
    with Client(address, timeout=1) as client:
        while time.monotonic() < deadline:
            still_running(processes)
            try:
                if client.call("_ready")["ready"]:
                    return
            except RemoteError:
                time.sleep(0.2)
    not_ready(address, timeout)


def measure_throughput(load: ZmqLoad, in_flight: int, seconds: float) -> float:
    load.throughput(in_flight, 0.5)  # warm-up
    return load.throughput(in_flight, seconds)


def wait_zmq(address: str, timeout: float = 60, *, heirloom: bool = False, processes=()) -> None:
    load = ZmqLoad(address, heirloom)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        still_running(processes)
        load.send(0)
        if load.sock.poll(500) and load.receive() == "OK":
            return
        time.sleep(0.2)
    not_ready(address, timeout)


def wait_http(port: int, timeout: float = 60, processes: Sequence[subprocess.Popen] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        still_running(processes)
        try:
            HttpLoad(port).latencies(1)
            return
        except OSError:
            time.sleep(0.2)
    not_ready(f"HTTP echo on port {port}", timeout)


def measure_once(load, pid: int, seconds: float, sequential: int) -> dict[str, float]:
    """One round: sequential latency percentiles, then throughput at each concurrency and
    the cores the server process ``pid`` (and its children) used meanwhile."""
    load.latencies(sequential // 10)  # warm-up
    samples = sorted(load.latencies(sequential))
    row = {"p50_us": samples[len(samples) // 2] * 1e6, "p99_us": samples[int(len(samples) * 0.99)] * 1e6}
    for n in IN_FLIGHT:
        if isinstance(load, ZmqLoad):
            load.throughput(n, 0.5)  # warm-up
        pids = tree(pid)
        used, began = cpu_seconds(pids), time.perf_counter()
        row[f"rps_{n}"] = load.throughput(n, seconds)
        row[f"cores_{n}"] = (cpu_seconds(pids) - used) / (time.perf_counter() - began)
    return row


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def phrasebank_texts(data: Path) -> list[str]:
    from heirloom_plugins.text.sources import PhraseBankSource

    return [r["text"] for r in PhraseBankSource(path=str(data / "financial-phrasebank")).records("test")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="seconds per throughput measurement")
    parser.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--skip-fastapi", action="store_true", help="skip (c) when fastapi/uvicorn are not installed")
    parser.add_argument("--skip-model", action="store_true", help="skip (d) and (e), which need HEIRLOOM_DATA")
    parser.add_argument("--json", type=writable_file, help="also write the median rows here (to compare two checkouts)")
    args = parser.parse_args()
    data = default_data()
    if not args.skip_model:
        require_data(parser, data, "financial-phrasebank")
    tmp = scratch("heirloom-bench-")
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home")}
    heirloom = [sys.executable, "-m", "heirloom"]

    def daemon(label: str, profile: str, socket: str, *extra: str, route="echo.echo", bodies=None, samples=2000):
        command = [*heirloom, "serve", profile, "--bind", f"ipc://{tmp}/{socket}", "--log-level", "WARNING", *extra]
        return (label, "heirloom", command, f"ipc://{tmp}/{socket}", route, bodies, samples)

    # (label, kind, command, target, route, bodies, sequential samples)
    raw = [sys.executable, "-c", RAW_SERVER, f"ipc://{tmp}/raw"]
    raw_protocol = [sys.executable, "-c", RAW_PROTOCOL_SERVER, f"ipc://{tmp}/raw2"]
    servers: list[tuple] = [
        (RAW, "raw", raw, f"ipc://{tmp}/raw", None, None, 2000),
        (RAW_PROTOCOL, "raw-protocol", raw_protocol, f"ipc://{tmp}/raw2", None, None, 2000),
        daemon(ECHO, "minimal", "h1"),
        daemon(ECHO_WORKERS, "minimal", "h2", "--workers", "2"),
    ]
    if not args.skip_fastapi:
        port = free_port()
        servers.append((FASTAPI, "http", [sys.executable, "-c", FASTAPI_SERVER, str(port)], port, None, None, 2000))
    if not args.skip_model:
        env["HEIRLOOM_DATA"] = str(data)
        print("training finance-sentiment for (d) and (e)...", file=sys.stderr)
        run_child([*heirloom, "train", "finance-sentiment"], env=env, cwd=REPO)
        texts = phrasebank_texts(data)
        one = [{"text": t} for t in texts]
        many = [{"texts": texts[i : i + 64]} for i in range(0, len(texts) - 64, 64)]
        off = ("--set", "apis.sentiment.batching=false")
        light = {"route": "sentiment.predict", "bodies": one, "samples": 1000}
        heavy = {"route": "sentiment.predict", "bodies": many, "samples": 200}
        servers += [
            daemon(BATCHED, "finance-sentiment", "d1", **light),
            daemon(UNBATCHED, "finance-sentiment", "d2", *off, **light),
            daemon(HEAVY, "finance-sentiment", "e1", *off, **heavy),
            daemon(HEAVY_WORKERS, "finance-sentiment", "e2", *off, "--workers", "2", **heavy),
        ]
    # All servers start first and idle between turns; rounds interleave them so that the
    # machine's drift (other processes, frequency) hits every row alike.
    processes, loads, sequential, pids = [], {}, {}, {}
    try:
        for label, kind, command, target, route, bodies, samples in servers:
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL))
            sequential[label], pids[label] = samples, processes[-1].pid
            if kind == "raw":
                wait_zmq(target, processes=processes[-1:])
                loads[label] = ZmqLoad(target, False)
            elif kind == "raw-protocol":
                wait_zmq(target, heirloom=True, processes=processes[-1:])
                loads[label] = ZmqLoad(target, True)
            elif kind == "http":
                wait_http(target, processes=processes[-1:])
                loads[label] = HttpLoad(target)
            else:
                wait_ready(target, processes=processes[-1:])
                loads[label] = ZmqLoad(target, True, route, bodies)
        rounds: dict[str, list[dict[str, float]]] = {label: [] for label in loads}
        for round_number in range(args.repeats):
            for label, load in loads.items():
                rounds[label].append(measure_once(load, pids[label], args.seconds, sequential[label]))
            print(f"round {round_number + 1}/{args.repeats} done", file=sys.stderr)
        rows = {label: medians(samples) for label, samples in rounds.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    print_table(rows, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def print_table(rows: dict[str, dict[str, float]], repeats: int) -> None:
    base = rows[RAW]
    print(
        f"\n{os.cpu_count()} cores; medians of {repeats} interleaved rounds; OK replies only; "
        "ratios are to (a) in this run.\n"
    )
    header = ["server", "seq p50 µs", "seq p99 µs", "req/s @1", "req/s @8", "req/s @64", "cores @64"]
    header += ["p50 vs (a)", "@64 vs (a)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, row in rows.items():
        cells = [label, f"{row['p50_us']:.0f}", f"{row['p99_us']:.0f}"]
        cells += [f"{row[f'rps_{n}']:,.0f}" for n in IN_FLIGHT]
        cells.append(f"{row['cores_64']:.2f}")
        if label.startswith(("(a)", "(b)", "(c)")):
            cells += [f"{row['p50_us'] / base['p50_us']:.2f}x", f"{row['rps_64'] / base['rps_64']:.2f}x"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    print()
    at_least, at_most = (lambda limit: lambda r: r >= limit), (lambda limit: lambda r: r <= limit)
    checks = [
        (ECHO, RAW, "rps_64", "(b) one process vs (a) at 64 in flight", ">= 0.6x", at_least(0.6)),
        (RAW_PROTOCOL, RAW, "rps_64", "(a2) heirloom's frames, no daemon logic, vs (a) at 64 in flight", "", None),
        (ECHO, RAW_PROTOCOL, "rps_64", "(b) one process vs (a2) at 64 in flight", "", None),
        (ECHO_WORKERS, ECHO, "rps_64", "(b) --workers 2 vs one process at 64 in flight", "(vs today's: >= 0.6x)", None),
        (FASTAPI, ECHO, "rps_64", "(c) FastAPI vs (b) one process at 64 in flight", "", None),
        (BATCHED, UNBATCHED, "p50_us", "(d) batched vs unbatched p50, one in flight", "<= 1.2x", at_most(1.2)),
        (BATCHED, UNBATCHED, "rps_64", "(d) batched vs unbatched at 64 in flight", "", None),
        (HEAVY_WORKERS, HEAVY, "rps_64", "(e) --workers 2 vs one process at 64 in flight", ">= 1.5x", at_least(1.5)),
    ]
    for row, base_row, key, what, target, met in checks:
        if row in rows and base_row in rows:
            ratio = rows[row][key] / rows[base_row][key]
            verdict = "" if met is None else (" (met)" if met(ratio) else " (MISSED)")
            print(f"{what}: {ratio:.2f}x {target}{verdict}")
    if HEAVY in rows:
        cores, used = os.cpu_count() or 1, rows[HEAVY]["cores_64"]
        print(
            f"(e) one process used {used:.2f} of {cores} cores at 64 in flight: any number of processes "
            f"on this machine can add at most {cores / used:.2f}x (less what the load generator uses)"
        )


if __name__ == "__main__":
    main()
