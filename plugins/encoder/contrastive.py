"""The ``encoder`` model: a sentence encoder fine-tuned contrastively on labelled texts.

Texts that share a label (an intent, an FAQ thread) are pulled together and every other
text in the batch pushed away (in-batch negatives, the multiple-negatives ranking loss of
sentence-transformers). Its state is an encoder state, so classifiers and retrievers
inherit it like ``pretrained:minilm``; its evaluation is the nearest-centroid accuracy of
the test texts against the training labels' centroids (how well the space separates them).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

import heirloom
from heirloom_plugins import seen
from heirloom_plugins.encoder.network import FORMAT, Encoder
from heirloom_plugins.encoder.records import OUT_OF_SCOPE, check_texts, in_scope, labelled
from heirloom_plugins.encoder.tuning import EncoderModel, Trainer, batches, contrastive_loss, split_of
from heirloom_plugins.metrics import classification_metrics, classification_text

if TYPE_CHECKING:
    import torch


def pairs(labels: list[str], seed: int) -> list[tuple[int, int]]:
    """Each text of a label with two or more texts, paired with another text of its label."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    rng = random.Random(seed)
    result = []
    for label in sorted(groups):
        members = groups[label]
        if len(members) < 2:
            continue
        shuffled = members[:]
        rng.shuffle(shuffled)
        result.extend(zip(shuffled, shuffled[1:] + shuffled[:1], strict=True))
    return result


@attrs.define(kw_only=True)
class ContrastiveEncoder(EncoderModel):
    """Fine-tunes an inherited sentence encoder so texts of one label embed close together
    (``data`` yields ``{"text", "label"}``; a label groups texts that mean the same)."""

    epochs: int = attrs.field(default=1, validator=heirloom.above(0))
    learning_rate: float = attrs.field(default=5e-5, validator=heirloom.above(0))
    #: Texts with this label are left out of training, as the classifier leaves them out.
    out_of_scope_label: str = OUT_OF_SCOPE

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._centroids: torch.Tensor | None = None
        self._labels: list[str] = []

    def ready(self) -> bool:
        return self._encoder is not None

    def fit(
        self, data: Iterable[Any], parent: heirloom.State | None = None, progress: heirloom.Progress | None = None
    ) -> None:

        progress = progress or heirloom.NullProgress()
        parent = self.parent_encoder(parent, "encoder")
        texts, labels = in_scope(*labelled(data, "encoder"), self.out_of_scope_label, progress)
        encoder = Encoder(parent, self._device, self.max_length or None)
        split = split_of(encoder, self)
        ids = encoder.tokenize(texts)
        progress.log(f"encoder: {len(texts)} texts, {len(set(labels))} labels; frozen layers first")
        hidden = encoder.lower(ids, split)
        plans = [pairs(labels, self.seed + epoch) for epoch in range(self.epochs)]
        if not plans[0]:
            raise heirloom.HeirloomError("encoder needs labels with at least two texts to learn from")
        steps = sum(len(batches([0] * len(plan), self.batch_size, 0)) for plan in plans)
        trainer = Trainer(encoder, self, [], steps)
        history = []
        for epoch, plan in enumerate(plans):

            def loss(batch: list[int], plan: list[tuple[int, int]] = plan) -> torch.Tensor:
                anchors = encoder.upper([hidden[plan[i][0]] for i in batch], split)
                positives = encoder.upper([hidden[plan[i][1]] for i in batch], split)
                return contrastive_loss(anchors, positives, [labels[plan[i][0]] for i in batch], self.scale)

            progress.start(f"contrastive fine-tuning: epoch {epoch + 1}/{self.epochs}", total=len(plan))
            lengths = [len(ids[a]) + len(ids[b]) for a, b in plan]
            history.append(trainer.epoch(batches(lengths, self.batch_size, self.seed + epoch), loss, progress))
        self._encoder = encoder
        self._labels, self._centroids = centroids(encoder.embed(texts, split), labels)
        self._training = {"examples": len(texts), "pairs_per_epoch": len(plans[0]), "loss": history}
        self.remember_texts(texts, parent)

    def predict(self, batch: list[Any]) -> list[list[float]]:
        """The unit-length embedding of each text."""
        encoder = self._require()
        check_texts(batch, "encoder")
        return encoder.embed(batch).tolist()

    def evaluate(self, data: Iterable[Any]) -> heirloom.Report:
        """Nearest training-centroid label of each test text (labels the training lacked are
        left out), as accuracy, macro F1 and per-class scores, and how many of the texts this
        version or an ancestor trained on."""
        encoder = self._require()
        if self._centroids is None:
            raise heirloom.HeirloomError("this encoder state has no training centroids to evaluate against")
        texts, truth = labelled(data, "encoder")
        known = [i for i, label in enumerate(truth) if label in set(self._labels)]
        embedded = encoder.embed([texts[i] for i in known], split_of(encoder, self))
        best = (embedded.to(self._centroids.device) @ self._centroids.T).argmax(1).tolist()
        metrics = classification_metrics([truth[i] for i in known], [self._labels[b] for b in best], self._labels)
        said = seen.count_texts(metrics, [texts[i] for i in known], self._seen)
        text = "nearest training centroid\n" + classification_text(metrics)
        return heirloom.Report(metrics, text + "".join(f"{line}\n" for line in said))

    def _require(self) -> Encoder:
        if self._encoder is None:
            raise heirloom.HeirloomError("encoder has no weights yet: fit it or load a state first")
        return self._encoder

    def state(self) -> heirloom.State:
        """An encoder state (``encoder.*`` tensors), plus the training labels' centroids and the
        hashes of the texts trained on (``seen_texts``)."""
        encoder = self._require()
        tensors = {**encoder.tensors(), **self.seen_tensors()}
        if self._centroids is not None:
            tensors["centroids"] = self._centroids.detach().cpu().contiguous()
        metadata = {
            "format": FORMAT,
            "encoder": encoder.metadata(),
            "labels": self._labels,
            "config": attrs.asdict(self),
            "training": self._training,
        }
        return heirloom.State(tensors, metadata)

    def load(self, state: heirloom.State) -> None:
        state.expect_format(FORMAT, "encoder")
        self._encoder = Encoder(state, self._device)
        self._labels = list(state.metadata.get("labels", []))
        centroids_ = state.tensors.get("centroids")
        self._centroids = centroids_.to(self._device) if centroids_ is not None else None
        self.load_seen(state)
        self._training = dict(state.metadata.get("training", {}))


def centroids(embedded: torch.Tensor, labels: list[str]) -> tuple[list[str], torch.Tensor]:
    """Sorted labels and the unit-length mean embedding of each."""
    import torch

    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    sums = torch.zeros(len(names), embedded.shape[1])
    sums.index_add_(0, torch.tensor([index[label] for label in labels]), embedded)
    return names, torch.nn.functional.normalize(sums, dim=-1)
