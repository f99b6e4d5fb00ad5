"""``heirloom gateway`` as a supervisor sees it: SIGHUP reloads and never stops it, the tokens file
is read again on it, and a gateway whose child daemon exits says so and stops with 1 (docs/HTTP.md,
"The daemon behind it" and "Tokens and Curve")."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemons import Daemon
from tests.helpers import HEIRLOOM, REPO, foreign_owned, free_port, run_heirloom, write
from tests.test_gateway import Gateway, http, http_up

pytest.importorskip("starlette", reason="needs the 'ui' extra: pip install -c constraints.txt -e '.[ui]'")


class Started:
    """``heirloom gateway ARGS`` on a free port, its log in a file, once it answers ``GET /v2``."""

    def __init__(self, tmp: Path, *args: str):
        self.port = free_port()
        self.log_path = tmp / f"gateway-{self.port}.log"
        self.process = subprocess.Popen(
            [*HEIRLOOM, "gateway", *args, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("w"),
            cwd=REPO,
            env={**os.environ, "HEIRLOOM_HOME": str(tmp / "home")},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while not http_up(self.url + "/v2"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"heirloom gateway did not start:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text()


def said(gateway: Started | Gateway, text: str, times: int = 1) -> None:
    """Wait until the gateway's log holds ``text`` ``times`` times (it acts on a signal on its next tick)."""
    deadline = time.monotonic() + 30
    while (log := gateway.log_path.read_text()).count(text) < times:
        assert gateway.process.poll() is None, f"the gateway exited with {gateway.process.returncode}:\n{log}"
        assert time.monotonic() < deadline, log
        time.sleep(0.1)


@pytest.mark.parametrize("options", [["--separate-daemon"], ["--set", "server.workers=2"]], ids=["asked", "workers"])
def test_a_gateway_whose_child_daemon_exits_says_so_and_stops_with_1(tmp_path, options):
    """The child's exit (the out-of-memory killer, a crash) went unnoticed: a gateway answering 504 to
    everything, and 200 to its liveness probe, for ever, the child a zombie. It now logs the child's end,
    reaps it and exits 1, for its supervisor to restart it."""
    profile = write(tmp_path / "p.toml", 'extends = ["minimal"]\n')
    gateway = Started(tmp_path, str(profile), *options)
    try:
        status, _, health = http(gateway.url + "/v1/routes/_health", method="POST", raw=b"null")
        assert status == 200 and health["pid"] != gateway.process.pid
        os.kill(health["pid"], signal.SIGKILL)  # the child: one serve process, or the workers' broker
        assert gateway.process.wait(60) == 1, gateway.log()
    finally:
        gateway.process.kill()
    assert f"heirloom serve {profile} exited with -9 (killed by SIGKILL): stopping the gateway" in gateway.log()
    assert not Path(f"/proc/{health['pid']}").exists()  # reaped, no zombie


@pytest.mark.parametrize("options", [[], ["--separate-daemon"]], ids=["in-process", "child"])
def test_sighup_reloads_the_daemon_and_never_stops_the_gateway(tmp_path, options):
    """SIGHUP killed the gateway at once (exit 129, the requests in flight unanswered). It is now what
    ``heirloom serve`` does on it: ``_reload``, by the daemon on the gateway's loop or by the child it
    is passed on to; the gateway serves on, and stops on SIGTERM with 0 as before."""
    gateway = Started(tmp_path, "minimal", *options)
    try:
        for times in (1, 2):
            gateway.process.send_signal(signal.SIGHUP)
            said(gateway, "received SIGHUP: reloading", times)
            assert http(gateway.url + "/v1/routes/echo.echo", [times])[::2] == (200, [times])
        if options:
            assert "received SIGHUP: passed on to heirloom serve minimal" in gateway.log()
    finally:
        gateway.process.terminate()
        assert gateway.process.wait(30) == 0, gateway.log()


