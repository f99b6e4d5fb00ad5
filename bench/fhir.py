"""FHIR reading speed on the Synthea set: the lean path, the validating path, and
fhir.resources parsing alone, with stdlib ``json.loads`` as the floor.

    HEIRLOOM_DATA=../shared/data .venv/bin/python bench/fhir.py [--repeats 5]

Every row reads the same files: the 25-file set ``fhir-synthea-smart-r4/bundles`` (the
medical profile's source is pointed at it with ``sources.patients.path``), so MB/s,
resources/s and "vs lean" compare like with like. Each row runs once to warm up (imports,
page cache), then ``--repeats`` times; the table shows medians, since this machine is shared
and noisy. The source's data warnings (the same on every pass) are counted once, not printed
per pass. Not a test: no assertion.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from options import add_data_option, positive_int, require_data

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


class Counted(logging.Handler):
    """Counts the fhir source's warnings (the same ones on every pass) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.said.add(record.getMessage())


def source_pass(stack: ExitStack, folder: Path, validate: bool) -> Callable[[], object]:
    """A full pass over the medical profile's fhir source reading ``folder``, as ``heirloom data stats`` makes.

    The system starts once, outside the timing: the rows compare reading, not start-up.
    """
    overrides = [f"sources.patients.path={folder}", f"sources.patients.validate={str(validate).lower()}"]
    system = stack.enter_context(heirloom.Kernel().system("medical", overrides, only={("source", "patients")}))
    return system.component("patients", "source").stats


def library_only(files: list[Path]) -> Callable[[], object]:
    """fhir.resources parsing and validating each Bundle file into its models, nothing else."""
    from fhir.resources.R4B.bundle import Bundle

    return lambda: [Bundle.model_validate_json(path.read_bytes()) for path in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="timed passes per reader (medians are reported)"
    )
    add_data_option(parser)
    args = parser.parse_args()
    require_data(parser, args.data, SET)
    # This script is named fhir.py: its folder must leave the path, or ``import fhir.resources`` finds it.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    os.environ["HEIRLOOM_DATA"] = str(args.data)
    os.chdir(REPO)  # the medical profile is found in ./profiles
    folder = (args.data / SET).resolve()
    files = sorted(folder.glob("*.json"))
    if not files:
        parser.error(f"no data at {folder}: no *.json files (set HEIRLOOM_DATA)")
    counted = Counted()
    fhir_log = logging.getLogger("heirloom.fhir")
    fhir_log.addHandler(counted)
    fhir_log.propagate = False
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    resources = sum(len(json.loads(p.read_bytes())["entry"]) for p in files)
    print(f"{len(files)} files, {megabytes:.1f} MB, {resources} resources; median of {args.repeats} runs\n")
    print(f"{'path':<42} {'seconds':>8} {'MB/s':>7} {'resources/s':>12} {'vs lean':>8}")
    with ExitStack() as stack:
        rows = [
            ("json.loads only (floor)", lambda: [json.loads(p.read_bytes()) for p in files]),
            ("lean path: records", source_pass(stack, folder, validate=False)),
            ("validating path: records, validate=true", source_pass(stack, folder, validate=True)),
            ("fhir.resources parse alone (R4B Bundle)", library_only(files)),
        ]
        lean = None
        for name, run in rows:
            seconds = timed(run, args.repeats)
            lean = seconds if name.startswith("lean") else lean
            ratio = f"{seconds / lean:.1f}x" if lean else "-"
            print(f"{name:<42} {seconds:>8.3f} {megabytes / seconds:>7.1f} {resources / seconds:>12,.0f} {ratio:>8}")
    if counted.said:
        print(f"\n{len(counted.said)} data warning(s) from the source, the same on every pass (not printed;")
        print(f"`heirloom data stats medical --set sources.patients.path={folder} patients` lists them)")


if __name__ == "__main__":
    main()
