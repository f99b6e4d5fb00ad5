"""``heirloom serve --metrics-port``: Prometheus scrapes /metrics from a daemon under load."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import wait

import msgpack
import pytest
import yaml
import zmq

from heirloom.core.paths import home as heirloom_home
from heirloom.core.quota import MIB
from heirloom.wire.client import RemoteError, ResourceExhausted
from tests.daemons import Daemon
from tests.helpers import REPO, free_port, run_heirloom, write

parser = pytest.importorskip(
    "prometheus_client.parser", reason="needs the 'metrics' extra: pip install -c constraints.txt -e '.[metrics]'"
)

PROFILE = """
project = "metered"

[resources]
max_in_flight = 10000
artifact_quota_mb = 7
memory_budget_mb = 8192

[server]
grace = 10
heartbeat = 0.2

[sources.rows]
use = "toy-source"

[models.m]
use = "toy-model"
data = "rows"

[apis.echo]
use = "echo"

[apis.t]
use = "testing"
"""
PLUGINS = {"HEIRLOOM_PLUGINS": "tests.testing_api,tests.toys"}
ECHOES, BATCHED, BOOMS, BAD, UNKNOWN = 300, 60, 3, 4, 5


def scrape(port: int, query: str = "") -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of one scrape, parsed by prometheus-client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def try_scrape(port: int) -> dict:
    """A scrape, or nothing while the exporter is not listening yet."""
    try:
        return scrape(port)
    except OSError:
        return {}


def value(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


@pytest.fixture
def served(tmp_path):
    """A profile with a trained toy model in the store (so a version is served)."""
    profile = write(tmp_path / "metered.toml", PROFILE)
    trained = run_heirloom("train", str(profile), env=PLUGINS)
    assert trained.returncode == 0, trained.stderr
    return profile


def load(client, slow_ms: int) -> tuple[list, list]:
    """Fast traffic of every kind (answered), and slow requests still in flight."""
    slow = [client.submit("t.slow", {"ms": slow_ms}) for _ in range(2)]
    fast = [client.submit("echo.echo", i) for i in range(ECHOES)]
    fast += [client.submit("t.batched", {"values": [1, 2]}) for _ in range(BATCHED)]
    fast += [client.submit("t.boom") for _ in range(BOOMS)]
    fast += [client.submit("t.typed", {"text": 5}) for _ in range(BAD)]
    fast += [client.submit("echo.ehco", i) for i in range(UNKNOWN)]  # a typo: refused before any route
    wait(fast, timeout=30)
    return fast, slow


def send_garbage(address: str) -> None:
    """One message without the protocol signature: dropped, never answered."""
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as socket:
        socket.setsockopt(zmq.LINGER, 1000)
        socket.connect(address)
        socket.send_multipart([b"", b"not heirloom"])


def send_unreadable_header(address: str) -> None:
    """One message with the signature and a header that is not msgpack: refused before routing."""
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as socket:
        socket.setsockopt(zmq.LINGER, 1000)
        socket.connect(address)
        socket.send_multipart([b"HLM1", b"\xc1", b"\xc0"])
        assert socket.poll(10_000), "no reply to a message with an unreadable header"
        header = msgpack.unpackb(socket.recv_multipart()[1])
        assert header["status"] == "INVALID_ARGUMENT"


def check_counts(samples, *, expected_processes: int) -> None:
    requests = "heirloom_requests_total"
    assert value(samples, requests, route="echo.echo", status="OK") == ECHOES
    assert value(samples, requests, route="t.batched", status="OK") == BATCHED
    assert value(samples, requests, route="t.boom", status="INTERNAL") == BOOMS
    assert value(samples, requests, route="t.typed", status="INVALID_ARGUMENT") == BAD
    # every status is a series from the start, at 0: increase() counts a route's first error
    assert value(samples, requests, route="echo.echo", status="INTERNAL") == 0
    assert value(samples, "heirloom_refused_unrouted_total", status="RESOURCE_EXHAUSTED") == 0
    latency = "heirloom_request_duration_seconds"
    assert value(samples, f"{latency}_count", route="echo.echo") == ECHOES
    assert 0 < value(samples, f"{latency}_sum", route="echo.echo") < ECHOES * 1.0
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for labels, count in samples[f"{latency}_bucket"].items()
        if dict(labels)["route"] == "echo.echo"
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and counts[-1] == ECHOES, "cumulative buckets end at the count"
    slow_sum = value(samples, f"{latency}_sum", route="t.slow")
    assert value(samples, f"{latency}_count", route="t.slow") == 2 and slow_sum >= 2 * 0.8
    queue = "heirloom_request_queue_seconds"
    assert value(samples, f"{queue}_count", route="t.batched") == BATCHED
    assert 0 <= value(samples, f"{queue}_sum", route="t.batched") <= value(samples, f"{latency}_sum", route="t.batched")
    batches = "heirloom_batch_size"
    assert value(samples, f"{batches}_sum", route="t.batched") == 2 * BATCHED, "every item counted once"
    assert 1 <= value(samples, f"{batches}_count", route="t.batched") <= BATCHED
    assert ("route", "echo.echo") not in {label for labels in samples[f"{batches}_count"] for label in labels}
    assert value(samples, "heirloom_dropped_frames_total") == 1
    assert value(samples, "heirloom_refused_unrouted_total", status="NOT_FOUND") == UNKNOWN
    assert value(samples, "heirloom_refused_unrouted_total", status="INVALID_ARGUMENT") == 1
    (labels, count), *_ = samples["heirloom_model_info"].items()
    info = dict(labels)
    assert info["model"] == "m" and info["ref"] == "metered/m@1" and len(info["digest"]) == 64
    assert count == expected_processes
    assert value(samples, "process_resident_memory_bytes") > 10e6
    assert value(samples, "process_cpu_seconds_total") > 0


def test_a_daemon_under_load_exports_every_family(tmp_path, served):
    port = free_port()
    daemon = Daemon(tmp_path, "--metrics-port", str(port), profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        with daemon.client(timeout=30, retries=0) as client:
            fast, slow = load(client, slow_ms=1500)
            during = scrape(port)
            assert value(during, "heirloom_in_flight") >= 2
            assert value(during, "heirloom_queue_depth", route="t.slow") == 2
            assert value(during, "heirloom_queue_depth", route="echo.echo") == 0
            assert sum(isinstance(f.exception(), RemoteError) for f in fast) == BOOMS + BAD + UNKNOWN
            send_garbage(daemon.address)
            send_unreadable_header(daemon.address)
            wait(slow, timeout=30)
            time.sleep(0.2)
            after = scrape(port)
            assert client.call("_stats")["refused_unrouted"] == {"NOT_FOUND": UNKNOWN, "INVALID_ARGUMENT": 1}
        check_counts(after, expected_processes=1)
        assert value(after, "heirloom_in_flight") == 0
        assert value(after, "heirloom_queue_depth", route="t.slow") == 0
        assert value(after, "heirloom_ready") == 1 and value(after, "heirloom_model_ready", model="m") == 1
        # one series by name, as prometheus-client's exporters answer it (it answered an empty page: h434 F3)
        named = scrape(port, "?name[]=heirloom_ready&name[]=process_open_fds")
        assert sorted(named) == ["heirloom_ready", "process_open_fds"] and value(named, "heirloom_ready") == 1
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_only_requests_whose_handler_started_are_queue_time_samples(tmp_path):
    """One process sampled each request it refused at admission (RESOURCE_EXHAUSTED) as a zero wait
    in heirloom_request_queue_seconds: 86,981 of 93,314 samples while it shed load, so the queue-time
    p99 read 0 exactly when the queue was longest (a broker samples no refusal either)."""
    port = free_port()
    daemon = Daemon(tmp_path, "--metrics-port", str(port), "--set", "resources.max_in_flight=1")
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10, retries=0) as client:
            slow = client.submit("t.slow", {"ms": 1500})
            while client.call("_stats")["in_flight"] < 1:
                time.sleep(0.02)
            refused = 0
            for _ in range(20):
                with pytest.raises(ResourceExhausted):
                    client.call("t.slow", {"ms": 1})
                refused += 1
            slow.result()
            client.call("t.slow", {"ms": 1})  # admitted: its handler starts
            samples = scrape(port)
        assert value(samples, "heirloom_requests_total", route="t.slow", status="RESOURCE_EXHAUSTED") == refused == 20
        assert value(samples, "heirloom_request_duration_seconds_count", route="t.slow") == 22
        assert value(samples, "heirloom_request_queue_seconds_count", route="t.slow") == 2  # the two that ran
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_an_ipv6_metrics_address_is_logged_as_a_url_one_can_open(tmp_path):
    """``--metrics-host ::1`` logged ``metrics at http://::1:PORT/metrics``, which curl cannot open (h316 F2)."""
    port = free_port()
    daemon = Daemon(tmp_path, "--metrics-host", "::1", "--metrics-port", str(port))
    try:
        daemon.wait_ready()
        url = f"http://[::1]:{port}/metrics"
        daemon.wait_logged(f"metrics at {url}")
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert b"heirloom_ready" in answer.read()
    finally:
        assert daemon.terminate() == 0, daemon.log()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "two workers"])
