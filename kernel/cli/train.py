"""``heirloom train`` and ``heirloom eval``: fit and store models, report their metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from heirloom.cli.common import (
    console,
    err_console,
    fail,
    fail_unexpectedly,
    get_kernel,
    plugin_output_to_stderr,
    print_json,
    report_profile_error,
    resolve_or_exit,
    store_or_exit,
    whose,
)
from heirloom.cli.options import PROFILE, a_path, output_file, set_option
from heirloom.cli.overwrite import refuse_overwrite
from heirloom.core.components import Report
from heirloom.core.errors import HeirloomError, PluginError, ProfileError
from heirloom.core.system import dependency_closure
from heirloom.files import irregular, unwritable, write_atomic
from heirloom.store.compare import FALL, SPLITS, TEST, VALIDATION, fallen
from heirloom.store.compare import scores as scored_on
from heirloom.store.digest import profile_digest
from heirloom.store.evaluation import evaluate_api, evaluated_specs, summary, summary_table
from heirloom.store.outcome import StoppedAfter
from heirloom.store.parents import unstored_parent
from heirloom.store.private_logs import warn_open_home
from heirloom.store.reading import PluginBug
from heirloom.store.refs import RefError
from heirloom.store.training import Trained, evaluate, model_specs, train

if TYPE_CHECKING:
    from heirloom.core.kernel import Kernel
    from heirloom.core.schema import ComponentSpec, ResolvedProfile
    from heirloom.store.artifacts import Artifact, ArtifactStore


class RichProgress:
    """The model contract's progress reporting, drawn as rich progress bars (one per step;
    a step of unknown length counts up).

    A step ends where it stood when the next one starts: a fit that stops early (early
    stopping, convergence) shows ``3/3``, not the ``40/40`` it was allowed.
    """

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task: Any = None

    def start(self, description: str, total: float | None = None) -> None:
        self.finish()
        self.task = self.progress.add_task(description, total=total)

    def advance(self, amount: float = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, amount)

    def log(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)

    def finish(self) -> None:
        """Close the current bar where it stands."""
        if self.task is not None:
            done = next(task.completed for task in self.progress.tasks if task.id == self.task)
            self.progress.update(self.task, total=done, completed=done)
            self.task = None


def _scalars(metrics: dict[str, Any]) -> str:
    """The top-level numbers of ``metrics`` (a count too, as PLUGINS.md says), floats to 4 places."""
    numbers = {name: value for name, value in metrics.items() if type(value) in (int, float)}  # not a bool
    return ", ".join(
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}" for name, value in numbers.items()
    )


def report_trained(trained: Trained, hint: str) -> None:
    """The test report, one line of validation scores, and what was stored (``hint``: :func:`validation_hint`)."""
    console.print(trained.report.text, markup=False, highlight=False)
    for evaluation in trained.evaluations:
        role = "reported" if evaluation.split == TEST else "compared by promote --if-better"
        metrics = evaluation.report.metrics  # scores nested only (per_class...) are no missing records
        scores = _scalars(metrics) or ("no top-level scores (see the report)" if metrics else "no records, no scores")
        line = f"{evaluation.split} ({role}; records {evaluation.fingerprint[:12]}): {scores}"
        console.print(line, markup=False, highlight=False)
        if evaluation.split != TEST:  # its report is not printed: its warnings are (336 of 386 were trained on)
            for said in (text for text in evaluation.report.text.splitlines() if text.startswith("warning:")):
                console.print(f"{evaluation.split} {said}", markup=False, highlight=False)
    scores = {evaluation.split: evaluation.report.metrics for evaluation in trained.evaluations}
    if said := saturation_warning(scores.get(VALIDATION, {}), scores.get(TEST, {}), hint):
        console.print(said, markup=False, highlight=False)
    artifact = trained.artifact
    if trained.reused:
        same = "same weights and data" if trained.same_data else "same weights and scores from changed training data"
        console.print(
            f"unchanged: identical to [bold]{artifact.ref}[/] {artifact.digest[:12]} ({same}, "
            "and the same parent or warm-started from it); no new version stored"
        )
        return
    parent = f" (parent {artifact.parent})" if artifact.parent else ""
    console.print(f"stored [bold]{artifact.ref}[/] {artifact.digest[:12]}{parent}")


#: How far below a perfect validation score the test score must be for validation to be called saturated.
SATURATED_GAP = 0.05


def saturation_warning(validation: dict[str, Any], test: dict[str, Any], hint: str) -> str:
    """A warning line ('' for none) when validation accuracy or macro-F1 is at its best, 1.0, and the test's
    clearly lower: every version that learns the training data ties there (promote --if-better: `1 vs 1`, exit 3),
    while test, worded otherwise, told them apart (0.72 to 0.77), and nothing said why. None when most test records
    have labels the model does not predict (a report's ``unknown_labels``: a test file in Title Case), which the
    report warns of: asking for other validation records was the wrong fix (checker h347 F10)."""
    unknown, support = test.get("unknown_labels"), test.get("support")
    if isinstance(unknown, dict) and type(support) is int and sum(unknown.values()) * 2 > support:
        return ""
    for name in ("accuracy", "macro_f1"):
        best, held = validation.get(name), test.get(name)
        if type(best) in (int, float) and type(held) in (int, float) and best >= 1 and held <= best - SATURATED_GAP:
            return (
                f"warning: validation {name} is {best:.4f} but test {name} {held:.4f}: validation cannot tell versions "
                f"apart (none scores above the best possible, so promote --if-better ties): it needs records like "
                "the test and production ones rather than the training ones, and enough that a perfect score is no "
                f"luck ({hint})"
            )
    return ""


#: How far, relatively, a loaded version's score may be from the one stored for the same records (sums of floats
#: in another order: a sum of squared errors of 10108.1631 came back 10108.1621, checker 265).
RESTORED_TOLERANCE = 1e-6


def unrestored_warning(artifact: Artifact, split: str, metrics: dict[str, Any], profile_digest: str) -> str:
    """A warning line ('' for none) when the loaded version scores the records it was scored on when trained
    otherwise than it did then: the saturation warning blamed the validation split for what a ``load()`` that
    does not restore ``state()`` (or a ``predict`` that is not deterministic) did."""
    stored = (artifact.metrics.get(VALIDATION) or {}) if split == VALIDATION else artifact.metrics
    moved = [
        (name, was, now)
        for name, was in stored.items()
        if type(was) in (int, float)
        and type(now := metrics.get(name)) in (int, float)  # not a bool
        and not math.isclose(now, was, rel_tol=RESTORED_TOLERANCE, abs_tol=RESTORED_TOLERANCE)
    ]
    if not moved:
        return ""
    (name, was, now), more = moved[0], len(moved) - 1
    others = f" (and {more} other metric{'s' * (more > 1)})" if more else ""
    settings = "" if artifact.profile_digest == profile_digest else ", or a setting of the profile changed since"
    return (
        f"warning: {artifact.ref} scored {name} {_number(was)} on these same {split} records when trained; loaded now "
        f"it scores {_number(now)}{others}: the loaded version does not score what the stored one did. Its model's "
        f"load() does not restore what state() saved, or its predict is not deterministic{settings}, or its plugin's "
        "evaluate() changed since it was stored (then retrain or re-evaluate: its stored metrics are the old code's) "
        "(docs/PLUGINS.md, heirloom.State; heirloom.testing.check_model checks a model's round trip, in a fresh "
        "process too: what fit keeps outside the instance, a class attribute or a global, a new process lacks)"
    )


def _number(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def fall_warning(store: ArtifactStore, artifact: Artifact, serve: str | None = None) -> str:
    """A warning line ('' for none) when ``artifact`` scores FALL or more below the version of its model stored
    before it, on the same records (compare.fallen): six resolutions took a support intent model's test oos_recall
    0.5875 -> 0.1875, and the daemon served the new version, with no word from train."""
    before = [other for other in store.list(artifact.project, artifact.model) if other.version < artifact.version]
    if not before or not (fell := fallen(artifact, before[-1])):
        return ""
    no_split = ", which compares validation scores: give its source a validation split"
    unscored = "" if scored_on(artifact, VALIDATION) else no_split
    figures = ", ".join(said for _, said in fell)
    said = f"warning: {artifact.ref} scores {FALL:g} or more below {before[-1].ref}, the version before it, on the "
    said += f"same records: {figures}. "
    promote = f"heirloom models promote {artifact.ref} {serve or 'production'} --if-better {fell[0][0]}{unscored}"
    if serve is not None and serve.isdigit():  # a version pinned: no promote moves it (checker v22 F4)
        return f"{said}A daemon serves version {serve} (models.{artifact.model}.serve), not it (docs/ARTIFACTS.md)"
    if serve is not None:  # the profile serves an alias already (h396 F2: told to set it)
        return f"{said}A daemon serves {serve!r}, not it, until a promote ({promote}; docs/ARTIFACTS.md)"
    return (
        f"{said}A daemon serving the model's latest version (the default) serves it now: set "
        f'serve = "production" on models.{artifact.model} and promote a version once it holds up ({promote}; '
        "docs/ARTIFACTS.md)"
    )


#: The saturation warning's pointer for sources that say nothing of their validation split (Source.validation_docs).
SOURCE_VALIDATION_DOCS = "a source's validation split: docs/PLUGINS.md, heirloom_register_sources"


def validation_hint(resolved: ResolvedProfile, spec: ComponentSpec) -> str:
    """Where the saturation warning sends a reader: the one ``validation_docs`` the sources a model reads (through
    unions too) declare, else PLUGINS.md (a third party's source splits as its author chose)."""
    sources = {s.name: s for s in resolved.components if s.kind == "source"}
    seen, todo = set(), [name for kind, name in spec.depends if kind == "source"]
    while todo:
        if (name := todo.pop()) not in seen and name in sources:
            seen.add(name)
            todo.extend(ref for kind, ref in sources[name].depends if kind == "source")
    said = {docs for name in seen if (docs := sources[name].cls.validation_docs)}
    return said.pop() if len(said) == 1 else SOURCE_VALIDATION_DOCS


def warn_of_unversioned_plugins(kernel: Kernel, resolved: ResolvedProfile, specs: list[ComponentSpec]) -> None:
    """One line per plugin module a model to train, or a source it reads, comes from that is no installed package: the
    lineage records each plugin's distribution and version, and a module named by HEIRLOOM_PLUGINS has neither."""
    uses = {(spec.kind, spec.name): spec.use for spec in resolved.components}
    sources = [("source", uses[kind, name]) for spec in specs for kind, name in spec.depends if kind == "source"]
    infos = [kernel.plugins.provider(kind, use) for kind, use in [*(("model", spec.use) for spec in specs), *sources]]
    for module in dict.fromkeys(info.module for info in infos if info is not None and info.distribution is None):
        err_console.print(
            f"warning: the lineage of versions trained here records no version of plugin {module}: it is a module "
            "(HEIRLOOM_PLUGINS), not an installed package; install it as one (pip install -e .) to record its version",
            markup=False,
            highlight=False,
        )


def progress_bars(transient: bool = False) -> Progress:
    """Bars on stderr (stdout stays the report, or JSON): step, bar, count, elapsed time. Transient
    bars are off where stderr is no terminal: rich would print their last state as an empty line."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    hidden = transient and not err_console.is_interactive
    return Progress(*columns, console=err_console, transient=transient, disable=hidden)


def refuse_unstored_parents(kernel: Kernel, resolved: ResolvedProfile, specs: list[ComponentSpec]) -> None:
    """Exit 2 where a model's ``inherit`` names a version the store lacks or a parent it cannot warm-start from (as
    ``profile check`` says it), asked of the store as it is (read only, or none yet) before ``store_or_exit`` makes
    it: a train refused there made the store (h359 F1), and a pretrained state of another type in it (h444 F1)."""
    from heirloom.store.checks import StoreOnce, foreign_parent_problems

    if not any(spec.keys.inherit for spec in specs):
        return
    opened = StoreOnce(kernel, resolved)
    try:
        unstored_parent(kernel, resolved, specs, opened(), opened.missing)
    except RefError as exc:
        fail(f"error: {exc}", 2)
    except HeirloomError:  # a store that cannot be opened: store_or_exit says why
        return
    if problems := foreign_parent_problems(kernel, resolved, opened, only={spec.name for spec in specs}):
        report_profile_error(ProfileError(problems))


def refuse_data_problems(kernel: Kernel, resolved: ResolvedProfile, specs: list[ComponentSpec]) -> None:
    """Exit 2, as ``profile check`` does, where the models to train or the components they read find a problem in
    their settings (an empty data-set folder): it was exit 1 once a source failed to start, without the data set
    to fetch (h366 F2)."""
    from heirloom.store.checks import components_problems

    # what the trained models read, as train starts it: not a source only another model reads (v19 F4)
    asked = dependency_closure(resolved.components, {(spec.kind, spec.name) for spec in specs})
    if problems := components_problems(kernel, resolved, asked):
        report_profile_error(ProfileError(problems))


@click.command("train")
@click.argument("profile", type=PROFILE)
@click.argument("models", nargs=-1)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print, instead of the reports, {"models": {NAME: {"stored", <the version as models show --json>}}} '
    "(stored: false when an identical version was named instead).",
)
@set_option
@plugin_output_to_stderr
def train_command(profile: str, models: tuple[str, ...], as_json: bool, overrides: tuple[str, ...]) -> None:
    """Fit MODELS of PROFILE (default: all) and store each as a new version.

    Each model fits on the train split of its data source (warm-starting from its
    `inherit` ref when set), is scored on the validation split (when the source has one:
    what `heirloom models promote --if-better` compares) and on the test split (what is
    reported), and is stored as PROJECT/MODEL@N with its lineage, both scores and the
    fingerprints of the records each was computed on. Training again with identical
    settings and data stores nothing new and names the identical version.
    """
    kernel = get_kernel()
    warn_open_home()  # its store, another user's to replace
    resolved = resolve_or_exit(profile, overrides)
    try:
        specs = model_specs(resolved, models)
    except RefError as exc:  # a model name that names nothing: refused before the store is made
        fail(f"error: {exc}", 2)
    refuse_unstored_parents(kernel, resolved, specs)
    refuse_data_problems(kernel, resolved, specs)
    store = store_or_exit(resolved)
    unwritable = getattr(store, "unwritable", None)  # optional for a store plugin's class (PLUGINS.md)
    if unwritable is not None and (why := unwritable()):  # said now, not at the write after a long fit
        fail(f"error: cannot store a new version in {getattr(store, 'root', store)}: {why}; nothing was trained", 2)
    spec = stopped = None
    results: dict[str, dict[str, Any]] = {}
    try:
        if not specs:  # it said nothing, and exited 0
            err_console.print(f"profile {resolved.name!r} has no models: nothing to train", markup=False)
        warn_of_unversioned_plugins(kernel, resolved, specs)
        trained_now: dict[str, Any] = {}  # a child inheriting project/model warm-starts from this run's version
        for spec in specs:
            with progress_bars() as bars:
                progress = RichProgress(bars)
                try:
                    trained = train(kernel, resolved, spec, store, progress, trained_now)
                except StoppedAfter as exc:  # the version is stored: said, then the error
                    trained, stopped = exc.result, exc
                progress.finish()
            trained_now[f"{resolved.project}/{spec.name}"] = trained.artifact
            if as_json:
                results[spec.name] = {"stored": not trained.reused, **trained.artifact.to_json()}
            else:
                report_trained(trained, validation_hint(resolved, spec))
            if not trained.reused and (said := fall_warning(store, trained.artifact, spec.keys.serve)):
                (err_console if as_json else console).print(said, markup=False, highlight=False)
            if stopped is not None:
                break
        if as_json:
            print_json({"models": results})
    except (RefError, PluginError) as exc:  # a model, component or pretrained name that names nothing
        fail(f"error: {exc}", 2)
    except ProfileError as exc:  # a parent its model cannot warm-start from (store/parents.py), before the data
        report_profile_error(exc)
    except HeirloomError as exc:  # a data file's path from ${VAR} as the profile wrote it (h419 F5)
        fail(f"error: {resolved.raw.hide_secrets('', str(exc))}")
    except SystemExit as exc:  # a plugin's sys.exit(0) must not read as a model trained and stored
        fail(f"error: training stopped: plugin code called sys.exit({exc.code!r}); nothing more was stored")
    except PluginBug as exc:  # a source's or the resource manager's bug, not the model's
        fail_unexpectedly(exc.args[0], exc.__cause__ or exc)
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback, and which model it stopped
        fail_unexpectedly(f"training {whose(kernel, spec.kind, spec.key, spec.use)}" if spec else "training", exc)
    if stopped is not None:  # a component's stop() raised: it may have lost writes of its own
        ref = stopped.result.artifact.ref
        done = (
            f"nothing new was stored ({ref} is identical)" if stopped.result.reused else f"the version {ref} was stored"
        )
        fail(f"error: {done}; then {stopped}")


@click.command("eval")
@click.argument("profile", type=PROFILE)
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default=TEST,
    show_default=True,
    help=f"The split to score: {TEST} (reporting) or {VALIDATION} (what promotion compares).",
)
@click.option(
    "--html",
    "html_path",
    type=a_path(dir_okay=False, writable=True),
    callback=lambda ctx, param, value: _report_path(value),
    help="Also write a self-contained HTML report to this file: tables, the confusion matrix and, "
    "for models reporting NAME@K metrics (recall@5, recall@10...), metric-at-k curves (needs the 'ui' extra). "
    "Not '-' (stdout has the text report), nor a file the profile reads or heirloom keeps (exit 2).",
)
@set_option
@plugin_output_to_stderr
def eval_command(
    profile: str,
    names: tuple[str, ...],
    as_json: bool,
    split: str,
    html_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Evaluate the served version of the models of PROFILE, and the apis with checks of
    their own, on a split (test; NAMES: only these; default: all).

    When reports carry a summary row, one table comes first: a row per component, then
    micro, macro and weighted averages; then each component's own report.

    JSON: {"models": {NAME: {"version", "same_records_as_trained", <metrics>, "per_class": {...}}}, "apis": {NAME:
    {<metrics>}}, "summary": {"rows": {NAME: {"precision", "recall", "f1", "support"}},
    "micro_avg", "macro_avg", "weighted_avg"}}; "apis" and "summary" only when present. The
    reports' warning lines go to stderr.
    """
    kernel = get_kernel()
    resolved = resolve_or_exit(profile, overrides)
    # a report writes nothing: where no store is, it made an empty one, then said "no trained version" (h342 F1)
    store = store_or_exit(resolved, create=not any(spec.kind == "model" for spec in resolved.components))
    refuse_overwrite("--html", html_path, resolved, store)
    results: dict[str, dict[str, Any]] = {"models": {}}
    reports: dict[str, Report] = {}
    headers: dict[str, str] = {}
    spec = stopped = None
    try:
        if html_path is not None:
            from heirloom.reports import check_available

            check_available()
        for spec in evaluated_specs(resolved, names):
            row = spec.key if spec.name in reports else spec.name  # a model and an api may share a name
            if spec.kind == "model":
                with progress_bars(transient=True) as bars:
                    try:
                        version, report, same = evaluate(kernel, resolved, spec, split, RichProgress(bars))
                    except StoppedAfter as exc:  # it was scored: printed, then the error
                        (version, report, same), stopped = exc.result, exc
                stored = kernel.store(resolved).resolve(str(version))
                report = _with_warning(stored, split, report, same, resolved, spec)
                results["models"][spec.name] = {"version": version, "same_records_as_trained": same, **report.metrics}
                headers[row] = str(version)
            else:
                report = evaluate_api(kernel, resolved, spec, split)
                results.setdefault("apis", {})[spec.name] = report.metrics
                headers[row] = spec.key
            reports[row] = report
            if stopped is not None:
                break
        if html_path is not None:
            sections = [(headers[row], report) for row, report in reports.items()]
            write_html_report(html_path, resolved.name, split, sections)
            err_console.print(f"wrote {html_path}", markup=False, highlight=False)
    except RefError as exc:  # a model or component name that names nothing
        fail(f"error: {exc}", 2)
    except HeirloomError as exc:
        fail(f"error: {resolved.raw.hide_secrets('', str(exc))}")
    except PluginBug as exc:  # a source's or the resource manager's bug, not the model's
        fail_unexpectedly(exc.args[0], exc.__cause__ or exc)
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback, and which component it stopped
        fail_unexpectedly(f"evaluating {whose(kernel, spec.kind, spec.key, spec.use)}" if spec else "evaluating", exc)
    table = summary(reports)
    if as_json:
        for report in reports.values():  # a report's warnings are no metrics: said on stderr, not lost
            for line in report.text.splitlines():
                if line.startswith("warning:"):
                    err_console.print(line, markup=False, highlight=False)
        print_json(results | ({"summary": table} if table else {}))
    else:
        if table:
            console.print(summary_table(table), markup=False, highlight=False)
        for name, report in reports.items():
            console.print(f"[bold]{headers[name]}[/] on the {split} split")
            console.print(report.text, markup=False, highlight=False)
    if stopped is not None:  # a component's stop() raised: it may have lost writes of its own
        fail(f"error: {version} was evaluated on the {split} split; then {stopped}")


def _with_warning(
    artifact: Artifact, split: str, report: Report, same: bool | None, resolved: ResolvedProfile, spec: ComponentSpec
) -> Report:
    """``report`` and, on the records it was scored on when trained, a score unlike the stored one's warning; else,
    not on other records (a renamed label's errors were blamed on validation: h444 F4), the saturation warning when
    its scores and the version's stored ones of the other split call for it (eval scores one split; train printed
    it beside both): stored figures the loaded version does not reproduce say nothing of the split."""
    stored = artifact.metrics
    said = (same and unrestored_warning(artifact, split, report.metrics, profile_digest(resolved))) or (
        same is not False
        and saturation_warning(
            *((stored.get(VALIDATION) or {}, report.metrics) if split == TEST else (report.metrics, stored)),
            validation_hint(resolved, spec),
        )
    )
    return Report(report.metrics, f"{report.text.rstrip()}\n{said}\n") if said else report


def _report_path(path: Path | None) -> Path | None:
    """``--html``, checked as it is parsed (exit 2; after scoring it was 1): not ``-`` (stdout is the text report's),
    a regular file at most (a device or a pipe an atomic rename would make a file), as ``output_file`` checks it."""
    if path is not None and str(path) == "-":
        raise click.BadParameter("'-' would be stdout, which has the text report; name a file to write the HTML to")
    if path is not None and (kind := irregular(path)):
        raise click.BadParameter(f"{path} {kind}; name a file to write the report to")
    return output_file(path)


def write_html_report(path: Path, profile: str, split: str, reports: list[tuple[str | None, Report]]) -> None:
    """One self-contained page with a section per evaluated model version or api."""
    from heirloom.reports import report_fragment, report_page

    sections = [
        {
            "title": version,
            "subtitle": f"evaluated on the {split} split of profile {profile}",
            "html": report_fragment(report.metrics, report.text),
        }
        for version, report in reports
    ]
    try:  # a link there is replaced by the report, not written through (an atomic rename)
        write_atomic(path, report_page(f"Evaluation of {profile}", sections).encode())
    except OSError as exc:  # a full disk, a read-only folder: the report's file, not the last model, failed
        raise HeirloomError(f"--html {path}: cannot write the report: {unwritable(path, exc)}") from None


COMMANDS = [train_command, eval_command]
