"""Feedback logs and ``heirloom feedback``: tombstones, new labels, the training view."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import heirloom
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.near_duplicates import NearDuplicates, text_of
from tests.helpers import HEIRLOOM, run_heirloom, write, write_log

PROFILE = """
project = "reviews"

[sources.news]
use = "phrasebank"
path = "${data}/financial-phrasebank"
agreement = "all"

[sources.corrections]
use = "feedback"
api = "sentiment"

[sources.training]
use = "union"
sources = ["news", "corrections"]

[models.sentiment]
use = "text-classifier"
data = "training"

[apis.sentiment]
use = "classify"
model = "sentiment"
new_labels = true
"""


def test_replay_applies_tombstones_and_label_acceptances(tmp_path):
    path = tmp_path / "feedback.jsonl"
    write_log(path, (json.dumps({"text": "written before ids", "label": "neutral", "time": 1.0}) + "\n").encode())
    log = heirloom.FeedbackLog(path)
    kept = log.add({"text": "Profit rose", "label": "positive"})
    dropped = log.add({"text": "Profit rose", "label": "negative"})
    waiting = log.add({"text": "Trading halted", "label": "halted", heirloom.FeedbackLog.NEW_LABEL: True})
    log.remove(dropped, "wrong label")
    log.remove(dropped, "twice")  # the first tombstone counts
    replay = heirloom.FeedbackLog.replay(path)
    assert [entry.id for entry in replay.entries] == ["line-1", kept, dropped, waiting]
    assert replay.find(dropped).removed["reason"] == "wrong label"
    assert [record["text"] for record in replay.trainable()] == ["written before ids", "Profit rose"]
    assert replay.pending_labels() == {"halted": 1}
    log.accept_label("halted", "a real new class")
    path.open("a").write('{"text": "torn by a crash befo')  # never acknowledged: skipped
    replay = heirloom.FeedbackLog.replay(path)
    assert [record["id"] for record in replay.trainable()] == ["line-1", kept, waiting]
    assert replay.pending_labels() == {}
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[2])["label"] == "negative"  # nothing was rewritten


@pytest.fixture
def reviews(tmp_path, data_dir):
    """A profile whose classify api records feedback, and a log holding three records."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "reviews.toml", PROFILE)
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / "sentiment.jsonl")
    ids = [
        log.add({"text": "Net sales fell 10%", "label": "negative"}),
        log.add({"text": "Net sales fell 10%", "label": "positive"}),
        log.add({"text": "Trading was halted", "label": "halted", heirloom.FeedbackLog.NEW_LABEL: True}),
    ]
    log.close()
    return env, profile, ids


