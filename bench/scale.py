"""Scaling out: req/s on a CPU-bound route for local workers against Ray workers, one run.

finance-sentiment's ``sentiment.predict`` with 64 texts a request and ``batching = false``
(the CPU-bound route of bench/serve.py (e)), served four ways on this machine:
``--workers 1`` (in-process), ``--workers 2``, and ``[resources] use = "ray"`` with 1 and 2
worker actors on one local Ray instance that this script starts (actors reserve 0.5 CPU so
all three fit on two cores). All daemons start first and idle between turns; rounds
interleave them; req/s at 8 and 64 in flight, OK replies only, medians. Ray carries no
request (the wire is ZeroMQ either way), so Ray's rows differ from the local rows by
what a broker hop costs (``--workers 1`` is in-process; Ray with 1 worker is a broker and
one worker) and by the Ray processes' own CPU on the same cores. Needs HEIRLOOM_DATA and
the ``ray`` extra.

    .venv/bin/python bench/scale.py [--seconds 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import default_data, positive_float, positive_int, require_data, run_child, scratch
from serve import ZmqLoad, measure_throughput, phrasebank_texts, wait_ready  # bench/serve.py's load generator

REPO = Path(__file__).resolve().parent.parent
IN_FLIGHT = (8, 64)
RAY_PROFILE = """
extends = "finance-sentiment"
project = "finance"
[resources]
use = "ray"
address = "{address}"
workers = {workers}
num_cpus = 0.5
threads = 1
"""
LOCAL_1, LOCAL_2, RAY_1, RAY_2 = "--workers 1", "--workers 2", "ray, 1 worker", "ray, 2 workers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="seconds per throughput measurement")
    parser.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds (medians are reported)")
    args = parser.parse_args()
    data = default_data()
    require_data(parser, data, "financial-phrasebank")
    try:
        import ray
    except ImportError:
        parser.error('needs the ray extra: .venv/bin/python -m pip install -e ".[ray]"')

    # the bench's throwaway instance: no token (a real cluster's daemons get RAY_AUTH_TOKEN)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    tmp = scratch("heirloom-bench-scale-")
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp / "home"), "HEIRLOOM_DATA": str(data)}
    heirloom = [sys.executable, "-m", "heirloom"]
    print("training finance-sentiment...", file=sys.stderr)
    run_child([*heirloom, "train", "finance-sentiment"], env=env, cwd=REPO)
    texts = phrasebank_texts(data)
    bodies = [{"texts": texts[i : i + 64]} for i in range(0, len(texts) - 64, 64)]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    address = ray.get_runtime_context().gcs_address
    off = ("--set", "apis.sentiment.batching=false")
    servers = {
        LOCAL_1: ["finance-sentiment", "--workers", "1"],
        LOCAL_2: ["finance-sentiment", "--workers", "2"],
    }
    for label, workers in ((RAY_1, 1), (RAY_2, 2)):
        profile = tmp / f"ray{workers}.toml"
        profile.write_text(RAY_PROFILE.format(address=address, workers=workers))
        servers[label] = [str(profile)]
    processes, loads = [], {}
    try:
        for number, (label, profile_args) in enumerate(servers.items()):
            target = f"ipc://{tmp}/d{number}"
            command = [*heirloom, "serve", *profile_args, *off, "--bind", target, "--log-level", "WARNING"]
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL))
            wait_ready(target, timeout=90, processes=processes[-1:])
            loads[label] = ZmqLoad(target, True, "sentiment.predict", bodies)
        rounds: dict[str, list[dict[str, float]]] = {label: [] for label in loads}
        for number in range(args.repeats):
            for label, load in loads.items():
                rounds[label].append({n: measure_throughput(load, n, args.seconds) for n in IN_FLIGHT})
            print(f"round {number + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        for process in processes:
            process.terminate()
            process.wait(60)
        ray.shutdown()
    rows = {label: {n: statistics.median(r[n] for r in rs) for n in IN_FLIGHT} for label, rs in rounds.items()}
    print(f"\n{os.cpu_count()} cores; medians of {args.repeats} interleaved rounds; OK replies only.\n")
    print("| server | req/s @8 | req/s @64 | @64 vs --workers 1 |")
    print("|---|---|---|---|")
    for label, row in rows.items():
        print(f"| {label} | {row[8]:,.0f} | {row[64]:,.0f} | {row[64] / rows[LOCAL_1][64]:.2f}x |")
    print()
    for ours, theirs in ((RAY_1, LOCAL_1), (RAY_2, LOCAL_2)):
        print(f"{ours} vs {theirs} at 64 in flight: {rows[ours][64] / rows[theirs][64]:.2f}x")


if __name__ == "__main__":
    main()
