"""A deterministic stratified hold-out, so selection data is the same on every machine."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int) -> set[int]:
    """Indices of ``fraction`` of each label's items (labels in sorted order, one seeded
    generator); a label with a single item keeps it for training."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for label in sorted(groups):
        members = groups[label]
        rng.shuffle(members)
        chosen.update(members[: min(round(len(members) * fraction), len(members) - 1)])
    return chosen
