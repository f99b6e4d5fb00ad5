"""``serve --workers N``: a broker spreads requests over worker processes and survives them."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import pytest
import zmq

import heirloom
from heirloom.wire.broker_versions import swap_grace
from heirloom.wire.broker_workers import WORKER_LINES_PER_MINUTE, read_heartbeat
from heirloom.wire.client import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    RemoteError,
    ResourceExhausted,
    Unavailable,
)
from heirloom.wire.inputs import MAX_SCHEMA_DEPTH, json_schema
from heirloom.wire.metrics import WorkerTotals
from heirloom.wire.protocol import CONTROL, packb, unpackb
from heirloom.wire.server import TAG_BYTES
from heirloom.wire.stats import BATCH_BUCKETS, SECONDS_BUCKETS
from heirloom.wire.strays import WELCOME
from tests.daemons import PROFILE, Daemon
from tests.helpers import HEIRLOOM, free_port, free_tcp_address, run_heirloom, write
from tests.testing_api import chain


def _worker_env() -> dict[str, str]:
    """The environment a worker process needs to load the test api the broker's profile serves."""
    return {**os.environ, "HEIRLOOM_PLUGINS": "tests.testing_api"}


def _worker_command(tmp_path: Path, address: str) -> list[str]:
    """``heirloom worker`` for the profile a ``Daemon(tmp_path, ...)`` serves, connecting to ADDRESS."""
    return [*HEIRLOOM, "worker", str(tmp_path / "daemon.toml"), "--connect", address]


def _until_healthy(client, daemon: Daemon) -> float:
    """Call ``_health`` until a broker with no worker yet answers it; the 30 s deadline it set, for what follows."""
    deadline = time.monotonic() + 30
    while True:
        try:
            client.call("_health")
            return deadline
        except (Unavailable, DeadlineExceeded):
            assert time.monotonic() < deadline, daemon.log()


def _ready_workers(client) -> list[dict]:
    """The workers ``_ready`` lists; none while the broker is not yet answering."""
    try:
        return client.call("_ready")["workers"]
    except (Unavailable, DeadlineExceeded):
        return []


@contextlib.contextmanager
def _open_worker_endpoint(tmp_path: Path) -> Iterator[tuple[Daemon, str, zmq.Context]]:
    """A ready broker with two local workers and its worker endpoint on a free tcp port, for the
    peers a test connects from the context given; at the end the broker must stop with exit 0."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "2", "--worker-bind", worker_address)
    context = zmq.Context()
    try:
        daemon.wait_ready()
        yield daemon, worker_address, context
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def _worker_pids(client) -> list[int]:
    return sorted(w["pid"] for w in client.call("_ready")["workers"] if w["ready"])


def _locals(client, pids: list[int]) -> list[dict]:
    return [w for w in client.call("_ready")["workers"] if w["pid"] in pids]


def test_requests_spread_over_workers_and_ready_tells_the_truth(tmp_path):
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    with daemon.client(timeout=10) as client:
        ready = client.call("_ready")
        assert ready["ready"] is True and ready["expected_workers"] == 2 and len(ready["workers"]) == 2
        futures = [client.submit("t.slow", {"ms": 30}) for _ in range(20)]
        [f.result() for f in futures]
        pids = {client.call("t.pid") for _ in range(20)} | {client.submit("t.pid").result().body for _ in range(5)}
        assert pids <= set(_worker_pids(client))
        stats = client.call("_stats")
        assert stats["routes"]["t.slow"]["count"] == 20
        assert sum(w["in_flight"] for w in stats["workers"]) == 0
        assert any(r["name"] == "t.slow" for r in client.call("_routes")["routes"])
        with pytest.raises(RemoteError) as refused:  # local workers follow --workers
            client.call("_scale", {"workers": 3})
        assert refused.value.code == "INVALID_ARGUMENT" and "places workers" in str(refused.value)
        assert refused.value.field == "header.route"  # every INVALID_ARGUMENT of the daemon names a field
        for sent, meant in (("_helth", "_health"), ("T.SLOW", "t.slow")):  # hints as one process gives them
            with pytest.raises(RemoteError, match=f"no route '{sent}'; did you mean '{meant}'"):
                client.call(sent)
        with pytest.raises(RemoteError) as caught:
            client.call("x" * 200)
        assert caught.value.message == f"no route '{'x' * 80}...' (call _routes for the list)"
    assert daemon.terminate() == 0


def test_more_local_workers_than_the_cores_can_run_are_refused_and_a_stop_ends_the_spawning(tmp_path):
    """``--workers 100000`` (a typo for 10) spawned 1,146 workers and ran the machine out of
    memory; a stop signal meanwhile did not stop the spawning."""
    from heirloom.wire.cores import available_cores
    from heirloom.wire.local_workers import WORKERS_PER_CORE, LocalWorkers

    most = WORKERS_PER_CORE * available_cores()
    refused = run_heirloom("serve", "minimal", "--bind", free_tcp_address(), "--workers", str(most + 1), timeout=60)
    said = f"error: {most + 1} workers (--workers, [server] workers): at most {most} local ones on this machine's"
    assert refused.returncode == 2 and said in refused.stderr  # README: a flag that cannot work
    checked = run_heirloom("profile", "check", "minimal", "--set", f"server.workers={most + 1}", timeout=60)
    assert checked.returncode == 2 and f"server.workers: {most + 1}: at most {most} local ones" in checked.stderr
    workers = LocalWorkers(["--version"], most)  # each prints the version and exits
    workers.start(stopping=lambda: len(workers.processes) == 2)
    assert len(workers.processes) == 2
    for local in workers.processes:
        assert local.process.wait(30) == 0


def test_a_mix_of_versions_a_failed_load_caused_says_the_workers_error_not_a_guess():
    """h428 F1: a worker that could not load the promoted version (a damaged blob in its own store) kept serving the
    old one, which it said in its heartbeat, yet the broker's warning guessed "another profile, --set ... serve or
    artifact store?"."""
    from heirloom.wire.broker_versions import VersionWatch
    from heirloom.wire.broker_workers import Worker

    def worker(pid: int, version: str, error: str | None = None) -> Worker:
        served = Worker(pid.to_bytes(4, "little"))
        served.pid, served.ready = pid, True
        served.status = {"models": {"m": {"version": version, "digest": version[-1] * 64, "error": error}}}
        return served

    failed = "could not load team/m@5: artifact team/m@5 is corrupt"
    watch = VersionWatch(heartbeat=1.0, reload_interval=0.0)
    ready = [worker(11, "team/m@4", failed), worker(12, "team/m@5"), worker(13, "team/m@5")]
    assert watch.check(ready, 100.0) == []
    ((_, line),) = watch.check(ready, 131.0)
    assert line.endswith(f"clients get replies of each version by share; worker pid 11: {failed}"), line
    watch = VersionWatch(heartbeat=1.0, reload_interval=0.0)
    ready = [worker(11, "team/m@4"), worker(12, "team/m@5")]
    watch.check(ready, 100.0)
    ((_, line),) = watch.check(ready, 131.0)
    assert line.endswith("(a worker started with another profile, --set models.m.serve or artifact store?)"), line


def test_killed_worker_fails_its_requests_and_is_replaced(tmp_path):
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    with daemon.client(timeout=20, retries=0) as client:
        before = _worker_pids(client)
        finished: list[tuple[float, BaseException | None]] = []
        keys = [f"k{number}" if number % 4 < 2 else None for number in range(8)]  # each worker gets both kinds
        futures = [client.submit("t.slow", {"ms": 3000}, idempotency_key=key) for key in keys]
        for future in futures:
            future.add_done_callback(lambda f: finished.append((time.monotonic(), f.exception())))
        time.sleep(0.5)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        wait(futures, timeout=20)
        failed = [(at, e) for at, e in finished if e is not None]
        succeeded = [at for at, e in finished if e is None]
        assert failed and succeeded, "both workers had requests in flight"
        assert all(isinstance(e, Unavailable) and "exited" in e.message for _, e in failed)
        for key, future in zip(keys, futures, strict=True):  # h423 F3: a keyed write's retry ran again elsewhere
            if (error := future.exception()) is not None:
                assert error.retryable is (key is None), error
                assert error.message.endswith("a retry may run it twice" if key else "retry it if it is idempotent")
        # failed at once: before the surviving worker finished its 3 s of compute
        assert max(at for at, _ in failed) < min(succeeded)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = _worker_pids(client)
            if len(pids) == 2 and victim not in pids:
                break
            time.sleep(0.2)
        assert len(pids) == 2 and victim not in pids
        assert client.call("t.slow", {"ms": 1}) == {"slept_ms": 1}
    assert daemon.terminate() == 0
    assert "exited with -9" in daemon.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_the_broker_and_its_workers(tmp_path, workers):
    """A daemon or worker skips the interpreter's teardown once its system has stopped (torch's
    unloading cost a worker 0.55 s of CPU; thirteen brokers stopped at once on 2 cores SIGKILLed
    workers that had stopped cleanly): what the exit does first still runs, a plugin's thread
    ends and its atexit handler writes, in every process."""
    exits = tmp_path / "exits.txt"
    daemon = Daemon(tmp_path, "--workers", str(workers), "--set", f"apis.t.at_exit={exits}")
    daemon.wait_ready()
    with daemon.client(timeout=20, retries=0) as client:
        pids = {w["pid"] for w in client.call("_ready").get("workers", [])} or {daemon.process.pid}
        futures = [client.submit("t.slow", {"ms": 300}) for _ in range(16)]
        time.sleep(0.1)
        daemon.process.send_signal(signal.SIGTERM)
        assert all(f.result().body == {"slept_ms": 300} for f in futures)
    assert daemon.process.wait(30) == 0
    assert {int(pid) for pid in exits.read_text().split()} == pids  # every process that served, once
    assert daemon.log().rstrip().splitlines()[-1].endswith("stopped")  # the last log line, flushed


@pytest.mark.parametrize("workers", [1, 2])
def test_a_plugins_thread_that_never_ends_does_not_keep_a_stopped_daemon_alive(tmp_path, workers):
    """A plugin's thread that is no daemon thread and never ends kept ``heirloom serve`` alive after its log said
    "stopped", deaf to SIGTERM, until its supervisor killed it, with nothing said why (checker h364 F2)."""
    daemon = Daemon(tmp_path, "--workers", str(workers), "--set", "apis.t.leak_thread=true")
    daemon.wait_ready()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0, daemon.log()
    said = "thread(s) still running 5 s after the stop (start a plugin's threads as daemon threads, or end them"
    assert said in daemon.log() and "a plugin's endless thread" in daemon.log()


def test_workers_drain_with_the_broker_so_the_daemon_stops_within_one_grace(tmp_path):
    """The broker waited out its grace before telling the workers, which then started theirs
    (twice --grace), and SIGKILLed a worker still inside its own, so it never stopped."""
    daemon = Daemon(tmp_path, "--workers", "2", grace=1)
    daemon.wait_ready()
    with daemon.client(timeout=20, retries=0) as client:
        futures = [client.submit("t.slow", {"ms": 2500}) for _ in range(6)]
        time.sleep(0.3)
        daemon.process.send_signal(signal.SIGTERM)
        wait(futures, timeout=20)
        assert all(isinstance(f.exception(), Unavailable) for f in futures)
    assert daemon.process.wait(30) == 0
    log = daemon.log()
    assert "did not exit within" not in log and log.count("heirloom.wire.daemon: stopped") == 2, log


def test_a_request_reaching_a_broker_whose_workers_are_stopping_is_answered_unavailable(tmp_path):
    """SRE drill: with nothing in flight the broker stopped reading its clients while its
    workers flushed and stopped (2 s), so a request then got no reply at all (deploy/README.md
    says a draining daemon answers new requests UNAVAILABLE); its client waited out its timeout."""
    daemon = Daemon(tmp_path, "--workers", "2", profile='[apis.t]\nuse = "testing"\nstop_ms = 3000\n')
    daemon.wait_ready()
    with daemon.client(timeout=20, retries=0) as client:
        client.call("t.slow", {"ms": 1})  # connected
        daemon.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "draining: 0 request(s) in flight" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the workers are inside their 3 s stop
        began = time.monotonic()
        with pytest.raises(Unavailable, match="draining"):
            client.call("t.slow", {"ms": 1})
        assert time.monotonic() - began < 2
    assert daemon.process.wait(30) == 0


