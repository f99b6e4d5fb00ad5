"""Optional hooks a component may implement, asked where the profile is checked.

A model's word on the parent its ``inherit`` names, asked before any record is read:
``fit`` refuses a parent it cannot use (another type's state, other hashing settings), but only once
``train`` had read the data, with exit 1 and no file, while ``profile check`` passed (checker 275 F6).
A model class may implement the optional ``check_parent(metadata)`` (docs/PLUGINS.md): given the
parent state's metadata (its tensors unread), it returns ``(setting, problem)`` pairs, as
``Api.check`` does; ``profile check`` and ``train`` put each on the model's key, with its file.
Any component may implement ``check_profile(profile)`` likewise: what it finds wrong with the rest
of the profile that no reference field can say (a feedback source naming an api the profile lacks).
Here too is the parent an ``inherit`` names (``parent_of``), a plugin's pretrained state among them,
and ``warm_start_parent``, a model's reading of it that refuses a damaged one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from heirloom.core.components import State
from heirloom.core.errors import ForeignState, HeirloomError, PluginError, Problem, described
from heirloom.core.paths import home
from heirloom.core.system import field_pairs
from heirloom.store.content import state_digest, state_metadata
from heirloom.store.refs import RefError, typo_of

T = TypeVar("T")

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ComponentSpec, ResolvedProfile
    from heirloom.store.artifacts import Artifact, ArtifactStore

log = logging.getLogger(__name__)


PRETRAINED = "pretrained:"
#: ``inherit = "served"``: the version the model itself serves (``serve`` key, else the latest).
SERVED = "served"


class PretrainedFailed(HeirloomError):
    """A plugin's pretrained loader raised, or returned something other than a ``heirloom.State``: its plugin's bug."""


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
    state, plugin = pretrained_state(kernel, ref)
    return import_pretrained(store, ref.removeprefix(PRETRAINED), state, {plugin.distribution: plugin.version or "?"})


def unstored_parent(
    kernel: Kernel, profile: ResolvedProfile, specs: list[ComponentSpec], store: ArtifactStore | None, missing: str
) -> None:
    """RefError (``FILE: KEY: why``) for the first of ``specs`` whose ``inherit`` names a version ``store`` lacks
    (``store`` None: there is none yet, ``missing`` says why), asked before ``train`` makes the store: a train refused
    there made one (ARTIFACTS.md: a refused train makes none; a mistyped HEIRLOOM_STORE became an empty store, checker
    h359 F1). Not asked of ``served`` or the latest of another model trained in the same run; of a pretrained state,
    only whether a plugin registers it."""
    own = {spec.name: f"{profile.project}/{spec.name}" for spec in specs}
    for spec in specs:
        ref = spec.keys.inherit
        if not ref or ref == SERVED or ref in set(own.values()) - {own[spec.name]}:
            continue
        named = ref.partition("@")[0]
        try:
            if ref.startswith(PRETRAINED):  # one no plugin registers: refused before the store is made (v37 F5)
                kernel.plugins.pretrained(ref.removeprefix(PRETRAINED))
                continue
            if store is None:
                raise RefError(missing)
            store.resolve(ref)  # an alias it lacks is said with the promote that sets it (artifacts.py)
        except (RefError, PluginError) as exc:
            unknown = not isinstance(exc, PluginError) and (store is None or not store.list(*named.split("/")))
            said = not_stored(kernel, profile, spec.name, named, store, missing) if unknown else str(exc)
            key = f"{spec.key}.inherit"
            raise RefError(f"{profile.raw.provenance.get(key, profile.raw.file)}: {key}: {said}") from None


def not_stored(
    kernel: Kernel, profile: ResolvedProfile, model: str, named: str, store: ArtifactStore | None, missing: str
) -> str:
    """Why model ``model``'s parent ``named``, of which no version is stored, cannot be inherited, and what to do.
    The model itself: nothing trains it first, ``served`` is how to write it (checker h447 F1: a stored model far off
    was offered). Else the store (``missing``: why there is none), a stored name one typo off (a name further off may
    be one not trained yet, as ``profile check`` holds: h447 F6), and the command that trains it into this store."""
    if named == f"{profile.project}/{model}":
        return (
            f"no version of {named!r} yet, and it is this model itself, which nothing trains first: write "
            'inherit = "served" to warm-start from the version it serves (its first train fits from scratch)'
        )
    if store is None:
        return f"no model {named!r} in the store: {missing}{train_first(kernel, profile, named)}"
    known = sorted({f"{a.project}/{a.model}" for a in store.list()})
    listed = f"(models: {', '.join(known) or 'none'})"
    typo = typo_of(named, known)  # a typo is no parent to train first: that stored one more version (v38 F3)
    return f"no model {named!r} in the store at {store.root}{typo} {listed}" + (
        "" if typo else train_first(kernel, profile, named)
    )


def train_first(kernel: Kernel, profile: ResolvedProfile, named: str) -> str:
    """``; train it first: heirloom train PROFILE`` for a parent ``project/model`` not stored whose project is
    another profile's name (a shipped one: ``banking-intents-core``) or, else, the ``project`` of the one profile
    whose name begins with it (``finance/sentiment``: ``finance-sentiment``, checker h429 F6); "" otherwise."""
    project = named.partition("/")[0]
    if project == profile.project:
        return ""
    try:
        found = [project] if kernel.loader.find(project) is not None else []
    except HeirloomError:  # two plugins register the name: no one command to name
        return ""
    found = found or [name for name in _named_after(kernel, project) if _project_of(kernel, name) == project]
    if len(found) != 1 or not _trains(kernel, found[0], named.partition("/")[2]):
        return ""
    return f"; train it first: heirloom train {found[0]}{_into(kernel, profile, found[0])}"


def _trains(kernel: Kernel, name: str, model: str) -> bool:
    """Whether profile ``name`` has a model ``model``: ``finance/sentiment2`` was told to train finance-sentiment,
    which stores finance/sentiment (checker v38 F3)."""
    try:
        models = kernel.load_profile(name).data.get("models")
    except HeirloomError:
        return False
    return isinstance(models, dict) and model in models


def _into(kernel: Kernel, profile: ResolvedProfile, name: str) -> str:
    """`` --set store.path=PATH`` where profile ``name`` keeps its versions in another store than ``profile`` (a
    ``[store] path`` of either, no ``HEIRLOOM_STORE``): trained as the hint said, the parent went to the other store
    and the same error came back (checker h447 F2); "" where the two share one, or ``name`` does not resolve."""
    if os.environ.get("HEIRLOOM_STORE"):
        return ""
    try:
        theirs = kernel.resolve(name).settings["store"].path
    except HeirloomError:
        return ""
    ours = profile.settings["store"].path
    return "" if theirs == ours else f" --set store.path={shlex.quote(ours or str(home() / 'store'))}"


def _named_after(kernel: Kernel, project: str) -> list[str]:
    """The available profiles whose name begins ``PROJECT-`` (read only on this error's path: it imports plugins)."""
    return [entry["name"] for entry in kernel.available_profiles() if entry["name"].startswith(f"{project}-")]


def _project_of(kernel: Kernel, name: str) -> str | None:
    """The project profile ``name`` sets (unvalidated: its data may be missing here), None if it cannot be read."""
    try:
        raw = kernel.load_profile(name)
    except HeirloomError:
        return None
    return str(raw.data.get("project", raw.name))


def pretrained_state(kernel: Kernel, ref: str) -> tuple[State, Any]:
    """The state ``pretrained:NAME`` loads, and the plugin that registered it. A loader that raises or returns
    anything else (a plain dict of weights) is a PretrainedFailed naming it and its plugin: the model that inherits
    it never ran, and the store's error on a dict was blamed on the model's plugin."""
    load, plugin = kernel.plugins.pretrained(ref.removeprefix(PRETRAINED))
    try:
        state = load()
    except Exception as exc:  # a plugin's loader may raise anything: name it
        raise PretrainedFailed(f"{ref} (from plugin {plugin.label}) failed to load: {described(exc)}") from exc
    if not isinstance(state, State):
        wrong = f"returned a {type(state).__name__} ({state!r:.80}), not a heirloom.State"
        raise PretrainedFailed(f"{ref} (from plugin {plugin.label}): its loader {wrong} (a plugin bug?)")
    try:  # a numpy scalar in its metadata: said here, naming the loader, not by train as exit 1 (v37 F6)
        state_metadata(state)
    except HeirloomError as exc:
        raise PretrainedFailed(f"{ref} (from plugin {plugin.label}): its state cannot be stored: {exc}") from None
    return state, plugin


def import_pretrained(store: ArtifactStore, name: str, state: State, versions: dict[str, str]) -> Artifact:
    """``pretrained/NAME`` in the store (once per distinct state), so the lineage of a model
    that started from a plugin's pretrained state names that state and its digest."""
    latest = next(iter(store.list("pretrained", name)[-1:]), None)
    if latest is not None and latest.digest == state_digest(state):
        return latest
    plugin_versions = {dist: version for dist, version in versions.items() if dist}
    return store.put("pretrained", name, state, model_type="pretrained", plugin_versions=plugin_versions)


def checks_parents(spec: ComponentSpec) -> bool:
    """Whether ``spec``'s model type implements the optional ``check_parent`` hook."""
    return callable(getattr(spec.cls, "check_parent", None))


def parent_problems(
    profile: ResolvedProfile, spec: ComponentSpec, parent: str, model_type: str, metadata: dict[str, Any]
) -> list[Problem]:
    """The problems ``spec``'s model finds with ``parent`` (a ref, of ``model_type``), each at its key and file."""
    return ask(profile, spec, "check_parent", metadata, said=f"{parent_named(parent, model_type, spec)}: ")


def parent_named(ref: str, model_type: str, spec: ComponentSpec) -> str:
    """A parent as errors name it: its ref, and its model type where that is not ``spec``'s own."""
    return ref + (f" is of model type {model_type}" if model_type != spec.use else "")


def ask(profile: ResolvedProfile, spec: ComponentSpec, hook: str, *args: Any, said: str = "") -> list[Problem]:
    """Each ``(field, problem)`` the optional method ``hook`` of ``spec``'s component returns (none where its
    class lacks it), at ``spec``'s key and the file that set it, ``said`` before the problem. The component is
    constructed from the profile, not started; what the method raises is a problem naming it (a plugin's bug)."""
    if not callable(getattr(spec.cls, hook, None)):
        return []
    try:
        component = profile.instantiate(spec)
        found = field_pairs(component, hook, getattr(component, hook)(*args))
    except Exception as exc:  # a plugin's bug is a problem naming it, not a crash of check or train
        log.warning("%s.%s raised", spec.cls.__name__, hook, exc_info=True)
        found = [("use", f"{spec.cls.__name__}.{hook} raised {type(exc).__name__}: {exc} (a plugin bug?)")]
    problems = []
    for field, message in found:
        key = f"{spec.key}.{field}"
        shown = profile.raw.hide_secrets(key, f"{said}{message}")  # a ${VAR}'s value as written (h411 F1)
        problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, shown))
    return problems


