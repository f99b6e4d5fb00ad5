"""Checks of a profile against the trained versions it would serve.

``heirloom profile check`` validates a profile on its own; some settings can only be
judged against a trained model (a monitor watching a label the model never predicts).
When the store holds the version a model table serves, each api that implements
``Api.check`` is asked about it, so the mistake shows before ``serve``, not as silence.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from heirloom.core.components import PATH_KEY, TABLES, Api, references
from heirloom.core.errors import HeirloomError, Problem, ProfileError
from heirloom.core.paths import data_root
from heirloom.core.profile import SINGLE_COMPONENT_TABLES, key_parts
from heirloom.core.serving import served_ref
from heirloom.core.system import api_check
from heirloom.links import cut_short, fetch_hint
from heirloom.profile_toml import dotted
from heirloom.store.artifacts import StoreMissing
from heirloom.store.content import Damaged, format_refusal
from heirloom.store.parents import (
    PRETRAINED,
    SERVED,
    PretrainedFailed,
    ask,
    checks_parents,
    not_stored,
    parent_problems,
    pretrained_state,
)
from heirloom.store.refs import RefError, typo_of
from heirloom.suggest import abbreviates

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ComponentSpec, ResolvedProfile

log = logging.getLogger(__name__)


def open_store(kernel: Kernel, profile: ResolvedProfile, create: bool = True) -> Any:
    """``kernel.store(profile, create)``; a store that cannot be used where the profile's ``[store] path``
    puts it (``/dev/null``) is a ProfileError naming the file and the key, as a bad value is."""
    try:
        return kernel.store(profile, create)
    except HeirloomError as exc:
        key = "store.path"
        if (
            isinstance(exc, ProfileError | StoreMissing)
            or os.environ.get("HEIRLOOM_STORE")
            or key not in profile.raw.provenance
        ):
            raise
        raise ProfileError([Problem(profile.raw.provenance[key], key, str(exc))]) from None


class StoreOnce:
    """The profile's store for ``profile check``: opened once, when a check first needs it, and
    never created (a check writes nothing: a mistyped ``[store] path`` became an empty store)."""

    def __init__(self, kernel: Kernel, profile: ResolvedProfile):
        self.kernel, self.profile = kernel, profile
        self.missing = ""  # why there is no store to check against, once a check found none
        self._store: Any = None

    def __call__(self) -> Any:
        """The store, or None where there is none yet (``missing`` says so)."""
        if self._store is None and not self.missing:
            try:
                self._store = open_store(self.kernel, self.profile, create=False)
            except StoreMissing as exc:
                self.missing = str(exc)
        return self._store


def store_problems(kernel: Kernel, profile: ResolvedProfile, failed: Collection[str] = ()) -> tuple[list[Problem], str]:
    """``profile check``'s problems found against the store, and a note ("" if none) when the store
    a check needed is not there yet: a new project has none, so that alone is no error.

    ``failed`` names the top-level tables (``models``, ``apis``; "" for the file itself) where validation
    found problems, ``profile`` then being what validated (``ProfileError.partial``): every problem at once,
    so the components that built are checked still (checker h356 F1). The checks against the store need the
    project and the store validated; the apis' checks of stored models, the models too (the references of the
    model tables that validated are checked whatever failed: checker h380 F1)."""
    store = StoreOnce(kernel, profile)
    problems: list[Problem] = []
    if not {"", "project", "store"} & set(failed):
        try:
            if "store.path" in profile.raw.provenance:
                store()  # a [store] path that cannot be a store stops serve, so check it with no model to check too
            problems += reference_problems(kernel, profile, store)  # of the model tables that validated (h380 F1)
            problems += foreign_parent_problems(kernel, profile, store)
            if "models" not in failed:
                problems += served_model_problems(profile, store)
        except ProfileError as exc:  # a [store] path that cannot be a store: said with the rest where some failed
            if not failed:
                raise
            problems += exc.problems
        except HeirloomError:  # a store that cannot be opened: said once the rest is fixed
            if not failed:
                raise
    problems += components_problems(kernel, profile, profile.components)
    note = f"store: {store.missing} (train or serve creates it)" if store.missing else ""
    return problems, profile.raw.hide_secrets("store.path", note)  # ${DATA_DIR}/x as written (checker 307 F1)


def components_problems(kernel: Kernel, profile: ResolvedProfile, specs: Iterable[ComponentSpec]) -> list[Problem]:
    """What the ``check_profile`` of each of ``specs`` finds, a data set's fetch hinted: ``profile check`` asks every
    component, ``train`` the sources and the models it trains, so a data problem is exit 2 there too (h366 F2)."""
    asked = ((spec, ask(profile, spec, "check_profile", profile)) for spec in specs)
    return [fetch_hinted(kernel, spec, found) for spec, problems in asked for found in problems]


def fetch_hinted(kernel: Kernel, spec: ComponentSpec, problem: Problem) -> Problem:
    """``problem`` that a component found with a path of a public data set's folder under the data root (a folder
    made by hand, empty or half-copied), saying how to fetch that data set, as a path not there does (h366 F2)."""
    field = attrs.fields_dict(spec.cls).get(problem.path.removeprefix(f"{spec.key}."))
    value = spec.config.get(field.name) if field and field.metadata.get(PATH_KEY) is not None else None
    if not isinstance(value, str) or "heirloom data fetch" in problem.message:
        return problem
    hint = fetch_hint(Path(value), data_root(), registered(kernel))
    return attrs.evolve(problem, message=problem.message + hint) if hint else problem


def cut_short_problems(kernel: Kernel, error: ProfileError) -> list[Problem]:
    """One problem at each component the ``error`` names whose data lies in a public data set's folder where a file
    a problem of it names is of another size than the set states: a file half-copied made its source's problem name
    the file's content (``holds no record``, ``columns: none``) and no fetch, as a path not there does (v14 F5)."""
    tables = getattr(error.partial, "raw", None)
    found: dict[str, Problem] = {}
    for problem in error.problems if tables is not None else []:
        kind, key, table = _component_at(tables.data, problem.path)
        providers = kernel.plugins.components[kind].get(table.get("use"), []) if kind else []
        if key in found or len(providers) != 1:
            continue
        paths = [table.get(f.name) for f in attrs.fields(providers[0][1]) if f.metadata.get(PATH_KEY) is not None]
        files = [Path(path) for path in paths if isinstance(path, str)]
        if hint := cut_short(files, data_root(), registered(kernel), problem.message):
            found[key] = Problem(problem.file, key, hint)
    return list(found.values())