def test_a_batched_route_exports_its_batch_sizes_at_zero_before_its_first_batch(tmp_path, served, workers):
    """Before its first batch a batched route had no heirloom_batch_size series at all, so the
    first batch's increase() was lost; a route that is not batched has none, ever."""
    port = free_port()
    daemon = Daemon(tmp_path, "--metrics-port", str(port), *workers, profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        deadline = time.monotonic() + 10
        while (("route", "t.batched"),) not in try_scrape(port).get("heirloom_batch_size_count", {}):
            assert time.monotonic() < deadline, "no heirloom_batch_size series for t.batched"  # a heartbeat brings it
            time.sleep(0.2)
        before = scrape(port)
        assert value(before, "heirloom_batch_size_count", route="t.batched") == 0
        assert value(before, "heirloom_batch_size_sum", route="t.batched") == 0
        assert value(before, "heirloom_batch_size_bucket", route="t.batched", le="+Inf") == 0
        assert not [ls for ls in before["heirloom_batch_size_count"] if ("route", "echo.echo") in ls]
    finally:
        assert daemon.terminate() == 0, daemon.log()


UNTRAINED = """
project = "untrained"

[sources.texts]
use = "jsonl"
train = "{path}"

[models.sentiment]
use = "text-classifier"
data = "texts"

[apis.sentiment]
use = "classify"
model = "sentiment"
"""


def test_a_daemon_with_a_model_it_cannot_serve_says_so_without_traffic(tmp_path):
    """What an alert on readiness needs: no request has to fail first."""
    port = free_port()
    texts = write(tmp_path / "texts.jsonl", '{"text": "Profit rose", "label": "positive"}\n')
    daemon = Daemon(tmp_path, "--metrics-port", str(port), profile=UNTRAINED.format(path=texts))  # nothing trained
    try:
        deadline = time.monotonic() + 30
        while "heirloom_model_ready" not in (samples := try_scrape(port)):  # the model's start is done
            assert daemon.process.poll() is None and time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
        assert value(samples, "heirloom_ready") == 0
        assert value(samples, "heirloom_model_ready", model="sentiment") == 0
        assert "heirloom_model_info" not in samples
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_promoted_version_that_fails_to_load_is_a_stale_model_until_the_ref_names_a_good_one(tmp_path, served):
    """An attack round: a promoted version whose blob was damaged left every gauge at 1 (the
    daemon serves the older version on, as it should), so an alert could not tell. An
    operator's round: after a rollback the gauge stayed 1; and a version that once failed,
    then loaded, was never loaded again when its alias came back to it (served the old one,
    silently)."""
    from heirloom.store.artifacts import ArtifactStore

    port = free_port()
    text = served.read_text().replace('data = "rows"', 'data = "rows"\nserve = "production"')
    profile = write(
        tmp_path / "metered.toml", text.replace("heartbeat = 0.2", "heartbeat = 0.2\nreload_interval = 0.2")
    )
    store = ArtifactStore(heirloom_home() / "store")
    store.promote("metered/m@1", "production")
    daemon = Daemon(tmp_path, "--metrics-port", str(port), profile=profile.read_text(), env=PLUGINS)

    def production(version: int) -> None:  # moved by hand, as a restore or a script might
        with sqlite3.connect(store.root / "index.sqlite") as index:
            index.execute("UPDATE aliases SET version = ? WHERE alias = 'production'", (version,))

    def serving(version: str, failing: bool) -> None:
        deadline = time.monotonic() + 20
        with daemon.client(timeout=10) as client:
            while (m := client.call("_stats")["models"]["m"])["version"] != version or bool(m["error"]) != failing:
                assert time.monotonic() < deadline, (m, daemon.log())
                time.sleep(0.1)
        samples = scrape(port)
        assert value(samples, "heirloom_model_stale", model="m") == failing
        assert value(samples, "heirloom_model_ready", model="m") == 1  # it always serves one

    try:
        daemon.wait_ready()
        serving("metered/m@1", failing=False)
        before = {path.name for path in store.blobs.iterdir()}
        assert run_heirloom("train", str(profile), "--set", "models.m.epochs=2", env=PLUGINS).returncode == 0
        blob = next(path for path in store.blobs.iterdir() if path.name not in before and path.suffix == ".json")
        good = blob.read_bytes()
        blob.write_bytes(b"{}")  # damaged, then promoted by hand
        production(2)
        serving("metered/m@1", failing=True)
        production(1)  # rolled back: nothing fails now
        serving("metered/m@1", failing=False)
        production(2)  # the damaged version promoted again: said again (the gauge stayed 0)
        serving("metered/m@1", failing=True)
        production(1)
        serving("metered/m@1", failing=False)
        blob.write_bytes(good)  # mended, promoted again: _reload retries a version that failed
        production(2)
        with daemon.client(timeout=10) as client:
            client.call("_reload")
        serving("metered/m@2", failing=False)
        production(1)
        serving("metered/m@1", failing=False)
        production(2)  # back to the mended version: loaded again by the watcher alone
        serving("metered/m@2", failing=False)
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_with_workers_the_numbers_cover_every_worker(tmp_path, served):
    port = free_port()
    daemon = Daemon(tmp_path, "--workers", "2", "--metrics-port", str(port), profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        with daemon.client(timeout=30, retries=0) as client:
            fast, slow = load(client, slow_ms=1500)
            assert sum(isinstance(f.exception(), RemoteError) for f in fast) == BOOMS + BAD + UNKNOWN
            time.sleep(0.5)  # a heartbeat carries the workers' queue depths
            during = scrape(port)
            assert value(during, "heirloom_in_flight") >= 2
            assert value(during, "heirloom_queue_depth", route="t.slow") == 2
            send_garbage(daemon.address)
            send_unreadable_header(daemon.address)
            wait(slow, timeout=30)
        stats = client_stats(daemon)
        pids = {w["pid"] for w in stats["workers"]}
        assert stats["refused_unrouted"] == {"NOT_FOUND": UNKNOWN, "INVALID_ARGUMENT": 1}
        assert len(pids) == 2
        deadline = time.monotonic() + 10
        while True:  # batch sizes arrive with the next heartbeat of each worker
            after = scrape(port)
            batched = after.get("heirloom_batch_size_sum", {}).get((("route", "t.batched"),), 0)
            if batched == 2 * BATCHED or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        check_counts(after, expected_processes=2)
        workers = {state: value(after, "heirloom_workers", state=state) for state in ("ready", "expected")}
        assert workers == {"ready": 2, "expected": 2}
        assert value(after, "heirloom_ready") == 1 and value(after, "heirloom_workers_lost_total") == 0
        batches = client_stats(daemon)["routes"]["t.batched"]["batch_sizes"]  # as one process reports them
        assert round(batches["mean"] * batches["batches"]) == 2 * BATCHED, "every item of every batch counted"
        assert 2 <= batches["p50"] <= batches["max"] <= 2 * BATCHED
        for source, exprs in shipped_queries().items():  # a broker with workers exports every family
            for name in sorted({n for expr in exprs for n in re.findall(r"\bheirloom_\w+", expr)}):
                assert name in after, f"{source} queries {name}, which no heirloom daemon exports"
    finally:
        assert daemon.terminate() == 0, daemon.log()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "two workers"])
