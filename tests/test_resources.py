"""Resource management on one host (issue 15): compute, storage and network limits of the
``local`` resource manager, each driven through the real CLI or a real daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import wait

import numpy as np
import pytest

import heirloom
from heirloom.wire.client import ResourceExhausted, Unavailable
from tests.daemons import PROFILE, Daemon
from tests.helpers import HEIRLOOM, run_heirloom, write, write_log

TOYS = {"HEIRLOOM_PLUGINS": "tests.toys"}
TRAIN_PROFILE = """
project = "{project}"
[resources]
{resources}
[sources.s]
use = "toy-source"
rows = 50
[models.m]
use = "toy-model"
data = "s"
"""
DAEMON_PROFILE = """
project = "limits"
[resources]
{resources}
[server]
handler_threads = 4
[apis.echo]
use = "echo"
[apis.t]
use = "testing"
"""


@pytest.fixture
def serve(tmp_path):
    """``serve(resources, *args)``: a ready daemon of DAEMON_PROFILE, stopped after the test
    even when it fails (a broker's workers go with it)."""
    running: list[Daemon] = []

    def start(resources: str, *args: str) -> Daemon:
        daemon = Daemon(tmp_path, *args, profile=DAEMON_PROFILE.format(resources=resources))
        running.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in running:
        if daemon.process.poll() is None:
            try:
                daemon.terminate(timeout=15)
            except Exception:  # noqa: BLE001 - a stuck daemon is killed instead
                daemon.kill()


def train_profile(tmp_path, resources: str = "", project: str = "quota"):
    return write(tmp_path / "train.toml", TRAIN_PROFILE.format(project=project, resources=resources))


def versions(project: str) -> list[str]:
    return [a.ref for a in heirloom.ArtifactStore.default().list(project)]


# -- A. compute ------------------------------------------------------------------------------
def test_a_flood_of_echo_calls_is_refused_daemon_wide_with_two_workers(serve):
    daemon = serve("max_in_flight = 2", "--workers", "2")
    with daemon.client(timeout=20, retries=0) as client:
        futures = [client.submit("echo.echo", i) for i in range(1000)]
        wait(futures, timeout=30)
        answered = [f.exception() or f.result().body for f in futures]
        refused = [a for a in answered if isinstance(a, ResourceExhausted)]
        assert all(a == i for i, a in enumerate(answered) if not isinstance(a, Exception)), "every other call is OK"
        assert len(refused) + sum(not isinstance(a, Exception) for a in answered) == 1000  # none lost
        assert refused and all(r.retry_after_ms >= 10 and "max_in_flight (2) reached" in r.message for r in refused)
        stats = client.call("_stats")
        assert stats["resources"]["max_in_flight"] == 2
        assert stats["routes"]["echo.echo"]["errors"]["RESOURCE_EXHAUSTED"] == len(refused)
        assert client.call("echo.echo", "after") == "after"
    assert daemon.terminate() == 0


def test_a_single_process_refusal_names_the_limit_and_its_value(serve):
    """One process's refusals said only "in-flight or memory limit"; the log and the broker named it."""
    daemon = serve("max_in_flight = 1")
    with daemon.client(timeout=20, retries=0) as client:
        slow = client.submit("t.slow", {"ms": 1500})
        time.sleep(0.3)
        with pytest.raises(ResourceExhausted) as refused:
            client.call("echo.echo", 1)
        assert "resources.max_in_flight (1) reached: this process has 1 requests in flight" in refused.value.message
        slow.result(timeout=10)


def test_a_daemon_started_past_its_memory_budget_says_it_is_not_ready_at_once(tmp_path):
    """A budget below what the idle daemon holds: it said ``ready`` and ``_ready`` true for 10 s while refusing every
    request (a readiness probe let traffic in); never within its budget since it started, there is no flood to wait
    out (checker h454 F1)."""
    daemon = Daemon(tmp_path, profile=DAEMON_PROFILE.format(resources="memory_budget_mb = 1"))
    try:
        with daemon.client(timeout=20, retries=0) as client:
            until = time.monotonic() + 30
            while "resources" not in (ready := client.call("_ready")).get("components", {}):  # its first answer
                assert time.monotonic() < until and daemon.process.poll() is None, f"{ready}\n{daemon.log()}"
                time.sleep(0.1)
        said = r"this process holds \d+ MiB, past resources.memory_budget_mb = 1 with no request in flight since it "
        assert ready["ready"] is False and re.match(said, ready["resources"]["not_ready"]), ready
    finally:
        assert daemon.terminate() == 0


def test_a_daemon_past_its_memory_budget_with_nothing_in_flight_says_it_is_not_ready(tmp_path, serve):
    """A daemon past its budget for good refused every request (RESOURCE_EXHAUSTED, retryable: clients retried
    forever) while ``_ready`` said ready, so no orchestrator restarted it. Having given back what it could with
    nothing in flight, it says it is not ready and why, and its log says so once, as it says once that it refuses.
    Not at once: a flood's own messages and refusals, which no request in flight holds, made a daemon say so 4 times
    in one flood it recovered from by itself (checker h435 F1); it says so after 10 s on end."""
    idle = serve("")
    with idle.client(timeout=20) as client:
        resident = client.call("_stats")["resources"]["resident_mb"]
    assert idle.terminate() == 0
    (tmp_path / "budget").mkdir()
    budget = round(resident + 40)
    daemon = Daemon(tmp_path / "budget", profile=DAEMON_PROFILE.format(resources=f"memory_budget_mb = {budget}"))
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20, retries=0) as client:
            assert client.call("t.hold", 80) == 80  # within its budget, then past it for good
            began = time.monotonic()  # before the first check past the budget
            for i in range(5):
                with pytest.raises(
                    ResourceExhausted, match=rf"holds \d+ MiB, past resources.memory_budget_mb = {budget}"
                ):
                    client.call("echo.echo", i)
            assert client.call("_ready")["ready"] is True  # refusing, not yet stuck
            until = time.monotonic() + 40
            while (ready := client.call("_ready"))["ready"]:
                assert time.monotonic() < until, daemon.log()
                time.sleep(0.2)
            assert time.monotonic() - began >= 10, "said stuck before 10 s on end"
        assert ready["ready"] is False and ready["components"]["resources"] is False, ready
        stuck = (
            rf"this process holds \d+ MiB, past resources.memory_budget_mb = {budget} with no request in flight for "
            r"1\d s, after giving"
        )
        assert re.match(stuck, ready["resources"]["not_ready"]), ready
        assert ready["resources"]["memory_budget_mb"] == budget, ready
    finally:
        assert daemon.terminate() == 0
    said = daemon.log()
    assert said.count(f"past resources.memory_budget_mb = {budget}: refusing new requests") == 1, said
    stuck_said = "it admits no request until its memory falls within the budget, and says it is not ready (_ready)"
    assert said.count(stuck_said) == 1, said


