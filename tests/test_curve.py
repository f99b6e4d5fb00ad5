"""CurveZMQ: only authorised keys are served; admin routes need an admin key."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest
import zmq

import heirloom
from heirloom.wire.auth import CurveClient
from heirloom.wire.client import DeadlineExceeded, PermissionDenied, Unauthenticated
from heirloom.wire.protocol import SIGNATURE
from tests.daemons import Daemon
from tests.helpers import HEIRLOOM, REPO, foreign_owned, free_port, free_tcp_address, run_heirloom
from tests.test_gateway import Gateway, http


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    for folder, name in [("server", "server"), ("clients", "alice"), ("admins", "root"), ("strangers", "mallory")]:
        result = run_heirloom("keys", "new", str(root / folder), "--name", name)
        assert result.returncode == 0, result.stderr
        assert (root / folder / f"{name}.key_secret").stat().st_mode & 0o777 == 0o600
    # admins must also be authorised clients to connect at all
    (root / "clients" / "root.key").write_bytes((root / "admins" / "root.key").read_bytes())
    return root


@pytest.fixture(scope="module")
def secure(tmp_path_factory, keys):
    daemon = Daemon(
        tmp_path_factory.mktemp("curve"),
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        "--curve-admins", str(keys / "admins"),
        address=free_tcp_address(),
    )  # fmt: skip
    daemon.wait_ready(curve=CurveClient(keys / "clients" / "alice.key_secret", keys / "server" / "server.key"))
    yield daemon
    assert daemon.terminate() == 0


def _curve(keys, secret):
    return CurveClient(keys / secret, keys / "server" / "server.key")


def test_authorised_client_is_served(secure, keys):
    """As README shows it: ``heirloom.CurveClient`` of two file names as text, held as Paths (a str
    was kept as text, though the fields say Path)."""
    curve = heirloom.CurveClient(str(keys / "clients/alice.key_secret"), str(keys / "server/server.key"))
    assert curve.secret_file == keys / "clients/alice.key_secret"
    with secure.client(curve=curve, timeout=5) as client:
        assert client.call("echo.echo", "over curve") == "over curve"


def test_unauthorised_client_is_refused(secure, keys):
    with (
        secure.client(curve=_curve(keys, "strangers/mallory.key_secret"), timeout=5) as client,
        pytest.raises(Unauthenticated, match=r"refused this client's Curve key \(not in its authorised clients\)$"),
    ):
        client.call("echo.echo", "let me in")


def test_async_client_speaks_curve_and_is_refused_a_stranger_key(secure, keys):
    import asyncio

    import heirloom

    async def scenario() -> None:
        async with heirloom.AsyncClient(secure.address, curve=_curve(keys, "clients/alice.key_secret")) as alice:
            assert await alice.call("echo.echo", "over curve") == "over curve"
        async with heirloom.AsyncClient(secure.address, curve=_curve(keys, "strangers/mallory.key_secret")) as mallory:
            with pytest.raises(Unauthenticated, match="refused this client's Curve key"):
                await mallory.call("echo.echo", "let me in", timeout=5)

    asyncio.run(scenario())


def test_a_client_with_keys_to_a_daemon_without_curve_is_told_it_serves_without_curve(tmp_path, keys):
    """It was told its key was refused or the server key wrong, which sent its operator to a clients folder the
    daemon has none of (checker h453 F1); an unknown key is refused naming the key only (a wrong server key is a
    silence, never a refusal: F2)."""
    plain = Daemon(tmp_path)
    plain.wait_ready()
    try:
        said = "refused this client's Curve handshake as another protocol: it serves without CurveZMQ"
        curve = _curve(keys, "clients/alice.key_secret")
        with plain.client(curve=curve, timeout=5, retries=0) as client, pytest.raises(Unauthenticated, match=said):
            client.call("echo.echo", "over curve?")
    finally:
        assert plain.terminate() == 0


def test_a_client_folder_without_a_public_key_is_warned_of_at_the_start(tmp_path, keys):
    """A --curve-clients folder holding only a client's .key_secret (copied by mistake) served, every client refused,
    and the log said nothing (checker h453 F3)."""
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "alice.key_secret").write_bytes((keys / "clients" / "alice.key_secret").read_bytes())
    curve = ("--curve-secret", str(keys / "server" / "server.key_secret"), "--curve-clients", str(clients))
    daemon = Daemon(tmp_path, *curve, address=free_tcp_address())
    try:
        daemon.wait_logged(
            f"--curve-clients {clients} holds no public .key file (1 .key_secret): no client can connect"
        )
        daemon.wait_logged("heirloom.server: ready")  # its SIGTERM handler in place: a drain, not a kill
    finally:
        assert daemon.terminate() == 0


def test_a_python_client_given_the_daemons_secret_warns_once_and_a_bad_key_leaks_no_socket(secure, keys, caplog):
    """``heirloom call`` warned of the daemon's .key_secret given as its server key; ``heirloom.Client`` and
    ``heirloom worker`` said nothing, and a Client refused for a bad key file left its sockets open (v42 F4, F8)."""
    curve = CurveClient(keys / "clients" / "alice.key_secret", keys / "server" / "server.key_secret")
    with caplog.at_level(logging.WARNING, logger="heirloom"):
        for _ in range(2):
            with secure.client(curve=curve, timeout=5) as client:
                assert client.call("echo.echo", "hi") == "hi"
    said = [record for record in caplog.records if "holds the daemon's secret key" in record.getMessage()]
    assert len(said) == 1, caplog.text
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with pytest.raises(heirloom.HeirloomError, match="holds no secret key"):
                heirloom.Client(secure.address, curve=_curve(keys, "clients/alice.key"))
        gc.collect()
    assert not [warning for warning in caught if issubclass(warning.category, ResourceWarning)], caught


def test_plain_client_gets_nothing(secure):
    hint = "A daemon serving over CurveZMQ answers no client without a key"
    with secure.client(timeout=1, retries=0) as client, pytest.raises(DeadlineExceeded, match=hint):
        client.call("_health")  # no handshake, so no reply at all


def test_the_dashboard_reads_live_stats_from_a_curve_daemon(secure, keys, tmp_path):
    port = free_port()
    command = [*HEIRLOOM, "ui", "--port", str(port), "--connect", secure.address,
               "--curve-secret", str(keys / "clients" / "alice.key_secret"),
               "--curve-server", str(keys / "server" / "server.key")]  # fmt: skip
    env = {**os.environ, "HEIRLOOM_HOME": str(tmp_path)}
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "heirloom ui did not start"
                time.sleep(0.2)
        assert '<tr data-route="echo.echo">' in page, page[:2000]
    finally:
        process.terminate()
        assert process.wait(30) == 0


def test_a_broker_checks_admin_rights_before_the_body_of_an_admin_route(tmp_path, keys):
    daemon = Daemon(
        tmp_path,
        "--workers", "2",
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        "--curve-admins", str(keys / "admins"),
        address=free_tcp_address(),
    )  # fmt: skip
    alice = _curve(keys, "clients/alice.key_secret")
    daemon.wait_ready(curve=alice)
    with daemon.client(curve=alice, timeout=5) as client, pytest.raises(PermissionDenied):
        client.call("_reload", {})  # a body _reload refuses: still, a non-admin learns nothing of it
    assert daemon.terminate() == 0


def test_admin_route_needs_an_admin_key(secure, keys):
    with (
        secure.client(curve=_curve(keys, "clients/alice.key_secret"), timeout=5) as client,
        pytest.raises(PermissionDenied, match="_reload is an admin route"),
    ):
        client.call("_reload")
    with secure.client(curve=_curve(keys, "admins/root.key_secret"), timeout=5) as client:
        assert client.call("_reload") == {"checking": []}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_api_route_named_in_admin_routes_answers_admin_keys_only(tmp_path, keys, workers):
    """A recommender's event route or a classifier's feedback route took training data from any
    client key: the app's key that reads predictions could write what the next model learns."""
    daemon = Daemon(
        tmp_path,
        "--workers", workers,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        "--curve-admins", str(keys / "admins"),
        "--set", 'server.admin_routes=["echo.echo"]',
        address=free_tcp_address(),
    )  # fmt: skip
    daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
    with daemon.client(curve=_curve(keys, "clients/alice.key_secret"), timeout=5) as alice:
        with pytest.raises(PermissionDenied, match=r"echo\.echo is an admin route"):
            alice.call("echo.echo", "from the app")
        [route] = [r for r in alice.call("_routes")["routes"] if r["name"] == "echo.echo"]
        assert route["admin"] is True
    with daemon.client(curve=_curve(keys, "admins/root.key_secret"), timeout=5) as root:
        assert root.call("echo.echo", "from a person") == "from a person"
    assert daemon.terminate() == 0


