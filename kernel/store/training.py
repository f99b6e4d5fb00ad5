"""``heirloom train`` and ``heirloom eval`` as functions: fit, evaluate, store with lineage.

Domain-free: the model and source contracts do the work. A model trains on the source
its ``data`` field names (or its only source reference): ``fit`` on the ``train`` split,
``evaluate`` on ``test``. The result is stored as a new version whose lineage records
the parent it warm-started from, the profile digest and the data fingerprint, so two
versions' metrics are comparable exactly when their data fingerprints match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from heirloom.core.components import NullProgress, Progress, Report, Source, references
from heirloom.core.errors import HeirloomError
from heirloom.store.artifacts import RefError, state_digest

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ComponentSpec, ResolvedProfile
    from heirloom.store.artifacts import Artifact, ArtifactStore


@attrs.frozen
class Trained:
    artifact: Artifact
    report: Report


def profile_digest(profile: ResolvedProfile) -> str:
    """sha256 of the resolved profile tree: which configuration produced a version."""
    canonical = json.dumps(profile.raw.data, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()


def data_source(spec: ComponentSpec, model: Any) -> str:
    """The source a model trains on: its ``data`` reference, else its only source reference."""
    sources = [(field, target) for field, kind, target in references(model) if kind == "source"]
    named = [target for field, target in sources if field == "data"]
    if named:
        return named[0]
    if len(sources) == 1:
        return sources[0][1]
    raise HeirloomError(
        f"{spec.key}: cannot tell which source to train on; name it in a field called 'data' "
        f"(source references: {', '.join(f'{f}={t}' for f, t in sources) or 'none'})"
    )


def model_specs(profile: ResolvedProfile, names: tuple[str, ...]) -> list[ComponentSpec]:
    """The profile's models (all, or the named ones in dependency order); unknown names fail."""
    models = [spec for spec in profile.components if spec.kind == "model"]
    unknown = sorted(set(names) - {spec.name for spec in models})
    if unknown:
        raise HeirloomError(
            f"profile {profile.name!r} has no model {', '.join(map(repr, unknown))} "
            f"(models: {', '.join(spec.name for spec in models) or 'none'})"
        )
    chosen = [spec for spec in models if not names or spec.name in names]
    return inheritance_order(profile.project, chosen)


def inheritance_order(project: str, specs: list[ComponentSpec]) -> list[ComponentSpec]:
    """``specs`` reordered so a model that inherits another model of this project
    (``inherit = "PROJECT/other"``) trains after it when both are trained now."""
    by_name = {spec.name: spec for spec in specs}
    ordered: list[ComponentSpec] = []
    placed: set[str] = set()

    def place(spec: ComponentSpec, chain: tuple[str, ...]) -> None:
        if spec.name in placed or spec.name in chain:
            return
        ref = spec.keys.inherit or ""
        owner, _, rest = ref.partition("/")
        parent = by_name.get(rest.partition("@")[0]) if owner == project else None
        if parent is not None:
            place(parent, (*chain, spec.name))
        placed.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        place(spec, ())
    return ordered


def _plugin_versions(kernel: Kernel, kinds_and_types: list[tuple[str, str]]) -> dict[str, str]:
    versions = {}
    for kind, use in kinds_and_types:
        info = kernel.plugins.provider(kind, use)
        if info is not None and info.distribution:
            versions[info.distribution] = info.version or "?"
    return versions


PRETRAINED = "pretrained:"
#: Records between two progress updates while a split streams into a model.
PROGRESS_EVERY = 256


def reading(records: Iterable[Any], progress: Progress, description: str) -> Iterator[Any]:
    """``records`` unchanged, counted on a progress bar as the model consumes them."""
    progress.start(description)
    pending = 0
    for record in records:
        yield record
        pending += 1
        if pending == PROGRESS_EVERY:
            progress.advance(pending)
            pending = 0
    progress.advance(pending)