def registered(kernel: Kernel) -> Callable[[], dict[str, list[tuple[str, Any]]]]:
    """The data sets plugins register, imported when first asked: a path's problem only may name one to fetch."""

    def datasets() -> dict[str, list[tuple[str, Any]]]:
        kernel.plugins.ensure(hooks=["heirloom_register_datasets"])
        return kernel.plugins.named["datasets"]

    return datasets


def _component_at(data: dict[str, Any], path: str) -> tuple[str, str, dict[str, Any]]:
    """``(kind, key, table)`` of the component whose table holds the key ``path``; kind "" when none does."""
    try:
        written, name, *_ = [*key_parts(re.sub(r"\[\d+\]", "", path)), ""]  # an item's: l2_search[1]
    except ValueError:  # not a key: a problem of the whole file
        return "", "", {}
    kind = next((kind for kind, table in TABLES.items() if table == written), "")
    single = written in SINGLE_COMPONENT_TABLES
    table = data.get(written) if single else (data.get(written) or {}).get(name) if kind else None
    return (kind, written if single else f"{written}.{name}", table) if isinstance(table, dict) else ("", "", {})


def served_model_problems(profile: ResolvedProfile, opened: StoreOnce) -> list[Problem]:
    """Problems the profile's apis find with the stored versions of the models they use.

    Opens the store and loads a model only when some api checks it; a model with no
    stored version is left out (there is nothing to check it against yet).
    """
    checking = [spec for spec in profile.components if spec.kind == "api" and spec.cls.check is not Api.check]
    if not checking or (store := opened()) is None:
        return []
    specs = {spec.name: spec for spec in profile.components if spec.kind == "model"}
    loaded: dict[str, Any] = {}
    problems = []
    for spec in checking:
        api = profile.instantiate(spec)
        for _, kind, target in references(api):
            if kind == "model" and target not in loaded:
                if target not in specs:  # disabled or never defined: said at the api's key already (h403 F1)
                    loaded[target] = None
                    continue
                try:
                    loaded[target] = _stored(store, profile, specs[target])
                except HeirloomError as error:  # said as a problem of the model's table, not a bare exit 1
                    loaded[target] = None
                    key = f"{specs[target].key}.{'serve' if isinstance(error, Damaged) else 'use'}"
                    problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, str(error)))
        models = {name: loaded[name] for _, kind, name in references(api) if kind == "model" and loaded[name]}
        targets = {field: name for field, kind, name in references(api) if kind == "model"}
        for field, message in api_check(api, models):
            key = f"{spec.key}.{field}"
            file = profile.raw.provenance.get(key, profile.raw.file)
            if field in targets:
                message += _model_set_in(profile, targets[field], file)
            problems.append(Problem(file, key, profile.raw.hide_secrets(key, message)))  # ${VAR} as written
    return problems


