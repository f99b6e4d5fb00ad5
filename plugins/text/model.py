"""The ``text-classifier`` model: hashed word and character n-grams, TF-IDF weighted,
into an L2-regularised softmax classifier trained from scratch (no download, no
pre-trained encoder). See ``linear.py`` for why the optimiser is full-batch L-BFGS.

torch is imported inside methods only, so profiles that never fit or predict (and
``heirloom profile check``) do not load it.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

import heirloom
from heirloom_plugins import decided as person
from heirloom_plugins import devices, seen
from heirloom_plugins.memory_room import MIB, refuse_unless_room
from heirloom_plugins.metrics import classification_metrics, classification_text, majority_baseline
from heirloom_plugins.ngrams.features import MAX_BUCKETS, Featurizer, HashingSettings
from heirloom_plugins.ngrams.head import NgramHead
from heirloom_plugins.ngrams.linear import Outcome, Weights, fit_bytes, logits, train
from heirloom_plugins.ngrams.vectors import Bags, Counts, Vocabulary, count
from heirloom_plugins.parent_format import other_format

if TYPE_CHECKING:
    import torch

FORMAT = "heirloom.text-classifier/1"
MAX_CHAR_NGRAM = 8


def _between(low: float, high: float):
    def check(instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"'{attribute.name}' must be between {low} and {high}, got {value!r}")

    return check


def _char_range(instance: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    low, high = value if len(value) == 2 else (-1, -1)
    if (low, high) != (0, 0) and not 1 <= low <= high <= MAX_CHAR_NGRAM:
        raise ValueError(
            f"'{attribute.name}' must be [min, max] with 1 <= min <= max <= {MAX_CHAR_NGRAM}, "
            f"or [0, 0] for none, got {list(value)!r}"
        )


@attrs.frozen
class Fitted:
    """Everything a trained classifier needs to predict."""

    labels: list[str]
    #: The hashing settings, vocabulary and weights (the regression itself).
    head: NgramHead
    training: dict[str, Any]
    #: Hashes of the texts this version and its ancestors trained on (``seen.py``).
    seen: np.ndarray = attrs.field(factory=lambda: np.zeros(0, dtype=np.int64))

    def to(self, device: str) -> Fitted:
        return attrs.evolve(self, head=self.head.to(device))


@attrs.define(kw_only=True)
class TextClassifier(heirloom.Model):
    """Classifies short texts (sentiment, intents) into the labels of its training data.

    Features: word 1..``word_ngrams``-grams and the character ``char_ngrams`` of each word,
    hashed into ``buckets``; sublinear tf times idf, L2-normalised per text. Model: one
    weight per (feature, label), fitted by L-BFGS to the optimum of cross-entropy plus an
    L2 penalty ``l2`` (the inverse of scikit-learn's ``C``). With several ``l2_search``
    values, the one with the best validation accuracy wins: validation is the split
    ``heirloom train`` passes, else a stratified ``validation_fraction`` of the training
    data, after which ``refit`` retrains on all of it. Deterministic for a configuration.
    """

    uses_torch = True

    #: The source whose records ``{"text", "label"}`` the model trains and evaluates on.
    data: str = heirloom.ref("source")
    #: Hash space of the features (only buckets seen in training get weights).
    buckets: int = attrs.field(default=1 << 20, validator=_between(1 << 10, MAX_BUCKETS))
    #: Longest word n-gram (1: single words only).
    word_ngrams: int = attrs.field(default=2, validator=_between(1, 4))
    #: ``[min, max]`` characters per n-gram inside each word; ``[0, 0]`` turns them off.
    char_ngrams: tuple[int, int] = attrs.field(default=(2, 5), converter=tuple, validator=_char_range)
    lowercase: bool = True
    #: Fold text first: full-width and half-width forms as plain letters, the marks Arabic and
    #: Hebrew write only sometimes (harakat, niqqud) and the tatweel out, bidi marks out, digits
    #: of every script as ASCII (docs/TEXT.md). A hashing setting: a parent must have the same.
    fold: bool = False
    #: L2 penalty toward the prior (zeros, or the parent's weights when warm-starting).
    #: The default is fixed, not searched: the l2 the tuned scikit-learn peer's cross-validation
    #: picks on Banking77 (C = 33.3), where heirloom's own holdout picks 0.3 or 0.01 by seed
    #: (0.3 on PhraseBank 50Agree, 0.01-0.03 on AllAgree; docs/TEXT.md); ``l2_search``
    #: chooses per data set.
    l2: float = attrs.field(default=0.03, validator=heirloom.above(0))
    #: L2 values to choose from instead of ``l2``: the best validation accuracy wins (then
    #: the lower validation loss), chosen on validation data, never on test.
    l2_search: list[float] = attrs.field(  # each finite: nan trained a model scored 0.124, then refused to store it
        factory=list, validator=heirloom.list_limit(64, each=heirloom.above(0), min_items=0)
    )
    #: Most epochs (each five L-BFGS iterations over the whole training set); training
    #: stops earlier when the objective stops changing.
    epochs: int = attrs.field(default=40, validator=heirloom.at_least(1))
    #: Share of the training data held out to choose ``l2`` when ``fit`` gets no
    #: validation split (stratified, ``seed``).
    validation_fraction: float = attrs.field(default=0.1, validator=_between(0.0, 0.5))
    #: After choosing ``l2`` on held-out training data, retrain on all of it.
    refit: bool = True
    #: Seed of the held-out split (the only randomness in fitting: with one ``l2`` or a source's own
    #: validation split, no record is held out and two seeds store the same weights).
    seed: int = 0
    #: Texts per forward pass in ``predict`` and ``evaluate``.
    batch_size: int = attrs.field(default=1024, validator=heirloom.at_least(1))
    #: How many times a record marked ``correction`` (sent to a classify api's ``feedback``: the
    #: ``feedback`` source's) counts in training (its row repeated; not in the held-out texts
    #: that choose ``l2``); 1: as any other text. After training, the corrections this version
    #: answers otherwise are named in a warning (docs/ITERATION.md).
    correction_weight: int = attrs.field(default=person.WEIGHT, validator=person.weight)
    #: The same for a record marked ``resolution`` (a person's decision on a handed-off text).
    resolution_weight: int = attrs.field(default=person.WEIGHT, validator=person.weight)

    def __attrs_post_init__(self) -> None:
        self._device = "cpu"
        self._fitted: Fitted | None = None

    def _refuse_if_too_big(self, features: int, labels: int, texts: int) -> None:
        """ResourceExhaustedError, before the fit, when its weights and optimiser history cannot fit in the memory
        available (the budget, else the machine's), naming the sizes and what shrinks them."""
        needed = fit_bytes(features, labels, texts)
        refuse_unless_room(
            needed,
            getattr(getattr(self, "ctx", None), "resources", None),
            lambda room, source: (
                f"text-classifier: {features:,} features x {labels:,} labels on {texts:,} texts need about "
                f"{needed / MIB:,.0f} MiB to fit (the weights, L-BFGS's history of them, the logits), and "
                f"{room / MIB:,.0f} MiB is available ({source}): fewer buckets, fewer labels, or a machine with more "
                "memory"
            ),
        )

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self._device = devices.device_for(ctx)  # checked: an absent GPU is named as the manager's answer
        if self._fitted is not None:
            self._fitted = self._fitted.to(self._device)

    @property
    def device(self) -> str:
        """Where the weights live: ``cpu`` until ``start`` asks the resource manager."""
        return self._device

    def ready(self) -> bool:
        """Ready once it has weights (fitted or loaded)."""
        return self._fitted is not None

    @property
    def labels(self) -> list[str]:
        """The labels it predicts (empty before it has weights)."""
        return list(self._fitted.labels) if self._fitted is not None else []

    def hashing(self) -> HashingSettings:
        """The configured hashing settings (a loaded state's may differ; see ``load``)."""
        return HashingSettings(self.buckets, self.word_ngrams, self.char_ngrams, self.lowercase, self.fold)

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        data: Iterable[Any],
        parent: heirloom.State | None = None,
        progress: heirloom.Progress | None = None,
        validation: Iterable[Any] | None = None,
    ) -> None:
        """Fit on ``data``; choose ``l2`` (among ``l2_search``) and the epoch count on
        ``validation`` when given (never training on it), else on a stratified
        ``validation_fraction`` of ``data``, then refit on all of ``data`` (``refit``)."""
        progress = progress or heirloom.NullProgress()
        kinds: list[str | None] = []
        texts, labels = _examples(data, kinds)
        weights = {person.CORRECTION: self.correction_weight, person.RESOLUTION: self.resolution_weight}
        repeats = person.repeats(kinds, weights)
        label_set = sorted(index := set(labels))
        if len(label_set) < 2:
            raise heirloom.HeirloomError(f"text-classifier needs at least two labels to fit, got {label_set}")
        hashing = self.hashing()
        inherited = self._inherited(parent, hashing) if parent is not None else None
        if inherited is not None and not index.intersection(inherited.labels):  # sentiment into intents: unsaid
            progress.log(
                f"warning: the parent knows none of the {len(label_set)} labels of source {self.data!r} (its labels: "
                f"{', '.join(inherited.labels[:10])}{', ...' * (len(inherited.labels) > 10)}): every label starts "
                'as a blend of unrelated classes; inherit = "" (TOML) fits from scratch'
            )
        featurizer = Featurizer(hashing)
        candidates = sorted(set(self.l2_search), reverse=True) or [self.l2]
        if validation is not None:
            chosen, held_texts, held_labels = list(range(len(texts))), *_examples(validation)
            known = [i for i, label in enumerate(held_labels) if label in index]
            if len(known) < len(held_labels):
                progress.log(f"{len(held_labels) - len(known)} validation texts have labels the training data lacks")
            held_texts, held_labels = [held_texts[i] for i in known], [held_labels[i] for i in known]
        else:  # hold out validation data only when there is an l2 to choose
            held = (
                heirloom.stratified_holdout(labels, self.validation_fraction, self.seed)
                if len(candidates) > 1
                else set()
            )
            chosen = [i for i in range(len(texts)) if i not in held]
            held_texts, held_labels = [texts[i] for i in sorted(held)], [labels[i] for i in sorted(held)]
        if len(candidates) > 1 and not held_texts:
            progress.log(f"no validation texts to choose l2 on (too few per label): using l2 {self.l2:g}")
            candidates = [self.l2]
        task = _Task(featurizer, label_set, inherited, self._device)
        trained = person.repeated(chosen, repeats)  # a person's decision counts its kind's weight
        sized = functools.partial(self._refuse_if_too_big, labels=len(label_set), texts=len(texts) + len(held_texts))
        trained_texts, trained_labels = [texts[i] for i in trained], [labels[i] for i in trained]
        problem = task.problem(trained_texts, trained_labels, held_texts, held_labels, sized)
        tried: list[tuple[float, Outcome]] = []
        for l2 in candidates:
            description = "fitting text-classifier" + (f" (l2 {l2:g})" if len(candidates) > 1 else "")
            progress.log(
                f"{description}: {len(chosen)} training and {len(held_texts)} validation texts, "
                f"{len(label_set)} labels, {len(problem.vocabulary.features)} features"
            )
            start = tried[-1][1].weights if tried else None  # the neighbouring optimum: fewer iterations
            tried.append((l2, self._train(problem, l2, progress, description, start)))
        l2, outcome = max(tried, key=lambda pair: _validation_score(pair[1]))
        checked = self._against_scratch(problem, l2, outcome, progress) if inherited and held_texts else None
        training = {
            "selection": outcome.summary,
            "l2": l2,
            "l2_search": {f"{value:g}": _final(result) for value, result in tried} if len(tried) > 1 else None,
            "train_examples": len(chosen),
            "validation_examples": len(held_texts),
            "validation": "given" if validation is not None else "held out of the training data",
            "refit": None,
            "warm_start": _lineage(label_set, inherited),
            "warm_start_check": checked,
            "label_counts": dict(sorted(Counter(labels).items())),
        }
        if said := _label_changes(training["warm_start"]):
            progress.log(said)
        vocabulary = problem.vocabulary
        if validation is None and len(tried) > 1 and self.refit:
            every = person.repeated(range(len(texts)), repeats)
            everything = task.problem([texts[i] for i in every], [labels[i] for i in every], [], [], sized)
            description = "refitting on training + validation"
            progress.log(f"{description}: {len(texts)} texts, l2 {l2:g}")
            outcome = self._train(everything, l2, progress, description)
            vocabulary, training["refit"] = everything.vocabulary, outcome.summary
        training["features"] = len(vocabulary.features)
        hashes = seen.texts_seen(texts, parent)
        self._fitted = Fitted(label_set, NgramHead(hashing, vocabulary, outcome.weights), training, hashes)
        decided = [(texts[i], labels[i], kind) for i, kind in enumerate(kinds) if kind is not None]
        if decided:
            training.update({"correction_weight": self.correction_weight, "resolution_weight": self.resolution_weight})
            answers = [answer["label"] for answer in self.predict([text for text, _, _ in decided])]
            training.update(person.check(decided, answers, progress, weights))

    def _train(
        self,
        problem: _Problem,
        l2: float,
        progress: heirloom.Progress,
        description: str,
        start: Weights | None = None,
    ) -> Outcome:
        return train(
            problem.bags,
            problem.targets,
            problem.prior,
            l2=l2,
            epochs=self.epochs,
            validation=problem.validation,
            progress=progress,
            description=description,
            start=start,
        )

    def _against_scratch(
        self, problem: _Problem, l2: float, outcome: Outcome, progress: heirloom.Progress
    ) -> dict[str, float]:
        """The warm start's validation accuracy beside the same fit's from scratch, and a warning when the parent
        cost more than 2 points: a parent from another domain anchors the weights away from the data (a game's
        support tickets fell from 0.84 to 0.74 warm-started from finance news, unsaid: checker h380 F3)."""
        import torch

        zeros = Weights(torch.zeros_like(problem.prior.weight), torch.zeros_like(problem.prior.bias))  # no anchor
        alone = self._train(attrs.evolve(problem, prior=zeros), l2, progress, "fitting from scratch to compare")
        inherited, fresh = _validation_score(outcome)[0], _validation_score(alone)[0]
        if fresh - inherited > 0.02:
            progress.log(
                f"warning: warm-started, this model scores {inherited:.3f} on validation; the same fit from scratch "
                f'{fresh:.3f}: the parent\'s weights cost accuracy here (another domain?); inherit = "" (TOML) '
                "fits from scratch"
            )
        return {"validation_accuracy": inherited, "from_scratch": fresh}

    def _inherited(self, parent: heirloom.State, hashing: HashingSettings) -> Fitted:
        """The parent's trained state, refused with the reason when it cannot seed this model."""
        fitted = _unpack(parent, "parent")
        if differences := _hashing_differences(fitted.head.hashing, hashing):
            raise heirloom.HeirloomError(
                "cannot warm-start text-classifier: the parent hashes text differently, so its weights would "
                "sit on other features; differing settings: " + "; ".join(differences.values())
            )
        return fitted

    def check_parent(self, metadata: dict[str, Any]) -> list[tuple[str, str]]:
        """``(setting, problem)`` for a parent (its state's metadata) this model cannot warm-start from, asked by
        ``profile check`` and by ``train`` before any record is read: ``fit`` said so only after reading the data,
        naming neither the file nor the setting (checker 275 F6). The hook is optional (docs/PLUGINS.md)."""
        if foreign := other_format(metadata, FORMAT, "text-classifier"):
            return foreign
        try:
            theirs = HashingSettings.from_json(metadata.get("hashing"), "the parent")
        except heirloom.HeirloomError as exc:
            return [("inherit", str(exc))]
        said = (
            "the parent hashes text differently, so its weights would sit on other features: set it as the parent has"
        )
        return [
            (name, f"{said}; {difference}") for name, difference in _hashing_differences(theirs, self.hashing()).items()
        ]

    # -- inference ------------------------------------------------------------------------
    def predict(self, batch: list[Any]) -> list[dict[str, Any]]:
        """``[{"label": str, "probabilities": {label: float}}]``, one per input text."""
        labels = self._require().labels
        probabilities = self._probabilities(batch)
        return [
            {"label": labels[best], "probabilities": dict(zip(labels, row, strict=True))}
            for best, row in zip(probabilities.argmax(1).tolist(), probabilities.tolist(), strict=True)
        ]

    def evaluate(self, data: Iterable[Any]) -> heirloom.Report:
        """Accuracy, per-class precision/recall/F1, averages and the confusion matrix; beside them
        the majority class's accuracy (a model on data without signal scored below it, unsaid) and
        how many texts this version or an ancestor trained on (``seen.py``)."""
        fitted = self._require()
        texts, truth = _examples(data)
        predicted = [fitted.labels[i] for i in self._probabilities(texts).argmax(1).tolist()]
        metrics = classification_metrics(truth, predicted, fitted.labels)
        lines = seen.count_texts(metrics, texts, fitted.seen)
        lines += majority_baseline(metrics, truth, fitted.training.get("label_counts"))
        return heirloom.Report(metrics, classification_text(metrics) + "\n".join(lines))

    def _probabilities(self, texts: list[Any]) -> torch.Tensor:
        fitted = self._require()
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise heirloom.HeirloomError(
                    f"text-classifier predicts texts: item {position} is {type(text).__name__}"
                )
        return fitted.head.probabilities(texts, self.batch_size)

    def _require(self) -> Fitted:
        if self._fitted is None:
            raise heirloom.HeirloomError("text-classifier has no weights yet: fit it or load a state first")
        return self._fitted

    # -- state ----------------------------------------------------------------------------
    def state(self) -> heirloom.State:
        """Tensors ``features`` (hashed bucket ids), ``idf``, ``weight`` (features x labels),
        ``bias``, ``seen_texts`` (``seen.py``); metadata: format, labels, hashing settings,
        configuration, training summary (with the training label counts)."""
        fitted = self._require()
        config = attrs.asdict(self, value_serializer=lambda _, __, v: list(v) if isinstance(v, tuple) else v)
        metadata = {
            "format": FORMAT,
            "labels": list(fitted.labels),
            "hashing": fitted.head.hashing.to_json(),
            "weighting": "sublinear tf x smoothed idf, l2-normalised per text",
            "config": config,
            "training": fitted.training,
        }
        tensors = {**fitted.head.tensors(""), seen.TEXTS: seen.as_tensor(fitted.seen)}
        return heirloom.State(tensors, metadata)

    def load(self, state: heirloom.State) -> None:
        """Adopt ``state``, including its hashing settings (what its weights mean)."""
        self._fitted = _unpack(state, "state").to(self._device)


@attrs.frozen
class _Problem:
    """One training set encoded for ``linear.train``: bags, targets, prior and validation."""

    vocabulary: Vocabulary
    bags: Bags
    targets: torch.Tensor
    prior: Weights
    validation: tuple[Bags, torch.Tensor] | None


@attrs.frozen
class _Task:
    """What every training set of one fit shares: featuriser, labels, parent, device."""

    featurizer: Featurizer
    labels: list[str]
    inherited: Fitted | None
    device: str

    def encoded(self, texts: list[str], labels: list[str]) -> tuple[Counts, torch.Tensor]:
        import torch

        index = {label: i for i, label in enumerate(self.labels)}
        targets = torch.tensor([index[label] for label in labels], dtype=torch.long, device=self.device)
        return count(self.featurizer, texts), targets

    def problem(
        self,
        texts: list[str],
        labels: list[str],
        held_texts: list[str],
        held_labels: list[str],
        sized: Callable[[int], None] = lambda features: None,
    ) -> _Problem:
        """Vocabulary and idf from ``texts`` (plus the parent's), bags, prior, validation; ``sized`` is told the
        features' count before the features x labels prior is made (it may refuse a fit that cannot fit)."""
        counts, targets = self.encoded(texts, labels)
        vocabulary = Vocabulary.fit(counts, self.inherited.head.vocabulary if self.inherited else None)
        sized(len(vocabulary.features))
        validation = None
        if held_texts:
            held_counts, held_targets = self.encoded(held_texts, held_labels)
            validation = (vocabulary.bags(held_counts).to(self.device), held_targets)
        bags = vocabulary.bags(counts)
        prior = _prior(vocabulary, self.labels, self.inherited, bags, targets.cpu())
        return _Problem(
            vocabulary,
            bags.to(self.device),
            targets,
            Weights(prior.weight.to(self.device), prior.bias.to(self.device)),
            validation,
        )


def _final(outcome: Outcome) -> dict[str, float]:
    """The last epoch's validation scores of a fit (empty without validation data)."""
    last = outcome.summary["history"][-1] if outcome.summary["history"] else {}
    return {key: value for key, value in last.items() if key.startswith("validation_")}


def _validation_score(outcome: Outcome) -> tuple[float, float]:
    """Higher is better: validation accuracy, then lower validation loss (ties are common on
    small validation sets)."""
    scores = _final(outcome)
    return scores.get("validation_accuracy", 0.0), -scores.get("validation_loss", 0.0)


def _hashing_differences(theirs: HashingSettings, ours: HashingSettings) -> dict[str, str]:
    """``{setting: "fold (parent false, this model true)"}`` for each hashing setting the parent has otherwise, the
    values as TOML writes them (``[2, 5]``: Python's ``(2, 5)`` and ``True`` pasted in the profile were refused)."""
    parent, model = attrs.asdict(theirs), attrs.asdict(ours)
    return {
        name: f"{name} (parent {_toml(parent[name])}, this model {_toml(model[name])})"
        for name in model
        if parent[name] != model[name]
    }


def _toml(value: Any) -> str:
    """A hashing setting's value as TOML writes it: ``true``, ``[2, 5]`` (a tuple is a list)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _unpack(state: heirloom.State, what: str) -> Fitted:
    """A ``Fitted`` from a state, refusing states of other models or broken shapes."""
    metadata = state.metadata
    state.expect_format(FORMAT, "text-classifier", what)
    labels = metadata.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise heirloom.HeirloomError(f"the {what}'s metadata 'labels' is not a list of label names")
    head = NgramHead.from_state(state, "", metadata.get("hashing"), len(labels), f"the {what}")
    return Fitted(labels, head, dict(metadata.get("training", {})), seen.hashes_of(state, seen.TEXTS, what))


def _prior(
    vocabulary: Vocabulary, labels: list[str], parent: Fitted | None, bags: Bags, targets: torch.Tensor
) -> Weights:
    """Starting weights (and the L2 anchor): zeros from scratch; with a parent, its columns
    for the labels both know, and for each new label the parent's view of its examples.

    A new label's column (and bias) is the average of the parent's columns, weighted by
    the parent's mean probability for each of its labels over the new label's training
    texts (``bags``, ``targets``): an intent the parent reads as 60% ``card_arrival``
    starts 60% like it, and training separates the two on what differs. Starting new labels
    at zero left them weights only on the features of their few examples while the
    parent's labels kept weights on every feature, so new labels lost: on Banking77 (40 ->
    77 intents, 5 examples each) new-intent accuracy fell below training from scratch.
    A label the new data lacks is dropped.
    """
    import torch

    weight = torch.zeros(len(vocabulary.features), len(labels))
    bias = torch.zeros(len(labels))
    parent_index = {label: i for i, label in enumerate(parent.labels)} if parent else {}
    shared = [label for label in labels if label in parent_index]
    if parent is None or not shared:
        return Weights(weight, bias)
    ours = torch.tensor([labels.index(label) for label in shared])
    theirs = torch.tensor([parent_index[label] for label in shared])
    rows, known = parent.head.vocabulary.rows_of(vocabulary.features)
    parent_weight, parent_bias = parent.head.weights.weight.cpu(), parent.head.weights.bias.cpu()
    weight[known.nonzero().squeeze(1)[:, None], ours] = parent_weight[rows[known]][:, theirs]
    bias[ours] = parent_bias[theirs]
    new = torch.tensor([i for i, label in enumerate(labels) if label not in parent_index], dtype=torch.long)
    if len(new):
        inherited = Weights(weight[:, ours], bias[ours])
        with torch.no_grad():
            seen = torch.softmax(logits(bags, inherited), 1)  # the parent's probabilities, per text
        mix = torch.zeros(len(labels), len(shared)).index_add_(0, targets, seen)[new]
        mix /= torch.bincount(targets, minlength=len(labels))[new].clamp_min(1).unsqueeze(1)
        weight[:, new] = inherited.weight @ mix.T
        bias[new] = mix @ inherited.bias
    return Weights(weight, bias)


def _lineage(labels: list[str], parent: Fitted | None) -> dict[str, list[str]] | None:
    """Which labels a warm start kept, added and dropped (None without a parent)."""
    if parent is None:
        return None
    return {
        "kept": [label for label in labels if label in parent.labels],
        "added": [label for label in labels if label not in parent.labels],
        "dropped": [label for label in parent.labels if label not in labels],
    }


def _label_changes(lineage: dict[str, list[str]] | None) -> str:
    """Train's line on the labels a warm start added or dropped ("" for none): only the metadata said it, and a
    dropped label, never predicted again, went unsaid (checker h444 F5)."""
    if not lineage or not (lineage["added"] or lineage["dropped"]):
        return ""
    said = [f"kept {len(lineage['kept'])}"]
    if lineage["added"]:
        said.append(f"added {_few(lineage['added'])} (each starts as the blend of the parent's labels its texts get)")
    if lineage["dropped"]:
        said.append(f"dropped {_few(lineage['dropped'])} (not in the training data: never predicted by this version)")
    return "warm start labels: " + "; ".join(said)


def _few(labels: list[str]) -> str:
    return ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def _examples(data: Iterable[Any], kinds: list[str | None] | None = None) -> tuple[list[str], list[str]]:
    """Texts and labels of records that are mappings or objects with ``text`` and ``label``; ``kinds``
    (when given) gets which kind of a person's decision each record is (``decided.kind_of``), or None."""
    texts: list[str] = []
    labels: list[str] = []
    for position, record in enumerate(data):
        if isinstance(record, Mapping):
            text, label = record.get("text"), record.get("label")
        else:
            text, label = getattr(record, "text", None), getattr(record, "label", None)
        if not isinstance(text, str) or label is None:
            raise heirloom.HeirloomError(f"record {position} needs a 'text' (str) and a 'label', got {record!r:.120}")
        texts.append(text)
        labels.append(str(label))
        if kinds is not None:
            kinds.append(person.kind_of(record))
    return texts, labels