def test_storage_and_memory_are_exported_against_their_limits(tmp_path, served, workers):
    """A train refused past the artifact quota, workers near their memory budget: only ``_stats``
    said so, and with workers process_resident_memory_bytes is the broker's alone."""
    noted = run_heirloom("train", str(served), "--set", f"models.m.note={'n' * 60_000}", env=PLUGINS)
    assert noted.returncode == 0, noted.stderr  # a version of 60 kB: the toy's others hold a few bytes
    port = free_port()
    daemon = Daemon(tmp_path, "--metrics-port", str(port), *workers, profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        with daemon.client(timeout=10) as client:
            stats, own = client.call("_stats"), client.call("_health")["pid"]
        pids = {str(worker["pid"]) for worker in stats.get("workers", [])} or {str(own)}
        samples = scrape(port)
        artifacts = stats["storage"]["artifacts"]["used_mb"]
        assert (
            0
            < value(samples, "heirloom_storage_used_bytes", store="artifacts")
            == pytest.approx(artifacts * MIB, abs=1024)
        )
        assert value(samples, "heirloom_storage_quota_bytes", store="artifacts") == 7 * MIB
        assert (("store", "logs"),) in samples["heirloom_storage_used_bytes"]
        assert (("store", "logs"),) not in samples.get("heirloom_storage_quota_bytes", {})  # no log quota: no series
        assert {dict(labels)["worker"] for labels in samples["heirloom_resident_bytes"]} == pids
        for pid in pids:
            assert value(samples, "heirloom_resident_bytes", worker=pid) > 10 * MIB
            assert value(samples, "heirloom_memory_budget_bytes", worker=pid) == 8192 * MIB
        assert value(samples, "heirloom_dropped_replies_total") == 0
        assert value(samples, "heirloom_undeliverable_replies_total") == 0
        if workers:  # a replaced worker's series ends: only connected workers are exported
            victim = min(pids)
            os.kill(int(victim), signal.SIGKILL)
            deadline = time.monotonic() + 60
            while victim in (now := {dict(ls)["worker"] for ls in scrape(port)["heirloom_resident_bytes"]}):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.1)
            daemon.wait_ready()
            now = {dict(labels)["worker"] for labels in scrape(port)["heirloom_resident_bytes"]}
            assert len(now) == 2 and victim not in now, now
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_broker_exports_its_own_routes_from_the_start_without_queue_times(tmp_path, served):
    """Before any worker was ready a broker exported no request series at all, and ``_scale`` had
    none until its first call (lost to increase()), then a queue-time sample no other built-in has."""
    port = free_port()
    slow = ("--set", "models.m.start_seconds=4")  # workers not ready yet while the broker answers
    daemon = Daemon(
        tmp_path, "--workers", "2", "--metrics-port", str(port), *slow, profile=served.read_text(), env=PLUGINS
    )
    try:
        deadline = time.monotonic() + 30
        while not (before := try_scrape(port)):
            assert daemon.process.poll() is None and time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert value(before, "heirloom_workers", state="ready") == 0
        requests = before["heirloom_requests_total"]
        for route in ("_health", "_ready", "_routes", "_stats", "_reload", "_scale"):
            assert requests[(("route", route), ("status", "OK"))] == 0
            assert requests[(("route", route), ("status", "INVALID_ARGUMENT"))] == 0
        with daemon.client(timeout=10, retries=0) as client:
            client.call("_health")
            with pytest.raises(RemoteError, match="_scale needs a resource manager that places workers"):
                client.call("_scale", {"workers": 3})
        daemon.wait_ready()
        after = scrape(port)
        assert value(after, "heirloom_requests_total", route="_scale", status="INVALID_ARGUMENT") == 1
        assert value(after, "heirloom_requests_total", route="_health", status="OK") == 1
        assert value(after, "heirloom_request_duration_seconds_count", route="_scale") == 1
        for route in ("_health", "_scale"):  # answered by the broker itself: no queue
            assert value(after, "heirloom_request_queue_seconds_count", route=route) == 0
        assert value(after, "heirloom_requests_total", route="echo.echo", status="OK") == 0  # the workers' own
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_lost_worker_is_counted_and_logged_once(tmp_path, served):
    """The broker keeps serving on the other worker (``serving``), ``_ready`` waits for the
    respawned one, and the loss is a counter an alert can watch."""
    port = free_port()
    daemon = Daemon(tmp_path, "--workers", "2", "--metrics-port", str(port), profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        victim = client_stats(daemon)["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while value(scrape(port), "heirloom_workers_lost_total") < 1:
            assert time.monotonic() < deadline, "the lost worker was never counted"
            time.sleep(0.05)
        with daemon.client(timeout=10) as client:
            ready = client.call("_ready")
        assert ready["serving"] and not ready["ready"], ready
        assert value(scrape(port), "heirloom_ready") == 0
        daemon.wait_ready()
        samples = scrape(port)
        assert value(samples, "heirloom_ready") == 1 and value(samples, "heirloom_workers_lost_total") == 1
        assert daemon.log().count(f"worker pid {victim} exited") == 1, daemon.log()
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_hung_worker_is_counted_lost_once(tmp_path, served):
    """A silent worker is dropped (counted) and killed; its exit was counted a second time,
    so two hangs looked like a crash loop to HeirloomWorkersLost."""
    port = free_port()
    daemon = Daemon(tmp_path, "--workers", "2", "--metrics-port", str(port), profile=served.read_text(), env=PLUGINS)
    try:
        daemon.wait_ready()
        victim = client_stats(daemon)["workers"][0]["pid"]
        os.kill(victim, signal.SIGSTOP)  # alive, silent
        deadline = time.monotonic() + 30
        while f"worker pid {victim} exited" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
        daemon.wait_ready()
        assert value(scrape(port), "heirloom_workers_lost_total") == 1, daemon.log()
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_worker_that_cannot_start_is_counted_lost_and_logged_once(tmp_path):
    """A worker whose start failed was counted lost when it said so and again when its exit
    was reaped, and its reason logged twice: HeirloomWorkersLost fired at half its threshold."""
    profile = '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
    toys = {"HEIRLOOM_PLUGINS": "tests.toys"}
    assert run_heirloom("train", str(write(tmp_path / "daemon.toml", profile)), env=toys).returncode == 0
    for metadata in (heirloom_home() / "store" / "blobs").glob("*.json"):
        metadata.write_bytes(b"{}")  # the served version's metadata damaged: no worker can load it
    port = free_port()
    daemon = Daemon(tmp_path, "--workers", "2", "--metrics-port", str(port), profile=profile, env=toys)
    try:
        deadline = time.monotonic() + 60
        while len(failed := re.findall(r"worker pid (\d+) could not start", daemon.log())) < 3:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        while (lost := value(scrape(port), "heirloom_workers_lost_total")) < len(failed):  # counted as reaped
            assert time.monotonic() < deadline, (lost, daemon.log())
            time.sleep(0.1)
        log = daemon.log()
        after = re.findall(r"worker pid (\d+) could not start", log)
        gone = set(re.findall(r"worker pid (\d+) (?:could not start|exited with)", log))  # a GONE may be lost
        assert lost <= len(gone), (lost, log)  # twice each before
        assert len(after) == len(set(after)), log  # each failure said once
    finally:
        assert daemon.terminate() == 0, daemon.log()


def shipped_queries() -> dict[str, list[str]]:
    """The PromQL of deploy/'s alerting rules and Grafana dashboard, by file."""
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "heirloom-alerts.yml").read_text())
    dashboard = json.loads((REPO / "deploy" / "grafana" / "heirloom-dashboard.json").read_text())
    return {
        "heirloom-alerts.yml": [rule["expr"] for group in rules["groups"] for rule in group["rules"]],
        "heirloom-dashboard.json": [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]],
    }