def _model_set_in(profile: ResolvedProfile, model: str, file: str) -> str:
    """Where the model an api field names was chosen and configured, when not (only) in ``file``:
    an extending profile that swaps the model should see its own file named, not just the parent's."""
    prefix = dotted(["models", model])
    files = list(dict.fromkeys(f for key, f in profile.raw.provenance.items() if key.startswith(f"{prefix}.")))
    return f"; {prefix} is set in {', '.join(files)}" if files and files != [file] else ""


def _stored(store: Any, profile: ResolvedProfile, spec: Any) -> Any:
    """A model instance holding the version ``spec`` serves, or None if none is stored."""
    try:
        artifact = store.resolve(served_ref(profile.project, spec))
    except HeirloomError:
        return None
    if artifact.model_type != spec.use:  # a changed ``use``: the stored version is another type's
        raise HeirloomError(
            f"the stored {artifact.ref} is of model type {artifact.model_type}, not {spec.use}: train the "
            f"profile to store a {spec.use} version before serving it"
        )
    model = profile.instantiate(spec)
    try:
        model.load(store.load(artifact, reads=model.state_format))
    except Damaged:
        raise  # the store's damage, not the model's: said at the setting that chose the version
    except Exception as error:  # a plugin's bug in load() is a problem of its model's table, not a crash
        if not isinstance(error, HeirloomError):
            log.warning("%s (%s).load raised", spec.key, spec.use, exc_info=True)  # the plugin's file and line
        said = error if isinstance(error, HeirloomError) else f"{type(error).__name__}: {error}"
        raise HeirloomError(f"cannot load the stored {artifact.ref}: {said}") from None
    return model


def reference_problems(kernel: Kernel, profile: ResolvedProfile, opened: StoreOnce) -> list[Problem]:
    """``inherit`` and ``serve`` values that look mistyped against what the store holds.

    A reference to a model the store has never seen may be one not trained yet (another
    project's, trained later), so it is left to ``train``; but a version or an alias the
    stored model lacks (any, when the model inherits its own earlier version), a model name
    one typo away from a stored one, a ``serve`` alias one typo away from an alias the model
    has or beginning one (``prod``), a ``serve`` version the stored model lacks, or a ``pretrained:NAME`` no plugin
    registers, are reported here, with their key. Where no store is yet, nothing is: as
    with a model the store has not seen, ``train`` says so when it gets there.
    """
    models = [spec for spec in profile.components if spec.kind == "model"]
    problems = []

    def report(spec: Any, field: str, message: str) -> None:
        key = f"{spec.key}.{field}"
        problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, message))

    for spec in models:  # a pretrained state no plugin registers (the plugins are known now)
        if (spec.keys.inherit or "").startswith(PRETRAINED):
            try:
                kernel.plugins.pretrained(spec.keys.inherit.removeprefix(PRETRAINED))
            except HeirloomError as exc:
                report(spec, "inherit", str(exc))
    inherits = [(spec, spec.keys.inherit) for spec in models if _stored_ref(spec.keys.inherit)]
    aliases = [(spec, spec.keys.serve) for spec in models if spec.keys.serve and not spec.keys.serve.isdigit()]
    numbers = [(spec, int(spec.keys.serve)) for spec in models if spec.keys.serve and spec.keys.serve.isdigit()]
    if not inherits and not aliases and not numbers:
        return problems
    tables = profile.raw.data.get("models")  # every table, one that did not validate too: trained first, maybe
    own = {f"{profile.project}/{name}" for name in (tables if isinstance(tables, dict) else ())}
    store = opened()  # None: nothing trained yet, as a model not in the store (the note says so)
    stored = store.list() if store is not None else []  # one read of the index: names and aliases both come from it
    known = sorted({f"{a.project}/{a.model}" for a in stored})

    for spec, ref in inherits:
        named = ref.partition("@")[0]
        try:
            if store is None:
                raise RefError(opened.missing)
            store.resolve(ref)
        except HeirloomError as exc:
            itself = named == f"{profile.project}/{spec.name}"  # its own earlier version: nothing trains it first
            if itself or (named not in own and (named in known or typo_of(named, known))):
                said = str(exc)  # a version or alias it lacks; with no version at all, why, and what to do
                if named not in known:
                    said = not_stored(kernel, profile, spec.name, named, store, opened.missing)
                report(spec, "inherit", said)
    for spec, alias in aliases:
        held = {name for a in stored if (a.project, a.model) == (profile.project, spec.name) for name in a.aliases}
        hint = typo_of(alias, held) or abbreviates(alias, held)  # serve = "prod" beside production: v17 F3
        if alias not in held and hint:
            report(spec, "serve", f"no version holds alias {alias!r}{hint} (aliases: {', '.join(sorted(held))})")
    for spec, number in numbers:  # a model with no version yet is not trained yet: left to serve
        versions = [a.version for a in stored if (a.project, a.model) == (profile.project, spec.name)]
        if versions and number not in versions:
            latest = ", ".join(map(str, versions[-10:]))
            report(spec, "serve", f"no version {number} of {profile.project}/{spec.name} (the latest stored: {latest})")
    return problems


