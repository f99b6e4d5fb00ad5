"""``heirloom.AppendLog``: a record is on disk before append returns, whole or not at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import heirloom
from tests.helpers import REPO, foreign_owned, run_heirloom, write, write_log


def test_append_syncs_each_record_before_returning(tmp_path, monkeypatch):
    """Traces the write path's system calls: every record's bytes are written, then the file
    is fsynced, before ``append`` returns (kill -9 cannot tell this apart from no fsync: the
    page cache survives a killed process, not a power cut)."""
    calls: list[tuple[str, int, int]] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        written = real_write(fd, data)
        calls.append(("write", fd, written))
        return written

    def fsync(fd: int) -> None:
        real_fsync(fd)
        calls.append(("fsync", fd, os.fstat(fd).st_size))

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    log = heirloom.AppendLog(tmp_path / "log.jsonl")
    for i in range(3):
        log.append({"n": i})
        size = (tmp_path / "log.jsonl").stat().st_size
        assert calls[-1] == ("fsync", log._fd, size), calls  # the last thing append did: sync it all
        assert calls[-2][0] == "write"
        calls.clear()
    log.close()
    assert [r["n"] for r in heirloom.AppendLog.read(tmp_path / "log.jsonl")] == [0, 1, 2]


@pytest.mark.parametrize(
    "tail",
    [
        b'{"n": 1, "ti',  # a crash in the middle of record 1
        b'{"n": 1, "time": 1}',  # cut just before its newline, or written by hand: never acknowledged
        b'{"n": 1, "time": 1',  # one brace short
        b'{"n": 1, "label": "a',  # inside a string
    ],
)
def test_a_torn_tail_is_skipped_and_never_glued_to_the_next_record(tmp_path, caplog, tail):
    """Ending a torn tail with a bare newline made a whole object of one cut before its
    newline: a record never acknowledged became one (a label trained, past accept_intent)."""
    path = tmp_path / "log.jsonl"
    write_log(path, b'{"n": 0, "time": 1}\n' + tail)
    log = heirloom.AppendLog(path)
    log.append({"n": 2})
    log.close()
    assert path.read_bytes().count(b"\n") == 3  # the torn line was ended, not continued
    records = list(heirloom.AppendLog.read(path))
    assert [r["n"] for r in records] == [0, 2]
    whole = tail.endswith(b"}")  # a whole record but for its newline: what to do about it is said
    assert ("line 2 was ended with ' (torn)' by a writer" if whole else "line 2 is torn") in caplog.text


def test_a_last_record_without_its_newline_is_said_so_by_readers_and_by_the_writer_that_ends_it(tmp_path, caplog):
    """Checker h323 F3: a record added by hand without a final newline (an editor's save) was skipped as "torn
    (a crash cut it short ...) or no JSON object", and the next append ended it with ' (torn)' saying only that
    the log ended with a torn record; now each says which line, that it has no newline, and what to do."""
    path = tmp_path / "log.jsonl"
    write_log(path, b'{"n": 0, "time": 1}\n{"n": 1, "time": 1}')
    assert [r["n"] for r in heirloom.AppendLog.read(path)] == [0]
    assert f"{path}: line 2 has no newline at its end" in caplog.text
    assert "added by hand without a final newline (end it with one" in caplog.text
    log = heirloom.AppendLog(path)
    log.append({"n": 2})
    log.close()
    writer = f"{path}: line 2 has no newline at its end (a record a crash cut short before it was acknowledged"
    assert writer in caplog.text and "ended with ' (torn)' so it never counts" in caplog.text
    assert [r["n"] for r in heirloom.AppendLog.read(path)] == [0, 2]  # never acknowledged: never counts
    assert f"{path}: line 2 was ended with ' (torn)' by a writer, as it had no newline" in caplog.text
    assert "add it again ending with a newline" in caplog.text


def test_unusable_lines_are_named_and_skipped_and_a_log_that_is_no_file_is_an_error(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    lines = ['{"n": 0, "time": 1}', deep, '{"n": 1, "time": 1e300}', '{"n": 2, "time": "NaN"}', "[1]", '{"n": 3}']
    path.write_text("\n".join(lines) + "\n")
    odd = list(heirloom.AppendLog.read(path, check=lambda record: "n is 3" if record["n"] == 3 else None))
    assert [record["n"] for record in odd] == [0]
    for warning in (
        "line 2 is torn",
        "line 3: 'time' is 1e+300, not a Unix time",
        "line 4: 'time' is NaN, not a Unix time",
        "line 5 is torn",
        "line 6: n is 3; skipped",
    ):
        assert warning in caplog.text, warning  # fmt: skip
    os.mkfifo(tmp_path / "fifo.jsonl")  # a reader would block on it for ever
    (tmp_path / "link.jsonl").symlink_to(path)  # planted in a log's place: the writer refused it, a reader read it
    for strange, what in (
        (tmp_path / "fifo.jsonl", "fifo.jsonl is a FIFO, not a regular file"),
        (tmp_path, f"{tmp_path} is a directory, not a file"),
        (tmp_path / "link.jsonl", "is a symbolic link"),
    ):
        with pytest.raises(heirloom.HeirloomError, match=what):
            list(heirloom.AppendLog.read(strange))
        with pytest.raises(heirloom.HeirloomError, match=what):
            heirloom.LogCursor(strange).read()


def test_an_events_log_that_is_no_file_is_named_with_what_it_is_by_the_cli(tmp_path):
    """What ``heirloom data show`` says of an events source whose log is a FIFO or a folder (once the same words)."""
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    for name, what in (("fifo.jsonl", "a FIFO, not a regular file"), ("folder.jsonl", "a directory, not a file")):
        profile = write(tmp_path / "events.toml", f'[sources.e]\nuse = "events"\napi = "recs"\npath = "{name}"\n')
        shown = run_heirloom("data", "show", str(profile), "e")
        assert shown.returncode == 1 and f"error: the log {tmp_path / name} is {what}" in shown.stderr, shown.stderr


def test_a_skipped_line_is_warned_of_once_per_process_however_often_it_is_read(tmp_path, caplog):
    """A train reads each source several times (fingerprint, splits, epochs): every read said
    every bad line again. Once per file, line and reason, for every reader."""
    path, other = tmp_path / "log.jsonl", tmp_path / "other.jsonl"
    for log_file in (path, other):
        log_file.write_text('{"n": 0}\nnot json\n{"n": 2}\n')
    odd = lambda record: "n is 2" if record.get("n") == 2 else None  # noqa: E731
    for _ in range(3):
        assert [record["n"] for record in heirloom.AppendLog.read(path, check=odd)] == [0]
        assert [record["n"] for _, record in heirloom.LogCursor(path, check=odd).read()[0]] == [0]
    assert caplog.text.count(f"{path}: line 2 is torn") == 1
    assert caplog.text.count(f"{path}: line 3: n is 2; skipped") == 1
    list(heirloom.AppendLog.read(path, check=lambda record: "n is two" if record.get("n") == 2 else None))
    list(heirloom.AppendLog.read(other))
    assert f"{path}: line 3: n is two; skipped" in caplog.text  # another reason is said
    assert f"{other}: line 2 is torn" in caplog.text  # and another file


def test_a_line_holding_a_lone_surrogate_is_named_and_skipped_by_every_reader(tmp_path, caplog):
    """``"\\ud800"`` (as Python's ``json.dumps`` writes half a UTF-16 pair) parses, but is no
    text: ``feedback list``, ``export``, ``train`` and ``data stats`` failed on it with a
    UnicodeEncodeError until someone deleted the line by hand."""
    path = tmp_path / "log.jsonl"
    lines = [
        b'{"n": 0, "text": "fine \\ud83d\\ude00"}',  # an escaped pair: an emoji, kept
        b'{"n": 1, "text": "Shares \\ud800 jumped"}',
        b'{"n": 2, "text": "raw \xed\xa0\x80 bytes"}',  # the same in raw UTF-8, which json.loads reads too
        b'{"n": 3, "\\udc80": 1}',  # a key
        b'{"n": 4, "reasons": [["deep \\uDFFF"]]}',
        b'{"n": 5, "text": "\\\\ud800 is only written out"}',  # an escaped backslash: text
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert [record["n"] for record in heirloom.AppendLog.read(path)] == [0, 5]
    found, _ = heirloom.LogCursor(path).read()
    assert [record["n"] for _, record in found] == [0, 5]
    for number in (2, 3, 4, 5):
        assert f"{path}: line {number}: the string" in caplog.text, number
    assert "'Shares \\ud800 jumped' holds a lone surrogate" in caplog.text  # written as escapes: a terminal shows it


WRITER = """
import resource, sys
from pathlib import Path
import heirloom

resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the disk fills up at 4 KiB
log = heirloom.AppendLog(Path(sys.argv[1]))
for i in range(100):
    try:
        log.append({"n": i, "text": "x" * 150})
    except heirloom.LogWriteError as exc:
        print("refused", i, exc, flush=True)
    else:
        print("acknowledged", i, flush=True)
"""


def test_a_short_write_is_an_error_and_nothing_acknowledged_is_lost(tmp_path):
    path = tmp_path / "log.jsonl"
    result = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    said = [line.split(" ", 2) for line in result.stdout.splitlines()]
    acknowledged = [int(n) for verdict, n, *_ in said if verdict == "acknowledged"]
    refused = [(int(n), rest) for verdict, n, *rest in said if verdict == "refused"]
    assert acknowledged == list(range(len(acknowledged))) and 10 < len(acknowledged) < 100
    assert refused and "nothing was kept" in refused[0][1][0]
    assert path.stat().st_size <= 4096 and path.read_bytes().endswith(b"\n")  # no partial record left
    assert [r["n"] for r in heirloom.AppendLog.read(path)] == acknowledged
    assert all(json.loads(line)["text"] == "x" * 150 for line in path.read_text().splitlines())


def test_a_full_log_refuses_records_past_its_cap(tmp_path):
    log = heirloom.AppendLog(Path(tmp_path / "log.jsonl"), max_bytes=1000)
    written = 0
    try:
        for i in range(100):
            log.append({"n": i, "text": "y" * 100})
            written += 1
    except heirloom.LogFull as exc:
        assert "passes its size limit of 1000 bytes" in str(exc)
    finally:
        log.close()
    assert 0 < written < 100
    assert [r["n"] for r in heirloom.AppendLog.read(tmp_path / "log.jsonl")] == list(range(written))


def test_a_log_of_clients_texts_is_private_and_never_written_through_a_link(tmp_path):
    """Feedback and handoff logs hold what clients sent (a patient's, a customer's words):
    readable by their owner only, and a link planted in a log's place is refused rather than
    appended through to its target."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "feedback" / "p" / "api.jsonl"
        log = heirloom.AppendLog(path)
        log.append({"text": "private"})
        log.close()
        assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
        assert (tmp_path / "feedback").stat().st_mode & 0o777 == 0o700  # every folder it made, not the last only
    finally:
        os.umask(old)
    target = tmp_path / "someone-elses-file"
    target.write_text("untouched\n")
    planted = tmp_path / "feedback" / "p" / "other.jsonl"
    planted.symlink_to(target)
    with pytest.raises(heirloom.HeirloomError, match=f"cannot open the log {planted}: it is a symbolic link"):
        heirloom.AppendLog(planted)
    assert target.read_text() == "untouched\n"


def test_a_cursor_reads_what_any_writer_appended_since_and_starts_over_on_a_replaced_log(tmp_path, caplog):
    """A route answering from a log (the support api's handoff queue) reads each record once:
    records another process appended, a line being written left for later, a log restored
    from a backup read again from its start."""
    path = tmp_path / "log.jsonl"
    cursor = heirloom.LogCursor(path)
    assert cursor.read() == ([], False)  # no log yet
    log = heirloom.AppendLog(path)
    log.append({"n": 0})
    appended = f"import heirloom, pathlib; heirloom.AppendLog(pathlib.Path({str(path)!r})).append({{'n': 1}})"
    subprocess.run([sys.executable, "-c", appended], check=True, cwd=REPO)  # another worker
    found, restarted = cursor.read()
    assert [r["n"] for _, r in found] == [0, 1] and not restarted
    assert cursor.records_at([offset for offset, _ in reversed(found)]) == [r for _, r in reversed(found)]
    with path.open("ab") as raw:
        raw.write(b'not json\n{"n": 2, "ti')  # a bad line, then a record half written
    assert cursor.read() == ([], False)
    assert "line 3 is torn" in caplog.text  # numbered across reads
    with path.open("ab") as raw:
        raw.write(b'me": 5}\n')
    found, _ = cursor.read()
    assert [r["n"] for _, r in found] == [2] and cursor.read() == ([], False)
    log.close()
    restored = tmp_path / "restored.jsonl"
    restored.write_bytes(b'{"n": 9}\n')
    os.replace(restored, path)
    found, restarted = cursor.read()
    assert [r["n"] for _, r in found] == [9] and restarted


def test_a_cursor_starts_over_on_a_log_truncated_in_place_and_grown_past_where_it_was(tmp_path):
    """logrotate's copytruncate, then more records than before before the next read: the
    file kept its inode and outgrew the old offset, so the cursor read from mid-line (a
    queue listed 7 handoffs of 45, and resolve answered NOT_FOUND for ones it held)."""
    path = tmp_path / "handoffs.jsonl"
    log = heirloom.AppendLog(path)
    for n in range(3):
        log.append({"n": n, "text": "before"})
    cursor = heirloom.LogCursor(path)
    assert len(cursor.read()[0]) == 3
    with path.open("r+b") as rotated:  # copytruncate: the same file, emptied
        rotated.truncate(0)
    for n in range(10, 20):
        log.append({"n": n, "text": "after the rotation"})
    found, restarted = cursor.read()
    assert [record["n"] for _, record in found] == list(range(10, 20)) and restarted
    log.append({"n": 20})
    assert [record["n"] for _, record in cursor.read()[0]] == [20]  # and reads on from there


def test_a_cursor_read_between_a_rotation_and_the_next_record_reads_the_new_log(tmp_path):
    """The documented rotation (rename the log, ``nocreate``) with a read before the writer made
    a new file: the cursor kept the old file's last bytes and seeked to a negative offset on
    every later read (EINVAL), so a daemon's handoff queue stayed UNAVAILABLE until a restart
    (checker 278 F1)."""
    path = tmp_path / "handoffs.jsonl"
    log = heirloom.AppendLog(path)
    log.append({"n": 0, "text": "before the rotation"})
    cursor = heirloom.LogCursor(path)
    assert [record["n"] for _, record in cursor.read()[0]] == [0]
    os.rename(path, tmp_path / "handoffs.jsonl.1")
    assert cursor.read() == ([], True)  # an empty queue, as documented
    log.append({"n": 1})  # the writer starts a new file
    assert [record["n"] for _, record in cursor.read()[0]] == [1]
    log.append({"n": 2})
    found, restarted = cursor.read()
    assert [record["n"] for _, record in found] == [2] and not restarted
    assert cursor.records_at([offset for offset, _ in found]) == [record for _, record in found]


def test_a_log_replaced_under_a_running_writer_gets_the_next_record_and_a_log_that_became_no_file_refuses_it(tmp_path):
    """An operator restoring the logs from a backup (or rsync, or logrotate) replaced the file
    a daemon held open: every later record was acknowledged and written to the deleted file."""
    path = tmp_path / "logs" / "feedback.jsonl"
    log = heirloom.AppendLog(path)
    log.append({"n": 1})
    restored = tmp_path / "logs" / "restored.jsonl"
    write_log(restored, path.read_bytes())
    os.replace(restored, path)  # the restore
    log.append({"n": 2})
    assert [record["n"] for record in heirloom.AppendLog.read(path)] == [1, 2]
    path.unlink()  # removed: the next record starts a new file
    log.append({"n": 3})
    assert [record["n"] for record in heirloom.AppendLog.read(path)] == [3]
    shutil.rmtree(tmp_path / "logs")  # its folder removed too (an operator's cleanup)
    log.append({"n": 3})
    assert [record["n"] for record in heirloom.AppendLog.read(path)] == [3]

    def replace_with(make) -> None:
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        make()

    for make, said in (
        (path.mkdir, ": it is a directory, not a file"),
        (lambda: os.mkfifo(path), ": it is a FIFO, not a regular file"),
        (lambda: path.symlink_to("/dev/zero"), ": it is a symbolic link"),  # O_NOFOLLOW's "Too many levels" (h426)
    ):
        replace_with(make)
        with pytest.raises(heirloom.LogWriteError, match=f"cannot open the log {path}{said}"):
            log.append({"n": 4})  # not acknowledged: the api answers UNAVAILABLE
    replace_with(lambda: write_log(path, b""))
    log.append({"n": 5})  # a regular file again: the writer recovers
    assert [record["n"] for record in heirloom.AppendLog.read(path)] == [5]
    shutil.rmtree(tmp_path / "logs")  # its folder became a file: NotADirectoryError was an INTERNAL reply
    (tmp_path / "logs").write_text("not a folder")
    with pytest.raises(heirloom.LogWriteError, match=f"cannot open the log {path}"):
        log.append({"n": 6})
    log.close()


ONCE_WRITER = """
import sys, threading
from pathlib import Path
import heirloom

path = Path(sys.argv[1])
log = heirloom.AppendLog(path)
cursor, seen = heirloom.LogCursor(path), set()
start = threading.Barrier(2)

def claim(key):
    with log.locked() as write:  # read what every writer appended, then append only if it is not there
        seen.update(record["key"] for _, record in cursor.read()[0])
        if key not in seen:
            write([{"key": key, "by": sys.argv[2]}])

def claims():
    start.wait()
    for key in range(200):
        claim(key)

threads = [threading.Thread(target=claims) for _ in range(2)]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
"""


def test_a_check_and_append_under_locked_appends_once_across_processes_and_threads(tmp_path):
    """``AppendLog.locked``: a record appended only when the log does not hold it yet, by 3 processes of 2
    threads each at once, is appended once (checked outside the lock, a resent resolution was appended twice)."""
    path = tmp_path / "log.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", ONCE_WRITER, str(path), str(n)], cwd=REPO, stderr=subprocess.PIPE)
        for n in range(3)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0], [w.stderr.read() for w in writers]
    keys = [record["key"] for record in heirloom.AppendLog.read(path)]
    assert sorted(keys) == list(range(200))
    log = heirloom.AppendLog(path)
    with log.locked() as write:
        write([{"key": 200}, {"key": 201}])
    with pytest.raises(heirloom.LogWriteError, match="written after its locked\\(\\) block ended"):
        write([{"key": 202}])  # kept past its block: the check it made no longer holds
    log.close()
    assert [record["key"] for record in heirloom.AppendLog.read(path)][-2:] == [200, 201]