def test_the_shipped_alerts_are_well_formed_rules():
    """What Prometheus requires of a rule file (promtool is not installed here), and what an
    operator's routing relies on: a severity and a summary on every alert."""
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "heirloom-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len({rule["alert"] for rule in alerts}) == len(alerts) >= 5
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"], rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule


def client_stats(daemon: Daemon) -> dict:
    with daemon.client(timeout=10) as client:
        return client.call("_stats")


def test_a_taken_metrics_port_is_a_clear_error(tmp_path):
    port = free_port()
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_heirloom("serve", "minimal", "--bind", f"ipc://{tmp_path}/s.sock", "--metrics-port", str(port))
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


EXPORTER = """
import json, os, resource, socket, sys
from heirloom.cli.logs import configure
from heirloom.wire.exporter import Exporter, MetricsAddress

configure(fmt="json")
snap = {"routes": {}, "in_flight": 0, "dropped_frames": 0, "refused_unrouted": {}, "models": [], "ready": True}
exporter = Exporter(MetricsAddress("127.0.0.1", 0), (lambda: snap) if sys.argv[1] == "ok" else (lambda: 1 / 0))
scraper = socket.create_connection(("127.0.0.1", exporter.port))  # connected before the limit, accepted after
if sys.argv[1] == "ok":  # room for the accepted socket and nothing else
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    fillers = []
    while (free := os.open(os.devnull, os.O_RDONLY)) < highest:  # every hole below it filled
        fillers.append(free)
    os.close(free)
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (free + 1, limits[1]))
scraper.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
answer = b""
while chunk := scraper.recv(65536):
    answer += chunk
if sys.argv[1] == "ok":  # back, for the threads' exit (it loads a library)
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
print(answer.decode().splitlines()[0], "heirloom_in_flight 0.0" in answer.decode())
"""


