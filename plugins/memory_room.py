"""How much memory a fit may still take: the resource manager's budget less what this process holds, else the
machine's available memory. Shared by the model types that estimate their need before a long fit (the
recommender's item x item matrices, the text classifier's weights and optimiser history), so a fit that cannot
fit is refused with its sizes, not killed midway by the budget or the kernel's OOM killer."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import heirloom

MIB = 1 << 20


def refuse_unless_room(needed: int, resources: Any, why: Callable[[int, str], str]) -> None:
    """ResourceExhaustedError saying ``why(room, source)`` when a fit needs ``needed`` bytes and less is available."""
    found = available(resources)
    if found is not None and needed > found[0]:  # a budget's figure: it may be raised (v24 F7)
        raised = "; or raise resources.memory_budget_mb" if found[1].startswith("resources.memory_budget_mb") else ""
        raise heirloom.ResourceExhaustedError(why(*found) + raised)


def available(resources: Any) -> tuple[int, str] | None:
    """Bytes a fit may still take and where that figure comes from: the resource manager's
    ``memory_budget_mb`` less the ``resident_mb`` it reports for this process (both from its
    ``usage()``, as ``_stats`` shows them), else the machine's available memory; None where
    neither is known."""
    usage: Any = {}
    try:
        usage = resources.usage() if resources is not None else {}
    except Exception:  # noqa: BLE001 - a manager's report is advice here; the machine's figure stands in
        usage = {}
    budget = usage.get("memory_budget_mb") if isinstance(usage, dict) else None
    if type(budget) is int and budget > 0:
        resident = usage.get("resident_mb")
        held = int(resident * MIB) if type(resident) in (int, float) and math.isfinite(resident) and resident > 0 else 0
        return max(budget * MIB - held, 0), f"resources.memory_budget_mb = {budget}, of which this process holds " + (
            f"{held / MIB:.0f} MiB"
        )
    free = _machine_available()
    return None if free is None else (free, "the machine's available memory")


def _machine_available() -> int | None:
    """MemAvailable (Linux), else the physical memory; None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
