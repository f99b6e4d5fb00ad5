"""Ray cluster scenarios, run by tests/test_ray.py inside a network namespace with only
loopback (so Ray advertises 127.0.0.1): ``python -m tests.ray_scenarios serve OUT.json``.

A two-node ``ray.cluster_utils.Cluster`` (num_cpus=1 each) comes up here; ``heirloom
serve`` runs as a real subprocess with ``use = "ray"`` pointed at it; what the clients
saw is written to OUT.json for the test to assert on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from heirloom.wire.auth import CurveClient
from heirloom.wire.client import RemoteError
from tests.daemons import Daemon
from tests.helpers import free_tcp_address, run_heirloom, write
from tests.test_resources import TRAIN_PROFILE  # [models.m] comes last: lines added go there

PROFILE = """
[resources]
use = "ray"
address = "{address}"
workers = 2
num_cpus = 0.5
placement = "spread"
max_restarts = 2

[server]
heartbeat = 0.5

[apis.echo]
use = "echo"

[apis.t]
use = "testing"
"""

DEADLINE_S = 10.0


def ready_workers(daemon: Daemon, count: int, timeout: float, curve: CurveClient | None = None) -> list[dict[str, Any]]:
    """``_ready``'s workers once ``count`` are ready and placed (node ids known)."""
    deadline = time.monotonic() + timeout
    workers: list[dict[str, Any]] = []
    with daemon.client(timeout=2.0, curve=curve) as client:
        while time.monotonic() < deadline:
            try:
                workers = client.call("_ready")["workers"]
            except RemoteError:
                workers = []
            placed = [w for w in workers if w.get("ready") and w.get("node_id")]
            if len(placed) >= count:
                return placed
            time.sleep(0.2)
    raise TimeoutError(f"{count} placed workers not ready after {timeout}s: {workers}\n{daemon.log()}")


def use_up_restarts(daemon: Daemon, restarts: int) -> list[dict[str, Any]]:
    """SIGKILL the one worker ``restarts + 1`` times (Ray restarts its actor ``restarts``
    times, then gives up on it); ``_ready``'s workers once one is ready again."""
    for _ in range(restarts + 1):
        (victim,) = ready_workers(daemon, 1, timeout=90)
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(w["pid"] == victim["pid"] for w in ready_workers(daemon, 0, 5)):
            time.sleep(0.1)
    return ready_workers(daemon, 1, timeout=120)


def calls(daemon: Daemon, route: str, bodies: list[Any]) -> list[tuple[str, float]]:
    """(status, seconds) for each body, all sent at once."""
    with daemon.client(timeout=DEADLINE_S) as client:
        sent = time.monotonic()
        futures = [client.submit(route, body, timeout=DEADLINE_S) for body in bodies]
        wait(futures, timeout=DEADLINE_S + 5)
        results = []
        for future in futures:
            if not future.done():
                results.append(("HUNG", time.monotonic() - sent))
                continue
            error = future.exception()
            status = "OK" if error is None else getattr(error, "code", type(error).__name__)
            results.append((status, time.monotonic() - sent))
        return results


def train(home: Path, resources: str) -> dict[str, Any]:
    """In a fresh home: ``heirloom train`` a base project here, then a child project that
    warm-starts from it with ``resources``; returns the child's stored version."""
    env = {"HEIRLOOM_HOME": str(home), "HEIRLOOM_PLUGINS": "tests.toys"}
    base = write(home / "base.toml", TRAIN_PROFILE.format(project="base", resources=""))
    run_heirloom("train", str(base), env=env, timeout=180).check_returncode()
    child = TRAIN_PROFILE.format(project="child", resources=resources) + 'inherit = "base/m"\n'
    trained = run_heirloom("train", str(write(home / "child.toml", child)), env=env, timeout=180)
    shown = run_heirloom("models", "show", "child/m", "--json", env=env)
    return {"train": trained.returncode, "log": trained.stderr[-3000:], "version": json.loads(shown.stdout or "{}")}