def test_sighup_reads_the_tokens_file_again_and_keeps_it_when_it_became_wrong(tmp_path):
    """A token removed from --tokens went on working (admin routes too) until a restart, and the usual
    reload signal killed the gateway. SIGHUP now reads the file again with the start's checks: a token
    removed is 401 from then on; a file that fails them is logged and the tokens in use kept."""
    daemon = Daemon(tmp_path / "daemon")
    daemon.wait_ready()
    keep, drop = "a-long-token-kept-by-the-file", "a-long-token-removed-from-it"
    for name in ("kept", "dropped"):
        write(tmp_path / "keys" / f"{name}.key_secret", "a key (read by the daemon only with Curve)\n")
    tokens = write(
        tmp_path / "tokens.toml",
        f'[tokens]\n"{keep}" = "keys/kept.key_secret"\n"{drop}" = "keys/dropped.key_secret"\n',
    )
    tokens.chmod(0o600)
    gateway = Gateway(tmp_path, daemon.address, "--tokens", str(tokens))

    def status(token: str) -> int:
        return http(gateway.url + "/v1/routes/echo.echo", [1], headers={"Authorization": f"Bearer {token}"})[0]

    try:
        assert (status(keep), status(drop)) == (200, 200)
        write(tokens, f'[tokens]\n"{keep}" = "keys/kept.key_secret"\n')
        gateway.process.send_signal(signal.SIGHUP)
        said(gateway, f"received SIGHUP: read {tokens} again: 1 token(s)")
        assert (status(keep), status(drop)) == (200, 401)
        tokens.chmod(0o644)  # others may read it now: refused as at start, the tokens in use kept
        gateway.process.send_signal(signal.SIGHUP)
        said(gateway, "received SIGHUP: kept the 1 token(s) in use")
        assert f"{tokens}: other users may read or change its tokens (mode 644)" in gateway.log_path.read_text()
        assert (status(keep), status(drop)) == (200, 401)
    finally:
        assert gateway.stop() == 0, gateway.log_path.read_text()
        assert daemon.terminate() == 0


def test_a_tokens_file_another_user_owns_is_refused_at_start_and_on_sighup(tmp_path):
    """Checker h343 F3: a tokens file of mode 600 owned by another local user was used (only the mode bits
    were checked): its owner rewrote it with a token of their own, and after SIGHUP the gateway served it.
    Now it is refused at start, and on SIGHUP with the tokens in use kept, naming the file and its owner."""
    daemon = Daemon(tmp_path / "daemon")
    daemon.wait_ready()
    token = "a-long-token-of-the-operator"
    write(tmp_path / "keys" / "app.key_secret", "a key (read by the daemon only with Curve)\n")
    tokens = write(tmp_path / "tokens.toml", f'[tokens]\n"{token}" = "keys/app.key_secret"\n')
    tokens.chmod(0o600)
    owner = foreign_owned(tokens)
    refused = (
        f"{tokens}: the tokens file belongs to another user, {owner}, who may read or change its tokens: chown it "
        "to the user that runs the gateway"
    )
    try:
        started = run_heirloom(
            "gateway", "--connect", daemon.address, "--tokens", str(tokens), "--port", "0", timeout=60
        )
        assert started.returncode == 1 and refused in started.stderr, started.stderr
        os.chown(tokens, os.geteuid(), os.getegid())
        gateway = Gateway(tmp_path, daemon.address, "--tokens", str(tokens))
        try:
            echo = gateway.url + "/v1/routes/echo.echo"
            assert http(echo, [1], headers={"Authorization": f"Bearer {token}"})[0] == 200
            write(tokens, '[tokens]\n"their-own-token-0123456789" = "keys/app.key_secret"\n')  # theirs now
            foreign_owned(tokens)
            gateway.process.send_signal(signal.SIGHUP)
            said(gateway, "received SIGHUP: kept the 1 token(s) in use")
            assert refused in gateway.log_path.read_text()
            assert http(echo, [1], headers={"Authorization": f"Bearer {token}"})[0] == 200
            assert http(echo, [1], headers={"Authorization": "Bearer their-own-token-0123456789"})[0] == 401
        finally:
            assert gateway.stop() == 0, gateway.log_path.read_text()
    finally:
        assert daemon.terminate() == 0


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_a_child_daemon_logs_as_the_gateway_is_told_and_so_does_the_gateway(tmp_path, level):
    """A child daemon was started without the gateway's --log-format and --log-level: text lines at INFO
    under a gateway's ``--log-format json --log-level warning``; and the gateway's own first line
    (``heirloom gateway: http://...``) was plain text whatever --log-format said (h334 F4)."""
    gateway = Started(tmp_path, "minimal", "--separate-daemon", "--log-format", "json", "--log-level", level)
    try:
        assert http(gateway.url + "/v1/routes/echo.echo", [1])[::2] == (200, [1])
    finally:
        gateway.process.terminate()
        assert gateway.process.wait(30) == 0, gateway.log()
    lines = [json.loads(line) for line in gateway.log().splitlines()]  # every line JSON, the child's too
    if level == "WARNING":
        assert [line for line in lines if line["level"] in ("debug", "info")] == []
    else:
        messages = {(line["pid"] == gateway.process.pid, line["message"]) for line in lines}
        assert (False, "stopped") in messages  # the child's
        banner = f"serving HTTP at {gateway.url}/ -> ipc://"
        assert [m for own, m in messages if own and m.startswith(banner)], messages


