"""``heirloom data``: what a profile's sources produce, for any kind of source (only the
named source and what it depends on start), and the public data sets plugins register,
fetched and checked where profiles read them (``${data}``).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import click
from rich import progress as bars
from rich.pretty import Pretty
from rich.table import Column, Table

from heirloom.cli.common import (
    EXIT_INVALID,
    console,
    echo_json,
    err_console,
    fail,
    fail_unexpectedly,
    get_kernel,
    inert,
    json_text,
    plugin_output_to_stderr,
    print_json,
    resolve_or_exit,
    whose,
)
from heirloom.cli.options import PROFILE, SECONDS, a_path, set_option
from heirloom.cli.tables import print_table
from heirloom.core.components import Source
from heirloom.core.errors import HeirloomError, PluginError, ProfileError
from heirloom.core.paths import data_root
from heirloom.core.schema import did_you_mean
from heirloom.datasets import DataError, DataFile, Dataset, Progress, present, problems
from heirloom.datasets.fetch import fetch
from heirloom.profile_toml import dotted
from heirloom.splits import unknown_splits
from heirloom.store.outcome import Outcome, StoppedAfter
from heirloom.store.reading import PluginBug, is_record, not_a_record, source_splits
from heirloom.suggest import disabled_by

#: How much of a long list or string ``data show`` prints (``--json`` prints everything).
SHOWN_ITEMS = 10
SHOWN_CHARS = 400


def plain(record: Any) -> Any:
    """A record as JSON/msgpack-ready data: attrs records become dicts, others pass through."""
    return attrs.asdict(record) if attrs.has(type(record)) else record


@contextmanager
def started_source(profile: str, name: str, overrides: tuple[str, ...] = ()) -> Iterator[Source]:
    """Start just source ``name`` of ``profile``; exit 2 when the profile or the name is wrong."""
    kernel = get_kernel()
    resolved = resolve_or_exit(profile, overrides)
    names = sorted(spec.name for spec in resolved.components if spec.kind == "source")
    if name not in names and (off := disabled_by(resolved.raw.disabled, dotted(["sources", name]))):
        fail(f"error: profile {resolved.name!r}: {off}", EXIT_INVALID)  # it said "no source", with another's name
    if name not in names:
        fail(
            f"error: profile {resolved.name!r} has no source {name!r}{did_you_mean(name, names)} "
            f"(sources: {', '.join(names) or 'none'})",
            EXIT_INVALID,
        )
    use = next(spec.use for spec in resolved.components if spec.kind == "source" and spec.name == name)
    with kernel.system(resolved, only={("source", name)}) as system:
        try:
            yield system.component(name, "source")
        except (ProfileError, PluginError, SystemExit, BrokenPipeError):  # the pipe: `data show ... | head` has what
            raise  # it wanted
        except HeirloomError as exc:  # a data file's path from ${VAR} as the profile wrote it (checker v30 F1)
            fail(f"error: {resolved.raw.hide_secrets('', str(exc))}")
        except PluginBug as exc:  # what it was doing, named as train names it (listing the splits: checker v40 F6)
            fail_unexpectedly(exc.args[0], exc.__cause__ or exc)
        except Exception as exc:  # noqa: BLE001 - a source's bug: its traceback, then a line naming the source
            fail_unexpectedly(f"reading {whose(kernel, 'source', f'sources.{name}', use)}", exc)


@click.group("data")
def data_group() -> None:
    """Look at the records and counts of a profile's data sources; fetch public data sets.

    Profiles read data under the data root, ${data}: HEIRLOOM_DATA, else
    $HEIRLOOM_HOME/data. 'heirloom data list' shows the data sets plugins register and
    'heirloom data fetch NAME' downloads one there, checking every file's sha256.
    """


@data_group.command("show")
@click.argument("profile", type=PROFILE)
@click.argument("source")
@click.option(
    "--limit",
    default=5,
    show_default=True,
    type=click.IntRange(0, clamp=False),
    help="Records to print (0: all).",
)
@click.option("--split", default=None, help="Only records of this split (e.g. train, test).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line, in full.")
@set_option
@plugin_output_to_stderr
def data_show(
    profile: str, source: str, limit: int, split: str | None, as_json: bool, overrides: tuple[str, ...]
) -> None:
    """Print the records SOURCE of PROFILE yields."""
    with started_source(profile, source, overrides) as component:
        if split is not None and split not in (splits := source_splits(component, source)):
            close = did_you_mean(split, splits)
            fail(f"error: source {source!r} has no split {split!r}{close} (splits: {', '.join(splits)})", EXIT_INVALID)
        records = iter(component.records(split))
        for number, record in enumerate(itertools.islice(records, min(limit, sys.maxsize) or None), start=1):
            if not is_record(record):  # printed as if a record, unsaid (checker h356 F2)
                read = f"the {split} split" if split else "every split"
                fail(f"error: reading {read} of {source}: {not_a_record(component, record, number)}")
            if as_json:
                echo_json(json_text(plain(record)))
            else:
                console.rule(f"{source} record {number}")
                console.print(Pretty(plain(record), max_length=SHOWN_ITEMS, max_string=SHOWN_CHARS))
        if limit and next(records, None) is not None:  # on stderr: --json output stays records only
            err_console.print(f"{limit} shown; the source has more (--limit N, or --limit 0 for all)")


@data_group.command("stats")
@click.argument("profile", type=PROFILE)
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@set_option
@plugin_output_to_stderr
def data_stats(profile: str, source: str, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Print the counts of SOURCE of PROFILE (records, and what the source reports) and its
    fingerprint: what a version trained on it records under data_fingerprints (models show)."""
    reading = err_console.status(f"reading every record of {source}...")
    stopped = None
    try:
        with Outcome() as kept, started_source(profile, source, overrides) as component, reading:
            for odd in unknown_splits(source, source_splits(component, source)):  # its counts list it: never read
                err_console.print(odd, markup=False, highlight=False)
            stats = kept({**component.stats(), "fingerprint": component.fingerprint()})
    except StoppedAfter as exc:  # counted, then the source failed to stop: the counts are printed first (h341 F1)
        stats, stopped = exc.result, exc
    if as_json:
        print_json(stats)
    else:
        print_stats(stats)
    if stopped is not None:
        fail(f"error: the counts of sources.{source} were printed; then {stopped}")


