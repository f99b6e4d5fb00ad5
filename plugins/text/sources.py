"""Text-classification sources: Financial PhraseBank, CSV and JSON-lines files, the
feedback a ``classify`` api recorded, and unions of sources.

Every source yields plain dicts ``{"id": str, "text": str, "label": str}``. A source whose
data has no test file gets a seeded, stratified test split (``test_fraction``, ``seed``);
without a validation file (csv and jsonl's ``validation``), a ``validation`` split
(``validation_fraction``) is carved the same way out of what remains for training, never
out of the test data. Every run, and every model compared on them, sees the same partition.
"""

from __future__ import annotations

import abc
import codecs
import contextlib
import decimal
import difflib
import functools
import hashlib
import json
import logging
import os
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

import heirloom
from heirloom_plugins.decided import CORRECTION
from heirloom_plugins.seen import REPEATS_SAID, normal_text
from heirloom_plugins.textfiles import (
    NUL_PADDING,
    CsvFormat,
    bomless_wide,
    decoding,
    first_row_in_reach,
    normal_label,
    normal_labels,
    read_text,
    regular_file,
    repeats_header,
)

SPLITS = ("train", "validation", "test")
AGREEMENTS = ("50", "66", "75", "all")
#: How many ids of left-out records a warning names (the count says how many there are).
SHOWN_IDS = 10

log = logging.getLogger("heirloom.text")
#: Why a jsonl source reads no other encoding (its errors' remedy).
JSON_IS_UTF8 = "JSON lines are UTF-8"
#: Byte-order marks of the wide encodings (the decoding error names the one a file starts with).
_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # UTF-32 LE's begins with UTF-16 LE's
_SURROGATE = re.compile("[\ud800-\udfff]")


def _open_fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1 (exclusive), got {value!r}")


def _fraction_or_zero(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"'{attribute.name}' must be 0 (none) or between 0 and 1, got {value!r}")