def test_a_curve_server_key_without_connect_is_refused_at_start(tmp_path):
    """``--curve-server`` with PROFILE was accepted: ignored by a daemon on the gateway's loop, and every
    request 401 'the daemon refused this client's Curve key' once the daemon was a child (``--separate-daemon``,
    or only ``[server] workers = 2``), though the child had no Curve at all (h334 F3)."""
    for folder, name in (("keys", "clinic"), ("keys/server", "server")):
        assert run_heirloom("keys", "new", str(tmp_path / folder), "--name", name).returncode == 0
    tokens = write(tmp_path / "tokens.toml", '[tokens]\n"a-long-random-token-for-the-app" = "keys/clinic.key_secret"\n')
    tokens.chmod(0o600)
    curve = ["--tokens", str(tokens), "--curve-server", str(tmp_path / "keys/server/server.key")]
    for options in ([], ["--separate-daemon"], ["--set", "server.workers=2"]):
        refused = run_heirloom("gateway", "minimal", *options, *curve, "--port", str(free_port()), timeout=30)
        assert refused.returncode == 2, refused.stderr
        assert "--curve-server goes with --connect" in refused.stderr, refused.stderr


def test_under_json_logs_a_gateway_that_cannot_start_says_why_in_json(tmp_path):
    """``heirloom gateway --log-format json``: an error at start (a profile, --set, the options, a port in use, a
    tokens file) was a plain ``Error: ...`` line in a JSON log, where serve and worker write JSON (h342 F9)."""
    tokens = write(tmp_path / "tokens.toml", '[tokens]\n"a-long-random-token-for-the-app" = "k.key_secret"\n')
    tokens.chmod(0o644)  # others may read it: refused
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    connect = ["--connect", "ipc:///nonexistent/daemon.sock"]
    cases = [
        (["no-such-profile"], 2, "no-such-profile: no such profile"),
        (["minimal", "--set", "bad"], 2, "--set: expected KEY.PATH=VALUE"),
        ([], 2, "give PROFILE or --connect ADDR (one of them)"),
        ([*connect, "--port", port], 1, f"cannot listen on 127.0.0.1:{port}: Address already in use"),
        ([*connect, "--tokens", str(tokens), "--port", "0"], 1, f"{tokens}: other users may read or change its"),
    ]
    with taken:
        for args, code, why in cases:
            result = run_heirloom("gateway", *args, "--log-format", "json", timeout=60)
            assert result.returncode == code, result.stderr
            (line,) = [json.loads(line) for line in result.stderr.splitlines()]  # a collector reads every line
            assert line["level"] == "error" and line["message"].startswith(f"error: {why}"), line
        text = run_heirloom("gateway", *connect, "--port", port, timeout=60)  # as serve's: not click's "Error:"
        assert (
            text.returncode == 1
            and text.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
        ), "h383 F6"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signals_sent_again_while_the_gateway_stops_still_end_it_with_0_and_no_traceback(tmp_path, stop_signal):
    """A second SIGTERM (``systemctl stop`` after a ``kill``) or Ctrl-C pressed twice, landing as the stop
    ended, exited 143 or 130 (the interpreter had reset the handlers), or 0 with a ``SystemExit`` traceback in
    an atexit hook, on stderr under ``--log-format json`` too; a second SIGINT made uvicorn skip the app's
    shutdown, where the daemon drains and its components stop (checker h358 F1). Signals are sent every 50 ms
    until the gateway is gone, so some land in every phase of its stop."""
    gateway = Started(tmp_path, "minimal", "--log-format", "json")
    deadline = time.monotonic() + 60
    while gateway.process.poll() is None and time.monotonic() < deadline:
        gateway.process.send_signal(stop_signal)
        time.sleep(0.05)
    assert gateway.process.wait(30) == 0, gateway.log()
    said = [json.loads(line) for line in gateway.log().splitlines()]  # one JSON object a line, no traceback
    assert {"logger": "heirloom.wire.daemon", "message": "stopped"}.items() <= said[-1].items()  # drained, stopped