def autoscale(tmp: Path, address: str) -> list[int]:
    """``expected_workers`` while a queue of slow requests builds up behind one worker of a
    pool that may grow to two (``target_in_flight = 2``)."""
    profile = PROFILE.format(address=address).replace(
        "workers = 2", "workers = 1\nmin_workers = 1\nmax_workers = 2\ntarget_in_flight = 2"
    )
    (tmp / "autoscale").mkdir()
    daemon = Daemon(tmp / "autoscale", profile=profile)
    seen = []
    try:
        ready_workers(daemon, 1, timeout=90)
        with daemon.client(timeout=60) as client:
            queued = [client.submit("t.slow", {"ms": 200}, timeout=60) for _ in range(150)]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(f.done() for f in queued):
                seen.append(client.call("_ready")["expected_workers"])
                time.sleep(0.5)
            wait(queued, timeout=60)
    finally:
        daemon.terminate(timeout=60)
    return seen


def unplaceable(tmp: Path, address: str) -> dict[str, Any]:
    """A pool asking more CPUs than any node has waits: ``_ready`` says why, and the CLI probe too."""
    (tmp / "unplaceable").mkdir()
    daemon = Daemon(
        tmp / "unplaceable", profile=PROFILE.format(address=address).replace("num_cpus = 0.5", "num_cpus = 8")
    )
    try:
        deadline = time.monotonic() + 60
        with daemon.client(timeout=DEADLINE_S) as client:
            while not (said := client.call("_ready")["start_failure"]) and time.monotonic() < deadline:
                time.sleep(0.5)
        probe = run_heirloom("call", "_ready", "--connect", daemon.address, "--timeout", str(DEADLINE_S))
        return {"start_failure": said, "probe": probe.stderr, "probe_exit": probe.returncode}
    finally:
        daemon.terminate(timeout=60)


def over_curve(tmp: Path, address: str) -> dict[str, Any]:
    """A broker serving Curve: its Ray actors join its tcp:// worker endpoint with the key it
    hands them (through the environment Ray gives them), and clients are served."""
    keys = tmp / "keys"
    for folder, name in [("server", "server"), ("clients", "alice")]:
        run_heirloom("keys", "new", str(keys / folder), "--name", name).check_returncode()
    (tmp / "curve").mkdir()
    daemon = Daemon(
        tmp / "curve",
        "--worker-bind", free_tcp_address(),
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        profile=PROFILE.format(address=address),
        address=free_tcp_address(),
    )  # fmt: skip
    curve = CurveClient(keys / "clients" / "alice.key_secret", keys / "server" / "server.key")
    report: dict[str, Any] = {}
    try:
        report["placed"] = len(ready_workers(daemon, 2, timeout=90, curve=curve))
        with daemon.client(curve=curve, timeout=DEADLINE_S) as client:
            report["echoed"] = [client.call("echo.echo", i) for i in range(20)]
    finally:
        report["exit_code"] = daemon.terminate(timeout=60)
        report["log_tail"] = daemon.log()[-2000:]
        report["stop_looked_like_a_crash"] = [
            line for line in daemon.log().splitlines() if "unexpected system error" in line or "exited with 0" in line
        ]
    return report


def pool_closed(address: str, endpoint: str) -> None:
    """In a process of its own: close a pool while a scale-down's thread waits for a worker that never
    started to drain (no node can place it), and its refresh thread asks the other; print which of the
    pool's threads outlived close() and whether Ray is initialised once they end."""
    from heirloom_plugins.ray_cluster import RayResources
    from heirloom_plugins.ray_cluster.cluster import REFRESH_S, RETIRE_GRACE_S, RayWorkerPool

    before = set(threading.enumerate())
    pool = RayWorkerPool(RayResources(address=address, workers=2, num_cpus=8), ["worker", "p", "--connect", endpoint])
    pool.scale(1)  # its thread waits up to RETIRE_GRACE_S for the unplaced actor to drain
    time.sleep(REFRESH_S * 1.5)  # the refresh thread has begun asking the actors
    ours = [t for t in threading.enumerate() if t not in before and not t.name.startswith("ray_")]
    pool.close()
    outlived = [t.name for t in ours if t.is_alive()]
    for thread in ours:
        thread.join(RETIRE_GRACE_S + 10)
    print(json.dumps({"outlived_close": outlived, "ray_initialized": ray.is_initialized()}))


def close_race(tmp: Path, cluster: Cluster) -> dict[str, Any]:
    """A pool's close() called ray.shutdown() while its threads could still call Ray (checker 291 F1): what
    pool_closed prints, in a process of its own, and logs, with a worker endpoint on loopback while a node of
    the cluster has another address (checker 291 F5). HOME keeps here a token a start of Ray from a thread
    writes."""
    elsewhere = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2")  # lo holds all of 127/8
    cluster.wait_for_nodes()
    script = f"from tests.ray_scenarios import pool_closed; pool_closed({cluster.address!r}, 'tcp://127.0.0.1:5600')"
    env = {**os.environ, "HOME": str(tmp)}
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    finally:
        cluster.remove_node(elsewhere)
    return {"exit_code": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-3000:]}


