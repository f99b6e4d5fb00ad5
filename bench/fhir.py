"""FHIR reading speed on the Synthea set: the lean path, the validating path, and
fhir.resources parsing alone, with stdlib ``json.loads`` as the floor.

    HEIRLOOM_DATA=../shared/data .venv/bin/python bench/fhir.py [--repeats 5]

Each row runs once to warm up (imports, page cache), then ``--repeats`` times; the
table shows medians, since this machine is shared and noisy. Not a test: no assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import heirloom

REPO = Path(__file__).resolve().parent.parent
SET = "fhir-synthea-smart-r4/bundles"


def timed(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""
    run()
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def source_pass(stack: ExitStack, validate: bool) -> Callable[[], object]:
    """A full pass over the medical profile's fhir source, as ``heirloom data stats`` makes.

    The system starts once, outside the timing: the rows compare reading, not start-up.
    """
    overrides = [f"sources.patients.validate={str(validate).lower()}"]
    system = stack.enter_context(heirloom.Kernel().system("medical", overrides, only={("source", "patients")}))
    return system.component("patients", "source").stats


def library_only(files: list[Path]) -> Callable[[], object]:
    """fhir.resources parsing and validating each Bundle file into its models, nothing else."""
    from fhir.resources.R4B.bundle import Bundle

    return lambda: [Bundle.model_validate_json(path.read_bytes()) for path in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per reader (medians are reported)")
    args = parser.parse_args()
    # This script is named fhir.py: its folder must leave the path, or ``import fhir.resources`` finds it.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    os.environ.setdefault("HEIRLOOM_DATA", str(REPO.parent / "shared" / "data"))
    os.chdir(REPO)  # the medical profile is found in ./profiles
    files = sorted((Path(os.environ["HEIRLOOM_DATA"]) / SET).glob("*.json"))
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    resources = sum(len(json.loads(p.read_bytes())["entry"]) for p in files)
    print(f"{len(files)} files, {megabytes:.1f} MB, {resources} resources; median of {args.repeats} runs\n")
    print(f"{'path':<42} {'seconds':>8} {'MB/s':>7} {'resources/s':>12} {'vs lean':>8}")
    with ExitStack() as stack:
        rows = [
            ("json.loads only (floor)", lambda: [json.loads(p.read_bytes()) for p in files]),
            ("lean path: records", source_pass(stack, validate=False)),
            ("validating path: records, validate=true", source_pass(stack, validate=True)),
            ("fhir.resources parse alone (R4B Bundle)", library_only(files)),
        ]
        lean = None
        for name, run in rows:
            seconds = timed(run, args.repeats)
            lean = seconds if name.startswith("lean") else lean
            ratio = f"{seconds / lean:.1f}x" if lean else "-"
            print(f"{name:<42} {seconds:>8.3f} {megabytes / seconds:>7.1f} {resources / seconds:>12,.0f} {ratio:>8}")


if __name__ == "__main__":
    main()
