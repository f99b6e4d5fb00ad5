"""Training files in shapes a team brings (checker h388): each is read as written or refused naming the file,
the line and what to do; none trains a model on garbled text or splits one class in two unsaid."""

from __future__ import annotations

import unicodedata

import pytest

import heirloom
from heirloom_plugins.text.sources import CsvSource, JsonlSource, PhraseBankSource
from tests.helpers import run_heirloom, write

SENTENCES = "profit rose sharply@positive\nshares plunged after warning@negative\noffice moved to floor 3@neutral\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("first", ["", "\U0001f600 "])
def test_a_phrasebank_file_in_utf_16_or_32_reads_as_its_utf_8_twin(tmp_path, encoding, first):
    """Read as latin-1, a spreadsheet's "Unicode text" export trained a model on labels with a NUL between letters;
    without a byte-order mark, UTF-32 and UTF-16 beginning with an emoji were still misread (v20 F1)."""
    (tmp_path / "utf8").mkdir()
    (tmp_path / "utf8" / "Sentences_50Agree.txt").write_text(first + SENTENCES * 4)
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "Sentences_50Agree.txt").write_bytes((first + SENTENCES * 4).rstrip("\n").encode(encoding))
    wide = [(r["text"], r["label"]) for r in PhraseBankSource(path=str(tmp_path / "wide")).records()]
    assert wide == [(r["text"], r["label"]) for r in PhraseBankSource(path=str(tmp_path / "utf8")).records()]
    assert {label for _, label in wide} == {"positive", "negative", "neutral"}


def test_a_phrasebank_file_cut_mid_character_of_utf_16_is_an_error_naming_it(tmp_path):
    (tmp_path / "Sentences_50Agree.txt").write_bytes(SENTENCES.encode("utf-16") + b"\x00")
    with pytest.raises(heirloom.HeirloomError, match=r"Sentences_50Agree.txt: starts as UTF-16 text, but is no such"):
        list(PhraseBankSource(path=str(tmp_path)).records())
    wide = (SENTENCES * 6).encode("utf-16-le")  # without its mark, a stray byte: before the middle, the
    for stray in (1, 40, len(wide) // 4):  # reading the other way round has the most ASCII (v21 F1)
        (tmp_path / "Sentences_50Agree.txt").write_bytes(wide[: stray * 2] + b"\xe9" + wide[stray * 2 :] + b"\x00")
        with pytest.raises(heirloom.HeirloomError, match=r"NUL bytes throughout, as in UTF-16 or UTF-32 text, but"):
            list(PhraseBankSource(path=str(tmp_path)).records())
    greek = "κέρδη αυξήθηκαν πολύ@positive\nμετοχές έπεσαν@negative\n" * 3  # noqa: RUF001 - few NULs (v21 F2)
    (tmp_path / "Sentences_50Agree.txt").write_bytes(greek.encode("utf-16-le"))
    with pytest.raises(
        heirloom.HeirloomError, match=r":1: a NUL byte in a file that is no UTF-8: UTF-16 or UTF-32 without"
    ):
        list(PhraseBankSource(path=str(tmp_path)).records())
    for padded in (SENTENCES.encode(), SENTENCES.encode("utf-16-le")):  # a crash's padding (v21 F3, v22 F3)
        (tmp_path / "Sentences_50Agree.txt").write_bytes(padded + b"\x00" * 4096)
        with pytest.raises(heirloom.HeirloomError, match=r"ends in 4,09[67] NUL bytes, as a file padded or cut short"):
            list(PhraseBankSource(path=str(tmp_path)).records())
    for encoding, end in (("utf-16-le", b"\xe9"), ("utf-16-be", b"\xe9"), ("utf-16-be", b"\n")):  # a stray byte at
        (tmp_path / "Sentences_50Agree.txt").write_bytes(b"\xe9" + (SENTENCES * 6).encode(encoding) + end)  # each end
        with pytest.raises(heirloom.HeirloomError, match=r"NUL bytes throughout, as in UTF-16 or UTF-32 text, but"):
            list(PhraseBankSource(path=str(tmp_path)).records())  # a private-use 'p', a label 'neutral' + U+0A0A (v22)
    (tmp_path / "Sentences_50Agree.txt").write_bytes("caf\xe9 sales rose@positive\n\x00\n".encode("latin-1"))
    with pytest.raises(heirloom.HeirloomError, match=r"Sentences_50Agree.txt:2: a NUL byte in a file that is no UTF-8"):
        list(PhraseBankSource(path=str(tmp_path)).records())
    (tmp_path / "Sentences_50Agree.txt").write_bytes(b"profit\x00 rose@positive\n")  # UTF-8: trained on (v22 F2)
    with pytest.raises(heirloom.HeirloomError, match=r"Sentences_50Agree.txt:1: a NUL byte, which no sentence holds"):
        list(PhraseBankSource(path=str(tmp_path)).records())


def test_a_phrasebank_file_in_combining_accents_without_a_byte_order_mark_reads(tmp_path):
    """Its U+0300 accents were counted as a misaligned byte's trace, and the file refused (checker v22 F3)."""
    text = unicodedata.normalize("NFD", "résultat à la hausse, très élevé@positive\nvente à perte@negative\n" * 8)
    (tmp_path / "Sentences_50Agree.txt").write_bytes(text.encode("utf-16-le"))
    read = [record["text"] for record in PhraseBankSource(path=str(tmp_path)).records()]
    assert read[:2] == [
        unicodedata.normalize("NFD", "résultat à la hausse, très élevé"),
        unicodedata.normalize("NFD", "vente à perte"),
    ]


def test_phrasebank_labels_that_differ_only_by_case_are_said_as_a_csv_files_are(tmp_path, caplog):
    write(tmp_path / "Sentences_50Agree.txt", SENTENCES * 3 + "costs fell @ POSITIVE \n")
    with caplog.at_level("WARNING", logger="heirloom.text"):
        labels = {r["label"] for r in PhraseBankSource(path=str(tmp_path)).records()}
    assert labels == {"positive", "negative", "neutral", "POSITIVE"}  # as written: two classes, and said
    said = [r.getMessage() for r in caplog.records if "differ only by case" in r.getMessage()]
    assert said == [
        f"{tmp_path / 'Sentences_50Agree.txt'}:10: the label: labels 'positive' and 'POSITIVE' differ only by case, "
        "spaces, '_' or '-'; they are two classes: if they are one, write them the same"
    ]


def test_one_number_written_two_ways_is_said_and_opposite_numbers_are_not(tmp_path, caplog):
    """A pandas export's 1.0 beside 1 became a fourth class unsaid; -1 and 1 were said to be one spelling."""
    huge = ["1e-99999999999999999999", "1e99999999999999999999", "1E99999999999999999999"]  # past Decimal's range
    labels = ["-1", "0", "1", "1.0", "-1", "0", "1", "10000000000000000", "10000000000000001", "-0", *huge]
    rows = "".join(f"text {n},{label}\n" for n, label in enumerate(labels))
    path = write(tmp_path / "numbers.csv", "text,label\n" + rows)
    with caplog.at_level("WARNING", logger="heirloom.text"):
        assert {r["label"] for r in CsvSource(train=str(path)).records()} == {*labels}
    said = [r.getMessage() for r in caplog.records if "two classes" in r.getMessage()]
    assert said == [  # two 17-digit ids are two numbers (as floats they were one, v20 F2)
        f"{path}:{line}: the 'label' column: labels {first!r} and {label!r} are one number; they are two classes: if "
        "they are one, write them the same"
        for line, first, label in ((5, "1", "1.0"), (11, "0", "-0"), (14, huge[1], huge[2]))  # 1/x: not one (v21 F5)
    ]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('{"text": "a\x00b", "label": "x"}', "a NUL byte, which no JSON text holds; remove it (it is character 12"),
        ('\x00{"text": "ab", "label": "x"}', "a NUL byte, which no JSON text holds; remove it (it is character 1 "),
        (
            "\0\0\0".join('{"text": "ab", "label": "x"}'),  # UTF-32LE without its mark: said so (v23 F6)
            "a NUL byte, which no JSON text holds; it looks like UTF-32LE text without a byte-order mark: convert it",
        ),
    ],
)
def test_a_nul_on_a_jsonl_files_first_line_is_said_where_the_profile_is_checked(tmp_path, line, said):
    """It was `AttributeError: 'NoneType' object has no attribute 'upper'`, naming no file or line."""
    path = write(tmp_path / "train.jsonl", line + '\n{"text": "c", "label": "y"}\n')
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "jsonl"\ntrain = "train.jsonl"\n')
    checked = run_heirloom("profile", "check", str(profile))
    assert checked.returncode == 2, checked.stdout
    assert f"sources.s.train: 'train' file {path}:1: {said}" in " ".join(checked.stderr.split())
    assert "Error" not in checked.stderr and ("UTF-" in checked.stderr) == ("UTF-32LE" in said)


