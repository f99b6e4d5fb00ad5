"""The ``events`` source: the interactions a ``recommend`` api recorded (``<api>.event``).

All of them are training data: combine this source with the catalogue's own through a
``union`` source, and the next ``heirloom train`` learns from production behaviour while
the test split stays the original data's, so versions compare on the same test set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.recommend.checks import non_empty
from heirloom_plugins.recommend.records import ID_SCHEMA, Id, id_key, id_ok, id_problem, interaction_record

EVENT_FIELDS = ("user", "item", "kind", "value", "time")
MAX_KIND_CHARS = 64


def _wanted(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """Every event is learnt as something the user wanted, so a dislike (0 or less) is refused,
    not trained as a like."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"'value' must be a finite number above 0 (every event is learnt as an item the user wanted; "
            f"leave dislikes out), got {value!r}"
        )


def _printable(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """A kind holding a control character (``"purchase\\nline"``) was recorded and read back unsaid, as ids are not."""
    if problem := id_problem(value, "a kind"):
        raise ValueError(f"'{attribute.name}' {problem}")


@attrs.define
class EventInput:
    """Something a user did with an item: ``kind`` (view, click, rating...) and its ``value``. The
    body of ``<api>.event``, and what ``event_fault`` checks each logged event against."""

    user: Id = attrs.field(validator=id_ok, metadata=ID_SCHEMA)
    item: Id = attrs.field(validator=id_ok, metadata=ID_SCHEMA)
    kind: str = attrs.field(
        default="interaction",
        validator=[heirloom.text_limit(MAX_KIND_CHARS, blank=False), _printable],  # blank: "\u200b" too
        metadata={"schema": {"minLength": 1, "maxLength": MAX_KIND_CHARS, "pattern": r"\S"}},
    )
    value: float = attrs.field(default=1.0, validator=_wanted, metadata={"schema": {"exclusiveMinimum": 0}})


def event_log_path(project: str, api: str) -> Path:
    """Where a ``recommend`` api named ``api`` appends its events by default."""
    return heirloom.log_path("events", project, api)


@attrs.define(kw_only=True)
class EventsSource(heirloom.Source):
    """Interactions recorded by a ``recommend`` api, in ``train`` only."""

    #: The recommend api whose events to read (its component name).
    api: str = attrs.field(validator=non_empty)
    #: The project that api runs in (default: this profile's project).
    project: str | None = None
    #: An explicit log path (when the api sets ``events_path``).
    path: str | None = heirloom.path_field(default=None, must_exist=False)

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.log_path = Path(self.path) if self.path else event_log_path(self.project or ctx.project, self.api)

    def splits(self) -> list[str]:
        return ["train"]

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        if split not in (None, "train"):
            return
        for number, entry in heirloom.AppendLog.numbered(self.log_path, check=event_fault):
            record = interaction_record(
                id_key(entry["user"]), id_key(entry["item"]), str(entry["kind"]), float(entry["value"]), entry["time"]
            )
            if entry["time"] is None:  # a restored or edited log's: half_life_days names this line, not time_column
                record["line"] = f"{self.log_path}:{number}"
            yield record

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"events")
        if self.log_path.exists():
            heirloom.hash_regular(self.log_path, digest)
        return digest.hexdigest()


def event_fault(entry: dict[str, Any]) -> str | None:
    """What makes a recorded event unusable (AppendLog.read skips it, naming its line): a hand
    edit the route would have refused (a value of 0 or less, a blank kind) is refused here too."""
    missing = [name for name in EVENT_FIELDS if name not in entry]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not all(type(entry[name]) in (str, int) for name in ("user", "item", "kind")):
        return "'user', 'item' and 'kind' must be text or whole numbers"
    value = entry["value"]
    if type(value) not in (int, float) or not math.isfinite(value):
        return f"'value' is {str(value)[:40]!r}, not a number"
    try:
        EventInput(entry["user"], entry["item"], str(entry["kind"]), value)
    except ValueError as exc:
        return str(exc)
    return None
