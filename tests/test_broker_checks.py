"""What a ``serve --workers`` broker checks itself: a request's size and deadline before its
admission, the deadlines of requests its workers hold, and how much ``_reload`` makes it log."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import msgpack
import pytest
import zmq

from heirloom.wire.broker_deadlines import Deadlines
from heirloom.wire.protocol import SIGNATURE, packb, request_frames
from heirloom.wire.throttle import RELOAD_LOG_SECONDS
from tests.daemons import Daemon

#: Two slots for the whole daemon: two slow requests fill it.
FULL = """
[resources]
max_in_flight = 2

[server]
grace = 1

[apis.t]
use = "testing"
"""


def _dealer(daemon: Daemon) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.address)
    return sock


def _reply(sock: zmq.Socket, frames: list[Any] | None = None, wait_s: float = 20) -> tuple[dict, Any]:
    """``(header, body)`` of the next reply on ``sock`` (after sending ``frames``)."""
    if frames is not None:
        sock.send_multipart(frames)
    assert sock.poll(int(wait_s * 1000)), "no reply"
    reply = sock.recv_multipart()
    return msgpack.unpackb(reply[1]), msgpack.unpackb(reply[2])


def test_a_full_broker_checks_size_and_deadline_before_admission_and_leaves_contents_to_workers(tmp_path):
    """With max_in_flight full, a broker answered RESOURCE_EXHAUSTED (retry) to a deadline of 0 and
    to a body over the route's max_payload, which one process refuses for good; an idle one
    shipped every oversized body to a worker only to have it refused. PROTOCOL.md's order: the
    body's size, the deadline, then (behind a broker) admission, then the body's contents."""
    daemon = Daemon(tmp_path, "--workers", "2", profile=FULL)
    try:
        daemon.wait_ready()
        sock = _dealer(daemon)
        for number in range(2):  # the two slots, held for 20 s (the drain's grace ends them)
            sock.send_multipart(request_frames(f"slow{number}", "t.slow", {"ms": 20_000}))
        with daemon.client(timeout=10) as client:
            while client.call("_stats")["in_flight"] < 2:
                time.sleep(0.05)
        oversized = packb("x" * 5000)  # t.typed accepts 4096 bytes
        cases = {
            "deadline 0": (request_frames(1, "t.slow", {"ms": 1}, deadline_ms=0), "DEADLINE_EXCEEDED"),
            "deadline -5": (request_frames(2, "t.slow", {"ms": 1}, deadline_ms=-5), "DEADLINE_EXCEEDED"),
            "too large": ([SIGNATURE, packb({"id": 3, "route": "t.typed"}), oversized], "INVALID_ARGUMENT"),
            "too large, deadline 0": (
                [SIGNATURE, packb({"id": 4, "route": "t.typed", "deadline_ms": 0}), oversized],
                "INVALID_ARGUMENT",
            ),
            "unreadable, deadline 0": (
                [SIGNATURE, packb({"id": 5, "route": "t.typed", "deadline_ms": 0}), b"\xc1"],
                "DEADLINE_EXCEEDED",
            ),
            "unreadable": ([SIGNATURE, packb({"id": 6, "route": "t.typed"}), b"\xc1"], "RESOURCE_EXHAUSTED"),
        }
        for name, (frames, code) in cases.items():
            header, body = _reply(sock, frames)
            assert (header["status"], body["retryable"]) == (code, code == "RESOURCE_EXHAUSTED"), (name, body)
        header, body = _reply(sock, cases["too large"][0])
        assert body["field"] == "body" and body["message"] == "body: 5003 bytes; t.typed accepts at most 4096"
        with daemon.client(timeout=10) as client:
            stats = client.call("_stats")
        assert stats["in_flight"] == 2 and sum(w["in_flight"] for w in stats["workers"]) == 2  # none was forwarded
        sock.close()
    finally:
        assert daemon.terminate() == 0


#: One batch at a time, one item each, computed in 500 ms: what a busy model does to a queue.
SLOW_BATCHES = """
[resources]
max_in_flight = 100

