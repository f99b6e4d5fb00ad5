"""Reading labelled texts from any source's records (mappings or objects)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import heirloom


def field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def labelled(data: Iterable[Any], what: str) -> tuple[list[str], list[str]]:
    """Texts and labels of records with a ``text`` (str) and a ``label``."""
    texts: list[str] = []
    labels: list[str] = []
    for position, record in enumerate(data):
        text, label = field(record, "text"), field(record, "label")
        if not isinstance(text, str) or label is None:
            raise heirloom.HeirloomError(
                f"{what}: record {position} needs a 'text' (str) and a 'label', got {record!r:.120}"
            )
        texts.append(text)
        labels.append(str(label))
    return texts, labels


def check_texts(texts: list[Any], what: str) -> None:
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise heirloom.HeirloomError(f"{what} predicts texts: item {position} is {type(text).__name__}")
