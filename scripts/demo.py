"""`make demo`: start a real daemon, send it real requests over ZeroMQ, print, stop cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

import heirloom

REPO = Path(__file__).resolve().parent.parent
console = Console()


def start_daemon(profile: str, address: str) -> subprocess.Popen:
    console.print(f"[bold]heirloom serve {profile} --bind {address}[/]")
    return subprocess.Popen([sys.executable, "-m", "heirloom", "serve", profile, "--bind", address], cwd=REPO)


def wait_ready(client: heirloom.Client, daemon: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"the daemon exited with {daemon.returncode}")
        try:
            if client.call("_ready", timeout=1)["ready"]:
                return
        except heirloom.RemoteError:
            time.sleep(0.2)
    sys.exit("the daemon did not become ready")


def main() -> None:
    address = f"ipc://{tempfile.mkdtemp(prefix='heirloom-demo-')}/daemon.sock"
    daemon = start_daemon("minimal", address)
    try:
        with heirloom.Client(address, timeout=10) as client:
            wait_ready(client, daemon)
            routes = [r["name"] for r in client.call("_routes")["routes"] if not r["name"].startswith("_")]
            console.print(f"routes: {', '.join(routes)}")
            for body in [{"hello": "heirloom"}, [1, 2.5, "three"], "a plain string"]:
                console.print(f"echo.echo({body!r}) -> {client.call('echo.echo', body)!r}")
            futures = [client.submit("echo.echo", i) for i in range(100)]
            console.print(f"100 concurrent calls answered: {sum(1 for f in futures if f.result().body is not None)}")
            try:
                client.call("echo.ehco", "typo")
            except heirloom.RemoteError as error:
                console.print(f"a typo gets a clear error: {error}")
            stats = client.call("_stats")["routes"]["echo.echo"]
            console.print(f"_stats echo.echo: count={stats['count']} p50={stats['p50_ms']:.3f} ms")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
    console.print(f"daemon stopped cleanly (exit {code})" if code == 0 else f"[red]daemon exited {code}[/]")
    sys.exit(code)


if __name__ == "__main__":
    main()
