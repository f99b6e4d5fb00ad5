"""Daemon CPU time per request: the serving overhead measured so that a busy machine does not blur it.

``bench/serve.py`` reports wall-clock req/s, which swings with whatever else the machine runs.
This script counts instead the CPU seconds (user + system, from ``/proc/<pid>/stat``) that
the daemon's processes (``serve`` and, with ``--workers``, its worker processes) spend per
OK reply while a client keeps 64 requests in flight on ``echo.echo`` (and, with ``--model``,
one request at a time on finance-sentiment's batched ``sentiment.predict``: the path a lone
request takes through the batcher thread), and the client's own CPU per reply (whether the
load generator, not the daemon, sets the pace). It can compare two
checkouts in one run: ``--baseline DIR`` runs the same daemons with ``heirloom`` imported from
another checkout's ``kernel/`` (e.g. ``git archive main kernel | tar -x -C DIR``); rounds
interleave all daemons and the medians are reported.

    .venv/bin/python bench/serve_cpu.py [--requests 20000] [--repeats 5] [--baseline DIR] [--model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import default_data, positive_int, require_data, run_child, scratch
from serve import REPO, ZmqLoad, cpu_seconds, phrasebank_texts, tree, wait_ready

IN_FLIGHT = 64


def run_requests(load: ZmqLoad, count: int, in_flight: int) -> int:
    """Send ``count`` requests keeping ``in_flight`` outstanding; returns the OK replies."""
    for i in range(in_flight):
        load.send(i)
    ok = 0
    for sent in range(in_flight, count + in_flight):
        ok += load.receive() == "OK"
        if sent < count:
            load.send(sent)
    return ok


def measure(pid: int, load: ZmqLoad, count: int, in_flight: int) -> tuple[float, float, float]:
    """(daemon CPU µs per OK reply, this client's CPU µs per OK reply, OK replies per second)
    for one batch of requests."""
    run_requests(load, min(2000, count), in_flight)  # warm-up
    pids = tree(pid)
    before, began, client = cpu_seconds(pids), time.perf_counter(), time.process_time()
    ok = run_requests(load, count, in_flight)
    elapsed, used = time.perf_counter() - began, cpu_seconds(pids) - before
    return used / ok * 1e6, (time.process_time() - client) / ok * 1e6, ok / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=positive_int, default=20000, help="requests per measurement")
    parser.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--baseline", type=Path, help="another checkout's root (holding kernel/) to compare with")
    parser.add_argument(
        "--model", action="store_true", help="also batched sentiment.predict at one in flight (needs HEIRLOOM_DATA)"
    )
    args = parser.parse_args()
    data = default_data()
    if args.model:
        require_data(parser, data, "financial-phrasebank")
    if args.baseline is not None and not (args.baseline / "kernel" / "__init__.py").is_file():
        parser.error(
            f"--baseline {args.baseline}: not a heirloom checkout (no {args.baseline / 'kernel' / '__init__.py'})"
        )
    tmp = scratch("heirloom-bench-cpu-")
    # (label, profile, extra arguments, route, bodies, in flight, requests)
    kinds: list[tuple] = [
        ("echo one process", "minimal", (), "echo.echo", None, IN_FLIGHT, args.requests),
        ("echo --workers 2", "minimal", ("--workers", "2"), "echo.echo", None, IN_FLIGHT, args.requests),
    ]
    if args.model:
        os.environ["HEIRLOOM_DATA"] = str(data)  # the daemons below inherit it
        env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home")}
        print("training finance-sentiment...", file=sys.stderr)
        command = [sys.executable, "-m", "heirloom", "train", "finance-sentiment"]
        run_child(command, env=env, cwd=REPO)
        bodies = [{"text": text} for text in phrasebank_texts(data)]
        predict = (
            "batched predict @1",
            "finance-sentiment",
            (),
            "sentiment.predict",
            bodies,
            1,
            max(1, args.requests // 4),
        )
        kinds.append(predict)
    checkouts = {"this checkout": None}
    if args.baseline is not None:
        shim = tmp / "baseline-path"
        shim.mkdir()
        kernel = args.baseline.resolve() / "kernel"
        (shim / "heirloom").symlink_to(kernel)
        check = [sys.executable, "-c", "import heirloom; print(heirloom.__file__)"]
        found = subprocess.run(check, env={**os.environ, "PYTHONPATH": str(shim)}, capture_output=True, text=True)
        if found.returncode != 0 or not found.stdout.strip().startswith(str(shim)):
            said = found.stderr.strip().splitlines()[-1:] or [f"imported {found.stdout.strip()} instead"]
            parser.error(f"--baseline {args.baseline}: heirloom does not import from {kernel}: {said[0]}")
        print(f"baseline: heirloom from {kernel}", file=sys.stderr)
        checkouts["baseline"] = str(shim)
    daemons = []
    for name, path in checkouts.items():
        env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home")}
        if path is not None:
            env["PYTHONPATH"] = path  # found before the editable install's finder
        for label, profile, extra, route, bodies, in_flight, count in kinds:
            address = f"ipc://{tmp}/{len(daemons)}"
            command = [sys.executable, "-m", "heirloom", "serve", profile, "--bind", address]
            command += ["--log-level", "WARNING", *extra]
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
            daemons.append((f"{name}: {label}", process, address, route, bodies, in_flight, count))
    results: dict[str, list[tuple[float, float, float]]] = {daemon[0]: [] for daemon in daemons}
    try:
        loads = {}
        for label, process, address, route, bodies, in_flight, count in daemons:
            wait_ready(address, processes=[process])
            loads[label] = (process.pid, ZmqLoad(address, True, route, bodies), count, in_flight)
        for round_number in range(args.repeats):
            for label, (pid, load, count, in_flight) in loads.items():
                results[label].append(measure(pid, load, count, in_flight))
            print(f"round {round_number + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        for daemon in daemons:
            daemon[1].terminate()
            daemon[1].wait(30)
    print(f"\n{os.cpu_count()} cores; medians of {args.repeats} interleaved rounds\n")
    print("| daemon | in flight | daemon CPU µs / request | client CPU µs / request | req/s |")
    print("|---|---|---|---|---|")
    for label, rows in results.items():
        daemon, client, rate = (statistics.median(r[i] for r in rows) for i in range(3))
        print(f"| {label} | {loads[label][3]} | {daemon:.1f} | {client:.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