#: ``inherit = "served"``: the version the model itself serves (``serve`` key, else the latest).
SERVED = "served"


def parent_of(kernel: Kernel, store: ArtifactStore, ref: str | None, served: str | None = None) -> Artifact | None:
    """The artifact an ``inherit`` ref names; ``pretrained:NAME`` comes from a plugin;
    ``served`` is the ``served`` ref (``project/model[@serve]``), None while nothing is stored."""
    if ref is None:
        return None
    if ref == SERVED:
        try:
            return store.resolve(served or "")
        except RefError:
            return None
    if not ref.startswith(PRETRAINED):
        return store.resolve(ref)
    name = ref.removeprefix(PRETRAINED)
    state, plugin = kernel.plugins.pretrained(name)
    return import_pretrained(store, name, state, {plugin.distribution: plugin.version or "?"})


def import_pretrained(store: ArtifactStore, name: str, state: Any, versions: dict[str, str]) -> Artifact:
    """``pretrained/NAME`` in the store (once per distinct state), so the lineage of a model
    that started from a plugin's pretrained state names that state and its digest."""
    latest = next(iter(store.list("pretrained", name)[-1:]), None)
    if latest is not None and latest.digest == state_digest(state):
        return latest
    plugin_versions = {dist: version for dist, version in versions.items() if dist}
    return store.put("pretrained", name, state, model_type="pretrained", plugin_versions=plugin_versions)


def train(
    kernel: Kernel, profile: ResolvedProfile, spec: ComponentSpec, store: ArtifactStore, progress: Progress
) -> Trained:
    """Fit ``spec`` (warm-started from its ``inherit`` ref), evaluate it, store a version."""
    served = f"{profile.project}/{spec.name}" + (f"@{spec.keys.serve}" if spec.keys.serve else "")
    parent = parent_of(kernel, store, spec.keys.inherit, served)
    parent_state = store.load(parent) if parent is not None else None
    if parent is not None:
        progress.log(f"{spec.key}: warm start from {parent.ref} ({parent.digest[:12]})")
    elif spec.keys.inherit == SERVED:
        progress.log(f"{spec.key}: nothing stored as {served} yet, so no warm start: fitting from scratch")
    with kernel.system(profile, only={("model", spec.name)}) as system:
        model = system.component(spec.name, "model")
        source_name = data_source(spec, model)
        source: Source = system.component(source_name, "source")
        train_split = reading(source.records("train"), progress, f"reading the train split of {source_name}")
        model.fit(train_split, parent=parent_state, progress=progress)
        test_split = reading(source.records("test"), progress, f"evaluating {spec.name} on the test split")
        report = model.evaluate(test_split)
        source_spec = next(s for s in system.specs if s.kind == "source" and s.name == source_name)
        artifact = store.put(
            profile.project,
            spec.name,
            model.state(),
            model_type=spec.use,
            parent=parent,
            profile_digest=profile_digest(profile),
            data_fingerprints={source_name: source.fingerprint()},
            metrics=report.metrics,
            plugin_versions=_plugin_versions(kernel, [("model", spec.use), ("source", source_spec.use)]),
        )
    return Trained(artifact, report)


def evaluate(
    kernel: Kernel, profile: ResolvedProfile, spec: ComponentSpec, progress: Progress | None = None
) -> tuple[str | None, Report]:
    """The served version of ``spec`` evaluated on its source's test split."""
    with kernel.system(profile, only={("model", spec.name)}, serve_models=True) as system:
        handle = system.model(spec.name)
        model, version = handle.current
        if version is None:
            raise HeirloomError(
                f"{profile.project}/{spec.name} has no stored version to evaluate; run: heirloom train {profile.name}"
            )
        source: Source = system.component(data_source(spec, model), "source")
        test_split = reading(source.records("test"), progress or NullProgress(), f"evaluating {version}")
        return version, model.evaluate(test_split)
