"""``heirloom train`` and ``heirloom eval`` as functions: fit, evaluate, store with lineage.

Domain-free: the model and source contracts do the work. A model trains on the source
its ``data`` field names (or its only source reference). Three roles keep model selection
honest (docs/ITERATION.md): ``fit`` sees the ``train`` split (and, if its signature takes
``validation``, the validation split, to choose hyper-parameters); the fitted model is
scored on ``validation`` (what ``promote --if-better`` compares) and on ``test`` (what is
reported). Each score is stored with the fingerprint of the records it was computed on,
so two versions' metrics are comparable exactly when those fingerprints match, whatever
else (feedback, extra training data) went into training."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import itertools
import logging
import os
import shlex
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from heirloom.core.components import NullProgress, Progress, Report, Source, State, manager_name, references
from heirloom.core.errors import HeirloomError, PluginError, Problem, ProfileError
from heirloom.core.quota import quota_mb
from heirloom.core.schema import did_you_mean
from heirloom.core.serving import nothing_served, served_ref
from heirloom.profile_toml import dotted
from heirloom.splits import unknown_splits
from heirloom.store.compare import LEFT_OUT, LEFT_OUT_OF, SEEN_IN_TRAINING, TEST, VALIDATION, evaluation_key
from heirloom.store.content import STATE_FORMAT_KEY, state_digest
from heirloom.store.digest import profile_digest
from heirloom.store.memory_watch import MemoryWatch, watched_memory
from heirloom.store.outcome import Outcome
from heirloom.store.parents import SERVED, naming_a_foreign_parent, parent_of, parent_problems
from heirloom.store.reading import Evaluation, PluginBug, blaming_the_source, reading, score, source_splits
from heirloom.store.refs import RefError
from heirloom.suggest import disabled_by

log = logging.getLogger("heirloom.eval")

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.profile import RawProfile
    from heirloom.core.schema import ComponentSpec, ResolvedProfile
    from heirloom.store.artifacts import Artifact, ArtifactStore


@attrs.frozen
class Trained:
    """What ``train`` did: the stored (or reused) version and its scores."""

    artifact: Artifact
    #: The test split's report, printed for people (its metrics are the artifact's metrics).
    report: Report
    evaluations: tuple[Evaluation, ...]
    #: True when an identical version was already stored, so no new version was added.
    reused: bool = False
    #: False when that version was trained on other data that gave the same weights.
    same_data: bool = True


def data_source(spec: ComponentSpec, model: Any) -> str:
    """The source a model trains on: its ``data`` reference, else its only source reference."""
    sources = [(field, target) for field, kind, target in references(model) if kind == "source"]
    named = [target for field, target in sources if field == "data"]
    if named:
        return named[0]
    if len(sources) == 1:
        return sources[0][1]
    raise HeirloomError(
        f"{spec.key}: cannot tell which source its records come from; name it in a field called 'data' "
        f"(source references: {', '.join(f'{f}={t}' for f, t in sources) or 'none'})"
    )


def model_specs(profile: ResolvedProfile, names: tuple[str, ...]) -> list[ComponentSpec]:
    """The profile's models (all, or the named ones in dependency order); unknown names fail."""
    models = named_specs(profile, [spec for spec in profile.components if spec.kind == "model"], names, "model")
    return inheritance_order(profile.project, models)


def named_specs(
    profile: ResolvedProfile, found: list[ComponentSpec], names: tuple[str, ...], what: str
) -> list[ComponentSpec]:
    """``found`` (all, or the named ones, in their order); a name not in it is a RefError
    listing them (the command line exits 2)."""
    if unknown := sorted(set(names) - {spec.name for spec in found}):
        if off := [said for n in unknown if (said := disabled_by(profile.raw.disabled, dotted([f"{what}s", n])))]:
            raise RefError(f"profile {profile.name!r}: {'; '.join(off)}")  # it said "no model", with another's
        known = [spec.name for spec in found]
        raise RefError(
            f"profile {profile.name!r} has no {what} {', '.join(map(repr, unknown))}"
            f"{did_you_mean(unknown[0], known)} ({what}s: {', '.join(known) or 'none'})"
        )
    return [spec for spec in found if not names or spec.name in names]


