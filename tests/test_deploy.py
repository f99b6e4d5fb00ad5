"""deploy/: the systemd unit's commands run as plain processes, and the unit parses.

systemd itself does not run here (it is not PID 1), and no container engine does:
deploy/README.md says what was and was not run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import attrs
import pytest

from heirloom.core.settings import SystemSettings
from heirloom.wire.client import Client
from tests.helpers import REPO, free_port, free_tcp_address

UNIT = REPO / "deploy" / "heirloom@.service"
INSTALLED = "/opt/heirloom/venv/bin/heirloom"


def unit_settings(wanted: str = "[Service]") -> dict[str, str]:
    """A section's last value per key (systemd's rule for single-valued keys)."""
    settings, section = {}, None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == wanted and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def service_settings() -> dict[str, str]:
    return unit_settings("[Service]")


def unit_environment() -> dict[str, str]:
    """Every ``Environment=NAME=value`` of the unit (the defaults an instance's env file overrides)."""
    lines = UNIT.read_text().splitlines()
    return dict(line.partition("=")[2].split("=", 1) for line in lines if line.startswith("Environment="))


def command(line: str, address: str, metrics: int) -> list[str]:
    """A unit command line for this machine: the venv's heirloom, the minimal profile, and the
    instance's env file setting free ports (as /etc/heirloom/%i.env would)."""
    environment = {**unit_environment(), "BIND": address, "METRICS_PORT": str(metrics)}
    words = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: environment[m[1]], line.replace("%i", "minimal")))
    assert words[0] == INSTALLED
    return [sys.executable, "-m", "heirloom", *words[1:]]


def test_each_instance_sets_its_own_endpoints_and_a_crash_loop_stops():
    """Two instances of the template cannot share ports: the endpoints come from the
    instance's env file; a start that keeps failing stops being retried."""
    service, unit = service_settings(), unit_settings("[Unit]")
    assert service["EnvironmentFile"] == "-/etc/heirloom/%i.env"
    for name in ("BIND", "METRICS_PORT"):
        assert name in unit_environment() and f"${{{name}}}" in service["ExecStart"]
    assert "5555" not in service["ExecStart"]
    restarts = float(unit["StartLimitIntervalSec"]) / float(service["RestartSec"])
    assert int(unit["StartLimitBurst"]) < restarts, "the start limit must be reachable at the restart pace"


