"""``heirloom models``: list, inspect, promote, prune, back up and verify the versions in an artifact store.

Every command reads ``--store PATH``, else ``HEIRLOOM_STORE``, else ``HEIRLOOM_HOME/store``.
Exit codes: 2 when a reference is malformed or names nothing (the message lists what
exists) or ``backup``'s DESTINATION is taken (``DestinationTaken``), 3 when ``promote --if-better`` declines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from heirloom.cli.common import (
    EXIT_DECLINED,
    EXIT_INVALID,
    console,
    echo,
    err_console,
    fail,
    get_kernel,
    inert,
    print_json,
)
from heirloom.cli.options import PROFILE, a_path
from heirloom.cli.rescore import rescored_gate
from heirloom.cli.tables import print_table
from heirloom.core.errors import HeirloomError, did_you_mean
from heirloom.store import compare
from heirloom.store.artifacts import Artifact, ArtifactStore, StoreMissing
from heirloom.store.backup import DestinationTaken, backup_store, nested
from heirloom.store.compare import SPLITS, VALIDATION, PromotionRefused, figures, left_out_note, metric_value, scores
from heirloom.store.descendants import inheritors
from heirloom.store.gc import REPAIR, GcPlan, verify_versions
from heirloom.store.refs import RefError, refuse_misspelt_alias


class ModelsGroup(click.Group):
    """Maps the store's expected refusals to exit codes, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RefError as exc:
            fail(f"error: {exc}", EXIT_INVALID)
        except PromotionRefused as exc:
            fail(f"not promoted: {exc}", EXIT_DECLINED)
        except DestinationTaken as exc:  # choose another DEST: exit 2, as keys new and new plugin for a taken target
            fail(f"error: {exc}", EXIT_INVALID)


def _open_store(ctx: click.Context, param: click.Parameter, value: Path | None) -> ArtifactStore:
    """The store; no command creates one where none is: ``models list`` and ``gc --dry-run`` (checker 277 F15), then
    ``verify``, ``promote``, ``backup`` and ``gc`` (h342 F1) created an empty store there, and verify said it "holds
    no versions", exit 1. ``--json`` is eager: read here."""
    if value and not any((value / name).exists() for name in ("index.sqlite", "blobs")):  # create no store to read
        raise click.BadParameter(f"{value} holds no index.sqlite: not an artifact store (heirloom train makes one)")
    if value:  # one that exists (checked above)
        return ArtifactStore(value)
    try:  # only asks whether a store is there: opened as before below, a damaged one is said as before
        probe = get_kernel(ctx).store(create=False)
    except StoreMissing as exc:
        if ctx.command.name != "list":
            fail(f"error: no store yet: {exc} (heirloom train makes one)", EXIT_INVALID)
        print_json([]) if ctx.params.get("as_json") else echo(f"no artifacts: no store yet: {exc}")
        ctx.exit(0)
    except HeirloomError:
        probe = None
    if type(probe) is ArtifactStore:  # the kernel's, opened to write (and migrate): the hook not asked twice (v35 F3)
        return ArtifactStore(probe.root)
    return get_kernel(ctx).store()


store_option = click.option(
    "--store",
    type=a_path(exists=True, file_okay=False),
    envvar="HEIRLOOM_STORE",
    show_envvar=True,
    callback=_open_store,
    help="The artifact store folder, which must exist (default: HEIRLOOM_HOME/store).",
)
json_option = click.option("--json", "as_json", is_flag=True, is_eager=True, help="Print JSON instead of a table.")