[apis.t]
use = "testing"
max_batch = 1
batch_ms = 500.0
"""


def test_under_deadline_pressure_what_workers_compute_is_answered_and_the_rest_is_never_computed(tmp_path):
    """Eight requests with 400 ms budgets for two workers that compute one 500 ms batch at a time: the
    broker answered all eight DEADLINE_EXCEEDED at 400 ms while the workers computed two of them
    (a load of 16-text predictions: 1,188 OK of 6,808 computed; one process: all). A worker drops
    what its deadline passed before it started, and a broker answers a request itself only a grace
    past its deadline: each computed request is answered OK (late, as one process answers it), each
    other one by its worker, never computed."""
    daemon = Daemon(tmp_path, "--workers", "2", profile=SLOW_BATCHES)
    try:
        daemon.wait_ready()
        sock = _dealer(daemon)
        for number in range(8):
            sock.send_multipart(request_frames(number, "t.batched", {"values": [number]}, deadline_ms=400))
        replies = [_reply(sock) for _ in range(8)]
        statuses = sorted(header["status"] for header, _ in replies)
        never_ran = {body["message"] for header, body in replies if header["status"] != "OK"}
        with daemon.client(timeout=10) as client:
            until = time.monotonic() + 20
            while not (computed := client.call("_stats")["routes"]["t.batched"].get("batch_sizes", {})).get("batches"):
                assert time.monotonic() < until, "the workers never reported a batch"
                time.sleep(0.1)
            time.sleep(2.5)  # both workers' heartbeats since (one a second) carry all they computed
            computed = client.call("_stats")["routes"]["t.batched"]["batch_sizes"]
        assert computed["batches"] == 2 and computed["mean"] == 1, computed  # one each: the first each was sent
        assert statuses == ["DEADLINE_EXCEEDED"] * 6 + ["OK"] * 2, replies
        assert never_ran == {"the deadline passed before the request was computed"}, replies
        sock.close()
    finally:
        assert daemon.terminate() == 0


def test_a_stopped_worker_keeps_no_client_past_its_deadline_and_grace_nor_gets_more_work(tmp_path):
    """SIGSTOP on a worker holding requests with 500 ms budgets: they were answered UNAVAILABLE
    after its three missed heartbeats (2.7 s). The broker answers DEADLINE_EXCEEDED a grace past
    the deadline (as long again, at most a heartbeat interval), keeps the request's slot on that
    worker (so it is sent nothing more) and drops its late reply; the other worker serves on."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.heartbeat=5")  # declared lost after 15 s
    stopped = None
    try:
        daemon.wait_ready()
        sock = _dealer(daemon)
        sock.send_multipart(request_frames("busy", "t.slow", {"ms": 3000}))  # no deadline
        with daemon.client(timeout=10) as client:
            while not any((held := {w["pid"]: w["in_flight"] for w in client.call("_stats")["workers"]}).values()):
                time.sleep(0.05)
        running, stopped = sorted(held, key=held.get, reverse=True)
        os.kill(stopped, signal.SIGSTOP)
        sock.send_multipart(request_frames("late", "t.pid", None, deadline_ms=500))  # to the less busy: stopped
        replies = {header["id"]: (header["status"], body) for header, body in (_reply(sock) for _ in range(2))}
        assert replies["busy"] == ("OK", {"slept_ms": 3000})
        status, body = replies["late"]
        assert status == "DEADLINE_EXCEEDED" and f"before worker pid {stopped} answered" in body["message"], body
        with daemon.client(timeout=10) as client:
            stats = client.call("_stats")
            assert {w["pid"]: w["in_flight"] for w in stats["workers"]} == {stopped: 1, running: 0}
            assert stats["in_flight"] == 1  # its slot is held until the worker answers or is lost
            assert {client.call("t.pid") for _ in range(6)} == {running}  # a freed slot would send it more
            os.kill(stopped, signal.SIGCONT)
            while client.call("_stats")["in_flight"]:  # it answers, late
                time.sleep(0.05)
        header, _ = _reply(sock, request_frames("after", "_health", None))
        assert header["id"] == "after"  # its late reply was dropped, not sent after the deadline's
        sock.close()
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        assert daemon.terminate() == 0


@pytest.mark.parametrize("workers", [(), ("--workers", "2")])
def test_a_flood_of_reloads_is_a_line_a_second_in_each_processs_log(tmp_path, workers):
    """Without Curve anyone may call _reload: 1,000 calls wrote 3,000 log lines (the broker's and
    each worker's, one per call). Each process says it at most once a second."""
    daemon = Daemon(tmp_path, *workers)
    try:
        daemon.wait_ready()
        began = time.monotonic()
        with daemon.client(timeout=10) as client:
            for _ in range(300):
                client.call("_reload")
        said = ["_reload: asking", "_reload (from the broker)"] if workers else ["_reload: checking the store"]
        daemon.wait_logged(said[-1])
        time.sleep(0.5)  # the last RELOAD messages reach the workers
        lines = [line for line in daemon.log().splitlines() if any(s in line for s in said)]
        processes = 3 if workers else 1
        assert 0 < len(lines) <= processes * ((time.monotonic() - began) / RELOAD_LOG_SECONDS + 1), lines
    finally:
        assert daemon.terminate() == 0


