"""The ``medical-diagnosis`` model type and the machine ``medical-treatment`` shares.

Both are the same machine on different tasks (``tasks.py``): bag-of-codes features of a
visit (``features.py``), one-vs-rest logistic regression (``linear.py``) averaged with a
small one-hidden-layer net (``net.py``), with ``l2``, the net's weight and the decision
threshold chosen on validation folds of the training patients (``decision.py``).
``treatment.py`` adds what only drugs need (the allergy filter, each drug's reasons).

A warm start (``parent``) keeps the parent's feature columns, bin edges and labels, adds
what the new data brings (new codes grow the label space), and pulls the weights toward
the parent's rather than toward zero; the net is fitted fresh on the new data. torch is
imported inside methods only.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np

import heirloom
from heirloom_plugins import seen
from heirloom_plugins.medical import integrity
from heirloom_plugins.medical.decision import DEFAULT, THRESHOLDS, average, decide, select
from heirloom_plugins.medical.features import Description, Vocabulary, describe
from heirloom_plugins.medical.linear import Rows, Weights, fit, probabilities
from heirloom_plugins.medical.metrics import multilabel_metrics, multilabel_text
from heirloom_plugins.medical.net import Net, Settings, net_from_state
from heirloom_plugins.medical.patients import Visit, find_encounter, visit
from heirloom_plugins.medical.tasks import DIAGNOSIS, Task
from heirloom_plugins.model_needs import shape_problem
from heirloom_plugins.parent_format import other_format

if TYPE_CHECKING:
    import torch

log = logging.getLogger("heirloom.medical")


def _positive_grid(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if not value or any(not (v > 0 and math.isfinite(v)) for v in value):
        raise ValueError(f"'{attribute.name}' must be a non-empty list of finite numbers > 0, got {list(value)!r}")


def _blend_grid(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if not value or any(not 0 <= v <= 1 for v in value):
        raise ValueError(f"'{attribute.name}' must be a non-empty list of numbers in [0, 1], got {list(value)!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


@attrs.frozen
class Query:
    """One prediction: a patient's record and one of its encounters (None: the last)."""

    record: Any
    encounter: str | None = None


#: The state tensor of the hashes of the patients trained on.
SEEN_TENSOR = "seen_patients"


@attrs.frozen
class Fitted:
    """Everything a trained model needs to predict."""

    labels: tuple[str, ...]
    names: dict[str, str]
    vocabulary: Vocabulary
    weights: Weights
    threshold: float
    l2: float
    training: dict[str, Any]
    #: The net's weight in the average with the linear model, and the net (None when 0).
    blend: float = 0.0
    net: Net | None = None
    #: Hashes of the patients this version and its ancestors trained on (``heirloom_plugins.seen``).
    seen: np.ndarray = attrs.field(factory=lambda: np.zeros(0, dtype=np.int64), eq=False, repr=False)
    #: The probability at which the most probable label is selected (``decision.decide``; 0: always).
    floor: float = 0.0
    position: dict[str, int] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "position", {label: i for i, label in enumerate(self.labels)})

    def name(self, label: str) -> str:
        """A label's name in answers: its display (``names``), else its code. A drug no training
        visit named (an export that never gave nitrofurantoin a display) was answered with no name,
        which the treatment route refuses: every patient without an allergy got INTERNAL."""
        return self.names.get(label) or label