def test_an_admin_route_that_is_no_api_route_stops_the_start_naming_it(tmp_path):
    started = run_heirloom(
        "serve", "minimal", "--bind", f"ipc://{tmp_path}/s", "--set", 'server.admin_routes=["echo.ecko"]'
    )
    assert started.returncode == 1
    assert "[server] admin_routes: no api route 'echo.ecko'; did you mean 'echo.echo'?" in started.stderr


def test_call_cli_speaks_curve(secure, keys):
    ok = run_heirloom("call", "echo.echo", '"hi"', "--connect", secure.address,
                      "--curve-secret", str(keys / "clients" / "alice.key_secret"),
                      "--curve-server", str(keys / "server" / "server.key"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == '"hi"'
    secret = run_heirloom("call", "echo.echo", '"hi"', "--connect", secure.address,
                          "--curve-secret", str(keys / "clients" / "alice.key_secret"),
                          "--curve-server", str(keys / "server" / "server.key_secret"))  # fmt: skip
    said = "server.key_secret holds the daemon's secret key: a client needs only its public .key"
    assert secret.returncode == 0 and said in " ".join(secret.stderr.split()), secret.stderr  # (checker h453 F4)
    refused = run_heirloom("call", "echo.echo", '"hi"', "--connect", secure.address, "--timeout", "3",
                           "--curve-secret", str(keys / "strangers" / "mallory.key_secret"),
                           "--curve-server", str(keys / "server" / "server.key"))  # fmt: skip
    assert refused.returncode == 1 and refused.stderr.startswith("UNAUTHENTICATED")
    tiny = run_heirloom("call", "echo.echo", '"hi"', "--connect", secure.address, "--timeout", "0.000000001",
                        "--curve-secret", str(keys / "strangers" / "mallory.key_secret"),
                        "--curve-server", str(keys / "server" / "server.key"))  # fmt: skip
    said = " ".join(tiny.stderr.split())  # the refusal, not "no reply ... nor to _health" (v26 F1)
    assert tiny.returncode == 1 and "UNAUTHENTICATED" in said and "nor to _health" not in said, said


@pytest.mark.parametrize("workers", ["1", "2"])
def test_removing_a_client_key_takes_effect_without_a_restart(tmp_path, keys, workers):
    """On _reload (and every reload_interval), the clients folder is read again: a removed key
    is refused on new connections and on the connection it already has."""
    clients = tmp_path / "clients"
    clients.mkdir()
    for name in ("alice", "root"):
        (clients / f"{name}.key").write_bytes((keys / "clients" / f"{name}.key").read_bytes())
    daemon = Daemon(
        tmp_path,
        "--workers", workers,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(clients),
        "--curve-admins", str(keys / "admins"),
        "--set", "server.reload_interval=0",
        address=free_tcp_address(),
    )  # fmt: skip
    alice_key = _curve(keys, "clients/alice.key_secret")
    daemon.wait_ready(curve=alice_key)
    with daemon.client(curve=alice_key, timeout=5, retries=0) as alice:
        assert alice.call("echo.echo", "before") == "before"
        (clients / "alice.key").unlink()
        with daemon.client(curve=_curve(keys, "admins/root.key_secret"), timeout=5) as root:
            root.call("_reload")
        with pytest.raises(Unauthenticated, match="no longer authorised"):
            alice.call("echo.echo", "after")
    with daemon.client(curve=alice_key, timeout=5, retries=0) as fresh, pytest.raises(Unauthenticated):
        fresh.call("echo.echo", "new connection")
    assert daemon.terminate() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_reload_after_the_server_key_file_changed_says_the_old_keypair_is_served_until_a_restart(
    tmp_path, keys, workers
):
    """h423 F2: SIGHUP after a new keypair was written over the server's key file logged "Curve keys re-read",
    yet the daemon went on serving the old keypair, unsaid."""
    server = tmp_path / "server"
    shutil.copytree(keys / "server", server)
    daemon = Daemon(
        tmp_path,
        "--workers", workers,
        "--curve-secret", str(server / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        address=free_tcp_address(),
    )  # fmt: skip
    old = CurveClient(keys / "clients" / "alice.key_secret", keys / "server" / "server.key")
    daemon.wait_ready(curve=old)
    assert run_heirloom("keys", "new", str(tmp_path / "rotated"), "--name", "server").returncode == 0
    shutil.copy(tmp_path / "rotated" / "server.key_secret", server / "server.key_secret")
    daemon.process.send_signal(signal.SIGHUP)
    said = "holds another keypair now: this daemon serves the one it read at start until it restarts"
    deadline = time.monotonic() + 20
    while said not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    assert "Curve keys re-read (the server's own keypair at a restart only)" in daemon.log()
    (server / "server.key_secret").unlink()  # v31 F3: a file gone was said to hold another keypair
    daemon.process.send_signal(signal.SIGHUP)
    gone = "No such file or directory: this daemon serves the keypair it read at start, and a restart would fail"
    while gone not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    assert daemon.log().count("holds another keypair now") == 1
    with daemon.client(curve=old, timeout=5) as alice:
        assert alice.call("echo.echo", "still") == "still"
    assert daemon.terminate() == 0


def refreshing_daemon(tmp_path, keys, clients) -> Daemon:
    """A Curve daemon that reads its clients folder again every 0.2 s."""
    return Daemon(
        tmp_path,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(clients),
        "--set", "server.reload_interval=0.2",
        address=free_tcp_address(),
    )  # fmt: skip


def test_client_keys_are_read_again_on_a_timer(tmp_path, keys):
    clients = tmp_path / "clients"
    clients.mkdir()
    daemon = refreshing_daemon(tmp_path, keys, clients)
    (clients / "alice.key").write_bytes((keys / "clients" / "alice.key").read_bytes())  # added after the start
    daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
    with daemon.client(curve=_curve(keys, "clients/alice.key_secret"), timeout=5) as alice:
        assert alice.call("echo.echo", 1) == 1
    assert daemon.terminate() == 0


def test_a_client_refused_at_the_handshake_is_served_once_its_key_is_added(tmp_path, keys):
    """libzmq never reconnects a socket refused at the Curve handshake: the same client stayed
    UNAUTHENTICATED after its key was authorised, and only a new one was served."""
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "root.key").write_bytes((keys / "clients" / "root.key").read_bytes())
    daemon = refreshing_daemon(tmp_path, keys, clients)
    daemon.wait_ready(curve=_curve(keys, "admins/root.key_secret"))
    with daemon.client(curve=_curve(keys, "clients/alice.key_secret"), timeout=5, retries=0) as alice:
        with pytest.raises(Unauthenticated):
            alice.call("echo.echo", "before")
        (clients / "alice.key").write_bytes((keys / "clients" / "alice.key").read_bytes())
        time.sleep(1)  # read again every 0.2 s
        assert alice.call("echo.echo", "after") == "after"

    async def refused_then_added() -> None:  # the asyncio client alike
        async with heirloom.AsyncClient(daemon.address, curve=_curve(keys, "strangers/mallory.key_secret")) as mallory:
            with pytest.raises(Unauthenticated):
                await mallory.call("echo.echo", "before", timeout=5)
            (clients / "mallory.key").write_bytes((keys / "strangers" / "mallory.key").read_bytes())
            await asyncio.sleep(1)
            assert await mallory.call("echo.echo", "after", timeout=5) == "after"

    asyncio.run(refused_then_added())
    assert daemon.terminate() == 0


def test_a_file_that_is_no_key_is_named_and_never_stops_a_revocation(tmp_path, keys):
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "alice.key").write_bytes((keys / "clients" / "alice.key").read_bytes())
    (clients / "bad.key").write_text("curve\n    public-key\n")  # no value: once a crash of the refresh thread
    secret = str(keys / "server" / "server.key_secret")
    refused = run_heirloom("serve", "minimal", "--curve-secret", secret, "--curve-clients", str(clients), timeout=60)
    assert refused.returncode == 1 and f"the Curve key {clients / 'bad.key'} has no public-key line" in refused.stderr
    (clients / "bad.key").unlink()
    daemon = refreshing_daemon(tmp_path, keys, clients)
    alice_key = _curve(keys, "clients/alice.key_secret")
    daemon.wait_ready(curve=alice_key)
    (clients / "bad.key").write_text('curve\n    public-key = "short"\n')  # added while serving: skipped
    (clients / "folder.key").mkdir()  # once an fd leaked per re-read, and the revocation was lost
    (clients / "alice.key").unlink()
    time.sleep(1)
    with daemon.client(curve=alice_key, timeout=5, retries=0) as alice, pytest.raises(Unauthenticated):
        alice.call("echo.echo", "revoked")
    clients.rename(tmp_path / "clients.gone")
    clients.write_text("not a folder")  # the keys read before are kept, and that is said once, not every 0.2 s
    time.sleep(1)
    assert daemon.terminate() == 0
    assert daemon.log().count(f"keeping the Curve keys read before: {clients} is not a folder") == 1
    skipped = "skipped a file of a Curve key folder: the Curve key"
    assert f"{skipped} {clients / 'bad.key'}: its public-key is not 40 z85 characters" in daemon.log()
    assert f"{skipped} {clients / 'folder.key'} is a directory, not a file" in daemon.log()


def test_a_key_file_with_two_public_keys_is_skipped_naming_it(tmp_path, keys):
    """A client .key with two public-key lines authorised the last in silence (issue 165):
    which one its owner meant is unknown, so the file is skipped, as any other bad key file."""
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "alice.key").write_bytes((keys / "clients" / "alice.key").read_bytes())
    daemon = Daemon(
        tmp_path,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(clients),
        "--set", "server.reload_interval=0.2",
    )  # fmt: skip
    daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
    lines = (keys / "strangers" / "mallory.key").read_text().splitlines()
    mallory_line = next(line for line in lines if line.strip().startswith("public-key"))
    (clients / "two.key").write_text((keys / "clients" / "alice.key").read_text() + mallory_line + "\n")
    time.sleep(1)
    mallory = _curve(keys, "strangers/mallory.key_secret")
    with daemon.client(curve=mallory, timeout=5, retries=0) as client, pytest.raises(Unauthenticated):
        client.call("echo.echo", "two keys in one file")
    assert daemon.terminate() == 0
    skipped = "skipped a file of a Curve key folder: the Curve key"
    assert f"{skipped} {clients / 'two.key'} has more than one public-key line" in daemon.log()