def test_a_worker_told_to_stop_under_load_drains_without_failing_a_request(tmp_path):
    """A remote worker's SIGTERM: the broker kept sending it work, refused as 'draining'."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    command = _worker_command(tmp_path, worker_address)
    env = _worker_env()
    workers: list[subprocess.Popen] = []
    try:
        probe = run_heirloom("call", "_ready", "--connect", daemon.address, "--timeout", "30")
        assert probe.returncode == 3 and "not ready: 0 of 1 workers ready" in probe.stderr, "a readiness probe"
        workers += [subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
        daemon.wait_ready()
        with daemon.client(timeout=20, retries=0) as client:
            deadline = time.monotonic() + 30
            while len(_worker_pids(client)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            futures = [client.submit("t.slow", {"ms": 20}) for _ in range(300)]
            time.sleep(0.2)
            workers[0].send_signal(signal.SIGTERM)
            futures += [client.submit("t.slow", {"ms": 20}) for _ in range(300)]
            wait(futures, timeout=60)
            assert [f.exception() for f in futures if f.exception() is not None] == []
            assert workers[0].wait(30) == 0
            assert _worker_pids(client) == [workers[1].pid]
        assert f"worker pid {workers[0].pid} drained and stopped" in daemon.log()
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        for worker in workers:
            worker.kill()
        assert stopped == 0


def test_a_remote_worker_that_falls_behind_is_back_pressure_not_unavailable(tmp_path):
    """3 clients pipelining 600 requests of 200 KB each to a healthy worker on another host got
    51 UNAVAILABLE 'cannot be reached (Resource temporarily unavailable)': the broker's queue for
    it was full, the worker was there. A worker paused (SIGSTOP) while 3,000 requests arrive
    falls behind the same way, deterministically."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    command = _worker_command(tmp_path, worker_address)
    worker = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=_worker_env())
    context = zmq.Context()
    try:
        daemon.wait_ready()
        flood = context.socket(zmq.DEALER)
        flood.connect(daemon.address)
        body = packb({"pad": "x" * 20_000})
        worker.send_signal(signal.SIGSTOP)
        statuses: dict[str, int] = {}
        messages: dict[str, str] = {}

        def read_replies(timeout_ms: int) -> None:
            while flood.poll(timeout_ms):
                _, header, reply = flood.recv_multipart()
                status = unpackb(header)["status"]
                statuses[status] = statuses.get(status, 0) + 1
                messages.setdefault(status, unpackb(reply).get("message", "") if status != "OK" else "")

        for i in range(3000):  # past what the broker queues for one worker and what the network holds
            flood.send_multipart([b"HLM1", packb({"id": i, "route": "echo.echo"}), body])
            read_replies(0)  # the refusals come at once
        read_replies(500)
        worker.send_signal(signal.SIGCONT)  # paused for under a second: not its heartbeats' three
        deadline = time.monotonic() + 30
        while sum(statuses.values()) < 3000:
            assert time.monotonic() < deadline, statuses
            read_replies(100)
        assert "UNAVAILABLE" not in statuses, (statuses, messages)
        assert statuses["OK"] + statuses["RESOURCE_EXHAUSTED"] == 3000, statuses
        assert re.fullmatch(
            rf"the broker's queue for worker pid {worker.pid} is full \(\d+ requests in flight to it\); retry",
            messages["RESOURCE_EXHAUSTED"],
        )
        with daemon.client(timeout=10) as client:  # the worker stayed, and the refusals are counted
            assert _worker_pids(client) == [worker.pid]
            counted = client.call("_stats")["routes"]["echo.echo"]["errors"]
            assert counted == {"RESOURCE_EXHAUSTED": statuses["RESOURCE_EXHAUSTED"]}, counted
    finally:
        worker.send_signal(signal.SIGCONT)
        context.destroy(linger=0)
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        worker.kill()
        assert stopped == 0


def test_a_remote_worker_lost_with_requests_in_flight_during_the_drain_makes_the_stop_unclean(tmp_path):
    """h368 F2: a remote worker paused (SIGSTOP) with requests in flight as the broker drains is declared dead and
    its requests fail UNAVAILABLE; the broker said a plain `stopped` and exited 0, as after a clean drain."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address, "--grace", "6")
    worker = subprocess.Popen(_worker_command(tmp_path, worker_address), stderr=subprocess.DEVNULL, env=_worker_env())
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20, retries=0) as client:
            worker.send_signal(signal.SIGSTOP)
            futures = [client.submit("echo.echo", i) for i in range(5)]
            time.sleep(0.3)
            daemon.process.send_signal(signal.SIGTERM)
            errors = [future.exception(timeout=20) for future in futures]
        assert daemon.process.wait(timeout=30) == 1
        assert all(isinstance(e, Unavailable) and "missed 3 heartbeats" in e.message for e in errors), errors
        assert "stopped; a worker did not stop cleanly" in daemon.log()
    finally:
        worker.kill()
        daemon.kill()


def test_a_remote_worker_killed_hard_is_lost_at_the_first_request_that_cannot_reach_it(tmp_path):
    """kill -9 of one of two remote workers: with nothing in flight it was the least busy, and every send to it
    failed at once (EHOSTUNREACH), so until it missed three heartbeats it drew 8,099 of 9,905 requests, each
    UNAVAILABLE 'cannot be reached', while the other worker sat ready. The first failed send now drops it (its
    requests in flight fail, it counts as lost) and that request goes to the other worker."""
    worker_address, metrics_port = free_tcp_address(), free_port()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address, "--metrics-port", str(metrics_port))
    command = _worker_command(tmp_path, worker_address)
    env = _worker_env()
    victim, survivor = [subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
    context = zmq.Context()
    window, total = 8, 400  # requests a client keeps in flight, and sends after the kill
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while _worker_pids(client) != sorted([victim.pid, survivor.pid]):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
        victim.kill()
        victim.wait(30)  # its connection to the broker closed with it; nothing was in flight on it
        stream = context.socket(zmq.DEALER)
        stream.connect(daemon.address)
        sent, answered, served_by, failed = 0, 0, Counter(), []
        while answered < total:
            while sent < total and sent - answered < window:
                header = packb({"id": sent, "route": "t.pid", "deadline_ms": 60_000})
                stream.send_multipart([b"HLM1", header, packb(None)])
                sent += 1
            assert stream.poll(60_000), daemon.log()  # a hang guard, not a timing
            _, header, body = stream.recv_multipart()
            answered += 1
            if unpackb(header)["status"] == "OK":
                served_by[unpackb(body)] += 1
            else:
                failed.append(unpackb(body))
        # only what was in flight on it when the broker learnt it was gone fails: at most the window
        assert len(failed) <= window and served_by == {survivor.pid: total - len(failed)}, (failed[:3], served_by)
        for error in failed:
            assert error["code"] == "UNAVAILABLE" and error["retryable"] is True and error["retry_after_ms"] > 0
            assert re.fullmatch(
                rf"worker pid {victim.pid} (cannot be reached \(Host unreachable\)|missed 3 heartbeats) while"
                " handling the request; it may have run: retry it if it is idempotent",
                error["message"],
            ), error
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert re.search(r"^heirloom_workers_lost_total 1(\.0)?$", response.read().decode(), re.M)
        survivor.kill()  # with no other worker ready, a request it cannot be sent is UNAVAILABLE, to retry
        survivor.wait(30)
        with daemon.client(timeout=30, retries=0) as client:
            with pytest.raises(Unavailable) as refused:
                client.call("t.pid")
            assert refused.value.retryable and refused.value.retry_after_ms, refused.value
            said = refused.value.message
            assert re.search(rf"worker pid {survivor.pid} (cannot be reached|missed 3)|no worker", said), said
    finally:
        context.destroy(linger=0)
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        victim.kill()
        survivor.kill()
        assert stopped == 0
    log = daemon.log()
    assert f"worker pid {victim.pid} cannot be reached (Host unreachable)" in log or "missed 3 heartbeats" in log


def test_a_worker_with_a_slower_heartbeat_than_its_broker_is_not_declared_dead(tmp_path):
    """Broker at 0.2 s, worker at the default 1 s: it was declared dead every second."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address, "--set", "server.heartbeat=0.2")
    command = _worker_command(tmp_path, worker_address)
    worker = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=_worker_env())
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10, retries=0) as client:
            until = time.monotonic() + 3
            while time.monotonic() < until:
                assert client.call("echo.echo", 1) == 1
                time.sleep(0.05)
        assert "missed" not in daemon.log()
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        worker.kill()
        assert stopped == 0


def test_a_broker_paused_past_three_heartbeats_keeps_its_workers(tmp_path):
    """A broker stopped for 4 s (a paused VM, a debugger) woke to heartbeats older than three
    intervals and SIGKILLed its healthy workers for a silence that was its own: it reads what
    they sent meanwhile first."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.heartbeat=0.2")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20) as client:
            pids = _worker_pids(client)
            for _ in range(5):  # each wake-up races the heartbeats that arrived meanwhile
                daemon.process.send_signal(signal.SIGSTOP)
                time.sleep(1)  # five heartbeats
                daemon.process.send_signal(signal.SIGCONT)
                assert client.call("echo.echo", 1) == 1
                time.sleep(0.5)
                assert _worker_pids(client) == pids, daemon.log()
        assert "killed for its silence" not in daemon.log()
    finally:
        daemon.process.send_signal(signal.SIGCONT)
        assert daemon.terminate() == 0


def test_a_starting_worker_silent_past_three_heartbeats_is_given_time(tmp_path):
    """Thirteen daemons starting at once on two cores starved their workers, importing torch,
    past three heartbeats: SIGKILLed and respawned, they took 109 s to be ready. A local worker
    that is starting may be silent ten times as long as a ready one."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.heartbeat=0.2", "--set", "apis.t.start_ms=5000")
    try:
        with daemon.client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while len(starting := sorted(w["pid"] for w in _stats_or_none(client, "_ready") if not w["ready"])) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.05)
            for pid in starting:  # silent for ten heartbeats, the broker's patience three
                os.kill(pid, signal.SIGSTOP)
            time.sleep(2)
            for pid in starting:
                os.kill(pid, signal.SIGCONT)
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            assert _worker_pids(client) == starting, daemon.log()
        assert "killed for its silence" not in daemon.log()
    finally:
        assert daemon.terminate() == 0


def test_workers_that_connect_as_their_broker_stops_drain_without_false_advice(tmp_path):
    """h316 F3: a broker stopped while its workers connected ignored their first heartbeats (new in
    its drain); each worker, stopped too, logged "ready" after its "draining" line and a WARNING to
    check --connect, the broker's own address. The broker answers such a worker DRAIN, and a draining
    worker neither says ready nor doubts its broker. Deterministic: the broker is held (SIGSTOP) while
    the workers connect, and they are held while it drains, so their heartbeats reach it draining."""
    daemon = Daemon(tmp_path, "--workers", "2", "--log-format", "json", "--set", "apis.t.start_ms=1500")
    held: list[int] = []
    try:
        workers = _logged_pids(daemon, "spawned worker pid ", 2, by=daemon.process.pid)
        workers = [int(line["message"].rsplit(" ", 1)[1]) for line in workers]
        daemon.process.send_signal(signal.SIGSTOP)  # reads no heartbeat: nothing welcomes the workers
        held.append(daemon.process.pid)
        for pid in workers:
            _logged_pids(daemon, "worker connecting", 1, by=pid)
        time.sleep(0.2)  # their stop signals' handlers are set just after that line
        for pid in workers:  # and their connections wait on the held broker's greeting: no heartbeat sent
            os.kill(pid, signal.SIGSTOP)
            held.append(pid)
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.send_signal(signal.SIGCONT)
        _logged_pids(daemon, "draining", 1, by=daemon.process.pid)
        time.sleep(0.3)  # the broker SIGTERMs its workers as it stops (pending while they are held)
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        held.clear()
        assert daemon.process.wait(60) == 0, daemon.log()
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    lines = _json_lines(daemon)
    for pid in workers:
        said = [line["message"] for line in lines if line["pid"] == pid]
        assert any(message.startswith("draining") for message in said), said
        after = said[next(i for i, message in enumerate(said) if message.startswith("draining")) :]
        assert not [message for message in after if message.startswith("ready")], said
        assert not [message for message in said if "has not answered as a broker" in message], said
        assert "stopped" in said, said