def test_a_later_nul_in_a_utf_8_jsonl_file_is_not_called_utf_16(tmp_path):
    """Its iconv from UTF-16 turned the UTF-8 file into CJK; a stray NUL, or a crash's NUL padding, is said as such."""
    good = '{"text": "a", "label": "x"}\n'
    for tail, said in [
        ('{"text": "b\x00c", "label": "y"}\n', "t.jsonl:2: invalid JSON at column 12: a control character (a tab, a "),
        ("\x00" * 64, "t.jsonl:2: invalid JSON at column 1: Expecting value; the line is NUL bytes only: a file "),
    ]:
        path = write(tmp_path / "t.jsonl", good + tail)
        with pytest.raises(heirloom.HeirloomError) as raised:
            list(JsonlSource(train=str(path)).read(str(path)))
        assert said in str(raised.value) and "UTF-16" not in str(raised.value), str(raised.value)


def test_a_csv_row_of_nul_bytes_is_said_as_padding_not_as_a_quoting_problem(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\na,x\nb,y\n" + "\x00" * 100)
    with pytest.raises(heirloom.HeirloomError) as raised:
        list(CsvSource(train=str(path)).records())
    assert "t.csv:4: the row has 1 fields, the header 2 (the line is NUL bytes only: a file padded or cut short" in str(
        raised.value
    )


def test_a_header_naming_a_used_column_twice_is_said_by_profile_check(tmp_path):
    """`profile check` read the header and said ok; `data stats` and `train` refused it."""
    write(tmp_path / "train.csv", "text,label,label\na,x,y\nb,y,x\n")
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "csv"\ntrain = "train.csv"\n')
    checked = run_heirloom("profile", "check", str(profile))
    assert checked.returncode == 2, checked.stdout
    assert "sources.s: the header of train.csv names column 'label' more than once" in checked.stderr
