"""docs/PROTOCOL.md's plain pyzmq + msgpack client, run exactly as printed, against a daemon."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.daemons import Daemon
from tests.helpers import REPO

DOC = (REPO / "docs" / "PROTOCOL.md").read_text()


def _client_code() -> str:
    section = DOC.split("## A complete client in plain pyzmq and msgpack", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_client_imports_no_heirloom():
    assert "heirloom" not in "\n".join(line for line in _client_code().splitlines() if "import" in line)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_documented_client_works_against_a_daemon(tmp_path, workers):
    daemon = Daemon(tmp_path, "--workers", workers)
    daemon.wait_ready()
    code = f"ADDRESS = {daemon.address!r}\n" + _client_code()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert daemon.terminate() == 0
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["{'hello': 'world'}", "True", "NOT_FOUND"]


def test_the_hex_dump_matches_the_encoder():
    import msgpack

    from heirloom.wire.protocol import request_frames

    signature, header, body = request_frames(1, "echo.echo", {"hello": "world"}, deadline_ms=5000)
    assert signature == b"HLM1"
    dumped = re.search(r"frame 1 \(36 bytes\).*?\n(.*?)\n\n", DOC, re.S).group(1)
    hex_bytes = bytes.fromhex("".join(line[6:54] for line in dumped.splitlines()))
    assert msgpack.unpackb(hex_bytes) == msgpack.unpackb(header)
    assert msgpack.packb({"hello": "world"}) == body
