"""Bag-of-codes features of a visit, and the vocabulary that turns them into columns.

A visit is described by named features (``describe``): demographics, the encounter's
class and type, what was recorded at it, and its history, where each code appears once
with a weight (1 for "ever", ``exp(-days / 365)`` for recency, 1 for a condition still
active at the encounter). Numeric observations are kept as numbers, in one unit per
quantity (``units.py``), and binned by the vocabulary at quantiles of the training values, so
"BMI in the top quarter" is a feature where a bag of codes would only say "BMI was measured".

The vocabulary is part of a trained model's state: a warm start keeps the parent's
columns and bin edges (the parent's weights mean those columns) and appends new ones.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from heirloom_plugins.medical.patients import Visit, age_at, day, encounter_dates, known_from
from heirloom_plugins.medical.tasks import Task
from heirloom_plugins.medical.units import canonical

if TYPE_CHECKING:
    import torch

AGE_BUCKETS = (2, 5, 12, 18, 30, 45, 60, 75)
#: Time scale of recency weights, in days.
RECENCY_DAYS = 365.0
#: Fewer distinct training values than this: the number gets one "present" column, no bins.
MIN_VALUES_TO_BIN = 8


@attrs.frozen
class Description:
    """A visit's features: weighted tokens, and numbers the vocabulary bins."""

    tokens: dict[str, float]
    numbers: dict[str, float]
    #: Each number's unit once converted (``units.canonical``; None: none recorded).
    units: dict[str, str | None] = attrs.Factory(dict)
    #: Each number as recorded, before conversion: what a state stored before units were read bins.
    recorded: dict[str, float] = attrs.Factory(dict)


def age_bucket(age: float) -> str:
    low = 0
    for high in AGE_BUCKETS:
        if age < high:
            return f"{low}-{high - 1}"
        low = high
    return f"{low}+"


def _observe(into: Description, prefix: str, code: str | None, value: Any, unit: str | None) -> None:
    """An observation (or one of its components) as a number to bin, or a categorical token."""
    if not code:
        return
    key = f"{prefix}:{code}"
    into.tokens[key] = 1.0  # measured at all (which tests were ordered says much)
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is not None:
            into.tokens[f"{key}={str(value).lower()}"] = 1.0
    elif math.isfinite(value):
        converted, into.units[key] = canonical(code, float(value), unit)
        if math.isfinite(converted):  # 1e308 °F is no temperature
            into.numbers[key], into.recorded[key] = converted, float(value)


def _observations(into: Description, prefix: str, events: Iterable[Any]) -> None:
    """Each observation code's last value (events come in time order)."""
    for event in events:
        if event.components:
            for part in event.components:
                _observe(into, prefix, part.code, part.value, part.unit)
        else:
            _observe(into, prefix, event.code, event.value, event.unit)


def describe(visit: Visit, task: Task) -> Description:
    """The named features of ``visit`` that ``task`` may read (tasks.py has the rules)."""
    found = Description({}, {})
    tokens = found.tokens
    sex = f"sex:{visit.record.gender or 'unknown'}"
    age = age_at(visit.record, visit.start)
    bucket = f"age:{age_bucket(age) if age is not None else 'unknown'}"
    tokens[sex] = tokens[bucket] = 1.0
    if task.encounter:
        kind = f"type:{visit.encounter.code or 'unknown'}"
        tokens[f"class:{visit.encounter.value or 'unknown'}"] = tokens[kind] = 1.0
        tokens[f"{kind}&{bucket}"] = tokens[f"{kind}&{sex}"] = 1.0  # a visit type means different things by age
    for kind in task.current:
        current = [e for e in visit.at if e.kind == kind]
        if kind == "observation":
            _observations(found, "now", current)
        else:
            for event in current:
                if event.code:
                    tokens[f"now:{kind}:{event.code}"] = tokens[f"now:{kind}:{event.code}&{bucket}"] = 1.0
    history = [e for e in visit.before if e.kind in task.history]
    visited = encounter_dates(visit.record)  # an event is history from when it is known (patients.known_from)
    _observations(found, "last", (e for e in history if e.kind == "observation"))
    seen: Counter[str] = Counter()
    for event in history:
        if event.kind == "observation" or not event.code:
            continue
        key = f"{event.kind}:{event.code}"
        seen[key] += 1
        tokens[f"ever:{key}"] = 1.0
        tokens[f"recent:{key}"] = math.exp(-(visit.start - day(known_from(event, visited))) / RECENCY_DAYS)
        if event.kind == "condition" and (event.end is None or day(event.end) > visit.start):
            tokens[f"active:{key}"] = 1.0
    for key, times in seen.items():
        if times > 1:
            tokens[f"count:{key}"] = math.log(times)
    if task.encounter:
        earlier = [e for e in history if e.kind == "encounter"]
        tokens["history:encounters"] = math.log1p(len(earlier))
        if earlier:
            tokens["history:days_since_last"] = math.exp(-(visit.start - day(earlier[-1].date)) / RECENCY_DAYS)
    return found