def test_a_remote_worker_that_connects_to_a_draining_broker_is_told_to_drain(tmp_path):
    """h316 F3: a worker that connected while its broker drained was ignored: it sat there, warned
    after three heartbeats to check --connect (the right address), and outlived the broker, retrying.
    The broker answers it DRAIN (still not taking it, nor waiting for it): it stops, exit 0."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "2", "--worker-bind", worker_address, grace=30)
    command = _worker_command(tmp_path, worker_address)
    late = None
    try:
        daemon.wait_ready()
        with daemon.client(timeout=30) as client:
            # keeps the broker draining while the late worker starts: 4 s were too few for one at load 11 in CI
            slow = client.submit("t.slow", {"ms": 15000})
            time.sleep(0.5)
            daemon.process.send_signal(signal.SIGTERM)
            daemon.wait_logged("draining")
            env = _worker_env()
            late = subprocess.Popen(command, stderr=(tmp_path / "late.log").open("w"), env=env)
            assert late.wait(30) == 0, (tmp_path / "late.log").read_text()
            assert slow.result(30).body == {"slept_ms": 15000}
        assert daemon.process.wait(30) == 0, daemon.log()
        said = (tmp_path / "late.log").read_text()
        _, drains, after = said.partition("heirloom.server: draining")
        assert drains and "wire.daemon: stopped" in after and "ready" not in after, said
        assert "has not answered as a broker" not in said, said
    finally:
        daemon.kill()
        if late is not None:
            late.kill()


def _logged_pids(daemon: Daemon, starting: str, count: int, by: int) -> list[dict]:
    """The first ``count`` JSON log lines of process ``by`` whose message starts with ``starting`` (waited for)."""
    deadline = time.monotonic() + 60
    while True:
        found = [line for line in _json_lines(daemon) if line["pid"] == by and line["message"].startswith(starting)]
        if len(found) >= count:
            return found[:count]
        assert time.monotonic() < deadline and daemon.process.poll() is None, daemon.log()
        time.sleep(0.02)


def _json_lines(daemon: Daemon) -> list[dict]:
    """The daemon's (and its workers') JSON log lines written in full so far."""
    return [json.loads(line) for line in daemon.log().split("\n")[:-1] if line.startswith("{")]


def _stats_or_none(client, route: str) -> list[dict]:
    """The workers ``route`` lists, or none while the broker is not listening yet."""
    try:
        return client.call(route, timeout=1)["workers"]
    except (Unavailable, DeadlineExceeded):
        return []


def test_local_workers_stop_when_their_broker_is_killed(tmp_path):
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    with daemon.client(timeout=10) as client:
        pids = _worker_pids(client)
    daemon.process.kill()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if _running(pid)], daemon.log()
    assert "the broker (pid" in daemon.log() and "is gone; stopping" in daemon.log()


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_broker_stats_report_resources_models_and_daemon_wide_admission(tmp_path):
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    with daemon.client(timeout=10) as client:
        client.call("echo.echo", 1)
        stats = client.call("_stats")
        assert stats["resources"] == {"in_flight": 0, "max_in_flight": 10000}
        assert "models" in stats and stats["routes"]["echo.echo"]["count"] == 1
        # each local worker computes on its share of the cores, not on all of them
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        assert [worker["resources"]["threads"] for worker in stats["workers"]] == [share, share]
    assert daemon.terminate() == 0


def test_a_retry_with_an_idempotency_key_reaches_the_first_attempts_worker(tmp_path):
    """Each worker keeps its own idempotency cache: the broker sends a key to one worker."""
    daemon = Daemon(tmp_path, "--workers", "2")
    daemon.wait_ready()
    with daemon.client(timeout=10) as client:
        for i in range(10):
            first = client.call("t.write", None, idempotency_key=f"order-{i}")
            assert [client.call("t.write", None, idempotency_key=f"order-{i}") for _ in range(3)] == [first] * 3
    assert daemon.terminate() == 0


def test_a_respawned_worker_takes_no_key_from_the_worker_that_stayed(tmp_path):
    """Keys went to ``hash % len(ready)``: when a killed worker's replacement became ready,
    about half the keys the surviving worker had answered moved to it, and their retries were
    recorded twice (feedback). A replacement takes its predecessor's slot; the others' keys stay."""
    daemon = Daemon(tmp_path, "--workers", "2")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            sent = {f"order-{i}": client.submit("t.pid", None, idempotency_key=f"order-{i}") for i in range(40)}
            first = {key: future.result(10).body for key, future in sent.items()}  # in flight together: both work
            victim, survivor = sorted(set(first.values()), key=list(first.values()).count)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while len(pids := _worker_pids(client)) < 2 or victim in pids:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            again = {key: client.call("t.pid", None, idempotency_key=key) for key in first}
        kept = [key for key, pid in first.items() if pid == survivor]
        assert kept and all(again[key] == survivor for key in kept), (first, again)  # answered from its cache
    finally:
        assert daemon.terminate() == 0


def test_a_key_answered_while_its_worker_was_being_replaced_is_not_run_again_by_the_replacement(tmp_path):
    """A keyed write whose worker slot was vacant ran on the other worker (OK); its retry, once
    the replacement was up, went to the replacement, which did not know it, and ran it again."""
    daemon = Daemon(tmp_path, "--workers", "2")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            victim, survivor = _worker_pids(client)
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while victim in _worker_pids(client):  # the broker has seen it go: its slot is vacant
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.02)
            during = {f"order-{i}": client.call("t.pid", None, idempotency_key=f"order-{i}") for i in range(40)}
            assert list(during.values()).count(survivor) > 30, during  # sent before the replacement was up
            while len(_worker_pids(client)) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            again = {key: client.call("t.pid", None, idempotency_key=key) for key in during}
        assert again == during, {key: (during[key], again[key]) for key in during if again[key] != during[key]}
    finally:
        assert daemon.terminate() == 0


def test_a_worker_that_joins_takes_no_key_answered_before_it_came(tmp_path):
    """Keys were hashed over the workers: a remote worker joining took about a third of the keys
    the others had answered, and their retries ran again on it (16 of 40 feedback writes twice)."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "2", "--worker-bind", worker_address)
    command = _worker_command(tmp_path, worker_address)
    joining = None
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20) as client:
            first = {f"order-{i}": client.call("t.pid", None, idempotency_key=f"order-{i}") for i in range(40)}
            env = _worker_env()
            joining = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
            deadline = time.monotonic() + 60
            while joining.pid not in _worker_pids(client):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            again = {key: client.call("t.pid", None, idempotency_key=key) for key in first}
            new: set[int] = set()
            for batch in range(50):  # a batch the broker reads one at a time all goes to one idle worker: try again
                sent = [client.submit("t.pid", None, idempotency_key=f"new-{batch}-{i}") for i in range(6)]
                new |= {future.result(10).body for future in sent}  # in flight together: the least busy takes each
                if joining.pid in new:
                    break
        assert again == first, {key: (first[key], again[key]) for key in first if again[key] != first[key]}
        assert joining.pid in new  # new keys reach it: it takes its share of the work
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        if joining is not None:
            joining.kill()
        assert stopped == 0


