"""`make demo`: resolve the minimal profile, start its system in-process, call its route."""

from __future__ import annotations

from rich.console import Console

import heirloom

console = Console()


def main() -> None:
    kernel = heirloom.Kernel()
    profile = kernel.resolve("minimal")
    console.print(f"[bold]profile[/] {profile.name}: {profile.description}")
    with kernel.system(profile) as system:
        console.print(f"started: {', '.join(spec.key for spec in profile.components)}; ready={system.ready()}")
        for name, api in system.apis().items():
            for route in api.routes():
                reply = route.handler({"hello": "heirloom"})
                console.print(f"{name}.{route.name}({{'hello': 'heirloom'}}) -> {reply}")
        console.print(f"resources: {system.resources.usage()}")
    console.print("stopped cleanly")


if __name__ == "__main__":
    main()