def test_the_unit_stops_with_sigterm_after_the_grace_and_the_components_stop_and_reloads_by_signal():
    """45 s for a 30 s grace left a component that used its whole stop_timeout (30 s) 15 s short;
    reloading by `call _reload --connect ${BIND}` failed for a BIND of tcp://*:PORT, valid to bind."""
    settings = service_settings()
    assert settings["KillSignal"] == "SIGTERM"
    start = shlex.split(settings["ExecStart"])
    grace = float(start[start.index("--grace") + 1])
    stop_timeout = attrs.fields(SystemSettings).stop_timeout.default
    assert float(settings["TimeoutStopSec"]) >= grace + stop_timeout + 10, "the drain, the components' stop, a margin"
    assert shlex.split(settings["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]


def test_the_units_commands_serve_reload_and_drain(tmp_path):
    settings = service_settings()
    address, metrics = free_tcp_address(), free_port()
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    daemon = subprocess.Popen(command(settings["ExecStart"], address, metrics), env=env, stderr=subprocess.PIPE)
    try:
        with Client(address, timeout=1, retries=0) as client:
            deadline = time.monotonic() + 60
            while not _ready(client) and time.monotonic() < deadline:
                assert daemon.poll() is None, daemon.stderr.read().decode()
                time.sleep(0.2)
        reload = settings["ExecReload"].replace("$MAINPID", str(daemon.pid))
        assert subprocess.run(shlex.split(reload), capture_output=True, text=True).returncode == 0
        with Client(address, timeout=5, retries=0) as client:  # a turn of the I/O loop after the signal's
            assert client.call("_health") and client.call("_health")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as scrape:
            assert b"heirloom_requests_total" in scrape.read()
        began = time.monotonic()
        daemon.send_signal(getattr(signal, settings["KillSignal"]))
        assert daemon.wait(float(settings["TimeoutStopSec"])) == 0
        assert time.monotonic() - began < 10, "an idle daemon drains at once"
        lines = [json.loads(line) for line in daemon.stderr.read().decode().splitlines() if line.startswith("{")]
        said = [entry.get("message", "") for entry in lines]
        assert any("received SIGTERM" in message for message in said), "--log-format json"
        assert "received SIGHUP: reloading" in said, "systemctl reload"
        assert f"metrics at http://127.0.0.1:{metrics}/metrics" in said
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def _ready(client: Client) -> bool:
    try:
        return client.call("_ready")["ready"]
    except Exception:  # noqa: BLE001 - not listening yet
        return False


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path):
    installed = Path(sys.executable).parent / "heirloom"
    unit = tmp_path / "heirloom@minimal.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(installed)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


CONTAINERFILE = REPO / "deploy" / "Containerfile"


def dockerignored(path: str) -> bool:
    """Whether ``.dockerignore`` leaves ``path`` (relative to the build context) out of the context: its
    patterns as Docker matches them (a match of a folder leaves out all of it; ``**/`` any folders)."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            return True
    return False


def test_the_image_leaves_out_the_state_a_checkout_holds():
    """.dockerignore let ./home and ./.heirloom (data sets, the store, feedback logs with clients' texts), and
    deploy/README.md's keys/ folder, into the build context, and COPY . put them in the image (h334 F2)."""
    anchored = [line.strip("/") for line in (REPO / ".gitignore").read_text().splitlines() if line.startswith("/")]
    assert anchored  # .gitignore's folders of the checkout's own state
    for folder in anchored:
        assert dockerignored(folder) and dockerignored(f"{folder}/store/index.sqlite"), folder
    for key in ("keys/probe/probe.key", "keys/probe/probe.key_secret", "deploy/server.key_secret"):
        assert dockerignored(key), key
    for needed in ("kernel/core/kernel.py", "plugins/gateway/command.py", "pyproject.toml", "constraints.txt"):
        assert not dockerignored(needed), needed


def test_the_image_build_takes_the_cpu_torch_from_the_index_it_is_given_or_fails(tmp_path):
    """constraints.txt pins torch's version, which the CUDA build matches too, while the Containerfile said it pinned
    the CPU build and its own build command passed no index: that command installed the CUDA build (h334 F1). The
    header's command passes the index now, and the build fails, naming the build argument, on a CUDA torch."""
    text = CONTAINERFILE.read_text()
    header = text.split("FROM ")[0].replace("\\\n#", "").splitlines()  # its continued lines joined
    assert "--build-arg PIP_EXTRA_INDEX_URL=" in next(line for line in header if "docker build" in line)
    assert "pins the CPU build" not in text
    assert re.search(r"^torch==[\d.]+$", (REPO / "constraints.txt").read_text(), re.M)  # a version, not a build
    run = next(line for line in text.replace("\\\n", "").splitlines() if line.startswith("RUN python -m venv"))
    check = run.split(" && ")[-1].replace("/opt/heirloom/venv/bin/python", shlex.quote(sys.executable))
    assert subprocess.run(["bash", "-c", check], capture_output=True, text=True).returncode == 0  # this CPU torch
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "2.13.0"\nclass version:\n    cuda = "12.4"\n')
    built = subprocess.run(["bash", "-c", check], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)})
    assert built.returncode == 1
    assert built.stderr.strip() == (
        "torch 2.13.0 is a CUDA build: pass --build-arg PIP_EXTRA_INDEX_URL=<an index of CPU torch wheels>"
    )


def test_scale_md_kuberay_command_uses_only_what_its_manifest_gives_the_head():
    """SCALE.md's KubeRay command read its Curve keys from /keys, which its RayCluster mounted nothing at, and bound
    the worker endpoint at $(hostname -i), which the Ray section above it warns is loopback on many hosts (h334)."""
    yaml = pytest.importorskip("yaml")
    page = (REPO / "docs" / "SCALE.md").read_text().split("## KubeRay", 1)[1].split("\n## ", 1)[0]
    manifest = yaml.safe_load(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]
    container = head["containers"][0]
    mounted = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounted.values()) <= {volume["name"] for volume in head["volumes"]}
    command = re.search(r"```sh\n(heirloom serve .*?)```", page, re.S).group(1)
    assert "hostname -i" not in command
    paths = re.findall(r"--\S+ (/[^\s\\]+)", command)
    assert any(path.startswith("/keys/") for path in paths), command
    for path in paths:
        assert any(path == folder or path.startswith(folder + "/") for folder in mounted), (path, mounted)
    variables = set(re.findall(r"\$\{(\w+)\}", command))
    assert variables and variables <= {variable["name"] for variable in container["env"]}, variables


def test_the_documented_docker_run_commands_publish_the_ports_on_loopback_only():
    """The image serves ZeroMQ without Curve (admin routes too) and /metrics without authentication; the
    Containerfile's usage comment published both on every host interface, where deploy/README.md says to
    publish them on 127.0.0.1 (checker h358 F2)."""
    for path in (CONTAINERFILE, REPO / "deploy" / "README.md"):
        published = re.findall(r"(?<!\S)-p (\S+)", path.read_text())
        assert published and all(port.startswith("127.0.0.1:") for port in published), (path, published)