def test_a_worker_of_another_profile_gets_no_request_for_a_route_it_lacks(tmp_path):
    """A worker serving another profile was routed a share of every route (NOT_FOUND from it),
    and once the right workers were restarted it was "first ready": every route it lacked was
    NOT_FOUND, for good. Each route goes to the workers that serve it; one served before and
    served by no ready worker now is UNAVAILABLE, to retry."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    env = _worker_env()
    ours = _worker_command(tmp_path, worker_address)
    stray = subprocess.Popen([*HEIRLOOM, "worker", "minimal", "--connect", worker_address], env=env)
    right = subprocess.Popen(ours, stderr=subprocess.DEVNULL, env=env)
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20, retries=0) as client:
            deadline = time.monotonic() + 60
            while len(_worker_pids(client)) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            sent = [client.submit("t.pid", None) for _ in range(30)]  # in flight together: both workers idle
            assert {future.result(10).body for future in sent} == {right.pid}
            right.send_signal(signal.SIGTERM)
            assert right.wait(30) == 0
            while right.pid in _worker_pids(client):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            with pytest.raises(Unavailable, match=r"no ready worker serves t\.pid now"):
                client.call("t.pid", None)
            assert client.call("echo.echo", "still") == "still"  # what the stray serves, it answers
            right = subprocess.Popen(ours, stderr=subprocess.DEVNULL, env=env)
            while right.pid not in _worker_pids(client):
                assert time.monotonic() < deadline + 30, daemon.log()
                time.sleep(0.1)
            assert client.call("t.pid", None) == right.pid
        assert "serves other routes than the other ready workers" in daemon.log()
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        for worker in (stray, right):
            worker.kill()
        assert stopped == 0


def test_a_broker_is_not_ready_while_its_only_ready_worker_serves_another_profile(tmp_path):
    """A worker of another profile (``minimal``: echo alone) was enough for ``_ready`` to say ready, so a
    readiness probe sent traffic to a broker that answered none of its profile's other routes. Ready now
    means the ready workers serve every api of the broker's profile; ``_ready`` names the routes missing."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    env = _worker_env()
    stray = subprocess.Popen([*HEIRLOOM, "worker", "minimal", "--connect", worker_address], env=env)
    right = None
    try:
        with daemon.client(timeout=1.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            while not _worker_pids(client):  # the stray is ready
                assert time.monotonic() < deadline and stray.poll() is None, daemon.log()
                time.sleep(0.1)
            ready = client.call("_ready")
            assert ready["ready"] is False and ready["serving"] is False, ready  # its probes must not pass
            assert ready["missing_routes"] == ["t.*"], ready  # echo.* is served; t.* by no ready worker
            assert client.call("echo.echo", "hi") == "hi"  # what it serves, it answers
            # a route of its profile's missing api is to retry, as one served before is (was NOT_FOUND: checker 291 F2)
            with pytest.raises(
                Unavailable, match=r"no ready worker serves t\.\*, an api of this broker's profile"
            ) as t:
                client.call("t.pid", None)
            assert t.value.retry_after_ms == 500, t.value
            with pytest.raises(NotFound, match=r"no route 'echo\.ech'"):  # a served api's route it does not have
                client.call("echo.ech", None)
        called = run_heirloom("call", "_ready", "--connect", daemon.address)
        assert called.returncode != 0, called.stdout
        assert "not ready: no ready worker serves this profile's t.*; 1 of 1 workers ready" in called.stderr
        right = subprocess.Popen(_worker_command(tmp_path, worker_address), env=env)
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            assert client.call("_ready")["missing_routes"] == []
            right.send_signal(signal.SIGTERM)
            assert right.wait(30) == 0
            deadline = time.monotonic() + 30
            while (ready := client.call("_ready"))["ready"]:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            assert "t.pid" in ready["missing_routes"] and "echo.echo" not in ready["missing_routes"], ready
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        for worker in (stray, right):
            if worker is not None:
                worker.kill()
        assert stopped == 0


def _retried_from_its_cache(client, busy_client, first: int) -> None:
    """Key K1 retried while its worker is the busier one: answered from that worker's cache
    (``first``, its pid), not run again on the other."""
    busy = [busy_client.submit("t.slow", {"ms": 1500}) for _ in range(3)]
    time.sleep(0.3)
    assert client.call("t.pid", None, idempotency_key="K1") == first
    for future in busy:
        future.result(10)


def test_keyed_requests_that_fail_do_not_push_other_keys_out_of_the_brokers_memory(tmp_path):
    """The broker remembered every key, failed ones too, for as many keys as one worker's cache:
    a client sending failing keyed requests pushed another client's key out, and its retry ran
    again on another worker. A failed key is forgotten at once, as the worker forgets it."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.idempotency_cache=5")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20) as victim, daemon.client(timeout=20) as other:
            first = victim.call("t.pid", None, idempotency_key="K1")
            for i in range(12):
                with pytest.raises(InvalidArgument):
                    other.call("t.typed", {"text": 5}, idempotency_key=f"bad-{i}")
            _retried_from_its_cache(victim, other, first)
    finally:
        assert daemon.terminate() == 0


def test_a_refused_repeat_of_an_answered_key_does_not_send_its_next_retry_elsewhere(tmp_path):
    """An attack: the broker forgot a key on any error, the worker only when its first attempt
    failed. A repeat with another body (refused), or the same key on a route that refuses it,
    made the broker forget the key its worker still held: the next retry ran on the other."""
    daemon = Daemon(tmp_path, "--workers", "2")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20) as client:
            first = client.call("t.pid", None, idempotency_key="K1")
            with pytest.raises(RemoteError, match="idempotency"):
                client.call("t.pid", {"other": "body"}, idempotency_key="K1")
            with pytest.raises(InvalidArgument):
                client.call("t.typed", {"text": 5}, idempotency_key="K1")
            _retried_from_its_cache(client, client, first)
    finally:
        assert daemon.terminate() == 0


def test_a_peer_naming_a_local_workers_pid_cannot_get_it_killed(tmp_path):
    """An attack on an open worker endpoint: a heartbeat claiming a local worker's pid (``_ready``
    shows them), then silence, made the broker SIGKILL the real worker."""
    with _open_worker_endpoint(tmp_path) as (daemon, worker_address, context):
        with daemon.client(timeout=10) as client:
            pids = _worker_pids(client)
            pid = pids[0]
            rogue = context.socket(zmq.DEALER)
            rogue.connect(worker_address)
            rogue.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": pid, "ready": False, "heartbeat": 0.1})])
            deadline = time.monotonic() + 10
            while len(named := [w for w in client.call("_ready")["workers"] if w["pid"] == pid]) < 2:
                assert time.monotonic() < deadline, daemon.log()
            assert sorted(w["local"] for w in named) == [False, True]  # the rogue is no process of the broker's
            rogue.send_multipart([CONTROL, b"GONE", packb({"pid": pid, "error": "spoofed"})])  # nor its failed start
            rogue.close(linger=1000)
            slow = context.socket(zmq.DEALER)  # a remote worker set to 120 s is given 60 s, not the broker's 1 s
            slow.connect(worker_address)
            slow.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 99, "ready": False, "heartbeat": 120})])
            time.sleep(4)  # three of the broker's 1 s heartbeats: the rogue and the slow worker are silent
            assert _worker_pids(client) == pids
            assert 99 in [w["pid"] for w in client.call("_ready")["workers"]]
        assert "killed for its silence" not in daemon.log()


def _all_pids(client) -> list[int]:
    return [w["pid"] for w in client.call("_ready")["workers"]]


def test_a_peer_cannot_speak_for_another_worker_nor_flood_the_log_by_joining_and_leaving(tmp_path):
    """A worker written in C from PROTOCOL.md: a GONE naming a healthy local worker's pid had the
    broker log 85,000 'could not start' lines about it in 4 s; a peer joining and leaving in a
    loop wrote 600,000 lines in 20 s, and local routes fell from 6,242 requests a second to 99."""
    with _open_worker_endpoint(tmp_path) as (daemon, worker_address, context):
        with daemon.client(timeout=10) as client:
            pids = _worker_pids(client)
            impostor, registered, twin = (context.socket(zmq.DEALER) for _ in range(3))
            for peer in (impostor, registered, twin):
                peer.connect(worker_address)
            registered.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 4242})])
            # a twin heartbeating a ready worker's pid had its GONE taken as that worker's failed start
            twin.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": pids[0]})])
            deadline = time.monotonic() + 10
            while 4242 not in _all_pids(client) or _all_pids(client).count(pids[0]) < 2:
                assert time.monotonic() < deadline, daemon.log()
            lie = packb({"pid": pids[0], "error": "impostor says it failed"})
            for _ in range(1000):
                for peer in (impostor, registered, twin):
                    peer.send_multipart([CONTROL, b"GONE", lie])
            for peer, pid in ((impostor, 4343), (registered, 4242), (twin, pids[0])):  # read after their GONEs
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": pid, "resources": {"after": True}})])
            while sum(w["resources"] == {"after": True} for w in client.call("_ready")["workers"]) < 3:
                assert time.monotonic() < deadline, daemon.log()
            assert sorted(_all_pids(client)) == sorted([*pids, pids[0], 4242, 4343])  # the liars were not dropped
            assert sorted(w["local"] for w in _locals(client, pids)) == [False, True, True]  # the twin is not local
            assert client.call("_ready")["start_failure"] is None
            log = daemon.log()
            assert "could not start" not in log
            assert (
                log.count(f"ignored a GONE naming worker pid {pids[0]} from another connection") == 1
            )  # once a minute

            before = len(daemon.log().splitlines())
            churner = context.socket(zmq.DEALER)
            churner.connect(worker_address)
            routes = [{"name": "cw.other", "admin": False}]
            for _ in range(500):  # one connection: taken back only a heartbeat interval after its GONE
                churner.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 5555, "ready": True, "routes": routes})])
                churner.send_multipart([CONTROL, b"GONE"])
            churners = [context.socket(zmq.DEALER) for _ in range(100)]  # a new connection for each join
            for i, peer in enumerate(churners):
                peer.connect(worker_address)
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 6000 + i, "ready": True, "routes": routes})])
                peer.send_multipart([CONTROL, b"GONE"])
            time.sleep(2)
            while len(_all_pids(client)) > 4:
                assert time.monotonic() < deadline + 20, daemon.log()
            assert client.call("t.slow", {"ms": 1}) == {"slept_ms": 1}
            said = daemon.log().splitlines()[before:]
            assert len(said) <= WORKER_LINES_PER_MINUTE, "\n".join(said)  # 2,400 lines, before
            for peer in [churner, *churners]:
                peer.close(linger=0)
        assert "Traceback" not in daemon.log()


def test_a_workers_route_entry_takes_the_documented_defaults_for_what_it_leaves_out(tmp_path):
    """A worker written in C from PROTOCOL.md sent routes with only ``name`` and ``admin``: the
    broker forwarded a 2,000,005-byte body where a heirloom worker refuses over 1 MiB, and ``_routes``
    listed the route with those two keys only."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    stray = context.socket(zmq.DEALER)
    stray.connect(worker_address)
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            unenforceable = [{"name": "t.slow", "admin": False, "max_payload": "1 MiB"}]
            stray.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 2, "ready": True, "routes": unenforceable})])
            routes = [{"name": "t.slow", "admin": False, "description": "sleeps", "max_payload": None}]  # nil: absent
            stray.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 1, "ready": True, "routes": routes})])
            while _worker_pids(client) != [1]:
                assert time.monotonic() < deadline, daemon.log()
            listed = {route["name"]: route for route in client.call("_routes")["routes"]}["t.slow"]
            assert listed == {
                "name": "t.slow",
                "description": "sleeps",
                "batched": False,
                "max_batch": 1,
                "max_wait_ms": 0.0,
                "max_payload": 1 << 20,
                "inline": False,
                "admin": False,
                "input": {},
                "output": {},
                "model": None,
            }
            with pytest.raises(InvalidArgument, match=r"t\.slow accepts at most 1048576"):
                client.call("t.slow", b"x" * 2_000_000)
            assert stray.recv_multipart() == [CONTROL, WELCOME]  # the answer to its first heartbeat read
            assert not stray.poll(300)  # refused by the broker: the worker never saw it
        assert "heartbeat.routes holds an entry that is not a route description" in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_peers_on_an_open_worker_endpoint_cannot_stall_overflow_or_crowd_the_broker(tmp_path):
    """An attack on a tcp worker endpoint without Curve: 1,000 route names of 4,000 characters
    made one unknown route's did-you-mean block the broker 13 s, and its healthy local workers
    were SIGKILLed for the silence; 200 peers each leaving valid counts of 2**53 made the kept
    sums pass 2**64 and ``_stats`` INTERNAL for good; 50 peers took it to 2.2 GB; any peer's
    GONE set the start failure every client read; the workers' secret stayed in their environment."""
    # The deadlines wait for states, not for speed (a stall is what the heartbeats below would show):
    # 30 s ran out on a machine at load 7 while the same run passed alone in 40 s.
    with _open_worker_endpoint(tmp_path) as (daemon, worker_address, context):
        with daemon.client(timeout=20) as client:
            pids = _worker_pids(client)
            for _ in range(8):  # taken out of the environment: nothing a plugin starts inherits it
                assert "HEIRLOOM_LOCAL_WORKER" not in client.call("t.environment")
            long_names = [{"name": f"t.{i:04d}" + "x" * 4000, "admin": False} for i in range(300)]  # 1.2 MB
            rogue = context.socket(zmq.DEALER)
            rogue.connect(worker_address)
            rogue.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 7, "ready": True, "routes": long_names})])
            # 2 MiB of one-byte maps: 6 s of checking and 150 MB kept per peer, before they were counted
            rogue.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 8, "x": [{}] * 2_000_000})])
            rogue.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 9, "x": [[{}] * 20_000] * 100})])
            rogue.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 10})])  # read after them: they were read
            deadline = time.monotonic() + 90
            while 10 not in (seen := [w["pid"] for w in client.call("_ready")["workers"]]):
                assert time.monotonic() < deadline, daemon.log()
            assert 8 not in seen and 9 not in seen
            assert client.call("t.slow", {"ms": 1}) == {"slept_ms": 1}  # _stats now reads t.slow's worker numbers
            count = 2**53
            seconds = {"bounds": list(SECONDS_BUCKETS), "counts": [count] * (len(SECONDS_BUCKETS) + 1), "sum": 1.0}
            batches = {"bounds": list(BATCH_BUCKETS), "counts": [count] * (len(BATCH_BUCKETS) + 1), "sum": 1.0}
            totals = {"requests": {"OK": count}, "latency": seconds, "queue": seconds, "batch": batches}
            snapshot = {"routes": {"t.slow": totals}}
            peers = [context.socket(zmq.DEALER) for _ in range(140)]
            for peer in peers:
                peer.connect(worker_address)
            for _ in range(2):  # each leaves its counts behind when it goes; 128 are tracked at once
                for i, peer in enumerate(peers):
                    peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 1000 + i, "metrics": snapshot})])
                deadline = time.monotonic() + 90
                while len(client.call("_ready")["workers"]) < 128:  # full: the log says so once a minute only
                    assert time.monotonic() < deadline, daemon.log()
                    time.sleep(0.2)
                for i, peer in enumerate(peers):
                    said = {"pid": 1000 + i, "error": "visit http://evil.example"}
                    peer.send_multipart([CONTROL, b"GONE", packb(said)])
                while len(client.call("_ready")["workers"]) > 2:
                    assert time.monotonic() < deadline, daemon.log()
                time.sleep(1.2)  # a connection that said GONE is taken back one heartbeat interval later
            assert "ignored a new worker: 128 are connected" in daemon.log()
            # the table is full of peers again: a local worker that dies is replaced and still joins
            big = {"pid": 2000, "resources": {"pad": "x" * 100_000}}
            peers[0].send_multipart([CONTROL, b"HEARTBEAT", packb(big)])
            deadline = time.monotonic() + 90
            while not (shown := [w["resources"] for w in client.call("_ready")["workers"] if w["pid"] == 2000]):
                assert time.monotonic() < deadline, daemon.log()
            assert shown == [{"omitted": "over 16384 bytes"}]  # every _ready copied each peer's map whole
            for i, peer in enumerate(peers[1:], 1):
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 2000 + i})])
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while (
                killed in (pids := _worker_pids(client))
                or len(pids) < 2
                or not all(w["local"] for w in _locals(client, pids))
            ):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
            with pytest.raises(RemoteError, match=r"no route 't\.nothing'"):
                client.call("t.nothing")
            stats = client.call("_stats")  # INTERNAL (OverflowError) for good, before
            assert stats["start_failure"] is None and client.call("_ready")["start_failure"] is None
            assert stats["routes"]["t.slow"]["batch_sizes"]["batches"] < 2**64
            time.sleep(4)  # three heartbeats: a stall of the broker's would have read as the workers' silence
            assert _worker_pids(client) == pids
        log = daemon.log()
        assert "heartbeat.routes holds an entry that is not a route description" in log
        assert "killed for its silence" not in log and "Traceback" not in log


def _heavy_heartbeat(pid: int) -> bytes:
    """A heartbeat as large as PROTOCOL.md lets a worker of 1,000 routes send: each route with its metrics (147 KB)."""
    names = [f"h.r{i}" for i in range(1000)]
    histogram = {"bounds": [1, 2], "counts": [1, 0, 0], "sum": 1}
    totals = {"requests": {"OK": 1}, "latency": histogram, "queue": histogram, "batch": histogram}
    routes = [{"name": name, "admin": False} for name in names]
    return packb(
        {
            "pid": pid,
            "ready": True,
            "heartbeat": 1.0,
            "routes": routes,
            "metrics": {"routes": {n: totals for n in names}},
        }
    )