def test_a_client_key_written_in_any_zpl_quoting_is_authorised(tmp_path, keys):
    """A client in another language writes its own ``.key``: ZPL (and pyzmq's ``load_certificate``) takes
    a value in double quotes, single quotes or none, and the daemon refused the last two as having "no
    public-key line" (checker 280 F1)."""
    clients = tmp_path / "clients"
    clients.mkdir()
    for name, folder, quote in [("alice", "clients", "'"), ("mallory", "strangers", "")]:
        public = re.search(r'public-key = "(.{40})"', (keys / folder / f"{name}.key").read_text())[1]
        (clients / f"{name}.key").write_text(f"curve\n    public-key = {quote}{public}{quote}\n")
    daemon = Daemon(
        tmp_path,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(clients),
    )  # fmt: skip
    daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
    with daemon.client(curve=_curve(keys, "strangers/mallory.key_secret"), timeout=5) as client:
        assert client.call("echo.echo", "unquoted") == "unquoted"
    assert daemon.terminate() == 0


def test_a_clients_folder_follows_links_within_it_and_skips_those_out_of_it(tmp_path, keys):
    """A link in the clients folder to a .key anywhere authorised that key: whoever may change
    the file it points at chose a client (the store follows no link). A link out of the folder
    is now refused at start and skipped while serving, naming it; one within it (Kubernetes
    mounts a Secret's files as ``alice.key -> ..data/alice.key``) is followed."""
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "alice.key").write_bytes((keys / "clients" / "alice.key").read_bytes())
    outside = keys / "strangers" / "mallory.key"
    (clients / "link.key").symlink_to(outside)
    said = f"the Curve key {clients / 'link.key'} is a link to {outside}, outside the folder"
    secret = str(keys / "server" / "server.key_secret")
    refused = run_heirloom("serve", "minimal", "--curve-secret", secret, "--curve-clients", str(clients), timeout=60)
    assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    (clients / "link.key").unlink()
    daemon = refreshing_daemon(tmp_path, keys, clients)
    daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
    mallory = _curve(keys, "strangers/mallory.key_secret")
    (clients / "link.key").symlink_to(outside)  # added while serving: skipped
    time.sleep(1)
    with daemon.client(curve=mallory, timeout=5, retries=0) as client, pytest.raises(Unauthenticated):
        client.call("echo.echo", "through a link out of the folder")
    (clients / "link.key").unlink()
    (clients / "..data").mkdir()
    (clients / "..data" / "mallory.key").write_bytes(outside.read_bytes())
    (clients / "mallory.key").symlink_to("..data/mallory.key")
    time.sleep(1)
    with daemon.client(curve=mallory, timeout=5, retries=0) as client:
        assert client.call("echo.echo", "within") == "within"
    assert daemon.terminate() == 0
    assert daemon.log().count(f"skipped a file of a Curve key folder: {said}") == 1, daemon.log()


