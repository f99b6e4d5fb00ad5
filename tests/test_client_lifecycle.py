"""heirloom.Client's life: close() with calls outstanding, and a client made before fork used in the child."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from heirloom.wire.client import Client, ConnectionClosed, InvalidArgument, Reply, Unavailable
from tests.daemons import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("daemon"))
    daemon.wait_ready()
    yield daemon
    assert daemon.terminate() == 0


def test_close_resolves_every_future_still_queued_and_refuses_later_calls(daemon):
    """2,000 echo requests of 100 KB, then close(): 234 to 811 futures stayed undone for good (the
    requests still queued for the I/O thread were never failed)."""
    client = daemon.client(timeout=10)
    client.call("echo.echo", 1)
    futures = [client.submit("echo.echo", "y" * 100_000) for _ in range(2000)]
    client.close()
    done, not_done = wait(futures, timeout=5)
    assert not not_done
    outcomes = {type(f.exception() or f.result()) for f in done}
    assert outcomes <= {Reply, ConnectionClosed} and ConnectionClosed in outcomes
    assert all(f.exception().retryable for f in done if f.exception())  # UNAVAILABLE is (docs/PROTOCOL.md)
    with pytest.raises(Unavailable, match="the client is closed"):
        client.submit("echo.echo", 1)
    with pytest.raises(Unavailable, match="the client is closed"):
        client.call("_health")  # an idempotent call is not retried once the client is closed


def test_a_client_dropped_unclosed_frees_its_thread_and_sockets_once_collected(daemon):
    """h417 F3: a client dropped without close() kept its I/O thread, a connection and 11 descriptors for the life
    of the process (a notebook cell re-run 92 times ran out of files); a call it left waiting fails as closed."""
    gc.collect()
    threads, descriptors = threading.active_count(), len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        client = daemon.client(timeout=10)
        assert client.call("echo.echo", 1) == 1
    stranger = Client("tcp://127.0.0.1:9", timeout=10)  # never connects: its call waits in the backlog
    waiting = stranger.submit("_health")
    del client, stranger
    gc.collect()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads and len(os.listdir("/proc/self/fd")) <= descriptors
    with pytest.raises(ConnectionClosed):
        waiting.result(timeout=5)


def test_threads_in_call_return_once_the_client_closes(daemon):
    """64 threads in call(timeout=10), close() after 0.3 s: threads were still waiting 12 s later."""
    client = daemon.client(timeout=10)
    client.call("echo.echo", 1)
    outcomes: list[str] = []

    def caller() -> None:
        for _ in range(3):
            try:
                client.call("echo.echo", "z" * 900_000)
            except Unavailable:
                outcomes.append("unavailable")
                return
        outcomes.append("ok")

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(64)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    client.close()
    started = time.monotonic()
    for thread in threads:
        thread.join(timeout=max(0.1, started + 5 - time.monotonic()))
    assert not [t for t in threads if t.is_alive()] and len(outcomes) == 64


def _in_child(work) -> str:
    """What ``work()`` returned (or raised) in a forked child, read back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(10)  # a child stuck in a call dies, and the parent's test fails instead of hanging
        try:
            said = repr(work())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            said = f"{type(exc).__name__}: {exc}"
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    assert status == 0, said
    return said


def test_a_client_made_before_fork_works_in_the_child_and_in_the_parent(daemon):
    """gunicorn --preload: the child's call (timeout=2) never returned, as the I/O thread is not there."""
    client = daemon.client(timeout=2)
    assert client.call("echo.echo", "parent") == "parent"

    def child_calls() -> list[object]:
        started = time.monotonic()
        said = [client.call("echo.echo", "child"), client.call("echo.echo", 2)]
        client.close()
        return [*said, time.monotonic() - started < 2]

    assert _in_child(child_calls) == repr(["child", 2, True])
    assert [client.call("echo.echo", n) for n in range(3)] == [0, 1, 2]
    client.close()
    routed = daemon.client(timeout=2, routing_id=b"app-1")
    routed.call("_health")
    said = _in_child(lambda: routed.call("_health"))
    assert said.startswith("HeirloomError: a heirloom.Client with a routing_id, made before fork, cannot be used")
    routed.close()