def print_stats(stats: dict[str, Any]) -> None:
    """The counts as a table, then the fingerprint."""
    table = Table("count", "value")
    for key, value in flatten({key: value for key, value in stats.items() if key != "fingerprint"}):
        cell = "\n".join(map(str, value)) if isinstance(value, list) else value
        table.add_row(inert(key), inert(cell, lines=True))
    print_table(console, table)
    # whole, on a line of its own: a table cut it to the width, `9d49...27c…`, the one value a user compares (h342 F10)
    console.print(inert(f"fingerprint {stats['fingerprint']}"), highlight=False)


def flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, leaf)`` pairs of nested dicts, for a two-column table."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def registered_datasets() -> dict[str, list[tuple[Any, str]]]:
    """``name -> [(dataset, plugin label)]`` of every data set plugins register (more than
    one entry when plugins clash); a plugin that failed to load is named on stderr."""
    kernel = get_kernel()
    kernel.plugins.ensure(hooks=["heirloom_register_datasets"])
    for info in kernel.plugins.infos.values():  # any data sets it registers are missing
        if info.status == "failed":
            err_console.print(f"plugin {info.label} failed to load: {info.error}", markup=False, highlight=False)
    named = kernel.plugins.named["datasets"]
    return {name: [(obj, kernel.plugins.infos[p].label) for p, obj in named[name]] for name in sorted(named)}


def usable(name: str, entries: list[tuple[Any, str]]) -> Dataset | str:
    """The data set registered as ``name``, or what is wrong with its registration."""
    if len(entries) > 1:
        labels = " and ".join(sorted(label for _, label in entries))
        return f"data set {name!r} is registered by {len(entries)} plugins: {labels}"
    dataset, label = entries[0]
    wrong = problems(name, dataset)
    return f"plugin {label} registers a bad data set: {'; '.join(wrong)}" if wrong else dataset


def files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def to_copy(folder: Path, missing: list[DataFile]) -> list[dict[str, Any]]:
    """Where each missing file comes from and goes: what to copy in by hand, offline."""
    return [{"path": str(folder / f.path), "url": f.url, "member": f.member, "sha256": f.sha256} for f in missing]


@data_group.command("list")
@click.option("--to", "root", type=a_path(file_okay=False), help="Look in this folder, not the data root.")
@click.option("--json", "as_json", is_flag=True, help="Print the data sets as JSON, with every missing file.")
def data_list(root: Path | None, as_json: bool) -> None:
    """The public data sets plugins register, and how many of their files are in the data
    root (by name and size; 'heirloom data fetch' checks their sha256). --json lists each
    missing file: its path here, and its url (and archive member) to copy it in by hand."""
    root = root or data_root()
    rows = []
    for name, entries in registered_datasets().items():
        if isinstance(dataset := usable(name, entries), str):
            err_console.print(dataset, markup=False, highlight=False, soft_wrap=True)
            continue
        missing = [file for file in dataset.files if not present(root / name / file.path, file.size)]
        rows.append(
            {
                "name": name,
                "title": dataset.title,
                "license": dataset.license,
                "accept_license": dataset.accept_license,
                "homepage": dataset.homepage,
                "files": len(dataset.files),
                "bytes": dataset.size,
                "present": len(dataset.files) - len(missing),
                "folder": str(root / name),
                "missing": to_copy(root / name, missing),
            }
        )
    if as_json:
        print_json(rows)
        return
    widest = max((len(row["name"]) for row in rows), default=4)
    table = Table(
        Column("name", no_wrap=True, min_width=widest),
        "files here",
        "MB",
        "license",
        title=f"data root {root}",
        title_justify="left",
    )
    for row in rows:
        table.add_row(row["name"], f"{row['present']} of {row['files']}", f"{row['bytes'] / 1e6:.1f}", row["license"])
    print_table(console, table)