def test_a_peer_flooding_legal_heartbeats_stalls_no_client_nor_the_stop(tmp_path):
    """A worker written from PROTOCOL.md sent legal heartbeats of 1,000 routes and their metrics as fast as it could:
    the broker read each in full on the thread serving clients, and 100 of them left clients unanswered 13 s; 300
    from a peer that then exited kept an idle broker 49 s from stopping on SIGTERM (the backlog joined the dead peer
    again during the drain, and the broker waited for its GONE)."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "2", "--worker-bind", worker_address, grace=5)
    context = zmq.Context()
    try:
        daemon.wait_ready()
        flooder = context.socket(zmq.DEALER)
        flooder.setsockopt(zmq.SNDHWM, 0)
        flooder.connect(worker_address)
        heartbeat = _heavy_heartbeat(4321)
        with daemon.client(timeout=5, retries=0) as client:
            for _ in range(400):
                flooder.send_multipart([CONTROL, b"HEARTBEAT", heartbeat])
            assert client.call("t.slow", {"ms": 1}) == {"slept_ms": 1}  # within its 5 s deadline (DEADLINE_EXCEEDED)
            deadline = time.monotonic() + 30
            while 4321 not in _all_pids(client):  # read, not dropped: a peer's heartbeats wait their turn
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
            assert client.call("t.slow", {"ms": 1}) == {"slept_ms": 1}
        for _ in range(300):
            flooder.send_multipart([CONTROL, b"HEARTBEAT", heartbeat])
        flooder.close(linger=10_000)  # all sent, then gone
        time.sleep(1)
        stopping = time.monotonic()
        assert daemon.terminate() == 0
        # an idle drain ends at once, within --grace (5 s) anyway; as long again for a loaded machine (was 13 to 49 s)
        assert time.monotonic() - stopping < 10, daemon.log()
        assert "worker pid 4321 connected" in daemon.log()
        assert daemon.log().count("worker pid 4321 connected") == 1, daemon.log()  # not again while draining
    finally:
        context.destroy(linger=0)
        daemon.kill()


def test_a_heartbeat_with_an_impossible_pid_or_interval_is_ignored_and_workers_of_one_pid_are_told_apart(tmp_path):
    """A pid of -5 or 0 and an interval of NaN, infinity, -1 or 0 were taken; two connections giving one pid (two
    hosts, or a peer claiming another's) were listed as two identical entries in ``_ready``."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            bad = [
                {"pid": -5},
                {"pid": 0},
                *({"pid": 2000 + i, "heartbeat": beat} for i, beat in enumerate([math.nan, math.inf, -1, 0])),
            ]
            peers = [context.socket(zmq.DEALER) for _ in range(len(bad) + 1)]
            for i, (peer, status) in enumerate(zip(peers, bad, strict=False)):
                peer.connect(worker_address)
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb(status)])
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 1000 + i})])  # read after it
            peers[-1].connect(worker_address)
            peers[-1].send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 1000})])  # the first peer's pid
            while sorted(_all_pids(client)) != [1000, 1000, 1001, 1002, 1003, 1004, 1005]:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            log = daemon.log()
            # one warning per interval: whichever bad heartbeat the broker read first (peers are read in no order)
            heartbeat = r"ignored a heartbeat on the worker endpoint from a peer that is no worker yet: "
            found = re.findall(heartbeat + r"(heartbeat\.\w+ is [^;]+); ([^(\n]+)", log)
            interval = "an interval is a positive number of seconds"
            assert found and {(what, why.strip()) for what, why in found} <= {
                ("heartbeat.pid is -5", "a process id is at least 1"),
                ("heartbeat.pid is 0", "a process id is at least 1"),
                *((f"heartbeat.heartbeat is {beat}", interval) for beat in ("nan", "inf", "-1", "0")),
            }, log
            for pid in (-5, 0, 2000, 2001, 2002, 2003):
                assert f"worker pid {pid} connected" not in log, log
            twins = [w["connection"] for w in client.call("_ready")["workers"] if w["pid"] == 1000]
            assert len(set(twins)) == 2 and all(type(n) is int for n in twins)
            for peer in peers:
                peer.close(linger=0)
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_a_peers_histogram_sums_cannot_make_the_brokers_metrics_infinite():
    """Two accepted snapshots with sums of -1.7e308 and 1.7e308 made /metrics print -Inf and
    ``_stats`` a mean of -Infinity, which no JSON parser reads."""

    def snapshot(total: float) -> dict:
        seconds = {"bounds": list(SECONDS_BUCKETS), "counts": [1] * (len(SECONDS_BUCKETS) + 1), "sum": total}
        batches = {"bounds": list(BATCH_BUCKETS), "counts": [1] * (len(BATCH_BUCKETS) + 1), "sum": total}
        return {"routes": {"t.slow": {"requests": {"OK": 1}, "latency": seconds, "queue": seconds, "batch": batches}}}

    totals = WorkerTotals()
    assert not totals.update(b"a", snapshot(-1.7e308)) and not totals.update(b"b", snapshot(1.7e308))
    for peer in (b"c", b"d", b"e"):
        assert totals.update(peer, snapshot(float(2**53)))  # the largest sum accepted; their total holds there
    since_start, _ = totals.merged()
    assert since_start["routes"]["t.slow"]["latency"]["sum"] == float(2**53)


