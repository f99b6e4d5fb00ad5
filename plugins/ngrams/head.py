"""A fitted hashed n-gram softmax regression: what the ``text-classifier`` predicts with,
and the lexical half that the ``encoder-classifier`` fuses with its encoder.

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
from heirloom_plugins.ngrams.vectors import Lookup, Vocabulary, count

if TYPE_CHECKING:
    import torch

#: The text-classifier's defaults: word 1-2-grams, character 2-5-grams, 2^20 buckets.
HASHING = HashingSettings(buckets=1 << 20, word_ngrams=2, char_ngrams=(2, 5), lowercase=True)
#: Most L-BFGS epochs; fitting stops earlier once the objective stops changing.
EPOCHS = 40
#: The state's tensors, each under the owner's prefix.
TENSORS = ("features", "idf", "weight", "bias")
#: Each tensor's dtype, as ``state()`` writes it.
DTYPES = {"features": "int64", "idf": "float32", "weight": "float32", "bias": "float32"}


@attrs.define
class NgramHead:
    """Hashed n-gram features, their idf and a weight per (feature, label)."""

    hashing: HashingSettings
    vocabulary: Vocabulary
    weights: Weights
    _featurizer: Featurizer | None = attrs.field(default=None, init=False)
    _lookup: Lookup | None = attrs.field(default=None, init=False)

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

    def to(self, device: str) -> NgramHead:
        """The weights on ``device``; the vocabulary stays on the CPU, where texts are featurised."""
        weights = Weights(self.weights.weight.to(device), self.weights.bias.to(device))
        return NgramHead(self.hashing, self.vocabulary, weights)

    def probabilities(self, texts: list[str], batch_size: int = 1024) -> torch.Tensor:
        """Texts x labels softmax probabilities (on the CPU), ``batch_size`` texts per pass.
        The featuriser and the bucket -> row look-up are built on first use, once."""
        if self._featurizer is None:
            self._featurizer = Featurizer(self.hashing)
        if self._lookup is None:
            self._lookup = self.vocabulary.lookup(self.hashing.buckets)
        device = str(self.weights.weight.device)
        return probabilities(
            self._featurizer, self.vocabulary, self._lookup, self.weights, texts, batch_size=batch_size, device=device
        )

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        values = (self.vocabulary.features, self.vocabulary.idf, self.weights.weight, self.weights.bias)
        pairs = zip(TENSORS, values, strict=True)
        return {f"{prefix}{name}": value.detach().cpu().contiguous() for name, value in pairs}

    def metadata(self) -> dict[str, Any]:
        return {"hashing": self.hashing.to_json()}

    @classmethod
    def from_state(
        cls, state: heirloom.State, prefix: str, hashing: dict[str, Any], labels: int, what: str
    ) -> NgramHead:
        """The regression stored under ``prefix`` (``hashing``: its settings as JSON), refused
        with the reason, naming ``what`` ("the parent", ...), when a tensor is missing or the
        shapes do not fit ``labels``."""
        missing = sorted(prefix + name for name in TENSORS if prefix + name not in state.tensors)
        if missing:
            raise heirloom.HeirloomError(f"{what} lacks tensors: {', '.join(missing)}")
        features, idf, weight, bias = (state.tensors[prefix + name] for name in TENSORS)
        expected = (len(features), labels)
        if tuple(weight.shape) != expected or tuple(bias.shape) != (labels,) or len(idf) != len(features):
            raise heirloom.HeirloomError(
                f"{what} has inconsistent shapes: weight {tuple(weight.shape)}, expected {expected}"
            )
        settings = HashingSettings.from_json(hashing, what)
        _check_values(dict(zip(TENSORS, (features, idf, weight, bias), strict=True)), settings.buckets, prefix, what)
        return cls(settings, Vocabulary(features, idf), Weights(weight, bias))


def _check_values(tensors: dict[str, torch.Tensor], buckets: int, prefix: str, what: str) -> None:
    """Refuse a stored regression whose tensors have another dtype than ``state()`` writes (float64
    weights failed inside torch's embedding_bag with a traceback) or whose features are no sorted
    bucket ids below ``buckets`` (an index past the lookup table)."""
    wrong = [
        f"{prefix}{name} is {str(t.dtype).removeprefix('torch.')}, expected {DTYPES[name]}"
        for name, t in tensors.items()
        if str(t.dtype).removeprefix("torch.") != DTYPES[name]
    ]
    if wrong:
        raise heirloom.HeirloomError(f"{what} has tensors of another dtype: {'; '.join(wrong)}")
    features = tensors["features"]
    if len(features) and (features[0] < 0 or features[-1] >= buckets or bool((features[1:] <= features[:-1]).any())):
        raise heirloom.HeirloomError(
            f"{what} has damaged features: {prefix}features must be increasing bucket ids below {buckets}"
        )
