"""Fine-tuning the upper layers of an :class:`Encoder`: batching, optimiser, schedule, losses.

The layers below ``split`` stay frozen (their outputs come from the layer cache), the
layers above it and any head train with AdamW under a linear warm-up and decay. Batches
group texts of similar length (less padding) in a seeded order, so a fit is reproducible
on one machine for a given configuration.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

import heirloom
from heirloom_plugins import devices, seen

if TYPE_CHECKING:
    import torch

    from heirloom_plugins.encoder.network import Encoder


def _trainable(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 12:
        raise ValueError(f"'{attribute.name}' must be between 1 and 12 (the encoder's top layers), got {value!r}")


@attrs.define(kw_only=True)
class Tuning:
    """The fine-tuning settings every encoder-based model shares (they are profile keys)."""

    #: How many of the encoder's top layers train; the layers below stay frozen and cached.
    trainable_layers: int = attrs.field(default=2, validator=_trainable)
    #: Most passes over the training data.
    epochs: int = attrs.field(default=3, validator=heirloom.above(0))
    batch_size: int = attrs.field(default=32, validator=heirloom.above(0))
    #: Learning rate of the encoder's layers, and of the task head on top of them.
    learning_rate: float = attrs.field(default=1e-4, validator=heirloom.above(0))
    head_learning_rate: float = attrs.field(default=1e-2, validator=heirloom.above(0))
    weight_decay: float = attrs.field(default=0.01, validator=heirloom.at_least(0))
    #: Share of the steps spent warming the learning rate up from zero.
    warmup: float = attrs.field(
        default=0.1, validator=attrs.validators.and_(heirloom.at_least(0), attrs.validators.lt(1))
    )
    #: Longest input in tokens (longer texts are cut); 0 keeps the parent encoder's.
    max_length: int = attrs.field(default=0, validator=heirloom.at_least(0))
    seed: int = 0


def fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


@attrs.define(kw_only=True)
class EncoderModel(Tuning, heirloom.Model):
    """What every model on a sentence encoder shares: its data, the similarity scale, the
    device it computes on (the resource manager's choice) and the encoder it holds."""

    uses_torch = True

    #: The source of the records to train and evaluate on.
    data: str = heirloom.ref("source")
    #: Similarity scale: logits are ``scale`` x cosine (sentence-transformers uses 20).
    scale: float = attrs.field(default=20.0, validator=heirloom.above(0))

    def __attrs_post_init__(self) -> None:
        self._device = "cpu"
        self._encoder: Encoder | None = None
        self._training: dict[str, Any] = {}
        #: Hashes of the texts this version and the versions it inherits from trained on (``seen.py``).
        self._seen = np.zeros(0, dtype=np.int64)

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self._device = devices.device_for(ctx)  # checked: an absent GPU is named as the manager's answer
        if self._encoder is not None:
            self._encoder.to(self._device)

    def remember_texts(self, texts: list[str], parent: heirloom.State) -> None:
        """Keeps the hashes of the ``texts`` trained on, and of those the ``parent`` had (none of ours
        in a pretrained state, which names its ``origin``)."""
        self._seen = seen.texts_seen(texts, parent, foreign="origin" in parent.metadata)

    def seen_tensors(self) -> dict[str, torch.Tensor]:
        """The state tensor of those hashes."""
        return {seen.TEXTS: seen.as_tensor(self._seen)}

    def load_seen(self, state: heirloom.State) -> None:
        self._seen = seen.hashes_of(state, seen.TEXTS, "state", foreign="origin" in state.metadata)

    def parent_encoder(self, parent: heirloom.State | None, what: str) -> heirloom.State:
        """The inherited state to fine-tune; refused with the fix when there is none. Each model's
        fit starts with an empty lower-layer cache: a text's cached output depends in its last bits
        on the batch it was computed in, so outputs left by an earlier model of the same command
        made `train P intent` store other weights than `train P` (a redundant version)."""
        from heirloom_plugins.encoder.network import CACHE

        CACHE.clear()
        if parent is None:
            raise heirloom.HeirloomError(
                f'{what} fine-tunes a sentence encoder: set inherit = "pretrained:minilm" '
                "(or a model trained from it) in its profile table"
            )
        return parent


def split_of(encoder: Encoder, tuning: Tuning) -> int:
    """The first trainable layer."""
    return max(encoder.layers - tuning.trainable_layers, 0)


def batches(lengths: Sequence[int], size: int, seed: int) -> list[list[int]]:
    """Indices in batches of ``size``: shuffled, then sorted by length inside windows of
    50 batches (similar lengths pad little), then the batches shuffled again."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = size * 50
    result = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        result.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(result)
    return result


class Trainer:
    """AdamW over the encoder's upper layers (and a head), one epoch at a time."""

    def __init__(
        self,
        encoder: Encoder,
        tuning: Tuning,
        head: Sequence[torch.nn.Parameter],
        steps: int,
    ):
        import torch

        torch.manual_seed(tuning.seed)
        self.encoder = encoder
        self.split = split_of(encoder, tuning)
        body = encoder.trainable(self.split)
        groups = [{"params": body, "lr": tuning.learning_rate}]
        if head:
            groups.append({"params": list(head), "lr": tuning.head_learning_rate, "weight_decay": 0.0})
        self.parameters = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.AdamW(groups, weight_decay=tuning.weight_decay)
        warm = max(int(steps * tuning.warmup), 1)

        def factor(step: int) -> float:
            return (step + 1) / warm if step < warm else max(0.0, (steps - step) / max(steps - warm, 1))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def epoch(
        self,
        plan: list[list[int]],
        loss: Callable[[list[int]], torch.Tensor],
        progress: heirloom.Progress,
    ) -> float:
        """One pass over ``plan``'s batches; returns the mean training loss."""
        import torch

        self.encoder.model.train()
        total = 0.0
        try:
            for batch in plan:
                value = loss(batch)
                self.optimizer.zero_grad(set_to_none=True)
                value.backward()
                torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
                self.optimizer.step()
                self.schedule.step()
                total += float(value.detach())
                progress.advance(len(batch))
        finally:
            self.encoder.model.eval()
        return total / max(len(plan), 1)


def contrastive_loss(
    anchors: torch.Tensor, positives: torch.Tensor, labels: Sequence[Any], scale: float
) -> torch.Tensor:
    """In-batch negatives (multiple negatives ranking): each anchor must pick its own
    positive among the batch's positives; positives of the same label are not negatives."""
    import torch

    scores = scale * anchors @ positives.T
    same = torch.tensor([[a == b for b in labels] for a in labels], device=scores.device)
    same.fill_diagonal_(False)
    scores = scores.masked_fill(same, float("-inf"))
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(labels), device=scores.device))
