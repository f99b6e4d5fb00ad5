"""Per-route counters for ``_stats``: counts, errors by code, latency percentiles, batches.

The daemon's I/O thread records requests (no locks needed); batchers append batch sizes
(a deque append is atomic). Recent values live in bounded rings, so memory does not grow
with traffic.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

WINDOW = 4096


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class RouteStats:
    """What one route has done since start."""

    __slots__ = ("batch_sizes", "count", "errors", "latencies", "typical")

    def __init__(self) -> None:
        self.count = 0
        self.errors: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.batch_sizes: deque[int] = deque(maxlen=WINDOW)
        #: A moving average of latency in seconds, for retry hints (no sort on the hot path).
        self.typical = 0.05

    def record(self, status: str, seconds: float) -> None:
        self.count += 1
        if status != "OK":
            self.errors[status] += 1
        self.latencies.append(seconds)
        self.typical += (seconds - self.typical) * 0.05

    def snapshot(self, queue_depth: int) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        batches = sorted(self.batch_sizes)
        report: dict[str, Any] = {
            "count": self.count,
            "errors": dict(self.errors),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
            "queue_depth": queue_depth,
        }
        if batches:
            report["batch_sizes"] = {
                "batches": len(batches),
                "mean": round(sum(batches) / len(batches), 2),
                "p50": percentile(batches, 0.5),
                "max": batches[-1],
            }
        return report
