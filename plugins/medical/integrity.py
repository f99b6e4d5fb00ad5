"""What a stored medical model's tensors and metadata must be, checked where it loads (``eval``, a daemon's
start or swap, ``train`` inheriting it).

The shape checks let through a state ``state()`` never writes (checker h350 F3-F6): float64 weights (eval
died with "expected scalar type Float but found Double", the daemon blamed the model type), NaN or infinite
weights (every patient answered ``"codes": []``, a warm start died in L-BFGS), a label stored twice or label
names that are no strings (a daemon answering INTERNAL to one patient in a hundred, and a warm start copying
the damage into a second project's version), a threshold that is no number. Each is refused naming the
tensor or metadata key, as the recommender's are (``heirloom_plugins.recommend.integrity``); the kernel
names the artifact.
"""

from __future__ import annotations

import math
from typing import Any

import heirloom
from heirloom_plugins.medical.net import TENSORS

#: The float tensors ``state()`` writes, all float32 (``seen_patients`` is checked by ``seen.hashes_of``).
FLOATS = ("weight", "bias", *TENSORS)


def check_tensors(tensors: dict[str, Any], what: str) -> None:
    """Refuse a float tensor of another dtype than float32, or holding NaN or infinite values."""
    import torch

    present = {name: tensors[name] for name in FLOATS if name in tensors}
    wrong = [
        f"{name!r} is {t.dtype}, expected torch.float32" for name, t in present.items() if t.dtype != torch.float32
    ]
    if wrong:
        raise heirloom.HeirloomError(f"the {what} has tensors of another dtype: {'; '.join(wrong)}")
    bad = [f"{name!r}" for name, t in present.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise heirloom.HeirloomError(f"the {what} is damaged: tensor(s) {', '.join(bad)} hold NaN or infinite values")


def labels_of(metadata: dict[str, Any], what: str) -> tuple[str, ...]:
    """Metadata ``labels``: a list of distinct non-empty strings."""
    labels = metadata.get("labels")
    if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
        raise heirloom.HeirloomError(f"the {what}'s metadata 'labels' is not a list of non-empty strings")
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise heirloom.HeirloomError(f"the {what}'s metadata 'labels' repeats {label[:80]!r}")
        seen.add(label)
    return tuple(labels)


def names_of(metadata: dict[str, Any], what: str) -> dict[str, str]:
    """Metadata ``names``: a map of label to its display, both strings."""
    names = metadata.get("names", {})
    if not isinstance(names, dict):
        raise heirloom.HeirloomError(f"the {what}'s metadata 'names' is not a map of label to name")
    wrong = next((key for key, name in names.items() if not isinstance(name, str)), None)
    if wrong is not None:
        raise heirloom.HeirloomError(f"the {what}'s metadata 'names' gives {wrong[:80]!r} a name that is no string")
    return dict(names)


def number_of(metadata: dict[str, Any], key: str, default: float, what: str) -> float:
    """A finite number at metadata ``key`` (``default`` when absent: a state stored before it was kept)."""
    value = metadata.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise heirloom.HeirloomError(f"the {what}'s metadata {key!r} is {value!r}, not a finite number")
    return float(value)
