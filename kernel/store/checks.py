"""Checks of a profile against the trained versions it would serve.

``heirloom profile check`` validates a profile on its own; some settings can only be
judged against a trained model (a monitor watching a label the model never predicts).
When the store holds the version a model table serves, each api that implements
``Api.check`` is asked about it, so the mistake shows before ``serve``, not as silence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heirloom.core.components import Api, references
from heirloom.core.errors import HeirloomError, Problem
from heirloom.core.serving import served_ref

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ResolvedProfile


def served_model_problems(kernel: Kernel, profile: ResolvedProfile) -> list[Problem]:
    """Problems the profile's apis find with the stored versions of the models they use.

    Opens the store and loads a model only when some api checks it; a model with no
    stored version is left out (there is nothing to check it against yet).
    """
    checking = [spec for spec in profile.components if spec.kind == "api" and spec.cls.check is not Api.check]
    if not checking:
        return []
    specs = {spec.name: spec for spec in profile.components if spec.kind == "model"}
    store = kernel.store(profile)
    loaded: dict[str, Any] = {}
    problems = []
    for spec in checking:
        api = profile.instantiate(spec)
        for _, kind, target in references(api):
            if kind == "model" and target not in loaded:
                loaded[target] = _stored(store, profile, specs[target])
        models = {name: loaded[name] for _, kind, name in references(api) if kind == "model" and loaded[name]}
        for field, message in api.check(models):
            key = f"{spec.key}.{field}"
            problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, message))
    return problems


def _stored(store: Any, profile: ResolvedProfile, spec: Any) -> Any:
    """A model instance holding the version ``spec`` serves, or None if none is stored."""
    try:
        artifact = store.resolve(served_ref(profile.project, spec))
    except HeirloomError:
        return None
    model = profile.instantiate(spec)
    model.load(store.load(artifact))
    return model
