"""Comparing versions by their scores: the gate of ``heirloom models promote --if-better``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heirloom.core.errors import HeirloomError
from heirloom.core.schema import did_you_mean
from heirloom.store.refs import RefError

if TYPE_CHECKING:
    from heirloom.store.artifacts import Artifact

#: The splits a version is scored on: validation gates promotion, test is for reporting.
VALIDATION = "validation"
TEST = "test"
SPLITS = (VALIDATION, TEST)
#: A report's count of the records it was given that its score left out as ones the version trained
#: on (or kept from the validation records its fit was given), and of the records given (PLUGINS.md): a
#: recommender scored again after appended ratings moved its training pairs into validation leaves them
#: out; one trained on today's split, none.
LEFT_OUT, LEFT_OUT_OF = "left_out", "left_out_of"
#: Two scores whose left-out shares differ by more than this are on clearly different records.
SAME_RECORDS = 0.01
#: A report's count of the scored records the version or an ancestor trained on (PLUGINS.md).
SEEN_IN_TRAINING = "seen_in_training"
#: The counts of records a report holds under the kernel's names (a dotted path ending in one: ``per_class.X.support``),
#: with what each counts: no score, so ``--if-better`` refuses them (it promoted the version that had trained on
#: more validation texts) and leaves them out of the metrics it offers. A plugin's report puts its counts of
#: records under these names, or one ending in ``_support`` (``oos_support``: how many out-of-scope texts were
#: scored; PLUGINS.md); any other number is taken as a score.
COUNTS = {
    "support": "how many records were scored",
    SEEN_IN_TRAINING: "how many scored records the version or an ancestor trained on",
    LEFT_OUT: "how many records its score left out",
    LEFT_OUT_OF: "how many records it was given to score",
    "examples": "how many examples there were",
    "tied": "how many labels tied as the most frequent",
}
#: Reports' tables of a baseline kept beside the version's own scores (the text models' ``majority``: always
#: answering the most frequent training label), or scores named after one (the recommender's
#: ``popularity_ndcg_at_10``): what the data allows, not how good the version is (h443 F3, v37 F1).
BASELINES = frozenset({"majority", "popularity"})
#: Settings a version chose, which reports keep beside its scores (the medical models' ``threshold``): no score,
#: so ``--if-better`` refuses them (it promoted a version by its smaller ``l2``: checker v37 F1).
SETTINGS = frozenset({"threshold", "l2", "blend", "floor", "learning_rate", "epochs", "temperature"})
#: Counts the shipped plugins stored under other names before they were named as counts (SUPPORT.md): a store
#: from then still holds them, and ``--if-better`` promoted on them as scores.
FORMER_COUNTS = {
    "oos_examples": "oos_support",
    "in_scope_examples": "in_scope_support",
    "queries_without_documents": "unanswerable_support",
    "queries": "support",
}

#: Scores, not errors (a dotted metric's last part): --lower-is-better on one promoted the worse version.
_SCORES = (  # in_scope_accuracy fell 0.98 -> 0.00, every in-scope customer handed off, unsaid (checker h387 F1)
    "accuracy f1 macro_f1 micro_f1 weighted_f1 samples_f1 precision recall auc map mrr mrr_at_10 ndcg_at_10 p_at_5 "
    "oos_recall in_scope_accuracy jaccard recall_at_5 precision_at_10 recall_at_10 map_at_10 cold_ndcg_at_10"
)
HIGHER_IS_BETTER = frozenset(_SCORES.split())
#: How far a score of HIGHER_IS_BETTER may fall below the previous version's, on the same records, before
#: ``heirloom train`` warns (six resolutions took a support intent model's oos_recall 0.5875 -> 0.1875, unsaid).
FALL = 0.1


class PromotionRefused(HeirloomError):
    """``promote(if_better=...)`` declined: the candidate is not better, or not comparable."""


def evaluation_key(source: str, split: str) -> str:
    """The ``data_fingerprints`` key of the records a version was scored on: ``SOURCE:SPLIT``."""
    return f"{source}:{split}"


def scores(artifact: Artifact, split: str) -> dict[str, Any] | None:
    """The metrics ``artifact`` got on ``split``: ``metrics`` for test, ``metrics["validation"]``
    for validation (None when it was trained without a validation split)."""
    if split == TEST:
        return artifact.metrics
    found = artifact.metrics.get(VALIDATION)
    return found if isinstance(found, dict) else None


def evaluated_on(artifact: Artifact, split: str, *, whole: bool = False) -> dict[str, str]:
    """Fingerprints of the records ``artifact`` was scored on for ``split``.

    Versions stored before split fingerprints existed recorded only whole sources; for
    them (or with ``whole``) the test comparison falls back to those.
    """
    suffix = f":{split}"
    found = {} if whole else {key: value for key, value in artifact.data_fingerprints.items() if key.endswith(suffix)}
    if not found and split == TEST:
        return {key: value for key, value in artifact.data_fingerprints.items() if ":" not in key}
    return found


def same_records(ours: dict[str, str], theirs: dict[str, str]) -> bool:
    """Whether two ``evaluated_on`` answers name the same records: their fingerprints, whatever sources' names hold
    them (a csv source's records read through a ``union`` with the feedback, as ITERATION.md sets it up, are the
    same records: every version after that change was refused as scored on other data, checker h443 F1)."""
    return sorted(ours.values()) == sorted(theirs.values())


def metric_paths(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path to a number in ``metrics`` (``per_class.negative.f1``): the names
    ``--if-better`` accepts, for a did-you-mean."""
    paths = []
    for name, value in metrics.items():
        if isinstance(value, dict):
            paths += metric_paths(value, f"{prefix}{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            paths.append(f"{prefix}{name}")
    return paths


def metric_value(artifact: Artifact, metric: str, split: str = TEST, *, candidate: bool = False) -> float:
    """``metric`` (dotted paths reach into nested dicts) of ``artifact`` on ``split``, a number.
    PromotionRefused when it has none; for the ``candidate`` of a promotion, RefError: the
    metric names nothing (a typo), which is the caller's mistake, not a refusal."""
    metrics = scores(artifact, split)
    if not metrics:  # None: no such split; {}: an empty one (too few records to hold any out)
        if candidate and split != TEST and (named := scores(artifact, TEST)):  # a typo said as one: exit 2, not 3
            read_metric(named, metric, f"{artifact.ref} has no numeric metric", candidate=True)  # (h389 F2)
        raise PromotionRefused(
            f"metrics are not comparable: {artifact.ref} has no validation metrics (its source had no "
            f"validation split, or an empty one, when it was trained); retrain it with one that holds records, "
            f"or compare test metrics with --on test (choosing by test scores makes them optimistic)"
        )
    return read_metric(metrics, metric, f"{artifact.ref} has no numeric {split} metric", candidate=candidate)


def read_metric(metrics: dict[str, Any], metric: str, missing: str, *, candidate: bool = False) -> float:
    """``metric`` of a report, a number: its own key, else a dotted path into nested dicts.
    Else ``missing`` leads the error: RefError for a ``candidate`` (the metric names nothing: a
    typo, the caller's mistake), PromotionRefused for a holder (not comparable) and for a null one,
    which names a score the version did not measure (oos_recall with no out-of-scope texts), no typo."""
    offered = refuse_no_score(metric, metrics)
    value: Any = metrics
    for part in [metric] if metric in metrics else metric.split("."):
        value = value.get(part, ...) if isinstance(value, dict) else ...  # ...: absent, None: null
    if value is None:
        raise PromotionRefused(f"metrics are not comparable: {missing} {metric!r}: it is null (not measured)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        paths = [path for path in metric_paths(metrics) if not path.startswith(f"{VALIDATION}.")]
        paths = [path for path in paths if _score(path.rsplit(".", 1)[-1], 0) and not _baseline(path)]
        problem = f"{missing} {metric!r}{did_you_mean(metric, paths)} {offered}"
        if value is not ... and not isinstance(value, dict):  # one put stored: "metrics: none" hid it (v42 F5)
            problem = f"{missing} {metric!r}: it is {value!r:.40} ({type(value).__name__}), no number"
        if candidate:
            raise RefError(problem)
        raise PromotionRefused(f"metrics are not comparable: {problem}")
    return float(value)


def refuse_no_score(metric: str, metrics: dict[str, Any]) -> str:
    """RefError for a ``metric`` no score by its name, whatever a report holds (a count, a baseline's score, a
    setting), offering the scores of ``metrics``; else that offer. Asked before a rescore too (checker v38 F6)."""
    names = sorted(name for name, v in metrics.items() if _score(name, v))
    offered = f"(metrics: {', '.join(names) or 'none'})"
    if counted := counts(metric.rsplit(".", 1)[-1]):
        raise RefError(f"{metric!r} is a count ({counted}), not a score: --if-better compares scores {offered}")
    if baseline := _baseline(metric):
        raise RefError(
            f"{metric!r} is the {baseline!r} baseline's score, not the version's: --if-better compares the "
            f"version's scores {offered}"
        )
    if metric.rsplit(".", 1)[-1] in SETTINGS:
        raise RefError(f"{metric!r} is a setting the version chose, not a score: --if-better compares scores {offered}")
    return offered


def _score(name: str, value: Any) -> bool:
    """Whether a report's top-level ``name`` holds a score ``--if-better`` offers: a number, not a count, a
    baseline's or a setting."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and not counts(name) and not _baseline(name) and name not in SETTINGS


def _baseline(metric: str) -> str:
    """The baseline (``BASELINES``) a dotted ``metric`` reaches into or its last part is named after
    (``popularity_ndcg_at_10``), else ""."""
    parts = metric.split(".")
    return next((part for part in [*parts[:-1], parts[-1].partition("_")[0]] if part in BASELINES), "")


def counts(name: str) -> str:
    """What a metric ``name`` counts, for a name of COUNTS or FORMER_COUNTS or one ending in ``_support`` or
    ``_examples`` (``support: how many records were scored``); "" for a name that is no count."""
    if name in FORMER_COUNTS:
        return f"{name}: {counts(FORMER_COUNTS[name])}, as versions stored before named it"
    if name in COUNTS:
        return f"{name}: {COUNTS[name]}"
    return f"{name}: how many of its kind of records were scored" if name.endswith(("_support", "_examples")) else ""


def left_out_note(new: dict[str, Any], candidate: str, old: dict[str, Any], holder: str) -> str:
    """How many records each score (``new`` of ``candidate``, ``old`` of ``holder``) left out, when
    either left out any ("" else); PromotionRefused when the shares differ by more than
    SAME_RECORDS: the two were scored on clearly different records (a shop's gate printed a gain of
    0.063 where, on the holder's own pairs, it was 0.007)."""
    counts = [(metrics.get(LEFT_OUT), metrics.get(LEFT_OUT_OF)) for metrics in (new, old)]
    if not all(isinstance(n, int) and isinstance(of, int) and of > 0 for n, of in counts) or not any(
        n for n, _ in counts
    ):
        return ""
    (ours, of_ours), (theirs, of_theirs) = counts
    had = "records it trained on or kept from validation"
    note = f"{holder}'s score left out {theirs} of {of_theirs} {had}, {candidate}'s {ours} of {of_ours}"
    if abs(ours / of_ours - theirs / of_theirs) > SAME_RECORDS:
        raise PromotionRefused(
            f"metrics are not comparable: {note}, so the two were scored on different records; train the "
            f"holder's settings again on today's data, promote that version without --if-better (the holder, refitted "
            f"on today's records) and gate this one against it, or check `heirloom eval` and promote without it"
        )
    return f"; {note}"


def beats(new: float, old: float, *, lower_is_better: bool = False) -> bool:
    """Whether a score of ``new`` is strictly better than ``old``: higher, or lower for an
    error metric (mae, rmse, loss); a tie keeps the holder."""
    return new < old if lower_is_better else new > old


def direction(lower_is_better: bool) -> str:
    """How a refusal names the comparison: `` (lower is better)`` for an error metric, else nothing."""
    return " (lower is better)" if lower_is_better else ""


def figures(*values: float) -> list[str]:
    """Scores as promote prints them: to 4 places, as ``heirloom train`` and the docs show them (``:g``
    printed ``0.967742 -> 1``); in full where 4 places would show two different scores as one."""
    shown = [f"{value:.4f}" for value in values]
    return shown if len(set(shown)) == len(set(values)) else [str(value) for value in values]


def check_better(
    candidate: Artifact,
    holder: Artifact | None,
    metric: str,
    split: str = VALIDATION,
    *,
    lower_is_better: bool = False,
) -> None:
    """Raise PromotionRefused unless ``candidate`` beats ``holder`` on ``metric`` (higher wins,
    or lower with ``lower_is_better``) on ``split``, scored on the same records (equal
    fingerprints of that split only: what else went into training, such as feedback, does
    not matter).

    With no holder, only checks that ``candidate`` has the metric (a typo fails early).
    """
    if split not in SPLITS:
        raise HeirloomError(f"cannot compare on split {split!r}; choose one of {', '.join(SPLITS)}")
    new = metric_value(candidate, metric, split, candidate=True)
    if holder is None:
        return
    old = metric_value(holder, metric, split)
    ours, theirs = evaluated_on(candidate, split), evaluated_on(holder, split)
    older = [a.ref for a, found in ((candidate, ours), (holder, theirs)) if not any(":" in key for key in found)]
    whole = ""
    if split == TEST and len(older) == 1:  # stored before test fingerprints: compare whole sources on both
        ours, theirs = evaluated_on(candidate, split, whole=True), evaluated_on(holder, split, whole=True)
        whole = f" (of whole sources: {older[0]} was stored before heirloom recorded the test records' own)"
    if not ours and not theirs:
        raise PromotionRefused(
            f"metrics are not comparable: neither {candidate.ref} nor {holder.ref} records the {split} data "
            "it was scored on"
        )
    differing = [name for name in sorted(ours.keys() | theirs.keys()) if ours.get(name) != theirs.get(name)]
    if differing and not same_records(ours, theirs):
        details = "; ".join(f"{name}: {ours.get(name, 'absent')} vs {theirs.get(name, 'absent')}" for name in differing)
        raise PromotionRefused(
            f"metrics are not comparable: {candidate.ref} and {holder.ref} were scored on different {split} data "
            f"({details}){whole}; --rescore PROFILE scores both again on the profile's data as it is now"
        )  # the way on was in --help and ITERATION.md alone (checker h424)
    left_out_note(scores(candidate, split) or {}, candidate.ref, scores(holder, split) or {}, holder.ref)
    if not beats(new, old, lower_is_better=lower_is_better):
        raise PromotionRefused(
            f"{candidate.ref} does not beat {holder.ref} on {split} {metric}{direction(lower_is_better)}: "
            "{} vs {}".format(*figures(new, old))
        )


def fallen(new: Artifact, old: Artifact) -> list[tuple[str, str]]:
    """``(METRIC, "SPLIT METRIC OLD -> NEW")`` for each top-level score of HIGHER_IS_BETTER that ``new`` got FALL
    or more below ``old`` on the same records of a split (equal fingerprints of that split); none where they differ."""
    said = []
    for split in SPLITS:
        ours, theirs = scores(new, split) or {}, scores(old, split) or {}
        if not (records := evaluated_on(new, split)) or not same_records(records, evaluated_on(old, split)):
            continue
        for name in sorted(HIGHER_IS_BETTER & ours.keys()):
            before, after = theirs.get(name), ours.get(name)
            if _score(name, before) and _score(name, after) and before - after >= FALL:
                said.append((name, "{} {} {} -> {}".format(split, name, *figures(before, after))))
    return said