def training_view(env, profile) -> list[dict]:
    shown = run_heirloom("data", "show", str(profile), "corrections", "--limit", "0", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def test_a_repeated_record_id_keeps_the_later_and_says_so(tmp_path, caplog):
    """Two logs merged by hand after a restore held the same id twice: one record vanished
    from ``feedback list`` without a word."""
    path = tmp_path / "feedback.jsonl"
    first, second = {"id": "a1", "text": "Profit rose", "label": "positive"}, {"id": "a1", "text": "x", "label": "y"}
    write(path, "".join(json.dumps(record | {"time": 1.0}) + "\n" for record in (first, second)))
    replay = heirloom.FeedbackLog.replay(path)
    assert [entry.record["text"] for entry in replay.entries] == ["x"]
    assert f"{path}: line 2 repeats the id a1 of an earlier record; the later is kept" in caplog.text


def test_lines_are_named_by_their_line_in_the_file_with_skipped_lines_counted(tmp_path, caplog):
    """A skipped line (torn, edited) before them shifted the ``line-N`` ids of records written
    without one, and the line a "repeats the id" warning named: both counted only the records read."""
    path = tmp_path / "feedback.jsonl"
    lines = ["{torn", json.dumps({"text": "Profit rose", "label": "positive", "time": 1.0})]
    lines += [json.dumps({"id": "b2", "text": t, "label": "negative", "time": 1.0}) for t in ("Loss", "Loss again")]
    write(path, "\n".join(lines) + "\n")
    replay = heirloom.FeedbackLog.replay(path)
    assert [entry.id for entry in replay.entries] == ["line-2", "b2"]
    assert f"{path}: line 4 repeats the id b2 of an earlier record; the later is kept" in caplog.text


def test_list_remove_export_and_accept_label_from_the_command_line(reviews, tmp_path, data_dir):
    env, profile, (good, wrong, halted) = reviews
    listed = run_heirloom("feedback", "list", str(profile), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["id"], row["status"], row["api"]) for row in rows] == [
        (good, "ok", "sentiment"),
        (wrong, "ok", "sentiment"),
        (halted, "new label", "sentiment"),
    ]
    table = run_heirloom("feedback", "list", str(profile), "sentiment", env={**env, "TZ": "Asia/Tokyo"})
    assert good in table.stdout and table.stdout.splitlines()[-1] == "3 record(s)", table.stdout
    cut = run_heirloom("feedback", "list", str(profile), "--limit", "2", env=env)  # it said "2 record(s)" (checker 282)
    note = "2 of 3 record(s) (newest; --limit 0 for all)"  # on stderr, --json too: that cut its list unsaid (h342 F6)
    assert good not in cut.stdout and note not in cut.stdout and cut.stderr.splitlines()[-1] == note, cut.stderr
    cut = run_heirloom("feedback", "list", str(profile), "--limit", "2", "--json", env=env)
    assert len(cut.stdout.splitlines()) == 2 and cut.stderr.splitlines()[-1] == note, cut.stderr
    assert "+09:00" in table.stdout, "a time with its UTC offset (it read 22:18 or 13:18 by TZ, no zone)"
    assert "new labels waiting for heirloom feedback accept-label: 'halted' (1)" in table.stderr
    assert [r["label"] for r in training_view(env, profile)] == ["negative", "positive"]  # 'halted' waits
    shown = run_heirloom("data", "show", str(profile), "corrections", "--limit", "0", env=env)
    waiting = "sentiment.jsonl: 1 correction(s) with new labels wait for heirloom feedback accept-label"
    assert shown.stderr.count(waiting) == 1, shown.stderr  # what a train reading this source says, once

    twice = (wrong, wrong, "--reason", "typo by the annotator")
    removed = run_heirloom("feedback", "remove", str(profile), *twice, env=env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.count(f"removed {wrong}") == 1, removed.stdout  # one tombstone, said once (checker 309)
    log = Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl"
    assert log.read_text().count('"op": "remove"') == 1
    shown = json.loads(run_heirloom("feedback", "show", str(profile), wrong, env=env).stdout)
    assert shown["status"] == "removed" and shown["removed"]["reason"] == "typo by the annotator"
    live = run_heirloom("feedback", "list", str(profile), "--json", env=env).stdout.splitlines()
    assert [json.loads(line)["id"] for line in live] == [good, halted]
    everything = run_heirloom("feedback", "list", str(profile), "--all", "--json", env=env).stdout.splitlines()
    assert len(everything) == 3

    unknown = run_heirloom("feedback", "remove", str(profile), good[:-1] + "x", env=env)
    assert unknown.returncode == 2 and "no feedback record" in unknown.stderr and "did you mean" in unknown.stderr
    typo = run_heirloom("feedback", "accept-label", str(profile), "haltd", env=env)
    assert typo.returncode == 2 and "did you mean 'halted'" in typo.stderr
    accepted = run_heirloom("feedback", "accept-label", str(profile), "halted", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert "1 record(s)" in accepted.stdout

    view = training_view(env, profile)
    assert [(r["text"], r["label"]) for r in view] == [
        ("Net sales fell 10%", "negative"),
        ("Trading was halted", "halted"),
    ]
    exported = run_heirloom("feedback", "export", str(profile), env=env)
    assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == [good, halted]
    dashed = run_heirloom("feedback", "export", str(profile), "-o", "-", env=env, cwd=tmp_path)
    assert dashed.stdout == exported.stdout and not (tmp_path / "-").exists()  # -: stdout, as usual
    full = run_heirloom("feedback", "export", str(profile), "-o", "/dev/full", env=env)  # was only the OS's words
    assert full.returncode == 1 and "error: --output /dev/full: cannot write: No space left on device" in full.stderr
    kept = log.read_bytes()  # h426 F2: an export over the log it read dropped the removed record and its tombstone
    over = run_heirloom("feedback", "export", str(profile), "-o", str(log), env=env)
    assert over.returncode == 2 and f"error: --output {log}: it is {log}, which heirloom reads or keeps" in over.stderr
    assert log.read_bytes() == kept
    index, other = Path(env["HEIRLOOM_HOME"]) / "store" / "index.sqlite", write(log.parent / "other.jsonl", "{}\n")
    write(index, "a store's index")
    for path in (index, other, data_dir / "financial-phrasebank" / "copy.txt"):  # v32 F1, F2, F5: the store's index,
        over = run_heirloom("feedback", "export", str(profile), "sentiment", "-o", str(path), env=env)  # another log,
        assert over.returncode == 2 and f"error: --output {path}: it is" in over.stderr, over.stderr  # the data
    assert other.read_text() == "{}\n" and not (data_dir / "financial-phrasebank" / "copy.txt").exists()
    elsewhere = write(log.parent.parent / "another-project" / "api.jsonl", "{}\n")  # v33 F1: another project's log
    relative = write(tmp_path / "rel" / "fb.jsonl", "{}\n")  # v33 F2: a relative feedback_path
    where = ("--set", "apis.sentiment.feedback_path=rel/fb.jsonl")
    for path, args in ((elsewhere, ()), (Path("rel/fb.jsonl"), where)):
        over = run_heirloom("feedback", "export", str(profile), "-o", str(path), *args, env=env, cwd=tmp_path)
        assert over.returncode == 2 and f"error: --output {path}: it is" in over.stderr, over.stderr
    assert elsewhere.read_text() == relative.read_text() == "{}\n"


def test_an_export_replaces_a_link_at_its_file_and_is_private_whatever_the_umask(reviews, tmp_path):
    """``feedback export -o FILE`` wrote clients' texts through a link planted at FILE (root's export overwrote
    the file it named, or filled another user's) and made FILE 0644 under umask 022 (checker h343 F5): it is
    written as ``eval --html`` writes its report (a temp file renamed into place: a link is replaced), 0600 as
    the logs it copies. ``/dev/stdout`` and its like, which the rename would replace, are refused."""
    env, profile, _ = reviews
    victim = write(tmp_path / "victim.txt", "ROOT DATA\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "linked.jsonl").symlink_to(victim)
    (shared / "dangling.jsonl").symlink_to(tmp_path / "nothing")
    expected = run_heirloom("feedback", "export", str(profile), env=env).stdout
    old = os.umask(0o022)
    try:
        for name in ("linked.jsonl", "dangling.jsonl", "new.jsonl"):
            exported = run_heirloom("feedback", "export", str(profile), "-o", str(shared / name), env=env)
            assert exported.returncode == 0 and "wrote 2 record(s)" in exported.stderr, exported.stderr
            path = shared / name
            assert not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600 and path.read_text() == expected
    finally:
        os.umask(old)
    assert victim.read_text() == "ROOT DATA\n" and not (tmp_path / "nothing").exists()
    assert sorted(p.name for p in shared.iterdir()) == ["dangling.jsonl", "linked.jsonl", "new.jsonl"]  # no temp
    with open(tmp_path / "out.txt", "w") as out:  # stdout a file: the name resolves to it, and a rename replaced it
        for name in ("/dev/fd/1", "/proc/self/fd/1"):
            refused = subprocess.run(
                [*HEIRLOOM, "feedback", "export", str(profile), "-o", name],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **env},
                timeout=120,
            )
            assert refused.returncode == 2 and f"{name} is an open descriptor of this process" in refused.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    piped = run_heirloom("feedback", "export", str(profile), "-o", str(fifo), env=env)
    assert piped.returncode == 2 and f"{fifo} is a FIFO, not a regular file" in piped.stderr, piped.stderr


def test_an_export_file_that_cannot_be_named_is_a_usage_error_before_the_export(tmp_path):
    """Checker 307 F6: ``-o`` a name too long for a file (printed whole) or in a folder not there was exit 1,
    as a failed write is, where README's exit 2 covers such a name; now refused as it is parsed."""
    cases = {
        tmp_path / ("f" * 300): f"File name too long: {'f' * 80}... (300 characters)\n",
        tmp_path
        / "missing"
        / "x.jsonl": f"{tmp_path / 'missing' / 'x.jsonl'}: the folder {tmp_path / 'missing'} does not exist",
    }
    for path, why in cases.items():
        refused = run_heirloom("feedback", "export", "finance-sentiment", "-o", str(path), cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert f"Invalid value for '--output' / '-o': {why}" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_training_records_holding_labels_spelt_alike_are_said_as_the_csv_source_says(reviews):
    """An accepted correction ``Negative`` beside the data's ``negative`` trained a class of its
    own without a word, where a csv file holding both says so."""
    env, profile, _ = reviews
    log = heirloom.FeedbackLog(Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl")
    log.add({"text": "Shares fell", "label": "Negative", heirloom.FeedbackLog.NEW_LABEL: True})
    log.close()
    quiet = run_heirloom("data", "show", str(profile), "training", "--split", "train", "--limit", "1", env=env)
    assert quiet.returncode == 0 and "differ only by case" not in quiet.stderr, quiet.stderr  # 'Negative' waits
    assert run_heirloom("feedback", "accept-label", str(profile), "Negative", env=env).returncode == 0
    shown = run_heirloom("data", "show", str(profile), "training", "--split", "train", "--limit", "0", env=env)
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stderr.split())
    assert said.count("differ only by case") == 1, said  # once, though the split is read twice (latest_wins)
    assert (
        "source 'training': labels 'negative' and 'Negative' differ only by case, spaces, '_' or '-'; they are two "
        "classes: if they are one, write them the same" in said
    )


def test_a_line_no_api_wrote_never_stops_the_commands_that_repair_the_log(reviews):
    env, profile, (good, wrong, halted) = reviews
    log = Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl"
    with log.open("a") as handle:
        for line in ({"id": ["x"], "text": "a", "label": "b"}, {"op": "accept-label"}, {"id": 5, "text": "a"}):
            handle.write(json.dumps(line) + "\n")
    listed = run_heirloom("feedback", "list", str(profile), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(row)["id"] for row in listed.stdout.splitlines()] == [good, wrong, halted]
    for number, fault in ((4, "'id' must be text"), (5, "'label' must be text"), (6, "'label', 'id' must be text")):
        assert f"sentiment.jsonl: line {number}: {fault}; skipped" in listed.stderr
    removed = run_heirloom("feedback", "remove", str(profile), wrong, env=env)
    assert removed.returncode == 0, removed.stderr
    assert [r["label"] for r in training_view(env, profile)] == ["negative"]


def test_a_line_no_text_or_a_label_feedback_refuses_edited_into_the_log_is_named_and_skipped(reviews):
    """A line holding a lone surrogate made ``feedback list/show/export`` and a train traceback
    (UnicodeEncodeError); a label with a bidi override, a blank text, edited in by hand, trained."""
    env, profile, (good, wrong, halted) = reviews
    log = Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl"
    with log.open("a") as handle:
        for line in (
            {"id": "s1", "text": "Shares \ud800 jumped on the news", "label": "positive", "time": 1.0},
            {"id": "b1", "text": "Shares jumped", "label": "bogus\u202e", "time": 1.0},
            {"id": "b2", "text": "Shares jumped", "label": "bogus\u202e", "new_label": True, "time": 1.0},
            {"id": "b3", "text": " \u200b ", "label": "positive", "time": 1.0},
            {"id": "b4", "text": "Shares jumped", "label": "cafe\u0301", "new_label": True, "time": 1.0},
            {"op": "accept-label", "label": "bogus\u202e", "time": 1.0},
        ):
            handle.write(json.dumps(line) + "\n")
    bidi = "label 'bogus\\u202e' has surrounding spaces or an invisible or control character"
    faults = {
        4: "the string 'Shares \\ud800 jumped on the news' holds a lone surrogate",
        5: bidi,
        6: bidi,  # flagged new: the reader cannot know the api's labels, but no label may hold this
        7: "'text' is blank",
        8: "is not in Unicode NFC",
        9: bidi,  # an acceptance of it
    }
    listed = run_heirloom("feedback", "list", str(profile), "--all", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(row)["id"] for row in listed.stdout.splitlines()] == [good, wrong, halted]
    for number, fault in faults.items():
        said = rf"sentiment\.jsonl: line {number}: [^\n]*{re.escape(fault)}[^\n]*; skipped"
        assert re.search(said, listed.stderr), number
    exported = run_heirloom("feedback", "export", str(profile), env=env)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == [good, wrong]
    shown = run_heirloom("feedback", "show", str(profile), "s1", env=env)
    assert shown.returncode == 2 and "no feedback record 's1'" in shown.stderr, shown.stderr
    assert [r["label"] for r in training_view(env, profile)] == ["negative", "positive"]  # what a train reads


def test_list_limit_keeps_the_newest_across_several_apis_logs(tmp_path, data_dir):
    """With two apis recording feedback, ``--limit`` cut the joined list (the first api's records, then the
    second's), so it showed the second api's oldest instead of the newest records of either."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(
        tmp_path / "reviews.toml",
        PROFILE + PROFILE[PROFILE.index("[apis.sentiment]") :].replace("sentiment]", "second]"),
    )
    logs = {
        api: heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / f"{api}.jsonl")
        for api in ("sentiment", "second")
    }
    written = [
        (api, logs[api].add({"text": f"text {n}", "label": "positive"}))
        for n, api in enumerate(["sentiment", "second", "second", "sentiment"])
    ]
    for log in logs.values():
        log.close()
    listed = run_heirloom("feedback", "list", str(profile), "--limit", "2", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(row["api"], row["id"]) for row in map(json.loads, listed.stdout.splitlines())] == written[2:]


def test_a_profile_or_api_without_feedback_is_named(reviews, tmp_path):
    env, profile, _ = reviews
    wrong_api = run_heirloom("feedback", "list", str(profile), "sentimnt", env=env)
    assert wrong_api.returncode == 2
    assert "no api 'sentimnt' that records feedback; did you mean 'sentiment'?" in wrong_api.stderr
    bare = write(tmp_path / "bare.toml", '[apis.echo]\nuse = "echo"\n')
    assert "no api of profile" in run_heirloom("feedback", "list", str(bare), env=env).stderr


@pytest.mark.parametrize(
    ("label", "said"),
    [
        *((label, "surrounding") for label in (" negative", "negative ", "a\nb", "x\x00", "ab\u202ecd", "neg\u3164")),
        *((label, "is blank") for label in ("\u200b", "\u3164")),
        ("neutr\u0061\u0301l", "is not in Unicode NFC"),  # an attack: the decomposed twin of a label became a class
        ("negati\u0301ve", "is not in Unicode NFC"),
        # an attack past NFC: a Cyrillic letter in a Latin word, full-width letters
        ("n\u0435gative", "prints as 'negative'"),
        ("tr\u0430ding_halted", "the word 'tr\\u0430ding' mixes CYRILLIC and LATIN letters"),  # no twin known
        ("\uff4e\uff45\uff47\uff41\uff54\uff49\uff56\uff45", "prints as 'negative'"),
    ],
)
def test_a_new_label_that_would_print_like_another_is_refused_where_new_labels_are_allowed(label, said):
    """With new labels on, ' negative' and a zero-width label became classes of their own
    (printed as 'negative', or not at all) in the next model: refused before recording. A
    Hangul filler (a letter to Unicode) printed as nothing too."""
    with pytest.raises(heirloom.RequestError) as caught:
        heirloom.check_label(label, ["negative", "neutral"], "body.label", allow_new=True)
    assert caught.value.field == "body.label" and said in caught.value.message
    assert heirloom.check_label("trading_halted", ["negative"], "body.label", allow_new=True) is True


def test_a_label_a_model_knows_in_another_unicode_form_is_refused_naming_the_known_one():
    """A model trained on a decomposed "café" (a jsonl file) took the composed form keyboards send
    as a new class, or refused it with a did-you-mean quoting two identical-looking names."""
    twin = r"\(another Unicode form, optional marks, look-alike letters\): send it as "
    with pytest.raises(heirloom.RequestError, match=twin + r'"cafe\\u0301"'):
        heirloom.check_label("caf\u00e9", ["cafe\u0301"], "body.label", allow_new=True)
    with pytest.raises(heirloom.RequestError, match=twin + r'"cr\\u00e9dit" \(as JSON writes it'):  # not \xe9 (h380 F4)
        heirloom.check_label("cre\u0301dit", ["cr\u00e9dit"], "body.label", allow_new=True)
    for space in "\u00a0\u2009\u3000":  # a no-break, thin or ideographic space: "credit card" again
        with pytest.raises(heirloom.RequestError, match=twin + '"credit card"'):
            heirloom.check_label(f"credit{space}card", ["credit card"], "body.label", allow_new=True)
    assert heirloom.check_label("\u043f\u043e\u043b\u044c\u0437\u0430", ["refund"], "x", allow_new=True)  # all Cyrillic
    for science in ("\u03b2-blocker", "TNF-\u03b1"):  # a Greek letter of its own next to a Latin word
        assert heirloom.check_label(science, ["refund"], "x", allow_new=True)
    with pytest.raises(heirloom.RequestError, match=r"prints as 'CASH'"):  # Cherokee letters
        heirloom.check_label("\u13df\u13aa\u13da\u13bb", ["CASH"], "body.label", allow_new=True)
    for lookalike in ("\u0441\u0430\u0455\u04bb", "\u1d04ash", "c\u0251sh"):  # Cyrillic; a small capital; IPA
        with pytest.raises(heirloom.RequestError, match=r"prints as 'cash'"):
            heirloom.check_label(lookalike, ["cash"], "body.label", allow_new=True)
    # an attack's new labels: a Coptic o, a small-capital I, a dotless i (mixed words, or wholly Latin ones)
    for lookalike in ("p\u2c9fsitive", "pos\u026ative", "negat\u0131ve"):
        with pytest.raises(heirloom.RequestError, match=r"look-alike letters|mixes"):
            heirloom.check_label(lookalike, ["positive", "negative"], "body.label", allow_new=True)
    inquiry = "\u0627\u0633\u062a\u0641\u0633\u0627\u0631"  # an Arabic label; then with a tatweel, with a kasra
    for twin in (inquiry.replace("\u0633\u0627", "\u0633\u0640\u0627"), inquiry.replace("\u062a", "\u062a\u0650")):
        with pytest.raises(heirloom.RequestError, match="look-alike letters"):
            heirloom.check_label(twin, [inquiry], "body.label", allow_new=True)
    tangut = "\U00017000\U00017001"  # letters Python's unicodedata has no name for: INTERNAL IndexError once
    assert heirloom.check_label(tangut, ["positive"], "x", allow_new=True)
    with pytest.raises(heirloom.RequestError, match="not one the model predicts") as caught:
        heirloom.check_label(tangut, ["positive"], "body.label")
    assert caught.value.field == "body.label"


def test_feedback_list_shows_a_clients_escape_sequences_and_markup_without_obeying_them(tmp_path, data_dir):
    """A client's text is printed to an operator's terminal: it must not set its title,
    colour the rows after it, or be read as rich markup."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "reviews.toml", PROFILE)
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / "sentiment.jsonl")
    log.add({"text": "\x1b]0;PWNED\x07 \x1b[31mred [bold magenta]loud[/]", "label": "negative"})
    log.add({"text": "refund \u202eden fo \u2066reversed", "label": "negative"})  # bidi: reorders what follows
    log.close()
    table = run_heirloom("feedback", "list", str(profile), "sentiment", env={**env, "COLUMNS": "400"})
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert "\\x1b]0;PWNED\\x07" in table.stdout and "[bold magenta]loud[/]" in table.stdout
    assert "\u202e" not in table.stdout and "\\u202eden fo \\u2066reversed" in table.stdout


def test_feedback_list_fits_an_80_column_terminal_with_every_label_whole(tmp_path, data_dir):
    """h409 F2: at 80 columns the table was 96 wide and cut two new labels to one prefix (``card_pa…``); at 40
    their column was gone. Each label and time is shown whole, folded in its column, within the terminal."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir), "TZ": "Asia/Tokyo"}
    profile = write(tmp_path / "reviews.toml", PROFILE)
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / "sentiment.jsonl")
    log.add({"text": "I do not recognise this card payment from yesterday", "label": "card_payment_not_recognised"})
    log.add({"text": "Why was I charged a fee for my card payment abroad", "label": "card_payment_fee_charged"})
    log.close()
    for columns in ("80", "100"):
        table = run_heirloom("feedback", "list", str(profile), "sentiment", env={**env, "COLUMNS": columns})
        lines = table.stdout.splitlines()
        assert table.returncode == 0 and max(map(len, lines)) <= int(columns), table.stdout
        cells = ["".join(line.split("│")[column].strip() for line in lines if "│" in line) for column in (3, 2)]
        assert "card_payment_not_recognised" in cells[0] and "card_payment_fee_charged" in cells[0], table.stdout
        assert "+09:00" in cells[1] and "…" not in table.stdout, table.stdout
    narrow = run_heirloom("feedback", "list", str(profile), "sentiment", env={**env, "COLUMNS": "40"}).stdout
    lines = narrow.splitlines()  # v29 F1: under 70 columns the table's columns had no room: a record a block
    assert "label: card_payment_not_recognised" in lines and "time: " in narrow, narrow
    assert "text: I do not recognise this card payment from yesterday" in lines and lines[-1] == "2 record(s)", narrow


def test_a_vowel_sign_is_part_of_its_word_when_a_correction_is_compared_with_the_test_split():
    """An attack: the comparison read words as ``\\w`` runs, which leave combining marks out, so
    "मुझे कम चाहिए" (I need less) repeated "मुझे काम चाहिए" (I need work) and never trained."""
    held_out = NearDuplicates([text_of(["मुझे काम चाहिए"])], 0.8)
    assert text_of(["मुझे काम चाहिए"]) in held_out and text_of(["मुझे कम चाहिए"]) not in held_out


def test_a_chinese_or_japanese_test_sentence_cut_or_edited_is_a_repeat():
    """A team's texts have no spaces: a sentence was one word, so its halves repeated nothing
    (none of 96 halves left out) and its 5-grams changed too much for one word dropped."""
    sentence = "我的包裹到现在还没有送到请帮我查一下"  # my parcel has still not arrived, please check
    held_out = NearDuplicates([text_of([sentence]), text_of(["パスワードを忘れてしまいました"])], 0.8)
    assert text_of([sentence[:9]]) in held_out and text_of([sentence[9:]]) in held_out
    assert text_of([sentence[:-2]]) in held_out and text_of(["パスワードを忘れて"]) in held_out
    assert text_of(["我想退款请帮我查一下"]) not in held_out  # I want a refund, please check: shares a phrase
    assert text_of(["忘れて"]) not in held_out  # a word of it


def test_an_arabic_or_hebrew_test_sentence_with_vowel_marks_or_tatweel_is_a_repeat():
    """Harakat, niqqud and the tatweel are written or left out at will: a team's 120 test
    sentences sent back with one mark per word all trained (test accuracy 0.82 -> 0.89)."""
    arabic = "\u0623\u0631\u064a\u062f \u0627\u0633\u062a\u0631\u062f\u0627\u062f \u0627\u0644\u0645\u0628\u0644\u063a"
    hebrew = "\u05d0\u05e0\u05d9 \u05e8\u05d5\u05e6\u05d4 \u05dc\u05d1\u05d8\u05dc"
    held_out = NearDuplicates([text_of([arabic]), text_of([hebrew])], 0.8)
    marked = (
        "\u0623\u064e\u0631\u0650\u064a\u062f\u064f \u0627\u0633\u0652\u062a\u0650\u0631\u0652\u062f\u064e\u0627\u062f"
    )
    stretched = arabic.replace("\u0645", "\u0645\u0640\u0640")  # tatweel after each meem
    pointed = (  # niqqud
        "\u05d0\u05b2\u05e0\u05b4\u05d9 \u05e8\u05d5\u05b9\u05e6\u05b6\u05d4 "
        "\u05dc\u05b0\u05d1\u05b7\u05d8\u05bc\u05b5\u05dc"
    )
    for variant in (marked + " \u0627\u0644\u0645\u0628\u0644\u063a", stretched, pointed):
        assert text_of([variant]) in held_out, variant


def test_a_text_holding_a_test_sentence_is_a_repeat():
    """An attack sent the 970 PhraseBank test sentences two to a feedback text: 464 of 484
    trained (test accuracy 0.79 -> 0.92 on the same records); a held-out Chinese sentence with
    two English words after it trained too. A text holding nearly all of an example's words
    repeats it."""
    first, second = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "Net sales fell by 5 % in the quarter"
    chinese = "我的包裹到现在还没有送到请帮我查一下"
    held_out = NearDuplicates([text_of([first]), text_of([second]), text_of([chinese])], 0.8)
    assert text_of([f"{first}. {second}."]) in held_out and text_of([f"{second} {first}"]) in held_out
    assert text_of([f"{chinese} thanks bank"]) in held_out and text_of([f"urgent please {chinese}"]) in held_out
    assert text_of(["Operating profit rose sharply in the third quarter of the year"]) not in held_out  # words shared


def test_a_correction_repeating_a_test_sentence_does_not_train(tmp_path, data_dir):
    """485 test sentences sent back as corrections trained the next version, whose reported
    test accuracy rose from 0.79 to 0.90 on the same records: the union leaves out a training
    record of feedback that repeats a validation or test example (case and spacing folded)."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "reviews.toml", PROFILE)

    def shown(source: str, split: str) -> list[dict]:
        result = run_heirloom("data", "show", str(profile), source, "--split", split, "--limit", "0", "--json", env=env)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    tested = shown("news", "test")[0]["text"]
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / "sentiment.jsonl")
    # the same words however written: case and spacing, then what an outside attack used to pass
    # the first check (its copies took the reported accuracy to 1.0): a zero-width space, a BOM,
    # punctuation added, full-width letters
    # then what the next attack used (1.0 and 0.99 again): words glued by zero-width spaces, a
    # word added; and a word changed
    words = tested.split()
    copies = [
        "  " + tested.upper().replace(" ", "  ") + " ",
        tested[:1] + "\u200b" + tested[1:],
        "\ufeff" + tested,
        tested + " !!",
        tested.replace("a", "\uff41"),
        tested.replace(" ", "\u200b"),
        tested + " indeed",
        " ".join([*words[:-2], "elsewhere", words[-1]]),
        " ".join(reversed(words)),  # and then (1.0 again): its words reordered, or cut in halves
        " ".join(words[: len(words) // 2]),
    ]
    for copy in copies:
        log.add({"text": copy, "label": "negative"})
    log.add({"text": "A sentence no split of the data holds", "label": "neutral"})
    log.close()
    assert len(shown("corrections", "train")) == 11  # the log keeps them all: only training leaves them out

    result = run_heirloom(
        "data", "show", str(profile), "training", "--split", "train", "--limit", "0", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(shown("news", "train")) + 1
    fed_back = [record["text"] for record in records if record["id"].startswith("feedback:")]
    assert fed_back == ["A sentence no split of the data holds"]
    warning = "source 'training': 10 training record(s) of 'corrections' repeat a validation or test example (text at "
    warning += "least 0.8 similar, or of its words)"
    assert result.stderr.count(warning) == 1, result.stderr
    # the warning names them (the first ten: here all), so a team can find the corrections that will not train
    named = re.search(r"\(ids: ((?:feedback:\w+, ){9}feedback:\w+)\)", result.stderr)
    assert named and set(named[1].split(", ")) <= {entry["id"] for entry in shown("corrections", "train")}
    assert len(shown("training", "test")) == len(shown("news", "test"))  # the held-out splits are the data's
    # data stats of the union counts labels as they will train (a team needed a new label's count)
    stats = run_heirloom("data", "stats", str(profile), "training", "--json", env=env)
    trains = Counter(record["label"] for record in shown("news", "train")) + Counter(neutral=1)
    assert json.loads(stats.stdout)["labels"]["train"] == dict(sorted(trains.items())), stats.stderr
    typo = write(
        tmp_path / "typo.toml",
        PROFILE.replace(
            'sources = ["news", "corrections"]', 'sources = ["news", "corrections"]\nexample_keys = ["txt"]'
        ),
    )
    result = run_heirloom("data", "show", str(typo), "training", "--split", "train", "--limit", "0", env=env)
    assert "source 'training': no record of 'corrections' has txt (example_keys): none was checked" in result.stderr
    # nested: a union inside a union counts as its parts, each checked by what it is: the
    # corrections still are, the data with held-out splits of its own is not (checked whole, a
    # nested union's original data lost 950 of Banking77's 9,000 rows, near duplicates of its test)
    nested = PROFILE + '[sources.other]\nuse = "phrasebank"\npath = "${data}/financial-phrasebank"\nagreement = "75"\n'
    nested += '[sources.outer]\nuse = "union"\nsources = ["other", "training"]\n'
    outer = write(tmp_path / "nested.toml", nested)
    result = run_heirloom("data", "show", str(outer), "outer", "--split", "train", "--limit", "0", "--json", env=env)
    assert result.returncode == 0 and "source 'training': 10 training record(s) of 'corrections'" in result.stderr
    alone = run_heirloom("data", "show", str(outer), "other", "--split", "train", "--limit", "0", "--json", env=env)
    data = len(shown("news", "train")) + len(alone.stdout.splitlines())
    assert len(result.stdout.splitlines()) == data + 1  # every record of both data sets, and one correction
    unchecked = write(tmp_path / "unchecked.toml", nested.replace('"training"]\n', '"training"]\nexample_keys = []\n'))
    result = run_heirloom("data", "show", str(unchecked), "outer", "--split", "train", "--limit", "0", env=env)
    assert "source 'training': 10 training record(s)" in result.stderr  # the inner check holds (it was replaced)
    twice = nested.replace('sources = ["other", "training"]', 'sources = ["news", "news"]')
    twice = write(tmp_path / "twice.toml", twice)
    checked = run_heirloom("profile", "check", str(twice), env=env)
    assert checked.returncode == 2 and "sources.outer.sources: 'sources' lists 'news' twice" in checked.stderr
    # and through a nested union (an attack: outer = [news, training], training = [news, corrections])
    through = write(tmp_path / "through.toml", nested.replace('["other", "training"]', '["news", "training"]'))
    result = run_heirloom("data", "show", str(through), "outer", "--split", "test", "--limit", "0", env=env)
    assert result.returncode == 1 and "union 'outer' reads source 'news' 2 times" in " ".join(result.stderr.split())


def test_a_correction_of_a_training_text_replaces_it_and_the_last_correction_wins(tmp_path):
    """25 corrections of texts of the training file were recorded, then trained beside the file's
    own labels: the next version answered 1 of them as corrected, and nothing said why."""
    rows = [("the parcel came late", "bad"), ("great support thanks", "good"), ("it broke in a day", "bad")]
    rows += [("I don't like the e-mails", "bad"), ("👍", "good"), ("!!!", "bad")]
    rows += [(f"review number {n} was fine", "good") for n in range(6)]
    write(tmp_path / "train.csv", "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    write(tmp_path / "test.csv", "text,label\nthe box was crushed,bad\nlovely colour,good\n")
    union = '[sources.training]\nuse = "union"\nsources = ["reviews", "corrections"]\n'
    profile = write(
        tmp_path / "shop.toml",
        'project = "shop"\n[sources.reviews]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n'
        "validation_fraction = 0\n"
        '[sources.corrections]\nuse = "feedback"\napi = "sentiment"\n' + union,
    )
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "shop" / "sentiment.jsonl")
    log.add({"text": "The parcel came LATE!", "label": "good"})  # the same letters and digits
    log.add({"text": "it broke in a day", "label": "good"})
    log.add({"text": "it broke in a day", "label": "bad"})  # its sender corrected the correction
    log.add({"text": "I dont like the emails", "label": "good"})  # punctuation inside words aside too
    log.add({"text": "🙂", "label": "bad"})  # no letters: it repeats nothing (it replaced every emoji and "!!!")
    log.close()
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    shown = run_heirloom(
        "data", "show", str(profile), "training", "--split", "train", "--limit", "0", "--json", env=env
    )
    assert shown.returncode == 0, shown.stderr
    trained = [(record["text"], record["label"]) for record in map(json.loads, shown.stdout.splitlines())]
    assert trained == [
        ("great support thanks", "good"),
        *rows[4:],
        ("The parcel came LATE!", "good"),
        ("it broke in a day", "bad"),
        ("I dont like the emails", "good"),
        ("🙂", "bad"),
    ]
    said = "training records replaced by a later record of the same example (text; latest_wins): 3 of 'reviews', 1 of"
    assert said in " ".join(shown.stderr.split())
    write(tmp_path / "more.csv", "text,label\nfast delivery,good\nwrong size sent,bad\n")
    nested = '[sources.more]\nuse = "csv"\ntrain = "more.csv"\ntest = "test.csv"\nvalidation_fraction = 0\n'
    nested += '[sources.outer]\nuse = "union"\nsources = ["training", "more"]\n'  # the outer one's true did it all
    write(profile, profile.read_text().replace(union, union + "latest_wins = false\n") + nested)
    shown = run_heirloom(
        "data", "show", str(profile), "training", "--split", "train", "--limit", "0", "--json", env=env
    )
    assert len(shown.stdout.splitlines()) == len(rows) + 5  # every record trains, as events must
    shown = run_heirloom("data", "show", str(profile), "outer", "--split", "train", "--limit", "0", "--json", env=env)
    assert len(shown.stdout.splitlines()) == len(rows) + 5 + 2, shown.stderr  # nested, it still replaces nothing


#: Corrections of errors a finance encoder made on a team's own headlines (checker 242): negations and
#: "loss -> profit" wording, which PhraseBank's AllAgree sentences rarely hold.
CORRECTIONS = {
    "ZYX Ltd did not miss its earnings target this quarter, posting record operating income.": "positive",
    "The company avoided the feared loss and instead posted a small profit.": "positive",
    "The loss-making unit returned to profit for the first time in five years.": "positive",
    "The retailer issued a profit warning for the second time this year.": "negative",
    "The company said it did not expect the tax change to affect its guidance.": "neutral",
}


def test_a_correction_is_answered_as_corrected_after_retraining_or_train_names_it(tmp_path, data_dir):
    """7 corrections sent through sentiment.feedback, retrained: the next version answered 1 of them as
    corrected and train said nothing. A correction now counts correction_weight times, and train
    predicts each one after the fit: it says all are answered as corrected, or its warning names
    each one answered otherwise; the version's training info counts them. Smallest settings of the
    iteration tests (3 epochs, no refit); then one weak epoch at weight 1, which learns few of them."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    profile = write(tmp_path / "reviews.toml", PROFILE)
    log = heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "reviews" / "sentiment.jsonl")
    for text, label in CORRECTIONS.items():
        log.add({"text": text, "label": label})
    log.close()
    assert all(record["correction"] is True for record in training_view(env, profile))
    store = heirloom.ArtifactStore(tmp_path / "home" / "store")
    quick = ["--set", "models.sentiment.epochs=3", "--set", "models.sentiment.refit=false"]
    weak = ["--set", "models.sentiment.l2=1000", "--set", "models.sentiment.epochs=1"]
    for version, settings in ((1, quick), (2, [*weak, "--set", "models.sentiment.correction_weight=1"])):
        result = run_heirloom("train", str(profile), *settings, env=env, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        state = store.load(f"reviews/sentiment@{version}")
        model = TextClassifier(data="training")
        model.load(state)
        answers = [answer["label"] for answer in model.predict(list(CORRECTIONS))]
        otherwise = [text for text, answer in zip(CORRECTIONS, answers, strict=True) if answer != CORRECTIONS[text]]
        assert state.metadata["training"]["corrections"] == {"checked": 5, "answered_otherwise": len(otherwise)}
        weight = state.metadata["training"]["correction_weight"]
        assert weight == (4 if version == 1 else 1)  # 4: the default
        said = " ".join(result.stderr.split())  # the log wraps long lines
        if otherwise:
            warning = f"warning: this version answers {len(otherwise)} of the 5 corrections in its training data "
            assert warning + "otherwise than the person who corrected them" in said, said
            for text in otherwise:
                assert f"{text[:60]!r} corrected to {CORRECTIONS[text]}, now" in said
            assert f"raise the model's correction_weight ({weight} now)" in said
        else:
            assert "corrections: all 5 in the training data are answered as a person corrected them" in said


def test_the_feedback_commands_read_the_log_without_the_training_data(reviews, tmp_path):
    """An operator reviewing corrections on a host without the data set got exit 2 ("path does not
    exist") from list, remove and accept-label, which read only the feedback log."""
    env, profile, ids = reviews
    elsewhere = {**env, "HEIRLOOM_DATA": str(tmp_path / "no-data-here")}
    listed = run_heirloom("feedback", "list", str(profile), "--json", env=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ids
    note = "note: the data is not here, and not needed to read the feedback log: sources.news.path ("
    assert note + str(tmp_path / "no-data-here" / "financial-phrasebank") in listed.stderr
    removed = run_heirloom("feedback", "remove", str(profile), ids[0], env=elsewhere)
    assert removed.returncode == 0 and f"removed {ids[0]}" in removed.stdout, removed.stderr
    accepted = run_heirloom("feedback", "accept-label", str(profile), "halted", env=elsewhere)
    assert accepted.returncode == 0 and "accepted 'halted'" in accepted.stdout, accepted.stderr
    # another problem beside it is no business of theirs to pass over: every problem said, exit 2
    broken = run_heirloom("feedback", "list", str(profile), "--set", "models.sentiment.epochs=0", env=elsewhere)
    assert broken.returncode == 2 and "sources.news.path: path does not exist" in broken.stderr
    assert "models.sentiment.epochs" in broken.stderr and "note:" not in broken.stderr


def test_a_refused_label_lists_twenty_known_labels_and_counts_the_rest():
    """Checker 271: a model of 125 labels refused one quoting all 125, a 7,351-character message cut to
    1,000 (the did-you-mean survived; the list was noise)."""
    known = [f"thread {i:03d}" for i in range(125)]
    with pytest.raises(heirloom.RequestError) as caught:
        heirloom.check_label("thread  107", known, "body.label")
    assert caught.value.message.endswith(f"(labels: {', '.join(known[:20])} and 105 more)"), caught.value.message
    assert "did you mean 'thread 107'?" in caught.value.message


def test_a_feedback_source_naming_no_api_of_its_project_is_a_problem_with_a_suggestion(tmp_path):
    """``api = "intnet"`` passed ``profile check`` and trained on 0 corrections without a word (checker 275
    F13). An api the profile lacks whose log exists (a serving profile of the same project) is no typo."""
    write(tmp_path / "train.csv", "text,label\nhi,greet\nbye,leave\n")
    profile = write(
        tmp_path / "shop.toml",
        'project = "shop"\n[sources.s]\nuse = "csv"\ntrain = "train.csv"\n'
        '[sources.f]\nuse = "feedback"\napi = "intnet"\n[sources.both]\nuse = "union"\nsources = ["s", "f"]\n'
        '[models.m]\nuse = "text-classifier"\ndata = "both"\n[apis.intent]\nuse = "classify"\nmodel = "m"\n',
    )
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    said = "no api 'intnet' in this profile (apis: intent) and no feedback log of project 'shop' by that name"
    refused = f"{profile}: sources.f.api: {said}: nothing to read; did you mean 'intent'?"
    for command in (("profile", "check", str(profile)), ("data", "stats", str(profile), "f"), ("train", str(profile))):
        done = run_heirloom(*command, env=env)
        assert done.returncode == (1 if command[0] == "data" else 2) and refused in done.stderr, done.stderr
    heirloom.FeedbackLog(tmp_path / "home" / "feedback" / "shop" / "intnet.jsonl").close()
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0


def test_removing_a_thousand_ids_tombstones_each_once_from_one_reading_of_the_log(reviews):
    """Checker h323 F1: ``remove`` read the whole log again for each ID and fsynced each tombstone on its
    own: 200 IDs of a 7,000-record log took 36 s, and 6,972 ran 10 minutes having written nothing."""
    env, profile, (good, wrong, halted) = reviews
    path = Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl"
    log = heirloom.FeedbackLog(path)
    ids = [log.add({"text": f"spam {n}", "label": "positive"}) for n in range(3000)]
    log.close()
    unknown = run_heirloom("feedback", "remove", str(profile), *ids[:999], "feedfeedfeedfeed", env=env)
    assert unknown.returncode == 2 and "no feedback record 'feedfeedfeedfeed'" in unknown.stderr, unknown.stderr
    assert '"op": "remove"' not in path.read_text()  # all or nothing, as before
    spam = ids[::3]  # 1,000 of them
    removed = run_heirloom("feedback", "remove", str(profile), *spam, wrong, "--reason", "spam", env=env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.count("removed ") == len(spam) + 1
    tombstones = [json.loads(line) for line in path.read_text().splitlines() if '"op": "remove"' in line]
    assert sorted(t["id"] for t in tombstones) == sorted([*spam, wrong])
    assert {t["reason"] for t in tombstones} == {"spam"}
    assert len({t["time"] for t in tombstones}) == 1  # one write and one fsync for them all: all kept or none
    listed = run_heirloom("feedback", "list", str(profile), "--limit", "0", "--json", env=env)
    live = {json.loads(line)["id"] for line in listed.stdout.splitlines()}
    assert live == {good, halted, *ids} - {*spam}
    again = run_heirloom("feedback", "remove", str(profile), spam[0], env=env)
    assert again.returncode == 0 and f"{spam[0]} was already removed" in again.stdout
    assert path.read_text().count('"op": "remove"') == len(spam) + 1


def test_a_record_added_by_hand_without_a_final_newline_is_named_by_list_show_and_export(reviews):
    """Checker h323 F3: ``feedback show`` of a record an editor saved without a final newline said only "no
    feedback record", the line named as torn by a crash; now the commands say its line has no newline."""
    env, profile, _ = reviews
    log = Path(env["HEIRLOOM_HOME"]) / "feedback" / "reviews" / "sentiment.jsonl"
    with log.open("a") as handle:
        handle.write(json.dumps({"id": "cccc000000000002", "text": "hand added", "label": "positive", "time": 1.0}))
    said = "sentiment.jsonl: line 4 has no newline at its end"
    for command in (("list",), ("export",), ("show", "cccc000000000002")):
        seen = run_heirloom("feedback", command[0], str(profile), *command[1:], env=env)
        assert said in seen.stderr and "added by hand without a final newline" in seen.stderr, (command, seen.stderr)
    with log.open("a") as handle:
        handle.write("\n")  # what the warning asks for: the record counts
    shown = run_heirloom("feedback", "show", str(profile), "cccc000000000002", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["text"] == "hand added", shown.stderr
