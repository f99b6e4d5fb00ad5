"""``heirloom data``: what a profile's sources produce, for any kind of source.

Only the named source (and what it depends on) is started.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import click
from rich.pretty import Pretty
from rich.table import Table

from heirloom.cli.common import (
    EXIT_INVALID,
    console,
    err_console,
    fail,
    get_kernel,
    print_json,
    resolve_or_exit,
    set_option,
)
from heirloom.core.components import Source
from heirloom.core.schema import did_you_mean

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
    if name not in names:
        fail(
            f"profile {resolved.name!r} has no source {name!r}{did_you_mean(name, names)} "
            f"(sources: {', '.join(names) or 'none'})",
            EXIT_INVALID,
        )
    with kernel.system(resolved, only={("source", name)}) as system:
        yield system.component(name, "source")


@click.group("data")
def data_group() -> None:
    """Look at the records and counts of a profile's data sources."""


@data_group.command("show")
@click.argument("profile")
@click.argument("source")
@click.option("--limit", default=5, show_default=True, type=click.IntRange(min=0), help="Records to print (0: all).")
@click.option("--split", default=None, help="Only records of this split (e.g. train, test).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line, in full.")
@set_option
def data_show(
    profile: str, source: str, limit: int, split: str | None, as_json: bool, overrides: tuple[str, ...]
) -> None:
    """Print the records SOURCE of PROFILE yields."""
    with started_source(profile, source, overrides) as component:
        if split is not None and split not in component.splits():
            fail(f"source {source!r} has no split {split!r} (splits: {', '.join(component.splits())})", EXIT_INVALID)
        records = iter(component.records(split))
        for number, record in enumerate(itertools.islice(records, limit or None), start=1):
            if as_json:
                click.echo(json.dumps(plain(record), ensure_ascii=False, default=str))
            else:
                console.rule(f"{source} record {number}")
                console.print(Pretty(plain(record), max_length=SHOWN_ITEMS, max_string=SHOWN_CHARS))
        if limit and next(records, None) is not None:  # on stderr: --json output stays records only
            err_console.print(f"{limit} shown; the source has more (--limit N, or --limit 0 for all)")


@data_group.command("stats")
@click.argument("profile")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@set_option
def data_stats(profile: str, source: str, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Print the counts of SOURCE of PROFILE (records, and what the source reports)."""
    reading = err_console.status(f"reading every record of {source}...")
    with started_source(profile, source, overrides) as component, reading:
        stats = component.stats()
    if as_json:
        print_json(stats)
        return
    table = Table("count", "value")
    for key, value in flatten(stats):
        table.add_row(key, "\n".join(map(str, value)) if isinstance(value, list) else str(value))
    console.print(table)


def flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, leaf)`` pairs of nested dicts, for a two-column table."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


COMMANDS = [data_group]
