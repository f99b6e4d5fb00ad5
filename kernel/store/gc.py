"""Garbage collection of an artifact store: a plan made under the write lock, then carried out.

``--dry-run`` and the real run make the same plan, so the dry run reports exactly what
the real one removes. Only files gc can account for are removed: the blobs of the
versions it deletes (when no kept version shares them), those a gc killed before removing
them left (:mod:`heirloom.store.pending`), and temp files of interrupted writes. A blob no
version references (an orphan: a write that crashed before its index row, or an index
restored from an older backup) is kept unless ``orphans=True``; entries that are not blob
files at all (folders, symbolic links, other names) are never touched, only reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.core.quota import MIB
from heirloom.files import open_regular
from heirloom.store.index import StoreIndex, Transaction
from heirloom.store.pending import clear_removals, pending_removals, record_removals

#: How ``put`` names blobs: the content's sha256 and what it holds.
BLOB_NAME = re.compile(r"[0-9a-f]{64}\.(?:safetensors|json)")
#: A blob's write a kill cut short (``write_atomic``'s temp file): any other ``.x.tmp`` is no file of ours.
BLOB_WRITE = re.compile(rf"\.{BLOB_NAME.pattern}\.\w+\.tmp")
#: A blob copy a backup's kill cut short: a store restored from such a backup holds it.
PARTIAL_BLOB = re.compile(rf"\.{BLOB_NAME.pattern}\.partial")


@attrs.define
class GcPlan:
    """What gc removes (or would): version rows and files, and what it leaves alone."""

    dry_run: bool
    #: Index rows (``Transaction.rows`` dicts) of the versions removed.
    versions: list[dict[str, Any]]
    #: File names in ``blobs/`` removed, and their total size.
    files: list[str]
    bytes: int
    #: Blobs no version references: removed only with ``orphans=True``.
    orphans: list[str]
    orphans_removed: bool
    #: ``(name, what it is)`` of entries in ``blobs/`` that are not blob files: never touched.
    foreign: list[tuple[str, str]]
    #: Refs of versions a blob of which is missing or damaged (its content no longer its
    #: name): they cannot load, so they do not count among the newest ``keep`` (the newest
    #: loadable ones do); one an alias or a kept descendant holds, or its model's newest, is kept,
    #: any other removed (in ``versions`` too): that is how a damaged version goes.
    #: Aliased versions and those that would be kept in place of removed ones are hashed.
    unreadable: list[str] = attrs.field(factory=list)
    #: Those of ``files`` an earlier gc freed and was killed before removing (:mod:`heirloom.store.pending`).
    resumed: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "versions": [_ref(row) for row in self.versions],
            "files": self.files,
            "bytes": self.bytes,
            "orphans": self.orphans,
            "orphans_removed": self.orphans_removed,
            "foreign": [{"name": name, "is": what} for name, what in self.foreign],
            "unreadable": self.unreadable,
            "resumed": self.resumed,
        }


#: How to mend a version that cannot load, for verify's, backup's and gc's messages: there is no command that
#: removes one version, gc removes it once no alias or kept descendant holds it.
REPAIR = (
    "restore its blobs from a backup (docs/OPERATIONS.md), or move its aliases to a good version "
    "(heirloom models promote REF ALIAS) and run heirloom models gc --keep N, which then removes it unless it is "
    "its model's newest version"
)


def verify_versions(store: Any, refs: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """What ``models verify`` checks: the versions (REFS, else every one), ``{REF: why}`` for each damaged one and,
    without REFS, each alias at no stored version, and the damaged index rows among them, by the version each
    names: one stopped verify, no JSON printed and the other versions unchecked (checker h342 F4)."""
    rows: dict[str, str] = {}
    artifacts = [store.resolve(ref) for ref in refs] if refs else store.list(damaged=rows)
    damaged = {
        ref: f"the store index {store.index.path} is damaged ({why}); restore it from a backup ({row})"
        for ref, (row, why) in ((ref, said.split(": ", 1)) for ref, said in rows.items())
    }
    damaged |= {} if refs else store.alias_damage()  # an alias at a version not stored: its reads all fail
    for artifact in artifacts:
        try:
            store.verify(artifact)
        except HeirloomError as exc:
            damaged[artifact.ref] = getattr(exc, "damage", str(exc))  # the repair is said once (REPAIR)
    return [artifact.ref for artifact in artifacts] + list(rows), damaged, rows


def collect(
    index: StoreIndex,
    blobs: Path,
    keep: int,
    *,
    dry_run: bool,
    orphans: bool,
    project: str | None = None,
    previous: bool = True,
) -> GcPlan:
    """Plan and (unless ``dry_run``) carry out a collection (what it keeps: ``_survivors``; ``previous``: each
    alias's previous version among them).

    Rows go in one transaction, which also records the files to remove (a gc killed before
    removing them leaves them to the next one); files are removed in a second one, under the
    write lock again, and only those still unreferenced then (a concurrent ``put`` may have
    stored the same content meanwhile).
    """
    if keep < 1:
        raise HeirloomError(f"gc must keep at least 1 version per model, got {keep}")
    with index.writing(changes=not dry_run) as tx:  # a dry run reads: a read-only old-schema store too
        plan = _plan(tx, blobs, keep, dry_run, orphans, project, previous)
        if not dry_run:
            tx.delete([(row["project"], row["model"], row["version"]) for row in plan.versions])
            record_removals(tx, plan.files)
    if dry_run or not plan.files:
        return plan
    sizes = {name: file_size(blobs / name) for name in plan.files}
    try:
        plan.files = remove_unreferenced(index, blobs, plan.files)
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM: the versions went unsaid, "nothing half-written" (h431 F2)
        if plan.versions:
            gone = [_ref(row) for row in plan.versions]
            named = ", ".join(gone[:10]) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
            stop.add_note(f"gc stopped after removing {len(gone)} version(s), whose files the next gc removes: {named}")
        raise
    plan.bytes = sum(sizes[name] for name in plan.files)
    plan.resumed = [name for name in plan.resumed if name in plan.files]
    return plan


def remove_unreferenced(index: StoreIndex, blobs: Path, names: list[str]) -> list[str]:
    """Remove the blobs of ``names`` no version references, under the write lock (no ``put`` can
    reference one meanwhile), and forget any record of them (``pending_removals``); those removed (not one
    another process removed first)."""
    with index.writing() as tx:
        referenced = {name for row in tx.blob_rows() for name in row[3:]}
        removed = []
        for name in names:
            if name not in referenced:
                with contextlib.suppress(FileNotFoundError):
                    (blobs / name).unlink()
                    removed.append(name)
        clear_removals(tx, names)
    return removed


def _plan(
    tx: Transaction, blobs: Path, keep: int, dry_run: bool, orphans: bool, project: str | None, previous: bool
) -> GcPlan:
    on_disk, leftovers, foreign = _scan(blobs)
    rows = tx.rows()
    used_by: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    blobs_of: dict[str, list[str]] = {}
    for owner, model, version, *names in tx.blob_rows():
        blobs_of[f"{owner}/{model}@{version}"] = names
        for name in names:
            used_by[name].add((owner, model, version))
    unreadable = {ref for ref, names in blobs_of.items() if any(name not in on_disk for name in names)}
    checked: set[str] = set()
    rollbacks = set(tx.left_by_aliases()) if previous else set()
    aliased = {_ref(row) for row in rows if row["aliases"]} | rollbacks
    while True:  # a kept version found damaged gives its place to an older one, checked in turn
        kept = _survivors(rows, keep, project, unreadable, rollbacks)
        losing = {f"{row['project']}/{row['model']}" for row in rows if _ref(row) not in kept}
        fresh = [ref for ref in kept - unreadable - checked if ref in aliased or ref.rpartition("@")[0] in losing]
        if not fresh:
            break
        checked.update(fresh)
        unreadable |= {ref for ref in fresh if not all(intact(blobs / name) for name in blobs_of.get(ref, []))}
    doomed_keys = {_key(row) for row in rows if _ref(row) not in kept}
    freed = sorted(name for name, users in used_by.items() if users <= doomed_keys and name in on_disk)
    left = pending_removals(tx)  # freed by a gc killed before it removed them
    resumed = sorted(name for name in on_disk if name not in used_by and name in left)
    orphaned = sorted(name for name in on_disk if name not in used_by and name not in left)
    files = freed + resumed + leftovers + (orphaned if orphans else [])
    return GcPlan(
        dry_run=dry_run,
        versions=[row for row in rows if _key(row) in doomed_keys],
        files=files,
        bytes=sum(on_disk.get(name, 0) or file_size(blobs / name) for name in files),
        orphans=orphaned,
        orphans_removed=orphans and not dry_run,
        foreign=foreign,
        unreadable=sorted(unreadable),
        resumed=resumed,
    )


def _scan(blobs: Path) -> tuple[dict[str, int], list[str], list[tuple[str, str]]]:
    """``({blob name: size}, temp leftovers, foreign entries)`` without following links."""
    found: dict[str, int] = {}
    leftovers: list[str] = []
    foreign: list[tuple[str, str]] = []
    with os.scandir(blobs) as entries:
        for entry in entries:
            if entry.is_symlink():
                foreign.append((entry.name, "a symbolic link"))
            elif entry.is_dir(follow_symlinks=False):
                foreign.append((entry.name, "a folder"))
            elif not entry.is_file(follow_symlinks=False):
                foreign.append((entry.name, "not a regular file"))
            elif BLOB_NAME.fullmatch(entry.name):
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
            elif BLOB_WRITE.fullmatch(entry.name) or PARTIAL_BLOB.fullmatch(entry.name):
                leftovers.append(entry.name)
            else:
                foreign.append((entry.name, "not named like a blob"))
    return found, sorted(leftovers), sorted(foreign)


def intact(path: Path, size: int | None = None) -> bool:
    """Whether the blob at ``path`` is a regular file (no link, as ``load`` reads it) holding what its name says
    (its content's sha256), and ``size`` bytes when given (checked first: a short one is not read)."""
    try:
        with os.fdopen(open_regular(path, os.O_NOFOLLOW), "rb") as handle:
            if size is not None and os.fstat(handle.fileno()).st_size != size:
                return False
            return hashlib.file_digest(handle, "sha256").hexdigest() == path.name.partition(".")[0]
    except OSError:
        return False


def file_size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def _key(row: dict[str, Any]) -> tuple[str, str, int]:
    return row["project"], row["model"], row["version"]


def _ref(row: dict[str, Any]) -> str:
    return f"{row['project']}/{row['model']}@{row['version']}"


def _survivors(
    rows: list[dict[str, Any]],
    keep: int,
    project: str | None = None,
    unreadable: set[str] | None = None,
    rollbacks: set[str] | None = None,
) -> set[str]:
    """Refs gc keeps: newest ``keep`` loadable versions per model (``unreadable`` ones cannot load), the
    newest of each whatever its state (versions are never reused: a removed newest one's number would be),
    aliased ones, those an alias's latest move left that can load (``rollbacks``: the way back, and what a daemon
    that refused the move still serves, checker h376 F1), every version outside ``project`` (when given), and all
    their ancestors."""
    kept = _newest(rows, keep, unreadable or set()) | _newest(rows, 1, set())
    kept |= {_ref(row) for row in rows if row["aliases"] or project not in (None, row["project"])}
    kept |= (rollbacks or set()) - (unreadable or set())  # a damaged one is no way back: moving off it repairs
    parents = {_ref(row): row["parent"] for row in rows}
    pending = list(kept)
    while pending:
        parent = parents.get(pending.pop())
        if parent is not None and parent not in kept:
            kept.add(parent)
            pending.append(parent)
    return kept


def _newest(rows: list[dict[str, Any]], keep: int, unreadable: set[str]) -> set[str]:
    """Refs of the newest ``keep`` versions of each model, ``unreadable`` ones left out."""
    by_model: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if _ref(row) not in unreadable:
            by_model[(row["project"], row["model"])].append(row)
    return {_ref(r) for group in by_model.values() for r in sorted(group, key=lambda r: r["version"])[-keep:]}


def quota_figures(quota: int, *parts: int) -> tuple[Callable[[int], str], str]:
    """How a quota's refusal prints sizes, and the quota (bytes): in MiB to one decimal, or in bytes where those
    would show ``parts``, which together pass the quota, as within it (1 byte past a 1 MiB quota read "needs 1.0 MiB
    more, past its artifact quota of 1 MiB"): one formatter for a train's refusal and a put's."""
    tenths = [round(part * 10 / MIB) for part in (*parts, sum(parts))]
    if min(sum(tenths[:-1]), tenths[-1]) > quota * 10 // MIB:
        return mib, f"{quota // MIB} MiB"
    return (lambda size: f"{size:,} bytes"), f"{quota // MIB} MiB ({quota:,} bytes)"


def mib(size: int) -> str:
    """``size`` bytes in MiB, to one decimal."""
    return f"{size / MIB:.1f} MiB"


def refused(
    tx: Transaction, root: Path, project: str, model: str, keep: int | None, used: int, adding: int | None, mb: int
) -> str:
    """Why ``project``, holding ``used`` bytes in the store at ``root``, cannot store a version of ``model`` weighing
    ``adding`` bytes (None before a fit: not known yet) within its artifact quota of ``mb`` MiB, and what makes room
    (``room``)."""
    size, quota = quota_figures(mb * MIB, used, adding or 0)  # in bytes where MiB would show no excess
    needs = "cannot be stored, whatever it weighs" if adding is None else f"needs {size(adding)} more"
    return (
        f"not stored: project {project!r} holds {size(used)} in the artifact store at {root}; "
        f"{project}/{model} {needs}, past its artifact quota of {quota}; "
        + room(tx, root / "blobs", project, model, keep, used, adding, mb * MIB)
    )


def room(
    tx: Transaction, blobs: Path, project: str, model: str, keep: int | None, used: int, adding: int | None, quota: int
) -> str:
    """What retention (``keep``) and gc keep of ``project``, and what makes room, for a quota's refusal:
    the quota (bytes) must hold what they keep, the newest ``keep`` of each model, aliased versions and
    the ancestors of kept ones, plus the new version (``adding`` bytes), as retention runs after it.
    ``adding`` is None before a fit: the new version's size is not known yet, so ``model``'s newest stored
    version's stands in for it, said to be an estimate (a refusal that counted nothing for it told to gc
    when gc could not make room, and the retry was refused after its whole fit)."""
    rows = tx.rows(project, damaged={})
    stored = {_ref(row) for row in rows}  # not another project's, nor one a gc --drop-previous removed
    rollbacks = {ref: aliases for ref, aliases in tx.left_by_aliases().items() if ref in stored}
    newest, kept = _newest(rows, keep or 1, set()), _survivors(rows, keep or 1, project, rollbacks=set(rollbacks))
    ancestors = {row["parent"] for row in rows if _ref(row) in kept} - {None}
    why = {}
    for row in reversed(rows):
        if (ref := _ref(row)) in kept:
            reasons = ["newest"] * (ref in newest) + [f"alias {alias}" for alias in row["aliases"]]
            reasons += [f"alias {alias}'s previous version" for alias in sorted(rollbacks.get(ref, []))]
            reasons += ["ancestor of a kept version"] * (ref in ancestors and ref not in newest)  # v18 F1
            why[ref] = ", ".join(reasons)
    size = _blob_size(tx, blobs, set(why))
    gauge, plus = "", "with"  # before a fit: how the new version's size was estimated
    if adding is None:
        last = [_ref(row) for row in rows if row["model"] == model][-1:]
        adding = _blob_size(tx, blobs, set(last))
        gauge = f"an estimate: {last[0]}, its newest, weighs {adding / MIB:.1f} MiB" if last else "size unknown"
        plus = "with" if last else "and"
    gc = f"`heirloom models gc --keep {keep or 1}`"
    listed = ", ".join(f"{ref} ({reason})" for ref, reason in why.items()) or "nothing"
    retention = f"retention (the newest {keep} per model, by the resource manager's retention())"
    who = f"{retention} and {gc} keep" if keep else f"with retention off, {gc} keeps"
    show = quota_figures(quota, size, adding)[0] if size + adding > quota else mib
    said = f"{who} {show(size)} of it: {listed}"
    if size + adding <= quota:
        frees = f"{said}; {gc} frees {(used - size) / MIB:.1f} MiB"
        return (
            f"{frees}, leaving {(quota - size) / MIB:.1f} MiB for the new version ({gauge})"
            if gauge
            else f"{frees}, room enough"
        )
    need = -(-(size + adding) // MIB)  # MiB, rounded up
    # what gc --drop-previous keeps, and that after every alias moved to the newest: the ways that free anything
    # (moving alone frees nothing, gc keeps the version it leaves: v17 F1; nor dropping an ancestor: v18 F1)
    plain = _survivors(rows, keep or 1, project)
    moved = _survivors([{**row, "aliases": []} if _ref(row) not in newest else row for row in rows], keep or 1, project)
    drop = f"{gc.rstrip('`')} --drop-previous`, which removes the aliases' previous versions (their rollback)"
    move = f"move an alias to the newest version (`heirloom models promote REF ALIAS`), then {drop}"
    ways = [move] if plain - moved else [drop] if kept - plain else []
    fewer = f"keep fewer versions (`heirloom models gc --keep {(keep or 2) - 1}` now, as a lower keep_versions frees "
    fewer += "nothing before it, and resources.keep_versions with the local manager, so retention keeps as few)"
    ways += [fewer] * (keep is not None and keep > 1)
    quota = "its storage_quota_mb('artifacts'); resources.artifact_quota_mb with the local manager"
    ways.append(f"{'or ' * bool(ways)}raise the artifact quota ({quota}) to {need} MiB")
    total = f"{show(size + adding)} {plus} the new version" + (f" ({gauge})" if gauge else "")
    return f"{said}; {total}: " + ", ".join(ways)


def _blob_size(tx: Transaction, blobs: Path, refs: set[str]) -> int:
    """Bytes of the blobs the versions ``refs`` name (a blob two of them share counted once)."""
    names = {
        name for owner, model, version, *pair in tx.blob_rows() if f"{owner}/{model}@{version}" in refs for name in pair
    }
    return sum(file_size(blobs / name) for name in names)
