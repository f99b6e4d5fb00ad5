"""``heirloom models promote --if-better METRIC --rescore PROFILE``: the gate on today's data.

The stored gate compares the validation scores each version got when it was trained, so it
refuses once the data changed (a new FHIR export adds patients to the validation split, new
ratings move pairs between splits). Rescoring evaluates the candidate and the alias holder on
the profile's validation records as they are now, one after the other, and compares those, or
refuses when one score left out far more of them than the other (``left_out_note``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from heirloom.cli.common import get_kernel, resolve_or_exit
from heirloom.core.errors import HeirloomError
from heirloom.profile_toml import dotted
from heirloom.store.artifacts import Artifact, ArtifactStore
from heirloom.store.compare import (
    SEEN_IN_TRAINING,
    PromotionRefused,
    beats,
    direction,
    figures,
    left_out_note,
    metric_value,
    read_metric,
    refuse_no_score,
)
from heirloom.store.refs import RefError
from heirloom.store.training import evaluate, model_specs


def rescored(
    profile: str, store: ArtifactStore, artifact: Artifact, metric: str, split: str, *, candidate: bool
) -> tuple[float, dict[str, Any]]:
    """``metric`` of ``artifact`` on ``split`` of PROFILE's data now, and the report's metrics.
    RefError when PROFILE is not the artifact's project or store, or the ``candidate`` reports no
    such metric (a typo); PromotionRefused when the holder reports none or cannot be scored."""
    if candidate:  # a count, a setting or a typo, whatever the data now: before any scoring can fail (v38 F6)
        refuse_no_score(metric, artifact.metrics)
        with contextlib.suppress(PromotionRefused):  # none stored for the split, or a null: the rescore says (v39 F2)
            metric_value(artifact, metric, split, candidate=True)
    plain = resolve_or_exit(profile)  # its project and models first: a --set into a model it lacks says less
    if plain.project != artifact.project:
        raise RefError(f"--rescore {profile}: its project is {plain.project!r}, not {artifact.project!r}")
    model_specs(plain, (artifact.model,))  # RefError naming the models it has
    serve = dotted(["models", artifact.model, "serve"])  # models."sent.v2".serve: a name may hold a dot
    resolved = resolve_or_exit(profile, (f"{serve}={artifact.version}",), store=True)
    [spec] = model_specs(resolved, (artifact.model,))
    kernel = get_kernel()
    used = kernel.store(resolved).root
    if used.resolve() != store.root.resolve():
        raise RefError(f"--rescore {profile}: it uses the store {used}, not {store.root}")
    try:
        _, report, same = evaluate(kernel, resolved, spec, split)
    except HeirloomError as exc:  # no such split, no records, a version that does not load: not comparable
        raise PromotionRefused(f"metrics are not comparable: could not rescore {artifact.ref}: {exc}") from None
    missing = f"{artifact.ref} reports no numeric {split} metric"
    value = read_metric(report.metrics, metric, missing, candidate=candidate)  # a typo first: exit 2
    if candidate and same is False:  # the holder's would favour the holder; the candidate's, itself
        raise PromotionRefused(
            f"{artifact.ref} was scored on other {split} records when trained: it may have trained on some of "
            f"{profile}'s {split} records now, which would favour it; train it on {profile}'s data, or promote "
            "without --if-better"
        )
    return value, report.metrics


def rescored_gate(
    profile: str,
    store: ArtifactStore,
    target: Artifact,
    held: int | None,
    metric: str,
    split: str,
    *,
    lower_is_better: bool,
) -> str:
    """What promotion gained, scored on PROFILE's ``split`` now; PromotionRefused unless ``target``
    beats the version ``held`` there on the same records (a first holder, or ``target`` itself,
    only needs the metric)."""
    after, ours = rescored(profile, store, target, metric, split, candidate=True)
    if held is None or held == target.version:
        return f" ({split} {metric} now {figures(after)[0]})"
    holder = store.resolve(f"{target.project}/{target.model}@{held}")
    before, theirs = rescored(profile, store, holder, metric, split, candidate=False)
    note = left_out_note(ours, target.ref, theirs, holder.ref) + _seen_note(ours, target) + _seen_note(theirs, holder)
    if not beats(after, before, lower_is_better=lower_is_better):
        raise PromotionRefused(
            f"{target.ref} does not beat {holder.ref} on {split} {metric}{direction(lower_is_better)} of {profile}'s "
            "data now: {} vs {}{}".format(*figures(after, before), note)
        )
    was, now = figures(before, after)
    return f" (was {holder.ref}; {split} {metric} of {profile}'s data now {was} -> {now}{note})"


def _seen_note(metrics: dict[str, Any], artifact: Artifact) -> str:
    """How many of the records ``artifact``'s score counts it (or an ancestor) trained on, when any: a holder
    trained without a validation split was rescored on its own training records, a refusal said as a loss, and
    nothing said (checker h443 F2)."""
    seen = metrics.get(SEEN_IN_TRAINING)
    if not isinstance(seen, int) or isinstance(seen, bool) or seen <= 0:
        return ""
    return (
        f"; {artifact.ref}'s score counts {seen} of its {metrics.get('support', '?')} records as trained on by it or "
        f"an ancestor ({SEEN_IN_TRAINING}), which favours it"
    )