def test_key_files_that_would_hang_or_escape_are_refused(tmp_path, keys):
    fifo = tmp_path / "server.key_secret"
    os.mkfifo(fifo)
    clients = str(keys / "clients")
    hanging = run_heirloom("serve", "minimal", "--curve-secret", str(fifo), "--curve-clients", clients, timeout=60)
    assert hanging.returncode == 1 and f"the Curve key {fifo} is a FIFO, not a regular file" in hanging.stderr
    escape = run_heirloom("keys", "new", str(tmp_path / "k"), "--name", "../../escape")
    assert escape.returncode == 2 and "'--name': key name '../../escape': use 1-100 ASCII letters" in escape.stderr
    assert not (tmp_path.parent / "escape.key").exists()


def test_a_secret_key_that_is_not_its_public_keys_stops_serve_worker_and_call_naming_the_file(tmp_path, keys):
    """A .key_secret whose secret-key was zeroed started the daemon without a word, and every
    client then failed the handshake for good; a client's or worker's failed every call."""
    text = (keys / "server" / "server.key_secret").read_text()
    zeroed = tmp_path / "zeroed.key_secret"
    zeroed.write_text(re.sub(r'secret-key = "[^"]*"', 'secret-key = "' + "0" * 40 + '"', text))
    said = f"the Curve key {zeroed}: its secret-key is not the one of its public-key (an edited or damaged file?)"
    server_key, clients = str(keys / "server" / "server.key"), str(keys / "clients")
    serve = run_heirloom("serve", "minimal", "--curve-secret", str(zeroed), "--curve-clients", clients, timeout=60)
    call = run_heirloom("call", "_health", "--curve-secret", str(zeroed), "--curve-server", server_key)
    worker = run_heirloom("worker", "minimal", "--connect", free_tcp_address(), "--curve-secret", str(zeroed),
                          "--curve-server", server_key, timeout=60)  # fmt: skip
    for result, code in ((serve, 1), (call, 2), (worker, 1)):  # as each says of its other key file checks
        assert result.returncode == code and said in result.stderr, result.stderr