def _quantile_edges(values: Sequence[float], bins: int) -> tuple[float, ...]:
    ordered = sorted(values)
    if len(set(ordered)) < MIN_VALUES_TO_BIN:
        return ()
    cuts = [ordered[min(len(ordered) - 1, round(len(ordered) * q / bins))] for q in range(1, bins)]
    return tuple(sorted(set(cuts)))


def _bin(value: float, edges: tuple[float, ...]) -> int:
    position = 0
    for edge in edges:
        if value >= edge:
            position += 1
    return position


@attrs.frozen
class Vocabulary:
    """Feature names -> columns, bin edges and unit of each number (kept across warm starts)."""

    columns: tuple[str, ...]
    edges: dict[str, tuple[float, ...]]
    #: Each number's unit (its most common one in training): a value in another unit is on
    #: another scale, so it gets no column (a state without units: every value is read).
    units: dict[str, str | None] = attrs.Factory(dict)
    index: dict[str, int] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "index", {name: i for i, name in enumerate(self.columns)})

    @classmethod
    def fit(
        cls, found: Sequence[Description], parent: Vocabulary | None = None, *, bins: int = 5, min_count: int = 1
    ) -> Vocabulary:
        """Columns for the features seen in at least ``min_count`` descriptions, after the parent's."""
        units = dict(parent.units) if parent else {}
        seen: dict[str, Counter[str | None]] = {}
        for description in found:
            for key, unit in description.units.items():
                seen.setdefault(key, Counter())[unit] += 1
        legacy = parent is not None and parent.edges and not parent.units  # its children read values as recorded
        for key in sorted(seen.keys() - units.keys()) if not legacy else ():
            units[key] = max(seen[key].items(), key=lambda item: (item[1], item[0] or ""))[0]
        edges = dict(parent.edges) if parent else {}
        draft = cls((), edges, units)
        values: dict[str, list[float]] = {}
        for description in found:
            for key, value in draft.numbers(description).items():
                values.setdefault(key, []).append(value)
        for key in sorted(values.keys() - edges.keys()):
            edges[key] = _quantile_edges(values[key], bins)
        counts: Counter[str] = Counter()
        for description in found:
            counts.update(draft.named(description))
        known = set(parent.columns) if parent else set()
        new = sorted(name for name, count in counts.items() if count >= min_count and name not in known)
        return cls((*(parent.columns if parent else ()), *new), edges, units)

    def numbers(self, description: Description) -> dict[str, float]:
        """A description's numbers in their key's unit (or of a key without one); as recorded for a
        vocabulary stored before units were read (its bin edges are of values as recorded: a
        converted 98.6 °F fell in the lowest bin of every temperature)."""
        units = self.units
        if self.edges and not units:
            return description.recorded
        return {
            key: value
            for key, value in description.numbers.items()
            if key not in units or description.units.get(key) == units[key]
        }

    def left_out(self, found: Iterable[Description]) -> Counter[tuple[str, str | None]]:
        """``(code, unit)`` of the numbers ``numbers`` leaves out for their unit, counted over the
        observations at the visits (``now:``; each is read once there, and again as a later visit's
        ``last:`` value, which goes the same way)."""
        counts: Counter[tuple[str, str | None]] = Counter()
        for description in found:
            for key, unit in description.units.items():
                if key.startswith("now:") and key in self.units and unit != self.units[key]:
                    counts[(key.removeprefix("now:"), unit)] += 1
        return counts

    def named(self, description: Description) -> dict[str, float]:
        """All features of a description by name, numbers binned (unknown numbers: one column)."""
        named = dict(description.tokens)
        for key, value in self.numbers(description).items():
            edges = self.edges.get(key)
            named[f"{key}#{_bin(value, edges)}" if edges else key] = 1.0
        return named

    def matrix(self, found: Sequence[Description]) -> torch.Tensor:
        """A sparse (COO) ``(len(found), len(columns))`` float32 matrix; unknown features are dropped."""
        import torch

        rows, cols, vals = [], [], []
        for row, description in enumerate(found):
            for name, value in self.named(description).items():
                column = self.index.get(name)
                if column is not None:
                    rows.append(row)
                    cols.append(column)
                    vals.append(value)
        indices = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        size = (len(found), len(self.columns))
        values = torch.tensor(vals, dtype=torch.float32)
        return torch.sparse_coo_tensor(indices, values, size, check_invariants=True).coalesce()

    def to_json(self) -> dict[str, Any]:
        edges = {k: list(v) for k, v in self.edges.items()}
        return {"columns": list(self.columns), "edges": edges, "units": self.units}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(tuple(data["columns"]), {k: tuple(v) for k, v in data["edges"].items()}, data.get("units", {}))