def metrics_text(metrics: dict[str, Any]) -> str:
    """The scalar metrics, one ``name=value`` per line, for a table cell."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, str | int | float)}
    return "\n".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars.items()) or "-"


def _table(artifacts: list[Artifact]) -> Table:
    """Refs and digests never wrap: they are what people copy (a parent folds, whole, where
    an 80-column terminal leaves the metrics no room). Aliases show under the ref."""
    ref, digest = Column("ref", no_wrap=True), Column("digest", no_wrap=True)
    table = Table(ref, Column("metrics", min_width=18), Column("parent", overflow="fold"), digest)
    for a in artifacts:
        ref = a.ref + "".join(f"\n@{alias}" for alias in a.aliases)
        table.add_row(*(inert(c, lines=True) for c in (ref, metrics_text(a.metrics), a.parent or "-", a.digest[:12])))
    return table


@click.group("models", cls=ModelsGroup)
def models_group() -> None:
    """Stored model versions: lineage, aliases, promotion, garbage collection, backup, verification.

    REF is project/model (the latest version), project/model@N or project/model@ALIAS.
    """


@models_group.command("list")
@click.option("--project", default=None, help="Only this project's models.")
@json_option
@store_option
def models_list(project: str | None, as_json: bool, store: ArtifactStore) -> None:
    """Every stored version, oldest first per model, then each project's storage use (the
    blobs its versions reference, what a resource manager's artifact quota counts)."""
    artifacts = store.list(project, damaged=(damaged := {}))
    for problem in damaged.values():  # every good row is still listed; `models verify` is what fails on damage
        click.echo(f"warning: the store index {store.index.path} has a damaged row, not listed: {problem}", err=True)
    if not artifacts and project is not None:  # a new project has none yet; a typo is said, --json too (h342 F7)
        projects = sorted({a.project for a in store.list(damaged={})})
        listed = f"(projects: {', '.join(projects) or 'none'}){did_you_mean(project, projects)}"
        said = f"no artifacts of project {project!r} in {store.root} {listed}"
        click.echo(said, err=True) if as_json else echo(said)  # a note beside the JSON
    if as_json:
        print_json([artifact.to_json() for artifact in artifacts])
    elif artifacts:
        print_table(console, _table(artifacts))
        usage = store.usage()
        for name in sorted({a.project for a in artifacts}):
            console.print(f"{name}: {usage.get(name, 0) / 2**20:.2f} MiB of blobs", markup=False, highlight=False)
    elif project is None:
        echo(f"no artifacts in {store.root}")


#: The longest metadata value ``models show --metadata`` prints whole (``--json`` prints all).
METADATA_VALUE_CHARS = 2_000


def _abridged(value: Any) -> Any:
    """``value`` with every part longer than METADATA_VALUE_CHARS as JSON replaced by its size,
    maps opened first so their small entries stay readable."""
    if isinstance(value, dict):
        return {key: _abridged(item) for key, item in value.items()}
    size = len(json.dumps(value, ensure_ascii=False))
    return value if size <= METADATA_VALUE_CHARS else f"<{size:,} characters; --metadata --json prints it>"


@models_group.command("show")
@click.argument("ref")
@click.option(
    "--metadata",
    is_flag=True,
    help="Print the stored state's metadata instead, as JSON (what the model wrote: its labels, settings, "
    "the choices its training made; checked against the version's digest). A value longer than "
    f"{METADATA_VALUE_CHARS:,} characters (a tokenizer) is shown by its size; with --json, everything.",
)
@json_option
@store_option
def models_show(ref: str, metadata: bool, as_json: bool, store: ArtifactStore) -> None:
    """Everything recorded about REF."""
    if metadata:
        print_json(store.metadata(ref) if as_json else _abridged(store.metadata(ref)))
        return
    record = store.resolve(ref).to_json()
    if as_json:
        print_json(record)
        return
    table = Table(Column("field", overflow="fold"), Column("value", overflow="fold"))
    for key, value in _rows(record):
        table.add_row(inert(key), inert(value, lines=True))  # labels, paths: text, never rich markup
    print_table(console, table)