def test_call_names_the_curve_option_whose_key_file_is_bad_not_connect(tmp_path, keys):
    bad = tmp_path / "bad.key"
    bad.write_text("garbage\n")
    secret, server = str(keys / "clients" / "alice.key_secret"), str(keys / "server" / "server.key")
    for option, *other in (("--curve-server", "--curve-secret", secret), ("--curve-secret", "--curve-server", server)):
        result = run_heirloom("call", "_health", "--connect", free_tcp_address(), option, str(bad), *other)
        assert result.returncode == 2 and "--connect" not in result.stderr, result.stderr  # was "--connect: ..."
        assert f"error: {option}: the Curve key {bad} has no public-key line" in result.stderr


def test_refused_handshakes_write_nothing_to_a_debug_log(tmp_path, keys):
    """h411 F4: under ``--log-level debug`` each refused Curve handshake wrote pyzmq's three ZAP lines, with no
    limit: a flood of strangers filled the log that refusals are never written to."""
    address, log = free_tcp_address(), tmp_path / "daemon.log"
    server = ["--curve-secret", str(keys / "server" / "server.key_secret"), "--curve-clients", str(keys / "clients")]
    command = [*HEIRLOOM, "--log-level", "debug", "serve", "minimal", "--bind", address, *server]
    daemon = subprocess.Popen(command, stderr=log.open("w"), env={**os.environ, "HEIRLOOM_HOME": str(tmp_path)})
    try:
        with heirloom.Client(address, curve=_curve(keys, "clients/alice.key_secret"), timeout=30) as client:
            client.call("_ready")
        for _ in range(20):
            with (
                heirloom.Client(address, curve=_curve(keys, "strangers/mallory.key_secret"), timeout=2) as stranger,
                pytest.raises(Unauthenticated),
            ):
                stranger.call("_health")
        assert "DEBUG" in log.read_text() and "DENIED" not in log.read_text() and "ZAP" not in log.read_text()
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0


def test_a_damaged_secret_key_line_is_named_by_its_line_never_quoted(tmp_path, keys):
    """h411 F3: a secret-key line with its quote left open, text after the value, or ``secret_key`` was said to be
    no secret key at all, "pass the .key_secret file, not the .key": the wrong fix for a .key_secret file."""
    good = (keys / "clients" / "alice.key_secret").read_text()
    value = re.search(r'secret-key = "(.{40})"', good)[1]
    server = str(keys / "server" / "server.key")
    for damaged in (f'secret-key = "{value}', f'secret-key = "{value}" trailing', f'secret_key = "{value}"'):
        bad = tmp_path / "bad.key_secret"
        bad.write_text(good.replace(f'secret-key = "{value}"', damaged))
        bad.chmod(0o600)
        result = run_heirloom(
            "call", "_health", "--connect", free_tcp_address(), "--curve-server", server, "--curve-secret", str(bad)
        )
        line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if damaged in text)
        said = f"the Curve key {bad}: line {line} is no secret-key line as ZPL writes one"
        assert result.returncode == 2 and said in result.stderr, (damaged, result.stderr)
        assert value[:20] not in result.stderr and value[20:] not in result.stderr


def test_a_server_secret_key_others_can_read_is_served_with_a_warning_naming_it(tmp_path, keys):
    """A server's .key_secret of mode 644 was taken in silence (ssh refuses such a key; the daemon warns)."""
    secret = tmp_path / "open.key_secret"
    secret.write_bytes((keys / "server" / "server.key_secret").read_bytes())
    secret.chmod(0o644)
    daemon = Daemon(tmp_path, "--curve-secret", str(secret), "--curve-clients", str(keys / "clients"))
    try:
        daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
        assert (
            f"the Curve secret key {secret} is open to others than its owner (mode 644): chmod 600 it" in daemon.log()
        )
    finally:
        assert daemon.terminate() == 0


def test_a_secret_key_another_user_owns_is_used_with_a_warning_naming_the_owner(tmp_path, keys):
    """Checker h343 F3: a server's .key_secret of mode 600 owned by another local user was served in
    silence (only the mode bits were checked): its owner reads it, and may rewrite it. ssh refuses such a
    key; the daemon serves with a warning naming the owner, as of a key of mode 644."""
    secret = tmp_path / "theirs.key_secret"
    secret.write_bytes((keys / "server" / "server.key_secret").read_bytes())
    secret.chmod(0o600)
    owner = foreign_owned(secret)
    daemon = Daemon(tmp_path, "--curve-secret", str(secret), "--curve-clients", str(keys / "clients"))
    try:
        daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
        said = (
            f"the Curve secret key {secret} belongs to another user, {owner}, who may read and change it "
            "(mode 600): chown it to the user that runs heirloom and chmod 600 it"
        )
        assert daemon.log().count(said) == 1, daemon.log()
    finally:
        assert daemon.terminate() == 0