def test_a_broker_holds_at_most_forward_backlog_mb_of_large_requests_for_its_workers(tmp_path):
    """The broker read every request up to the in-flight limit and held it for its workers:
    800 echoes of 900 KB took it to 741 MB. Past the budget a large request is refused at once."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.forward_backlog_mb=1")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=30, retries=0) as client:
            sent = [client.submit("t.slow", {"ms": 300, "pad": "x" * 200_000}) for _ in range(12)]
            outcomes = [future.exception() for future in sent]
            refused = [e for e in outcomes if e is not None]
            assert 0 < len(refused) < 12 and all(isinstance(e, ResourceExhausted) for e in refused), outcomes
            assert re.search(r"the broker holds [01]\.\d MiB of requests for its workers", refused[0].message)
            assert client.call("t.slow", {"ms": 1, "pad": "x" * 200_000}) == {"slept_ms": 1}  # freed as answered
            assert client.call("_stats")["in_flight"] == 0
    finally:
        assert daemon.terminate() == 0


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_an_address_in_use_is_one_line_naming_it(tmp_path, workers):
    daemon = Daemon(tmp_path, *workers, address=free_tcp_address())
    try:
        daemon.wait_ready()
        taken = daemon.address
        result = run_heirloom("serve", "minimal", "--bind", taken, *workers, timeout=60)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == f"error: cannot bind {taken}: Address already in use"
        worker_side = run_heirloom("serve", "minimal", "--bind", free_tcp_address(), "--worker-bind", taken, *workers)
        assert "Traceback" not in worker_side.stderr
        in_use = f"error: cannot bind {taken}: Address already in use"  # it failed; without a broker it cannot work
        expected, code = (in_use, 1) if workers else ("needs a broker", 2)
        assert expected in worker_side.stderr and worker_side.returncode == code
    finally:
        assert daemon.terminate() == 0


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_a_bind_address_naming_no_interface_of_this_host_is_a_usage_error(workers):
    """``--bind tcp://nosuchhost.invalid:PORT`` said ZeroMQ's "No such device", exit 1: bind takes
    an interface's address or name (not a DNS name), so it is what was typed that cannot work. Nor does it
    first warn "listening on ADDR without Curve", as it did before the bind failed (h294 F4)."""
    port = free_tcp_address().rpartition(":")[2]
    for address in (f"tcp://nosuchhost.invalid:{port}", f"tcp://192.0.2.1:{port}"):  # 192.0.2.1: TEST-NET-1
        result = run_heirloom("serve", "minimal", "--bind", address, *workers, timeout=60)
        assert result.returncode == 2, result.stderr
        assert f"error: cannot bind {address}: its host names no interface of this host" in result.stderr
        assert "listening on" not in result.stderr, result.stderr


def test_a_broker_with_no_local_workers_serves_through_workers_that_connect_from_elsewhere(tmp_path):
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    worker = None
    try:
        with daemon.client(timeout=1.0, retries=0) as client:
            deadline = time.monotonic() + 30
            while True:  # the broker is up as soon as it answers; it spawns nothing
                try:
                    ready = client.call("_ready")
                    break
                except (Unavailable, DeadlineExceeded):  # not listening yet
                    assert time.monotonic() < deadline, daemon.log()
            assert ready["ready"] is False and ready["expected_workers"] == 1 and ready["workers"] == []
        worker = subprocess.Popen(
            _worker_command(tmp_path, worker_address),
            stderr=subprocess.DEVNULL,
            env=_worker_env(),
        )
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            assert client.call("echo.echo", {"hi": 1}) == {"hi": 1}
            (served_by,) = client.call("_ready")["workers"]
            assert served_by["pid"] == worker.pid and served_by["local"] is False and served_by["ready"] is True
            context = zmq.Context()  # a twin heartbeating its pid had its GONE put in _ready's start_failure
            twin = context.socket(zmq.DEALER)
            twin.connect(worker_address)
            twin.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": worker.pid})])
            twin.send_multipart([CONTROL, b"GONE", packb({"pid": worker.pid, "error": "fake failure"})])
            twin.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": worker.pid, "resources": {"after": True}})])
            ready = client.call("_ready")
            while not any(w["resources"] == {"after": True} for w in ready["workers"]):
                assert time.monotonic() < deadline + 30, daemon.log()
                ready = client.call("_ready")
            assert ready["start_failure"] is None and client.call("echo.echo", 1) == 1
            context.destroy(linger=0)
        assert f"workers connect to {worker_address} without Curve" in daemon.log()  # a warning, not silence
        assert "could not start" not in daemon.log()
    finally:
        assert daemon.terminate() == 0
        if worker is not None:
            assert worker.wait(30) == 0  # the broker's drain reaches a remote worker too


def test_a_worker_socket_file_every_user_may_write_is_named_in_a_warning(tmp_path):
    """Under umask 000 a custom ``--worker-bind ipc://PATH`` made a srwxrwxrwx socket file, no
    Curve guards ipc://, and a rogue joined a Curve broker as a worker, in silence. One in a
    private folder (the default endpoint's case) is no warning."""
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # searchable by every user, as /tmp is
    shared.chmod(0o755)
    try:
        for folder, warned in ((shared, True), (tmp_path, False)):  # pytest's folders are 0700
            address = f"ipc://{folder}/workers.sock"
            (folder / "d").mkdir()
            daemon = Daemon(folder / "d", "--workers", "0", "--worker-bind", address, preexec_fn=lambda: os.umask(0))
            try:
                with daemon.client(timeout=10) as client:
                    _until_healthy(client, daemon)
                said = f"workers connect to {address} without Curve and every user of this host may write its socket "
                assert (f"{said}file (mode 777)" in daemon.log()) is warned, daemon.log()
            finally:
                assert daemon.terminate() == 0
    finally:
        shutil.rmtree(shared)


def test_a_broker_removes_the_worker_socket_folders_of_brokers_that_were_killed(tmp_path):
    """Checker h343 F7: a ``--workers`` broker killed with SIGKILL (systemd's TimeoutStopSec, the OOM killer)
    left its private ``$TMPDIR/heirloom-broker-*`` folder and socket behind, and each start made another (89 on
    a shared host). A starting broker now removes those of its user that nothing listens on; a live broker's,
    one bound a moment ago (a broker starting) and one holding anything else are kept."""
    tmp = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))  # short: tmp_path/tmp/heirloom-broker-*/workers
    env = {"TMPDIR": str(tmp)}  # passed a unix socket's 107 bytes once pytest numbered its folders past 100
    (tmp_path / "killed").mkdir()
    killed = Daemon(tmp_path / "killed", "--workers", "2", env=env)
    killed.wait_ready()
    [left] = tmp.glob("heirloom-broker-*")
    killed.process.kill()  # SIGKILL: no cleanup
    killed.process.wait(30)
    assert [path.name for path in left.iterdir()] == ["workers"]
    a_while_ago = time.time() - 120
    os.utime(left / "workers", (a_while_ago, a_while_ago))
    kept = {}
    for name in ("live", "starting", "other-files"):
        folder = tmp / f"heirloom-broker-{name}"
        folder.mkdir(mode=0o700)
        kept[name] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        kept[name].bind(str(folder / "workers"))  # a socket nothing listens on, but for "live"
        if name == "live":
            kept[name].listen()
        if name != "starting":
            os.utime(folder / "workers", (a_while_ago, a_while_ago))
        if name == "other-files":
            (folder / "notes").write_text("not a broker's\n")
    (tmp_path / "next").mkdir()
    daemon = Daemon(tmp_path / "next", "--workers", "2", env=env)
    try:
        daemon.wait_ready()
        assert not left.exists(), daemon.log()
        assert f"removed 1 worker socket folder(s) of brokers that were killed (nothing listens on them): {left}" in (
            daemon.log()
        )
        assert {f"heirloom-broker-{name}" for name in kept} < {path.name for path in tmp.iterdir()}
    finally:
        assert daemon.terminate() == 0
        for held in kept.values():
            held.close()
    assert sorted(path.name for path in tmp.iterdir()) == sorted(f"heirloom-broker-{name}" for name in kept)
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_broker_with_no_local_workers_needs_an_address_for_the_others():
    result = run_heirloom("serve", "minimal", "--bind", free_tcp_address(), "--workers", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr  # flags that cannot work: a usage error
    assert "--workers 0 is a broker whose workers all connect from elsewhere: give it --worker-bind" in result.stderr


def test_a_worker_says_when_it_cannot_reach_its_broker_and_when_it_does(tmp_path):
    broker_address = free_tcp_address()
    profile = write(tmp_path / "worker.toml", PROFILE.format(max_queue=1024, grace=10))
    log = tmp_path / "worker.log"
    command = [*HEIRLOOM, "worker", str(profile), "--connect", broker_address, "--set", "server.heartbeat=0.2"]
    env = _worker_env()
    worker = subprocess.Popen(command, stderr=log.open("w"), env=env)

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        while text not in log.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
            time.sleep(0.1)

    try:
        wait_for(f"cannot reach the broker at {broker_address}; still trying")
        assert "connected to the broker" not in log.read_text()
        daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", broker_address)
        daemon.wait_ready()
        wait_for(f"connected to the broker at {broker_address}")
        assert daemon.terminate() == 0
        assert worker.wait(30) == 0
    finally:
        worker.kill()


def test_a_worker_whose_broker_host_does_not_resolve_says_so_and_keeps_trying(tmp_path):
    """Checker h322 F3: ``--connect tcp://no-such-host.invalid:PORT`` said only ``cannot reach the broker ...;
    still trying (... a broker serving Curve also refuses ...)``: the Curve guess, not that the name does not
    resolve. Now the line says so; the worker keeps trying (DNS may come up later) and stops on SIGTERM."""
    address = f"tcp://no-such-host.invalid:{free_port()}"
    profile = write(tmp_path / "worker.toml", PROFILE.format(max_queue=1024, grace=10))
    log = tmp_path / "worker.log"
    command = [*HEIRLOOM, "worker", str(profile), "--connect", address, "--set", "server.heartbeat=0.2"]
    worker = subprocess.Popen(command, stderr=log.open("w"), env=_worker_env())
    try:
        deadline = time.monotonic() + 30
        while "cannot reach the broker" not in log.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
            time.sleep(0.1)
        said = re.search(
            r"cannot reach the broker at (\S+): no-such-host\.invalid (does not resolve \(.+\)|did not r)",
            log.read_text(),
        )
        assert said and said[1] == address, log.read_text()
        assert "the name may resolve later" in log.read_text() and "Curve" not in log.read_text(), log.read_text()
        time.sleep(1)
        assert worker.poll() is None  # still trying
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.kill()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_worker_given_a_client_endpoint_is_told_so_and_never_says_connected(tmp_path, workers):
    """A worker whose --connect named the broker's client address (or a one-process daemon's) logged
    `connected to the broker` and sat idle for good; the daemon only counted its heartbeats as dropped
    frames. Now the client endpoint answers a worker's heartbeat with where workers go, both log it,
    and the worker says connected only once a broker's worker endpoint has answered it. Its "ready" line, once
    its components (slow to start) have started, said "requests come through the broker at" that same address
    (checker 291 F3)."""
    worker_address = free_tcp_address()
    extra = ("--workers", "0", "--worker-bind", worker_address) if workers == "0" else ()
    daemon = Daemon(tmp_path, *extra)
    log = tmp_path / "worker.log"
    profile, slow = str(tmp_path / "daemon.toml"), "apis.t.start_ms=2000"  # told before it is ready
    command = [
        *HEIRLOOM,
        "worker",
        profile,
        "--connect",
        daemon.address,
        "--set",
        "server.heartbeat=0.2",
        "--set",
        slow,
    ]
    with daemon.client(timeout=1.0, retries=0) as client:
        _until_healthy(client, daemon)
    worker = subprocess.Popen(command, stderr=log.open("w"), env=_worker_env())
    try:
        deadline = time.monotonic() + 60
        while "is not a broker's worker endpoint" not in log.read_text() or ": ready" not in log.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
            time.sleep(0.1)
        with daemon.client(timeout=10) as client:
            assert client.call("_health")["live"] is True
        said = log.read_text()
        assert f"{daemon.address} is not a broker's worker endpoint; no request reaches this worker there" in said
        if workers == "0":
            assert f"its workers connect to {worker_address} (correct --connect)" in said
            told = "a worker connected to the client endpoint (it sent a HEARTBEAT there), told: this is the client "
            assert f"{told}endpoint of a heirloom broker; its workers connect to {worker_address}" in daemon.log()
        else:
            assert "a heirloom daemon serving in one process, which takes no workers" in said
            assert "a worker connected to the client endpoint (it sent a HEARTBEAT there)" in daemon.log()
        assert "connected to the broker" not in said, said
        assert f"ready; but no request reaches it: {daemon.address} is not a broker's worker endpoint" in said, said
        assert "requests come through the broker" not in said, said
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert daemon.log().count("a worker connected to the client endpoint") == 1  # once per peer, not per beat
    finally:
        worker.kill()
        assert daemon.terminate() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_heirloom_call_run_again_with_its_idempotency_key_writes_once(tmp_path, workers):
    """Each `heirloom call` is a new connection; a rerun with the same key must still be
    the same client's retry, not a second write."""
    daemon = Daemon(tmp_path, "--workers", workers)
    daemon.wait_ready()
    try:
        call = ("call", "t.write", "null", "--connect", daemon.address, "--idempotency-key", "order-17")
        runs = [run_heirloom(*call) for _ in range(3)]  # three writes would make some worker count 2
        assert all(run.returncode == 0 for run in runs), runs[0].stderr
        assert [json.loads(run.stdout) for run in runs] == [1, 1, 1]
        echoed = run_heirloom("call", "echo.echo", '{"title": "Amélie — 東京"}', "--connect", daemon.address)
        assert '"Amélie — 東京"' in echoed.stdout  # printed as written, not as \\u escapes
    finally:
        assert daemon.terminate() == 0


def test_a_stopping_broker_tells_remote_workers_drain_until_they_say_they_stopped(tmp_path):
    """A remote worker has no parent whose exit ends it: the DRAIN that stops it must arrive.
    The broker closed 2 ms after sending its one DRAIN and a worker on another host, never told,
    served nobody for ever. Now the broker repeats DRAIN until each says GONE, for a bounded time."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    deaf, silent = context.socket(zmq.DEALER), context.socket(zmq.DEALER)  # remote workers on one socket each
    try:
        routes = [{"name": "t.slow", "admin": False}]
        for socket in (deaf, silent):
            socket.connect(worker_address)
        with daemon.client(timeout=10) as client:
            deadline = time.monotonic() + 30
            while _worker_pids(client) != [11, 12]:
                for pid, socket in ((11, deaf), (12, silent)):
                    socket.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": pid, "ready": True, "routes": routes})])
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        for socket in (deaf, silent):  # each connection's first heartbeat read was answered, once
            assert socket.recv_multipart() == [CONTROL, WELCOME]
        daemon.process.send_signal(signal.SIGTERM)
        assert deaf.poll(10_000) and deaf.recv_multipart() == [CONTROL, b"DRAIN"], daemon.log()
        ignored_until = time.monotonic() + 1.5  # as if that DRAIN was lost
        while time.monotonic() < ignored_until:
            assert deaf.poll(2_000) and deaf.recv_multipart() == [CONTROL, b"DRAIN"], daemon.log()
        assert daemon.process.poll() is None, daemon.log()  # waiting for both still
        deaf.send_multipart([CONTROL, b"GONE"])  # drained and stopped
        assert daemon.process.wait(30) == 0, daemon.log()  # the silent one is waited for 10 s, not for ever
        log = daemon.log()
        assert "worker pid 11 drained and stopped" in log
        assert "remote worker pid 12 did not say it stopped; the broker stops without waiting longer" in log
    finally:
        context.destroy(linger=0)
        daemon.kill()


def test_malformed_messages_on_the_worker_endpoint_never_stop_the_broker(tmp_path):
    """Whatever reaches the worker endpoint (another version, a stray process) sends input
    like a client: heartbeats that are not a worker's status are ignored and named in the
    log, a reply with an unknown status fails its request at once, and the broker serves on."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    stray = context.socket(zmq.DEALER)
    stray.connect(worker_address)
    worker = None
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            # a worker naming the broker's own routes took them over (and _stats' admin check with them)
            kernel_routes = [{"name": name, "admin": False} for name in ("_ready", "_scale")]
            taking = {"pid": 2, "ready": True, "routes": kernel_routes}
            deep = functools.reduce(lambda inner, _: {"a": inner}, range(100), 1)  # _ready could not pack it again
            nil_routes = {"pid": 3, "ready": True, "routes": None}  # stopped the broker: nil is absent
            statuses = [{"pid": "abc", "ready": True}, [1], {"routes": [1]}, {"heartbeat": "0.1"}, taking, nil_routes]
            for status in [*statuses, {"pid": 4, "resources": deep}]:
                stray.send_multipart([CONTROL, b"HEARTBEAT", packb(status)])
            stray.send_multipart([CONTROL, b"HEARTBEAT", b"\xc1"])
            stray.send_multipart([b"\x00" * 9])
            route = {"name": "t.slow", "admin": False}
            metrics = {"dropped_frames": "x"}  # a text where a count belongs stopped the broker once it went
            empty = {"bounds": [], "counts": [3], "sum": 1.0}  # made _stats fail for good
            huge = {"requests": {"OK": 2**64 - 1}, "latency": empty, "queue": empty, "batch": empty}
            stray.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 1, "ready": True, "routes": [route]})])
            while _worker_pids(client) != [1]:  # a stray that says the right things is routed to
                assert time.monotonic() < deadline, daemon.log()
            more = {"pid": 1, "ready": True, "routes": [route, {"name": "t.new", "admin": False}], "metrics": metrics}
            stray.send_multipart([CONTROL, b"HEARTBEAT", packb(more)])
            while "t.new" not in {r["name"] for r in client.call("_routes")["routes"]}:  # it need not turn ready again
                assert time.monotonic() < deadline, daemon.log()
            more["metrics"] = {"routes": {"t.slow": huge}}
            stray.send_multipart([CONTROL, b"HEARTBEAT", packb(more)])
            assert client.call("_stats")["workers"][0]["pid"] == 1 and client.call("_ready")["workers"]
            pending = client.submit("t.slow", {"ms": 1})
            assert stray.recv_multipart() == [CONTROL, WELCOME]  # its first heartbeat the broker took, answered
            assert stray.poll(10_000), daemon.log()
            tagged, *_ = stray.recv_multipart()
            forger = context.socket(zmq.DEALER)  # another peer answering a request it was not sent
            forger.connect(worker_address)
            forger.send_multipart([tagged[:TAG_BYTES] + b"\x00", packb({}), packb("forged")])
            time.sleep(0.3)
            stray.send_multipart([tagged[:TAG_BYTES] + b"\x77", packb({}), packb(None)])
            with pytest.raises(Unavailable, match="its worker sent a reply the broker cannot read"):
                pending.result(timeout=5)
            failed = "answered UNAVAILABLE a request whose reply it cannot read on the worker endpoint from worker pid"
            daemon.wait_logged(f"{failed} 1: its status byte 119 is none of the status codes")  # unsaid before
            pending = client.submit("t.slow", {"ms": 1})  # a known status with no header: forwarded bare, before
            assert stray.poll(10_000), daemon.log()
            tagged, *_ = stray.recv_multipart()
            stray.send_multipart([tagged[:TAG_BYTES] + b"\x00"])
            with pytest.raises(Unavailable, match="its worker sent a reply the broker cannot read"):
                pending.result(timeout=5)
            stray.close(linger=0)
        worker = subprocess.Popen(
            _worker_command(tmp_path, worker_address),
            stderr=subprocess.DEVNULL,
            env=_worker_env(),
        )
        with daemon.client(timeout=10) as client:
            deadline = time.monotonic() + 30
            while _worker_pids(client) != [worker.pid]:  # the stray is dropped once silent
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
            assert client.call("t.slow", {"ms": 1}, timeout=10) == {"slept_ms": 1}
            assert client.call("_stats")["routes"]  # the stray's metrics are gone with it, none kept
        assert re.search(r"ignored a heartbeat on the worker endpoint from [^:]+: heartbeat.pid is a str", daemon.log())
        assert "Traceback" not in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0
        if worker is not None:
            assert worker.wait(30) == 0