@attrs.define(kw_only=True)
class MultiLabelModel(heirloom.Model):
    """A multi-label code predictor over patient visits (subclasses set ``task``)."""

    task: ClassVar[Task]
    uses_torch = True

    #: The fhir source whose patient records it trains and evaluates on.
    data: str = heirloom.ref("source")
    #: L2 penalties tried on the validation folds (one value: no search for it).
    l2: tuple[float, ...] = attrs.field(default=(0.3, 1.0, 3.0, 10.0), converter=tuple, validator=_positive_grid)
    #: Weights of the net in its average with the linear model tried on the validation
    #: folds (0: the linear model alone; ``[0]`` turns the net off).
    blend: tuple[float, ...] = attrs.field(default=(0.0, 0.25, 0.5), converter=tuple, validator=_blend_grid)
    #: The net's hidden units, dropout after them, and AdamW weight decay.
    net_hidden: int = attrs.field(default=256, validator=heirloom.at_least(1))
    net_dropout: float = attrs.field(default=0.5, converter=float, validator=_fraction)
    net_weight_decay: float = attrs.field(default=0.01, converter=float, validator=heirloom.at_least(0))
    #: Validation folds over the training patients (chooses ``l2``, the net weight and the threshold).
    folds: int = attrs.field(default=5, validator=heirloom.at_least(2))
    #: Quantile bins per numeric observation.
    bins: int = attrs.field(default=5, validator=heirloom.at_least(1))
    #: A feature needs this many training visits to get a column.
    min_count: int = attrs.field(default=1, validator=heirloom.at_least(1))
    #: Ranked codes returned per prediction.
    top: int = attrs.field(default=10, validator=heirloom.at_least(1))

    def __attrs_post_init__(self) -> None:
        self._fitted: Fitted | None = None

    def ready(self) -> bool:
        return self._fitted is not None

    @property
    def labels(self) -> list[str]:
        return list(self._fitted.labels) if self._fitted is not None else []

    # -- training -------------------------------------------------------------------------
    def fit(
        self, data: Iterable[Any], parent: heirloom.State | None = None, progress: heirloom.Progress | None = None
    ) -> None:
        import torch

        progress = progress or heirloom.NullProgress()
        # a damaged parent is refused before the data is read: its weights are the prior (NaN ones ended the fit
        # in an L-BFGS traceback, a repeated label was copied into the child)
        inherited = heirloom.warm_start_parent(parent, lambda state: self._unpack(state, "parent"))
        uncoded: Counter[str] = Counter()  # the records count on the kernel's bar as they are read
        examples = list(self.task.examples(data, uncoded, blank=True))
        blank = [one for one, codes in examples if not codes]  # nothing diagnosed/prescribed: the floor's
        examples = [(one, codes) for one, codes in examples if codes]
        self._warn_uncoded(uncoded, "learned from")
        if not examples:
            raise heirloom.HeirloomError(
                f"{self.task.name}: the training data has no encounter with a {self.task.label_kind} to learn from"
                + self._unassigned()
            )
        found = [describe(one, self.task) for one, _ in examples]
        vocabulary = Vocabulary.fit(
            found, inherited.vocabulary if inherited else None, bins=self.bins, min_count=self.min_count
        )
        if left_out := vocabulary.left_out(found):
            log.warning(
                "%s: %d observation value(s) at the training encounters left out of the features, without a "
                "unit or in a unit that does not convert to their code's: %s",
                self.task.name,
                left_out.total(),
                "; ".join(
                    f"{code} {_unit(unit)} (the code's unit: {vocabulary.units[f'now:{code}'] or 'none'!r}): {count}"
                    for (code, unit), count in sorted(left_out.items(), key=str)
                ),
            )
        labels = list(inherited.labels) if inherited else []
        labels += sorted({code for _, codes in examples for code in codes}.difference(labels))
        names = label_names(examples, self.task.label_kind, inherited.names if inherited else {})
        self._warn_unnamed([label for label in labels if not names.get(label)])
        index = {label: i for i, label in enumerate(labels)}
        targets = torch.zeros(len(examples), len(labels))
        for row, (_, codes) in enumerate(examples):
            targets[row, [index[code] for code in codes]] = 1.0
        coo = vocabulary.matrix(found)
        prior = _prior(vocabulary, labels, inherited)
        patients = [one.record.id for one, _ in examples]
        progress.log(
            f"{self.task.name}: {len(examples)} visits of {len(set(patients))} patients, {len(labels)} labels, "
            f"{len(vocabulary.columns)} features"
            + (f", warm start from {len(inherited.labels)} labels" if inherited else "")
        )
        fallback = (inherited.l2, inherited.threshold, inherited.floor) if inherited else DEFAULT
        settings = Settings(self.net_hidden, self.net_dropout, self.net_weight_decay)
        unlabelled = (vocabulary.matrix([describe(one, self.task) for one in blank]), [one.record.id for one in blank])
        selection = select(
            coo, targets, patients, prior, self.l2, self.folds, progress, fallback, self.blend, settings, unlabelled
        )
        weights = selection.weights
        if weights is None:
            progress.start(f"fitting {self.task.name} on every training patient (l2 {selection.l2:g})")
            weights = fit(Rows.of(coo), targets, prior, l2=selection.l2)
        training = {
            "examples": len(examples),
            "patients": len(set(patients)),
            "selection": selection.summary,
            "warm_start": _lineage(labels, inherited),
        }
        self._fitted = Fitted(
            tuple(labels),
            names,
            vocabulary,
            weights,
            selection.threshold,
            selection.l2,
            training,
            selection.blend,
            selection.net,
            seen.seen_keys(patients, parent, SEEN_TENSOR),
            selection.floor,
        )

    # -- inference ------------------------------------------------------------------------
    def predict(self, batch: list[Any]) -> list[dict[str, Any]]:
        """For each ``Query``: the ranked codes with probabilities and the decided ones.

        Raises LookupError when a query's encounter is not in its record.
        """
        visits = [visit(query.record, find_encounter(query.record, query.encounter)) for query in batch]
        return self._answers(visits)

    def evaluate(self, data: Iterable[Any]) -> heirloom.Report:
        """Micro/macro/weighted/samples precision, recall, F1, recall@5, Jaccard, per label."""
        fitted = self._require()
        uncoded: Counter[str] = Counter()
        examples = list(self.task.examples(data, uncoded, blank=True))
        blank = [one for one, codes in examples if not codes]
        examples = [(one, codes) for one, codes in examples if codes]
        self._warn_uncoded(uncoded, "scored")
        answers = self._answers([one for one, _ in examples])
        truth = [set(codes) for _, codes in examples]
        decided = [{item["code"] for item in answer["codes"] if item["selected"]} for answer in answers]
        ranked = [[item["code"] for item in answer["codes"]] for answer in answers]
        metrics = multilabel_metrics(truth, decided, ranked, labels=fitted.labels)
        metrics.update(self._extra_metrics(examples, answers))
        metrics["threshold"], metrics["l2"], metrics["blend"] = fitted.threshold, fitted.l2, fitted.blend
        # the visits where nothing was diagnosed (prescribed): how many the answer gives a code (the floor's work)
        metrics["floor"], metrics["visits_without_labels"] = fitted.floor, len(blank)
        blank_answers = self._answers(blank)
        metrics["given_without_labels"] = sum(any(i["selected"] for i in a["codes"]) for a in blank_answers)
        metrics["route_refusals"] = self._refusals([*answers, *blank_answers])
        known = seen.count_seen((one.record.id for one, _ in examples), fitted.seen)
        said = seen.seen_report(
            metrics, known, len(examples), "visits are of patients trained on", "the same patient ids"
        )
        names = label_names(examples, self.task.label_kind, fitted.names)
        unvalidated = fitted.training.get("selection", {}).get("method", "").startswith("fallback")
        how = "taken unvalidated (fewer than two training patients)" if unvalidated else "chosen on validation folds"
        title = f"{self.task.name}: threshold {fitted.threshold:.2f}, l2 {fitted.l2:g} and net weight {fitted.blend:g}"
        title += f" {how}"
        text = f"{title}\n{multilabel_text(metrics, names)}{self._extra_text(metrics)}"
        text += (
            f"visits without a {self.task.label_kind}: {len(blank)}, {metrics['given_without_labels']} given one "
            f"(the most probable is selected at {fitted.floor:.2f} or above)\n"
        )
        return heirloom.Report(metrics, text + "".join(f"{line}\n" for line in said))

    def _refusals(self, answers: list[dict[str, Any]]) -> int:
        """How many of ``answers`` the task's route would refuse (``Task.answer``), warning with the
        first: ``evaluate`` scores answers the route does not send, and a drug answered with no name
        scored 0.954 micro-F1 while its route failed 350 of 469 visits INTERNAL."""
        problems = [found for one in answers if (found := shape_problem(one, self.task.answer, "its prediction"))]
        if problems:
            log.warning(
                "%s: %d of %d answer(s) scored here would fail their route INTERNAL (docs/MEDICAL.md, 'Another model "
                "behind diagnosis and treatment'); the first: %s",
                self.task.name,
                len(problems),
                len(answers),
                problems[0],
            )
        return len(problems)

    def _warn_uncoded(self, uncoded: Counter[str], done: str) -> None:
        """Label events without a code are no labels: say so rather than drop them unseen."""
        if uncoded["events"]:
            kind = self.task.label_kind
            log.warning(
                "%s: %d %s(s) without a code are no labels; %d encounter(s) whose only %ss have no code are not %s",
                self.task.name,
                uncoded["events"],
                kind,
                uncoded["visits"],
                kind,
                done,
            )

    def _warn_unnamed(self, unnamed: list[str]) -> None:
        """Labels no training visit (nor the parent) gives a display are named by their code: say so."""
        if unnamed:
            log.warning(
                "%s: %d label(s) have no display in the training data (nor the parent's) and are named by their "
                "code in answers: %s%s",
                self.task.name,
                len(unnamed),
                ", ".join(unnamed[:20]) + (f" and {len(unnamed) - 20} more" if len(unnamed) > 20 else ""),
                self._unnamed_note(),
            )

    def _unnamed_note(self) -> str:
        """What a label named by its code means for the task (nothing more by default)."""
        return ""

    def _unassigned(self) -> str:
        """Why a source may yield no visit: resources it could not give a patient (a started
        model asks its source's ``stats``; one pass more, only when training has failed)."""
        ctx = getattr(self, "ctx", None)
        if ctx is None:
            return ""
        count = ctx.get(self.data, "source").stats().get("unassigned_resources")
        if not count:
            return ""
        return (
            f"; the source could not assign {count} resource(s) to a patient of their own unit "
            "(a patient's resources in another bundle?) and left them out (heirloom data stats)"
        )

    def _answers(self, visits: list[Visit]) -> list[dict[str, Any]]:
        fitted = self._require()
        if not visits:
            return []
        found = [describe(one, self.task) for one in visits]
        rows = Rows.of(fitted.vocabulary.matrix(found))
        probs = average(probabilities(rows, fitted.weights), fitted.net, rows, fitted.blend)
        withheld = self._blocked(visits, fitted)
        blocked = [self._shown(row, drugs, probs, fitted) for row, drugs in enumerate(withheld)]
        chosen = decide(probs, fitted.threshold, fitted.floor)  # before the filter: a withheld top's next is not forced
        for row, drugs in enumerate(withheld):
            columns = [fitted.position[code] for code in drugs]
            probs[row, columns], chosen[row, columns] = -1.0, False
        chosen = chosen.tolist()
        order = probs.argsort(dim=1, descending=True, stable=True).tolist()
        scores = probs.tolist()
        answers = []
        for row, one in enumerate(visits):
            codes = [
                {
                    "code": fitted.labels[j],
                    "display": fitted.name(fitted.labels[j]),
                    "probability": round(scores[row][j], 4),
                    "selected": chosen[row][j],
                }
                for rank, j in enumerate(order[row])
                if scores[row][j] >= 0 and (rank < self.top or chosen[row][j])
            ]
            answers.append(
                {
                    "patient": one.record.id,
                    "encounter": one.encounter.id,
                    "date": one.encounter.date,
                    "codes": codes,
                    **self._explain(one, found[row], codes, blocked[row], fitted),
                }
            )
        return answers

    def _shown(
        self, row: int, drugs: dict[str, list[str]], probs: torch.Tensor, fitted: Fitted
    ) -> dict[str, list[str]]:
        """The withheld labels the answer would have shown (in the top ``top``, or selected)."""
        scores = probs[row]
        shown = {}
        for code, why in drugs.items():
            score = scores[fitted.position[code]]
            if score >= fitted.threshold or int((scores > score).sum()) < self.top:
                shown[code] = why
        return shown

    # -- what the tasks add -----------------------------------------------------------------
    def _blocked(self, visits: list[Visit], fitted: Fitted) -> list[dict[str, list[str]]]:
        """Per visit, the labels that must never be output and why (none by default)."""
        return [{} for _ in visits]

    def _explain(
        self, one: Visit, found: Description, codes: list[dict[str, Any]], blocked: dict[str, list[str]], fitted: Fitted
    ) -> dict[str, Any]:
        """Task-specific additions to one answer (none by default)."""
        return {}

    def _extra_metrics(self, examples: list[tuple[Visit, list[str]]], answers: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    def _extra_text(self, metrics: dict[str, Any]) -> str:
        return ""

    def _require(self) -> Fitted:
        if self._fitted is None:
            raise heirloom.HeirloomError(f"{self.task.name} model has no weights yet: fit it or load a state first")
        return self._fitted

    # -- state ----------------------------------------------------------------------------
    @property
    def format(self) -> str:
        return f"heirloom.medical-{self.task.name}/1"

    def state(self) -> heirloom.State:
        """Tensors ``weight`` (features x labels) and ``bias``, ``seen_patients`` (hashes of the
        patients trained on), and the net's ``net.*`` when its weight is above 0; metadata: labels
        and their names, the vocabulary (columns, bin edges), threshold, floor, l2, the net's weight
        ``blend``, configuration, training."""
        fitted = self._require()
        config = attrs.asdict(self, value_serializer=lambda _, __, v: list(v) if isinstance(v, tuple) else v)
        metadata = {
            "format": self.format,
            "labels": list(fitted.labels),
            "names": fitted.names,
            "vocabulary": fitted.vocabulary.to_json(),
            "threshold": fitted.threshold,
            "floor": fitted.floor,
            "l2": fitted.l2,
            "blend": fitted.blend,
            "config": config,
            "training": fitted.training,
        }
        tensors = {
            "weight": fitted.weights.weight,
            "bias": fitted.weights.bias,
            SEEN_TENSOR: seen.as_tensor(fitted.seen),
        }
        if fitted.net is not None and fitted.blend:
            tensors.update(fitted.net.tensors())
        return heirloom.State({k: t.detach().cpu().contiguous() for k, t in tensors.items()}, metadata)

    def check_parent(self, metadata: dict[str, Any]) -> list[tuple[str, str]]:
        """A parent of another model type, said by ``profile check`` and by ``train`` before the data is read."""
        return other_format(metadata, self.format, f"medical-{self.task.name}")

    def load(self, state: heirloom.State) -> None:
        self._fitted = self._unpack(state, "state")

    def _unpack(self, state: heirloom.State, what: str) -> Fitted:
        """A ``Fitted`` from a state, refusing other models' states, broken shapes and what ``state()`` never
        writes (``integrity``: a dtype, NaN weights, a repeated label, a threshold that is no number)."""
        metadata = state.metadata
        state.expect_format(self.format, f"medical-{self.task.name}", what)
        vocabulary = Vocabulary.from_json(metadata["vocabulary"])
        labels = integrity.labels_of(metadata, what)
        weight, bias = state.tensors.get("weight"), state.tensors.get("bias")
        expected = (len(vocabulary.columns), len(labels))
        if weight is None or bias is None or tuple(weight.shape) != expected or tuple(bias.shape) != (len(labels),):
            raise heirloom.HeirloomError(f"the {what} has missing or inconsistent tensors (expected weight {expected})")
        integrity.check_tensors(state.tensors, what)
        threshold = integrity.number_of(metadata, "threshold", 0.5, what)
        if threshold not in THRESHOLDS and not 0 < threshold < 1:
            raise heirloom.HeirloomError(f"the {what} has an invalid threshold {threshold!r}")
        floor = metadata.get("floor", 0.0)  # a state stored before the floor: 0, its rule (always one)
        if not isinstance(floor, int | float) or not 0 <= floor <= threshold:
            raise heirloom.HeirloomError(f"the {what} has an invalid floor {floor!r} (expected 0 to its threshold)")
        blend = metadata.get("blend", 0.0)
        if not isinstance(blend, int | float) or not 0 <= blend <= 1:
            raise heirloom.HeirloomError(f"the {what} has an invalid net weight 'blend' {blend!r} (expected 0 to 1)")
        if (l2 := integrity.number_of(metadata, "l2", 1.0, what)) <= 0:
            raise heirloom.HeirloomError(f"the {what}'s metadata 'l2' is {l2!r}, expected above 0")
        return Fitted(
            labels,
            integrity.names_of(metadata, what),
            vocabulary,
            Weights(weight, bias),
            threshold,
            l2,
            dict(metadata.get("training", {})),
            float(blend),
            net_from_state(state, what, len(vocabulary.columns), len(labels)) if blend else None,
            seen.hashes_of(state, SEEN_TENSOR, what),
            float(floor),
        )


def label_names(examples: Iterable[tuple[Any, Any]], kind: str, known: dict[str, str]) -> dict[str, str]:
    """Each label's name: the display its ``kind`` events give it most often in ``examples``, else
    ``known``'s (the parent's). The last display seen named it (a site's other language, another
    dose), and an event with no code (a text-only condition) named ``None``, which no state stores."""
    shown: dict[str, Counter[str]] = {}
    for one, _ in examples:
        for event in one.at:
            if event.kind == kind and event.code and event.display:
                shown.setdefault(event.code, Counter())[event.display] += 1
    return {**known, **{code: displays.most_common(1)[0][0] for code, displays in shown.items()}}


def _prior(vocabulary: Vocabulary, labels: list[str], parent: Fitted | None) -> Weights:
    """Zeros, or the parent's weights and biases in the corner of the columns and labels it knew
    (a warm start keeps the parent's columns and labels first, in its order), those biases anchored."""
    import torch

    weight, bias = torch.zeros(len(vocabulary.columns), len(labels)), torch.zeros(len(labels))
    anchored = torch.zeros(len(labels))
    if parent is not None:
        rows, cols = parent.weights.weight.shape
        weight[:rows, :cols] = parent.weights.weight
        bias[:cols] = parent.weights.bias
        anchored[:cols] = 1.0
    return Weights(weight, bias, anchored)


def _lineage(labels: list[str], parent: Fitted | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    return {
        "kept_labels": len(parent.labels),
        "added_labels": [label for label in labels if label not in parent.labels],
    }


@attrs.define(kw_only=True)
class DiagnosisModel(MultiLabelModel):
    """Predicts the conditions diagnosed at an encounter (SNOMED CT codes), from sex, age,
    the patient's history before the encounter, the encounter's class and type and the
    observations recorded at it (never its reason, conditions, procedures or prescriptions)."""

    task = DIAGNOSIS


def _unit(unit: str | None) -> str:
    """A unit as a warning quotes it: ``in 'mg/dL'``, or ``without a unit`` (a value recorded with none)."""
    return "without a unit" if unit is None else f"in {unit!r}"
