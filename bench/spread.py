"""Seed variance for the benchmark tables: every figure is a mean ± std over seeds."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence


def spread(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sample std`` (just the value for one seed), to ``digits`` decimals."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeds_option(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (argparse type for ``--seeds``): whole numbers of at least 0, at least one."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected a comma list of whole numbers (0 or more), got {text!r}")
    return [int(part) for part in parts]
