"""``heirloom feedback``: inspect and correct the feedback a running system recorded.

The logs are append-only (``heirloom.FeedbackLog``): ``remove`` appends a tombstone and
``accept-label`` an acceptance, so what was received stays on disk for audit while the
next ``heirloom train`` sees the corrected set. Safe while the daemon runs: every writer
appends whole lines to the same file.
"""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from heirloom.cli.common import (
    EXIT_INVALID,
    console,
    echo,
    echo_json,
    fail,
    get_kernel,
    inert,
    json_text,
    print_json,
    report_profile_error,
    resolve_or_exit,
    say_error,
    whose,
)
from heirloom.cli.options import PROFILE, a_path, output_file, set_option
from heirloom.cli.overwrite import refuse_overwrite
from heirloom.cli.tables import print_table
from heirloom.core.errors import HeirloomError, ProfileError, described
from heirloom.core.schema import ResolvedProfile, did_you_mean
from heirloom.files import irregular, unwritable, write_atomic
from heirloom.store.feedback import CLOSE_TO, NEW_LABEL, Entry, FeedbackLog, Replay
from heirloom.store.labels import printed_form

#: What a missing data path says (kernel/core/schema.py); where such a path is no business of these commands.
MISSING, DATA_KEYS = "path does not exist: ", ("sources.", "models.")


def _resolve(profile: str, overrides: tuple[str, ...]) -> ResolvedProfile:
    """The resolved PROFILE, though the data its sources or models read is missing (another host, no
    HEIRLOOM_DATA): these commands read only the feedback log, so each such path is resolved to the
    current folder for them, with a note; any other problem exits 2 as every command does."""
    try:
        return get_kernel().resolve(profile, overrides)
    except ProfileError as exc:
        missing = [p for p in exc.problems if p.path.startswith(DATA_KEYS) and p.message.startswith(MISSING)]
        if missing and len(missing) == len(exc.problems):
            try:
                resolved = get_kernel().resolve(profile, (*overrides, *(f"{p.path}={Path.cwd()}" for p in missing)))
            except HeirloomError:
                report_profile_error(exc)
            paths = "; ".join(f"{p.path} ({p.message[len(MISSING) :].split(' (')[0]})" for p in missing)
            click.echo(f"note: the data is not here, and not needed to read the feedback log: {paths}", err=True)
            return resolved
    except HeirloomError:
        pass
    return resolve_or_exit(profile, overrides)  # every problem said, as every command says it


def feedback_logs(profile: ResolvedProfile, api: str | None = None) -> dict[str, Path]:
    """``api name -> log path`` for the profile's apis that record feedback (or just ``api``). An api whose
    ``feedback_log`` raises or returns no path (a plugin's bug) is an error naming it, its type and plugin; the
    other apis' logs are still read (a fault of one plugin's method stopped every command with a traceback)."""
    logs, broken = {}, {}
    for spec in [spec for spec in profile.components if spec.kind == "api"]:
        try:
            path = profile.instantiate(spec).feedback_log(profile.project, spec.name)
        except Exception as exc:  # noqa: BLE001 - said below, naming whose method it is
            wrong = f"raised {described(exc)}"
        else:
            if path is None or isinstance(path, str | PathLike):
                if path is not None:
                    logs[spec.name] = Path(path)
                continue
            wrong = f"returned {path!r:.80}, not a path or None"
        named = whose(get_kernel(), "api", spec.key, spec.use)
        broken[spec.name] = f"error: {named}: feedback_log() {wrong} (a plugin bug?); its feedback is left out"
    if api in broken:
        fail(broken[api])
    if api is None:
        for said in broken.values():
            say_error(said)
        if not logs:
            readable = " that can be read" if broken else ""
            fail(f"error: no api of profile {profile.name!r} records feedback{readable}", 1 if broken else EXIT_INVALID)
        return logs
    if api not in logs:
        fail(
            f"error: profile {profile.name!r} has no api {api!r} that records feedback{did_you_mean(api, logs)} "
            f"(apis with feedback: {', '.join(logs) or 'none'})",
            EXIT_INVALID,
        )
    return {api: logs[api]}


def _one_log(profile: ResolvedProfile, api: str | None) -> tuple[str, Path]:
    logs = feedback_logs(profile, api)
    if len(logs) > 1:
        fail(f"error: several apis record feedback ({', '.join(logs)}); name one with --api", EXIT_INVALID)
    return next(iter(logs.items()))


#: Columns below which a record is printed as lines, not a table's row.
ROOMY = 80  # several apis' table was wider than the terminal up to 77 (v30 F5)


