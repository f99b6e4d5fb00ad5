"""``heirloom models promote --if-better METRIC --rescore PROFILE``: the gate on today's data.

The stored gate compares the validation scores each version got when it was trained, so it
refuses once the data changed (a new FHIR export adds patients to the validation split, new
ratings move pairs between splits). Rescoring evaluates the candidate and the alias holder on
the profile's validation records as they are now, one after the other, and compares those.
"""

from __future__ import annotations

from heirloom.cli.common import get_kernel, resolve_or_exit
from heirloom.core.errors import HeirloomError
from heirloom.core.profile import dotted
from heirloom.store.artifacts import Artifact, ArtifactStore
from heirloom.store.compare import PromotionRefused, read_metric
from heirloom.store.refs import RefError
from heirloom.store.training import evaluate, model_specs


def rescored(
    profile: str, store: ArtifactStore, artifact: Artifact, metric: str, split: str, *, candidate: bool
) -> float:
    """``metric`` of ``artifact`` on ``split`` of PROFILE's data now. RefError when PROFILE is not
    the artifact's project or store, or the ``candidate`` reports no such metric (a typo);
    PromotionRefused when the holder reports none or cannot be scored."""
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
    return value