def _rows(record: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A record as (dotted field, value) rows: nested metrics one per row, numbers to 4
    significant digits (``--json`` has them whole), so a table reads at 80 columns."""
    rows = []
    for key, value in record.items():
        if isinstance(value, dict) and value:
            rows += _rows(value, f"{prefix}{key}.")
        elif isinstance(value, float):
            rows.append((f"{prefix}{key}", f"{value:.4g}"))
        else:
            rows.append((f"{prefix}{key}", value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    return rows


@models_group.command("lineage")
@click.argument("ref")
@click.option(
    "--descendants",
    is_flag=True,
    help="List the versions that inherited REF instead (children, grandchildren... in any project); "
    "REF without @ then means every version of the model (its own later versions included).",
)
@json_option
@store_option
def models_lineage(ref: str, descendants: bool, as_json: bool, store: ArtifactStore) -> None:
    """REF, its parent, its grandparent... across projects, with digests and metrics.

    With --descendants: who inherited REF, the question to ask before changing a shared
    model. Each row's parent column shows the version it warm-started from.
    """
    chain = inheritors(store, ref) if descendants else store.lineage(ref)
    if as_json:
        print_json([artifact.to_json() for artifact in chain])
        return
    if descendants and not chain:
        echo(f"nothing in {store.root} inherits {ref}")
        return
    print_table(console, _table(chain))
    if descendants:
        projects = sorted({artifact.project for artifact in chain})
        echo(f"inherited by {len(chain)} version(s) in project(s): {', '.join(projects)}")
    elif chain[-1].parent is not None:
        echo(f"{chain[-1].parent}, parent of {chain[-1].ref}, is not in {store.root}")


@models_group.command("history")
@click.argument("model")
@click.option("--alias", default=None, help="Only the moves of this alias.")
@json_option
@store_option
def models_history(model: str, alias: str | None, as_json: bool, store: ArtifactStore) -> None:
    """Every move of MODEL's aliases (project/model), oldest first: when, which version, and the
    version it left. Which version held production on a past day is the last move before it.
    Kept since this heirloom; moves made by an older one were not recorded.

    JSON: [{"alias", "version", "previous", "moved_at"}] (previous null for an alias's first).
    """
    if "@" in model:  # @production read as the whole model's history, unsaid (h383 F2)
        name, _, selector = model.partition("@")
        one = f"; for one alias's moves: {name} --alias {selector}" if selector and not selector.isdigit() else ""
        raise RefError(f"{model!r}: history takes PROJECT/MODEL, every move of its aliases{one}")
    artifact = store.resolve(model)  # a name that names nothing fails here, listing what exists
    every = store.alias_history(artifact.project, artifact.model)
    held = {name for version in store.list(artifact.project, artifact.model) for name in version.aliases}
    named = sorted({m["alias"] for m in every} | held)  # one moved before moves were recorded has none: no typo
    if alias is not None and alias not in named:  # a typo is no empty history, nor one of no alias (h398 F2)
        listed = ", ".join(named) or "none"
        raise RefError(f"no recorded moves of alias {alias!r}{did_you_mean(alias, named)} (aliases: {listed})")
    moves = [m for m in every if alias in (None, m["alias"])]
    if as_json:
        print_json(moves)
        return
    if not moves:
        echo(f"no recorded alias moves of {artifact.project}/{artifact.model}" + (f"@{alias}" if alias else ""))
        return
    table = Table("moved at (UTC)", "alias", Column("version", no_wrap=True), "was")
    for move in moves:
        was = "-" if move["previous"] is None else f"@{move['previous']}"
        table.add_row(move["moved_at"], move["alias"], f"{artifact.project}/{artifact.model}@{move['version']}", was)
    print_table(console, table)


@models_group.command("promote")
@click.argument("ref")
@click.argument("alias")
@click.option(
    "--if-better",
    "metric",
    default=None,
    metavar="METRIC",
    help="Only if REF scores higher on METRIC than the alias holder, on the same records (else exit 3).",
)
@click.option(
    "--lower-is-better",
    is_flag=True,
    help="With --if-better: METRIC is an error or a loss (mae, rmse): REF must score lower than the holder.",
)
@click.option(
    "--on",
    "split",
    type=click.Choice(SPLITS),
    default=None,
    help="The split --if-better compares: validation (the gate, the default) or test (choosing on test makes its "
    "scores optimistic).",
)
@click.option(
    "--rescore",
    "profile",
    type=PROFILE,  # its metavar: PROFILE
    default=None,
    help="With --if-better: score REF and the holder on PROFILE's records of that split as they are now, and "
    "compare those (stored scores stop being comparable when the data changes: a new export, new ratings).",
)
@click.option(
    "--new-alias",
    is_flag=True,
    help="Create ALIAS although its name is close to an alias the store has (else a misspelling: exit 2).",
)
@store_option
def models_promote(
    ref: str,
    alias: str,
    metric: str | None,
    lower_is_better: bool,
    split: str | None,
    profile: str | None,
    new_alias: bool,
    store: ArtifactStore,
) -> None:
    """Point ALIAS of REF's model at REF (e.g. production).

    With --if-better METRIC (accuracy, or a dotted path such as per_class.negative.f1) the
    alias moves only when REF beats the current holder on the validation split, both
    scored on the same validation records; test metrics are stored for reporting only.
    A new ALIAS whose name is close to one the store has (prodution, Production) is taken
    for a misspelling unless --new-alias says otherwise. Exit 0 when the alias points at
    REF; 2 for a reference or METRIC that names nothing, a count (support, seen_in_training),
    a setting (l2, threshold) or a baseline's score (popularity_ndcg_at_10), or for --on,
    --lower-is-better or --rescore without --if-better; 3 when --if-better declines. With
    --rescore PROFILE both are scored again, on PROFILE's data as it is now. Higher wins;
    --lower-is-better for an error metric (mae, rmse, a loss).

    \b
    heirloom models promote finance/sentiment@3 production --if-better accuracy
    heirloom models promote ops/forecaster@5 production --if-better mae --lower-is-better
    heirloom models promote clinic/diagnosis@4 production --if-better micro_f1 --rescore clinic.toml
    """
    target = store.resolve(ref)
    held = store.alias_version(target.project, target.model, alias)
    if held is None and not new_alias:
        refuse_misspelt_alias(store, target, alias)
    if metric is None and (lower_is_better or split is not None):  # neither alone changes what moves (v39 F1)
        given = " and ".join(flag for flag, on in (("--lower-is-better", lower_is_better), ("--on", split)) if on)
        says = "say" if " and " in given else "says"
        raise click.UsageError(f"{given} only {says} how --if-better compares: give --if-better METRIC too")
    split = split or VALIDATION
    if lower_is_better and metric is not None and metric.rpartition(".")[2] in compare.HIGHER_IS_BETTER:
        click.echo(f"warning: {metric} is a score (higher is better): --lower-is-better keeps the worse", err=True)
    if profile is not None:
        if metric is None:
            raise click.UsageError("--rescore compares a metric: give --if-better METRIC too")
        gain = rescored_gate(profile, store, target, held, metric, split, lower_is_better=lower_is_better)
        store.promote(target.ref, alias, held_by=held)  # moved while both were scored: refused, in its transaction
        echo(f"{target.project}/{target.model}@{alias} -> {target.ref}{gain}")
        return
    done = store.promote(
        target.ref, alias, if_better=metric, on=split if metric else None, lower_is_better=lower_is_better
    )
    name, holder = f"{target.project}/{target.model}@{alias}", done.holder  # as its transaction found it
    if done.held is None:
        echo(f"{name} -> {target.ref} (new alias)")
    elif not done.moved:
        echo(f"{name} already points at {target.ref}")
    elif holder is None:  # the alias pointed at a version that is not stored (a damaged index)
        echo(f"{name} -> {target.ref} (it pointed at @{done.held}, which is not stored)")
    else:
        gain = ""
        if metric:
            before, after = metric_value(holder, metric, split), metric_value(target, metric, split)
            note = left_out_note(scores(target, split) or {}, target.ref, scores(holder, split) or {}, holder.ref)
            gain = " ({} {} {} -> {}{})".format(split, metric, *figures(before, after), note)
        echo(f"{name}: {holder.ref} -> {target.ref}{gain}")


#: Orphan blobs ``gc`` names in text (``--json`` lists all).
SHOWN_ORPHANS = 10


@models_group.command("gc")
@click.option("--keep", required=True, type=click.IntRange(min=1), help="Newest versions kept per model.")
@click.option("--dry-run", is_flag=True, is_eager=True, help="Say exactly what would be removed; remove nothing.")
@click.option(
    "--delete-orphans",
    is_flag=True,
    help="Also remove blobs no version references (left by a crashed write, or by an index restored "
    "from an older backup). Without it they are kept and listed.",
)
@click.option(
    "--drop-previous",
    is_flag=True,
    help="Also remove each alias's previous version (and with it that rollback), unless the newest KEEP, an alias "
    "or a kept descendant holds it: what a quota refusal names when previous versions fill the quota.",
)
@json_option
@store_option
def models_gc(
    keep: int, dry_run: bool, delete_orphans: bool, drop_previous: bool, as_json: bool, store: ArtifactStore
) -> None:
    """Remove old versions, keeping the newest KEEP per model, aliased ones and all their ancestors.

    Each alias's previous version (the one its latest move left: the rollback, and what a daemon that refused
    the move still serves) is kept too. Removes the blobs only those versions used, those a gc stopped midway
    freed, and temp files of interrupted writes; never a folder, a link or a file not named like a blob. A
    version whose blob is missing, or damaged (gc reads the blobs of aliased versions and of a model that would
    lose versions), is listed as unreadable: KEEP counts only versions that can load, and one that is not its
    model's newest and that no alias or kept descendant holds is removed, even an alias's previous one. `heirloom
    models verify` reads every blob.
    """
    plan = store.gc(keep, dry_run=dry_run, orphans=delete_orphans, previous=not drop_previous)
    verb = "would remove" if dry_run else "removed"
    _gc_warnings(plan, store, verb)  # on stderr under --json too, where it said nothing (h383 F3)
    if as_json:
        print_json(plan.to_json())
        return
    report = plan.to_json()
    echo(
        f"{verb} {len(report['versions'])} version(s) and {len(plan.files)} file(s), {plan.bytes:,} bytes"
        + "".join(f"\n  {ref}" for ref in report["versions"])
    )
    if plan.resumed:
        echo(f"{len(plan.resumed)} of those file(s) an earlier gc freed, and was stopped before removing")
    if plan.orphans and not delete_orphans:  # named: which blobs a restored index lost is what an operator checks
        more = len(plan.orphans) - SHOWN_ORPHANS
        echo(
            f"kept {len(plan.orphans)} orphan blob(s) no version references (--delete-orphans removes them), "
            f"in {store.blobs}:"
            + "".join(f"\n  {name}" for name in plan.orphans[:SHOWN_ORPHANS])
            + (f"\n  ... {more} more (--json lists every one)" if more > 0 else "")
        )


def _gc_warnings(plan: GcPlan, store: ArtifactStore, verb: str) -> None:
    """What gc leaves alone and the versions that cannot load, with how to repair them, on stderr."""
    removed = set(plan.to_json()["versions"])
    for name, what in plan.foreign:
        err_console.print(
            f"warning: {store.blobs / name} is {what}, not a blob; gc leaves it alone", markup=False, soft_wrap=True
        )
    for refs, fate in (
        (
            [ref for ref in plan.unreadable if ref not in removed],
            f"kept (an alias, a kept descendant or its being the newest version holds it); {REPAIR}",
        ),
        ([ref for ref in plan.unreadable if ref in removed], f"{verb}, as nothing keeps it"),
    ):
        if refs:
            err_console.print(
                f"warning: {', '.join(refs)} cannot load (a blob missing, damaged or not a file), not counted among "
                f"the newest --keep: {fate}; heirloom models verify lists every damaged version",
                markup=False,
                soft_wrap=True,
            )


@models_group.command("backup")
@click.argument("destination", type=a_path(file_okay=False))
@click.option(
    "--overwrite",
    is_flag=True,
    help="Also replace DESTINATION when it is a backup of another store, a store without a backup marker, or a "
    "backup of an older store schema (the one taken before an upgrade).",
)
@store_option
def models_backup(destination: Path, overwrite: bool, store: ArtifactStore) -> None:
    """Copy the store to DESTINATION (a store folder: index.sqlite and blobs/), consistently,
    while daemons serve and training writes it.

    Incremental: blobs already in DESTINATION are kept (checked by size: `models verify
    --store DESTINATION` reads them), ones its new index no longer names are removed. So
    DESTINATION must be new, empty or an earlier backup of this store; a folder with other
    files, or a backup of an older schema than the store's (the one taken before an upgrade: keep it aside)
    (exit 2), or a store with no versions to back up (exit 1), is refused before anything is written.
    To restore, stop the daemons and put DESTINATION in the store's place (or point
    HEIRLOOM_STORE at it). The logs (feedback/, handoffs/, events/) are append-only files:
    copy them yourself (docs/OPERATIONS.md).
    """
    if why := nested(store.root, destination):  # before the store's own checks: what was typed, exit 2
        raise click.BadParameter(why, param_hint="'DESTINATION'")
    report = backup_store(store, destination, overwrite=overwrite)
    echo(
        f"backed up {report.versions} version(s) to {destination}: {report.copied} blob(s) copied, "
        f"{report.present} already there, {report.removed} stale removed"
    )


@models_group.command("verify")
@click.argument("refs", nargs=-1)
@json_option
@store_option
def models_verify(refs: tuple[str, ...], as_json: bool, store: ArtifactStore) -> None:
    """Read every version (or REFS), check its blobs against its digest and decode them; exit 1 naming
    each one missing or damaged (a restore, a crash, a full disk) and, without REFS, each alias at no stored version.

    The digest covers the weights and metadata, not the index's other fields (parent,
    metrics, fingerprints, created_at). JSON: {"checked": N, "damaged": {REF: message}}."""
    checked, damaged, rows = verify_versions(store, refs)
    if not checked:  # an empty folder, an unmounted backup: nothing verified is no pass
        if as_json:
            print_json({"checked": 0, "damaged": {}})
        fail(f"error: the store at {store.root} holds no versions: nothing to verify")
    for ref, problem in damaged.items():  # on stderr under --json too, where it said nothing (h383 F3)
        err_console.print(f"{ref}: {problem}", markup=False, soft_wrap=True)
    if set(damaged) & set(checked) - set(rows):  # a damaged row's message says its repair
        err_console.print(f"to repair a damaged version: {REPAIR}", markup=False, soft_wrap=True)
    if as_json:
        print_json({"checked": len(checked), "damaged": damaged})
    else:
        echo(f"{sum(ref not in damaged for ref in checked)} of {len(checked)} version(s) intact")
    if damaged:
        raise SystemExit(1)


COMMANDS = [models_group]