@pytest.mark.parametrize("timeout", [0.3, 0.0001])
def test_no_reply_names_the_deadline_the_caller_gave(timeout):
    """A peer that never answers: the error said 'within the deadline of 1.99999 s' for a timeout of
    2 (the budget left after sending, not the one asked for), and 0.001 s for a timeout of 0.0001."""
    import zmq

    from heirloom.wire.client import Client, NoReply
    from tests.helpers import free_tcp_address

    address = free_tcp_address()
    silent = zmq.Context.instance().socket(zmq.ROUTER)
    silent.bind(address)
    client = Client(address, timeout=timeout)
    try:
        with pytest.raises(NoReply, match=rf"within the deadline of {timeout} s[:(, ]"):  # sent, not yet, no link
            client.call("echo.echo", 1)
    finally:
        client.close()
        silent.close(linger=0)


def test_a_request_never_sent_names_the_deadline_the_caller_gave():
    """No daemon listens, so no connection comes up and the request is never sent: the error said 'within the
    deadline' naming none (a 0.0001 s timeout on a loaded machine met this case, not the one above)."""
    from heirloom.wire.aclient import AsyncClient
    from heirloom.wire.client import Client, NoReply
    from tests.helpers import free_tcp_address

    with Client(free_tcp_address(), timeout=0.3) as client, pytest.raises(NoReply) as caught:
        client.call("echo.echo", 1)
    said = str(caught.value)
    assert re.search(r"could not reach tcp://\S+ within the deadline of 0.3 s \(is the daemon running", said), said

    async def unreached() -> str:  # the async client says so too: it blamed the route (checker h448 F2)
        async with AsyncClient(free_tcp_address(), timeout=0.3) as client:
            with pytest.raises(NoReply) as caught:
                await client.call("echo.echo", 1)
        return str(caught.value)

    said = asyncio.run(unreached())
    assert re.search(r"could not reach tcp://\S+ within the deadline of 0.3 s \(is the daemon running", said), said


def test_a_deadline_too_short_to_connect_says_so_not_that_a_healthy_daemon_may_be_down(daemon):
    """h405 F2: a 1e-9 s timeout against a healthy daemon said "could not reach ... is the daemon running?"; a
    connection cannot come up within it, and the error says to raise the timeout."""
    from heirloom.wire.client import Client, NoReply
    from heirloom.wire.unanswered import unreached

    said = unreached("tcp://127.0.0.1:5555", 1e-9, "is the daemon running and reachable?")  # no connection came up
    assert "1e-09 s, shorter than a connection takes" in said and "daemon running" not in said, said
    for _ in range(5):  # never connected, or connected with the deadline gone: each says to raise the timeout
        with Client(daemon.address, timeout=1e-9) as client, pytest.raises(NoReply) as caught:
            client.call("echo.echo", 1)
        said = str(caught.value)
        assert "raise the timeout" in said, said
        assert not said.startswith("could not reach") or "shorter than a connection takes" in said, said