def head_down(tmp: Path, cluster: Cluster) -> dict[str, Any]:
    """The whole cluster gone under a serving pool (last: nothing runs on it after): its actors' handles die
    with it though no restart was used; the pool logged "max_restarts = N used up" as an ERROR for each and
    started new ones into the cluster that was gone (checker 266). What it logs until it says the cluster
    does not answer."""
    (tmp / "head_down").mkdir()
    profile = PROFILE.format(address=cluster.address).replace("workers = 2", "workers = 1")
    daemon = Daemon(tmp / "head_down", profile=profile)
    try:
        ready_workers(daemon, 1, timeout=90)
        cluster.shutdown()
        deadline = time.monotonic() + 60
        while " does not answer (" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        return {"log": daemon.log()[-4000:]}
    finally:
        daemon.terminate(timeout=30)


def serve(out: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    report: dict[str, Any] = {"nodes": [n["NodeID"] for n in (ray.init(address=cluster.address) and ray.nodes())]}
    ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(
            Path(tmp),
            "--worker-bind",
            free_tcp_address(),
            profile=PROFILE.format(address=cluster.address),
        )
        try:
            workers = ready_workers(daemon, 2, timeout=90)
            report["placed"] = workers
            report["echo"] = [status for status, _ in calls(daemon, "echo.echo", [{"i": i} for i in range(1000)])]
            with daemon.client(timeout=DEADLINE_S) as client:
                report["second_node_pids"] = [w["pid"] for w in workers if w["node_id"] == second.node_id]
                slow = [client.submit("t.slow", {"ms": 300}, timeout=DEADLINE_S) for _ in range(64)]
                time.sleep(0.3)
                removed_at = time.monotonic()
                cluster.remove_node(second)
                wait(slow, timeout=DEADLINE_S + 5)
                report["in_flight"] = [
                    "HUNG" if not f.done() else ("OK" if f.exception() is None else f.exception().code) for f in slow
                ]
                report["answered_within_s"] = time.monotonic() - removed_at
            recovered = ready_workers(daemon, 2, timeout=90)
            report["recovered"] = recovered
            report["after"] = [status for status, _ in calls(daemon, "echo.echo", [{"i": i} for i in range(100)])]
            with daemon.client(timeout=DEADLINE_S) as client:
                load = [client.submit("t.slow", {"ms": 20}, timeout=DEADLINE_S) for _ in range(150)]
                report["scale_to_1"] = client.call("_scale", {"workers": 1})
                load += [client.submit("t.slow", {"ms": 20}, timeout=DEADLINE_S) for _ in range(150)]
                wait(load, timeout=DEADLINE_S * 3)
                report["during_scale"] = ["OK" if f.exception() is None else f.exception().code for f in load]
                deadline = time.monotonic() + 30
                while len(client.call("_ready")["workers"]) != 1 and time.monotonic() < deadline:
                    time.sleep(0.2)
                report["after_scale"] = client.call("_ready")
            report["restarts_used_up"] = use_up_restarts(daemon, restarts=2)
            report["gave_up_logged"] = "a ray worker actor died for good (max_restarts = 2 used up" in daemon.log()
            report["restart_logged"] = " was restarted: its worker pid " in daemon.log()
        finally:
            report["exit_code"] = daemon.terminate(timeout=60)
            report["log_tail"] = daemon.log()[-4000:]
            report["autoscale"] = autoscale(Path(tmp), cluster.address)
            report["curve"] = over_curve(Path(tmp), cluster.address)
            report["unplaceable"] = unplaceable(Path(tmp), cluster.address)
            report["close_race"] = close_race(Path(tmp), cluster)
        try:
            report["train"] = {
                where: train(Path(tmp) / where, resources)
                for where, resources in [
                    ("local", ""),
                    ("ray", f'use = "ray"\naddress = "{cluster.address}"\nnum_cpus = 0.5'),
                ]
            }
            report["head_down"] = head_down(Path(tmp), cluster)
        finally:
            cluster.shutdown()
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    {"serve": serve}[sys.argv[1]](Path(sys.argv[2]))