def _when(record: dict[str, Any]) -> str:
    """When it was recorded, local time with its UTC offset (one shown without was ambiguous), spaced."""
    stamp = record.get("time")
    if not isinstance(stamp, int | float):
        return "-"
    shown = datetime.fromtimestamp(stamp).astimezone().isoformat(" ", timespec="seconds")
    return f"{shown[:19]} {shown[19:]}"  # 2026-12-06 16:56:42 +00:00: a narrow column wraps it whole (h409 F2)


def _shown(row: dict[str, Any]) -> str:
    """A record's text column: its text, else what else it holds (an api whose inputs are no text: weather readings)."""
    text = row.get("text")
    return text if isinstance(text, str) else json_text({k: v for k, v in row.items() if k not in _BOOKKEEPING})


#: What the other columns show, or the kernel keeps about a record rather than what was corrected.
_BOOKKEEPING = {"id", "api", "time", "label", "status", "removed", NEW_LABEL, CLOSE_TO}


def _row(api: str, entry: Entry, replay: Replay) -> dict[str, Any]:
    """One record as JSON: the record itself, its api, its status and any tombstone."""
    row = {**entry.record, "api": api, "status": entry.status(set(replay.accepted))}
    if entry.removed is not None:
        row["removed"] = entry.removed
    return row


api_argument = click.argument("api", required=False)
#: ``show`` and ``remove`` find an ID in any log; ``accept-label`` needs one log (the only one, or ``--api``'s).
api_option = click.option(
    "--api", default=None, help="Look in this api's log only (default: every api's that records feedback)."
)
one_api_option = click.option(
    "--api", default=None, help="The api whose log to use (needed when several record feedback)."
)


@click.group("feedback")
def feedback_group() -> None:
    """Inspect and correct the feedback apis recorded (corrections the next train uses).

    Records are never rewritten: `remove` appends a tombstone and `accept-label` an
    acceptance to the same durable log, so the history stays auditable. A record's status
    is ok (it trains), removed, or new label (its label is not one the model predicted
    when it was recorded; it trains once the label is accepted). They read only the logs: a
    data path of the profile missing on this host is noted, not an error.
    """