def test_a_worker_guessing_the_control_frames_wrong_is_told_once_in_the_log(tmp_path):
    """A Java worker that packed its command as a msgpack string (``a9 HEARTBEAT``) never joined, and the broker
    logged nothing. Each peer's first such message is now named in the log, once, within 10 lines a minute."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    status = {"pid": 0, "ready": False}
    wrong = {  # what each peer sends 5 times, and what the log says of it
        "packed": ([CONTROL, packb("HEARTBEAT"), packb(status)], "its command is the msgpack string 'HEARTBEAT'"),
        "bare": ([b"HEARTBEAT", packb(status)], "a HEARTBEAT without the empty frame a control message starts with"),
        "lone": ([CONTROL, b"HEARTBEAT"], "a HEARTBEAT without its status frame"),
        "other": ([CONTROL, b"HELLO"], "its command b'HELLO' is none a worker sends (HEARTBEAT or GONE, raw ASCII"),
        "tag": ([b"\x01" * 20, packb({}), packb(None)], "its first frame is 20 bytes, neither empty"),
    }
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            peers = [9000]  # a boolean heartbeat interval is not taken for 1 s: bool is no number on the wire
            peer = context.socket(zmq.DEALER)
            peer.connect(worker_address)
            peer.send_multipart([CONTROL, b"HEARTBEAT", packb({**status, "heartbeat": True})])
            peer.send_multipart([CONTROL, b"HEARTBEAT", packb({**status, "pid": 9000, "heartbeat": 1})])
            for batch in ([frames for frames, _ in wrong.values()], [wrong["packed"][0]] * 10):  # then 10 more peers
                for frames in batch:
                    peer = context.socket(zmq.DEALER)
                    peer.connect(worker_address)
                    for _ in range(5):
                        peer.send_multipart(frames)
                    peers.append(9000 + len(peers))
                    peer.send_multipart([CONTROL, b"HEARTBEAT", packb({**status, "pid": peers[-1]})])  # read after
                while sorted(w["pid"] for w in client.call("_ready")["workers"]) != peers:
                    assert time.monotonic() < deadline, daemon.log()
                    time.sleep(0.1)
        lines = [line for line in daemon.log().splitlines() if "ignored a message on the worker endpoint" in line]
        for _, said in wrong.values():  # each peer's said once
            (line,) = [line for line in lines[:5] if said in line]
            assert "from a peer that is no worker yet" in line and "docs/PROTOCOL.md, Worker protocol" in line
        assert len(lines) == 10, lines  # 10 a minute: 5 of the 10 peers after them are counted, not logged
        assert all(wrong["packed"][1] in line for line in lines[5:]), lines
        said = "ignored a heartbeat on the worker endpoint from a peer that is no worker yet: heartbeat.heartbeat is"
        assert f"{said} a bool" in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_the_readiness_probe_says_why_the_workers_are_not_ready(tmp_path):
    """With workers, ``_ready`` carries each worker's models: the probe, and a refused route, say what they wait for."""
    profile = '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
    daemon = Daemon(tmp_path, "--workers", "2", profile=profile, env={"HEIRLOOM_PLUGINS": "tests.toys"})
    try:
        deadline = time.monotonic() + 60
        with daemon.client(timeout=30) as client:  # both workers connected, each saying why (one had, alone)
            while len([w for w in _ready_workers(client) if w.get("models", {}).get("m", {}).get("error")]) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        probe = run_heirloom("call", "_ready", "--connect", daemon.address, "--timeout", "30")
        assert probe.returncode == 3
        untrained = "models.m: daemon/m has no trained version yet (run heirloom train on this profile)"
        said = f"not ready: 0 of 2 workers ready ({untrained})"
        assert said in probe.stderr, probe.stderr
        # a route's refusal says it too (it said only "no worker is ready (2 connected)")
        refused = run_heirloom("call", "m.predict", "{}", "--connect", daemon.address, "--timeout", "30")
        why = f"no worker is ready (2 connected; {untrained})"
        assert refused.returncode == 1 and why in refused.stderr, refused.stderr
    finally:
        assert daemon.terminate() == 0


def test_a_route_refused_while_connected_workers_start_says_so(tmp_path):
    """Connected workers loading their models were refused as ``no worker is ready (2 connected)``, with
    nothing of why, where PROTOCOL.md promises what a worker waits for (checker 280 F3). Stopped then, each
    worker waits the grace period for its start to end, and the broker waits for it (it killed them after
    10 s, and exited 1)."""
    profile = '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\nstart_seconds = 15\n'
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    assert run_heirloom("train", str(write(tmp_path / "daemon.toml", profile)), env=toys).returncode == 0
    daemon = Daemon(tmp_path, "--workers", "2", profile=profile, env=toys)
    try:
        deadline = time.monotonic() + 60
        with daemon.client(timeout=30) as client:
            while len(_ready_workers(client)) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        refused = run_heirloom("call", "m.predict", "{}", "--connect", daemon.address, "--timeout", "10")
        assert refused.returncode == 1, refused.stderr
        assert "no worker is ready (2 connected; starting their components)" in refused.stderr, refused.stderr
    finally:
        assert daemon.terminate() == 0


def test_clients_learn_why_workers_cannot_start_from_ready_and_stats(tmp_path):
    """A served version whose weights are damaged stops every worker's start: the broker
    stayed up saying only "0 of 2 workers ready", the reason in its log alone."""
    profile = '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    assert run_heirloom("train", str(write(tmp_path / "daemon.toml", profile)), env=toys).returncode == 0
    blobs = heirloom.ArtifactStore.default().blobs
    for metadata in blobs.glob("*.json"):
        metadata.write_bytes(b"{}")
    daemon = Daemon(tmp_path, "--workers", "2", profile=profile, env=toys)
    try:
        deadline = time.monotonic() + 60
        while "could not start" not in (probe := run_heirloom("call", "_ready", "--connect", daemon.address)).stderr:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.5)
        assert probe.returncode == 3
        said = r"not ready: 0 of 2 workers ready \(worker pid \d+ could not start: .*daemon/m@1"
        assert re.search(said, probe.stderr), probe.stderr
        with daemon.client(timeout=10) as client:
            assert "is corrupt: <store>/blobs/" in client.call("_stats")["start_failure"]
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_worker_whose_start_fails_as_the_drain_begins_is_no_unclean_stop(tmp_path):
    """A worker respawned just before SIGTERM failed to start during the drain: the broker, no
    longer reading its workers, took its exit 1 for an unclean stop and exited 1 itself."""
    profile = (
        '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
        "fail_start = true\nstart_seconds = 1.5\n"
    )
    daemon = Daemon(tmp_path, "--workers", "2", profile=profile, env={"HEIRLOOM_PLUGINS": "tests.toys"})
    deadline = time.monotonic() + 60
    while "started sources.rows" not in daemon.log():  # the worker is inside its 1.5 s start
        assert time.monotonic() < deadline and daemon.process.poll() is None, daemon.log()
        time.sleep(0.05)
    assert daemon.terminate() == 0, daemon.log()
    assert "could not start" in daemon.log() and "did not stop cleanly" not in daemon.log()


def test_a_heartbeat_route_that_is_no_full_route_name_keeps_the_worker_out(tmp_path):
    """A Rust worker written from PROTOCOL.md heartbeated a route ``echo``: it joined and answered
    clients, where one process answers NOT_FOUND (no route is named without its api). A route is
    ``api.method``: an api name (which may hold dots) and a route name (which holds none)."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    undotted, dotted = context.socket(zmq.DEALER), context.socket(zmq.DEALER)
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            for socket in (undotted, dotted):
                socket.connect(worker_address)
            for name in ("echo", "t.", ".t", "t.x.", "t.-x"):
                status = {"pid": 31, "ready": True, "routes": [{"name": name, "admin": False}]}
                undotted.send_multipart([CONTROL, b"HEARTBEAT", packb(status)])
            routes = [{"name": "my.api.run", "admin": False}]  # an api named "my.api" (a quoted TOML key)
            dotted.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 32, "ready": True, "routes": routes})])
            while _worker_pids(client) != [32]:  # read after the others: they were read, and ignored
                assert time.monotonic() < deadline, daemon.log()
            with pytest.raises(RemoteError) as refused:
                client.call("echo", 1)
            assert refused.value.code == "NOT_FOUND"
            assert "my.api.run" in {route["name"] for route in client.call("_routes")["routes"]}
        said = "heartbeat.routes holds an entry that is not a route description: routes[0] (name 'echo') needs a full"
        assert said in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_a_worker_that_says_gone_and_closes_at_once_as_the_broker_drains_is_logged_drained(tmp_path):
    """A JavaScript worker answered the stopping broker's DRAIN with its draining heartbeat and GONE, and closed at
    once: the broker read the heartbeat after the connection had closed, could not answer it with DRAIN, and logged
    the worker "disconnected during the drain" before reading its GONE. A draining broker has told every worker DRAIN
    already; the worker is logged as drained. (Replies to no request go first: the connection is closed by the time
    the broker reads the heartbeat, as when the broker is slower than the worker.)"""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    peer = context.socket(zmq.DEALER)
    try:
        routes = [{"name": "t.slow", "admin": False}]
        peer.connect(worker_address)
        with daemon.client(timeout=10) as client:
            deadline = _until_healthy(client, daemon)
            while _worker_pids(client) != [43]:
                peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 43, "ready": True, "routes": routes})])
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        daemon.process.send_signal(signal.SIGTERM)
        assert peer.poll(10_000) and peer.recv_multipart() == [CONTROL, WELCOME], daemon.log()  # its first heartbeat's
        assert peer.poll(10_000) and peer.recv_multipart() == [CONTROL, b"DRAIN"], daemon.log()
        for n in range(500):  # tags the broker never gave: ignored, unlogged
            peer.send_multipart([(2**63 + n).to_bytes(TAG_BYTES, "little") + b"\x00", packb({"id": n}), packb(None)])
        draining = {"pid": 43, "ready": False, "draining": True, "routes": routes}
        peer.send_multipart([CONTROL, b"HEARTBEAT", packb(draining)])
        peer.send_multipart([CONTROL, b"GONE"])
        peer.close(linger=2000)
        assert daemon.process.wait(30) == 0, daemon.log()
        assert "worker pid 43 drained and stopped" in daemon.log()
        assert "disconnected during the drain" not in daemon.log()
    finally:
        context.destroy(linger=0)
        daemon.kill()


def test_a_gone_from_a_worker_that_was_ready_is_no_start_failure(tmp_path):
    """A peer that reported ready, then said GONE with an unreadable message, had ``_ready`` show
    a ``start_failure`` while the broker served: it had started; its GONE is a plain one."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    peer = context.socket(zmq.DEALER)
    try:
        with daemon.client(timeout=5.0, retries=0) as client:
            deadline = _until_healthy(client, daemon)
            peer.connect(worker_address)
            routes = [{"name": "t.slow", "admin": False}]
            peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 41, "ready": True, "routes": routes})])
            while _worker_pids(client) != [41]:
                assert time.monotonic() < deadline, daemon.log()
            peer.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 41, "draining": True, "routes": routes})])
            peer.send_multipart([CONTROL, b"GONE", b"\xc1"])
            while client.call("_ready")["workers"]:
                assert time.monotonic() < deadline, daemon.log()
            assert client.call("_ready")["start_failure"] is None
            assert client.call("_stats")["start_failure"] is None
        assert "worker pid 41 drained and stopped" in daemon.log()
        assert "could not start" not in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_a_draining_worker_is_told_drain_once_nothing_more_comes_so_its_gone_fails_no_request(tmp_path):
    """A Rust worker that said GONE right after its draining heartbeat lost 8 of 40 requests of
    another client (``drained and stopped while handling the request``): they were on their way
    when the broker read that heartbeat. The broker answers it with DRAIN, after everything it
    routed there: a worker that has answered all it received before that DRAIN may say GONE."""
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "0", "--worker-bind", worker_address)
    context = zmq.Context()
    leaving, staying, client = (context.socket(zmq.DEALER) for _ in range(3))
    routes = [{"name": "t.echo", "admin": False}]
    try:
        with daemon.client(timeout=5.0, retries=0) as probe:
            deadline = _until_healthy(probe, daemon)
            for socket, pid in ((leaving, 51), (staying, 52)):
                socket.connect(worker_address)
                socket.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": pid, "ready": True, "routes": routes})])
            while _worker_pids(probe) != [51, 52]:
                assert time.monotonic() < deadline, daemon.log()
        client.connect(daemon.address)
        poller = zmq.Poller()
        for socket in (leaving, staying, client):
            poller.register(socket, zmq.POLLIN)
        sent, replies, told_at, after_drain, beat = 0, [], None, 0, 0.0
        while len(replies) < 300:
            assert time.monotonic() < deadline, daemon.log()
            if sent < 300:
                client.send_multipart([b"HLM1", packb({"id": sent, "route": "t.echo"}), packb(sent)])
                sent += 1
            if sent == 50:  # the leaving worker starts its drain with requests on their way to it
                drain = {"pid": 51, "ready": False, "draining": True, "routes": routes}
                leaving.send_multipart([CONTROL, b"HEARTBEAT", packb(drain)])
            if time.monotonic() - beat > 0.5:
                beat = time.monotonic()
                staying.send_multipart([CONTROL, b"HEARTBEAT", packb({"pid": 52, "ready": True, "routes": routes})])
            for socket, _ in poller.poll(5):
                frames = socket.recv_multipart()
                if socket is client:
                    replies.append(unpackb(frames[1])["status"])
                elif frames == [CONTROL, b"DRAIN"]:
                    assert socket is leaving and told_at is None
                    told_at = time.monotonic()
                    leaving.send_multipart([CONTROL, b"GONE"])  # it answered everything it received
                elif frames[0] != CONTROL:
                    after_drain += socket is leaving and told_at is not None
                    header = {"id": unpackb(frames[1])["id"], "status": "OK"}
                    socket.send_multipart([frames[0][:TAG_BYTES] + b"\x00", packb(header), frames[2]])
        assert told_at is not None, daemon.log()
        assert replies == ["OK"] * 300 and after_drain == 0, daemon.log()
        assert "worker pid 51 drained and stopped" in daemon.log()
    finally:
        context.destroy(linger=0)
        assert daemon.terminate() == 0