def test_a_stop_that_cuts_off_a_client_not_reading_its_replies_logs_json_warnings_only(tmp_path):
    """A client pipelining requests and reading no reply: at SIGTERM, uvicorn cut its request off at --timeout and
    logged "ERROR: Exception in ASGI application" with a 22-line traceback, no JSON under --log-format json
    (checker h397 F1). It is one JSON warning line now, and the stop ends with 0."""
    gateway = Started(tmp_path, "minimal", "--log-format", "json", "--timeout", "2")
    request = b"POST /v1/routes/echo.echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = b'{"a": "' + b"x" * 20_000 + b'"}'  # replies fill the socket's buffers, unread
    request += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    with socket.create_connection(("127.0.0.1", gateway.port)) as pipelining:
        pipelining.setblocking(False)
        data, sent, deadline = request * 2000, 0, time.monotonic() + 3
        while time.monotonic() < deadline and sent < len(data):
            try:
                sent += pipelining.send(data[sent : sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(1)
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(30) == 0, gateway.log()
    lines = gateway.log().splitlines()
    assert [line for line in lines if not line.startswith("{")] == [], lines
    cut = [json.loads(line) for line in lines if "cut off" in line]
    assert cut and all(entry["level"] == "warning" for entry in cut), lines


def test_a_stop_signal_as_the_gateway_starts_serving_ends_it_with_0_and_json_lines_only(tmp_path):
    """A SIGTERM that landed as the gateway entered uvicorn, after its banner and before uvicorn's own
    handlers, printed ``RuntimeWarning: coroutine 'Server.serve' was never awaited`` (three lines that are
    no JSON under ``--log-format json``; 2 of 6 tries hit it: checker v11 F2). Each try signals the moment
    the banner is read."""
    for _ in range(3):
        gateway = subprocess.Popen(
            [*HEIRLOOM, "gateway", "minimal", "--port", "0", "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "HEIRLOOM_HOME": str(tmp_path / "home")},
        )
        lines = []
        for line in gateway.stderr:
            lines.append(line)
            if "serving HTTP at" in line:
                gateway.send_signal(signal.SIGTERM)
                break
        lines += gateway.stderr.readlines()
        assert gateway.wait(60) == 0, lines
        assert [line for line in lines if not line.startswith("{")] == []
        assert json.loads(lines[-1])["message"] == "stopped", lines[-3:]


def test_an_oip_model_of_a_daemon_starting_behind_connect_is_a_503_to_retry_not_a_404(tmp_path, data_dir):
    """HTTP.md: behind ``--connect`` a daemon starting answers 503, retryable. While a restarted daemon loaded its
    apis, ``/v2/models/sentiment/infer`` and its ready probe answered 404 ``no model 'sentiment' (models: none)``,
    not retryable (a Triton client concludes there is no such model), and went on so for up to a second after the
    daemon was ready, where ``/v1`` answered 503 (checker h432 F1)."""
    from tests.test_gateway import BARE, Gateway, http
    from tests.test_ui import SMALL

    profile = BARE.format(store=tmp_path / "store", data=data_dir, small=SMALL) + "start_ms = 8000\n"
    daemon = Daemon(tmp_path, profile=profile)
    gateway = Gateway(tmp_path, daemon.address)
    try:
        with daemon.client(timeout=1) as client:
            deadline = time.monotonic() + 60
            while True:  # bound, its apis still starting (the testing api's start takes 8 s)
                try:
                    client.call("_health")
                    break
                except Exception:  # noqa: BLE001 - not bound yet
                    assert time.monotonic() < deadline, daemon.log()
                    time.sleep(0.05)
        row = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Profit rose"]}]}
        status, head, body = http(gateway.url + "/v2/models/sentiment/infer", row)
        assert (status, body["code"], body["retryable"], head["Retry-After"]) == (503, "UNAVAILABLE", True, "1"), body
        assert body["error"] == "the daemon is starting; no models yet"
        assert http(gateway.url + "/v2/models/sentiment/ready")[:3:2] == (503, {"name": "sentiment", "ready": False})
        while (answer := http(gateway.url + "/v2/models/sentiment"))[0] == 503:  # polled as a client would
            time.sleep(0.1)
        assert answer[0] == 200 and answer[2]["name"] == "sentiment", answer
    finally:
        assert gateway.stop() == 0, gateway.log_path.read_text()
        daemon.kill()
