"""The texts a classifier was trained on, kept beside its weights as 64-bit hashes, so its
scores can say when held-out texts were training texts.

A source checks its own splits for repeats; what no source can see is a text trained on
through another way in: a parent version trained on this data's test file (test accuracy
0.993 against 0.950 with an honest parent), or a union of two exports of one table (345 of
500 test texts were training texts, validation accuracy 1.000). The hashes of a version's
training texts, and of every version it inherits from, travel with its state; evaluating
counts the texts it was trained on. Texts compare by their letters and digits, case folded, as
the sources' repeat check compares them.
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

#: The share of held-out texts that training texts may repeat unsaid: the published data sets
#: repeat a few (6 of Banking77's 3,080 test questions, 6 of PhraseBank's held-out sentences).
REPEATS_SAID = 0.01
#: The state tensor that holds the hashes.
TENSOR = "seen_texts"
#: Hashes kept at most (16 MB): past it, an even sample of them (hash order), so a count is
#: then a lower bound.
MAX_SEEN = 2_000_000


def normal_text(text: str) -> str:
    """``text`` as the repeat checks compare it: its letters and digits, case folded (NFKC). With
    spacing kept, a file whose "3.3 % ." read "3.3%." hid 966 of 967 test texts from both checks;
    "" for a text of neither, which repeats nothing."""
    return "".join(char for char in unicodedata.normalize("NFKC", text).casefold() if char.isalnum())


def text_hashes(texts: Iterable[str]) -> np.ndarray:
    """One signed 64-bit hash per text, in order (blake2b of its normal form; 0 for an empty one)."""
    digests = (_digest(normal_text(text)) for text in texts)
    return np.fromiter((int.from_bytes(d, "little", signed=True) for d in digests), dtype=np.int64)


def _digest(normal: str) -> bytes:
    return hashlib.blake2b(normal.encode("utf-8", "surrogatepass"), digest_size=8).digest() if normal else bytes(8)


def seen_texts(texts: Iterable[str], parent: heirloom.State | None) -> np.ndarray:
    """The sorted hashes of ``texts`` and of what the ``parent`` state had seen."""
    theirs = hashes_of(parent, "parent") if parent is not None else np.zeros(0, dtype=np.int64)
    hashes = np.unique(np.concatenate([text_hashes(texts), theirs]))
    return hashes[hashes != 0][:MAX_SEEN]


def hashes_of(state: heirloom.State, what: str) -> np.ndarray:
    """The hashes ``state`` (``what``: the parent, the state) holds: none in a version stored
    before they were kept; an error naming it for any but a 1-D int64 tensor of at most MAX_SEEN
    (a float one lost precision and counted 120 texts of 60)."""
    tensor = state.tensors.get(TENSOR)
    if tensor is None:
        return np.zeros(0, dtype=np.int64)
    if str(getattr(tensor, "dtype", "")) != "torch.int64" or tensor.dim() != 1 or len(tensor) > MAX_SEEN:
        shape = tuple(getattr(tensor, "shape", ()))
        raise heirloom.HeirloomError(
            f"the {what}'s tensor {TENSOR!r} is {getattr(tensor, 'dtype', type(tensor).__name__)} of shape {shape}, "
            f"not int64 hashes of at most {MAX_SEEN:,} texts"
        )
    return tensor.numpy()


def as_tensor(hashes: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(hashes, dtype=np.int64))


def count_seen(texts: list[str], seen: np.ndarray) -> int:
    """How many of ``texts`` are in ``seen``."""
    return int(np.isin(text_hashes(texts), seen, assume_unique=False).sum()) if len(seen) else 0


def seen_text(seen: int, total: int) -> list[str]:
    """The report's words on ``seen`` of ``total`` evaluated texts having been trained on (above
    REPEATS_SAID of them)."""
    if seen <= REPEATS_SAID * total:
        return []
    return [
        f"warning: {seen} of {total} texts were training texts of this version or of a version it inherits "
        "from (the same letters and digits): these scores are optimistic",
        "",
    ]