def test_a_key_folder_or_key_others_may_change_is_read_with_a_warning_once(tmp_path, keys):
    """h411 F2: ``--curve-clients`` and ``--curve-admins`` of mode 777 were read in silence: another local user
    added their key to both and called ``_reload`` as an admin. The folder and such a key file are named, once,
    though read again every re-read; a folder of mode 755 is not."""
    clients, admins = tmp_path / "clients", tmp_path / "admins"
    shutil.copytree(keys / "clients", clients)
    admins.mkdir()
    shutil.copy(keys / "clients" / "alice.key", admins / "alice.key")
    clients.chmod(0o777)
    (admins / "alice.key").chmod(0o666)
    server = ("--curve-secret", str(keys / "server" / "server.key_secret"))
    daemon = Daemon(tmp_path, *server, "--curve-clients", str(clients), "--curve-admins", str(admins))
    try:
        daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
        time.sleep(2.5)  # a re-read (every 2 s) says nothing more
        folder = f"the Curve key folder {clients} may be changed by others than its owner (mode 777): chmod go-w it"
        key = f"the Curve key {admins / 'alice.key'} may be changed by others than its owner (mode 666)"
        assert daemon.log().count(folder + "; whoever may change it chooses who may call") == 1, daemon.log()
        assert daemon.log().count(key) == 1 and f"folder {admins}" not in daemon.log(), daemon.log()
    finally:
        assert daemon.terminate() == 0


def _worker(tmp_path, address: str, log_name: str, *curve: str) -> tuple[subprocess.Popen, Path]:
    """``heirloom worker`` joining the broker at ``address`` from outside it, logging to a file."""
    log = tmp_path / f"{log_name}.log"
    command = [*HEIRLOOM, "worker", str(tmp_path / "daemon.toml"), "--connect", address, *curve]
    env = {**os.environ, "HEIRLOOM_PLUGINS": "tests.testing_api"}
    return subprocess.Popen([*command, "--set", "server.heartbeat=0.2"], stderr=log.open("w"), env=env), log


def _keyed_worker(tmp_path, address: str, log_name: str, secret: Path, server_key: str) -> subprocess.Popen:
    """:func:`_worker` with a Curve keypair (``secret``) for a broker whose public key is ``server_key``."""
    return _worker(tmp_path, address, log_name, "--curve-secret", str(secret), "--curve-server", server_key)[0]


def _exit_code(worker: subprocess.Popen, log: Path) -> int:
    """The worker's exit code once it stops; where it does not within 30 s, its log says why."""
    try:
        return worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"the worker did not stop within 30 s of its broker, log:\n{log.read_text()}") from None


def _curve_broker(tmp_path, keys, worker_address: str, *args: str) -> Daemon:
    """A Curve broker whose tcp:// worker endpoint admits the keys of ``tmp_path/workers``."""
    return Daemon(
        tmp_path,
        "--worker-bind", worker_address,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        "--curve-workers", str(tmp_path / "workers"),
        *args,
        address=free_tcp_address(),
    )  # fmt: skip


def test_a_curve_broker_admits_only_its_own_workers_and_those_with_an_authorised_key(tmp_path, keys):
    """Whatever reaches a tcp:// worker endpoint could take clients' requests: with Curve, a
    worker without a key, or with a key outside --curve-workers, never joins; the broker's
    own workers and one with an authorised key serve."""
    for folder, name in [("workers", "node2"), ("rogues", "eve")]:
        assert run_heirloom("keys", "new", str(tmp_path / folder), "--name", name).returncode == 0
    worker_address, server_key = free_tcp_address(), str(keys / "server" / "server.key")
    daemon = _curve_broker(tmp_path, keys, worker_address, "--workers", "2")
    alice = _curve(keys, "clients/alice.key_secret")
    daemon.wait_ready(curve=alice)
    plain, plain_log = _worker(tmp_path, worker_address, "plain")
    rogue = _keyed_worker(tmp_path, worker_address, "rogue", tmp_path / "rogues" / "eve.key_secret", server_key)
    rogue_log = tmp_path / "rogue.log"
    member = _keyed_worker(tmp_path, worker_address, "member", tmp_path / "workers" / "node2.key_secret", server_key)
    try:
        with daemon.client(curve=alice, timeout=5) as client:
            deadline = time.monotonic() + 30
            while len(pids := {w["pid"] for w in client.call("_ready")["workers"] if w["ready"]}) < 3:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
            assert member.pid in pids and plain.pid not in pids and rogue.pid not in pids
            served_by = {client.call("t.pid") for _ in range(30)}
            assert served_by <= pids
            for log in (plain_log, rogue_log):
                while "folder, or whose --curve-server is not the broker" not in log.read_text():  # h423 F5
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            assert len(client.call("_ready")["workers"]) == 3
            # a worker without a key fails the handshake before the key check: only the socket's monitor saw it,
            # as a mechanism mismatch or, when the worker saw it first and hung up, as a broken handshake
            keyless = [
                f"refused a worker without a Curve key (it needs --curve-secret and --curve-server)"
                f" at {worker_address}",
                f"refused a worker whose handshake broke off before its key was checked (a worker without a Curve key,"
                f" or whose --curve-server key is not this broker's public key?) at {worker_address}",
            ]
            deadline = time.monotonic() + 30  # its own wait: the one above may have spent most of the last
            while not any(line in daemon.log() for line in keyless):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        assert "refused a worker whose Curve key" in daemon.log()
    finally:
        assert daemon.terminate() == 0
        assert _exit_code(member, tmp_path / "member.log") == 0  # the broker's drain reaches the admitted worker
        for process in (plain, rogue):
            process.kill()


