"""`make demo`: train finance-sentiment if needed, serve it, send real-looking headlines,
print the predictions and the monitor's alert, and stop the daemon cleanly.

Without the Financial PhraseBank in the data root (HEIRLOOM_DATA, else $HEIRLOOM_HOME/data)
it serves the minimal echo profile.
"""

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
console = Console(soft_wrap=True)  # a command printed whole, to copy (not cut at 80 columns)
HOUR = 3600.0

CALM = [  # yesterday: ordinary news
    "Nokia's net sales rose 12% to EUR 3.2 billion in the third quarter",
    "The company will hold its annual general meeting on 15 March",
    "Fiskars opened a new distribution centre in Sweden",
    "Orders received grew by 8% compared with the previous year",
    "The shares are listed on the Helsinki stock exchange",
    "Operating profit improved to EUR 14 million from EUR 9 million",
    "The contract includes maintenance services for five years",
    "Revenue is expected to grow slightly next year",
]
STORM = [  # the last hour: a burst of bad news
    "Operating profit fell sharply and the company warned of layoffs",
    "Shares plunged 18% after the profit warning",
    "Net sales decreased by 25% due to weak demand",
    "The company cut its full-year outlook and will close two plants",
    "Quarterly loss widened to EUR 40 million from EUR 12 million",
    "The bank reported a sharp drop in net interest income",
]


def heirloom_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "heirloom", *args]


def ensure_trained(profile: str) -> None:
    kernel = heirloom.Kernel()
    resolved = kernel.resolve(profile)
    try:
        version = kernel.store(resolved).resolve(f"{resolved.project}/sentiment")
    except heirloom.HeirloomError:
        version = None  # trained below, outside the handler: a Ctrl-C there was chained to this "no model" error
    if version is not None:
        console.print(f"using the trained {version.ref} (metrics: accuracy {version.metrics['accuracy']:.3f})")
        return
    console.print(f"[bold]no trained model yet: heirloom train {profile}[/]")
    try:
        trained = subprocess.run(heirloom_command("train", profile), cwd=REPO, check=False)
    except KeyboardInterrupt:  # heirloom train got it too, and said "interrupted": once is enough
        sys.exit(130)
    if trained.returncode != 0:  # heirloom train said why (or "interrupted"); no traceback of this script's
        sys.exit(trained.returncode)


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


def finance_demo(client: heirloom.Client) -> None:
    console.rule("sentiment.predict")
    for headline in [*CALM[:3], *STORM[:3]]:
        reply = client.request("sentiment.predict", {"text": headline})
        label = reply.body["label"]
        console.print(f"{label:>8} {reply.body['probabilities'][label]:.2f}  {headline}  [dim]({reply.version})[/]")
    console.rule("monitor: yesterday's news, then the last hour")
    now = time.time()
    calm = [{"text": text, "time": now - 20 * HOUR + i * HOUR} for i, text in enumerate(CALM)]
    client.call("monitor.post", {"items": calm})
    for i, text in enumerate(STORM):
        reply = client.call("monitor.post", {"items": [{"text": text, "time": now - HOUR + (i + 1) * 300}]})
        share = reply["state"]["window"]["share"]
        console.print(f"posted: {text!r}: negative share in the last hour {share:.0%}")
        if reply["alert"]:
            alert = reply["alert"]
            console.print(
                f"[bold red]ALERT[/]: negative share {alert['share']:.0%} over the last hour against "
                f"{alert['baseline_share']:.0%} in the 24 h before ({alert['items']} items)"
            )
    console.print(f"alerts so far: {len(client.call('monitor.alerts')['alerts'])}")


def echo_demo(client: heirloom.Client) -> None:
    for body in [{"hello": "heirloom"}, [1, 2.5, "three"]]:
        console.print(f"echo.echo({body!r}) -> {client.call('echo.echo', body)!r}")


def main() -> None:
    phrasebank = heirloom.data_root() / "financial-phrasebank"
    has_data = (phrasebank / "Sentences_50Agree.txt").is_file()
    profile = "finance-sentiment" if has_data else "minimal"
    if has_data:
        ensure_trained(profile)
    else:
        console.print(
            f"[yellow]no Financial PhraseBank in {phrasebank}: serving the minimal echo profile instead "
            "(`heirloom data fetch financial-phrasebank --accept-license` downloads it)[/]"
        )
    with tempfile.TemporaryDirectory(prefix="heirloom-demo-") as folder:  # the socket's, removed after
        address = f"ipc://{folder}/daemon.sock"
        console.print(f"[bold]heirloom serve {profile} --bind {address}[/]")
        command = heirloom_command("serve", profile, "--bind", address, "--log-level", "WARNING")
        daemon = subprocess.Popen(command, cwd=REPO)
        try:
            with heirloom.Client(address, timeout=10) as client:
                wait_ready(client, daemon)
                finance_demo(client) if has_data else echo_demo(client)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
    console.print(f"daemon stopped cleanly (exit {code})" if code == 0 else f"[red]daemon exited {code}[/]")
    sys.exit(code)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the daemon got the Ctrl-C too, and drains itself; a traceback here read as a fault
        console.print("interrupted: the demo stopped at Ctrl-C (its daemon, if started, stops with it)")
        sys.exit(130)
