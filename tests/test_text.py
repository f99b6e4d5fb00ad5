"""Text sources and the text-classifier, on the real PhraseBank and Banking77 data."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import socket
import subprocess
import sys
import unicodedata
from collections import Counter

import pytest

import heirloom
from heirloom_plugins.metrics import classification_metrics, classification_text
from heirloom_plugins.text.model import TextClassifier
from heirloom_plugins.text.sources import CsvSource, JsonlSource, PhraseBankSource
from heirloom_plugins.textfiles import csv_rows, row_chars
from tests.helpers import run_heirloom, write

MAJORITY_ALLAGREE = 1391 / 2264


#: Fits shared by the tests of this module (a fit takes seconds; the tests only read it).
_FITTED: dict[str, TextClassifier] = {}


@pytest.fixture
def phrasebank_dir(data_dir):
    return data_dir / "financial-phrasebank"


@pytest.fixture
def allagree(phrasebank_dir):
    return PhraseBankSource(path=str(phrasebank_dir), agreement="all")


@pytest.fixture
def fitted(allagree):
    """The default text-classifier fitted on PhraseBank AllAgree's training split."""
    if "allagree" not in _FITTED:
        model = TextClassifier(data="news")
        model.fit(allagree.records("train"))
        _FITTED["allagree"] = model
    return _FITTED["allagree"]


# -- sources ---------------------------------------------------------------------------------
def test_phrasebank_counts_per_label_match_the_dataset_card(phrasebank_dir):
    expected = {
        "50": {"negative": 604, "neutral": 2879, "positive": 1363},
        "all": {"negative": 303, "neutral": 1391, "positive": 570},
    }
    for agreement, counts in expected.items():
        source = PhraseBankSource(path=str(phrasebank_dir), agreement=agreement)
        assert Counter(r["label"] for r in source.records()) == counts


def test_phrasebank_splits_are_stratified_and_partition_the_data(phrasebank_dir):
    source = PhraseBankSource(path=str(phrasebank_dir), agreement="50")
    stats = source.stats()
    assert stats["records"] == {"train": 3489, "validation": 387, "test": 970}  # test 20%, validation 10% of the rest
    assert stats["labels"]["test"] == {"negative": 121, "neutral": 576, "positive": 273}
    assert stats["labels"]["validation"] == {"negative": 48, "neutral": 230, "positive": 109}
    ids = {split: {r["id"] for r in source.records(split)} for split in ("train", "validation", "test")}
    assert (
        not ids["train"] & ids["test"] and not ids["train"] & ids["validation"] and not ids["validation"] & ids["test"]
    )
    assert len(ids["train"] | ids["validation"] | ids["test"]) == 4846
    unsplit = PhraseBankSource(path=str(phrasebank_dir), agreement="50", validation_fraction=0)
    assert unsplit.splits() == ["train", "test"]
    assert {r["id"] for r in unsplit.records("test")} == ids["test"]  # validation never comes out of test


def test_validation_comes_out_of_training_data_and_is_never_thinned(data_dir):
    folder = data_dir / "banking77"
    settings = {"train": str(folder / "train.csv"), "test": str(folder / "test.csv"), "label_column": "category"}
    whole, few = CsvSource(**settings), CsvSource(**settings, train_per_label=10)
    assert whole.stats()["records"] == {"train": 9000, "validation": 1003, "test": 3080}
    assert few.stats()["records"] == {"train": 770, "validation": 1003, "test": 3080}
    assert [r["id"] for r in few.records("validation")] == [r["id"] for r in whole.records("validation")]
    assert {r["id"] for r in few.records("train")} <= {r["id"] for r in whole.records("train")}
    assert CsvSource(**settings, seed=1).fingerprint() != whole.fingerprint()  # the seed moves validation


def test_split_is_deterministic_and_follows_the_seed(phrasebank_dir):
    def test_ids(**settings):
        return [r["id"] for r in PhraseBankSource(path=str(phrasebank_dir), **settings).records("test")]

    assert test_ids(agreement="all") == test_ids(agreement="all")
    assert test_ids(agreement="all", seed=1) != test_ids(agreement="all")
    assert len(test_ids(agreement="all", test_fraction=0.5)) == 152 + 696 + 285


def test_fingerprint_hashes_content_and_split_settings(phrasebank_dir, allagree):
    same = PhraseBankSource(path=str(phrasebank_dir), agreement="all")
    assert allagree.fingerprint() == same.fingerprint()
    assert len(allagree.fingerprint()) == 64
    assert PhraseBankSource(path=str(phrasebank_dir), agreement="all", seed=3).fingerprint() != same.fingerprint()
    assert PhraseBankSource(path=str(phrasebank_dir), agreement="75").fingerprint() != same.fingerprint()


def test_utf8_and_latin1_files_decode_to_the_same_sentences(phrasebank_dir, allagree):
    everything = {r["text"] for r in PhraseBankSource(path=str(phrasebank_dir), agreement="50").records()}
    allagree_texts = {r["text"] for r in allagree.records()}
    assert allagree_texts <= everything  # AllAgree (UTF-8) is nested in 50Agree (latin-1)
    assert any(not text.isascii() for text in allagree_texts)


def test_banking77_csv_with_official_test_file(data_dir):
    folder = data_dir / "banking77"
    source = CsvSource(train=str(folder / "train.csv"), test=str(folder / "test.csv"), label_column="category")
    stats = source.stats()
    assert stats["records"] == {"train": 9000, "validation": 1003, "test": 3080}
    assert set(stats["labels"]["test"].values()) == {40}
    assert sorted(stats["labels"]["train"]) == sorted(json.loads((folder / "categories.json").read_text()))


def test_csv_missing_column_names_the_setting_and_the_columns(data_dir):
    said = r"'label_column' 'label' is not a column of train.csv \(columns: text, category\)"
    with pytest.raises(ValueError, match=said):
        CsvSource(train=str(data_dir / "banking77" / "train.csv"))


def test_every_missing_column_of_a_file_is_said_at_once(tmp_path):
    """``profile check`` said the first only: fix it, check again, hear of the next one."""
    with pytest.raises(ValueError) as caught:
        CsvSource(train=str(write(tmp_path / "d.csv", "body,Label\nhi,greet\n")), text_column="text")
    said = "'text_column' 'text' is not a column of d.csv; nor is 'label_column' 'label' (did you mean 'Label'?)"
    assert str(caught.value) == f"{said} (columns: body, Label)"


def test_a_file_without_records_or_a_text_column_that_is_the_label_column_is_refused_where_the_profile_is_checked(
    tmp_path,
):
    """A header-only test file trained and stored a version no test could score (its eval then
    failed); ``text_column = "label"`` trained a model on its answers (accuracy 1.0)."""
    train = str(write(tmp_path / "train.csv", "text,label\nhi,greet\nbye,leave\n"))
    with pytest.raises(ValueError, match=r"^'test' file test.csv holds no record \(a header or blank lines alone\)$"):
        CsvSource(train=train, test=str(write(tmp_path / "test.csv", "text,label\n\n")))
    with pytest.raises(ValueError, match=r"^'train' file t.jsonl holds no record"):
        JsonlSource(train=str(write(tmp_path / "t.jsonl", "\n")))
    with pytest.raises(ValueError, match=r"^'text_column' and 'label_column' are both 'label'$"):
        CsvSource(train=train, text_column="label")
    with pytest.raises(ValueError, match=r"^'text_field' and 'label_field' are both 'text'$"):
        JsonlSource(train=train, label_field="text")
    profile = write(tmp_path / "p.toml", f'[sources.d]\nuse = "csv"\ntrain = "{train}"\ntest = "{tmp_path}/test.csv"\n')
    checked = run_heirloom("profile", "check", str(profile))
    assert checked.returncode == 2 and "sources.d.test: 'test' file test.csv holds no record" in checked.stderr


def test_a_data_path_that_is_no_file_or_no_phrasebank_folder_is_refused_at_its_key_by_profile_check(tmp_path):
    """A phrasebank ``path`` naming a file, or a folder without ``Sentences_50Agree.txt``, passed ``profile check``
    and ``data stats`` printed a traceback; a folder as a csv/jsonl ``train``, ``test`` or ``labels_file`` passed too,
    and train failed naming no key (checker 275 F1, F4)."""
    train = write(tmp_path / "t.csv", "text,label\nhi,greet\nbye,leave\n")
    write(tmp_path / "t.jsonl", '{"text": "hi", "label": "greet"}\n')
    write(tmp_path / "pb" / "Sentences_AllAgree.txt", "Profit rose .@positive\n")
    (tmp_path / "dir").mkdir()
    profile = write(
        tmp_path / "p.toml",
        '[sources.file]\nuse = "phrasebank"\npath = "t.csv"\n[sources.pb]\nuse = "phrasebank"\npath = "pb"\n'
        '[sources.c]\nuse = "csv"\ntrain = "dir"\n[sources.l]\nuse = "csv"\ntrain = "t.csv"\nlabels_file = "dir"\n'
        '[sources.j]\nuse = "jsonl"\ntrain = "t.jsonl"\ntest = "dir"\n',
    )
    checked = run_heirloom("profile", "check", str(profile))
    said = checked.stderr
    assert checked.returncode == 2, checked
    assert f"{profile}: sources.file.path: 'path' {train} is not a folder: name the folder holding Sentences_50" in said
    held = "has no Sentences_50Agree.txt (agreement = '50'); it holds Sentences_AllAgree.txt"
    assert f"{profile}: sources.pb.path: 'path' {tmp_path / 'pb'} {held}" in said
    folder = f"{tmp_path / 'dir'} is a directory, not a file"
    assert f"{profile}: sources.c.train: 'train' {folder}" in said
    assert f"{profile}: sources.l.labels_file: 'labels_file' {folder}" in said
    assert f"{profile}: sources.j.test: 'test' {folder}" in said
    assert "Traceback" not in said


def test_a_file_of_the_other_format_is_refused_where_the_profile_is_checked(tmp_path):
    """A CSV file named as a jsonl source's test passed ``profile check``; train then failed
    ``good_test.csv:1: invalid JSON at column 1``. A jsonl file as a CSV source's said its JSON was the columns."""
    jsonl = write(tmp_path / "train.jsonl", '{"email": "hi, move me", "route": "address"}\n')
    csv_file = write(tmp_path / "test.csv", "email,route\nhi,address\n")
    profile = write(
        tmp_path / "p.toml",
        '[sources.j]\nuse = "jsonl"\ntrain = "train.jsonl"\ntest = "test.csv"\ntext_field = "email"\n'
        'label_field = "route"\n[sources.c]\nuse = "csv"\ntrain = "test.csv"\ntest = "train.jsonl"\n'
        'text_column = "email"\nlabel_column = "route"\n',
    )
    checked = run_heirloom("profile", "check", str(profile))
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 2, checked.stdout
    assert f"sources.j.test: 'test' file {csv_file}:1: invalid JSON at column 1: 'email,route' is no JSON" in said
    assert 'a jsonl source reads JSON lines, one object a line (a CSV file needs use = "csv")' in said
    assert "sources.c.text_column: 'text_column' 'email' is not a column of train.jsonl: it holds JSON lines" in said
    later = str(write(tmp_path / "t.jsonl", f"{jsonl.read_text()}oops\n"))  # a bad line after a record: the reading's
    source = JsonlSource(train=later, text_field="email", label_field="route")
    with pytest.raises(heirloom.HeirloomError, match=r"t.jsonl:2: invalid JSON at column 1: Expecting value$"):
        list(source.read(later))


def test_a_jsonl_file_in_utf_16_or_latin_1_is_refused_where_the_profile_is_checked(tmp_path):
    """A UTF-16 JSONL file passed ``profile check`` (exit 0), while a UTF-16 CSV file was refused there;
    ``data stats`` was the first to say it was no UTF-8."""
    lines = '{"text": "wo ist mein Paket", "label": "delivery"}\r\n{"text": "Geld zur\u00fcck", "label": "refund"}\r\n'
    (tmp_path / "bom.jsonl").write_bytes(lines.encode("utf-16"))  # with its byte-order mark
    (tmp_path / "le.jsonl").write_bytes(lines.encode("utf-16-le"))  # without one
    (tmp_path / "l1.jsonl").write_bytes(lines.encode("latin-1"))  # the first line is ASCII: only line 2 is bad
    (tmp_path / "l1first.jsonl").write_bytes('{"text": "f\u00fcr mich", "label": "x"}\n'.encode("latin-1"))
    write(tmp_path / "good.jsonl", lines)
    profile = write(
        tmp_path / "p.toml",
        '[sources.a]\nuse = "jsonl"\ntrain = "bom.jsonl"\n[sources.b]\nuse = "jsonl"\ntrain = "good.jsonl"\n'
        'test = "le.jsonl"\n[sources.c]\nuse = "jsonl"\ntrain = "good.jsonl"\nvalidation = "l1first.jsonl"\n',
    )
    checked = run_heirloom("profile", "check", str(profile))
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 2, checked.stdout
    assert (
        f"sources.a.train: 'train' file {tmp_path / 'bom.jsonl'}:1: not utf-8-sig text (byte b'\\xff' cannot be "
        "decoded); it starts with a UTF-16 byte-order mark; JSON lines are UTF-8: convert it (iconv -f utf-16 -t utf-8)"
    ) in said
    assert f"sources.b.test: 'test' file {tmp_path / 'le.jsonl'}:1: a NUL byte, which no JSON text holds" in said
    assert "it looks like UTF-16LE text without a byte-order mark: convert it (iconv -f utf-16le -t utf-8)" in said
    assert f"sources.c.validation: 'validation' file {tmp_path / 'l1first.jsonl'}:1: not utf-8-sig text" in said
    later = JsonlSource(train=str(tmp_path / "l1.jsonl"))  # a bad byte past the first line: the reading's
    with pytest.raises(heirloom.HeirloomError, match=r"l1.jsonl:2: not utf-8-sig text \(byte b'\\xfc'"):
        list(later.records())