def test_revoking_a_worker_key_drops_that_worker_and_tells_it(tmp_path, keys):
    """The worker dropped for a removed key logged nothing and kept saying "ready" (checker 266): the
    broker answers its heartbeats REFUSED, which it logs; with the key back it is taken again."""
    assert run_heirloom("keys", "new", str(tmp_path / "workers"), "--name", "node2").returncode == 0
    worker_address = free_tcp_address()
    daemon = _curve_broker(tmp_path, keys, worker_address, "--workers", "0", "--set", "server.reload_interval=0.2")
    alice = _curve(keys, "clients/alice.key_secret")
    secret, server_key = tmp_path / "workers" / "node2.key_secret", str(keys / "server" / "server.key")
    member, member_log = _keyed_worker(tmp_path, worker_address, "member", secret, server_key), tmp_path / "member.log"
    public = tmp_path / "workers" / "node2.key"
    key = public.read_bytes()
    try:
        daemon.wait_ready(curve=alice)
        public.unlink()
        with daemon.client(curve=alice, timeout=5) as client:
            deadline = time.monotonic() + 30
            while client.call("_ready")["workers"]:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
            assert f"worker pid {member.pid}: key removed" in daemon.log()
            refused = (
                f"refused by the broker at {worker_address}: its Curve key is not in the broker's --curve-workers "
                "folder (removed); no request reaches this worker until it takes it again"
            )
            while refused not in member_log.read_text():
                assert time.monotonic() < deadline, member_log.read_text()
                time.sleep(0.2)
            public.write_bytes(key)
            while not client.call("_ready")["ready"]:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.2)
        said = member_log.read_text()
        assert said.count("connected to the broker at") == 2 and said.index(refused) < said.rindex("connected"), said
    finally:
        assert daemon.terminate() == 0
        member.kill()


def test_curve_workers_needs_a_curve_broker_on_tcp(tmp_path):
    result = run_heirloom("serve", "minimal", "--workers", "2", "--curve-workers", str(tmp_path))
    assert result.returncode == 2
    assert "--curve-workers needs --curve-secret and a tcp:// --worker-bind" in result.stderr


def test_an_option_that_does_nothing_without_another_is_refused(tmp_path):
    """Checker 273: --curve-admins alone was ignored, the daemon served without Curve and every client could
    call _reload; --metrics-host alone served no metrics, unsaid."""
    for alone, needs in (("--curve-admins", "--curve-secret"), ("--metrics-host", "--metrics-port")):
        value = str(tmp_path) if alone == "--curve-admins" else "0.0.0.0"
        result = run_heirloom("serve", "minimal", "--bind", "tcp://127.0.0.1:0", alone, value)
        assert result.returncode == 2 and f"error: {alone} needs {needs}" in result.stderr, result.stderr