def test_workers_past_their_memory_budget_are_refused_and_probed_naming_the_budget(tmp_path):
    """Behind a broker, workers past the budget with nothing in flight were refused as "starting their
    components", and the readiness probe gave no reason, though each worker's heartbeat had it (checker 294 F6)."""
    daemon = Daemon(tmp_path, "--workers", "2", profile=DAEMON_PROFILE.format(resources="memory_budget_mb = 1"))
    past = r"worker pid \d+: this process holds \d+ MiB, past resources.memory_budget_mb = 1 with no request in flight"
    try:
        with daemon.client(timeout=20, retries=0) as client:
            until = time.monotonic() + 60
            while sum(bool(w["resources"].get("not_ready")) for w in client.call("_ready")["workers"]) < 2:
                assert time.monotonic() < until and daemon.process.poll() is None, daemon.log()
                time.sleep(0.2)
            with pytest.raises(Unavailable) as refused:
                client.call("echo.echo", 1)
        assert refused.value.retry_after_ms == 500, refused.value
        assert re.search(rf"no worker is ready \(2 connected; {past}", refused.value.message), refused.value.message
        probe = run_heirloom("call", "_ready", "--connect", daemon.address, "--timeout", "20")
        assert probe.returncode == 3 and re.search(rf"not ready: 0 of 2 workers ready \(.*{past}", probe.stderr), probe
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_a_burst_past_the_memory_budget_gives_memory_back_and_admits_again(tmp_path, serve):
    """One burst took a daemon past its budget, and the heap it freed stayed resident: every request
    was refused for good. Past its budget a process gives back what it can (gc, glibc's
    malloc_trim) and measures again: the next request is admitted."""
    idle = serve("")
    with idle.client(timeout=20) as client:
        resident = client.call("_stats")["resources"]["resident_mb"]
    assert idle.terminate() == 0
    (tmp_path / "budget").mkdir()
    budget = f"memory_budget_mb = {resident + 40:.0f}"
    daemon = Daemon(tmp_path / "budget", profile=DAEMON_PROFILE.format(resources=budget))
    try:
        daemon.wait_ready()
        with daemon.client(timeout=20, retries=0) as client:
            assert client.call("t.fragment", 80) == 80 * 16 - 1  # 80 MiB freed, resident until trimmed
            assert client.call("echo.echo", "after") == "after"
            assert client.call("_ready")["ready"] is True
            stats = client.call("_stats")["resources"]
        assert stats["resident_mb"] < resident + 40 and stats["not_ready"] is None, stats
    finally:
        assert daemon.terminate() == 0


def test_training_within_a_tiny_memory_budget_is_refused_before_it_starts(tmp_path):
    path = train_profile(tmp_path)
    result = run_heirloom("train", str(path), "--set", "resources.memory_budget_mb=1", env=TOYS)
    assert result.returncode == 1, result.stderr
    assert "error: training models.m: this process holds" in result.stderr
    assert "past resources.memory_budget_mb = 1" in result.stderr and "Traceback" not in result.stderr
    assert versions("quota") == []
    assert run_heirloom("train", str(path), env=TOYS).returncode == 0  # no budget: it trains


def test_training_that_grows_past_the_memory_budget_is_stopped(tmp_path):
    path = train_profile(tmp_path, "memory_budget_mb = 250")
    result = run_heirloom("train", str(path), "--set", "models.m.allocate_mb=600", env=TOYS)
    assert result.returncode == 1, result.stderr
    assert "past resources.memory_budget_mb = 250" in result.stderr and versions("quota") == []


