"""Deterministic stratified splits, so a data set without an official test split gives the
same train/test (and train/validation) partition on every machine and every run. Public as
``heirloom.stratified_holdout``: the text and encoder plugins both hold out data with it."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from heirloom.suggest import did_you_mean

#: The splits heirloom reads: ``train`` to fit on, ``validation`` to score every version on, ``test`` to report.
KNOWN_SPLITS = ("train", "validation", "test")


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int, at_least: int = 0) -> set[int]:
    """Indices of the held-out part: ``round(n * fraction)`` of each label's items, and no
    fewer than ``at_least`` (so a label whose share rounds to none is held out too).

    Each label's indices are shuffled by a generator seeded with ``seed`` (labels taken in
    sorted order), so the result depends only on the labels, the fraction and the seed.
    A label keeps at least one training item whenever it has two or more.
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    held_out: set[int] = set()
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        count = min(max(round(len(indices) * fraction), at_least), len(indices) - 1)
        held_out.update(indices[: max(count, 0)])
    return held_out


def unknown_splits(source: str, splits: Iterable[str]) -> list[str]:
    """A warning for each name the ``splits()`` of the source named ``source`` lists that heirloom reads nowhere, with
    the closest known name: a source listing ``valid`` for ``validation`` trained with no validation records, and
    nothing said so (h341 F9). ``heirloom train`` and ``heirloom data stats`` print them."""
    never = "a split heirloom never reads (it reads train, validation and test)"
    return [
        f"warning: source {source!r}: splits() lists {name!r}, {never}{did_you_mean(str(name), KNOWN_SPLITS)}"
        for name in splits
        if name not in KNOWN_SPLITS
    ]
