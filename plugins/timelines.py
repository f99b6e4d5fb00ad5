"""What a patient record derives from its timeline: ``codes`` and ``text`` (docs/FHIR.md, "Records").

Shared by the fhir source, which writes them into every record, and the medical apis, which
derive them for a record sent inline, so a model reads one record shape either way (a
model reading ``record.codes`` failed INTERNAL on every inline request); neither plugin
imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def codes_by_kind(timeline: Iterable[Any], kinds: Iterable[str]) -> dict[str, list[str]]:
    """Each kind's codes in the timeline's order, repeats kept (every kind a key, if empty)."""
    codes: dict[str, list[str]] = {kind: [] for kind in kinds}
    for event in timeline:
        if event.code:
            codes[event.kind].append(event.code)
    return codes


def summary(gender: str | None, birth: str | None, deceased: str | None, timeline: Iterable[Any]) -> str:
    """A readable history: one line per event, dates first."""
    head = f"Patient: {gender or 'unknown gender'}, born {birth or 'unknown'}"
    lines = [head + (f", died {deceased[:10]}." if deceased else ".")]
    lines.extend(_line(e) for e in timeline)
    return "\n".join(lines)


def _line(e: Any) -> str:
    text = f"{(e.date or 'undated')[:10]} {e.kind}: {e.display or e.code or 'unspecified'}"
    if e.value is not None:
        text += f" {_number(e.value)}" + (f" {e.unit}" if e.unit else "")
    if e.components:
        parts = (f"{m.display or m.code}: {_number(m.value)} {m.unit or ''}".rstrip() for m in e.components)
        text += f" ({'; '.join(parts)})"
    if e.end and e.end[:10] != (e.date or "")[:10]:
        text += f", until {e.end[:10]}"
    if e.text:
        text += "\n" + " ".join(e.text.split())
    return text


def _number(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)