def test_a_keyed_repeat_in_flight_is_due_when_its_first_is_not_by_its_own_budget():
    """A repeat of a key in flight waits for the first's reply (docs/PROTOCOL.md, Idempotency keys): the broker
    answers it DEADLINE_EXCEEDED only when the first is due (a hung worker), never by its own 2 ms budget; a first
    without a deadline gives its repeats none, and once the first is answered the key's next request is its own."""
    forwarded: dict[bytes, Any] = {}
    deadlines = Deadlines(forwarded, longest_grace=1.0)
    key = (b"client", "t.slow", "K")
    for tag, budget in ((b"first", 10_000), (b"again", 2)):
        forwarded[tag] = None
        deadlines.add(100.0, budget, tag, key)
    assert deadlines.due(100.5) == []  # the repeat's 2 ms and grace are long past
    assert sorted(deadlines.due(111.0)) == [b"again", b"first"]  # both due with the first, 10 s and a 1 s grace on
    for tag in (b"first", b"again"):
        assert deadlines.answered(tag)  # answered at the deadline: its worker's reply is dropped
        del forwarded[tag]
    other = (b"client", "t.slow", "L")
    forwarded[b"no-deadline"], forwarded[b"repeat"] = None, None
    deadlines.add(200.0, None, b"no-deadline", other)
    deadlines.add(200.0, 2, b"repeat", other)
    assert deadlines.due(1e9) == []
    for tag in (b"no-deadline", b"repeat"):
        assert not deadlines.answered(tag)
        del forwarded[tag]
    forwarded[b"later"] = None
    deadlines.add(300.0, 2, b"later", other)  # the key is no longer in flight: its own budget
    assert deadlines.due(300.2) == [b"later"]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_keyed_repeat_whose_budget_ran_out_before_a_worker_read_it_waits_for_its_first(tmp_path, workers):
    """h427 F1: behind a broker, a repeat of a key in flight with a 1e-9 ms budget reached its worker with
    what was left, below zero, and the worker refused it for the deadline before it looked at the key:
    DEADLINE_EXCEEDED while its first ran on to OK. PROTOCOL.md's order is the key (4), then the deadline
    (6). A client's own budget of 0 is refused at once, by one process as by a broker (v31 F1)."""
    daemon = Daemon(tmp_path, *(["--workers", str(workers)] if workers else []))
    passed = ("DEADLINE_EXCEEDED", "the deadline had passed when the request arrived")
    budgets = [0, -5, *([1e-9] if workers else [])]
    try:
        daemon.wait_ready()
        sock = _dealer(daemon)
        sock.send_multipart(request_frames("first", "t.slow", {"ms": 800}, idempotency_key="K"))
        time.sleep(0.2)  # the first runs
        for number, budget in enumerate(budgets):
            frames = request_frames(f"again{number}", "t.slow", {"ms": 800}, deadline_ms=budget, idempotency_key="K")
            sock.send_multipart(frames)
        replies = {header["id"]: (header["status"], body) for header, body in [_reply(sock) for _ in [0, *budgets]]}
        assert replies.pop("first") == ("OK", {"slept_ms": 800}), replies
        assert [replies.pop(f"again{n}")[1]["message"] for n in (0, 1)] == [passed[1], passed[1]], replies
        assert replies == ({"again2": ("OK", {"slept_ms": 800})} if workers else {}), replies
        header, body = _reply(sock, [SIGNATURE, packb({"id": "bad", "route": "t.slow", "deadline_ms": 0}), b"\xc1"])
        assert (header["status"], body["message"]) == passed  # before the body, as PROTOCOL.md's example says
        sock.close()
    finally:
        assert daemon.terminate() == 0


def test_the_broker_gives_a_worker_a_tenth_of_a_second_past_a_tiny_deadline_to_answer():
    """h427 F2: a grace as long as a 1e-9 ms budget made the broker answer for the worker at once, 'it may still
    run the request', where the worker would have answered a remembered key's reply; at most the heartbeat."""
    forwarded: dict[bytes, Any] = {b"tiny": None, b"long": None}
    deadlines = Deadlines(forwarded, longest_grace=1.0)
    deadlines.add(100.0, 1e-9, b"tiny")
    deadlines.add(100.0, 5_000, b"long")
    assert deadlines.due(100.099) == [] and deadlines.due(100.1001) == [b"tiny"]
    assert deadlines.due(105.999) == [] and deadlines.due(106.0001) == [b"long"]  # 5 s and the 1 s heartbeat


def test_a_keyed_repeat_sent_after_the_broker_timed_its_first_out_waits_by_its_own_budget(tmp_path):
    """Checker v5 F8: behind a broker, a repeat of a key whose first the broker had answered DEADLINE_EXCEEDED
    (its worker still running it) was due with the first, so answered DEADLINE_EXCEEDED 0 ms after it arrived
    whatever its own 5 s budget; now it is due the later of the first's and its own, and gets the first's OK
    (as one process answers it)."""
    daemon = Daemon(tmp_path, "--workers", "2", "--set", "server.heartbeat=5")
    try:
        daemon.wait_ready()
        sock = _dealer(daemon)
        began = time.monotonic()
        sock.send_multipart(request_frames("first", "t.slow", {"ms": 1500}, deadline_ms=300, idempotency_key="R"))
        header, body = _reply(sock)  # the broker's, at 300 ms and a grace as long again
        assert header["status"] == "DEADLINE_EXCEEDED" and "before worker pid" in body["message"], body
        sent = time.monotonic()
        assert sent - began < 1.2, "the first's handler (1.5 s) must still run"
        header, body = _reply(sock, request_frames("repeat", "t.slow", {"ms": 1500}, deadline_ms=5000,
                                                   idempotency_key="R"))  # fmt: skip
        assert (header["id"], header["status"], body) == ("repeat", "OK", {"slept_ms": 1500}), (header, body)
        assert 1.2 < time.monotonic() - began < 4.0  # the first's reply, once its handler finished
        sock.close()
    finally:
        assert daemon.terminate() == 0