def inheritance_order(project: str, specs: list[ComponentSpec]) -> list[ComponentSpec]:
    """``specs`` reordered so a model that inherits another model of this project
    (``inherit = "PROJECT/other"``) trains after it when both are trained now."""
    by_name = {spec.name: spec for spec in specs}
    ordered: list[ComponentSpec] = []
    placed: set[str] = set()

    def place(spec: ComponentSpec, chain: tuple[str, ...]) -> None:
        if spec.name in placed or spec.name in chain:
            return
        owner, _, rest = (spec.keys.inherit or "").partition("/")
        parent = by_name.get(rest.partition("@")[0]) if owner == project else None
        if parent is not None:
            place(parent, (*chain, spec.name))
        placed.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        place(spec, ())
    return ordered


def _plugin_versions(kernel: Kernel, kinds_and_types: list[tuple[str, str]]) -> dict[str, str]:
    found = [kernel.plugins.provider(kind, use) for kind, use in kinds_and_types]
    return {info.distribution: info.version or "?" for info in found if info is not None and info.distribution}


def _no_scores(split: str, progress: Progress) -> Evaluation:
    """What a version trained on data without ``split`` records gets for it: nothing, said so."""
    progress.log(f"the {split} split has no records: the version gets no {split} scores")
    return Evaluation(split, hashlib.sha256().hexdigest(), Report({}, f"no {split} records: nothing was scored"))


def _warn_if_not_apart(by_split: dict[str, Evaluation], source: str, progress: Progress) -> None:
    """A source whose validation and test records are the same ones ignores ``split`` (a plugin's
    bug): the version is stored, but its scores are not held out, and the gate compares nothing."""
    validation, test = by_split.get(VALIDATION), by_split[TEST]
    scored = any(type(value) is float for value in validation.report.metrics.values()) if validation else False
    if scored and validation.fingerprint == test.fingerprint:  # two splits with nothing scored are no two splits
        progress.log(
            f"warning: the validation and test splits of source {source!r} hold the same records: a source keeps "
            "them apart (validation carved from train, never from test), so these scores may not be held out"
        )


def _warn_if_the_parent_held_out_others(
    parent: Artifact | None, project: str, name: str, source: str, by_split: dict[str, Evaluation], progress: Progress
) -> None:
    """A warm start from the model's own version that was scored on other held-out records (a
    changed seed or fraction): its weights may hold records held out now, inflating every score
    of the new version and of each one warm-started from it, without a word until ``eval``. A
    report that counts them itself (``seen_in_training``) says so exactly: a recommender, which
    leaves the pairs it trained on out of its scores, was told its scores were optimistic."""
    if parent is None or (parent.project, parent.model) != (project, name):
        return
    for split, evaluation in by_split.items():
        if SEEN_IN_TRAINING in evaluation.report.metrics:
            continue
        before = parent.data_fingerprints.get(evaluation_key(source, split))
        if before is not None and before != evaluation.fingerprint:
            progress.log(
                f"warning: the parent {parent.ref} was scored on other {split} records ({before[:12]}, now "
                f"{evaluation.fingerprint[:12]}): if the split moved records (a changed seed or fraction), some it "
                f'trained on are held out now and these scores are optimistic; inherit = "" (TOML) or --set '
                f"{shlex.quote(dotted(['models', name, 'inherit']) + '=null')} fits from scratch"
            )
            return


