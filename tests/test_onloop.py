"""``heirloom.served_on_loop``: a daemon driven by its host's asyncio event loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
import zmq

import heirloom
from tests import testing_api

PROFILE = """
project = "onloop"
[server]
grace = 5.0
[apis.t]
use = "testing"
max_wait_ms = 0.0
"""


@pytest.fixture
def resolved(heirloom_kernel, tmp_path):
    path = tmp_path / "onloop.toml"
    path.write_text(PROFILE)
    kernel = heirloom_kernel(testing_api)
    return kernel, kernel.resolve(str(path))


def test_served_on_loop_answers_from_the_host_loop_and_drains_what_is_in_flight(resolved):
    """Requests are answered with no I/O thread of the daemon's own (every ZeroMQ call made
    on the loop's thread), batched and handler routes too; drain() waits for a request in
    flight, and leaving the block stops the system."""
    kernel, profile = resolved
    system = kernel.system(profile, serve_models=True)
    context = zmq.Context()
    address = "inproc://onloop-test"

    before = {thread.name for thread in threading.enumerate()}

    async def main() -> tuple[list[dict], int, set[str]]:
        with heirloom.served_on_loop(system, profile.settings["server"], address, context) as daemon:
            daemon.attach()
            client = heirloom.AsyncClient(address, context=context)
            pid = await client.call("t.pid")
            batched = await asyncio.gather(*(client.call("t.batched", {"values": [i]}) for i in range(40)))
            slow = asyncio.ensure_future(client.call("t.slow", {"ms": 300}))
            await asyncio.sleep(0.1)
            threads = {thread.name for thread in threading.enumerate()}
            await daemon.drain()  # the slow request is in flight: answered, not refused
            assert daemon.drained and await asyncio.wait_for(slow, 1.0) == {"slept_ms": 300}
            client.close()
            return batched, pid, threads

    batched, pid, threads = asyncio.run(main())
    assert pid == os.getpid() and len(batched) == 40
    assert all(1 <= reply["batch"] <= 8 for reply in batched) and max(r["batch"] for r in batched) > 1
    # the daemon added only compute threads (batches, handler routes) and the alias watcher: no I/O thread
    compute = ("heirloom-batch:", "heirloom-handler", "heirloom-models")
    assert all(name.startswith(compute) for name in threads - before), threads
    assert system.state == "stopped"


def test_served_on_loop_never_attached_still_stops_the_system(resolved):
    """A host that fails before its loop starts (a port in use) leaves the block: the
    system is stopped all the same, with nothing waiting on a loop that never ran."""
    kernel, profile = resolved
    system = kernel.system(profile, serve_models=True)
    with heirloom.served_on_loop(system, profile.settings["server"], "inproc://never", zmq.Context()) as daemon:
        assert system.state == "running" and not daemon.drained
    assert system.state == "stopped"