def test_training_that_grows_past_the_memory_budget_without_reporting_progress_is_stopped(tmp_path):
    """A model building its features reports no progress for minutes: the budget holds anyway."""
    path = train_profile(tmp_path, "memory_budget_mb = 250")
    result = subprocess.run(  # as a job started in the background is: deaf to SIGINT
        [*HEIRLOOM, "train", str(path), "--set", "models.m.silent_allocate_mb=1500"],
        capture_output=True,
        text=True,
        env={**os.environ, **TOYS},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "past resources.memory_budget_mb = 250" in result.stderr and versions("quota") == []
    assert "Traceback" not in result.stderr


def test_profile_check_refuses_a_cuda_device_torch_cannot_see(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal needs one without")
    path = train_profile(tmp_path, 'device = "cuda:0"')
    result = run_heirloom("profile", "check", str(path), env=TOYS)
    assert result.returncode == 2
    assert f"{path}: resources.device: 'device' is 'cuda:0' but torch {torch.__version__} sees no CUDA device" in (
        result.stderr
    )


# -- B. storage ------------------------------------------------------------------------------
def test_a_project_at_its_artifact_quota_is_refused_and_the_store_stays_consistent(tmp_path):
    store = heirloom.ArtifactStore.default()
    big = heirloom.State({"w": np.arange(1 << 18, dtype=np.float32)}, {})  # 1 MiB
    store.put("quota", "big", big, model_type="test")
    other = store.put("elsewhere", "big", heirloom.State({"w": np.ones(1 << 19, dtype=np.float32)}, {}), model_type="t")
    blobs = sorted(os.listdir(store.blobs))
    path = train_profile(tmp_path, "artifact_quota_mb = 1")

    result = run_heirloom("train", str(path), env=TOYS)
    assert result.returncode == 1
    said = " ".join(result.stderr.split())  # in bytes: to one decimal, 1.0 MiB looked within a quota of 1 MiB
    assert "error: not stored: project 'quota' holds 1,048,658 bytes in the artifact store" in said
    assert "past its artifact quota of 1 MiB (1,048,576 bytes)" in said
    kept = "bytes); with retention off, `heirloom models gc --keep 1` keeps 1,048,658 bytes of it: quota/big@1 (newest)"
    assert kept in said  # it said "`heirloom models gc --keep 1` (retention is off) keep"
    assert versions("quota") == ["quota/big@1"] and sorted(os.listdir(store.blobs)) == blobs
    assert store.verify("quota/big@1") and store.verify(other.ref)  # other projects count for themselves

    listed = run_heirloom("models", "list")
    assert "quota: 1.00 MiB of blobs" in listed.stdout and "elsewhere: 2.00 MiB of blobs" in listed.stdout
    assert run_heirloom("train", str(path), "--set", "resources.artifact_quota_mb=2", env=TOYS).returncode == 0
    assert versions("quota") == ["quota/big@1", "quota/m@1"]


def test_an_artifact_quota_refusal_one_byte_past_the_edge_prints_figures_that_differ(tmp_path):
    """One byte past a 1 MiB quota read "needs 1.0 MiB more, past its artifact quota of 1 MiB": the figures looked
    equal, so the refusal did not say what was wrong (h327 F2). Where MiB to one decimal would show no excess, the
    refusal (a put's, a train's before its fit: one formatter) prints bytes."""

    def blobs_of(padding: int) -> tuple[heirloom.ArtifactStore, heirloom.State]:
        state = heirloom.State({"w": np.zeros(262116, np.float32)}, {"p": "x" * padding})  # blobs of 1 MiB + padding
        return heirloom.ArtifactStore(tmp_path / f"store{padding}"), state

    store, state = blobs_of(24)
    store.put("e", "m", state, model_type="toy", quota_mb=1)  # exactly at the edge: stored
    assert sum(path.stat().st_size for path in store.blobs.iterdir()) == 1 << 20

    store, state = blobs_of(25)
    with pytest.raises(heirloom.ResourceExhaustedError) as refused:
        store.put("e", "m", state, model_type="toy", quota_mb=1)
    said = str(refused.value)
    assert "not stored: project 'e' holds 0 bytes in the artifact store at" in said, said
    assert "e/m needs 1,048,577 bytes more, past its artifact quota of 1 MiB (1,048,576 bytes);" in said, said
    assert "keeps 0 bytes of it: nothing; 1,048,577 bytes with the new version: " in said, said
    assert "raise the artifact quota" in said and "to 2 MiB" in said and not list(store.blobs.iterdir())

    store.put("e", "m", state, model_type="toy")  # stored without a quota: the project holds 1 byte too many
    with pytest.raises(heirloom.ResourceExhaustedError) as before:
        store.refuse_if_full("e", "m", 1, None)
    said = " ".join(str(before.value).split())
    assert "holds 1,048,577 bytes in the artifact store" in said, said
    assert "e/m cannot be stored, whatever it weighs, past its artifact quota of 1 MiB (1,048,576 bytes);" in said
    two = blobs_of(0)[0]
    two.put("e", "m", heirloom.State({"w": np.zeros(1 << 19, np.float32)}, {}), model_type="toy")  # 2 MiB: clear
    with pytest.raises(heirloom.ResourceExhaustedError, match=r"holds 2\.0 MiB .* quota of 1 MiB; "):
        two.refuse_if_full("e", "m", 1, None)


def test_a_project_already_past_its_artifact_quota_is_refused_before_the_fit(tmp_path):
    """A project holding 6.2 MiB against a 5 MiB quota ran all 7 epochs of a train, then stored nothing."""
    store = heirloom.ArtifactStore.default()
    store.put("quota", "big", heirloom.State({"w": np.arange(1 << 19, dtype=np.float32)}, {}), model_type="t")  # 2 MiB
    result = run_heirloom("train", str(train_profile(tmp_path, "artifact_quota_mb = 1")), env=TOYS)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and versions("quota") == ["quota/big@1"], result.stderr
    assert "holds 2.0 MiB in the artifact store" in said
    assert "quota/m cannot be stored, whatever it weighs, past its artifact quota of 1 MiB" in said
    assert "test " not in said and "accuracy" not in said, "refused before the fit, so before any evaluation"


def test_a_refusal_before_the_fit_counts_the_new_version_by_the_models_newest(tmp_path):
    """Refused before its fit, a train said gc frees "room enough" counting nothing for the new version: the
    retry after that gc was refused again, after its whole fit (h294 F8). Its newest version stands in for it."""
    store = heirloom.ArtifactStore.default()
    for fill in (1, 2, 3):  # three 1 MiB versions of the model the profile trains, the first aliased
        store.put("quota", "m", heirloom.State({"w": np.full(1 << 18, fill, np.float32)}, {}), model_type="t")
    store.promote("quota/m@1", "production")
    path = train_profile(tmp_path, "artifact_quota_mb = 2")

    def refusal(*options: str) -> str:
        result = run_heirloom("train", str(path), *options, env=TOYS)
        assert result.returncode == 1, result.stderr
        said = " ".join(result.stderr.split())
        assert "quota/m cannot be stored, whatever it weighs" in said and "accuracy" not in said, "before the fit"
        return said

    said = refusal()  # gc keeps @3 (newest) and @1 (production): 2 MiB, and the new version does not fit beside them
    assert "keeps 2.0 MiB of it: quota/m@3 (newest), quota/m@1 (alias production);" in said
    assert "3.0 MiB with the new version (an estimate: quota/m@3, its newest, weighs 1.0 MiB): move an alias" in said
    assert "room enough" not in said and "or raise the artifact quota" in said and "to 4 MiB" in said  # blobs > 1 MiB

    store.put("quota", "m", heirloom.State({"w": np.full(1 << 18, 4, np.float32)}, {}), model_type="t")
    said = refusal("--set", "resources.artifact_quota_mb=4")  # gc keeps @4 and @1: the new version fits beside them
    assert "`heirloom models gc --keep 1` frees 2.0 MiB, leaving 2.0 MiB for the new version" in said
    assert "(an estimate: quota/m@4, its newest, weighs 1.0 MiB)" in said
    store.promote("quota/m@4", "production")  # @1 stays, the way back (h376 F1): gc now keeps 2 MiB, and says why
    said = refusal("--set", "resources.artifact_quota_mb=2")
    assert "keeps 2.0 MiB of it: quota/m@4 (newest, alias production), quota/m@1 (alias production's previous" in said
    # moving an alias frees nothing now (the version it leaves is kept: v17 F1); dropping previous versions does
    drop = "`heirloom models gc --keep 1 --drop-previous`, which removes the aliases' previous versions (their "
    drop += "rollback)"
    assert f"the new version (an estimate: quota/m@4, its newest, weighs 1.0 MiB): {drop}, or raise" in said
    assert "move an alias" not in said
    dropped = run_heirloom("models", "gc", "--keep", "1", "--drop-previous", "--json", env=TOYS)
    assert json.loads(dropped.stdout)["versions"] == ["quota/m@1", "quota/m@2", "quota/m@3"], dropped.stderr
    said = refusal("--set", "resources.artifact_quota_mb=1")  # production still names @1 as left: gone, no advice
    assert "--drop-previous" not in said and "quota/m@1" not in said, said


def test_a_refusal_offers_no_drop_previous_where_the_previous_version_is_an_ancestor(tmp_path):
    """v18 F1: a retrain warm-started from the version production left: --drop-previous, advised, freed nothing
    (it is the newest's parent), and the retry got the same advice; the reason said only "previous version"."""
    store = heirloom.ArtifactStore.default()
    first = store.put("quota", "m", heirloom.State({"w": np.full(1 << 18, 1, np.float32)}, {}), model_type="t")
    store.promote(first.ref, "production")
    second = store.put(
        "quota", "m", heirloom.State({"w": np.full(1 << 18, 2, np.float32)}, {}), model_type="t", parent=first
    )
    store.promote(second.ref, "production")
    result = run_heirloom("train", str(train_profile(tmp_path, "artifact_quota_mb = 2")), env=TOYS)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr
    assert "quota/m@1 (alias production's previous version, ancestor of a kept version)" in said
    assert "--drop-previous" not in said and "move an alias" not in said and ": raise the artifact quota" in said
    kept = run_heirloom("train", str(train_profile(tmp_path, "artifact_quota_mb = 2\nkeep_versions = 2")), env=TOYS)
    fewer = "keep fewer versions (`heirloom models gc --keep 1` now, as a lower keep_versions frees nothing before it"
    assert kept.returncode == 1 and fewer in " ".join(kept.stderr.split()), kept.stderr  # alone, refused again: v19 F1


def test_an_artifact_quota_refusal_counts_what_retention_keeps_aliased_versions_included(tmp_path):
    """An alias held an older version on top of the newest keep_versions: the refusal said the quota must
    hold keep_versions + 1 versions (2 where 3 were needed) and to run `heirloom models gc`, which frees nothing."""
    store = heirloom.ArtifactStore.default()
    for fill in (1, 2):  # two 1 MiB versions of another model of the project
        store.put("quota", "big", heirloom.State({"w": np.full(1 << 18, fill, np.float32)}, {}), model_type="t")
    path = train_profile(tmp_path, "artifact_quota_mb = 2\nkeep_versions = 1")

    def refusal() -> str:
        result = run_heirloom("train", str(path), env=TOYS)
        assert result.returncode == 1 and versions("quota") == ["quota/big@1", "quota/big@2"], result.stderr
        return " ".join(result.stderr.split())

    said = refusal()  # gc would free big@1: it says so, and (refused before a fit of a model never stored) how much
    assert (
        "retention (the newest 1 per model, by the resource manager's retention()) and `heirloom models gc --keep 1` "
        "keep 1.0 MiB of it: quota/big@2 (newest)"
    ) in said
    assert "`heirloom models gc --keep 1` frees 1.0 MiB, leaving 1.0 MiB for the new version (size unknown)" in said

    store.promote("quota/big@1", "production")
    said = refusal()
    assert (
        "keep 2,097,314 bytes of it: quota/big@2 (newest), quota/big@1 (alias production); "
        "2,097,314 bytes and the new version (size unknown)"
    ) in (said)
    assert "move an alias to the newest version (`heirloom models promote REF ALIAS`)" in said
    quota = "its storage_quota_mb('artifacts'); resources.artifact_quota_mb with the local manager"
    assert f"or raise the artifact quota ({quota}) to 3 MiB" in said
    dry = json.loads(run_heirloom("models", "gc", "--keep", "1", "--dry-run", "--json").stdout)
    assert dry["versions"] == [] and dry["bytes"] == 0  # gc frees nothing, as said

    trained = run_heirloom("train", str(path), "--set", "resources.artifact_quota_mb=3", env=TOYS)
    assert trained.returncode == 0, trained.stderr
    assert versions("quota") == ["quota/big@1", "quota/big@2", "quota/m@1"]


def test_retention_keeps_the_newest_versions_aliased_ones_and_other_projects(tmp_path):
    path = train_profile(tmp_path, "keep_versions = 2")
    other = train_profile(tmp_path / "o", project="other")
    # each run reads other data: training identical to a stored version reuses it (issue 11)
    for rows in ("50", "51"):
        assert run_heirloom("train", str(other), "--set", f"sources.s.rows={rows}", env=TOYS).returncode == 0
    logs = []
    for run in range(4):
        result = run_heirloom("train", str(path), "--set", f"sources.s.rows={50 + run}", env=TOYS)
        assert result.returncode == 0, result.stderr
        logs.append(" ".join(result.stderr.split()))
        if run == 0:
            assert run_heirloom("models", "promote", "quota/m@1", "production").returncode == 0
    assert "retention (the newest 2 per model, by resource manager 'local'): removed quota/m@2" in logs[3]
    assert versions("quota") == ["quota/m@1", "quota/m@3", "quota/m@4"]
    assert versions("other") == ["other/m@1", "other/m@2"]


def test_a_durable_log_at_its_quota_refuses_the_write_over_the_wire_and_keeps_every_record(serve):
    log = heirloom.home() / "records" / "limits" / "t.jsonl"
    filler = json.dumps({"pad": "x" * 1000}) + "\n"
    write_log(log, (filler * ((1 << 20) // len(filler))).encode())
    daemon = serve("log_quota_mb = 1")
    with daemon.client(timeout=10, retries=0) as client:
        assert client.call("t.record", {"n": 1}) is None  # fits in what is left
        size = log.stat().st_size
        with pytest.raises(ResourceExhausted, match="would pass its logs quota of 1 MiB"):
            client.call("t.record", {"pad": "y" * 2000})
        assert log.stat().st_size == size and log.read_bytes().endswith(b"\n")
        storage = client.call("_stats")["storage"]
        assert storage["logs"] == {"used_mb": round(size / (1 << 20), 3), "quota_mb": 1}
        assert storage["artifacts"]["quota_mb"] is None
    assert daemon.terminate() == 0
    records = list(heirloom.AppendLog.read(log))
    assert records[-1]["n"] == 1 and not any("y" * 10 in r.get("pad", "") for r in records)


def test_the_log_quota_counts_the_projects_logs_another_daemon_or_api_wrote(serve):
    """h369 F2: a daemon counted the logs it opened itself; one serving another api of the project wrote past a quota
    the project's other logs had filled, and said its logs used 0 MiB."""
    other = heirloom.home() / "events" / "limits" / "another-api.jsonl"
    filler = json.dumps({"pad": "x" * 1000}) + "\n"
    write_log(other, (filler * ((1 << 20) // len(filler))).encode())
    write_log(heirloom.home() / "data" / "limits" / "not-a-log.jsonl", (filler * 100).encode())  # data/: no log
    write_log(heirloom.home() / "events" / "other-project" / "x.jsonl", (filler * 100).encode())
    os.symlink("loop.jsonl", heirloom.home() / "events" / "limits" / "loop.jsonl")  # holds nothing (v15 F3)
    os.symlink("looping", heirloom.home() / "looping")  # a kind folder that is a loop: skipped alone (v14 F2)
    daemon = serve("log_quota_mb = 1")
    with daemon.client(timeout=10, retries=0) as client:
        with pytest.raises(ResourceExhausted, match="would pass its logs quota of 1 MiB"):
            client.call("t.record", {"pad": "y" * 2000})
        used = other.stat().st_size + (heirloom.home() / "records" / "limits" / "t.jsonl").stat().st_size
        assert client.call("_stats")["storage"]["logs"] == {"used_mb": round(used / (1 << 20), 3), "quota_mb": 1}
    assert daemon.terminate() == 0


# -- C. network ------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_client_over_its_rate_is_refused_while_another_is_served(serve, workers):
    daemon = serve("client_requests_per_s = 5\nclient_burst_s = 1.0", "--workers", workers)
    time.sleep(1.0)  # wait_ready's probes drew on the bucket of its own connection, not ours
    with daemon.client(timeout=10, retries=0) as greedy, daemon.client(timeout=10, retries=0) as polite:
        futures = [greedy.submit("echo.echo", i) for i in range(20)]
        wait(futures, timeout=10)
        refused = [f.exception() for f in futures if f.exception() is not None]
        assert 10 <= len(refused) <= 15 and all(isinstance(e, ResourceExhausted) for e in refused)
        assert all("over its rate limit (5 requests/s)" in e.message and e.retry_after_ms > 0 for e in refused)
        assert [polite.call("echo.echo", i) for i in range(3)] == [0, 1, 2]
        # a load balancer probing through the busy client's connection (an HTTP gateway's) is not refused
        assert greedy.call("_health")["live"] and "ready" in greedy.call("_ready")
        time.sleep(max(e.retry_after_ms for e in refused) / 1000)
        assert greedy.call("echo.echo", "again") == "again"  # the hint is honest
        network = polite.call("_stats")["network"]
        assert network["refused"] >= len(refused) and network["clients"] >= 2 and network["bytes_in"] > 0
        # a throttled dashboard polling _stats: refused before any route, as one process and a broker count it
        # (a broker counted them as _stats' errors, so the shedding alert fired for _stats: h379 F1)
        polled = [greedy.submit("_stats") for _ in range(20)]
        wait(polled, timeout=10)
        throttled = sum(isinstance(f.exception(), ResourceExhausted) for f in polled)
        stats = polite.call("_stats")
        assert throttled >= 10 and stats["refused_unrouted"]["RESOURCE_EXHAUSTED"] == len(refused) + throttled
        assert "RESOURCE_EXHAUSTED" not in stats["routes"]["_stats"]["errors"]
    assert daemon.terminate() == 0


def test_a_client_over_its_byte_rate_is_refused(serve):
    daemon = serve("client_bytes_per_s = 20000\nclient_burst_s = 1.0")
    with daemon.client(timeout=10, retries=0) as client:
        assert client.call("echo.echo", "x" * 30_000) == "x" * 30_000  # one large message may overdraw
        with pytest.raises(ResourceExhausted, match="20,000 bytes/s") as caught:
            client.call("echo.echo", "small")
        assert 400 <= caught.value.retry_after_ms <= 600
        assert client.call("_health")["live"]  # a bare probe is exempt
        # one with a body is charged (an attack sent 200 MB through _health past the byte limit)
        with pytest.raises(ResourceExhausted, match="20,000 bytes/s"):
            client.call("_health", "x" * 30_000)
        time.sleep(2)  # the bucket refills: only the charge refuses what follows
        nil_tail = {"pad": "x" * 30_000, "tail": heirloom.Buffer("uint8", (1,), b"\xc0")}  # last frame nil
        with pytest.raises(heirloom.RemoteError, match="takes no body"):  # one may overdraw
            client.call("_health", nil_tail)
        with pytest.raises(ResourceExhausted, match="20,000 bytes/s"):  # 18 MB passed as bare probes this way
            client.call("_health", nil_tail)
    assert daemon.terminate() == 0


# -- D. a third-party resource manager that misbehaves ---------------------------------------
FAULTY = 'use = "faulty"\nfail = "{fail}"'
#: How every error and log line names that manager: its type and plugin (distribution and version when installed), as
#: its start and stop errors do; it said ``resource manager tests.testing_api.FaultyResources`` (checker h341 F8).
MANAGER = "the resource manager resources (faulty, plugin tests.testing_api)"


@pytest.mark.parametrize("fail", ["admit", "admit_type"])
def test_a_resource_manager_failing_to_admit_fails_the_request_as_internal_not_the_clients_fault(serve, fail):
    daemon = serve(FAULTY.format(fail=fail))
    with daemon.client(timeout=10, retries=0) as client:
        for _ in range(20):
            with pytest.raises(heirloom.RemoteError) as caught:
                client.call("echo.echo", "hi")
            assert caught.value.code == "INTERNAL" and "resource manager" in caught.value.message
        assert client.call("_health")["live"]
    assert daemon.log().count(f"{MANAGER}: admit()") == 1  # rate-limited


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_resource_manager_failing_to_release_or_to_report_never_stops_the_daemon(serve, workers):
    """A worker whose manager's usage() fails must still heartbeat (it was a crash loop)."""
    for fail in ("release", "usage", "usage_type"):
        daemon = serve(FAULTY.format(fail=fail), "--workers", workers)
        with daemon.client(timeout=10, retries=0) as client:
            assert [client.call("echo.echo", i) for i in range(5)] == list(range(5))
            stats = client.call("_stats")
        reports = [w["resources"] for w in stats["workers"]] if workers == "2" else [stats["resources"]]
        expected = (
            {"fine": True}
            if fail == "release"
            else {"error": f"usage() failed: {'TypeError' if fail == 'usage_type' else 'RuntimeError'}"}
        )
        assert reports and all(report == expected for report in reports), (fail, reports)
        assert daemon.terminate() == 0, daemon.log()


def test_a_usage_giving_memory_sizes_of_no_number_is_named_in_the_log(serve):
    """PLUGINS.md: ``resident_mb`` and ``memory_budget_mb`` are read in MiB; "lots" or NaN left /metrics without
    the series and nothing said why (checker h458 F6)."""
    daemon = serve(FAULTY.format(fail="usage_memory"))
    with daemon.client(timeout=10, retries=0) as client:
        assert client.call("_stats")["resources"]["resident_mb"] == "lots"
    said = "usage() gave resident_mb 'lots', memory_budget_mb nan: no size in MiB, so /metrics leaves it out"
    daemon.wait_logged(f"{MANAGER}: {said}")
    assert daemon.terminate() == 0


def test_a_slow_resource_manager_call_is_named_in_the_log(serve):
    """A usage() of 4 s got every worker killed for missed heartbeats, over and over, and no
    line of the log named the manager: every request, probe and heartbeat waits on it."""
    daemon = serve(FAULTY.format(fail="slow_usage"))
    with daemon.client(timeout=10, retries=0) as client:
        assert client.call("_stats")["resources"] == {"fine": True}
    said = f"{MANAGER}: usage() took 0.4"
    assert said in daemon.log() and "on the daemon's I/O thread" in daemon.log()
    assert daemon.terminate() == 0


@pytest.mark.parametrize(("fail", "gave"), [("retention", "an error, RuntimeError"), ("retention_value", "-1")])
def test_a_retention_that_fails_after_a_version_is_stored_does_not_fail_the_train(tmp_path, fail, gave):
    """``train`` exited 1 ("gc must keep at least 1 version per model, got -1") with the version
    stored: automation read a failed train and trained again."""
    profile = write(
        tmp_path / "team.toml",
        f'[resources]\n{FAULTY.format(fail=fail)}\n[sources.s]\nuse = "toy-source"\n'
        '[models.m]\nuse = "toy-model"\ndata = "s"\n',
    )
    trained = run_heirloom("train", str(profile), env={"HEIRLOOM_PLUGINS": "tests.toys,tests.testing_api"})
    said = " ".join(trained.stderr.split())
    assert trained.returncode == 0, said
    stored = f"warning: stored team/m@1, but {MANAGER}: retention() gave"  # named as its other calls (h458 F4)
    assert f"{stored} '{gave}" in said or f"{stored} {gave}, not None" in said, said


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        # a TypeError after the fit, read as the model's: "error: training models.m (toy-model) failed"
        ("quota_type", "storage_quota_mb('artifacts') returned '100'; it must be None or an int >= 1"),
        ("quota", "storage_quota_mb('artifacts') raised RuntimeError: deliberate failure in storage_quota_mb"),
        ("run_fit_type", "run_fit() returned a dict, not the heirloom.State its task returns (or None to fit here)"),
    ],
)
def test_a_resource_managers_wrong_answer_to_train_is_an_error_naming_it_and_stores_nothing(tmp_path, fail, said):
    profile = write(tmp_path / "team.toml", TRAIN_PROFILE.format(project="team", resources=FAULTY.format(fail=fail)))
    env = {"HEIRLOOM_PLUGINS": "tests.toys,tests.testing_api", "HEIRLOOM_HOME": str(tmp_path / "home")}
    trained = run_heirloom("train", str(profile), env=env)
    told = " ".join(trained.stderr.split())
    assert trained.returncode == 1 and "Traceback" not in told, told
    assert f"{MANAGER}: {said}" in told
    assert "toy-model) failed" not in told  # not the model's fault
    listed = run_heirloom("models", "list", "--json", env=env)
    assert json.loads(listed.stdout or "[]") == [], listed.stdout


@pytest.mark.parametrize("fail", ["quota", "quota_type"])
def test_a_resource_managers_wrong_storage_quota_is_said_in_stats_not_an_internal_error(serve, fail):
    daemon = serve(FAULTY.format(fail=fail))
    with daemon.client(timeout=10, retries=0) as client:
        storage = client.call("_stats")["storage"]  # it was INTERNAL: operators lost every figure
        assert client.call("echo.echo", "hi") == "hi"
    assert list(storage) == ["error"] and f"{MANAGER}: storage_quota_mb('artifacts')" in storage["error"]
    assert daemon.terminate() == 0


@pytest.mark.parametrize(
    ("fail", "workers", "said"),
    [
        ("limit_type", "2", "daemon_in_flight_limit() returned 'lots'; it must be None or an int >= 1"),
        # a raw traceback before, naming no manager
        ("limit", "2", "daemon_in_flight_limit() raised RuntimeError: deliberate failure in daemon_in_flight_limit"),
        # a raw traceback before, naming no manager
        ("client_limits_type", "1", "client_limits() returned a dict; it must be None or a heirloom.ClientLimits"),
        ("client_limits_type", "2", "client_limits() returned a dict; it must be None or a heirloom.ClientLimits"),
    ],
)
def test_a_resource_managers_wrong_answer_at_start_is_an_error_naming_it(tmp_path, fail, workers, said):
    profile = write(tmp_path / "p.toml", DAEMON_PROFILE.format(resources=FAULTY.format(fail=fail)))
    result = run_heirloom(
        "serve",
        str(profile),
        "--workers",
        workers,
        "--bind",
        f"ipc://{tmp_path}/s.sock",
        env={"HEIRLOOM_PLUGINS": "tests.testing_api"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{MANAGER}: {said}" in result.stderr


def test_a_resource_manager_failing_to_prepare_a_component_is_named_as_the_cause(tmp_path):
    """``apis.s (sleepy) failed to start: RuntimeError: quota prepare failed`` blamed the api."""
    profile = write(tmp_path / "p.toml", DAEMON_PROFILE.format(resources=FAULTY.format(fail="prepare")))
    result = run_heirloom(
        "serve", str(profile), "--bind", f"ipc://{tmp_path}/s.sock", env={"HEIRLOOM_PLUGINS": "tests.testing_api"}
    )
    said = (
        "apis.echo (echo, plugin echo (heirloom "  # then the manager, its type and plugin, as its stop() is named
        f"{heirloom.__version__})) failed to start: the resource manager resources (faulty, plugin tests.testing_api): "
        "prepare() raised RuntimeError: deliberate failure in prepare"
    )
    assert result.returncode != 0 and said in " ".join(result.stderr.split()), result.stderr


def test_a_resource_manager_failing_to_start_is_named_with_its_plugin(tmp_path):
    """``resources (quota-gate) failed to start`` named no plugin, where its failure to stop did."""
    profile = write(tmp_path / "team.toml", TRAIN_PROFILE.format(project="team", resources=FAULTY.format(fail="start")))
    trained = run_heirloom("train", str(profile), env={"HEIRLOOM_PLUGINS": "tests.toys,tests.testing_api"})
    said = "resources (faulty, plugin tests.testing_api) failed to start: RuntimeError: deliberate failure in start"
    assert trained.returncode == 1 and said in " ".join(trained.stderr.split()), trained.stderr


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        ("place_workers", "place_workers() raised RuntimeError: deliberate failure in place_workers"),
        # the broker listened, then crashed at its first check: 'int' object has no attribute 'observe'
        ("place_workers_type", "place_workers() returned a int; it must be None or a started heirloom.WorkerPool"),
    ],
)
def test_a_resource_manager_failing_to_place_workers_is_an_error_naming_it(tmp_path, fail, said):
    resources = FAULTY.format(fail=fail).replace('"faulty"', '"faulty-placing"')
    profile = write(tmp_path / "p.toml", DAEMON_PROFILE.format(resources=resources))
    result = run_heirloom(
        "serve", str(profile), "--bind", f"ipc://{tmp_path}/s.sock", env={"HEIRLOOM_PLUGINS": "tests.testing_api"}
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: the resource manager resources (faulty-placing, plugin tests.testing_api): {said}" in result.stderr
    assert "broker listening" not in result.stderr  # refused before it ran


def test_a_resource_manager_whose_run_fit_raises_is_blamed_not_the_model(tmp_path):
    """It read ``training models.m (toy-model, plugin tests.toys) failed``: a bug reported to the wrong plugin."""
    env = {"HEIRLOOM_PLUGINS": "tests.toys,tests.testing_api", "HEIRLOOM_HOME": str(tmp_path / "home")}
    resources = FAULTY.format(fail="run_fit")
    trained = run_heirloom(
        "train",
        str(profile := write(tmp_path / "team.toml", TRAIN_PROFILE.format(project="team", resources=resources))),
        env=env,
    )
    told = " ".join(trained.stderr.split())
    whose = "fitting models.m in the run_fit() of resources (faulty, plugin tests.testing_api) failed"
    assert trained.returncode == 1 and f"error: {whose}: RuntimeError: deliberate failure in run_fit" in told, told
    assert "toy-model" not in told
    here = FAULTY.format(fail="run_fit_here")  # it fits in the task it was given: the line names it, not the model
    trained = run_heirloom("train", str(write(profile, TRAIN_PROFILE.format(project="team", resources=here))), env=env)
    assert trained.returncode == 0, trained.stderr
    assert "models.m: fitted by the resource manager (faulty)" in " ".join(trained.stderr.split()), trained.stderr


def test_a_check_profile_answering_the_wrong_shape_is_a_problem_naming_it(tmp_path):
    """A str from check_profile crashed ``profile check`` (not enough values to unpack), naming no plugin."""
    profile = write(tmp_path / "p.toml", DAEMON_PROFILE.format(resources=FAULTY.format(fail="check_profile_type")))
    checked = run_heirloom("profile", "check", str(profile), env={"HEIRLOOM_PLUGINS": "tests.testing_api"})
    said = "resources.use: FaultyResources.check_profile returned a str ('not a list'), not [(field, problem), ...]"
    assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
    assert f"p.toml: {said} (a plugin bug?)" in " ".join(checked.stderr.split()), checked.stderr


READY_RAISED = "resources (faulty, plugin tests.testing_api): ready() raised RuntimeError: deliberate failure in ready"


def test_a_ready_that_raises_at_start_fails_the_start_naming_the_component(tmp_path):
    """It crashed the one-process daemon with a traceback (clients timed out), and each worker of a broker, which
    respawned them for ever with ``start_failure`` nil: nothing a client saw said why."""
    profile = write(tmp_path / "p.toml", DAEMON_PROFILE.format(resources=FAULTY.format(fail="ready")))
    result = run_heirloom(
        "serve", str(profile), "--bind", f"ipc://{tmp_path}/s.sock", env={"HEIRLOOM_PLUGINS": "tests.testing_api"}
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"system failed to start: {READY_RAISED}" in " ".join(result.stderr.split()), result.stderr
    daemon = Daemon(tmp_path, "--workers", "2", profile=DAEMON_PROFILE.format(resources=FAULTY.format(fail="ready")))
    with daemon.client(timeout=10, retries=0) as client:
        deadline = time.monotonic() + 60
        while not (failure := client.call("_ready")["start_failure"]):
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
    assert READY_RAISED in failure and "Traceback" not in daemon.log(), failure
    assert daemon.terminate() == 0, daemon.log()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_ready_that_raises_once_serving_is_not_ready_logged_once_and_the_daemon_lives(serve, tmp_path, workers):
    trigger = tmp_path / "raise-now"
    daemon = serve(f'{FAULTY.format(fail="ready_late")}\ntrigger = "{trigger}"', "--workers", workers)
    trigger.touch()
    with daemon.client(timeout=10, retries=0) as client:
        deadline = time.monotonic() + 60
        while (probe := client.call("_ready"))["ready"] or any(w["ready"] for w in probe.get("workers", [])):
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.2)
        for _ in range(5):
            assert client.call("_health")["live"]
            probe = client.call("_ready")
        assert probe["ready"] is False and (workers == "2" or probe["components"]["resources"] is False), probe
        if workers == "1":  # one process serves what it can, and its probe says why it is not ready
            assert client.call("echo.echo", "hi") == "hi"
            assert READY_RAISED in probe["not_ready"]["resources"], probe
        else:  # behind a broker, each worker's entry says why (it was only in the worker's log), and refusals too
            assert all(READY_RAISED in w["not_ready"]["resources"] for w in probe["workers"]), probe
            with pytest.raises(
                Unavailable, match=rf"no worker is ready \(2 connected; worker pid \d+: {re.escape(READY_RAISED)}"
            ):
                client.call("echo.echo", "hi")
    if workers == "2":  # what the readiness probe's one line says (checker 294 F6)
        said = run_heirloom("call", "_ready", "--connect", daemon.address, "--timeout", "10").stderr
        assert re.search(rf"not ready: 0 of 2 workers ready \(.*worker pid \d+: {re.escape(READY_RAISED)}", said), said
    assert daemon.log().count(f"{READY_RAISED}; it counts as not ready") == int(workers), daemon.log()
    assert "Traceback" not in daemon.log()
    assert daemon.terminate() == 0, daemon.log()


def test_a_handler_stuck_past_the_grace_period_does_not_keep_the_process_alive(tmp_path):
    """Its client hears UNAVAILABLE at the grace deadline; then the process must exit (the
    interpreter would wait for the handler's thread forever, deaf to further signals). A plugin's own thread left
    running is named too, as it is when no handler hangs (checker h433 F8: it went unsaid)."""
    daemon = Daemon(tmp_path, profile=PROFILE.format(max_queue=1024, grace=1) + "leak_thread = true\n")
    daemon.wait_ready()
    with daemon.client(timeout=30, retries=0) as client:
        stuck = client.submit("t.slow", {"ms": 600_000})
        time.sleep(0.5)
        began = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        with pytest.raises(heirloom.RemoteError) as caught:
            stuck.result(timeout=10)
        assert caught.value.code == "UNAVAILABLE"
    assert daemon.process.wait(15) == 0, daemon.log()
    assert time.monotonic() - began < 8
    said = "1 request handler(s) still running after the grace period; exiting without them, nor 1 other thread(s) "
    assert said + "still running: a plugin's endless thread" in daemon.log(), daemon.log()


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        ("absent_device", "device_for('m') returned 'cuda:99', but torch "),
        ("device_type", "device_for('m') returned 'gpu0'; it must be 'cpu' or 'cuda:N'"),
    ],
)
def test_a_resource_managers_absent_device_fails_the_models_start_naming_the_manager(tmp_path, fail, said):
    """A manager answering ``cuda:0`` on a host without CUDA: train read all its data, then failed with a 20-line
    traceback into the text plugin, ``AssertionError: Torch not compiled with CUDA enabled``, blamed on the model's
    plugin, naming neither the manager nor its device (checker h341 F3)."""
    rows = "".join(f"my card was charged twice {i},billing\nparcel lost in transit {i},shipping\n" for i in range(20))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    write(tmp_path / "test.csv", "text,label\ndouble charge on my card,billing\nwhere is my parcel,shipping\n")
    profile = write(
        tmp_path / "p.toml",
        f'project = "shop"\n[resources]\n{FAULTY.format(fail=fail)}\n[sources.t]\nuse = "csv"\ntrain = "train.csv"\n'
        'test = "test.csv"\n[models.m]\nuse = "text-classifier"\ndata = "t"\n',
    )
    env = {"HEIRLOOM_PLUGINS": "tests.testing_api", "HEIRLOOM_HOME": str(tmp_path / "home")}
    trained = run_heirloom("train", str(profile), env=env)
    told = " ".join(trained.stderr.split())
    assert trained.returncode == 1 and "Traceback" not in told, told
    assert f"{MANAGER}: {said}" in told
    assert "reading the train split" not in told  # refused at the model's start, before its data was read


#: A notebook cell that starts a torch system, interrupted early (Ctrl-C) and run again.
INTERRUPTED_START = """
import os, signal, sys, threading, time
import heirloom
kernel = heirloom.Kernel()
threading.Timer(float(sys.argv[1]), lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    with kernel.system("finance-sentiment"):
        pass
except KeyboardInterrupt:
    pass
time.sleep(0.3)
with kernel.system("finance-sentiment"):
    print("started again")
"""


@pytest.mark.parametrize("delay", [0.5, 0.9])
def test_a_start_interrupted_while_it_imports_torch_starts_when_run_again(tmp_path, data_dir, delay):
    """h417 F2: a Ctrl-C during the first import of torch (in the resource manager's prepare, on the caller's
    thread) left torch half imported: the next start failed ('partially initialized module') or crashed the
    process. The import runs on a helper thread, which a Ctrl-C does not stop."""
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp_path), "HEIRLOOM_DATA": str(data_dir)}
    run = subprocess.run([sys.executable, "-c", INTERRUPTED_START, str(delay)], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "started again", run.stderr[-2000:]