@contextlib.contextmanager
def naming_a_foreign_parent(spec: ComponentSpec, parent: Artifact | None) -> Iterator[None]:
    """A fit refusing its parent (``ForeignState``) names the ``inherit`` key, the parent and,
    of another model type, what it is: the model cannot know these. Only that error: a retriever
    inheriting an encoder is normal, and its data errors were blamed on ``inherit``."""
    try:
        yield
    except ForeignState as exc:
        if parent is None:
            raise
        raise HeirloomError(f"{spec.key}.inherit: {parent_named(parent.ref, parent.model_type, spec)}: {exc}") from None


def warm_start_parent(parent: State | None, unpack: Callable[[State], T]) -> T | None:
    """``unpack(parent)`` for a model's ``fit`` (None without a parent). A parent ``unpack`` refuses as damaged
    (a HeirloomError: NaN weights, a tensor of another dtype, a repeated label) is refused saying how to train
    without it, since its damage is no state to build on unsaid; ``ForeignState`` passes as it is: ``train``
    names the ``inherit`` key and the parent's model type (``naming_a_foreign_parent``)."""
    if parent is None:
        return None
    try:
        return unpack(parent)
    except ForeignState:
        raise
    except HeirloomError as exc:
        raise HeirloomError(f'{exc}; set the model\'s inherit = "" to fit without it') from None
