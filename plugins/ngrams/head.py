"""A hashed n-gram softmax regression trained from scratch on one label set: the lexical
half that the ``encoder-classifier`` fuses with its encoder.

A sentence encoder reads meaning; exact words and their spelling (``topping up`` against
``top up``, ``pin`` against ``passcode``) are what the hashed word and character n-grams
catch. Convex and full-batch (linear.py), so fitting it is seconds next to the encoder's
minutes, and the same data always gives the same weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

import heirloom
from heirloom_plugins.ngrams.features import Featurizer, HashingSettings
from heirloom_plugins.ngrams.linear import Weights, probabilities, train
from heirloom_plugins.ngrams.vectors import Vocabulary, count

if TYPE_CHECKING:
    import torch

#: The text-classifier's defaults: word 1-2-grams, character 2-5-grams, 2^20 buckets.
HASHING = HashingSettings(buckets=1 << 20, word_ngrams=2, char_ngrams=(2, 5), lowercase=True)
#: Most L-BFGS epochs; fitting stops earlier once the objective stops changing.
EPOCHS = 40
#: The state's tensors, each under the owner's prefix.
TENSORS = ("features", "idf", "weight", "bias")


@attrs.define
class NgramHead:
    """Hashed n-gram features, their idf and a weight per (feature, label)."""

    hashing: HashingSettings
    vocabulary: Vocabulary
    weights: Weights
    _featurizer: Featurizer | None = attrs.field(default=None, init=False)
    _table: torch.Tensor | None = attrs.field(default=None, init=False)

    @classmethod
    def fit(
        cls,
        texts: list[str],
        targets: torch.Tensor,
        labels: int,
        *,
        l2: float,
        progress: heirloom.Progress,
        description: str,
    ) -> NgramHead:
        """Fitted to the optimum of cross-entropy + ``l2`` on ``texts`` (``targets``: label
        indices below ``labels``)."""
        import torch

        featurizer = Featurizer(HASHING)
        counts = count(featurizer, texts)
        vocabulary = Vocabulary.fit(counts)
        prior = Weights(torch.zeros(len(vocabulary.features), labels), torch.zeros(labels))
        progress.log(f"{description}: {len(texts)} texts, {len(vocabulary.features)} n-gram features, l2 {l2:g}")
        outcome = train(
            vocabulary.bags(counts),
            targets.cpu(),
            prior,
            l2=l2,
            epochs=EPOCHS,
            validation=None,
            progress=progress,
            description=description,
        )
        head = cls(HASHING, vocabulary, outcome.weights)
        head._featurizer = featurizer
        return head

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Texts x labels softmax probabilities, on the CPU."""
        if self._featurizer is None:
            self._featurizer = Featurizer(self.hashing)
        if self._table is None:
            self._table = self.vocabulary.table(self.hashing.buckets)
        return probabilities(
            self._featurizer, self.vocabulary, self._table, self.weights, texts, batch_size=1024, device="cpu"
        )

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        values = (self.vocabulary.features, self.vocabulary.idf, self.weights.weight, self.weights.bias)
        pairs = zip(TENSORS, values, strict=True)
        return {f"{prefix}{name}": value.detach().cpu().contiguous() for name, value in pairs}

    def metadata(self) -> dict[str, Any]:
        return {"hashing": self.hashing.to_json()}

    @classmethod
    def from_state(cls, state: heirloom.State, prefix: str, metadata: dict[str, Any], labels: int) -> NgramHead:
        """The head stored under ``prefix``, refused with the reason when its tensors are
        missing or do not fit ``labels``."""
        missing = [prefix + name for name in TENSORS if prefix + name not in state.tensors]
        if missing:
            raise heirloom.HeirloomError(f"the state's n-gram head lacks tensors: {', '.join(missing)}")
        features, idf, weight, bias = (state.tensors[prefix + name] for name in TENSORS)
        shapes = tuple(weight.shape), tuple(bias.shape), len(idf)
        if shapes != ((len(features), labels), (labels,), len(features)):
            raise heirloom.HeirloomError(
                f"the state's n-gram head does not fit its {labels} labels: weight {tuple(weight.shape)}, "
                f"{len(features)} features"
            )
        return cls(HashingSettings.from_json(metadata["hashing"]), Vocabulary(features, idf), Weights(weight, bias))