def _non_empty(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must not be empty")


@contextlib.contextmanager
def reading_held_out(named: str, split: str) -> Iterator[None]:
    """A held-out split read while the train split streams (to find the training records that repeat
    it): its errors name that split, which the kernel's words, naming the split streaming, did not
    ("reading the train split of t: test.csv:3: ..." sent a user to the training file: h293 F1)."""
    try:
        yield
    except heirloom.SourceReadError:  # a nested source's, naming its split already
        raise
    except heirloom.HeirloomError as exc:
        raise heirloom.SourceReadError(f"reading the {split} split of {named}: {exc}") from None


def sample_per_label(records: list[dict[str, str]], per_label: int, seed: int) -> list[dict[str, str]]:
    """At most ``per_label`` records of each label, chosen with ``seed``, in file order."""
    by_label: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_label.setdefault(record["label"], []).append(index)
    rng = random.Random(seed)
    chosen = {i for indices in by_label.values() for i in rng.sample(indices, min(per_label, len(indices)))}
    return [record for index, record in enumerate(records) if index in chosen]


def refuse_at_start(source: Any, ctx: heirloom.Context) -> None:
    """ProfileError of what ``source.check_profile`` finds, each at its key and file, as ``profile check`` says it."""
    raw = ctx.system.profile.raw
    keys = [(f"sources.{ctx.name}.{field}", problem) for field, problem in source.check_profile(ctx.system.profile)]
    if keys:
        raise heirloom.ProfileError([heirloom.Problem(raw.provenance.get(k, raw.file), k, said) for k, said in keys])


class WrongFormat(heirloom.HeirloomError):
    """A data file of another format or encoding than its source reads: a CSV file named as a jsonl
    source's test, or a UTF-16 one, passed ``profile check``, and only the train that read it failed."""


@attrs.define(kw_only=True)
class TextSource(heirloom.Source):
    """Split handling and fingerprinting shared by the file-backed text sources."""

    validation_docs = (
        "a text source carves validation out of its training file; give a csv or jsonl source a file of its own, "
        'texts worded as production\'s, with validation = "valid.csv": docs/TEXT.md'
    )

    #: Share of each label held out as ``test`` when the data has no test file.
    test_fraction: float = attrs.field(default=0.2, validator=_open_fraction)
    #: Share of each label of the training data held out as ``validation``: what
    #: ``heirloom train`` scores each version on for ``promote --if-better`` (0: none).
    #: Unused when the source has a validation file (``validation_file()``): that file is the split.
    validation_fraction: float = attrs.field(default=0.1, validator=_fraction_or_zero)
    #: Seed of those splits (and of ``train_per_label`` sampling): same seed, same data.
    seed: int = 0
    #: Keep only these labels (empty: all), e.g. to train on a subset of intents.
    labels: list[str] = attrs.field(factory=list, converter=normal_labels)  # read as the data's labels are
    #: A JSON file listing labels; with ``first_labels`` N, keep its first N in sorted order.
    labels_file: str | None = heirloom.path_field(default=None)
    first_labels: int = attrs.field(default=0, validator=heirloom.at_least(0))
    #: Keep at most this many training records per label (seeded choice; 0: all). The
    #: validation and test splits are never thinned, so models compare on the same data.
    train_per_label: int = attrs.field(default=0, validator=heirloom.at_least(0))

    def __attrs_post_init__(self) -> None:
        self.check_header()
        for role, path in self.role_files().items():
            if Path(path).is_file() and self._holds_no_record(role, path):
                raise ValueError(f"'{role}' file {Path(path).name} holds no record (a header or blank lines alone)")

    def check_header(self) -> None:
        """ValueError when a data file's first line lacks what the source reads (a CSV column): a file's own check."""

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        refuse_at_start(self, ctx)

    def check_profile(self, profile: Any) -> list[tuple[str, str]]:
        """``(setting, problem)`` for each data path that is no file (a folder, a FIFO): profile check said ok
        to one, then train failed naming no key (checker 275 F4). Asked by ``profile check`` and at start, not
        at construction: ``heirloom feedback`` resolves a profile whose data is elsewhere with a folder in its
        place (docs/PLUGINS.md)."""
        named = {**self.role_files(), "labels_file": self.labels_file}
        return [
            (key, f"'{key}' {path} {kind}")
            for key, path in named.items()
            if path and (kind := heirloom.irregular(Path(path)))
        ] + self._first_labels_unused(profile)

    def _first_labels_unused(self, profile: Any) -> list[tuple[str, str]]:
        """``first_labels`` that the profile's own file or ``--set`` sets with no ``labels_file`` to pick
        from: every label trained, unsaid (checker h315 F2). An inherited one does nothing (docs/TEXT.md:
        a profile extending banking-intents-core with data of its own unsets the list alone), so it
        passes; which table is this one's, the profile's sources of this class built alike tell."""
        if not self.first_labels or self.labels_file is not None:
            return []
        raw, keys = profile.raw, (f"{spec.key}.first_labels" for spec in self._built_from(profile))
        if all(raw.provenance.get(key, raw.file) in set(raw.files) - {raw.file} for key in keys):
            return []
        return [
            (
                "first_labels",
                f"needs labels_file: first_labels = {self.first_labels} picks from labels_file's list of labels, "
                "and there is none, so every label is kept; set labels_file (a JSON list of the labels) or name "
                "the labels to keep in 'labels'",
            )
        ]

    def _built_from(self, profile: Any) -> list[Any]:
        """The profile's component specs this source is built from (a twin table, the same config, too)."""
        alike = (spec for spec in profile.components if spec.kind == "source" and spec.cls is type(self))
        return [spec for spec in alike if spec.config.get("first_labels") and profile.instantiate(spec) == self]

    def _holds_no_record(self, role: str, path: str) -> bool:
        """Whether ``path`` has no record: a header-only test file trained and stored a version no test
        could score, and its eval failed. A file whose first record is bad is the reading's to report;
        one of another format (WrongFormat), this check's."""
        try:
            return next(iter(self.read(path)), None) is None
        except WrongFormat as exc:
            raise ValueError(f"'{role}' file {exc}") from None
        except heirloom.HeirloomError:
            return False

    @abc.abstractmethod
    def files(self) -> tuple[str, str | None]:
        """``(train file, test file or None)``."""

    def validation_file(self) -> str | None:
        """The file whose records are the validation split (None: it is carved out of the training file)."""
        return None

    def role_files(self) -> dict[str, str]:
        """The data files by the setting that names them (``train``, ``test``, ``validation``), those given."""
        train, test = self.files()
        named = {"train": train, "test": test, "validation": self.validation_file()}
        return {role: path for role, path in named.items() if path is not None}

    def checked_label(self, where: str, field: str, label: str) -> str:
        """``label`` if it keeps the rules feedback labels keep (no invisible character, NFC, no
        word mixing scripts) and is not another label this source read (any file, any pass) in
        another Unicode form (a no-break space, full-width letters: two classes that print the
        same, "très positif" twice in a report). One that differs from another only by letters
        that look alike (a dotless i, Cyrillic) is said once, not refused: Turkish "kil" written
        with a dotless i and "kil", or IPA's two i vowels, are different labels. Each check is a
        lookup, so thousands of labels read in linear time (a scan of the labels before was
        quadratic: 4,000 labels took 161 s)."""
        known = self.__dict__.setdefault("_labels_known", set())
        if label in known:
            return label
        try:
            heirloom.check_label(label, (), field, allow_new=True)
        except heirloom.RequestError as refused:
            raise heirloom.HeirloomError(f"{where}: {refused.message}") from None
        forms = self.__dict__.setdefault("_label_forms", {})  # NFKC form -> the label read first, and where
        plain = unicodedata.normalize("NFKC", label)
        if (twin := forms.setdefault(plain, (label, where)))[0] != label:
            other, said = twin  # said: "train.csv:2: the 'label' column"
            raise heirloom.HeirloomError(  # the plain form is the one feedback and predict's users type
                f"{where}: label {label!r} is label {other!r} ({said.rsplit(': the ', 1)[0]}) in another Unicode "
                f"form (a no-break space, full-width letters): they would train as two classes that print the same; "
                f"write both as {plain!r}"
            )
        looks = self.__dict__.setdefault("_label_looks", {})  # how each prints -> the label read first
        if (alike := looks.setdefault(heirloom.printed_form(label), label)) != label:
            log.warning(
                "%s: labels %r and %r print alike (look-alike letters or marks); they are two classes: if they are "
                "one, write them the same",
                where,
                alike,
                label,
            )
        spelt = self.__dict__.setdefault("_label_spellings", {})  # case, spaces, '_' and '-' aside -> first
        filtered = self.labels or self.labels_file  # those keep their labels and say the case variants they drop
        if (variant := spelling_twin(spelt, label)) and variant != alike and not filtered:
            log.warning("%s", spelling_twins(where, variant, label))
        known.add(label)
        return label

    def splits(self) -> list[str]:
        return list(SPLITS) if self.validation_fraction or self.validation_file() else ["train", "test"]

    def records(self, split: str | None = None) -> Iterator[dict[str, str]]:
        if split is not None and split not in self.splits():
            raise heirloom.HeirloomError(f"unknown split {split!r}; expected one of {', '.join(self.splits())} or None")
        listed = self._listed_labels(self.labels_file) if self.labels_file is not None else None
        kept = self._kept(listed)
        stream = self._stream(split)
        if listed is not None:
            stream = self._listed_only(stream, set(listed))
        if kept is not None:
            stream = self._kept_only(stream, kept, split)
        if self.train_per_label and split == "train":
            stream = iter(sample_per_label(list(stream), self.train_per_label, self.seed))
        if split == "train" and "_said_repeats" not in self.__dict__:
            stream = self._warn_of_repeats(stream)
        return stream

    def _named(self) -> str:
        """``source 'news'`` once started in a system, else the class's name."""
        ctx = getattr(self, "ctx", None)
        return f"source {ctx.name!r}" if ctx is not None else type(self).__name__

    def _warn_of_repeats(self, stream: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
        """``stream`` (the train split); training records whose text is a validation or test text
        (the same letters and digits) are counted, and said once when more than REPEATS_SAID
        of the held-out texts: test rows pasted into the training file reported a test accuracy
        of 0.979 for a model that scores 0.770."""
        trained = []
        labels: dict[str, set[str]] = {}
        for record in stream:
            trained.append((text := normal_text(record["text"]), record["id"]))
            labels.setdefault(text, set()).add(record["label"])
            yield record
        self._said_repeats = True  # the held-out splits read after the train split: its errors come first
        torn = [record_id for text, record_id in trained if text and len(labels[text]) > 1]
        if len(torn) > REPEATS_SAID * len(trained):  # PhraseBank 50Agree has 2: a few are the annotators' doubt
            self._say_records(
                torn, "share their text with a record of another label", "no model can learn both; keep the right one"
            )  # 30 texts labelled both card_arrival and exchange_rate, unsaid
        held = set()
        for split in (s for s in self.splits() if s != "train"):
            with reading_held_out(self._named(), split):
                held.update(normal_text(r["text"]) for r in self.records(split))
        repeats = [record_id for text, record_id in trained if text and text in held]
        if len(repeats) > REPEATS_SAID * len(held):
            self._say_records(
                repeats,
                "repeat a validation or test text",
                "the held-out scores are optimistic; remove the repeats from the training data",
            )

    def _say_records(self, ids: list[str], what: str, advice: str) -> None:
        shown = ", ".join(ids[:SHOWN_IDS]) + (", ..." if len(ids) > SHOWN_IDS else "")
        log.warning("%s: %d training record(s) %s (%s): %s", self._named(), len(ids), what, shown, advice)

    def kept_labels(self) -> set[str] | None:
        """The labels this source keeps (None: every label in the data)."""
        return self._kept(self._listed_labels(self.labels_file) if self.labels_file is not None else None)

    def _kept(self, listed: list[str] | None) -> set[str] | None:
        """``labels``, plus the first ``first_labels`` (all: 0) of ``listed`` (``labels_file``'s)."""
        kept = set(self.labels)
        if listed is not None:
            chosen = sorted(listed)
            kept.update(chosen[: self.first_labels] if self.first_labels else chosen)
        return kept or None

    @staticmethod
    def _listed_labels(path: str) -> list[str]:
        listed = json.loads(heirloom.read_regular(path).decode("utf-8"))
        if not isinstance(listed, list) or not all(isinstance(label, str) for label in listed):
            raise heirloom.HeirloomError(f"{path}: expected a JSON list of label names")
        return normal_labels(listed)  # as the data's labels are read

    def _kept_only(
        self, stream: Iterator[dict[str, str]], kept: set[str], split: str | None
    ) -> Iterator[dict[str, str]]:
        """``stream``'s records of the ``kept`` labels. Records left out whose label is a kept one spelt
        otherwise (case, spaces, ``_`` or ``-``: ``label_spelling``) are said once per split: a test file spelling
        ``Negative`` lost 142 test records unseen, and the reported accuracy rose from 0.70 to 0.82; ``bug report``
        for ``bug_report`` went unsaid (h380 F2). The other labels left out are what ``labels`` is for: a subset of
        the data's."""
        folded = {label_spelling(label): label for label in kept}
        cased: Counter[str] = Counter()
        found: set[str] = set()
        left_out: set[str] = set()
        for record in stream:
            if record["label"] in kept:
                found.add(record["label"])
                yield record
            elif label_spelling(record["label"]) in folded:
                cased[record["label"]] += 1
            else:
                left_out.add(record["label"])
        if split == "train":
            self._say_unmatched([label for label in self.labels if label not in found], left_out)
        said = self.__dict__.setdefault("_said_left_out", set())
        if cased and split not in said:
            said.add(split)
            log.warning(
                "%s: %d %srecord(s) left out whose label is one of 'labels' spelt otherwise (case, spaces, '_' or "
                "'-', or a number written otherwise: 1.0 for 1): %s",
                self._named(),
                sum(cased.values()),
                "" if split is None else f"{split} ",
                ", ".join(
                    f"{label!r} ({count}; {folded[label_spelling(label)]!r})" for label, count in cased.most_common()
                ),
            )

    def _say_unmatched(self, unmatched: list[str], left_out: set[str]) -> None:
        """Warn of ``labels`` no training record has, once: a typo (``pin_blockd``) left the class
        out of the data and of every score, and check, train and the report said nothing."""
        if unmatched and "_said_unmatched" not in self.__dict__:
            self._said_unmatched = True
            close = {label: difflib.get_close_matches(label, sorted(left_out), 1) for label in unmatched}
            hints = (f"{label!r}{''.join(f' (did you mean {c!r}?)' for c in close[label])}" for label in unmatched)
            log.warning(
                "%s: %d of 'labels' match no training record, so their classes are left out: %s",
                self._named(),
                len(unmatched),
                ", ".join(hints),
            )

    def _listed_only(self, stream: Iterator[dict[str, str]], listed: set[str]) -> Iterator[dict[str, str]]:
        """``stream``, stopped at a record whose label ``labels_file`` does not list: the file
        is the data set's label list, so such a label means the file is not this data's (an
        extended profile's list kept, say), not a label to drop silently."""
        for record in stream:
            if record["label"] not in listed:
                close = difflib.get_close_matches(record["label"], listed, 1)
                raise heirloom.HeirloomError(
                    f"{record['id']}: label {record['label']!r} is not in labels_file {self.labels_file} "
                    f"({len(listed)} labels{''.join(f'; did you mean {c!r}?' for c in close)}): it lists every "
                    'label of the data; set labels_file = "" to keep every label the data has'
                )
            yield record

    def _stream(self, split: str | None) -> Iterator[dict[str, str]]:
        files = self.role_files()
        if split is None:  # every record: the training file's, then the validation and test files'
            for role in ("train", "validation", "test"):
                if role in files:
                    yield from self.read(files[role])
            return
        if split in files and split != "train":
            yield from self.read(files[split])
            return
        derive_test, derive_validation = "test" not in files, "validation" not in files and self.validation_fraction > 0
        if not derive_test and not derive_validation:  # nothing is held out of the training file
            yield from self.read(files["train"]) if split == "train" else ()
            return
        roles = self._roles(files["train"], derive_test, derive_validation)
        for index, record in enumerate(self.read(files["train"])):
            if roles.get(index, "train") == split:
                yield record

    def _roles(self, path: str, derive_test: bool, derive_validation: bool) -> dict[int, str]:
        """``index -> "test" | "validation"`` for the train file's held-out records (the
        rest train), recomputed only when the file or the split settings change."""
        stat = os.stat(path)
        key = (
            path,
            stat.st_size,
            stat.st_mtime_ns,
            derive_test,
            derive_validation,
            self.test_fraction,
            self.validation_fraction,
            self.seed,
        )
        cached = getattr(self, "_split_cache", None)
        if cached is None or cached[0] != key:
            labels = [record["label"] for record in self.read(path)]
            roles = (
                {i: "test" for i in heirloom.stratified_holdout(labels, self.test_fraction, self.seed)}
                if derive_test
                else {}
            )
            if derive_validation:
                remaining = [i for i in range(len(labels)) if i not in roles]
                held = heirloom.stratified_holdout([labels[i] for i in remaining], self.validation_fraction, self.seed)
                roles.update({remaining[i]: "validation" for i in held})
            self._split_cache = (key, roles)
        return self._split_cache[1]

    def fingerprint(self) -> str:
        """sha256 of the data files and the settings that shape the records and the splits (a fraction
        a file of its split makes unused, aside; a source without a validation file hashes as before one
        could be given)."""
        files = self.role_files()
        paths = heirloom.path_fields(type(self))
        unused = {f"{role}_fraction" for role in ("test", "validation") if role in files}
        settings = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name not in {*paths, *unused}}
        settings["kept_labels"] = sorted(self.kept_labels() or [])
        if "validation" in files:
            settings["validation_file"] = True  # its bytes follow the test file's
        digest = hashlib.sha256(json.dumps({"type": type(self).__name__, **settings}, sort_keys=True).encode())
        for role in ("train", "test", "validation"):
            if role in files:
                heirloom.hash_regular(files[role], digest)
        return digest.hexdigest()

    def stats(self) -> dict[str, Any]:
        return labelled_stats(self)


def labelled_stats(source: heirloom.Source) -> dict[str, Any]:
    """Records per split and, when every record is a dict with a text label, records per label
    (a union's after its check: what will train; a union of unlabelled events only counts), and
    ``labels_only_held_out``: each held-out label no training record has, with its first record,
    said as a warning too (train's report alone named it, without a file or line); never the source's
    ``out_of_scope_label`` (an out-of-scope source's, a union's part's), whose test records score recall."""
    records, labels, labelled = {}, {}, True
    first: dict[str, str] = {}  # a held-out label's first record: "test new_test.csv:4"
    for split in source.splits():
        counts: Counter[str] = Counter()
        records[split] = 0
        for record in source.records(split):
            records[split] += 1
            label = record.get("label") if isinstance(record, dict) else None
            labelled = labelled and isinstance(label, str)
            counts[label] += 1
            if split != "train" and label not in first:
                first[label] = f"{split} {record.get('id', f'record {records[split]}')}"
        labels[split] = dict(sorted(counts.items())) if labelled else {}
    if not labelled:
        return {"records": records}
    known = {*labels.get("train", {}), getattr(source, "out_of_scope_label", None)}
    unseen = {label: where for label, where in first.items() if label not in known}
    if unseen and "train" in labels:
        log.warning(
            "source %r: labels that no training record has (the model cannot predict them, so each of their "
            "held-out records is an error): %s",
            getattr(getattr(source, "ctx", None), "name", type(source).__name__),
            ", ".join(f"{label!r} (first at {where})" for label, where in unseen.items()),
        )
    return {"records": records, "labels": labels, **({"labels_only_held_out": unseen} if unseen else {})}


@attrs.define(kw_only=True)
class PhraseBankSource(TextSource):
    """Financial PhraseBank v1.0 (Malo et al. 2014): ``sentence@label`` lines, no test split."""

    #: The folder holding ``Sentences_<agreement>Agree.txt``.
    path: str = heirloom.path_field()
    #: Annotator agreement level: ``50``, ``66``, ``75`` or ``all``.
    agreement: str = attrs.field(default="50", validator=attrs.validators.in_(AGREEMENTS))

    def check_profile(self, profile: Any) -> list[tuple[str, str]]:
        """A ``path`` that is no folder holding the agreement's file was a traceback at data stats and train
        (checker 275 F1); a missing one is said at its key by the profile's validation."""
        folder, (train, _) = Path(self.path), self.files()
        if folder.exists() and not folder.is_dir():
            return [("path", f"'path' {self.path} is not a folder: name the folder holding {Path(train).name}")]
        if folder.is_dir() and not os.path.lexists(train):
            held = sorted(p.name for p in folder.glob("Sentences_*Agree.txt"))
            said = f"; it holds {', '.join(held)}" if held else ""
            return [("path", f"'path' {self.path} has no {Path(train).name} (agreement = {self.agreement!r}){said}")]
        return super().check_profile(profile)

    def files(self) -> tuple[str, str | None]:
        name = "All" if self.agreement == "all" else self.agreement
        return str(Path(self.path) / f"Sentences_{name}Agree.txt"), None

    def read(self, path: str) -> Iterator[dict[str, str]]:
        name = Path(path).name
        for number, line in enumerate(read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            if "\0" in line:  # trained on in UTF-8, refused in latin-1: one rule (checker v22 F2)
                raise heirloom.HeirloomError(f"{path}:{number}: a NUL byte, which no sentence holds: remove it")
            text, at, label = line.rpartition("@")
            if not at or not label.strip() or not text.strip():
                raise heirloom.HeirloomError(f"{path}:{number}: expected 'sentence@label', got {line[:80]!r}")
            label = normal_label(label)  # NFC, stripped
            self.checked_label(f"{path}:{number}: the label", "label", label)
            yield {"id": f"{name}:{number}", "text": text.strip(), "label": label}


@attrs.define(kw_only=True)
class CsvSource(TextSource, CsvFormat):
    """A CSV file with a header (RFC-4180 quoting); ``test`` and ``validation`` are optional."""

    train: str = heirloom.path_field()
    test: str | None = heirloom.path_field(default=None)
    #: A file of the validation split (``validation_fraction`` then unused), in the training file's format.
    validation: str | None = heirloom.path_field(default=None)
    text_column: str = attrs.field(default="text", validator=_non_empty)
    label_column: str = attrs.field(default="label", validator=_non_empty)

    def __attrs_post_init__(self) -> None:
        if self.text_column == self.label_column:  # it trained on its labels: accuracy 1.0
            raise ValueError(f"'text_column' and 'label_column' are both {self.text_column!r}")
        super().__attrs_post_init__()

    def check_header(self) -> None:
        self.check_one_encoding(list(self.role_files().values()))
        self.check_delimiters(list(self.role_files().values()), [self.text_column, self.label_column])
        for path in self.role_files().values():
            self.check_columns(path, {"text_column": self.text_column, "label_column": self.label_column})

    def files(self) -> tuple[str, str | None]:
        return self.train, self.test

    def validation_file(self) -> str | None:
        return self.validation

    def _holds_no_record(self, role: str, path: str) -> bool:
        """The base's probe, once the file's first row is in reach (``first_row_in_reach``): the csv module
        reads a line whole, and a file without a line break was read whole where the profile is checked."""
        try:
            first_row_in_reach(path)
        except heirloom.HeirloomError as exc:
            raise ValueError(f"'{role}' file {exc}") from None
        return super()._holds_no_record(role, path)

    def read(self, path: str) -> Iterator[dict[str, str]]:
        name = Path(path).name
        columns = (self.text_column, self.label_column)
        last: tuple[int, str] | None = None  # a row's label is checked once the next is read: the file's
        headers: list[int] = []  # rows that repeat the header
        rows = self.csv_rows(path, columns)  # the last row may be a quote never closed, said so
        for line, row in rows:
            text, label = row[self.text_column], row[self.label_column]
            if repeats_header(row):
                headers.append(line)  # files joined with cat, each with its header (and a BOM): a class 'label'
                continue
            for column, value in ((self.text_column, text), (self.label_column, label)):
                if heirloom.blank(value):  # a blank text teaches nothing, and the daemon refuses one
                    said = f"{path}:{line}: the {column!r} column is empty or blank"
                    raise heirloom.HeirloomError(said + _more_blank_rows(rows, columns))
            if last is not None:
                self._check_label(path, *last)
            label = normal_label(label)  # a decomposed "café" is the composed one
            last = (line, label)
            yield {"id": f"{name}:{line}", "text": text, "label": label}
        if last is not None:
            self._check_label(path, *last)
        said = self.__dict__.setdefault("_said_headers", set())
        if headers and path not in said:  # once: each split reads the file again
            said.add(path)
            log.warning(
                "%s: %d row(s) repeat the header, line(s) %s: files joined, each with its header? Left out (each "
                "would train as a record of the label %r)",
                path,
                len(headers),
                ", ".join(map(str, headers[:SHOWN_IDS])) + (", ..." if len(headers) > SHOWN_IDS else ""),
                self.label_column,
            )

    def _check_label(self, path: str, line: int, label: str) -> None:
        self.checked_label(f"{path}:{line}: the {self.label_column!r} column", self.label_column, label)


def _nul_cause(line: str, wide: str | None) -> str:
    """What a line holding a NUL byte (``line``, its bytes one character each) most likely is, for a message:
    UTF-16 text (``wide``: found so by its first bytes), a file padded with NULs (a preallocated file a crash
    left), or a stray NUL; each said with its remedy. "It looks like UTF-16" was said of every NUL, and its
    iconv turned a UTF-8 file into CJK (h388 F3)."""
    if wide:
        return f"; it looks like {wide.upper()} text without a byte-order mark: convert it (iconv -f {wide} -t utf-8)"
    body = line.rstrip("\r\n")
    if not body.strip("\0"):
        return f"; {NUL_PADDING}"
    if body.count("\0") * 4 >= len(body):  # UTF-32 without a byte-order mark: 3 NULs a letter (v20 F3)
        return "; NUL bytes throughout: UTF-16 or UTF-32 text without a byte-order mark? Convert it to UTF-8 (iconv)"
    return f"; remove it (it is character {body.index(chr(0)) + 1} of the line)"


def _json_shape(value: Any) -> str:
    """What a JSON line holds, for a message: its keys, or its type in JSON's words."""
    if isinstance(value, dict):
        return f"the keys {', '.join(map(repr, value))[:200]}" if value else "an empty object"
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return kinds.get(type(value), "null")


def _json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's words, whole (its "Unterminated string starting at" read as cut mid-sentence: h347 F4), and for
    a line that ends before its JSON does, the usual cause: an export cut at a size limit."""
    cut = exc.msg.startswith("Unterminated string")
    said = "a string opened there never ends" if cut else exc.msg
    if said == "Invalid control character at":  # "at" the column, which the message gives before it
        said = "a control character (a tab, a line break, a NUL) inside a string: JSON writes it escaped (\\t, \\u0000)"
    ended = cut or exc.pos >= len(exc.doc.rstrip())
    return f"{said}{' (the line ends before its JSON does: was it cut short, at an export size limit?)' * ended}"


#: A number written with an exponent: one past Decimal's range (``1e-99999999999999999999``) is no text to fold.
_PAST_DECIMAL = re.compile(r"\s*[+-]?(\d[\d_]*\.?\d*|\.\d+)e[+-]?\d+\s*", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)  # a labels filter asks it of every record left out, of a few labels
def label_spelling(label: str) -> str:
    """``label`` with case, spaces, underscores and hyphens aside: CARD_ARRIVAL, card arrival and
    card_arrival were three classes of one intent, unsaid. A number is its value: ``1`` and ``1.0``
    (a spreadsheet's export) are one, ``-1`` and ``1`` two (checker h388 F5, F6), and exactly: as floats,
    two 17-digit ids were one (v20 F2)."""
    try:
        value = decimal.Decimal(label)
    except decimal.InvalidOperation:
        if _PAST_DECIMAL.fullmatch(label):  # a number whose exponent Decimal cannot hold: its text (v21 F5)
            return f" {label.strip().casefold()}"
        value = decimal.Decimal("NaN")
    if value.is_finite():  # exact at any length; plus(): -0 is 0; a space: no folded text holds one
        exact = decimal.Context(prec=max(28, len(label)), Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
        return f" {exact.normalize(exact.plus(value))}"
    return re.sub(r"[\s_-]+", "", label.casefold())


def spelling_twins(where: str, first: str, label: str) -> str:
    """The warning of two labels that ``label_spelling`` makes one: ``first``, read before ``label``."""
    how = "are one number" if label_spelling(label).startswith(" ") else "differ only by case, spaces, '_' or '-'"
    return f"{where}: labels {first!r} and {label!r} {how}; they are two classes: if they are one, write them the same"


def spelling_twin(spellings: dict[str, str], label: str) -> str | None:
    """The label recorded in ``spellings`` (spelling -> the label read first) that ``label``
    differs from only in spelling, else None; ``label`` is recorded when it is the first."""
    first = spellings.setdefault(label_spelling(label), label)
    return None if first == label else first


@attrs.define(kw_only=True)
class JsonlSource(TextSource):
    """A JSON-lines file, one object per line; ``test`` and ``validation`` are optional."""

    train: str = heirloom.path_field()
    test: str | None = heirloom.path_field(default=None)
    #: A file of the validation split (``validation_fraction`` then unused), in the training file's format.
    validation: str | None = heirloom.path_field(default=None)
    text_field: str = attrs.field(default="text", validator=_non_empty)
    label_field: str = attrs.field(default="label", validator=_non_empty)

    def __attrs_post_init__(self) -> None:
        if self.text_field == self.label_field:  # it trained on its labels: accuracy 1.0
            raise ValueError(f"'text_field' and 'label_field' are both {self.text_field!r}")
        super().__attrs_post_init__()

    def files(self) -> tuple[str, str | None]:
        return self.train, self.test

    def validation_file(self) -> str | None:
        return self.validation

    @staticmethod
    def _first_line_decodes(path: str) -> None:
        """WrongFormat (said where the profile is checked) when the file's first line is no UTF-8 text: a
        UTF-16 file passed ``profile check`` and failed ``data stats`` (as a CSV source's header does)."""
        with open(regular_file(path), "rb") as raw:
            head = raw.readline(1 << 20)
        if b"\0" in head and not head.startswith(_WIDE_BOMS):  # no JSON text holds a NUL: UTF-16 without a BOM?
            said = _nul_cause(head.decode("latin-1"), bomless_wide(head))  # as a CSV source's check finds it
            raise WrongFormat(f"{path}:1: a NUL byte, which no JSON text holds{said}")
        try:
            with decoding(path, "utf-8-sig", setting=None, fixed=JSON_IS_UTF8):
                codecs.getincrementaldecoder("utf-8-sig")().decode(head)  # not final: a line cut at the limit
        except heirloom.HeirloomError as exc:
            raise WrongFormat(str(exc)) from None

    def read(self, path: str) -> Iterator[dict[str, str]]:
        name = Path(path).name
        self._first_line_decodes(path)
        utf8_only = decoding(path, "utf-8-sig", setting=None, fixed=JSON_IS_UTF8)
        with open(regular_file(path), encoding="utf-8-sig") as handle, utf8_only:
            first = True
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.rstrip("\r\n").removeprefix("\ufeff"))  # files joined, each with a BOM
                except RecursionError:  # [[[[... 100,000 deep
                    raise heirloom.HeirloomError(f"{path}:{number}: the JSON nests too deeply to read") from None
                except json.JSONDecodeError as exc:  # the file's line is ours; the decoder's, the record's
                    where = f"{path}:{number}: invalid JSON at column {exc.colno}"
                    hint = _nul_cause(line, None) if "\0" in line else ""
                    if first and not hint and not line.lstrip(" \t\ufeff").startswith("{"):  # no object begins
                        said = f"{where}: {line.strip()[:40]!r} is no JSON object: a jsonl source reads JSON lines"
                        raise WrongFormat(f'{said}, one object a line (a CSV file needs use = "csv")') from None
                    raise heirloom.HeirloomError(f"{where}: {_json_error(exc)}{hint}") from None
                except ValueError:  # the only other: an integer past Python's digit limit, whose advice is code
                    limit = f"{sys.get_int_max_str_digits():,}"
                    said = f"{path}:{number}: an integer of over {limit} digits (write a long number as a JSON string)"
                    raise (WrongFormat if first else heirloom.HeirloomError)(said) from None
                if not isinstance(row, dict) or self.text_field not in row or self.label_field not in row:
                    raise (WrongFormat if first and not isinstance(row, dict) else heirloom.HeirloomError)(
                        f"{path}:{number}: expected an object with {self.text_field!r} and {self.label_field!r} "
                        f"(text_field, label_field), got {_json_shape(row)}"
                    )
                for field in (self.text_field, self.label_field):
                    if row[field] is None or heirloom.blank(str(row[field])):  # str(None) would be a label "None"
                        raise heirloom.HeirloomError(f"{path}:{number}: the {field!r} field is blank or null")
                    if type(row[field]) not in (str, int):  # 1.0 and 1 would be two labels, true a label "True"
                        raise heirloom.HeirloomError(
                            f"{path}:{number}: the {field!r} field holds {json.dumps(row[field])[:80]}; "
                            "expected a string or an integer"
                        )
                    if isinstance(row[field], str) and _SURROGATE.search(row[field]):  # JSON's "\ud800": no text
                        raise heirloom.HeirloomError(
                            f"{path}:{number}: the {field!r} field holds a lone surrogate (a \\ud800-\\udfff escape "
                            "without its pair), which is no text: UTF-8 cannot write it"
                        )
                text, label = str(row[self.text_field]), normal_label(str(row[self.label_field]))  # NFC, stripped
                self.checked_label(f"{path}:{number}: the {self.label_field!r} field", self.label_field, label)
                first = False
                yield {"id": f"{name}:{number}", "text": text, "label": label}


@attrs.define(kw_only=True)
class FeedbackSource(heirloom.Source):
    """The corrections a ``classify`` api recorded (``<api>.feedback``), all in ``train``.

    Combine it with the original data through a ``union`` source so the next
    ``heirloom train`` learns from production corrections. Feedback never enters the
    validation or test splits: those stay the original data's, so every version is scored
    on the same records and ``promote --if-better`` can compare them. Removed records
    (``heirloom feedback remove``) and records whose new label was not accepted yet
    (``heirloom feedback accept-label``) are left out. Each record is marked ``"correction": true``:
    the text-classifier and the encoder-classifier weigh it ``correction_weight`` times and warn
    after training when the new version answers it otherwise (``heirloom_plugins.decided``).
    """

    #: The classify api whose feedback to read (its component name).
    api: str = attrs.field(validator=_non_empty)
    #: The project that api runs in (default: this profile's project).
    project: str | None = None
    #: An explicit log path (when the api sets ``feedback_path``).
    path: str | None = heirloom.path_field(default=None, must_exist=False)

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        refuse_at_start(self, ctx)  # train and data stats read 0 corrections, unsaid
        project = self.project or ctx.project
        self.log_path = Path(self.path) if self.path else heirloom.log_path("feedback", project, self.api)

    def check_profile(self, profile: Any) -> list[tuple[str, str]]:
        """An ``api`` of this project that the profile lacks, that recorded no feedback and that is close to
        an api of the profile: a typo (``intnet``) passed ``profile check`` and trained on no correction without
        a word (checker 275 F13). One close to none may be a serving profile's that recorded nothing yet.
        Asked by ``profile check`` (docs/PLUGINS.md) and at start."""
        if self.path or (self.project or profile.project) != profile.project:
            return []
        apis = sorted(spec.name for spec in profile.components if spec.kind == "api")
        hint = heirloom.did_you_mean(self.api, apis)
        if self.api in apis or not hint or heirloom.log_path("feedback", profile.project, self.api).exists():
            return []
        said = f"no api {self.api!r} in this profile (apis: {', '.join(apis)}) and no feedback log of project "
        return [("api", f"{said}{profile.project!r} by that name: nothing to read{hint}")]

    def splits(self) -> list[str]:
        return ["train"]

    def stats(self) -> dict[str, Any]:
        return labelled_stats(self)

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        if split not in (None, "train"):
            return
        replay = heirloom.FeedbackLog.replay(self.log_path)
        if (waiting := replay.pending_labels()) and not getattr(self, "_said_waiting", False):
            self._said_waiting = True  # once per run: a train reads the split more than once
            log.warning(
                "%s: %d correction(s) with new labels wait for heirloom feedback accept-label and are left out: %s",
                self.log_path.name,
                sum(waiting.values()),
                ", ".join(f"{label!r} ({count})" for label, count in sorted(waiting.items())),
            )
        textless = [entry["id"] for entry in replay.trainable() if "text" not in entry]
        if textless and not getattr(self, "_said_textless", False):  # another api's corrections, of inputs no text
            self._said_textless = True
            log.warning(
                "%s: %d record(s) without a 'text' are left out: a text model learns from texts (the first: %s)",
                self.log_path.name,
                len(textless),
                textless[0],
            )
        for entry in replay.trainable():
            if "text" in entry:  # a person's decision: weighed (correction_weight) and checked as learnt (decided.py)
                yield {
                    "id": f"feedback:{entry['id']}",
                    "text": entry["text"],
                    "label": entry["label"],
                    CORRECTION: True,
                }

    def fingerprint(self) -> str:
        """sha256 of the records that train: a tombstone or an acceptance changes it."""
        digest = hashlib.sha256(b"feedback")
        for record in self.records("train"):
            digest.update(json.dumps(record, sort_keys=True).encode())
        return digest.hexdigest()


def _more_blank_rows(rows: Iterator[tuple[int, dict[str, str]]], columns: tuple[str, ...]) -> str:
    """The file's other rows with a blank text or label, read on past the first: a file of several was mended one run
    a row, each naming only the next (checker h452 F2). Read until the end or the file's next fault."""
    lines: list[int] = []
    with contextlib.suppress(heirloom.HeirloomError):
        lines.extend(line for line, row in rows if any(heirloom.blank(row[column]) for column in columns))
    shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
    return f" (and {len(lines)} more rows of a blank text or label: line(s) {shown})" if lines else ""