@data_group.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--to",
    "root",
    type=a_path(file_okay=False),
    help="Put NAME/ in this folder instead of the data root (profiles then need HEIRLOOM_DATA=it).",
)
@click.option("--accept-license", is_flag=True, help="Accept the restrictive licenses (research only...) of NAME...")
@click.option("--force", is_flag=True, help="Replace files whose sha256 differs (changed by hand, older versions).")
@click.option(
    "--timeout",
    type=SECONDS,
    default=30.0,
    show_default=True,
    help="Seconds a read may wait; a download slower than 1 KiB/s over that long stops too.",
)
def data_fetch(names: tuple[str, ...], root: Path | None, accept_license: bool, force: bool, timeout: float) -> None:
    """Download the public data sets NAME... into the data root and check each file's sha256.

    Files already there are hashed, not downloaded again: on a machine without network,
    copy the files in by hand ('heirloom data list --json' says from where to where) and
    fetch checks them. A file whose hash differs is an error (--force replaces it), and so
    is a folder, a FIFO or a dangling link in a file's place; a download whose hash or size
    differs is not kept; a file that fails does not stop the others: each is named. Exit 2:
    an unknown NAME or a license to accept (nothing is downloaded then); exit 1: some file
    could not be fetched or checked.
    """
    known = registered_datasets()
    chosen: dict[str, Dataset] = {}
    root = root or data_root()
    for name in dict.fromkeys(names):
        if name not in known:
            close = did_you_mean(name, list(known))
            fail(f"error: no data set {name!r}{close} (known: {', '.join(known)})", EXIT_INVALID)
        if isinstance(dataset := usable(name, known[name]), str):
            fail(f"error: {dataset}")
        chosen[name] = dataset
    needed = {name: [f for f in ds.files if not present(root / name / f.path, f.size)] for name, ds in chosen.items()}
    for name, dataset in chosen.items():
        if dataset.accept_license and not accept_license and needed[name]:
            where = f"\n{dataset.homepage}" if dataset.homepage else ""
            fail(f"error: {name}: {dataset.license}{where}\naccept it with --accept-license", EXIT_INVALID)
    missing: list[dict[str, Any]] = []
    for name, dataset in chosen.items():
        folder = root / name
        if to_fetch := needed[name]:
            size = sum(f.size or 0 for f in to_fetch) / 1e6
            err_console.print(
                f"{name}: {dataset.title}\n  license: {dataset.license}\n"
                f"  fetching {len(to_fetch)} of {files(len(dataset.files))} ({size:.1f} MB) into {folder}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        with downloads() as progress:
            try:
                done = fetch(name, dataset, root, force=force, timeout=timeout, progress=progress)
            except DataError as exc:
                fail(f"error: {name}: {exc}")
        for problem in done.failed:
            err_console.print(f"{name}: {problem}", markup=False, highlight=False, soft_wrap=True)
        missing += to_copy(folder, done.missing)
        fetched = f"{len(done.downloaded)} downloaded, " if done.downloaded else ""
        unfetched = f", {len(done.missing)} missing" if done.missing else ""
        console.print(
            f"{name}: {files(len(dataset.files))} in {done.folder}: {fetched}{len(done.present)} already there"
            f"{unfetched} (sha256 checked)",
            markup=False,
            highlight=False,
        )
    if missing:
        shown = "\n".join(f"  {copy_line(m)}" for m in missing[:5])
        more = f"\n  ... {len(missing) - 5} more" if len(missing) > 5 else ""
        fail(
            f"{files(len(missing))} could not be fetched; copy them in by hand, then fetch again:\n{shown}{more}"
            "\n('heirloom data list --json' lists every missing file)"
        )


def copy_line(missing: dict[str, Any]) -> str:
    """``URL [(MEMBER)] -> PATH``: one file to copy in by hand."""
    member = f" (member {missing['member']})" if missing["member"] else ""
    return f"{missing['url']}{member} -> {missing['path']}"


@contextmanager
def downloads() -> Iterator[Progress]:
    """A ``progress(label, total)`` for ``heirloom.datasets.fetch``: one bar per download on a
    terminal (stderr), nothing in a pipe or a log."""
    shown = bars.Progress(
        bars.TextColumn("{task.description}"),
        bars.BarColumn(),
        bars.DownloadColumn(),
        bars.TransferSpeedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )

    def start(label: str, total: int | None) -> Any:
        for task in shown.task_ids:
            shown.remove_task(task)
        task = shown.add_task(label, total=total)
        return lambda n: shown.advance(task, n)

    with shown:
        yield start


COMMANDS = [data_group]