@pytest.mark.parametrize("whose", ["open to others", "another user's"])
def test_a_daemon_writes_no_clients_text_into_a_log_another_user_could_read_or_replace(tmp_path, whose):
    """Checker h343 F1: in a home others may write, another user made the log before the daemon did (0666,
    theirs), or made its folder a link to a folder of theirs (``records/PROJECT -> /theirs``), or swapped the
    log for a file of theirs while the daemon ran: it appended clients' texts to their file, in silence. Now
    the daemon refuses such a log, at start and on reopening it, naming it and the fix; and it warns at start
    of a HEIRLOOM_HOME that others may write."""
    from tests.daemons import Daemon

    home = heirloom.home()
    log = home / "records" / "daemon" / "t.jsonl"  # the testing api's log: PROJECT is the profile's name

    def planted() -> str:
        """A log file that is no private one of the daemon's user: the words that say why."""
        write_log(log, b"")
        log.chmod(0o666)
        return (
            f"it belongs to another user, {foreign_owned(log)}"
            if whose == "another user's"
            else ("it is open to others than its owner (mode 666): chmod 600 it")
        )

    said = planted()
    daemon = Daemon(tmp_path / "pre-made")
    assert daemon.process.wait(60) != 0
    assert f"cannot open the log {log}: {said}" in daemon.log()
    shutil.rmtree(log.parent)
    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir()
    log.parent.symlink_to(elsewhere)  # records/daemon -> their folder
    daemon = Daemon(tmp_path / "linked")
    assert daemon.process.wait(60) != 0
    assert f"cannot open the log {log}: {log.parent} is a symbolic link" in daemon.log()
    assert list(elsewhere.iterdir()) == []  # nothing made through the link
    log.parent.unlink()

    home.chmod(0o777)  # every user may write the home: said at start
    try:
        daemon = Daemon(tmp_path / "running")
        daemon.wait_ready()
    finally:
        home.chmod(0o700)
    assert f"the heirloom home {home} (HEIRLOOM_HOME) may be written by others than its owner (mode 777" in daemon.log()
    try:
        with daemon.client(timeout=10, retries=0) as client:
            client.call("t.record", {"text": "first"})
            log.unlink()
            said = planted()  # swapped under the running daemon
            with pytest.raises(heirloom.RemoteError):
                client.call("t.record", {"text": "a client's confidential text"})
            assert log.read_bytes() == b""  # not a word of it in their file
            assert f"cannot open the log {log}: {said}" in daemon.log()
            log.unlink()  # removed: the daemon makes its own again
            client.call("t.record", {"text": "third"})
    finally:
        assert daemon.terminate() == 0
    assert [record["text"] for record in heirloom.AppendLog.read(log)] == ["third"]
    assert (log.stat().st_mode & 0o777, log.stat().st_uid) == (0o600, os.geteuid())


@pytest.mark.parametrize(
    ("parts", "said"),
    [
        (("feedback", "fin", "../../../escaped"), "name '../../../escaped' is no folder or file name"),
        (("/abs", "fin", "a"), "kind '/abs' is no folder or file name"),
        (("feedback", "..", "a"), "project '..' is no folder or file name"),
        (("feedback", "", "a"), "project '' is no folder or file name"),
        (("store", "fin", "a"), "kind 'store' is the home's store/ folder, which holds no logs"),
    ],
)
def test_log_path_keeps_every_log_in_its_place_in_the_home(parts, said):
    """h426 F6: ``log_path("feedback", "fin", "../../../s/escaped")`` (a plugin's own strings) named a file outside
    HEIRLOOM_HOME, which AppendLog then wrote, and kinds ``store``, ``cache`` and ``data`` were taken."""
    with pytest.raises(ValueError, match=re.escape(f"log_path: {said}")):
        heirloom.log_path(*parts)
    assert heirloom.log_path("feedback", "fin", "sentiment").parts[-3:] == ("feedback", "fin", "sentiment.jsonl")