def test_a_retry_that_gets_no_reply_names_the_callers_timeout():
    """A peer that answers the first attempt UNAVAILABLE (retryable) and then never again: the retry's
    no-reply error named what was left of the budget ('within the deadline of 0.2379 s' for a timeout of
    0.3), not the timeout the caller gave."""
    import zmq

    from heirloom.wire.client import Client, NoReply
    from heirloom.wire.headers import read_header
    from heirloom.wire.protocol import UNAVAILABLE, RequestError, error_frames, split_envelope
    from tests.helpers import free_tcp_address

    address = free_tcp_address()
    peer = zmq.Context.instance().socket(zmq.ROUTER)
    peer.bind(address)

    def refuse_the_first() -> None:
        frames = peer.recv_multipart()
        at = split_envelope(frames)
        busy = RequestError(UNAVAILABLE, "starting", retry_after_ms=10)
        peer.send_multipart(error_frames(frames[:at], read_header(frames[at + 1])["id"], busy))

    refusing = threading.Thread(target=refuse_the_first)
    refusing.start()
    client = Client(address, timeout=0.3, retries=2)
    try:
        with pytest.raises(NoReply, match=r"within the deadline of 0.3 s:"):
            client.call("_health")
    finally:
        refusing.join()
        client.close()
        peer.close(linger=0)


def _lost(outcome: object) -> bool:
    """``outcome`` is the client's error for a request whose connection closed: UNAVAILABLE, retryable, at
    once (a NoReply at the deadline is DEADLINE_EXCEEDED), saying so."""
    return (
        isinstance(outcome, Unavailable)
        and outcome.retryable
        and "closed the connection before answering; the request may have run (the daemon stopped or restarted)"
        in outcome.message
    )


def test_requests_on_a_connection_the_daemon_closed_fail_at_once_and_those_not_sent_reach_the_next(tmp_path):
    """Requests sent just before a daemon closed its socket (a rolling restart) got no reply and waited out
    their whole deadline, then failed DEADLINE_EXCEEDED, which no client retries. Now each fails at once
    as UNAVAILABLE, retryable; a request made while no daemon listens waits and is answered by the next
    one; a retried idempotent call is answered by it too."""
    first = Daemon(tmp_path / "first")
    first.wait_ready()
    client, watcher, writer = first.client(timeout=30, retries=0), first.client(timeout=30), first.client(timeout=30)
    patient = first.client(timeout=30, retries=100)
    try:
        slow = [client.submit("t.slow", {"ms": 60_000}) for _ in range(4)]  # read, never answered
        with ThreadPoolExecutor(2) as pool:
            # a keyed write the daemon read may have run: retried on the restarted daemon, which remembers no key,
            # it ran twice (checker 263), so the client leaves it to its caller
            keyed = pool.submit(writer.call, "t.slow", {"ms": 60_000}, idempotency_key="once")
            while watcher.call("_stats")["in_flight"] < len(slow) + 1:
                time.sleep(0.05)
            first.process.send_signal(signal.SIGSTOP)
            unread = [client.submit("echo.echo", n) for n in range(10)]
            retried = pool.submit(watcher.call, "_health")  # idempotent: the client retries it
            first.kill()
            assert all(_lost(future.exception()) for future in slow), [future.exception() for future in slow]
            assert isinstance(keyed.exception(), ConnectionClosed) and _lost(keyed.exception())
            # no daemon: not sent yet; then answered by the next one (retried while it says it is starting)
            waiting = [pool.submit(patient.call, "echo.echo", n, idempotent=True) for n in range(10, 20)]
            second = Daemon(tmp_path / "second", address=first.address)
            try:
                answers = [f.exception() or f.result().body for f in unread]
                # each lost with the connection, or not sent before it closed and answered by the next daemon
                starting = "the daemon is starting"  # which may refuse it as it starts: client retries 0
                assert all(answer == n or _lost(answer) or starting in str(answer) for n, answer in enumerate(answers))
                assert [f.result() for f in waiting] == list(range(10, 20))
                assert retried.result()["pid"] == second.process.pid
            finally:
                assert second.terminate() == 0
    finally:
        client.close()
        watcher.close()
        writer.close()
        patient.close()