def takes_validation(model: Any) -> bool:
    """Whether ``model.fit`` accepts a ``validation`` keyword (optional in the contract)."""
    parameters = inspect.signature(model.fit).parameters.values()
    return any(p.name == VALIDATION or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _identical(stored: list[Artifact], digest: str, record: dict[str, Any], source: str) -> Artifact | None:
    """One of a model's ``stored`` versions with the same content, scored on the same records, and either the same
    parent and the latest version, or being that parent (a warm start from ``served`` with nothing new). Its training
    data may differ (``source``'s fingerprint): a record the model leaves out (a text resolved ``out_of_scope``)
    changed that, not the weights, and each such train stored a copy. An older one is not named: a train undoing @2's
    data stored nothing, equal to @1, and the latest, served, stayed @2 (checker h441 F2)."""
    scored, latest = _scored(record["data_fingerprints"], source), max((a.version for a in stored), default=None)
    for artifact in stored:
        sibling = record["parent"] == artifact.parent and artifact.version == latest
        if (
            artifact.digest == digest
            and (record["parent"] == artifact.ref or sibling)
            and _scored(artifact.data_fingerprints, source) == scored
            and record["releases"].keys() <= artifact.plugin_versions.keys()  # an installed plugin's is recorded
        ):
            return artifact
    return None


def _scored(fingerprints: dict[str, str], source: str) -> dict[str, str]:
    """The fingerprints of the data a version was scored on: all but its training ``source``'s."""
    return {key: value for key, value in fingerprints.items() if key != source}


def _same_as(
    store: ArtifactStore, parent: Artifact | None, use: str, digest: str, data: tuple[str, str]
) -> Artifact | None:
    """``parent`` (the version the model serves) when it came from this very profile (``digest``) and ``data``
    (``(source, fingerprint)``): refitting it on what it has seen would store a copy of itself with drifted weights;
    else a version refitted from it so, which a refit would give again (the served one, of other settings, was
    refitted at every train until promoted: h418 F2). One lacking a plugin's release (trained before the package was
    installed) is it too: its weights are stored again recording the release, never refitted (checker v41 F1)."""
    if parent is None or parent.model_type != use:
        return None
    made_here = [parent, *(a for a in store.list(parent.project, parent.model) if a.parent == parent.ref)]
    same = (a for a in made_here if a.profile_digest == digest and a.model_type == use)
    return next((a for a in same if a.data_fingerprints.get(data[0]) == data[1]), None)


def _older_format(store: ArtifactStore, parent: Artifact, spec: ComponentSpec) -> int | None:
    """The state format ``parent`` was stored in when older than its type's: refitted though nothing is new, as it
    lacks what the upgrade keeps (the recommender's validation pairs, which the old state served on: checker 261)."""
    stored: int = store.metadata(parent).get(STATE_FORMAT_KEY, 1)
    return stored if stored < spec.cls.state_format else None


def train(
    kernel: Kernel,
    profile: ResolvedProfile,
    spec: ComponentSpec,
    store: ArtifactStore,
    progress: Progress,
    trained_now: Mapping[str, Artifact] = MappingProxyType({}),
) -> Trained:
    """Fit ``spec`` (warm-started from its ``inherit`` ref), score it on validation and
    test, and store a version, unless an identical one is stored already. ``trained_now``:
    the versions this run trained or found identical, by ``project/model``: an ``inherit``
    naming one so (its latest) means that one, not a later version of other data."""
    served = served_ref(profile.project, spec)
    key = f"{spec.key}.inherit"
    try:  # what it names, and its state: one of a format this model type cannot read is refused on the key too
        parent = trained_now.get(spec.keys.inherit or "") or parent_of(kernel, store, spec.keys.inherit, served)
        reads = spec.cls.state_format if parent is not None and parent.model_type == spec.use else None
        parent_state = store.load(parent, reads=reads) if parent is not None else None
    except HeirloomError as exc:  # a RefError or PluginError stays one (exit 2: a ref that names nothing)
        raise (type(exc) if isinstance(exc, RefError | PluginError) else HeirloomError)(
            f"{profile.raw.provenance.get(key, profile.raw.file)}: {key}: {exc}"
        ) from None
    if parent is not None and (
        foreign := parent_problems(profile, spec, parent.ref, parent.model_type, parent_state.metadata)
    ):
        raise ProfileError(foreign)  # before the data is read, at its key and file (exit 2)
    if parent is not None:
        progress.log(f"{spec.key}: warm start from {parent.ref} ({parent.digest[:12]})")
    elif spec.keys.inherit == SERVED:
        progress.log(f"{spec.key}: nothing stored as {served} yet, so no warm start: fitting from scratch")
    with Outcome() as kept, kernel.system(profile, only={("model", spec.name)}) as system:
        model = system.component(spec.name, "model")
        source_name = data_source(spec, model)
        source: Source = system.component(source_name, "source")
        resources = system.resources
        resources.check_memory(f"training {spec.key}")  # refused before any record is read
        quota = quota_mb(resources, "artifacts")  # a manager's wrong answer, said before the fit
        try:  # asked first, so a quota's refusal says what retention keeps; a manager's bug must not fail train
            keep = resources.retention()
        except Exception as exc:  # noqa: BLE001 - said below, like a wrong answer
            keep = f"an error, {type(exc).__name__}: {exc}"
        valid = type(keep) is int and keep >= 1
        store.refuse_if_full(profile.project, spec.name, quota, keep if valid else None)
        progress = MemoryWatch(progress, resources, f"training {spec.key}")
        listed = source_splits(source, source_name)
        splits = [split for split in (VALIDATION, TEST) if split == TEST or split in listed]
        for odd in unknown_splits(source_name, listed):  # a typo of validation: scored on none, unsaid
            progress.log(odd)
        with blaming_the_source(source, "computing the fingerprint", f"fingerprinting source {source_name!r}"):
            fingerprint = source.fingerprint()
        if not isinstance(fingerprint, str) or not fingerprint:  # stored as the data's identity: refused before fitting
            named = system.whose(next(s for s in system.specs if (s.kind, s.name) == ("source", source_name)))
            wrong = f"fingerprint() returned {fingerprint!r:.80}, not a non-empty str"
            raise HeirloomError(f"{named}: {wrong} (a plugin bug?): nothing was trained")
        own = parent is not None and (parent.project, parent.model) == (profile.project, spec.name)
        since = parent if own else next(reversed(store.list(profile.project, spec.name)), None)
        _say_if_the_data_changed(spec, source_name, fingerprint, since, progress)
        digest_now, served_parent = profile_digest(profile), spec.keys.inherit == SERVED
        source_spec = next(s for s in system.specs if s.kind == "source" and s.name == source_name)
        releases = _plugin_versions(kernel, [("model", spec.use), ("source", source_spec.use)])
        found = _same_as(store, parent, spec.use, digest_now, (source_name, fingerprint)) if served_parent else None
        unchanged = found is not None
        if unchanged and found is parent and (older := _older_format(store, parent, spec)):
            said = f"stored in state format {older}, and {spec.use} writes {spec.cls.state_format}: refitted"
            progress.log(f"{spec.key}: the same data and settings as {parent.ref}, but {said}")
            unchanged = False
        elif found is None and own and served_parent and parent.profile_digest != digest_now:
            digests = f"profile digest {parent.profile_digest[:12]} -> {digest_now[:12]}"
            progress.log(f"{spec.key}: settings other than those {parent.ref} was trained with ({digests}): refitted")
        task = functools.partial(fit_state, profile.raw, spec.name, parent_state)
        manager = next(s for s in system.specs if s.kind == "resources")
        try:  # the fit runs inside it: the traceback says whether the manager's code or the model's raised
            with naming_a_foreign_parent(spec, parent):
                fitted = None if unchanged else resources.run_fit(task)
        except HeirloomError:
            raise
        except Exception as exc:
            raise PluginBug(f"fitting {spec.key} in the run_fit() of {system.whose(manager)}") from exc
        with watched_memory(resources, f"training {spec.key}"):
            if unchanged:  # a warm start would only move the weights on data they have seen
                served_by = "which it serves" if found is parent else f"refitted from the served {parent.ref}"
                unrecorded = ", ".join(sorted(releases.keys() - found.plugin_versions.keys()))
                again = f"; stored again recording the release of {unrecorded}" if unrecorded else ""
                progress.log(f"{spec.key}: the same data and settings as {found.ref}, {served_by}: not refitted{again}")
                model.load(parent_state if found is parent else store.load(found, reads=spec.cls.state_format))
            elif fitted is None:
                with naming_a_foreign_parent(spec, parent), _naming_the_model(spec, source_name):
                    fit(model, source, source_name, parent_state, progress)
            elif not isinstance(fitted, State):  # model.load would fail on it, read as the model's bug
                raise HeirloomError(
                    f"{spec.key}: the resource manager {manager_name(resources)}: run_fit() returned a "
                    f"{type(fitted).__name__}, not the heirloom.State its task returns (or None to fit here)"
                )
            else:
                progress.log(f"{spec.key}: fitted by the resource manager ({manager.use})")
                model.load(fitted)
            with _naming_the_model(spec, source_name):
                evaluations = [
                    score(model, source, source_name, split, progress) or _no_scores(split, progress)
                    for split in splits
                ]
        by_split = {evaluation.split: evaluation for evaluation in evaluations}
        _warn_if_not_apart(by_split, source_name, progress)
        _warn_if_the_parent_held_out_others(parent, profile.project, spec.name, source_name, by_split, progress)
        metrics = dict(by_split[TEST].report.metrics)
        if VALIDATION in by_split:
            metrics[VALIDATION] = by_split[VALIDATION].report.metrics
        if unchanged and releases.keys() <= found.plugin_versions.keys():
            return kept(Trained(found, by_split[TEST].report, tuple(evaluations), reused=True))
        fingerprints = {source_name: fingerprint}
        fingerprints.update({evaluation_key(source_name, e.split): e.fingerprint for e in evaluations})
        state = model.state()
        try:
            digest = state_digest(state, spec.cls.state_format)  # checks what put will write
        except HeirloomError as exc:
            by = kernel.plugins.provider("model", spec.use)
            said = f"{spec.key} ({spec.use}, from plugin {by.label if by else '?'}): its state() cannot be stored"
            raise HeirloomError(f"{said}: {exc}") from None
        record = {"parent": parent.ref if parent else None, "data_fingerprints": fingerprints, "releases": releases}

        def identical(stored: list[Artifact]) -> Artifact | None:
            nonlocal same  # asked again under the store's write lock: another train may have stored it meanwhile
            same = _identical(stored, digest, record, source_name)
            return same

        same = identical(store.list(profile.project, spec.name))
        artifact = same or store.put(
            profile.project,
            spec.name,
            state,
            model_type=spec.use,
            parent=parent,
            profile_digest=digest_now,
            data_fingerprints=fingerprints,
            metrics=metrics,
            plugin_versions=releases,
            quota_mb=quota,
            keep_versions=keep if valid else None,
            state_format=spec.cls.state_format,
            identical=identical,
        )
        if same is not None:
            same_data = same.data_fingerprints.get(source_name) == fingerprint
            return kept(Trained(same, by_split[TEST].report, tuple(evaluations), reused=True, same_data=same_data))
        trained = kept(Trained(artifact, by_split[TEST].report, tuple(evaluations)))
    if keep is not None and not valid:
        progress.log(
            f"warning: stored {artifact.ref}, but the resource manager {manager_name(resources)}: retention() gave "
            f"{keep!r}, not None or an int >= 1: nothing was removed"
        )
    elif keep:
        plan = store.gc(keep, project=profile.project)
        if plan.versions:
            removed = ", ".join(f"{row['project']}/{row['model']}@{row['version']}" for row in plan.versions)
            by = next(s.use for s in system.specs if s.kind == "resources")  # not a key: its setting may have any name
            said = f"the newest {keep} per model, by resource manager {by!r}"
            progress.log(f"retention ({said}): removed {removed}, {plan.bytes} bytes")
    return trained


def _say_if_the_data_changed(
    spec: ComponentSpec, source: str, fingerprint: str, since: Artifact | None, progress: Progress
) -> None:
    """Name a change of the training data since ``since``, the version this one warm-starts from
    (one of this model's), else the model's latest: a new version that a one-byte edit of the data
    made was otherwise unexplained, and after a rollback the latest was not where training started."""
    before = since.data_fingerprints.get(source) if since is not None else None
    if before is not None and before != fingerprint:
        same = os.path.commonprefix([before, fingerprint])  # noqa: RUF071 - digests, not paths
        width = max(12, len(same) + 1)  # up to where they differ: both read the same (checker h451 F2)
        changed = f"{before[:width]} -> {fingerprint[:width]}; heirloom data stats prints it"
        progress.log(f"{spec.key}: {source} differs from the data {since.ref} trained on ({changed})")


@contextlib.contextmanager
def _naming_the_model(spec: ComponentSpec, source_name: str) -> Iterator[None]:
    """A model's own complaint about its data (``record 0 needs a 'text'``) names the model and its
    source: a profile trains several, and the message alone said neither. Errors of a more
    specific kind, and those naming the model already, are left as they are."""
    try:
        yield
    except HeirloomError as exc:
        if type(exc) is not HeirloomError or spec.key in str(exc):
            raise
        raise HeirloomError(f"{spec.key} ({spec.use}) on source {source_name!r}: {exc}") from None


def fit(model: Any, source: Source, source_name: str, parent_state: State | None, progress: Progress) -> None:
    """Fit ``model`` on ``source``'s train split (and its validation split, if it takes one)."""
    splits = source_splits(source, source_name)
    validation = reading(source, VALIDATION, NullProgress(), f"reading the validation split of {source_name}")
    extra = {VALIDATION: validation} if VALIDATION in splits and takes_validation(model) else {}
    train_split = reading(source, "train", progress, f"reading the train split of {source_name}")
    first = next(train_split, None)
    if first is None:  # a model's own complaint ("needs two labels, got []") named no source or file
        raise HeirloomError(f"the train split of source {source_name!r} has no records: nothing to fit")
    model.fit(itertools.chain([first], train_split), parent=parent_state, progress=progress, **extra)


def fit_state(raw: RawProfile, name: str, parent_state: State | None) -> State:
    """Build model ``name`` of ``raw`` in this process, fit it and return its state: the
    task a resource manager runs elsewhere (``Resources.run_fit``); only the driver writes
    the store. Plugins load here as in any process (entry points, ``HEIRLOOM_PLUGINS``)."""
    from heirloom.core.kernel import Kernel  # the kernel façade sits above this module
    from heirloom.core.schema import validate

    kernel = Kernel()
    profile = validate(raw, kernel.plugins)
    with kernel.system(profile, only={("model", name)}) as system:
        model = system.component(name, "model")
        source_name = data_source(next(s for s in profile.components if s.kind == "model" and s.name == name), model)
        fit(model, system.component(source_name, "source"), source_name, parent_state, NullProgress())
        return model.state()


def evaluate(
    kernel: Kernel,
    profile: ResolvedProfile,
    spec: ComponentSpec,
    split: str = TEST,
    progress: Progress | None = None,
) -> tuple[str | None, Report, bool | None]:
    """The served version of ``spec`` evaluated on its source's ``split`` (default test), and
    whether these are the records it was scored on when trained (None: none were stored)."""
    store = kernel.store(profile)
    try:  # before the system starts, which would log the same reason as a warning
        store.resolve(served_ref(profile.project, spec))
    except HeirloomError:  # a `serve` naming no version of a trained model: exit 2, at its key as profile check says it
        why, key = nothing_served(store, profile.project, spec), f"{spec.key}.serve"
        if getattr(spec.keys, "serve", None) is not None and store.list(profile.project, spec.name):
            raise RefError(str(Problem(profile.raw.provenance.get(key, profile.raw.file), key, why))) from None
        raise HeirloomError(why) from None
    with Outcome() as kept, kernel.system(profile, only={("model", spec.name)}, serve_models=True) as system:
        handle = system.model(spec.name)
        model, version = handle.current
        if version is None:
            untrained = f"{profile.project}/{spec.name} has no stored version to evaluate"
            raise HeirloomError(handle.unavailable or f"{untrained}; run: heirloom train {profile.name}")
        source_name = data_source(spec, model)
        source: Source = system.component(source_name, "source")
        if split not in (listed := source_splits(source, source_name)):
            raise HeirloomError(f"source {source_name!r} has no {split} split (splits: {', '.join(listed)})")
        said = f"evaluating {version} on {split}"
        evaluation = score(
            model, source, source_name, split, progress or NullProgress(), said, f"{spec.key} ({spec.use})"
        )
        if evaluation is None:
            raise HeirloomError(f"the {split} split of source {source_name!r} has no records: nothing to evaluate")
        fingerprints = store.resolve(version).data_fingerprints
        stored = fingerprints.get(evaluation_key(source_name, split)) or next(  # a renamed source: its records
            (value for key, value in fingerprints.items() if key.endswith(f":{split}")), None
        )
        same = None if stored is None else stored == evaluation.fingerprint
        if same is False:
            records = f"these {split} records ({evaluation.fingerprint[:12]}) are not the ones it was scored on"
            log.warning(
                f"{version}: {records} when trained ({stored[:12]}), so its figures here are not comparable with its "
                f"stored ones; the source's data or settings changed, and {_trained_on(evaluation.report)}"
            )
        return kept((version, evaluation.report, same))


def _trained_on(report: Report) -> str:
    """How many of the records a report scored its version trained on: the count when the report
    keeps one (``seen_in_training``; "may include" stood beside the exact count), else a maybe."""
    seen, left, of = (report.metrics.get(key) for key in (SEEN_IN_TRAINING, LEFT_OUT, LEFT_OUT_OF))
    if not isinstance(seen, int) or isinstance(seen, bool):
        return "the records may include ones it trained on"
    said = f"; its score left out {left} of {of} records it trained on or kept from validation" if left else ""
    trained = "as trained on by it or a version it inherits from"
    return f"its report counts {seen or 'none'} of the scored examples {trained} ({SEEN_IN_TRAINING}{said})"
