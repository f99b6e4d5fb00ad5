"""The examples a model was trained on, kept beside its weights as 64-bit hashes of their keys,
so its scores can say when held-out examples were training examples.

A source checks its own splits for repeats; what no source sees is an example trained on through
another way in: a parent version trained on this data's test split (text accuracy 0.993 against
0.950 with an honest parent; a medical parent of another project trained on 12 of the child's 14
test patients, diagnosis micro-F1 0.597 against 0.388), or a union of two exports of one table.
The hashes of a version's training keys, and of every version it inherits from, travel with its
state (one tensor); evaluating counts the scored examples among them. Shared by the text,
encoder and medical plugins (keys: a text's letters and digits, ``normal_text``; a patient's id).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

import heirloom

if TYPE_CHECKING:
    import torch

#: The share of scored examples that may be training ones unsaid: the published data sets repeat a
#: few (6 of Banking77's 3,080 test questions, 6 of PhraseBank's held-out sentences).
REPEATS_SAID = 0.01
#: Hashes kept at most (16 MB): past it, an even sample of them (hash order), so a count is
#: then a lower bound.
MAX_SEEN = 2_000_000
#: The state tensor of a text model's hashes.
TEXTS = "seen_texts"
#: Among a version's hashes, the mark of an ancestor whose training examples are unknown (one
#: stored before versions kept them): 0, which no example's hash is. Its count is then unknown,
#: not 0: a warm start from such a version scored 0.982 against 0.899 honest, with "0" said.
UNKNOWN = 0


def normal_text(text: str) -> str:
    """``text`` as the repeat checks compare it: its letters, digits and combining marks, case folded
    (NFKC). With spacing kept, a file whose "3.3 % ." read "3.3%." hid 966 of 967 test texts from both
    checks; without the marks, Hindi काम (work) and कम (less), Thai and vowelled Arabic words that
    differ by a vowel sign were one text (60 of 60 test sentences "trained on", none were); "" for a
    text of none, which repeats nothing."""
    return "".join(char for char in unicodedata.normalize("NFKC", text).casefold() if _kept(char))


def _kept(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char).startswith("M")


def key_hashes(keys: Iterable[str]) -> np.ndarray:
    """One signed 64-bit hash per key, in order (blake2b; 0 for an empty key, which is never seen)."""
    digests = (
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest() if key else bytes(8)
        for key in keys
    )
    return np.fromiter((int.from_bytes(d, "little", signed=True) for d in digests), dtype=np.int64)


def seen_keys(keys: Iterable[str], parent: heirloom.State | None, tensor: str, *, foreign: bool = False) -> np.ndarray:
    """The sorted hashes of ``keys`` and of what the ``parent`` state had seen (in ``tensor``), with
    UNKNOWN when the parent, or one of its ancestors, kept none; a ``foreign`` parent (a pretrained
    state) never trained on anything of ours."""
    theirs = hashes_of(parent, tensor, "parent", foreign=foreign) if parent is not None else np.zeros(0, dtype=np.int64)
    unknown = not foreign and UNKNOWN in theirs
    hashes = np.unique(np.concatenate([key_hashes(keys), theirs]))
    hashes = hashes[hashes != UNKNOWN][: MAX_SEEN - 1]
    return np.insert(hashes, np.searchsorted(hashes, UNKNOWN), UNKNOWN) if unknown else hashes


def hashes_of(state: heirloom.State, tensor: str, what: str, *, foreign: bool = False) -> np.ndarray:
    """The hashes ``state`` (``what``: the parent, the state) holds in ``tensor``: UNKNOWN alone in a
    version stored before they were kept (it counted 0 of 453 scored texts where 328 were its training
    texts: h340), none in a ``foreign`` one (a pretrained state); an error naming it for any but a 1-D
    int64 tensor of at most MAX_SEEN (a float one lost precision and counted 120 texts of 60)."""
    found = state.tensors.get(tensor)
    if found is None:
        return np.zeros(0, dtype=np.int64) if foreign else np.array([UNKNOWN], dtype=np.int64)
    if str(getattr(found, "dtype", "")) != "torch.int64" or found.dim() != 1 or len(found) > MAX_SEEN:
        shape = tuple(getattr(found, "shape", ()))
        raise heirloom.HeirloomError(
            f"the {what}'s tensor {tensor!r} is {getattr(found, 'dtype', type(found).__name__)} of shape {shape}, "
            f"not int64 hashes of at most {MAX_SEEN:,} examples"
        )
    return found.numpy()


def as_tensor(hashes: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(hashes, dtype=np.int64))


def count_seen(keys: Iterable[str], seen: np.ndarray) -> int | None:
    """How many of ``keys`` are in ``seen``; None when an ancestor's are unknown (UNKNOWN)."""
    if UNKNOWN in seen:
        return None
    hashes = key_hashes(keys)
    return int(np.isin(hashes[hashes != UNKNOWN], seen).sum()) if len(seen) else 0


def seen_report(metrics: dict, seen: int | None, total: int, examples: str, alike: str) -> list[str]:
    """Sets ``metrics``' ``seen_in_training`` to ``seen`` of ``total`` scored ``examples`` (``texts
    were trained on``; ``alike``: how they compare) and returns the report's lines on them: a
    warning above REPEATS_SAID of them; when the count is unknown, no count (so ``heirloom train``'s
    warning about a parent scored on other held-out records stands) and a line saying why."""
    if seen is None:
        return [
            "warning: this version or a version it inherits from was stored before versions kept what they trained "
            f"on: how many of the {total} scored here it trained on is unknown",
            "",
        ]
    metrics[heirloom.SEEN_IN_TRAINING] = seen
    if seen <= REPEATS_SAID * total:
        return []
    return [
        f"warning: {seen} of {total} {examples} by this version or a version it inherits from ({alike}): "
        "these scores are optimistic",
        "",
    ]


def texts_seen(texts: Iterable[str], parent: heirloom.State | None, *, foreign: bool = False) -> np.ndarray:
    """The sorted hashes of the ``texts`` trained on (``normal_text``) and of those the ``parent`` had."""
    return seen_keys(map(normal_text, texts), parent, TEXTS, foreign=foreign)


def count_texts(metrics: dict, texts: list[str], seen: np.ndarray, examples: str = "texts") -> list[str]:
    """Sets ``metrics``' ``seen_in_training`` to how many of the scored ``texts`` are in ``seen`` (by
    ``normal_text``), and returns the report's warning lines on them."""
    count = count_seen(map(normal_text, texts), seen)
    return seen_report(metrics, count, len(texts), f"{examples} were trained on", "the same letters and digits")