def test_async_client_requests_a_killed_daemon_never_read_fail_at_once(tmp_path):
    """The same for the AsyncClient: requests sent to a stopped daemon that is then killed fail at once
    as UNAVAILABLE, retryable, not at their deadline as DEADLINE_EXCEEDED."""
    import asyncio

    import heirloom

    daemon = Daemon(tmp_path)
    daemon.wait_ready()

    async def scenario() -> list[BaseException | None]:
        async with heirloom.AsyncClient(daemon.address, timeout=30) as client:
            assert await client.call("echo.echo", "connected") == "connected"
            daemon.process.send_signal(signal.SIGSTOP)
            calls = [asyncio.ensure_future(client.call("echo.echo", n)) for n in range(20)]
            await asyncio.sleep(0)  # each call runs up to its wait for the reply: sent
            daemon.kill()
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert all(_lost(outcome) for outcome in outcomes), outcomes


def test_an_async_clients_close_fails_each_call_with_an_error_of_its_own_that_is_retryable(daemon):
    """close() failed every call outstanding with one error object, not retryable although PROTOCOL.md says
    UNAVAILABLE is (the request may have run): the gateway's rows each added ``row N: `` to that one message
    (``row 7: row 6: ... row 0: the client was closed``, checker h302 F5)."""
    import asyncio

    import heirloom

    async def scenario() -> list[BaseException]:
        client = heirloom.AsyncClient(daemon.address, timeout=30)
        assert await client.call("echo.echo", "connected") == "connected"
        calls = [asyncio.ensure_future(client.call("t.slow", {"ms": 1000})) for _ in range(8)]
        await asyncio.sleep(0)  # each call runs up to its wait for the reply: sent
        client.close()
        return await asyncio.gather(*calls, return_exceptions=True)

    errors = asyncio.run(scenario())
    assert all(isinstance(error, ConnectionClosed) and error.retryable for error in errors), errors
    assert len({id(error) for error in errors}) == 8, errors
    assert errors[0].message.startswith("the client was closed before the reply came; the request may have run")


def test_calls_cancelled_as_their_replies_come_leave_the_client_working(daemon):
    """h367 F1: an ``acall`` cancelled by ``asyncio.wait_for`` (or a submitted future cancelled) as its reply came
    killed the I/O thread (InvalidStateError); every later call timed out and no future resolved, close() too."""
    client = daemon.client(timeout=5)

    async def cancelled_calls() -> None:
        for number in range(300):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.acall("echo.echo", number), 1e-4)

    asyncio.run(cancelled_calls())
    for number in range(3000):
        client.submit("echo.echo", number).cancel()
    assert client.call("echo.echo", "after", timeout=3) == "after"
    late = client.submit("echo.echo", "late")
    assert late.result(timeout=3).body == "late"
    client.close()


def test_a_timeout_past_what_a_thread_can_wait_is_waited_and_a_key_past_64_bits_is_named(daemon):
    """h367 F2: ``timeout=1e10`` raised OverflowError after the request ran (an app retrying then ran a write
    twice); F3: an idempotency key past 64 bits was a bad ``body`` with msgpack's bare words."""
    with daemon.client(timeout=1e10) as client:
        assert client.call("echo.echo", 1) == 1
        assert client.call("echo.echo", 2, timeout=1e300) == 2
        assert client.submit("echo.echo", 4, timeout=2**63).result(5).body == 4  # an int past 64 bits (v14 F4)
        assert asyncio.run(client.acall("echo.echo", 5, timeout=10**400)) == 5
    with daemon.client(timeout=1.7e308) as client:  # its 1000 times was infinite: the I/O thread died (v14 F1)
        assert client.call("echo.echo", 6) == 6
        assert client.call("echo.echo", 7, timeout=3) == 7
        for key in (2**64, -(2**63) - 1):
            with pytest.raises(InvalidArgument) as caught:
                client.call("echo.echo", {"ok": 1}, idempotency_key=key)
            assert caught.value.field == "header.idempotency_key"
            assert f"idempotency_key {key} does not fit msgpack's 64 bits" in str(caught.value)
        assert client.call("echo.echo", 3, idempotency_key=2**64 - 1) == 3