def test_heirlooms_worker_says_gone_only_once_its_broker_said_drain_after_its_draining_heartbeat(tmp_path):
    """heirloom's worker said GONE as soon as it had nothing in flight, so a request its broker
    sent before reading the draining heartbeat failed as 'drained and stopped'. Against a bare
    ROUTER as broker: a request sent after that heartbeat is still answered, and GONE follows DRAIN."""
    broker_address = free_tcp_address()
    profile = write(tmp_path / "worker.toml", PROFILE.format(max_queue=1024, grace=10))
    context = zmq.Context()
    broker = context.socket(zmq.ROUTER)
    broker.bind(broker_address)
    command = [*HEIRLOOM, "worker", str(profile), "--connect", broker_address]
    worker = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=_worker_env())

    def received() -> list[bytes]:
        """The next message from the worker: GONE only once the broker has said DRAIN."""
        assert broker.poll(30_000), "the worker sent nothing"
        frames = broker.recv_multipart()
        assert frames[1:] != [CONTROL, b"GONE"] or drain_said, "GONE before the broker said DRAIN"
        return frames

    def next_status() -> tuple[bytes, dict]:
        """The worker's routing id and its next heartbeat."""
        while (frames := received())[1:3] != [CONTROL, b"HEARTBEAT"]:
            pass
        return frames[0], unpackb(frames[3])

    drain_said = False
    try:
        while not next_status()[1]["ready"]:
            pass
        worker.send_signal(signal.SIGTERM)
        while not (status := next_status())[1]["draining"]:
            pass
        identity = status[0]
        time.sleep(0.3)  # a request the broker routed before it read that heartbeat, still on its way
        tag = b"\x01" * TAG_BYTES
        broker.send_multipart([identity, tag + b"client", packb({"id": 7, "route": "echo.echo"}), packb("late")])
        while (reply := received())[1] == CONTROL:
            pass
        assert reply[1:] == [tag + b"\x00", reply[2], packb("late")] and unpackb(reply[2])["id"] == 7
        drain_said = True
        broker.send_multipart([identity, CONTROL, b"DRAIN"])  # it routes nothing more there
        while received()[1:] != [CONTROL, b"GONE"]:
            pass
        assert worker.wait(30) == 0
    finally:
        worker.kill()
        context.destroy(linger=0)


def test_a_worker_stopped_while_it_starts_neither_says_ready_nor_doubts_its_broker(tmp_path):
    """h316 F3: a worker stopped as it started, whose broker answered nothing (one of an older heirloom, or
    one stopping too), logged "ready" after its "draining" line and, after three heartbeats, a WARNING to
    check --connect. A draining worker is not ready, and has no advice to give on where it connects."""
    broker_address = free_tcp_address()
    profile = write(tmp_path / "worker.toml", PROFILE.format(max_queue=1024, grace=10))
    context = zmq.Context()
    broker = context.socket(zmq.ROUTER)  # takes heartbeats, answers none
    broker.bind(broker_address)
    command = [*HEIRLOOM, "worker", str(profile), "--connect", broker_address, "--set", "apis.t.start_ms=1500"]
    log_path = tmp_path / "worker.log"
    env = _worker_env()
    worker = subprocess.Popen(command, stderr=log_path.open("w"), env=env)
    try:
        assert broker.poll(30_000), "the worker sent nothing"  # its first heartbeat: its stop handlers are set
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_path.read_text()
    finally:
        worker.kill()
        context.destroy(linger=0)
    said = log_path.read_text()
    _, drains, after = said.partition("heirloom.server: draining")
    assert drains and "wire.daemon: stopped" in after and "ready" not in after, said
    assert "has not answered as a broker" not in said, said


def _model_versions(client) -> dict[int, str | None]:
    """Each ready worker's pid and the version of model m it serves, as ``_ready`` shows its heartbeat."""
    return {w["pid"]: w["models"].get("m", {}).get("version") for w in client.call("_ready")["workers"] if w["ready"]}


def test_ready_workers_serving_two_versions_of_a_model_past_a_rolling_swap_are_warned_about(tmp_path):
    """Checker h322 F2: a worker started with ``--set models.NAME.serve=1`` beside workers serving @2 joined
    in silence; clients got replies of both versions for good and ``_stats`` ``models`` showed only the first
    worker's. Now the broker warns, naming each version's worker pids, once the mix outlasts a rolling swap's
    grace, and says when one version is served again; a hot swap across the workers is no warning."""
    store = tmp_path / "store"
    env = {"HEIRLOOM_STORE": str(store), "HEIRLOOM_PLUGINS": "tests.toys"}
    text = (
        'project = "team"\n[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
        '[apis.t]\nuse = "toy-api"\nmodel = "m"\nversioned = true\n[server]\nheartbeat = 0.2\nreload_interval = 0.2\n'
    )
    profile = write(tmp_path / "team.toml", text)
    assert run_heirloom("train", str(profile), env=env).returncode == 0  # team/m@1
    worker_address = free_tcp_address()
    daemon = Daemon(tmp_path, "--workers", "2", "--worker-bind", worker_address, profile=text, env=env)
    grace, warned = swap_grace(0.2, 0.2), "the ready workers have served model m in 2 versions"
    pinned = None
    try:
        daemon.wait_ready()
        trained = run_heirloom("train", str(profile), "--set", "models.m.epochs=2", env=env)
        assert trained.returncode == 0, trained.stderr  # team/m@2, the latest: both workers swap to it
        with daemon.client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while set((ours := _model_versions(client)).values()) != {"team/m@2"} or len(ours) < 2:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            time.sleep(grace + 1)
            assert warned not in daemon.log()  # the swap's moment of two versions is no warning
            command = [*_worker_command(tmp_path, worker_address), "--set", "models.m.serve=1"]
            pinned = subprocess.Popen(command, env={**os.environ, **env}, stderr=subprocess.DEVNULL)
            while _model_versions(client).get(pinned.pid) != "team/m@1":
                assert time.monotonic() < deadline and pinned.poll() is None, daemon.log()
                time.sleep(0.1)
            replies: Counter[str] = Counter()  # 30 at once all went to the two @2 workers once (CI): more rounds
            while set(replies) != {"team/m@1", "team/m@2"} and replies.total() < 600:
                replies.update(f.result(10).body["version"] for f in [client.submit("t.predict", 1) for _ in range(30)])
            assert set(replies) == {"team/m@1", "team/m@2"}, replies  # what the warning is about
            assert warned not in daemon.log()  # not before the grace
            daemon.wait_logged(warned, timeout=grace + 10)
            line = next(line for line in daemon.log().splitlines() if warned in line)
            a, b = sorted(ours)
            assert f"team/m@1 by worker pid {pinned.pid}; team/m@2 by worker pids {a}, {b}" in line, line
            assert "WARNING" in line and "--set models.m.serve" in line, line
            pinned.send_signal(signal.SIGTERM)
            assert pinned.wait(30) == 0
            daemon.wait_logged("the ready workers serve one version of model m again", timeout=10)
        assert daemon.log().count(warned) == 1, daemon.log()  # rate-limited: once while it lasted
    finally:
        stopped = daemon.terminate()  # asserted once the workers are killed: a failed assert left them running
        if pinned is not None:
            pinned.kill()
        assert stopped == 0


def _start_failure(daemon: Daemon) -> str:
    """What ``_ready`` says of a broker whose workers cannot start (it stays up, not ready), once it says it."""
    deadline = time.monotonic() + 60
    while "could not start" not in (probe := run_heirloom("call", "_ready", "--connect", daemon.address)).stderr:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.5)
    return probe.stderr


def _nested(levels: int, leaf: object) -> dict:
    """The body of ``t.deep`` for ``chain(levels)``: ``{"c": {"c": {"v": leaf}}}`` for 3."""
    return functools.reduce(lambda inner, _: {"c": inner}, range(levels - 1), {"v": leaf})


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_a_route_schema_nesting_past_the_limit_fails_the_start_naming_it_and_one_at_the_limit_serves(tmp_path, workers):
    """Checker h336 F1: an input class nesting 16 levels was served by one process, but with --workers the broker
    refused every heartbeat carrying its schema: _ready said "0 of 2 workers ready", start_failure null, for good,
    and each worker logged "ready" and a wrong "--connect" hint. Now the start fails alike in both, naming the
    route, and a schema nesting the most a heartbeat carries (61 levels) is served by workers too."""
    nests = f"input schema nests {MAX_SCHEMA_DEPTH + 2} levels, at most {MAX_SCHEMA_DEPTH}"
    said = f"apis.t (testing, plugin tests.testing_api): route 'deep': {nests}"
    over = Daemon(tmp_path, *workers, profile=f'[apis.t]\nuse = "testing"\nnest = {MAX_SCHEMA_DEPTH // 2 + 1}\n')
    try:
        if workers:
            assert said in _start_failure(over)
            assert "takes this worker's heartbeats but has not answered" not in over.log()
        else:
            assert over.process.wait(30) != 0
        assert f"system failed to start: {said}" in over.log()
    finally:
        over.terminate()
    at_limit = tmp_path / "at_limit"
    at_limit.mkdir()
    daemon = Daemon(at_limit, *workers, profile=f'[apis.t]\nuse = "testing"\nnest = {MAX_SCHEMA_DEPTH // 2}\n')
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            schema = next(route for route in client.call("_routes")["routes"] if route["name"] == "t.deep")["input"]
            assert schema == json_schema(chain(MAX_SCHEMA_DEPTH // 2))
            assert client.call("t.deep", _nested(MAX_SCHEMA_DEPTH // 2, 5)).endswith("(v=5)" + ")" * 29)
            with pytest.raises(InvalidArgument) as refused:
                client.call("t.deep", _nested(MAX_SCHEMA_DEPTH // 2, "x"))
            assert refused.value.message == f"body{'.c' * 29}.v: expected integer, got string 'x'"
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_worker_whose_heartbeat_its_broker_would_refuse_fails_its_start_saying_why(tmp_path):
    """Checker h336 F1: a worker whose heartbeat the broker refused (here its resource manager's usage nests 71
    levels) logged "ready", then a wrong hint to check --connect, and _ready said start_failure null for good: it
    reads its heartbeat as its broker would before it says ready, and fails its start with what is wrong."""
    profile = '[resources]\nuse = "faulty"\nfail = "usage_deep"\n[apis.t]\nuse = "testing"\n'
    alone = Daemon(tmp_path, profile=profile)  # one process has no heartbeat: served
    try:
        alone.wait_ready()
    finally:
        assert alone.terminate() == 0, alone.log()
    brokered = tmp_path / "brokered"
    brokered.mkdir()
    daemon = Daemon(brokered, "--workers", "2", profile=profile)
    try:
        said = "the broker would refuse this worker's heartbeat: the heartbeat is refused: the value nests arrays"
        assert said in _start_failure(daemon)
        log = daemon.log()
        assert f"system failed to start: {said}" in log and "takes this worker's heartbeats but" not in log
        assert not re.search(r"\bready; requests come through the broker", log), log
    finally:
        assert daemon.terminate() == 0, daemon.log()


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_a_route_whose_input_class_holds_itself_is_described_once_and_served(tmp_path, workers):
    """Checker h336 F2: ``Node.children: list[Node]`` made every _routes INTERNAL (RecursionError) in one process,
    and with workers each worker died at its first heartbeat, respawned for good, the log growing by thousands of
    lines a second. Its schema names the class under $defs and refers to it; bodies are checked at any depth."""
    daemon = Daemon(tmp_path, *workers, profile='[apis.t]\nuse = "testing"\nrich = true\n')
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            route = next(route for route in client.call("_routes")["routes"] if route["name"] == "t.tree")
            node = {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "additionalProperties": False,
                "required": ["name"],
                "description": "A tree: a route's input class that holds itself (checker h336 F2).",
            }
            assert route["input"] == route["output"] == {**node, "$defs": {"Node": node}}
            tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
            assert client.call("t.tree", tree) == {
                "name": "a",
                "children": [{"name": "b", "children": [{"name": "c", "children": []}]}],
            }
            with pytest.raises(InvalidArgument) as refused:
                client.call("t.tree", {"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]})
            assert refused.value.message == "body.children[0].children[0].name: expected string, got integer 3"
        assert "Traceback" not in daemon.log() and "exited with" not in daemon.log()
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_heartbeat_carries_a_route_schema_nesting_the_most_a_route_may_state_and_no_more():
    """The broker's heartbeat limit is the routes' schema limit plus the heartbeat's own levels (a route under
    ``routes``): a schema one level deeper than a route may state is refused, so the start check covers it."""
    deepest = functools.reduce(lambda inner, _: {"x": inner}, range(MAX_SCHEMA_DEPTH - 1), {})
    route = {"name": "t.deep", "admin": False, "input": deepest}
    assert read_heartbeat(packb({"pid": 1, "routes": [route]}))["routes"][0]["input"] == deepest
    with pytest.raises(ValueError, match="the heartbeat is refused: the value nests arrays and maps deeper than"):
        read_heartbeat(packb({"pid": 1, "routes": [{**route, "output": {"x": deepest}}]}))
