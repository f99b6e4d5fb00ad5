"""Reading labelled texts from any source's records (mappings or objects)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import heirloom
from heirloom_plugins import decided

#: The label of texts that are none of the labels ("none of them"): no class to learn or to embed.
OUT_OF_SCOPE = "out_of_scope"


def field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def labelled(
    data: Iterable[Any], what: str, marked: list[str | None] | None = None, waits: list[str | None] | None = None
) -> tuple[list[str], list[str]]:
    """Texts and labels of records with a ``text`` (str) and a ``label``; ``marked`` (when given)
    gets which kind of a person's decision each record is (``decided.kind_of``: a correction, a
    resolution), or None; ``waits`` the new intent a resolution waits for (``decided.waits_for``), or None."""
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
        if marked is not None:
            marked.append(decided.kind_of(record))
        if waits is not None:
            waits.append(decided.waits_for(record))
    return texts, labels


def in_scope(
    texts: list[str], labels: list[str], out_of_scope_label: str, progress: heirloom.Progress
) -> tuple[list[str], list[str]]:
    """The texts and labels without those labelled ``out_of_scope_label``: out-of-scope texts (a
    person's "none of them" included) share no meaning, so they are no class, nor positives of each other."""
    dropped = sum(label == out_of_scope_label for label in labels)
    if not dropped:
        return texts, labels
    progress.log(f"leaving out {dropped} training texts labelled {out_of_scope_label!r}")
    kept = [i for i, label in enumerate(labels) if label != out_of_scope_label]
    return [texts[i] for i in kept], [labels[i] for i in kept]


def check_texts(texts: list[Any], what: str) -> None:
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise heirloom.HeirloomError(f"{what} predicts texts: item {position} is {type(text).__name__}")