def test_a_jsonl_line_cut_short_says_so_in_whole_words(tmp_path):
    """A line cut at an export's size limit said "Unterminated string starting at", Python's words cut mid-sentence
    (h347 F4); a line that ends before its JSON does says what usually did that."""
    cut = " (the line ends before its JSON does: was it cut short, at an export size limit?)"
    for line, said in [
        ('{"text": "broken', "column 10: a string opened there never ends" + cut),
        ('{"text": "a", "label": "b"', "column 27: Expecting ',' delimiter" + cut),
        ('{"text": "a" "label": "b"}', "column 14: Expecting ',' delimiter"),  # inside the line: no cut
    ]:
        path = write(tmp_path / "t.jsonl", f'{{"text": "a", "label": "b"}}\n{line}\n')
        with pytest.raises(heirloom.HeirloomError) as raised:
            list(JsonlSource(train=str(path)).read(str(path)))
        assert str(raised.value) == f"{path}:2: invalid JSON at {said}"


def test_a_missing_column_suggests_a_free_column_or_the_delimiter_the_header_holds(tmp_path):
    """``intent`` on a text,label file suggested ``text``, the text column; a ``;`` file said
    only that its one column was ``text;intent``."""
    with pytest.raises(ValueError, match=r"'label_column' 'intent' is not a column of a.csv \(columns: text, label\)"):
        CsvSource(train=str(write(tmp_path / "a.csv", "text,label\nhi,greet\n")), label_column="intent")
    said = r"'text_column' 'text' is not a column of b.csv; the header reads as one column: set delimiter = ';'\?"
    with pytest.raises(ValueError, match=said):
        CsvSource(train=str(write(tmp_path / "b.csv", "text;intent\nhi;greet\n")), label_column="intent")
    commas = write(tmp_path / "e.csv", "text,intent\nhi,greet\n")  # a ',' test file beside a ';' train file
    more = write(tmp_path / "f.csv", "text,intent\nho,greet\n")
    differ = (  # each delimiter's advice brought the other's error back (checker h359 F2): the files disagree
        "'delimiter' {} does not read all of the source's files: they use different delimiters (b.csv reads as columns "
        "text, intent with ';', as one column with ','; e.csv reads as one column with ';', as columns text, intent "
        "with ','; f.csv reads as one column with ';', as columns text, intent with ','), and one delimiter serves all "
        "of a source's files. Convert b.csv to ','-separated (save it again as CSV with that delimiter){}"
    )
    for delimiter, then in ((";", "; then set delimiter = ','"), (",", "")):
        with pytest.raises(ValueError) as raised:
            CsvSource(train=str(tmp_path / "b.csv"), test=str(commas), validation=str(more), label_column="intent",
                      delimiter=delimiter)  # fmt: skip
        assert str(raised.value) == differ.format(repr(delimiter), then)
    excel = tmp_path / "c.csv"  # a spreadsheet's export: ';' and cp1252 past the header (it passed the check)
    excel.write_bytes(b"text;intent\n" + "Lieferung verspätet;lieferung\n".encode("cp1252") * 400)
    with pytest.raises(ValueError, match=said.replace("b.csv", "c.csv")):
        CsvSource(train=str(excel), label_column="intent")
    excel.write_bytes("Text für;intent\nhi;greet\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"the header of c.csv is not utf-8-sig text: set the source's 'encoding'"):
        CsvSource(train=str(excel), label_column="intent")
    excel.write_text("text;intent \ufffd\x00\nhi;greet\n", encoding="utf-8")  # U+FFFD and NUL are text: refused
    source = CsvSource(train=str(excel), label_column="intent \ufffd\x00", delimiter=";")
    assert [r["label"] for r in source.records()] == ["greet"]
    unicode = tmp_path / "d.csv"  # Excel's "Unicode text": UTF-16 with a BOM, tabs (a byte-level line split it)
    unicode.write_bytes("text\tintent\nhi\tgreet\n".encode("utf-16"))
    source = CsvSource(train=str(unicode), label_column="intent", delimiter="\t", encoding="utf-16")
    assert [r["label"] for r in source.records()] == ["greet"]
    rows = "".join(f"\u0a0a {n}\tgreet\n" for n in range(3))  # U+0A0A: a 0x0A byte in UTF-16, no newline
    lone_surrogate = b"\x00\xd8" + "\tgreet\n".encode("utf-16-le")
    unicode.write_bytes(f"text\tintent\n{rows}".encode("utf-16") + lone_surrogate)
    with pytest.raises(heirloom.HeirloomError, match=r"d.csv:5: not utf-16 text \(byte b'\\x00'"):  # it said :8
        list(source.records())


def test_a_stray_carriage_return_in_a_text_is_said_not_a_delimiter(tmp_path):
    """A lone carriage return inside an unquoted text (a database dump's mixed line ends) ends the row there: the
    error said to quote a text that holds ',' (h347 F11). In a file whose lines all end so (an old Mac's), or a
    short row that ends as the header does, the delimiter is still the likelier cause."""
    path = tmp_path / "d.csv"
    for content, hint in [
        (
            "text,label\nparcel late,delivery\nparcel stuck\rat depot,delivery\n",
            "a carriage return (\\r) in an unquoted text ended the row there: quote the text or remove the \\r)",
        ),
        ("text,label\r\nparcel late,delivery\r\nparcel stuck\r\n", "quote a text that holds ','"),
        ("text,label\rparcel late,delivery\rparcel stuck\rbill,billing\r", "quote a text that holds ','"),
    ]:
        path.write_bytes(content.encode())
        with pytest.raises(heirloom.HeirloomError, match=r"d.csv:3: the row has 1 fields, the header 2 \(") as raised:
            list(CsvSource(train=str(path)).records())
        assert hint in str(raised.value), content


def test_a_row_repeating_the_header_is_left_out_and_said(tmp_path, caplog):
    """Exports joined with ``cat`` (each with its header, an Excel one with its byte-order mark too) trained the
    repeated header as a record "text" of a class named "label", silently (h347 F8)."""
    part = "text,label\n" + "".join(f"parcel {n},delivery\n" for n in range(3))
    path = tmp_path / "all.csv"
    for joined in (part + part, f"\ufeff{part}\ufeff{part}"):
        path.write_text(joined, encoding="utf-8")
        source = CsvSource(train=str(path), test_fraction=0.5, validation_fraction=0)
        caplog.clear()
        with caplog.at_level("WARNING", logger="heirloom.text"):
            records = [r for split in ("train", "test") for r in source.records(split)]
        assert sorted(r["id"] for r in records) == [f"all.csv:{n}" for n in (2, 3, 4, 6, 7, 8)]
        assert {r["label"] for r in records} == {"delivery"}
        warned = [r.getMessage() for r in caplog.records if "repeat the header" in r.getMessage()]
        assert warned == [
            f"{path}: 1 row(s) repeat the header, line(s) 5: files joined, each with its header? Left out (each "
            "would train as a record of the label 'label')"
        ]


def test_a_malformed_csv_row_is_an_error_naming_its_line(tmp_path):
    def records(content: bytes, **settings) -> list[dict[str, str]]:
        (tmp_path / "intents.csv").write_bytes(content)
        return list(CsvSource(train=str(tmp_path / "intents.csv"), label_column="category", **settings).records())

    header = b"text,category\r\nWhere is my card?,card_arrival \r\n"
    assert records(header)[0]["label"] == "card_arrival"  # surrounding spaces are not part of a label
    decomposed = header + "Pay at the café?,cafe\u0301\r\nPay at the bar?,caf\u00e9\r\n".encode()
    assert {r["label"] for r in records(decomposed)[1:]} == {"caf\u00e9"}  # one class, read in NFC
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the row has 1 fields, the header 2"):
        records(header + b"What about my children?\r\n")
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the row has 3 fields, the header 2 \(quote a"):
        records(header + b"Card declined, why?,card_payment\r\n")
    assert records(header + b'"Card declined, why?",card_payment\r\n')[1]["text"] == "Card declined, why?"
    assert len(records(header + b"  \r\n\t\r\nAnd now?,other\r\n")) == 2  # lines of spaces are blank lines
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the 'category' column is empty"):
        records(header + b"Why was my card declined?, \r\n")
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the 'text' column is empty"):
        records(header + b" ,card_payment\r\n")  # was a training text ""
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the 'text' column is empty or blank"):
        records(header + "\u200b\u200b,card_payment\r\n".encode())  # trained on, where predict refuses it
    others = "and 2 more rows of a blank text or label: line(s) 5, 6"  # each run named one row (checker h452 F2)
    with pytest.raises(
        heirloom.HeirloomError, match=re.escape(f"intents.csv:3: the 'text' column is empty or blank ({others})")
    ):
        records(header + b" ,card_payment\r\nfine,card_payment\r\n,other\r\nok, \r\n")
    for label in ("card\u202epayment", '"card\npayment"'):  # classes of their own, which feedback may not make
        with pytest.raises(heirloom.HeirloomError, match=r"csv:[34]: the 'category' column: label .* invisible"):
            records(header + f"Why was my card declined?,{label}\r\n".encode())
    latin = header + "Can I pay at the café?,card_payment\r\n".encode("latin-1")
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: not utf-8-sig text \(byte b'\\xe9'.*'encoding'"):
        records(latin)
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: not utf-8-sig text \(byte b'\\xe9'"):
        records(b"\xef\xbb\xbf" + latin)  # after a BOM: it named the byte 3 before, and so the line before
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3-4: a quote opened on line 3 is never closed"):
        records(header + b'"Where is my card?,card_arrival\r\nThanks,other\r\n')  # it named line 4 and "quote"
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:4: a quote opened on line 4 is never closed"):
        records(header + b'Fine,other\r\n"Where is my card?,card_arrival\r\n')  # a short row, "quote a text"
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3-5: a quote opened on line 3 is never closed"):
        records(header + b'Lost card,"card_lost\r\nThanks,other\r\nHi,greet\r\n')  # the rest: one label, silently
    with pytest.raises(heirloom.HeirloomError, match=r"csv:3: the 'category' column: label 'card\\r\\nlost' has"):
        records(header + b'Lost card,"card\r\nlost"\r\n')  # closed, a value: a label no feedback may make
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: the 'category' column is empty"):
        records(header + b'"Where is\r\nmy card?", \r\n')  # the row of lines 3-4: it named line 4, its last
    cr_only = b'text,category\rLost card,"card_lost\rThanks,other\rHi,greet\r'  # old Mac line ends: lines all the same
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:2-4: a quote opened on line 2 is never closed"):
        records(cr_only)
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: a quote opened on line 3 is never closed"):
        records(header + b'Lost card,"card_lost\r\n')  # the last line alone
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:3: a quote opened on line 3 is never closed"):
        records(header + b'Lost card,"card_lost')  # and with no line end at all: it was read as closed
    assert records(header + b'Lost card,"card_lost"')[1]["label"] == "card_lost"  # closed at the very end
    # a last value ending with a line break, closed: read as never closed (its start line miscounted)
    assert records(header + b'Lost card,"card_lost\n"\r\n')[1]["label"] == "card_lost"  # (then stripped)
    assert records(header + b'Lost card,"card_lost\r"')[1]["label"] == "card_lost"
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:5-6: a quote opened on line 5 is never closed"):
        records(header + b'\r\n\r\nLost card,"card_lost\r\nThanks\r\n')  # blank lines before: its own line
    with pytest.raises(heirloom.HeirloomError, match=r"intents.csv:4: the row has 1 fields, the header 2 \(quote a"):
        records(header + b"\r\nWhat about my children?\r\n")  # after a blank line: no quote to blame
    assert records(latin, encoding="latin-1")[1]["text"] == "Can I pay at the café?"
    with pytest.raises(ValueError, match=r"the header of intents.csv names column 'text' more than once"):
        records(b"text,category,text\r\nA,card_payment,B\r\n")  # the last 'text' was read, silently
    with pytest.raises(ValueError, match="'encoding' 'klingon' is no text encoding Python knows"):
        CsvSource(train=str(tmp_path / "intents.csv"), encoding="klingon")


def test_the_longest_row_a_csv_header_allows_still_reads(tmp_path):
    """Lines are refused by length before the csv module splits them (``row_chars``: a 200 MB line of short
    fields cost 2.6 GB): a row whose every cell is at the csv module's limit, every character a doubled quote,
    is the longest a header allows, and reads."""
    cell = '"' + '""' * csv.field_size_limit() + '"'
    (tmp_path / "wide.csv").write_text(f"text,label\r\n{cell},{cell}\r\nshort,x\r\n", newline="")
    rows = list(csv_rows(tmp_path / "wide.csv", ["text", "label"]))
    assert [line for line, _ in rows] == [2, 3] and rows[0][1]["label"] == '"' * csv.field_size_limit()
    assert len(cell) * 2 + 1 + 2 <= row_chars(2)
    (tmp_path / "wide.csv").write_text(f"text,label\r\n{cell},{cell},{cell}\r\n", newline="")
    with pytest.raises(heirloom.HeirloomError, match=r"wide.csv:2: the line runs past 524,296 characters"):
        list(CsvSource(train=str(tmp_path / "wide.csv")).records())  # the text source reads through it too


def test_a_quote_inside_a_quoted_csv_value_must_be_doubled(tmp_path):
    """``"he said "hi" to me",positive`` trained as ``he said hi" to me``, silently: the csv
    module closes the value at the second quote and reads on. A quote left open on an earlier
    line, closed by the next row's opening quote, read two rows as one, as silently."""
    source = CsvSource(train=str(tmp_path / "t.csv"))

    def refused(rows: str) -> str:
        (tmp_path / "t.csv").write_text("text,label\nfine,neutral\n" + rows)
        with pytest.raises(heirloom.HeirloomError) as caught:
            list(source.records())
        return str(caught.value)

    doubled = 'a quote inside a quoted value must be doubled ("")'
    said = refused('"he said "hi" to me",positive\n')
    assert said == f"{tmp_path / 't.csv'}:3: the quoted value of the 'text' column, '\"he said \"', ends before " + (
        f"'hi\" to me\",p': {doubled}"
    )
    assert refused('nice,"pos"itive\n').endswith(
        f":3: the quoted value of the 'label' column, '\"pos\"', ends before 'itive': {doubled}"
    )
    said = refused('\n"never closed,positive\nalso,negative\n"next",neutral\n')  # a blank line before it
    assert "t.csv:4-6: the quoted value of the 'text' column, " in said
    assert said.endswith(f"ends before 'next\",neutra': {doubled}, or the quote opened on line 4 is never closed")
    for rest in ('"\n', '"'):  # a quote alone on the last line, open to the end (the second was read as nothing)
        assert refused(rest).endswith(
            ":3: a quote opened on line 3 is never closed (the rest of the file would be one value)"
        )
    (tmp_path / "t.csv").write_text('text,label\n"he said ""hi"" to me",positive\nhe said "hi",negative\n')
    assert [r["text"] for r in source.records()] == ['he said "hi" to me', 'he said "hi"']  # doubled, or unquoted


def test_a_labels_file_that_does_not_list_the_datas_labels_is_an_error_and_an_extension_can_unset_it(tmp_path):
    """A team extending banking-intents-core with its own CSV kept the parent's Banking77
    ``labels_file``: 12 of its 15 intents were dropped without a word, and ``labels_file = ""``
    (TOML has no null) resolved to the profile's folder."""
    write(tmp_path / "labels.json", '["card_arrival", "exchange_rate", "top_up"]')
    rows = [f"my card {i} has not arrived,card_arrival\nmy roaming {i} is off abroad,roaming" for i in range(10)]
    write(tmp_path / "data" / "train.csv", "text,label\n" + "\n".join(rows) + "\n")
    base = write(
        tmp_path / "base.toml",
        '[sources.intents]\nuse = "csv"\ntrain = "data/train.csv"\nlabels_file = "labels.json"\nfirst_labels = 2\n'
        '[models.intent]\nuse = "text-classifier"\ndata = "intents"\n',
    )
    stats = run_heirloom("data", "stats", str(base), "intents")
    assert stats.returncode == 1
    assert (
        "train.csv:3: label 'roaming' is not in labels_file " + str(tmp_path / "labels.json") + " (3 labels): "
        'it lists every label of the data; set labels_file = "" to keep every label the data has'
    ) in stats.stderr
    extension = write(tmp_path / "team" / "p.toml", 'extends = ["../base.toml"]\n[sources.intents]\nlabels_file = ""\n')
    assert run_heirloom("profile", "check", str(extension)).returncode == 0
    stats = run_heirloom("data", "stats", str(extension), "intents", "--json")
    assert stats.returncode == 0, stats.stderr
    assert set(json.loads(stats.stdout)["labels"]["train"]) == {"card_arrival", "roaming"}


def test_first_labels_that_a_profile_sets_with_no_labels_file_is_a_problem_at_its_key(tmp_path):
    """``first_labels = 4`` in a team's own profile, with no ``labels_file`` to pick from, passed
    ``profile check`` and trained all 12 intents without a word (h315 F2); an inherited one, with the
    parent's list unset, does nothing as docs/TEXT.md says (the test above)."""
    rows = [f"my card {i} has not arrived,card_arrival\nmy roaming {i} is off abroad,roaming" for i in range(10)]
    write(tmp_path / "train.csv", "text,label\n" + "\n".join(rows) + "\n")
    source = '[sources.intents]\nuse = "csv"\ntrain = "train.csv"\n'
    own = write(tmp_path / "own.toml", source + "first_labels = 1\n")
    problem = "sources.intents.first_labels: needs labels_file: first_labels = {} picks from labels_file's list"
    checked = run_heirloom("profile", "check", str(own))
    assert checked.returncode == 2 and f"{own}: {problem.format(1)}" in checked.stderr, checked.stderr
    stats = run_heirloom("data", "stats", str(own), "intents")
    assert stats.returncode == 1 and problem.format(1) in " ".join(stats.stderr.split())
    plain = write(tmp_path / "plain.toml", source)
    checked = run_heirloom("profile", "check", str(plain), "--set", "sources.intents.first_labels=2")
    assert checked.returncode == 2 and f"--set: {problem.format(2)}" in checked.stderr, checked.stderr
    assert run_heirloom("profile", "check", str(plain), "--set", "sources.intents.first_labels=0").returncode == 0


def test_an_empty_test_split_gets_no_scores_rather_than_zeros(tmp_path):
    rows = [f"my card {i} has not arrived,card_arrival\nthe exchange rate {i} today,exchange_rate" for i in range(12)]
    write(tmp_path / "train.csv", "text,label\n" + "\n".join(rows) + "\n")
    write(tmp_path / "test.csv", "text,label\nam I roaming now,roaming\n")  # a label the source leaves out
    profile = write(
        tmp_path / "p.toml",
        '[sources.intents]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n'
        'labels = ["card_arrival", "exchange_rate"]\n[models.intent]\nuse = "text-classifier"\ndata = "intents"\n',
    )
    trained = run_heirloom("train", str(profile))
    assert trained.returncode == 0, trained.stderr
    assert "test (reported; records e3b0c44298fc): no records, no scores" in trained.stdout
    stored = heirloom.ArtifactStore.default().resolve("p/intent@1")
    assert "accuracy" not in stored.metrics and stored.metrics["validation"]["accuracy"] == 1.0
    evaluated = run_heirloom("eval", str(profile))
    assert evaluated.returncode == 1
    assert "the test split of source 'intents' has no records: nothing to evaluate" in evaluated.stderr


def test_a_windows_export_read_as_latin_1_is_an_error_that_names_cp1252(tmp_path):
    """Curly quotes and dashes (0x92, 0x96) read as latin-1 trained as invisible control
    characters ("The company\x92s profit"), as the error's own advice had it read."""
    path = tmp_path / "news.csv"
    path.write_bytes(b"text,label\r\nThe company\x92s profit rose \x96 a record year,positive\r\n")
    with pytest.raises(heirloom.HeirloomError, match=r"news.csv:2: not utf-8-sig text .*its bytes read as 'cp1252' or"):
        list(CsvSource(train=str(path)).records())
    with pytest.raises(heirloom.HeirloomError, match=r"news.csv:2: the 'text' column holds .* U\+0092.*= \"cp1252\""):
        list(CsvSource(train=str(path), encoding="latin-1").records())
    [record] = CsvSource(train=str(path), encoding="cp1252").records()
    assert record["text"] == "The company\u2019s profit rose \u2013 a record year"
    for wide in ("utf-16", "utf-32"):  # a spreadsheet's "Unicode text" (UTF-32's mark begins with UTF-16's)
        path.write_bytes("text,label\r\nProfit rose,positive\r\n".encode(wide))
        for encoding in ("utf-8-sig", "latin-1"):
            with pytest.raises(ValueError, match=f"news.csv is not .* {wide.upper()} byte-order mark: .* = .{wide}."):
                CsvSource(train=str(path), encoding=encoding)
        assert next(CsvSource(train=str(path), encoding=wide).records())["text"] == "Profit rose"
    lines = tmp_path / "news.jsonl"  # JSON lines have no 'encoding' setting: the advice was to set one
    lines.write_bytes('{"text": "Profit rose", "label": "positive"}\n'.encode("utf-16"))
    with pytest.raises(ValueError, match=r"UTF-16 byte-order mark; JSON lines are UTF-8: convert it"):
        JsonlSource(train=str(lines))  # where the profile is checked, as a CSV file's
    lines.write_bytes('{"text": "Profit rose", "label": "positive"}\n'.encode("utf-16-le"))  # no mark: "column 2"
    with pytest.raises(ValueError, match=r"news.jsonl:1: a NUL byte, .* looks like UTF-16LE text without a byte-order"):
        JsonlSource(train=str(lines))
    path.write_text("text,label\nA line\u0085ends,positive\nUn café,positive\n")  # UTF-8 holding U+0085 itself
    assert [r["text"] for r in CsvSource(train=str(path)).records()] == ["A line\u0085ends", "Un café"]
    garbled = "The company\x92s profit rose \x96 a record year"  # read as latin-1, saved as UTF-8 (checker 271)
    path.write_text(f"text,label\nProfit rose,positive\n{garbled},positive\n")
    said = r"news.csv:3: the 'text' column holds the control character U\+0092, .*text.encode\('latin-1'\)"
    with pytest.raises(heirloom.HeirloomError, match=said):
        list(CsvSource(train=str(path)).records())
    assert garbled.encode("latin-1").decode("cp1252") == record["text"]  # the repair the error gives


def test_a_utf_8_file_read_as_latin_1_or_cp1252_is_an_error_that_names_utf_8(tmp_path):
    """A latin-1 training file set ``encoding = "latin-1"``, and the UTF-8 test file beside it was scored as
    "Facture erronÃ©e", silently (h293 F2); a true latin-1 file still reads, and a UTF-8 header is said where
    the profile is checked (it said "did you mean 'CatÃ©gorie'?")."""
    train = tmp_path / "train.csv"
    train.write_bytes("text,label\nFacture erronée,billing\n".encode("latin-1"))
    test = tmp_path / "test.csv"
    test.write_text("text,label\nColis perdu,shipping\nFacture erronée pour café,billing\n", encoding="utf-8")
    for encoding in ("latin-1", "cp1252"):
        assert [r["text"] for r in CsvSource(train=str(train), encoding=encoding).records()] == ["Facture erronée"]
        source = CsvSource(train=str(train), test=str(test), encoding=encoding)
        said = (
            rf"test.csv:3: the 'text' column holds 'Ã©', the UTF-8 bytes of 'é' read as {encoding}: .* = \"utf-8-sig\""
        )
        with pytest.raises(heirloom.HeirloomError, match=said):
            list(source.records("test"))
    test.write_text("text,label\nIt\u2019s lost,shipping\n", encoding="utf-8")  # 0x80 0x99 read as C1 controls
    with pytest.raises(heirloom.HeirloomError, match=r"test.csv:2: .* 'â\\x80\\x99', the UTF-8 bytes of '\u2019'"):
        list(CsvSource(train=str(train), test=str(test), encoding="latin-1").records("test"))
    test.write_text("text,catégorie\nColis perdu,shipping\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"the header of test.csv holds 'Ã©', the UTF-8 bytes of 'é' read as latin-1"):
        CsvSource(train=str(test), encoding="latin-1", label_column="catégorie")


def test_a_utf_16_file_without_a_byte_order_mark_is_said_where_the_profile_is_checked(tmp_path, heirloom_home):
    """A spreadsheet's "Unicode text" saved without a byte-order mark (UTF-16LE, CRLF) passed ``profile check``, and
    ``data stats`` said "no column 'text'; did you mean 't\\x00e\\x00x\\x00t\\x00'?" (h347 F1); with
    ``encoding = "utf-16"`` Python's "UTF-16 stream does not start with BOM" named no file and no key (h347 F2)."""
    rows = [("text", "label"), *((f"parcel late {n}", "delivery") for n in range(3)), ("Ärger", "billing")]
    lines = "".join(f"{text},{label}\r\n" for text, label in rows)
    (tmp_path / "le.csv").write_bytes(lines.encode("utf-16-le"))
    (tmp_path / "be.csv").write_bytes(lines.replace("\r\n", "\n").encode("utf-16-be"))
    (tmp_path / "u8.csv").write_bytes(lines.encode("utf-8"))
    profile = tmp_path / "p.toml"
    for train, encoding, said in [
        (
            "le.csv",
            "",
            "le.csv looks like UTF-16LE text without a byte-order mark: set the source's 'encoding' = \"utf-16le\"",
        ),
        (
            "be.csv",
            "",
            "be.csv looks like UTF-16BE text without a byte-order mark: set the source's 'encoding' = \"utf-16be\"",
        ),
        ("be.csv", "utf-16le", "be.csv looks like UTF-16BE text without a byte-order mark"),  # the other byte order
        (
            "le.csv",
            "utf-16",
            "sources.s.encoding: 'encoding' 'utf-16' reads a file starting with a byte-order mark, and le.csv has "
            "none: it looks like UTF-16LE text without one: set 'encoding' = \"utf-16le\"",
        ),
        (
            "u8.csv",  # a UTF-8 file beside a UTF-16 one: one encoding reads them all
            "utf-16",
            "sources.s.encoding: 'encoding' 'utf-16' reads a file starting with a byte-order mark, and u8.csv has "
            "none, nor the NUL bytes of UTF-16 text (UTF-8?); one 'encoding' reads all of a source's files: convert "
            "the UTF-16 ones to UTF-8 (iconv -f utf-16 -t utf-8) and unset 'encoding'",
        ),
    ]:
        setting = f'encoding = "{encoding}"\n' if encoding else ""
        write(profile, f'[sources.s]\nuse = "csv"\ntrain = "{train}"\n{setting}')
        checked = run_heirloom("profile", "check", str(profile))
        assert checked.returncode == 2, (train, encoding, checked.stdout)
        assert said in " ".join(checked.stderr.split()), (train, encoding)
        assert "\\x00" not in checked.stderr
    for train, encoding in [("le.csv", "utf-16le"), ("be.csv", "utf-16be")]:  # the advice, followed, reads them
        source = CsvSource(train=str(tmp_path / train), encoding=encoding, test_fraction=0.5)
        assert sorted(r["text"] for r in source.records()) == [
            "parcel late 0",
            "parcel late 1",
            "parcel late 2",
            "Ärger",
        ]
    with pytest.raises(heirloom.HeirloomError, match=r"le.csv:1 looks like UTF-16LE text without a byte-order mark"):
        list(csv_rows(tmp_path / "le.csv", ["text", "label"]))  # the reading says so too (a source without the check)
    with pytest.raises(heirloom.HeirloomError, match=r"'encoding' 'utf-16' reads a file starting with a byte-order"):
        list(csv_rows(tmp_path / "le.csv", ["text", "label"], encoding="utf-16"))


@pytest.mark.parametrize("encoding", ["", "utf-16", "utf-32-le"])  # any wide one set: unset it too (v24 F2)
@pytest.mark.parametrize(
    ("wide", "codec"),
    [("utf-16", "utf-16"), ("utf-16-le", "utf-16le"), ("utf-32-le", "utf-32le"), ("utf-32-be", "utf-32be")],
)
def test_a_utf_16_file_beside_a_utf_8_one_is_told_to_convert_at_once(tmp_path, heirloom_home, encoding, wide, codec):
    """h388 F10: a UTF-8 ``train`` beside a UTF-16 ``test`` was told to set ``encoding = "utf-16"``, and then, with
    it set, that train.csv has no byte-order mark and to convert: the first advice failed. One ``encoding`` reads
    all of a source's files, so the first error says to convert the wide ones (with or without their mark)."""
    (tmp_path / "train.csv").write_text("text,label\nprofit rose,positive\nloss grew,negative\n", encoding="utf-8")
    (tmp_path / "test.csv").write_bytes("text,label\r\nprofit fell,negative\r\n".encode(wide))
    setting = f'encoding = "{encoding}"\n' if encoding else ""
    profile = write(tmp_path / "p.toml", f'[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n{setting}')
    checked = run_heirloom("profile", "check", str(profile))
    assert checked.returncode == 2, checked.stdout
    unset = " and unset 'encoding'" if encoding else ""
    assert (
        f"sources.s: test.csv is {codec.upper()} text while train.csv is not, and one 'encoding' "
        f"('{encoding or 'utf-8-sig'}') reads all of a source's files: convert the {codec.upper()} ones to UTF-8 "
        f"(iconv -f {codec} -t utf-8){unset}"
    ) in " ".join(checked.stderr.split())
    (tmp_path / "test.csv").write_text("text,label\nprofit fell,negative\n", encoding="utf-8")  # the advice followed
    write(profile, '[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n')
    assert run_heirloom("profile", "check", str(profile)).returncode == 0


@pytest.mark.parametrize(
    ("mark", "encoding", "wide", "fixed"),
    [
        (b"\xff\xfe", "utf-16le", "utf-16-le", "utf-16"),
        (b"\xfe\xff", "utf-16be", "utf-16-be", "utf-16"),
        (b"\xff\xfe\x00\x00", "utf-32le", "utf-32-le", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32be", "utf-32-be", "utf-32"),
    ],
)
def test_a_wide_file_with_its_byte_order_mark_read_without_the_mark_says_to_set_the_encoding_that_reads_it(
    tmp_path, heirloom_home, mark, encoding, wide, fixed
):
    """A UTF-16 file with its byte-order mark, read as ``utf-16le`` (what the advice for a file without the mark
    says to set), got "did you mean '\\ufefftext'?" and not a word of the mark (checker v9 F3); it is said as a
    UTF-8 file's mark read as ``utf-8`` is, and the encoding it names reads the file."""
    rows = ["text,label", *(f"parcel late {n},delivery" for n in range(3)), "Ärger,billing"]
    (tmp_path / "bom.csv").write_bytes(mark + "".join(f"{row}\n" for row in rows).encode(wide))
    profile = tmp_path / "p.toml"
    write(profile, f'[sources.s]\nuse = "csv"\ntrain = "bom.csv"\nencoding = "{encoding}"\n')
    checked = run_heirloom("profile", "check", str(profile))
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 2, checked.stdout
    assert said.startswith(f"{profile}: sources.s.text_column: "), said
    assert (
        "'text_column' 'text' is not a column of bom.csv: the file starts with a "
        f"{fixed.upper()} byte-order mark, which '{encoding}' reads as part of the first column's name: set the "
        f"source's 'encoding' = \"{fixed}\"" in said
    ), said
    assert "did you mean" not in said and "\\ufeff" not in said
    source = CsvSource(train=str(tmp_path / "bom.csv"), encoding=fixed, test_fraction=0.5)
    assert sorted(r["text"] for r in source.records()) == ["parcel late 0", "parcel late 1", "parcel late 2", "Ärger"]


def test_a_file_of_another_script_is_told_its_encoding_and_read_as_cp1252_is_warned_of(tmp_path, caplog):
    """An Arabic Windows file (cp1256) was told to set "cp1252" or "latin-1", which read every byte as the wrong
    letters: it trained on them, scored well, and answered real Arabic at chance; a Japanese one (cp932) was sent
    round between the two (checker h442 F1, F2). A Western one read as cp1252 or latin-1 is not warned of."""
    texts = {"cp1256": "الخدمة ممتازة جدا وأنا سعيد بها", "cp932": "配送がとても早くて満足しています"}
    for encoding, text in texts.items():
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(f"text,label\n{text},a\n{text[::-1]},b\n".encode(encoding))
        said = rf"{encoding}.csv:2: not utf-8-sig .*its bytes read as .*'{encoding}'"
        with pytest.raises(heirloom.HeirloomError, match=said):
            list(CsvSource(train=str(path)).records())
    western = tmp_path / "western.csv"
    western.write_bytes("text,label\nCafé très bon déjà reçu,a\nNicht gut für mich leider,b\n".encode("cp1252"))
    for path, encoding in [(tmp_path / "cp1256.csv", "cp1252"), (western, "cp1252"), (western, "latin-1")]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="heirloom.data"):
            assert len(list(CsvSource(train=str(path), encoding=encoding).records())) == 2
        said = [r.getMessage() for r in caplog.records if r.name == "heirloom.data"]
        if path == western:
            assert said == [], said
        else:
            [line] = said
            assert line.startswith(f"{path}: read as cp1252, its bytes read as cp1256 or "), line
            assert line.endswith("text (charset-normalizer's guess): if heirloom data show prints its texts garbled, "
                                 "set the source's 'encoding' to the file's encoding"), line  # fmt: skip


def test_a_utf_8_file_read_as_cp1252_is_told_utf_8_not_the_encoding_it_has(tmp_path):
    """UTF-8's closing quote (E2 80 9D) and 'Á' (C3 81) hold bytes cp1252 lacks: a UTF-8 file set to cp1252 stopped
    there and was told to set "cp1252", the encoding it had (h347 F9)."""
    path = tmp_path / "f.csv"
    rows = ["text,label", "parcel late,delivery", "he said \u201cwhere is it\u201d,delivery", "bill wrong,billing"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    said = (
        r"f.csv:3: not cp1252 text \(byte b'\\x9d' cannot be decoded\); the bytes are UTF-8 text \('\u201d' there\): "
    )
    with pytest.raises(heirloom.HeirloomError, match=said + r"set the source's 'encoding' = \"utf-8-sig\""):
        list(CsvSource(train=str(path), encoding="cp1252").records())
    path.write_text('text,label\n"\u00c1LVARO here, parcel late",delivery\nbill,billing\n', encoding="utf-8")
    with pytest.raises(heirloom.HeirloomError, match=r"f.csv:2: .*UTF-8 text \('\u00c1' there\): .*\"utf-8-sig\""):
        list(CsvSource(train=str(path), encoding="cp1252").records())
    path.write_bytes(b"text,label\nsome \x81 thing,a\nother,b\n")  # no UTF-8: a one-byte encoding, not cp1252 again
    with pytest.raises(
        heirloom.HeirloomError, match=r"f.csv:2: .*; set the source's 'encoding' to the file's encoding: its bytes"
    ) as raised:
        list(CsvSource(train=str(path), encoding="cp1252").records())
    assert '"cp1252"' not in str(raised.value)
    path.write_text("text,cat\u00e9gorie\u201d\nsome thing,a\n", encoding="utf-8")  # the header's, where it is checked
    with pytest.raises(
        ValueError, match=r"the header of f.csv is not cp1252 text: the bytes are UTF-8 text: .*utf-8-sig"
    ):
        CsvSource(train=str(path), encoding="cp1252", label_column="x")


def test_labels_and_labels_file_entries_are_read_as_the_datas_labels_are(tmp_path, heirloom_home):
    """A ``labels`` entry typed in decomposed form (macOS) or with a space matched no record: the class was left out,
    the warning said "'café' (did you mean 'café'?)" and train stored a model without it, exit 0; a ``labels_file``
    in NFD stopped with the same unreadable hint (h347 F5). Data labels lose surrounding spaces and are read in NFC."""
    decomposed = unicodedata.normalize("NFD", "caf\u00e9")
    rows = [f"the coffee was cold {n},caf\u00e9" for n in range(5)] + [
        f"my parcel is late {n},delivery" for n in range(5)
    ]
    write(tmp_path / "d.csv", "text,label\n" + "\n".join([*rows, *(f"I cannot log in {n},account" for n in range(5))]))
    (tmp_path / "labels.json").write_text(json.dumps([decomposed, " delivery", "account"]))
    kept = json.dumps([decomposed, " delivery", "account "])  # a TOML array is JSON's
    for setting in (f"labels = {kept}", 'labels_file = "labels.json"'):
        profile = write(
            tmp_path / "p.toml", f'[sources.s]\nuse = "csv"\ntrain = "d.csv"\ntest_fraction = 0.4\n{setting}\n'
        )
        stats = run_heirloom("data", "stats", str(profile), "s", "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["labels"]["train"].keys() == {"caf\u00e9", "delivery", "account"}, setting
        assert "match no training record" not in stats.stderr and "did you mean" not in stats.stderr
    source = CsvSource(train=str(tmp_path / "d.csv"), labels=[f" {decomposed} "])
    assert source.labels == ["caf\u00e9"]
    assert {record["label"] for record in source.records()} == {"caf\u00e9"}
    from heirloom_plugins.support.sources import OutOfScopeSource  # its labels to hold out are the data's too

    assert OutOfScopeSource(data="s", labels=[f"{decomposed} "]).labels == ["caf\u00e9"]


def test_a_utf_8_byte_order_mark_read_as_utf_8_names_utf_8_sig(tmp_path):
    """``encoding = "utf-8"`` read an editor's byte-order mark as part of the first column: the error
    suggested the column '\\ufeffticket' (h293 F3), where the UTF-16 mark's says which encoding to set."""
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfticket,category\r\ncard charged twice,billing\r\n")
    said = r"'text_column' 'ticket' is not a column of bom.csv: the file starts with a UTF-8 byte-order mark, .*"
    said += r'= "utf-8-sig" \(the default'
    with pytest.raises(ValueError, match=said):
        CsvSource(train=str(path), encoding="utf-8", text_column="ticket", label_column="category")
    [record] = CsvSource(train=str(path), text_column="ticket", label_column="category", test_fraction=0.5).records()
    assert record["text"] == "card charged twice"  # the default reads it


def test_a_bad_line_of_a_held_out_file_names_its_split_not_the_train_split(tmp_path, heirloom_home):
    """The train split's check of repeats reads the held-out files: a test file's bad line was said as
    "reading the train split of t: test.csv:3: ...", and a user looked in the training file (h293 F1); a
    union reading its parts' held-out files for a correction's check said the same of a validation file."""
    rows = "".join(f"my card was charged twice {i},billing\nparcel lost in transit {i},shipping\n" for i in range(20))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    write(tmp_path / "test.csv", "text,label\ndouble charge on my card,billing\nwhere is my parcel,\n")
    write(tmp_path / "valid.csv", "text,label\nwhere is it,shipping\nwhy, oh why,billing\n")
    csv = 'project = "shop"\n[sources.t]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\n'
    model = '[models.m]\nuse = "text-classifier"\ndata = "{}"\n'
    trained = run_heirloom("train", str(write(tmp_path / "f1.toml", csv + model.format("t"))))
    said = " ".join(trained.stderr.split())
    assert (
        f"error: reading the test split of source 't': {tmp_path / 'test.csv'}:3: the 'label' column is empty" in said
    )
    assert trained.returncode == 1 and "train split" not in said.rsplit("━", 1)[-1], said  # past the progress bar
    union = '[sources.f]\nuse = "feedback"\napi = "intent"\n[sources.u]\nuse = "union"\nsources = ["t", "f"]\n'
    write(tmp_path / "test.csv", "text,label\ndouble charge on my card,billing\n")
    profile = write(tmp_path / "u.toml", csv + 'validation = "valid.csv"\n' + union + model.format("u"))
    log = heirloom.FeedbackLog(heirloom_home / "feedback" / "shop" / "intent.jsonl")
    log.add({"text": "my parcel never came", "label": "shipping"})  # a correction: checked against held-out texts
    log.close()
    trained = run_heirloom("train", str(profile))
    said = " ".join(trained.stderr.split())
    assert f"error: reading the validation split of source 't': {tmp_path / 'valid.csv'}:3: the row has 3" in said
    assert trained.returncode == 1 and "train split" not in said.rsplit("━", 1)[-1], said


def test_a_union_listed_without_a_split_holds_what_its_splits_hold(tmp_path):
    """``data show support intent-data`` without ``--split`` printed the union's parts raw: a resolution
    repeating a test text, which training leaves out, and the training text a resolution replaces, both
    unmarked, so a team checking what the next train reads saw records it never reads (h315 F1)."""
    write(tmp_path / "train.csv", "text,label\nupgrade my data plan,upgrade\nmy bill is too high,billing\n")
    write(tmp_path / "test.csv", "text,label\nwho won the football last night,chat\nwhy is my bill so high,billing\n")
    decided = {
        "who won the football last night": "out_of_scope",
        "Upgrade my DATA plan!!": "upgrade",
        "my screen is cracked": "repair",
    }
    entries = []
    for number, (text, intent) in enumerate(decided.items()):
        entries += [
            {"type": "handoff", "id": f"h{number}", "text": text},
            {"type": "resolution", "id": f"h{number}", "intent": intent},
        ]
    write(tmp_path / "handoffs.jsonl", "".join(json.dumps(entry) + "\n" for entry in entries))
    profile = write(
        tmp_path / "p.toml",
        '[sources.t]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\nvalidation_fraction = 0\n'
        '[sources.r]\nuse = "handoffs"\napi = "support"\npath = "handoffs.jsonl"\n'
        '[sources.u]\nuse = "union"\nsources = ["t", "r"]\n',
    )

    def shown(*split: str) -> tuple[list[str], str]:
        result = run_heirloom("data", "show", str(profile), "u", "--limit", "0", "--json", *split)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["text"] for line in result.stdout.splitlines()], " ".join(result.stderr.split())

    everything, said = shown()
    train, test = shown("--split", "train")[0], shown("--split", "test")[0]
    assert sorted(everything) == sorted(train + test)
    assert "who won the football last night" in test and everything.count("who won the football last night") == 1
    assert "upgrade my data plan" not in everything and "Upgrade my DATA plan!!" in everything
    assert "my screen is cracked" in everything
    assert "1 training record(s) of 'r' repeat a validation or test example" in said and "(ids: handoff:h0)" in said
    assert "training records replaced by a later record of the same example (text; latest_wins): 1 of 't'" in said


def test_records_left_out_by_labels_and_test_texts_repeated_in_training_are_said(tmp_path, caplog):
    """A test file spelling 'Negative' lost its records to ``labels`` unseen (accuracy 0.70 ->
    0.82); test rows pasted into the training file reported 0.979 for a model scoring 0.770."""
    test = "text,label\nUp we go,positive\nDown we go,Negative\nflat,neutral\nlow,neg-ative\nlower,negative\n"
    test = write(tmp_path / "test.csv", test)  # 'neg-ative', a space for a '_', went unsaid too (h380 F2)
    rows = "".join(f"text {n},{'positive' if n % 2 else 'negative'}\n" for n in range(20))
    train = write(tmp_path / "train.csv", f"text,label\n{rows}up  WE go,positive\n")
    source = CsvSource(train=str(train), test=str(test), labels=["positive", "negative"], validation_fraction=0)
    with caplog.at_level("WARNING", logger="heirloom.text"):
        assert len(list(source.records("test"))) == 2
        assert len(list(source.records("train"))) == 21
        list(source.records("test"))  # said once
    said = [record.getMessage() for record in caplog.records]
    assert said[0] == (  # 'neutral' is left out as labels asks: unsaid (banking-intents-core keeps 40 of 77)
        "CsvSource: 2 test record(s) left out whose label is one of 'labels' spelt otherwise (case, spaces, '_' or "
        "'-', or a number written otherwise: 1.0 for 1): 'Negative' (1; 'negative'), 'neg-ative' (1; 'negative')"
    )
    assert said[1].startswith("CsvSource: 1 training record(s) repeat a validation or test text (train.csv:22)")
    assert len(said) == 2
    caplog.clear()  # texts labelled twice passed unsaid
    torn = write(tmp_path / "torn.csv", f"text,label\n{rows}Up we go,positive\nup WE go,negative\n")
    with caplog.at_level("WARNING", logger="heirloom.text"):
        list(CsvSource(train=str(torn), test=str(test), validation_fraction=0).records("train"))
    assert (
        "CsvSource: 2 training record(s) share their text with a record of another label (torn.csv:22, torn.csv:23): "
        "no model can learn both; keep the right one"
    ) in [record.getMessage() for record in caplog.records]  # beside: test.csv's 'Negative' is a case variant
    caplog.clear()  # a typo in 'labels' left the class out of the data and every score, unsaid
    typo = CsvSource(train=str(train), test=str(test), labels=["positive", "negatve"], validation_fraction=0)
    with caplog.at_level("WARNING", logger="heirloom.text"):
        assert {record["label"] for record in typo.records("train")} == {"positive"}
        list(typo.records("train"))  # said once
    assert [record.getMessage() for record in caplog.records].count(
        "CsvSource: 1 of 'labels' match no training record, so their classes are left out: "
        "'negatve' (did you mean 'negative'?)"
    ) == 1


def test_labels_of_a_file_in_another_unicode_form_are_an_error_and_look_alikes_are_said(tmp_path, caplog):
    """A no-break space or full-width letters: each label became a class of its own, printed
    like the other (the report showed two 'très positif' rows). Letters that only look alike
    (a dotless i) may be different words (Turkish), so they are said, not refused."""
    header = "text,label\nProfit rose,très positif\nLoss widened,négatif\n"
    for twin in ("très\u00a0positif", "\uff54rès positif"):
        path = write(tmp_path / "news.csv", header + f"Flat year,{twin}\n")
        said = r"news.csv:4: the 'label' column: label .* is label 'très positif' \(.*news.csv:2\) in another Unicode"
        with pytest.raises(heirloom.HeirloomError, match=said) as caught:
            list(CsvSource(train=str(path)).records())
        assert str(caught.value).endswith("write both as 'très positif'")  # readable, not 'tr\xe8s positif'
        # the odd one read first: the plain one's line was blamed, and told to write the no-break space (h347 F3)
        path = write(tmp_path / "news.csv", f"text,label\nProfit rose,{twin}\nLoss widened,très positif\n")
        said = (
            rf"news.csv:3: the 'label' column: label 'très positif' is label {re.escape(repr(twin))} \(.*news.csv:2\)"
        )
        with pytest.raises(heirloom.HeirloomError, match=said) as caught:
            list(CsvSource(train=str(path)).records())
        assert str(caught.value).endswith("write both as 'très positif'")
    lines = ['{"text": "a", "label": "positive"}', '{"text": "b", "label": "\uff50ositive"}']
    path = write(tmp_path / "j.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(heirloom.HeirloomError, match=r"j.jsonl:2: the 'label' field: label .* is label 'positive' \("):
        list(JsonlSource(train=str(path)).records())
    train, test = write(tmp_path / "train.csv", "text,label\nhair,k\u0131l\nclay,kil\n"), tmp_path / "test.csv"
    write(
        test, "text,label\nthe vowel,\u026a\nthe other,i\nlove,lob \u2764\ufe0f\nlove too,lob \u2764\n"
    )  # IPA's vowels
    with caplog.at_level("WARNING", logger="heirloom.text"):
        assert [r["label"] for r in CsvSource(train=str(train), test=str(test)).records()] == [
            "k\u0131l", "kil", "\u026a", "i", "lob \u2764\ufe0f", "lob \u2764"
        ]  # fmt: skip
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "the 'label' column: labels 'k\u0131l' and 'kil' print alike (look-alike letters or marks); they are two "
        "classes: if they are one, write them the same",
        "the 'label' column: labels '\u026a' and 'i' print alike (look-alike letters or marks); they are two "
        "classes: if they are one, write them the same",
        # an emoji's variation selector (U+FE0F): two classes, unsaid (checker h442 F3)
        "the 'label' column: labels 'lob \u2764\ufe0f' and 'lob \u2764' print alike (look-alike letters or marks); "
        "they are two classes: if they are one, write them the same",
    ]
    assert heirloom.label_problem("lob \u2764\ufe0f", ["lob \u2764"], "body.label", allow_new=True).startswith(
        "label 'lob \u2764\ufe0f' prints as 'lob \u2764'"
    )  # feedback refuses it as it refuses a full-width twin


def test_labels_that_differ_only_by_case_spaces_or_underscores_are_said_once_each(tmp_path, caplog):
    """CARD_ARRIVAL, card arrival and card_arrival trained as three classes of one intent, unsaid."""
    rows = "".join(
        f"text {n},{label}\n" for n, label in enumerate(["card_arrival", "CARD_ARRIVAL", "card arrival"] * 2)
    )
    path = write(tmp_path / "intents.csv", "text,label\n" + rows)
    with caplog.at_level("WARNING", logger="heirloom.text"):
        assert len(list(CsvSource(train=str(path)).records())) == 6  # two classes more, as written
    said = [r.getMessage() for r in caplog.records if "differ only by case" in r.getMessage()]
    assert said == [
        f"{path}:{line}: the 'label' column: labels 'card_arrival' and {label!r} differ only by case, spaces, '_' or "
        "'-'; they are two classes: if they are one, write them the same"
        for line, label in ((3, "CARD_ARRIVAL"), (4, "card arrival"))
    ]


@pytest.mark.parametrize("label", ["1.0", "true", "[1]", '{"a": 1}'])
def test_a_jsonl_label_that_is_no_string_or_integer_is_an_error(tmp_path, label):
    """1 and 1.0 became two labels ("1", "1.0"), true the label "True"."""
    path = write(tmp_path / "j.jsonl", f'{{"text": "a", "label": 1}}\n{{"text": "b", "label": {label}}}\n')
    with pytest.raises(heirloom.HeirloomError, match=r"j.jsonl:2: the 'label' field holds .*; expected a string or an"):
        list(JsonlSource(train=str(path)).records())
    assert next(JsonlSource(train=str(path)).records())["label"] == "1"
    first = path.read_bytes().split(b"\n")[0]
    path.write_bytes(b"\xef\xbb\xbf" + first + b"\n\xef\xbb\xbf" + first)  # files joined, each with an editor's BOM
    assert [r["label"] for r in JsonlSource(train=str(path)).records()] == ["1", "1"]


def test_jsonl_without_test_file_gets_a_seeded_split(tmp_path):
    lines = [json.dumps({"body": f"text {i}", "tag": "even" if i % 2 else "odd"}) for i in range(50)]
    path = write(tmp_path / "items.jsonl", "\n".join(lines) + "\n\n")
    source = JsonlSource(train=str(path), text_field="body", label_field="tag", test_fraction=0.2)
    assert source.stats()["labels"]["test"] == {"even": 5, "odd": 5}
    assert source.stats()["labels"]["validation"] == {"even": 2, "odd": 2}
    assert next(source.records()) == {"id": "items.jsonl:1", "text": "text 0", "label": "odd"}
    write(tmp_path / "bad.jsonl", '{"body": "x"}\n')
    said = r"bad.jsonl:1: expected an object with 'body' and 'tag' \(text_field, label_field\), got the keys 'body'$"
    with pytest.raises(heirloom.HeirloomError, match=said):
        list(JsonlSource(train=str(tmp_path / "bad.jsonl"), text_field="body", label_field="tag").records())
    blanks = (('{"body": "x", "tag": null}', "tag"), ('{"body": " ", "tag": "odd"}', "body"))
    for line, field in (*blanks, ('{"body": "\\u200b\\u200b", "tag": "odd"}', "body")):  # invisible only
        write(tmp_path / "blank.jsonl", line + "\n")  # null was the label "None"
        with pytest.raises(heirloom.HeirloomError, match=f"blank.jsonl:1: the '{field}' field is blank or null$"):
            list(JsonlSource(train=str(tmp_path / "blank.jsonl"), text_field="body", label_field="tag").records())
    write(tmp_path / "lone.jsonl", '{"body": "bad \\ud800 x", "tag": "odd"}\n')  # a raw traceback at training
    with pytest.raises(heirloom.HeirloomError, match=r"lone.jsonl:1: the 'body' field holds a lone surrogate"):
        list(JsonlSource(train=str(tmp_path / "lone.jsonl"), text_field="body", label_field="tag").records())


def test_a_validation_file_is_the_validation_split_of_a_csv_or_jsonl_source(tmp_path):
    """A team's own data, a few phrasings a label: validation carved out of the training file repeated
    its phrasings and scored 1.0 for every version, so ``promote --if-better`` could never choose, and
    no setting gave a csv or jsonl source a validation file of its own."""
    train = [row for i in range(12) for row in ((f"where is my parcel {i}", "shipping"), (f"refund me {i}", "refund"))]
    valid = [("the box never came", "shipping"), ("give back what I paid", "refund"), ("money back please", "refund")]
    test = [("lost package", "shipping"), ("I want my money back", "refund")]
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        write(tmp_path / f"{name}.csv", "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
        write(tmp_path / f"{name}.jsonl", "".join(json.dumps({"text": t, "label": la}) + "\n" for t, la in rows))
    profile = write(
        tmp_path / "p.toml",
        'project = "own"\n[sources.c]\nuse = "csv"\ntrain = "train.csv"\nvalidation = "valid.csv"\ntest = "test.csv"\n'
        '[sources.j]\nuse = "jsonl"\ntrain = "train.jsonl"\nvalidation = "valid.jsonl"\ntest_fraction = 0.25\n'
        '[models.mc]\nuse = "text-classifier"\ndata = "c"\n[models.mj]\nuse = "text-classifier"\ndata = "j"\n',
    )
    counted = {name: run_heirloom("data", "stats", str(profile), name, "--json") for name in ("c", "j")}
    assert json.loads(counted["c"].stdout)["records"] == {"train": 24, "validation": 3, "test": 2}, counted["c"].stderr
    assert json.loads(counted["j"].stdout)["labels"]["validation"] == {"refund": 2, "shipping": 1}
    assert json.loads(counted["j"].stdout)["records"] == {"train": 18, "validation": 3, "test": 6}  # test from train
    trained = run_heirloom("train", str(profile), env={"HEIRLOOM_HOME": str(tmp_path / "home")})
    assert trained.returncode == 0, trained.stderr
    csv_source = CsvSource(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "valid.csv"))
    jsonl_source = JsonlSource(train=str(tmp_path / "train.jsonl"), validation=str(tmp_path / "valid.jsonl"))
    for source, ids in ((csv_source, ["valid.csv:2", "valid.csv:3", "valid.csv:4"]), (jsonl_source, [1, 2, 3])):
        scored = list(source.records("validation"))
        assert [record["id"] for record in scored] == [i if isinstance(i, str) else f"valid.jsonl:{i}" for i in ids]
        said = f"validation (compared by promote --if-better; records {heirloom.records_fingerprint(scored)[:12]}): "
        assert said in trained.stdout and "support 3" in trained.stdout.split(said)[1].splitlines()[0]
    assert CsvSource(train=csv_source.train, validation=csv_source.validation, validation_fraction=0).splits() == [
        "train",
        "validation",
        "test",
    ]
    unused = CsvSource(train=csv_source.train, validation=csv_source.validation, validation_fraction=0.3)
    assert unused.fingerprint() == (before := csv_source.fingerprint())  # the file is the split: the fraction unused
    assert sum(1 for _ in unused.records("train")) + sum(1 for _ in unused.records("test")) == 24
    write(tmp_path / "valid.csv", "text,label\nthe box never came,shipping\nmy car broke down,roadside\n")
    assert csv_source.fingerprint() != before  # its content is the lineage's
    assert csv_source.stats()["labels_only_held_out"] == {"roadside": "validation valid.csv:3"}
    write(tmp_path / "valid.csv", "text,label\nthe box never came,shipping\nwhat about my refund\n")
    stats = run_heirloom("data", "stats", str(profile), "c")
    assert stats.returncode == 1 and f"{tmp_path / 'valid.csv'}:3: the row has 1 fields, the header 2" in stats.stderr
    write(tmp_path / "valid.jsonl", '{"text": "the box never came", "label": "shipping"}\n{"text": "refund", \n')
    with pytest.raises(heirloom.HeirloomError, match=r"valid.jsonl:2: invalid JSON at column"):
        list(jsonl_source.records("validation"))
    write(tmp_path / "valid.csv", "text,label\n")
    checked = run_heirloom("profile", "check", str(profile))
    assert (
        checked.returncode == 2
        and "sources.c.validation: 'validation' file valid.csv holds no record" in checked.stderr
    )


def test_unknown_split_is_refused(allagree):
    with pytest.raises(heirloom.HeirloomError, match="unknown split 'dev'; expected one of train, validation, test"):
        allagree.records("dev")


# -- the model -------------------------------------------------------------------------------
def test_training_a_text_classifier_imports_no_torch_dynamo():
    """torch's optimisers import ``torch._dynamo`` at their first ``add_param_group`` only to mark it untraced: 2 s
    of CPU, half of a small ``heirloom train``. A fresh process fits one and dynamo is still not imported."""
    fit = (
        "import sys\nfrom heirloom_plugins.text.model import TextClassifier\n"
        "rows = [{'text': f'{w} {i}', 'label': w} for i in range(20) for w in ('up', 'down')]\n"
        "model = TextClassifier(data='d')\nmodel.fit(rows)\n"
        "assert model.predict(['up 3'])[0]['label'] == 'up'\nprint('torch._dynamo' in sys.modules)\n"
    )
    fitted = subprocess.run([sys.executable, "-c", fit], capture_output=True, text=True, timeout=120)
    assert fitted.returncode == 0 and fitted.stdout.strip() == "False", fitted.stdout + fitted.stderr


def test_model_beats_the_majority_class_by_a_wide_margin(fitted, allagree):
    report = fitted.evaluate(allagree.records("test"))
    assert report.metrics["accuracy"] > MAJORITY_ALLAGREE + 0.2
    assert report.metrics["macro_f1"] > 0.75


def test_a_report_counts_texts_it_or_a_parent_trained_on_and_says_when_majority_does_as_well(fitted, allagree):
    """A parent trained on the child's test file scored 0.993 against 0.950 with an honest one;
    a union of two exports of one table trained on 345 of its 500 test texts; a model below the
    majority class on data without signal: all were reported as any other scores."""
    train, test = list(allagree.records("train")), list(allagree.records("test"))
    honest = fitted.evaluate(test)
    assert honest.metrics["seen_in_training"] == 2 and "were training texts" not in honest.text  # under 1%: unsaid
    assert honest.metrics["majority"] == {"label": "neutral", "accuracy": pytest.approx(MAJORITY_ALLAGREE, abs=0.01)}
    assert "always answering 'neutral' (the most frequent training label): accuracy 0.6" in honest.text
    assert "no better than" not in honest.text
    leaky = TextClassifier(data="news")
    glued = [{**record, "text": record["text"].replace(" ", "")} for record in test[:30]]  # "3.3 % ." as "3.3%."
    leaky.fit([*train[:200], *glued])  # the parent saw 30 test texts, spaced otherwise (the child: one in capitals)
    child = TextClassifier(data="news")
    child.fit([*train[200:400], {**test[0], "text": test[0]["text"].upper()}], parent=leaky.state())
    loaded = TextClassifier(data="news")
    loaded.load(child.state())  # the hashes travel with the state
    report = loaded.evaluate(test)
    assert report.metrics["seen_in_training"] == 30
    forged = child.state()  # a float tensor lost the hashes' precision: 60 texts counted 120
    forged.tensors["seen_texts"] = forged.tensors["seen_texts"].float()
    with pytest.raises(heirloom.HeirloomError, match=r"the state's tensor 'seen_texts' is torch\.float32 of shape"):
        TextClassifier(data="news").load(forged)
    said = f"warning: 30 of {len(test)} texts were trained on by this version or a version it inherits from (the same"
    assert said in report.text
    noise = [{"text": f"word{n} filler", "label": "a" if n % 7 else "b"} for n in range(140)]
    guess = TextClassifier(data="news")
    guess.fit(noise)
    unseen = guess.evaluate([{"text": f"other{n} text", "label": "a" if n % 7 else "b"} for n in range(70)])
    assert unseen.metrics["accuracy"] <= unseen.metrics["majority"]["accuracy"]
    assert "warning: no better than always answering it" in unseen.text


def test_texts_that_differ_by_a_vowel_sign_are_two_texts_to_the_repeat_and_seen_checks():
    """Hindi काम (work) and कम (less) were one text once the marks were dropped: 60 of 60 test
    sentences were reported trained on, and the source asked to remove 60 repeats, of none."""
    from heirloom_plugins.seen import normal_text

    for one, other in (("काम", "कम"), ("दाल", "दिल"), ("กิน", "กน"), ("كَتَبَ", "كُتُبٌ")):
        assert normal_text(one) != normal_text(other), (one, other)
    assert normal_text("Profit rose 3.3 % .") == normal_text("profit rose 3.3%.")


def test_a_version_whose_ancestor_kept_no_hashes_has_no_count_and_says_why(fitted, allagree):
    """A parent stored before versions kept their texts' hashes counted 0: the report said 0 of
    453 trained on (scoring 0.982 against 0.899 honest), and the count silenced the kernel's
    warning about a parent scored on other held-out records, for every later version too; and
    such a version scored itself on its own training texts said 0 too."""
    train, test = list(allagree.records("train")), list(allagree.records("test"))
    state = fitted.state()
    older = heirloom.State({k: v for k, v in state.tensors.items() if k != "seen_texts"}, state.metadata)
    child = TextClassifier(data="news")
    child.fit(train[:300], parent=older)
    grandchild = TextClassifier(data="news")
    grandchild.fit(train[300:600], parent=child.state())
    itself = TextClassifier(data="news")  # h340 F5: the old version itself said 0 of 453 where 328 were
    itself.load(older)
    for model in (itself, child, grandchild):
        report = model.evaluate(test + train[:20])
        assert "seen_in_training" not in report.metrics
        said = "this version or a version it inherits from was stored before versions kept what they trained on"
        assert f"{said}: how many of the {len(test) + 20} scored here it trained on is unknown" in report.text
    fresh = TextClassifier(data="news")
    fresh.fit(train[:300])
    assert fresh.evaluate(test).metrics["seen_in_training"] <= len(test) // 100  # no parent: counted


def test_evaluate_reports_per_class_averages_and_confusion(fitted, allagree):
    report = fitted.evaluate(allagree.records("test"))
    metrics = report.metrics
    json.dumps(metrics)
    assert set(metrics["per_class"]) == {"negative", "neutral", "positive"}
    for values in metrics["per_class"].values():
        assert set(values) == {"precision", "recall", "f1", "support"}
    assert metrics["per_class"]["neutral"]["support"] == 278
    confusion = metrics["confusion_matrix"]
    assert confusion["labels"] == ["negative", "neutral", "positive"]
    assert sum(map(sum, confusion["matrix"])) == 453
    diagonal = sum(confusion["matrix"][i][i] for i in range(3))
    assert metrics["accuracy"] == pytest.approx(diagonal / 453)
    assert {"macro_f1", "weighted_f1"} <= set(metrics)
    assert "precision" in report.text and "weighted avg" in report.text and "confusion matrix" in report.text


def test_predict_is_batched_and_gives_probabilities(fitted):
    texts = [
        "Operating profit rose sharply to EUR 13.1 mn",
        "Net sales decreased by 15 percent",
        "The company is headquartered in Helsinki",
    ]
    outputs = fitted.predict(texts)
    assert [o["label"] for o in outputs] == ["positive", "negative", "neutral"]
    for output in outputs:
        assert set(output["probabilities"]) == {"negative", "neutral", "positive"}
        assert sum(output["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert fitted.predict([]) == []
    with pytest.raises(heirloom.HeirloomError, match="item 0 is int"):
        fitted.predict([3])


def test_a_few_texts_get_the_probabilities_a_large_batch_gets(fitted, allagree):
    """Up to a few texts are weighted in plain Python, larger batches through tensors: the
    same probabilities either way, also for texts with no known feature."""
    texts = [r["text"] for r in allagree.records("test")][:60]
    texts += ["", "qqxz vvkj", "!!!"]
    together = fitted.predict(texts)
    one_by_one = [output for text in texts for output in fitted.predict([text])]
    in_pairs = [output for i in range(0, len(texts), 2) for output in fitted.predict(texts[i : i + 2])]
    for alone in (one_by_one, in_pairs):
        assert [o["label"] for o in alone] == [o["label"] for o in together]
        for mine, theirs in zip(alone, together, strict=True):
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-6)


def test_state_round_trip_gives_identical_predictions(fitted, allagree):
    state = fitted.state()
    json.dumps(state.metadata)
    assert state.metadata["labels"] == ["negative", "neutral", "positive"]
    fresh = TextClassifier(data="news", buckets=1 << 12)  # the state's hashing settings win
    assert not fresh.ready()
    fresh.load(state)
    texts = [r["text"] for r in allagree.records("test")]
    assert fresh.predict(texts) == fitted.predict(texts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hashing": {"buckets": -1}}, "hashing settings are damaged"),
        ({"hashing": {"buckets": 10**30}}, "hashing settings are damaged"),
        ({"hashing": {"buckets": 3 * 10**8}}, "hashing settings are damaged"),  # 1.4 GB at eval (h340 F2)
        ({"hashing": {"word_ngrams": "2"}}, "hashing settings are damaged"),
        ({"labels": [1, 2, 3]}, "'labels' is not a list of label names"),
        ({"labels": 5}, "'labels' is not a list of label names"),
    ],
)
def test_a_state_with_damaged_settings_is_refused_naming_them(fitted, change, message):
    state = fitted.state()
    metadata = {**state.metadata, **change}
    if "hashing" in change:
        metadata["hashing"] = {**state.metadata["hashing"], **change["hashing"]}
    with pytest.raises(heirloom.HeirloomError, match=message):
        TextClassifier(data="news").load(heirloom.State(state.tensors, metadata))


@pytest.mark.parametrize(
    ("tensor", "damage", "message"),
    [
        ("weight", lambda t: t.double(), "tensors of another dtype: weight is float64, expected float32"),
        ("features", lambda t: t.int(), "tensors of another dtype: features is int32, expected int64"),
        ("features", lambda t: t + (1 << 40), "features must be increasing bucket ids below"),
        ("features", lambda t: t.flip(0), "features must be increasing bucket ids below"),
    ],
)
def test_a_state_with_damaged_tensors_is_refused_naming_them(fitted, tensor, damage, message):
    """Checker h340 F1: float64 weights (valid safetensors) failed eval and train inside torch with a
    traceback, and serve blamed the api; bucket ids past the table failed the same way."""
    state = fitted.state()
    tensors = {**state.tensors, tensor: damage(state.tensors[tensor])}
    with pytest.raises(heirloom.HeirloomError, match=message):
        TextClassifier(data="news").load(heirloom.State(tensors, state.metadata))


def test_fitting_is_deterministic(allagree, fitted):
    again = TextClassifier(data="news")
    again.fit(allagree.records("train"))
    for name, tensor in fitted.state().tensors.items():
        assert tensor.equal(again.state().tensors[name]), name


def test_warm_start_keeps_shared_labels_adds_new_and_drops_missing(allagree, fitted):
    records = list(allagree.records("train"))
    parent = fitted.state()
    child = TextClassifier(data="news", l2=1e7)  # a penalty this strong keeps the child at its prior
    child.fit(
        [r for r in records if r["label"] != "negative"] + [{"text": "shares halted", "label": "halted"}] * 3, parent
    )
    state = child.state()
    assert state.metadata["labels"] == ["halted", "neutral", "positive"]
    assert state.metadata["training"]["warm_start"] == {
        "kept": ["neutral", "positive"],
        "added": ["halted"],
        "dropped": ["negative"],
    }
    parent_rows = {int(f): i for i, f in enumerate(parent.tensors["features"])}
    shared = [(i, parent_rows[int(f)]) for i, f in enumerate(state.tensors["features"]) if int(f) in parent_rows]
    assert len(shared) == len(parent_rows)  # the parent's vocabulary is kept
    ours, theirs = zip(*shared, strict=True)
    child_weight = state.tensors["weight"][list(ours)]
    parent_weight = parent.tensors["weight"][list(theirs)]
    assert child_weight[:, 1:].sub(parent_weight[:, 1:]).abs().max() < 1e-3  # neutral, positive kept
    # the new label starts as a blend of the kept labels, weighted by how the parent read its texts
    new, kept = state.tensors["weight"][:, 0], state.tensors["weight"][:, 1:]
    assert new.abs().max() > 0.1
    assert (new >= kept.min(1).values - 1e-3).all() and (new <= kept.max(1).values + 1e-3).all()


def test_warm_start_from_a_parent_learns_faster(allagree, fitted):
    few = list(allagree.records("train"))[:120]
    test = list(allagree.records("test"))
    cold = TextClassifier(data="news")
    cold.fit(few)
    warm = TextClassifier(data="news")
    warm.fit(few, parent=fitted.state())
    assert warm.evaluate(test).metrics["accuracy"] > cold.evaluate(test).metrics["accuracy"] + 0.05


class _Said(heirloom.NullProgress):
    """Progress that keeps what a fit logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_a_warm_start_that_costs_validation_accuracy_is_said_beside_the_same_fit_from_scratch(allagree, fitted):
    """A parent from another domain anchors the weights away from the data: a game's support tickets scored 0.74
    warm-started from finance news against 0.84 from scratch, unsaid (checker h380 F3). With validation texts, a
    warm start is compared with the same fit from zero weights; the figures are kept, and a cost is a warning.
    A parent that reads positive as negative stands in for another domain here."""
    records = list(allagree.records("train"))
    few, held = records[::15], records[7::10]  # every label in both
    state = fitted.state()
    labels = state.metadata["labels"]
    swapped = [{"negative": "positive", "positive": "negative"}.get(label, label) for label in labels]
    contrary = heirloom.State(state.tensors, {**state.metadata, "labels": swapped})
    for parent, costs in ((state, False), (contrary, True)):
        said, child = _Said(), TextClassifier(data="news")
        child.fit(few, parent=parent, validation=held, progress=said)
        check = child.state().metadata["training"]["warm_start_check"]
        assert set(check) == {"validation_accuracy", "from_scratch"}
        assert (check["from_scratch"] - check["validation_accuracy"] > 0.02) is costs, check
        warned = [line for line in said.lines if line.startswith("warning: warm-started")]
        assert len(warned) == costs, said.lines
    assert f"scores {check['validation_accuracy']:.3f} on validation; the same fit from scratch" in warned[0]
    cold = TextClassifier(data="news")
    cold.fit(few, validation=held)
    assert cold.state().metadata["training"]["warm_start_check"] is None  # nothing inherited, nothing compared


def test_incompatible_parent_is_refused_with_the_setting(fitted):
    child = TextClassifier(data="news", word_ngrams=1, buckets=1 << 18)
    with pytest.raises(heirloom.HeirloomError, match=r"buckets \(parent 1048576, this model 262144\).*word_ngrams"):
        child.fit([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], parent=fitted.state())
    alien = heirloom.State({}, {"format": "something-else/1"})
    with pytest.raises(heirloom.ForeignState, match="not written by text-classifier"):
        child.fit([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], parent=alien)


def test_unfitted_model_refuses_to_predict():
    with pytest.raises(heirloom.HeirloomError, match="no weights yet"):
        TextClassifier(data="news").predict(["hello"])


# -- configuration through a profile ------------------------------------------------------------
def test_profile_wires_source_and_model_and_rejects_bad_config(tmp_path, phrasebank_dir):
    good = write(
        tmp_path / "good.toml",
        f'[sources.news]\nuse = "phrasebank"\npath = "{phrasebank_dir}"\nagreement = "all"\n'
        '[models.sentiment]\nuse = "text-classifier"\ndata = "news"\n',
    )
    with heirloom.Kernel().system(str(good)) as system:
        model = system.component("sentiment", "model")
        assert isinstance(model, TextClassifier) and model.device == "cpu"
        assert system.component("news", "source").stats()["records"]["test"] == 453
    bad = write(
        tmp_path / "bad.toml",
        f'[sources.news]\nuse = "phrasebank"\npath = "{phrasebank_dir}"\nagreement = "40"\n'
        '[models.sentiment]\nuse = "text-classifier"\ndata = "news"\nepochs = 0\n',
    )
    with pytest.raises(heirloom.ProfileError) as caught:
        heirloom.Kernel().resolve(str(bad))
    message = str(caught.value)
    assert "sources.news.agreement: 'agreement' must be in ('50', '66', '75', 'all') (got '40')" in message
    assert "models.sentiment.epochs: 'epochs' must be >= 1, got 0" in message


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"char_ngrams": (5, 2)}, r"'char_ngrams' must be \[min, max\] with 1 <= min <= max <= 8, or \[0, 0\]"),
        ({"validation_fraction": 0.9}, "'validation_fraction' must be between 0.0 and 0.5, got 0.9"),
        ({"l2": 0.0}, "'l2' must be > 0"),
        ({"buckets": 10}, "'buckets' must be between 1024 and 16777216, got 10"),
        ({"correction_weight": 10**18}, "'correction_weight' must be between 1 and 1000"),
    ],
)
def test_bad_model_settings_are_rejected(setting, message):
    with pytest.raises(ValueError, match=message):
        TextClassifier(data="news", **setting)


def test_settings_that_size_memory_are_bounded_where_the_profile_is_checked(tmp_path):
    """``buckets = 99999999999999999999`` passed ``profile check``; train then died in a traceback
    (OverflowError in the hashing), and a weight of 10^18 repeated a record past any memory (checker 277)."""
    write(tmp_path / "t.csv", "text,label\nhi,greet\nbye,leave\n")
    profile = write(
        tmp_path / "p.toml",
        '[sources.d]\nuse = "csv"\ntrain = "t.csv"\n[models.m]\nuse = "text-classifier"\ndata = "d"\n',
    )
    big = "99999999999999999999"
    checked = run_heirloom(
        "profile",
        "check",
        str(profile),
        "--set",
        f"models.m.buckets={big}",
        "--set",
        f"models.m.resolution_weight={big}",
    )
    assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
    assert f"models.m.buckets: 'buckets' must be between 1024 and 16777216, got {big}" in checked.stderr
    assert f"models.m.resolution_weight: 'resolution_weight' must be between 1 and 1000, got {big}" in checked.stderr


def test_importing_the_plugin_does_not_import_torch():
    probe = "import sys, heirloom_plugins.text\nprint('torch' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_metrics_match_hand_computed_values():
    metrics = classification_metrics(["a", "b", "b", "c", "c", "c"], ["a", "b", "c", "c", "c", "a"], ["c", "b"])
    assert metrics["confusion_matrix"] == {"labels": ["c", "b", "a"], "matrix": [[2, 0, 1], [1, 1, 0], [0, 0, 1]]}
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_avg"]["precision"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert metrics["weighted_avg"]["recall"] == pytest.approx((1 * 1 + 2 * 0.5 + 3 * 2 / 3) / 6)
    assert classification_metrics(["x"], ["y"])["per_class"]["y"] == {
        "precision": 0.0,
        "recall": None,
        "f1": None,
        "support": 0,
    }


def test_a_label_the_data_never_has_leaves_the_averages_even_when_predicted():
    """A version that learnt a label from feedback answered it once on 970 test texts: averaged in with F1 0, it
    lost a quarter of its macro-F1 though it was better on every real label, and a gate would refuse it."""
    truth = ["a", "a", "b", "b"]
    without = classification_metrics(truth, ["a", "a", "b", "a"], ["a", "b"])
    learnt = classification_metrics(truth, ["a", "a", "b", "new"], ["a", "b", "new"])
    assert learnt["per_class"]["new"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}
    assert learnt["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)  # a: P 1 R 1; b: P 1 R 1/2
    assert learnt["macro_f1"] > without["macro_f1"]  # the stray answer costs b's recall, as without's does
    assert learnt["accuracy"] == without["accuracy"] == 0.75


def test_a_label_nobody_has_or_predicts_gets_a_row_but_does_not_pull_the_averages_down():
    """A label learnt from feedback never enters a test split: with a zero row in the macro
    average, every version that learnt one would lose to one that did not."""
    truth, predicted = ["a", "b", "b"], ["a", "b", "a"]
    without = classification_metrics(truth, predicted, ["a", "b"])
    learnt = classification_metrics(truth, predicted, ["a", "b", "new"])
    assert learnt["per_class"]["new"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert learnt["macro_f1"] == without["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert learnt["weighted_avg"] == without["weighted_avg"]


def test_test_labels_the_model_does_not_predict_are_counted_and_said():
    """A test file's `Roaming` for the model's `roaming`: each record an error, said nowhere."""
    metrics = classification_metrics(["roaming", "Roaming", "Roaming", "bill"], ["roaming"] * 4, ["roaming", "bill"])
    assert metrics["unknown_labels"] == {"Roaming": 2}
    assert "labels the model does not predict, each record an error: Roaming (2)" in classification_text(metrics)
    assert "unknown_labels" not in classification_metrics(["bill"], ["bill"], ["roaming", "bill"])


def test_a_bad_jsonl_record_is_named_by_the_files_line_and_the_records_column(tmp_path):
    """The decoder's own "line 2 column 1" counted the newline: it contradicted the file line."""
    path = write(tmp_path / "items.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(heirloom.HeirloomError) as caught:
        list(JsonlSource(train=str(path)).records())
    assert str(caught.value).startswith(f"{path}:2: invalid JSON at column 24: Expecting value (the line ends before")


def test_a_jsonl_integer_past_pythons_digit_limit_is_an_error_naming_the_line(tmp_path):
    """A 4,400-digit integer on line 2 was a ValueError traceback advising sys.set_int_max_str_digits()."""
    path = write(tmp_path / "big.jsonl", '{"text": "a", "label": "x"}\n{"text": ' + "1" * 4400 + ', "label": "x"}\n')
    with pytest.raises(heirloom.HeirloomError) as caught:
        list(JsonlSource(train=str(path)).records())
    assert str(caught.value) == f"{path}:2: an integer of over 4,300 digits (write a long number as a JSON string)"


def test_a_first_record_check_cannot_use_is_refused_there_naming_the_file_and_line(tmp_path):
    """Checker 277: a jsonl first line that is JSON but no object passed ``profile check`` (docs/TEXT.md says it
    reports it), a 5,000-digit integer there was Python's advice naming no file, and a CSV file without a
    line break (300 MB of NUL bytes, here 2 MiB) was read whole, twice its size in memory, to say ``ok``."""
    write(tmp_path / "arr.jsonl", "[1, 2]\n")
    write(tmp_path / "int.jsonl", '{"text": ' + "1" * 5000 + ', "label": "x"}\n')
    with open(tmp_path / "zeros.csv", "wb") as zeros:
        zeros.truncate(2 << 20)  # sparse: no disk
    write(tmp_path / "long.csv", "text,label\n" + "a" * (1 << 20) + ",x\n")  # line 2 runs past the first MiB
    profile = write(
        tmp_path / "p.toml",
        '[sources.a]\nuse = "jsonl"\ntrain = "arr.jsonl"\n[sources.i]\nuse = "jsonl"\ntrain = "int.jsonl"\n'
        '[sources.z]\nuse = "csv"\ntrain = "zeros.csv"\n[sources.l]\nuse = "csv"\ntrain = "long.csv"\n',
    )
    checked = run_heirloom("profile", "check", str(profile))
    said = " ".join(checked.stderr.split())
    assert checked.returncode == 2 and "Traceback" not in said and "set_int_max_str_digits" not in said, said
    assert f"sources.a.train: 'train' file {tmp_path / 'arr.jsonl'}:1: expected an object" in said
    assert f"sources.i.train: 'train' file {tmp_path / 'int.jsonl'}:1: an integer of over 4,300 digits" in said
    beyond = "the line does not end in the file's first MiB (1,048,576 bytes), where a CSV file's header and first row"
    assert f"sources.z.train: 'train' file {tmp_path / 'zeros.csv'}:1: {beyond}" in said
    assert f"sources.l.train: 'train' file {tmp_path / 'long.csv'}:2: {beyond}" in said


def test_a_jsonl_fifo_or_a_line_nested_too_deep_is_an_error_naming_the_file(tmp_path):
    """A FIFO as the train file hung `data stats` (only train's fingerprint refused it); a line
    nested 100,000 deep was a RecursionError blamed on the plugin, naming no file or line."""
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(heirloom.HeirloomError, match=r"fifo\.jsonl is a FIFO, not a regular file"):
        list(JsonlSource(train=str(tmp_path / "fifo.jsonl")).records())
    deep = write(
        tmp_path / "deep.jsonl", '{"text": "a", "label": "x"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    )
    with pytest.raises(heirloom.HeirloomError) as caught:
        list(JsonlSource(train=str(deep)).records())
    assert str(caught.value) == f"{deep}:2: the JSON nests too deeply to read"


def test_a_data_path_that_is_a_socket_or_a_folder_says_which(tmp_path):
    """A socket as a source's file (here by --set) was a traceback, "No such device or address";
    a folder said "a folder, a FIFO or a device" rather than which. Both name the file and key (checker 275 F4)."""
    (tmp_path / "folder.jsonl").mkdir()
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "jsonl"\ntrain = "folder.jsonl"\n')
    env = {"HEIRLOOM_HOME": str(tmp_path / "home")}
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(tmp_path / "sock.jsonl"))
        for name, said in (("sock.jsonl", "a socket, not a regular file"), ("folder.jsonl", "a directory, not a file")):
            train = tmp_path / name  # --set: relative to the working directory
            shown = run_heirloom("data", "show", str(profile), "s", "--set", f"sources.s.train={train}", env=env)
            assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr
            assert shown.stderr.strip().endswith(f"--set: sources.s.train: 'train' {train} is {said}"), shown.stderr


def test_an_error_quoting_a_files_header_shows_its_escape_sequences_escaped(tmp_path):
    """A CSV header holding an OSC sequence set the terminal's title when profile check quoted
    the columns (click passes OSC through even to a pipe)."""
    (tmp_path / "train.csv").write_bytes(b"te\x1b]0;PWNED\x07xt,label\r\nhello,greeting\r\n")
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "csv"\ntrain = "train.csv"\n')
    checked = run_heirloom("profile", "check", str(profile))
    assert checked.returncode == 2
    assert "\x1b" not in checked.stderr and "\x07" not in checked.stderr
    assert "(columns: te\\x1b]0;PWNED\\x07xt, label)" in checked.stderr


def test_the_word_cache_is_bounded_in_bytes_whatever_words_clients_send(monkeypatch):
    """The cache of words' n-gram buckets held 2**18 words whatever their length: a client's
    100 words of 10,000 random letters per predict grew the daemon by about 36 MB a request."""
    import random
    import string

    from heirloom_plugins.ngrams import features
    from heirloom_plugins.ngrams.head import HASHING

    monkeypatch.setattr(features, "_WORD_CACHE_BYTES", 1 << 20)  # 1 MiB, so a test fills it quickly
    cached = features.Featurizer(HASHING)
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=2000)) for _ in range(40)]  # about 2.5 MiB of buckets
    for word in words:
        found: list[int] = []
        cached.buckets(word, found)
        assert cached._cached_bytes <= 1 << 20
        fresh: list[int] = []
        features.Featurizer(HASHING).buckets(word, fresh)
        assert found == fresh  # what the cache gives is what the word's features are
    assert len(cached._words) < len(words)


def test_a_text_written_with_combining_accents_gets_the_features_and_words_of_the_same_text_composed():
    """A Spanish team: "¿Cuál es mi saldo?" pasted from a system that writes accents as combining
    marks (NFD) was answered, composed, and handed off, decomposed; the out-of-scope score's
    words cut "préstamo" into "pr" and "stamo"."""
    import unicodedata

    from heirloom_plugins.encoder.novelty import words
    from heirloom_plugins.ngrams.features import Featurizer
    from heirloom_plugins.ngrams.head import HASHING

    composed = "¿Cuál es el préstamo?"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    featurizer, found = Featurizer(HASHING), ([], [])
    featurizer.buckets(composed, found[0])
    featurizer.buckets(decomposed, found[1])
    assert found[0] == found[1]
    assert words(composed) == words(decomposed) == ["cuál", "es", "el", "préstamo"]


def test_fold_reads_full_width_letters_arabic_marks_and_bidi_marks_as_the_plain_text(fitted):
    """A Japanese input method's full-width PASSWORD had no feature the model knew (the answer
    of "???"), and Arabic with harakat changed 24 of 60 labels: ``fold = true`` reads them as
    typed plainly. A hashing setting: stored with the state, and compared with a parent's."""
    from heirloom_plugins.ngrams.features import Featurizer, HashingSettings

    plain = HashingSettings(1 << 20, 2, (2, 5), True)
    folding = HashingSettings(1 << 20, 2, (2, 5), True, fold=True)
    arabic = "\u0623\u0631\u064a\u062f \u0627\u0644\u0645\u0628\u0644\u063a"  # I want the amount
    marked = "\u0623\u064e\u0631\u0650\u064a\u062f\u064f \u0627\u0644\u0645\u0640\u0640\u0628\u0644\u063a"
    pairs = [
        ("\uff30\uff21\uff33\uff33\uff37\uff2f\uff32\uff24 reset", "password reset"),  # full-width
        ("\uff8a\uff9f\uff7d\uff9c\uff70\uff84\uff9e", "\u30d1\u30b9\u30ef\u30fc\u30c9"),  # half-width katakana
        (marked, arabic),  # harakat and tatweel
        ("\u200f\u05e9\u05b0\u05c1\u05d0\u05b5\u05dc\u05b8\u05d4 \u0664\u0665", "\u05e9\u05d0\u05dc\u05d4 45"),
        ("d\u2019actifs l\u2018ordre l\u02bcaction", "d'actifs l'ordre l'action"),  # a wire's apostrophes (h400 F1)
        ("Man\u0153uvre \u00c6gis \u0152uvre", "Manoeuvre AEgis OEuvre"),  # ligatures
    ]
    for varied, typed in pairs:  # the RLM, niqqud and Arabic-Indic digits of the last
        assert Featurizer(folding).tokens(varied) == Featurizer(folding).tokens(typed), varied
        assert Featurizer(plain).tokens(varied) != Featurizer(plain).tokens(typed), varied
    assert "fold" not in plain.to_json() and HashingSettings.from_json(plain.to_json()) == plain  # states before it
    assert HashingSettings.from_json(folding.to_json()).fold is True
    records = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    with pytest.raises(heirloom.HeirloomError, match=r"fold \(parent false, this model true\)"):
        TextClassifier(data="news", fold=True).fit(records, parent=fitted.state())
    with pytest.raises(heirloom.HeirloomError, match=r"char_ngrams \(parent \[2, 5\], this model \[1, 3\]\)"):
        TextClassifier(data="news", char_ngrams=[1, 3]).fit(records, parent=fitted.state())  # TOML's, not (2, 5)


def test_a_monitors_label_in_combining_accents_is_the_label_in_nfc():
    """h400 F2: ``label = "négatif"`` typed in combining accents was refused with "did you mean 'négatif'?", naming
    what looked like the value typed; a label is read in NFC and without surrounding spaces, as sources read them."""
    from heirloom_plugins.text.monitor import LabelMonitorApi

    decomposed = unicodedata.normalize("NFD", " négatif ")
    assert LabelMonitorApi(model="sentiment", label=decomposed).label == "négatif"


def test_a_fit_whose_weights_cannot_fit_is_refused_before_it_starts_naming_its_sizes(tmp_path):
    """h399 F1: 3,000 labels of a 0.6 MB file took the fit past 4 GB within seconds (the weights and L-BFGS's history
    of them grow with features x labels), past a budget of 3,000 MiB before it stopped. It is refused up front."""
    rows = "".join(f"ticket {n} about thing{n} and item{n},label{n}\n" for n in range(600) for _ in range(3))
    write(tmp_path / "train.csv", "text,label\n" + rows)
    profile = write(
        tmp_path / "p.toml",
        '[resources]\nuse = "local"\nmemory_budget_mb = 600\n[sources.s]\nuse = "csv"\ntrain = "train.csv"\n'
        '[models.m]\nuse = "text-classifier"\ndata = "s"\nepochs = 1\n',
    )
    result = run_heirloom("train", str(profile), env={"HEIRLOOM_HOME": str(tmp_path / "home")}, timeout=300)
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert re.search(
        r"text-classifier: [\d,]+ features x 600 labels on [\d,]+ texts need about [\d,]+ MiB to fit", said
    )
    assert "MiB is available (resources.memory_budget_mb = 600, of which this process holds" in said, said
    assert said.endswith("; or raise resources.memory_budget_mb"), said  # v24 F7
    assert "Traceback" not in result.stderr


def test_the_report_lines_up_labels_that_take_two_columns_a_character():
    """Hangul and kanji labels were padded by characters, not columns: their rows sat to the right."""
    from rich.cells import cell_len

    truth, guesses = ["기타", "billing", "기타", "パスワード再設定"], ["기타", "billing", "billing", "パスワード再設定"]
    lines = classification_text(classification_metrics(truth, guesses)).splitlines()
    assert len({cell_len(line) for line in lines[2:5]}) == 1, lines[2:5]  # a row per label
    assert len({cell_len(line) for line in lines[-4:]}) == 1, lines[-4:]  # the confusion matrix, its header too


def test_one_long_label_numbers_the_matrix_columns_rather_than_widening_each():
    """h409 F6: one 135-column label of five padded every matrix column to 135 columns (815 a line)."""
    long = ("refund requested for a parcel that never arrived " * 3).strip()
    truth, guesses = ["neg", "pos", "neu", long, "neg"], ["neg", "neg", "neu", long, "pos"]
    text = classification_text(classification_metrics(truth, guesses))
    matrix = text[text.index("confusion matrix") :].splitlines()
    assert matrix[0] == "confusion matrix (rows: true, columns: predicted; columns numbered as the rows):"
    assert matrix[1].split() == ["#1", "#2", "#3", "#4"] and matrix[2].split() == ["neg", "#1", "1", "0", "1", "0"]
    assert matrix[-1].endswith(f"{long} #4     0     0     0     1")  # the label whole, as PLUGINS.md says
    assert len({len(line) for line in matrix[1:]}) == 1 and len(matrix[1]) < len(long) + 30


def test_a_report_of_many_labels_without_a_mistake_says_so_rather_than_an_empty_heading():
    """60 labels, every record right: "most frequent confusions (...):" with nothing under it."""
    labels = [f"label{n}" for n in range(60)]
    text = classification_text(classification_metrics(labels, labels))
    assert "no confusions (60 labels: every record right)" in text and "most frequent confusions" not in text
    wrong = classification_text(classification_metrics(labels, [labels[1], *labels[1:]]))
    assert "most frequent confusions" in wrong and "      1  label0 -> label1" in wrong