def test_keys_new_refuses_a_dangling_link_and_leaves_the_secret_private(tmp_path):
    """A link planted where the secret goes would receive it (its target need not exist)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "probe.key_secret").symlink_to(tmp_path / "attacker-reads-this")
    refused = run_heirloom("keys", "new", str(folder), "--name", "probe")
    assert refused.returncode != 0 and "already exists" in refused.stderr
    assert not (tmp_path / "attacker-reads-this").exists()
    made = run_heirloom("keys", "new", str(folder), "--name", "server")
    assert made.returncode == 0, made.stderr
    assert (folder / "server.key_secret").stat().st_mode & 0o777 == 0o600
    assert (folder / "server.key").stat().st_mode & 0o777 == 0o644


def test_a_client_secret_key_others_can_read_is_used_with_a_warning_naming_it(secure, keys, tmp_path):
    """``heirloom call`` and the gateway (a token's key) used a client's .key_secret of mode 644
    without a word, while serve warned of its own and the gateway refused a tokens file of 644:
    whoever reads that key calls the daemon as that client, around the gateway's token."""
    secret = tmp_path / "open.key_secret"
    secret.write_bytes((keys / "clients" / "alice.key_secret").read_bytes())
    secret.chmod(0o644)
    said = f"the Curve secret key {secret} is open to others than its owner (mode 644): chmod 600 it"
    server_key = str(keys / "server" / "server.key")
    call = run_heirloom("call", "echo.echo", '"hi"', "--connect", secure.address, "--curve-secret", str(secret),
                        "--curve-server", server_key)  # fmt: skip
    assert call.returncode == 0 and call.stdout.strip() == '"hi"', call.stderr
    assert call.stderr.count(said) == 1, call.stderr  # once, though the key is loaded again for the socket
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[tokens]\n"alice-token-0123456789" = "{secret}"\n')
    tokens.chmod(0o600)
    gateway = Gateway(tmp_path, secure.address, "--tokens", str(tokens), "--curve-server", server_key)
    try:
        echo = gateway.url + "/v1/routes/echo.echo"
        status, _, body = http(echo, {"a": 1}, headers={"Authorization": "Bearer alice-token-0123456789"})
        assert (status, body) == (200, {"a": 1})
    finally:
        assert gateway.stop() == 0
    assert gateway.log_path.read_text().count(said) == 1, gateway.log_path.read_text()


def test_the_gateway_calls_a_curve_daemon_with_each_tokens_key(secure, keys, tmp_path):
    """Every route answered 504 after 5 s: the gateway read ``_routes`` on a connection with
    no key, which a Curve daemon never answers."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(  # a token whose key the daemon refuses comes first: the public pages were 401 for all
        f'[tokens]\n"mallory-token-0123456789" = "{keys}/strangers/mallory.key_secret"\n'
        f'"alice-token-0123456789" = "{keys}/clients/alice.key_secret"\n'
    )
    tokens.chmod(0o600)
    server_key = str(keys / "server" / "server.key")
    gateway = Gateway(tmp_path, secure.address, "--tokens", str(tokens), "--curve-server", server_key)
    try:
        with ThreadPoolExecutor(8) as pool:  # needs no token; read first, nothing cached, and all at once
            answers = list(pool.map(http, [gateway.url + "/openapi.json"] * 8))
        assert [status for status, _, _ in answers] == [200] * 8  # some were 401 as others moved the key
        assert all("/v1/routes/echo.echo" in document["paths"] for _, _, document in answers)
        said = gateway.log_path.read_text()
        assert "refuses the Curve key of token 1 of [tokens]: trying the next" in said
        assert "token 2 of [tokens]" not in said  # the key the daemon admits was blamed
        echo = gateway.url + "/v1/routes/echo.echo"
        status, _, body = http(echo, {"a": 1}, headers={"Authorization": "Bearer alice-token-0123456789"})
        assert (status, body) == (200, {"a": 1})
        status, _, body = http(echo, {"a": 1}, headers={"Authorization": "Bearer mallory-token-0123456789"})
        assert status == 401 and body["code"] == "UNAUTHENTICATED", body  # a key the daemon does not admit
        assert "refused this client's Curve key" in body["error"] and secure.address not in body["error"], body
        assert http(gateway.url + "/docs")[0] == 200
    finally:
        assert gateway.stop() == 0


def test_a_broker_keeps_its_own_admin_routes_whatever_its_workers_say(tmp_path, keys):
    """A worker started without the broker's [server] admin_routes (a rolling upgrade, a node with
    an older profile) reported echo.echo as open, and the broker let every client key call it."""
    assert run_heirloom("keys", "new", str(tmp_path / "workers"), "--name", "node2").returncode == 0
    worker_address, server_key = free_tcp_address(), str(keys / "server" / "server.key")
    daemon = _curve_broker(
        tmp_path, keys, worker_address, "--workers", "0", "--curve-admins", str(keys / "admins"),
        "--set", 'server.admin_routes=["echo.echo"]',
    )  # fmt: skip
    worker = _keyed_worker(tmp_path, worker_address, "open", tmp_path / "workers" / "node2.key_secret", server_key)
    try:
        daemon.wait_ready(curve=_curve(keys, "clients/alice.key_secret"))
        with daemon.client(curve=_curve(keys, "clients/alice.key_secret"), timeout=5) as alice:
            with pytest.raises(PermissionDenied, match=r"echo\.echo is an admin route"):
                alice.call("echo.echo", "from the app")
            assert [r["admin"] for r in alice.call("_routes")["routes"] if r["name"] == "echo.echo"] == [True]
        with daemon.client(curve=_curve(keys, "admins/root.key_secret"), timeout=5) as root:
            assert root.call("echo.echo", "from a person") == "from a person"
    finally:
        assert daemon.terminate() == 0
        assert _exit_code(worker, tmp_path / "open.log") == 0


def _raw_curve_dealer(context, address: str, curve: CurveClient, routing_id: bytes) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.ROUTING_ID, routing_id)
    curve.apply(socket)
    socket.connect(address)
    return socket


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_reply_never_reaches_another_key_that_takes_over_the_routing_id(tmp_path, keys, workers):
    """A client disconnects with a request in flight (read by the daemon, or still queued when it
    left); another authorised key connects with the same routing id before the reply: the reply is
    dropped (counted undeliverable), never sent to it, and the new connection is served."""
    daemon = Daemon(
        tmp_path,
        "--workers", workers,
        "--curve-secret", str(keys / "server" / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
        address=free_tcp_address(),
    )  # fmt: skip
    alice_key, root_key = _curve(keys, "clients/alice.key_secret"), _curve(keys, "admins/root.key_secret")
    daemon.wait_ready(curve=alice_key)
    context = zmq.Context()
    leaked, rounds = [], [0.5] + [0.0] * 12  # seconds between the request and the client's leaving
    try:
        for attempt, stay in enumerate(rounds):
            routing_id = b"shared-%d" % attempt
            victim = _raw_curve_dealer(context, daemon.address, alice_key, routing_id)
            victim.setsockopt(zmq.LINGER, 2000)  # the request does go out
            _send(victim, 1, "echo.echo", "connected")
            assert victim.poll(5000), "the first client is not served"
            victim.recv_multipart()
            _send(victim, 2, "t.slow", {"ms": 300})
            time.sleep(stay)
            victim.close()
            time.sleep(0.1)
            hijacker = _raw_curve_dealer(context, daemon.address, root_key, routing_id)
            if hijacker.poll(800):
                leaked.append((attempt, msgpack.unpackb(hijacker.recv_multipart()[1])))
                continue
            _send(hijacker, 3, "echo.echo", "own")
            assert hijacker.poll(5000), "the new connection is not served"
            _, header, body = hijacker.recv_multipart()
            assert (msgpack.unpackb(header)["id"], msgpack.unpackb(body)) == (3, "own")
            hijacker.close()
    finally:
        context.destroy(linger=0)
    assert not leaked, f"another key got {len(leaked)} of {len(rounds)} replies: {leaked[:3]}"
    with daemon.client(curve=alice_key, timeout=5) as alice:
        stats = alice.call("_stats")
    # at least the first round's reply is counted; one of a client leaving at once may have been read
    # by ZeroMQ unsent (its request never read), or taken by its closing connection, as PROTOCOL.md says
    assert 1 <= stats["undeliverable_replies"] <= stats["routes"]["t.slow"]["count"] <= len(rounds)
    assert daemon.terminate() == 0


def _send(socket: zmq.Socket, request_id: int, route: str, body: object) -> None:
    socket.send_multipart([SIGNATURE, msgpack.packb({"id": request_id, "route": route}), msgpack.packb(body)])


_FIRST_ROUTING_ID = """
import zmq
from heirloom.wire.connections import client_router
context = zmq.Context()
router = client_router(context)
port = router.bind_to_random_port("tcp://127.0.0.1")
dealer = context.socket(zmq.DEALER)
dealer.connect(f"tcp://127.0.0.1:{port}")
dealer.send(b"x")
print(router.recv_multipart()[0].hex())
context.destroy(linger=0)
"""


def test_the_routing_ids_zeromq_gives_clients_start_at_a_random_value():
    """Unseeded, libzmq's counter made every daemon's first client 006b8b4567: a guessable id."""
    first = {
        subprocess.run(
            [sys.executable, "-c", _FIRST_ROUTING_ID], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(first) == 3 and "006b8b4567" not in first, first