@pytest.mark.parametrize("case", ["ok", "raises"])
def test_a_first_scrape_at_the_descriptor_limit_answers_and_a_failed_one_is_a_log_line(case):
    """A first scrape imported prometheus_client.core, and at the descriptor limit could not open it: 500, and
    wsgiref's raw traceback on stderr, breaking --log-format json (h294 F1)."""
    result = subprocess.run([sys.executable, "-c", EXPORTER, case], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    if case == "ok":
        assert result.stdout.split()[1:] == ["200", "OK", "True"], result.stderr
        assert result.stderr == ""
    else:
        assert result.stdout.split()[1:] == ["500", "Internal", "Server", "Error", "False"]
        lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line JSON: no raw traceback
        assert [(line["level"], line["logger"]) for line in lines] == [("error", "heirloom.wire.metrics")]
        assert lines[0]["message"] == "a /metrics scrape failed (GET /metrics)"
        assert "ZeroDivisionError" in lines[0]["exc"]


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def metrics_daemon(tmp_path) -> tuple[Daemon, int]:
    """A one-process daemon logging JSON, with its metrics port answering."""
    port = free_port()
    echo = '[apis.echo]\nuse = "echo"\n'
    daemon = Daemon(tmp_path, "--metrics-port", str(port), "--log-format", "json", profile=echo)
    daemon.wait_ready()
    deadline = time.monotonic() + 30
    while not try_scrape(port):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    return daemon, port


def test_connections_reset_on_the_metrics_port_leave_the_json_log_json(tmp_path):
    """Each client that reset its connection to the metrics port wrote socketserver's raw 17-line traceback to
    stderr, past the JSON formatter and unthrottled (h332 F1)."""
    import socket
    import struct

    daemon, port = metrics_daemon(tmp_path)
    try:
        for sent in [b"", b"G", b"GET /metrics HTTP/1.1\r\n"] * 17:  # nothing, a partial line, a partial request
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(sent)
                time.sleep(0.01)  # accepted and reading
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        time.sleep(1)
        assert value(scrape(port), "heirloom_ready") == 1  # still serving
    finally:
        assert daemon.terminate() == 0
    lines = [json.loads(line) for line in daemon.log().splitlines()]  # every line JSON: no raw traceback
    assert [line for line in lines if line["level"] != "info" or line["logger"] == "heirloom.wire.metrics"] == []
    assert "Traceback" not in daemon.log()


def test_idle_connections_to_the_metrics_port_are_closed_and_their_threads_end(tmp_path):
    """A connection that sent nothing, or half a request, held a thread for as long as its client kept it open: 500
    idle ones, 381 threads (h332 F2)."""
    import socket

    from heirloom.wire.exporter import READ_TIMEOUT

    daemon, port = metrics_daemon(tmp_path)
    try:
        time.sleep(0.5)  # the scrape's thread gone
        before = threads(daemon.process.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for connection in idle[::2]:
            connection.sendall(b"GET /metrics HTTP/1.1\r\n")  # half a request
        deadline = time.monotonic() + 10
        while threads(daemon.process.pid) < before + 20:  # a thread each
            assert time.monotonic() < deadline, threads(daemon.process.pid)
            time.sleep(0.1)
        opened = time.monotonic()
        for connection in idle:
            connection.settimeout(READ_TIMEOUT + 20)
            assert connection.recv(1) == b""  # closed by the daemon
            connection.close()
        assert READ_TIMEOUT - 1 < time.monotonic() - opened < READ_TIMEOUT + 10
        deadline = time.monotonic() + 10
        while threads(daemon.process.pid) > before:
            assert time.monotonic() < deadline, (before, threads(daemon.process.pid))
            time.sleep(0.1)
        assert value(scrape(port), "heirloom_ready") == 1
    finally:
        assert daemon.terminate() == 0
    lines = [json.loads(line) for line in daemon.log().splitlines()]
    assert [line for line in lines if line["level"] != "info" or line["logger"] == "heirloom.wire.metrics"] == []