@feedback_group.command("list")
@click.argument("profile", type=PROFILE)
@api_argument
@click.option("--all", "show_all", is_flag=True, help="Include removed records.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="Newest N (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@set_option
def feedback_list(
    profile: str, api: str | None, show_all: bool, limit: int, as_json: bool, overrides: tuple[str, ...]
) -> None:
    """The feedback records of PROFILE's API (default: every api that records feedback).

    A table of id, api (when several), time, label, status and text; on a terminal under
    80 columns, each record as lines (id: ..., text: ...) instead, nothing cut.
    """
    resolved = _resolve(profile, overrides)
    rows, logs = [], feedback_logs(resolved, api)
    for name, path in logs.items():
        replay = FeedbackLog.replay(path)
        rows += [_row(name, entry, replay) for entry in replay.entries if show_all or entry.removed is None]
        pending = replay.pending_labels()
        if pending and not as_json:
            waiting = ", ".join(f"{label!r} ({count})" for label, count in sorted(pending.items()))
            click.echo(f"{name}: new labels waiting for heirloom feedback accept-label: {waiting}", err=True)
    if (
        len(logs) > 1
    ):  # each log is in the order it was written: --limit keeps the newest of them all, not the last api's
        rows.sort(key=lambda row: row["time"] if isinstance(row.get("time"), int | float) else 0.0)
    held, rows = len(rows), rows[-limit:] if limit else rows
    cut = f"{len(rows)} of {held} record(s) (newest; --limit 0 for all)" if len(rows) < held else ""
    if as_json:
        for row in rows:
            echo_json(json_text(row))
        if cut:  # on stderr, as data show says its --limit: --json cut at 50 unsaid (checker h342 F6)
            click.echo(cut, err=True)
        return
    apis = len({row["api"] for row in rows}) > 1  # one api's column says nothing, and costs the text its room
    label, status = Column("label", overflow="fold", min_width=10), Column("status", no_wrap=True)  # whole (h409 F2)
    api, time = Column("api", overflow="fold"), Column("time", overflow="fold")  # cut, two apis read alike (v27 F4)
    table = Table(Column("id", no_wrap=True), *([api] * apis), time, label, status, Column("text", overflow="fold"))
    for row in rows:
        text = _shown(row)
        cells = [row["id"], *([row["api"]] * apis), _when(row), row.get("label", ""), row["status"]]
        table.add_row(*map(inert, cells), inert(text if len(text) <= 80 else text[:77] + "..."))
    print_table(console, table, roomy=ROOMY)  # its columns had no room under 70, headers and all (v29 F1)
    if cut:  # "50 record(s)" read as all the log held (checker 282 F3); on stderr, out of the report (h342 F6)
        click.echo(cut, err=True)
    else:
        echo(f"{len(rows)} record(s)")


@feedback_group.command("show")
@click.argument("profile", type=PROFILE)
@click.argument("record_id", metavar="ID")
@api_option
@set_option
def feedback_show(profile: str, record_id: str, api: str | None, overrides: tuple[str, ...]) -> None:
    """Everything recorded about feedback record ID, as JSON (with its status and tombstone)."""
    resolved = _resolve(profile, overrides)
    name, entry, replay = _find(feedback_logs(resolved, api), record_id)
    print_json(_row(name, entry, replay))


def _find(logs: dict[str, Path], record_id: str) -> tuple[str, Entry, Replay]:
    return _find_all(logs, [record_id])[0]


def _find_all(logs: dict[str, Path], record_ids: list[str]) -> list[tuple[str, Entry, Replay]]:
    """Each of ``record_ids`` in the first of ``logs`` that holds it, each log read once (``remove``
    read a log again for each ID: a thousand IDs took minutes); an unknown ID exits 2, naming it."""
    found: dict[str, tuple[str, Entry, Replay]] = {}
    for name, path in logs.items():
        replay = FeedbackLog.replay(path)
        for entry in replay.entries:
            found.setdefault(entry.id, (name, entry, replay))
    unknown = [record_id for record_id in record_ids if record_id not in found]
    if unknown:
        more = f" (and {len(unknown) - 1} more unknown ID(s))" if len(unknown) > 1 else ""
        fail(f"error: no feedback record {unknown[0]!r} in {', '.join(map(str, logs.values()))}"
             f"{did_you_mean(unknown[0], found)}{more}", EXIT_INVALID)  # fmt: skip
    return [found[record_id] for record_id in record_ids]


@feedback_group.command("remove")
@click.argument("profile", type=PROFILE)
@click.argument("record_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (kept in the tombstone for audit).")
@api_option
@set_option
def feedback_remove(
    profile: str, record_ids: tuple[str, ...], reason: str, api: str | None, overrides: tuple[str, ...]
) -> None:
    """Remove feedback records: append a tombstone for each ID; the next train skips them.

    Every ID is checked before anything is written; an unknown ID exits 2. A log's tombstones
    are appended in one write and one fsync: all of them or none.
    """
    resolved = _resolve(profile, overrides)
    logs = feedback_logs(resolved, api)
    found = _find_all(logs, list(dict.fromkeys(record_ids)))  # an ID given twice: one tombstone
    for _, entry, _ in found:
        if entry.removed is not None:
            echo(f"{entry.id} was already removed ({_when(entry.removed)})")
    for name in logs:  # each log's tombstones in one write and one fsync
        entries = [entry for api, entry, _ in found if api == name and entry.removed is None]
        if not entries:
            continue
        log = FeedbackLog(logs[name])
        try:
            log.remove_all([entry.id for entry in entries], reason)
        finally:
            log.close()
        for entry in entries:
            said = f"{name}: {entry.record.get('label')!r}, {entry.record.get('text', '')[:60]!r}"
            echo(f"removed {entry.id} ({said})")


@feedback_group.command("export")
@click.argument("profile", type=PROFILE)
@api_argument
@click.option(
    "--output",
    "-o",
    type=a_path(dir_okay=False),
    callback=lambda ctx, param, value: _export_file(value),
    help="Write here (default, or -: stdout), mode 0600, replacing a link there; a folder not there, a FIFO, "
    "a name too long for a file, or a file the profile reads or heirloom keeps (its logs, the store): exit 2.",
)
@set_option
def feedback_export(profile: str, api: str | None, output: Path | None, overrides: tuple[str, ...]) -> None:
    """The records the log offers the next train, as JSON lines: removed records and records
    with a label not accepted yet are left out. A union source may leave out more (those
    repeating a validation or test text): heirloom train says how many, naming their ids."""
    resolved = _resolve(profile, overrides)
    refuse_overwrite("--output", output, resolved)
    lines = []
    for name, path in feedback_logs(resolved, api).items():
        lines += [json_text({**record, "api": name}) for record in FeedbackLog.replay(path).trainable()]
    text = "".join(line + "\n" for line in lines)
    if output is None or str(output) == "-":
        echo(text, nl=False)
    else:
        try:
            _write_export(output, text.encode("utf-8"))
        except OSError as exc:  # a full disk (/dev/full): which file, not only "No space left on device"
            fail(f"error: --output {output}: cannot write: {unwritable(output, exc)} (or print to stdout: -o -)")
        click.echo(f"wrote {len(lines)} record(s) to {output}", err=True)


def _device(path: Path) -> bool:
    """Whether ``path`` itself (no link followed) is a character device: ``/dev/null``, ``/dev/full``."""
    try:
        return stat.S_ISCHR(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _export_file(path: Path | None) -> Path | None:
    """``--output``, checked as it is parsed (exit 2), as ``eval --html`` checks its file: a FIFO, a socket, a
    folder or a link to one of them is refused (the export replaces what is at FILE); a device named itself
    is written to."""
    if path is not None and str(path) != "-" and not _device(path) and (kind := irregular(path)):
        raise click.BadParameter(f"{path} {kind}; name a file to write the records to (-: stdout)")
    return output_file(path)


def _write_export(path: Path, data: bytes) -> None:
    """The export, as ``eval --html`` writes its report: a temp file beside ``path`` renamed into place, so a
    link at ``path`` (another user's, in a folder they may write) is replaced, never written through; mode 0600
    (no umask loosens it), as the logs it copies: it holds clients' texts. A character device is written to."""
    if not _device(path):
        write_atomic(path, data, mode=0o600)
        return
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "wb") as device:
        device.write(data)


def _refuse_lookalikes(api: str, label: str, pending: dict[str, int], accepted: dict[str, Any]) -> None:
    """Exit 2 where ``label`` prints like another waiting label, not itself waiting (typed plain, a no-break space
    waits: the did-you-mean named a third), or, waiting, like an accepted one: two workers each recorded one of a
    pair, and both accepted trained as two classes printed alike (re-check v32 F3, F4)."""
    form = printed_form(label)
    if label not in pending and (twins := [w for w in pending if printed_form(w) == form]):
        shown = ", ".join(json.dumps(twin) for twin in twins)  # as JSON writes it: the spaces told apart
        said = f"but {shown} does, which prints alike (another Unicode form): accept it as written, or remove it"
        fail(f"error: no feedback of {api!r} waits with new label {json.dumps(label)}, {said}", EXIT_INVALID)
    if label in pending and (twin := next((a for a in accepted if printed_form(a) == form), None)) is not None:
        said = f"a class apart: remove its records (heirloom feedback remove) and send them again as {json.dumps(twin)}"
        fail(f"error: {json.dumps(label)} prints like the accepted {json.dumps(twin)}, {said}", EXIT_INVALID)


@feedback_group.command("accept-label")
@click.argument("profile", type=PROFILE)
@click.argument("label")
@click.option("--reason", default="", help="Why (kept with the acceptance for audit).")
@one_api_option
@set_option
def feedback_accept_label(profile: str, label: str, reason: str, api: str | None, overrides: tuple[str, ...]) -> None:
    """Accept LABEL, a new label feedback brought: its records train from the next train on.

    Only labels that records are waiting with can be accepted (a typo exits 2 and lists them).
    A label the api found differing from a known one only by case, spaces, '_' or '-' (Claims:
    claims) is accepted with a warning naming the known label (exit 0).
    """
    resolved = _resolve(profile, overrides)
    name, path = _one_log(resolved, api)
    replay = FeedbackLog.replay(path)
    pending = replay.pending_labels()
    if label not in pending and label not in replay.accepted:  # typed decomposed (macOS input): the composed one,
        label = unicodedata.normalize("NFC", label)  # the only form a route records; it said "no such" (h422 F3)
    if label in replay.accepted:
        echo(f"{label!r} was already accepted ({_when(replay.accepted[label])})")
        return
    _refuse_lookalikes(name, label, pending, replay.accepted)
    if label not in pending:
        waiting = ", ".join(w if printed_form(w) == w else json.dumps(w) for w in sorted(pending)) or "none"  # v33 F4
        fail(f"error: no feedback of {name!r} waits with new label {label!r}{did_you_mean(label, pending)} "
             f"(waiting: {waiting})", EXIT_INVALID)  # fmt: skip
    log = FeedbackLog(path)
    try:
        log.accept_label(label, reason)
    finally:
        log.close()
    echo(f"accepted {label!r}: {pending[label]} record(s) of {name!r} train from the next heirloom train on")
    close = {entry.record.get(FeedbackLog.CLOSE_TO) for entry in replay.entries if entry.record.get("label") == label}
    for known in sorted(k for k in close if isinstance(k, str)):  # the api's mark; accepting is the operator's call
        click.echo(
            f"warning: {label!r} differs from the model's label {known!r} only by case, spaces, '_' or '-' and trains "
            f"as a class of its own; if they are one, remove its records and send them again as {known!r}",
            err=True,
        )


COMMANDS = [feedback_group]