def foreign_parent_problems(
    kernel: Kernel, profile: ResolvedProfile, opened: StoreOnce, only: Collection[str] | None = None
) -> list[Problem]:
    """Parents their models cannot warm-start from: a version of the model's own type stored in a state format
    the installed type cannot read (on ``inherit``, as ``train`` refuses it), and what each model's optional
    ``check_parent`` says (parents.py: another type's state, other hashing settings). A ``pretrained:NAME``
    parent the store does not hold yet is loaded from its plugin whatever the model type, so a loader that raises
    or returns no State is said here as ``train`` says it (checker h301 F7). A parent not stored yet, or a version
    of another model this run trains first, is left to ``train``; one the store cannot resolve, to
    reference_problems. ``only``: the models to check (``train``'s), else all."""
    problems = []
    for spec in profile.components:
        ref = spec.keys.inherit if spec.kind == "model" and (only is None or spec.name in only) else None
        named = (ref or "").partition("@")[0]
        sibling = named.startswith(f"{profile.project}/") and named != f"{profile.project}/{spec.name}"
        if not ref or ref == SERVED or sibling:
            continue
        try:
            found = _parent_metadata(kernel, opened, ref)
        except PretrainedFailed as exc:  # its plugin's loader raised or returned no State: said nowhere else
            key = f"{spec.key}.inherit"
            problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, str(exc)))
            continue
        except Exception:  # noqa: BLE001 - a ref naming nothing, a pretrained name no plugin registers: said elsewhere
            continue
        if found is None:
            continue
        parent, model_type, metadata, stored_with = found
        reads = spec.cls.state_format if model_type == spec.use else None  # another type's: its check_parent's word
        if refusal := format_refusal(metadata, reads, f"{parent} ({model_type})", stored_with):
            key = f"{spec.key}.inherit"
            problems.append(Problem(profile.raw.provenance.get(key, profile.raw.file), key, refusal))
        elif checks_parents(spec):
            problems += parent_problems(profile, spec, parent, model_type, metadata)
    return problems


def _parent_metadata(
    kernel: Kernel, opened: StoreOnce, ref: str
) -> tuple[str, str, dict[str, Any], dict[str, str]] | None:
    """``(ref, model type, state metadata, the plugin releases that stored it)`` of the parent ``ref`` names;
    None where none is stored yet."""
    store = opened()
    if ref.startswith(PRETRAINED):  # the one an earlier train imported, else the plugin's own (loaded once here)
        name = ref.removeprefix(PRETRAINED)
        if store is not None and (imported := store.list("pretrained", name)):
            return imported[-1].ref, "pretrained", store.metadata(imported[-1]), imported[-1].plugin_versions
        return ref, "pretrained", pretrained_state(kernel, ref)[0].metadata, {}
    if store is None:
        return None
    artifact = store.resolve(ref)
    return artifact.ref, artifact.model_type, store.metadata(artifact), artifact.plugin_versions


def _stored_ref(ref: str | None) -> bool:
    """Whether an ``inherit`` value names a stored artifact (not ``served``, a pretrained state or nothing)."""
    return bool(ref) and ref != SERVED and not ref.startswith(PRETRAINED)
