"""Another model type behind a shipped api: served when it gives what the api reads, refused
naming what it lacks where ``profile check``, ``serve``'s start and a hot swap run the api's
check. A third party's item-kNN behind ``recommend`` passed every check, then answered
INTERNAL on every route; a classifier without ``labels`` silenced the label monitor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import heirloom
from heirloom_plugins.medical.caution import FIELD, WHY
from tests.daemons import Daemon
from tests.helpers import run_heirloom, write
from tests.test_medical import FORMULARY

SOURCE = '[sources.rows]\nuse = "toy-source"\n'


def _profile(tmp_path: Path, model: str, apis: str) -> tuple[Path, dict[str, str]]:
    """A toy project whose model ``m`` is of type ``model``, behind ``apis``; trained."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_PLUGINS": "tests.toys"}
    text = f'project = "team"\n{SOURCE}[models.m]\nuse = "{model}"\ndata = "rows"\n{apis}'
    profile = write(tmp_path / "team.toml", text)
    trained = run_heirloom("train", str(profile), env=env)
    assert trained.returncode == 0, trained.stderr
    return profile, env


def _refused(daemon: Daemon) -> str:
    """The log of a daemon that must refuse to start; one that starts anyway is killed, not left
    running after the test fails."""
    try:
        code = daemon.process.wait(120)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    assert code != 0, daemon.log()
    return daemon.log()


def test_a_classifier_of_another_type_serves_behind_classify(tmp_path):
    profile, env = _profile(tmp_path, "toy-classifier", '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n')
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0
    daemon = Daemon(tmp_path, profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            predicted = client.call("sentiment.predict", {"text": "anything"})
            assert predicted == {"label": "a", "probabilities": {"a": 0.75, "b": 0.25}, "version": "team/m@1"}
            assert client.call("sentiment.labels")["labels"] == ["a", "b"]
            assert client.call("sentiment.feedback", {"text": "anything", "label": "b"})["recorded"] is True
    finally:
        assert daemon.terminate() == 0


def test_a_refusal_names_the_extending_file_that_swapped_the_model(tmp_path):
    """The api's ``model`` key was set by the shipped parent, which its user cannot edit; the
    swap that caused the refusal is in their own file, so that file is named too."""
    profile, env = _profile(tmp_path, "toy-classifier", '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n')
    child = write(tmp_path / "swap.toml", 'extends = ["team.toml"]\n[models.m]\nuse = "toy-model"\ndata = "rows"\n')
    assert run_heirloom("train", str(child), env=env).returncode == 0
    checked = run_heirloom("profile", "check", str(child), env=env)
    assert checked.returncode == 2, checked.stderr
    said = f"{profile}: apis.sentiment.model: ToyModel cannot serve behind the classify api: it has no 'labels'"
    assert said in checked.stderr and f"; models.m is set in {child}" in checked.stderr, checked.stderr


def test_profile_check_names_the_table_whose_use_changed_since_its_stored_version(tmp_path):
    """``profile check`` exited 1 with a bare "the state was not written by ..."."""
    profile, env = _profile(tmp_path, "toy-classifier", '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n')
    profile.write_text(profile.read_text().replace('use = "toy-classifier"', 'use = "toy-model"'))
    checked = run_heirloom("profile", "check", str(profile), env=env)
    said = (
        f"{profile}: models.m.use: the stored team/m@1 is of model type toy-classifier, not toy-model: train the "
        "profile to store a toy-model version before serving it"
    )
    assert checked.returncode == 2 and said in checked.stderr, checked.stderr


@pytest.mark.parametrize(
    ("model", "apis", "said"),
    [
        (
            "toy-model",
            '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n',
            "apis.sentiment.model: ToyModel cannot serve behind the classify api: it has no 'labels' (the labels "
            "it predicts, a list of strings) (docs/TEXT.md, 'Another model behind classify')",
        ),
        (
            "toy-model",  # the monitor would never alert: it compared every label to nothing
            '[apis.monitor]\nuse = "label-monitor"\nmodel = "m"\nlabel = "a"\n',
            "apis.monitor.model: ToyModel cannot serve behind the label-monitor api: it has no 'labels'",
        ),
        (
            "toy-model",
            '[apis.recs]\nuse = "recommend"\nmodel = "m"\n',
            "apis.recs.model: ToyModel cannot serve behind the recommend api: it lacks catalogue.index, "
            "catalogue.describe(), histories.index, histories.of(), recommend(), similar(), similar_text() "
            "(docs/RECOMMEND.md, 'Another model behind recommend')",
        ),
        (
            "toy-classifier",
            '[apis.help]\nuse = "support"\nintent = "m"\nfaq = "m"\n',
            "apis.help.intent: ToyClassifier cannot serve behind the support api: its prediction has "
            "no 'guess' (it has 'label', 'probabilities') (docs/SUPPORT.md, 'Other models behind support')",
        ),
        (
            "toy-model",
            '[apis.help]\nuse = "support"\nintent = "m"\nfaq = "m"\n',
            "apis.help.faq: ToyModel cannot serve behind the support api: it lacks document_ids() (docs/SUPPORT.md, "
            "'Other models behind support')",
        ),
    ],
)
def test_a_model_lacking_what_a_shipped_api_reads_is_refused_naming_it(tmp_path, model, apis, said):
    """Its members are checked by ``profile check`` too; what it predicts only where it was
    started (``serve``), since ``predict`` may need what ``start`` sets."""
    profile, env = _profile(tmp_path, model, apis)
    checked = run_heirloom("profile", "check", str(profile), env=env)
    if "its prediction" not in said:
        assert checked.returncode == 2 and said in checked.stderr, checked.stderr
    assert said in _refused(Daemon(tmp_path, profile=profile.read_text(), env=env))


def test_numpy_floats_in_predictions_are_refused_at_a_hot_swap_and_at_the_start(tmp_path):
    """numpy's float32 probabilities passed ``check_model``, then every reply failed to encode."""
    apis = '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n[server]\nreload_interval = 0.1\n'
    profile, env = _profile(tmp_path, "toy-classifier", apis)
    refused = "ToyClassifier cannot serve behind the classify api: its prediction's probabilities must map its "
    refused += "labels to numbers from 0 to 1, got 'a': float32 0.75"
    daemon = Daemon(tmp_path, profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        newer = run_heirloom("train", str(profile), "--set", "models.m.float32=true", env=env)
        assert newer.returncode == 0, newer.stderr
        daemon.wait_logged(refused)
        with daemon.client(timeout=10) as client:  # the version that cannot serve was never swapped in
            assert client.call("sentiment.predict", {"text": "anything"})["version"] == "team/m@1"
    finally:
        assert daemon.terminate() == 0
    said = _refused(Daemon(tmp_path / "again", profile=profile.read_text(), env=env))
    assert f"cannot serve team/m@2: daemon.toml: apis.sentiment.model: {refused}" in said  # which version to roll back


def test_a_label_without_a_probability_is_monitored_and_a_model_that_needs_its_start_is_not_refused(tmp_path):
    """An encoder classifier's out_of_scope has no probability: every monitor post holding such
    a text failed with a KeyError, and the check let it through. ``profile check`` asked a
    model it never started to predict, and refused one whose predict needs what start sets."""
    apis = '[apis.mon]\nuse = "label-monitor"\nmodel = "m"\nlabel = "a"\n'
    profile, env = _profile(tmp_path, "toy-classifier", apis)
    started = run_heirloom("profile", "check", str(profile), "--set", "models.m.mode=needs_start", env=env)
    assert started.returncode == 0, started.stderr
    daemon = Daemon(tmp_path, "--set", "models.m.mode=dunno", profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            posted = client.call("mon.post", {"items": [{"text": "anything", "time": time.time()}]})
        assert posted["predictions"] == [{"label": "dunno", "probability": None}]
    finally:
        assert daemon.terminate() == 0


def test_a_predict_that_never_answers_is_a_problem_not_a_start_that_never_ends(monkeypatch):
    """A probe that hung kept serve 'starting' for ever, saying nothing."""
    from heirloom_plugins import model_needs
    from tests.toys import ToyClassifier

    class Hanging(ToyClassifier):
        def predict(self, batch):
            time.sleep(30)

    monkeypatch.setattr(model_needs, "PROBE_SECONDS", 1.0)
    model = Hanging(data="rows")
    model.ctx = object()  # started
    problem = model_needs.probed(model)[1]
    assert problem == "its predict(['Where is my order?', 'How do I reset my password?']) gave no answer within 1 s"

    class Raising(ToyClassifier):
        def predict(self, batch):
            raise RuntimeError("boom " + "x" * 5000)

    model = Raising(data="rows")
    model.ctx = object()
    problem = model_needs.probed(model)[1]  # its words were said whole
    assert problem.endswith(f"raised RuntimeError: boom {'x' * 192}...")
    counted = ToyClassifier(data="rows", mode="needs_start")
    counted.ctx, counted.calls = object(), 0
    for api in ("classify", "label-monitor"):  # two apis on one model
        assert model_needs.classifier_problems("model", counted, api, "doc") == []
    assert counted.calls == 1  # one probe per instance: a hung one kept each api waiting 60 s, one after another


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        (
            "one",
            "its predict(['Where is my order?', 'How do I reset my password?']) returned 1 predictions for 2 inputs",
        ),
        ("chances", "its prediction's probabilities must map its labels to numbers from 0 to 1, got 'a': float nan"),
    ],
)
def test_a_batch_answered_short_and_probabilities_that_are_no_chances_are_refused_where_the_model_starts(
    tmp_path, mode, said
):
    """One prediction whatever the batch passed a probe of one text, then every batch of two failed
    INTERNAL with StopIteration's empty words; NaN, infinite and negative probabilities were served."""
    profile, env = _profile(tmp_path, "toy-classifier", '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n')
    daemon = Daemon(tmp_path, "--set", f"models.m.mode={mode}", profile=profile.read_text(), env=env)
    assert f"apis.sentiment.model: ToyClassifier cannot serve behind the classify api: {said}" in _refused(daemon)


def test_a_model_answering_fewer_predictions_than_inputs_is_an_error_naming_it():
    from heirloom_plugins.model_needs import predictions_of
    from tests.toys import ToyClassifier

    model = ToyClassifier(data="rows", mode="one")
    with pytest.raises(RuntimeError, match=r"^ToyClassifier.predict returned 1 predictions for 2 inputs, not one"):
        predictions_of(model, ["a", "b"])
    assert len(predictions_of(model, ["a"])) == 1


@pytest.mark.parametrize(
    ("model", "apis", "setting", "said"),
    [
        (
            "toy-recommender",
            '[apis.recs]\nuse = "recommend"\nmodel = "m"\n',
            "models.m.float32=true",
            "apis.recs.model: ToyRecommender cannot serve behind the recommend api: its recommend([an empty history], "
            "[1], [nothing excluded]) scored position 0 np.float32(0.5), not a finite Python float",
        ),
        (
            "toy-classifier",
            '[apis.help]\nuse = "support"\nintent = "m"\nfaq = "m"\n',
            "models.m.mode=support_noid",
            "apis.help.faq: ToyClassifier cannot serve behind the support api: its prediction's answers[0] has no 'id'",
        ),
    ],
)
def test_what_a_route_sends_of_a_prediction_is_checked_where_the_model_starts(tmp_path, model, apis, setting, said):
    """numpy float32 scores failed every recommend reply; an answer without its id failed every
    handoff with a KeyError: both passed every check. Each is served once it is mended."""
    profile, env = _profile(tmp_path, model, apis)
    assert said in _refused(Daemon(tmp_path / "refused", "--set", setting, profile=profile.read_text(), env=env))
    mended = ("--set", "models.m.mode=support") if model == "toy-classifier" else ()
    served = Daemon(tmp_path / "served", *mended, profile=profile.read_text(), env=env)
    try:
        served.wait_ready(timeout=60)
        with served.client(timeout=10) as client:
            if model == "toy-recommender":
                assert client.call("recs.recommend", {"user": "u1", "k": 1})["items"][0]["score"] == 0.5
            else:
                assert client.call("help.answer", {"text": "where?"})["answers"][0]["id"] == "t/1"
    finally:
        assert served.terminate() == 0


RECS = '[apis.recs]\nuse = "recommend"\nmodel = "m"\n'
RECS_DOC = "(docs/RECOMMEND.md, 'Another model behind recommend')"
#: What ToyRecommender's modes break on: a request whose history (or exclude) holds i3.
ON_I3 = {"history": ["i3"], "k": 2}


@pytest.fixture(scope="module")
def toy_recs(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """A toy-recommender project, trained once: each test serves it in a mode of its own."""
    tmp = tmp_path_factory.mktemp("recs")
    profile, env = _profile(tmp, "toy-recommender", RECS)
    return tmp, profile, env


def _recs_serving(toy_recs: tuple[Path, Path, dict[str, str]], mode: str) -> contextlib.AbstractContextManager:
    tmp, profile, env = toy_recs
    return _client_in_mode(tmp / mode, profile, env, mode)


@pytest.mark.parametrize(
    ("mode", "route", "body", "said"),
    [
        (
            "untitled",
            "recs.recommend",
            ON_I3,
            "its catalogue.describe(1) has no 'title' (it has 'item', 'year', 'genres')",
        ),
        (
            "own",
            "recs.recommend",
            ON_I3,
            "its recommend() ranked position 2, an item of the request's user, history or exclude, which the reply "
            "never holds",
        ),
        ("own", "recs.recommend", {"history": ["i2"], "exclude": ["i3"]}, "its recommend() ranked position 2, an item"),
        ("self", "recs.similar", {"item": "i1", "k": 2}, "its similar(0, 2) ranked position 0, the item it was asked"),
        ("minus", "recs.recommend", ON_I3, "its recommend() gave position -1, not a Python int from 0 to 2"),
        ("true", "recs.recommend", ON_I3, "its recommend() gave position True, not a Python int from 0 to 2"),
        ("beyond", "recs.recommend", ON_I3, "its recommend() gave position 3, not a Python int from 0 to 2"),
        ("more", "recs.recommend", {**ON_I3, "k": 1}, "its recommend() returned 2 items for k=1"),
        ("twice", "recs.recommend", ON_I3, "its recommend() ranked position 0 twice"),
        ("nan", "recs.recommend", ON_I3, "its recommend() scored position 0 nan, not a finite Python float"),
        ("text", "recs.recommend", ON_I3, "its recommend() scored position 0 '0.5', not a finite Python float"),
    ],
)
def test_a_recommenders_answer_that_breaks_the_apis_promise_fails_that_request_naming_the_model(
    toy_recs, mode, route, body, said
):
    """A third party's recommender passed the start check, then sent clients a known user's own
    items, excluded ones, the item asked about, position -1 (the catalogue's last item), True (as
    1), more than k items, one twice, NaN scores or text, and items without a title, as OK."""
    with _recs_serving(toy_recs, mode) as client:
        with pytest.raises(heirloom.RemoteError) as caught:
            client.call(route, body)
        assert caught.value.code == "INTERNAL"
        assert f"ToyRecommender: {said}" in str(caught.value) and RECS_DOC in str(caught.value), str(caught.value)
        assert client.call("recs.recommend", {"history": [], "k": 1})["items"][0]["item"] == "i1"  # the next served


def test_what_a_recommender_raises_names_it(toy_recs):
    """Its error was "recs.recommend failed: ValueError: too many values to unpack", naming no model."""
    with _recs_serving(toy_recs, "raise") as client:
        with pytest.raises(heirloom.RemoteError) as caught:
            client.call("recs.recommend", ON_I3)
        said = "recs.recommend failed: RuntimeError: ToyRecommender: its recommend() raised ValueError: too many"
        assert caught.value.code == "INTERNAL" and said in str(caught.value), str(caught.value)


@pytest.mark.parametrize("mode", ["extra", "unranked"])
def test_a_recommenders_items_reach_clients_best_first_with_only_the_keys_the_reply_names(toy_recs, mode):
    """Every key of ``catalogue.describe``'s answer (a secret path) reached every client, and
    items were sent in the model's order, worst first."""
    item = {"title": "One", "year": None, "genres": []}
    with _recs_serving(toy_recs, mode) as client:
        assert client.call("recs.recommend", ON_I3)["items"] == [
            {"item": "i1", **item, "score": 0.5},
            {"item": "i2", **item, "score": 1 / 3},
        ]


def test_a_recommender_answering_a_batch_in_another_order_is_refused_where_it_starts(toy_recs):
    """16 of 16 concurrent clients got another request's items: the start check asked one history."""
    tmp, profile, env = toy_recs
    daemon = Daemon(tmp / "swap", "--set", "models.m.mode=swap", profile=profile.read_text(), env=env)
    said = (
        "apis.recs.model: ToyRecommender cannot serve behind the recommend api: its recommend([an empty history, "
        "[0]], [10, 10], [nothing excluded, nothing excluded]) answered each request with the other's items"
    )
    assert said in _refused(daemon)


MEDICAL_APIS = (
    '[models.t]\nuse = "toy-codes"\ndata = "rows"\ntreatment = true\n'
    '[apis.diagnosis]\nuse = "medical-diagnosis"\nmodel = "m"\n'
    '[apis.treatment]\nuse = "medical-treatment"\nmodel = "t"\n'
)
MEDICAL_DOC = "(docs/MEDICAL.md, 'Another model behind diagnosis and treatment')"
PENICILLIN = "Allergy to penicillin"
#: An inline record: a sore throat, and an allergy to penicillin.
ALLERGIC = {
    "id": "p1",
    "timeline": [
        {"kind": "encounter", "id": "e1", "date": "2021-03-04T10:00:00Z"},
        {"kind": "condition", "code": "snomed:43878008", "date": "2021-03-04T10:00:00Z", "encounter": "e1"},
        {"kind": "allergy", "code": "snomed:91936005", "display": PENICILLIN, "date": "2020-01-01"},
    ],
}
#: ALLERGIC's visit and sore throat, no allergy.
TOLERANT = ALLERGIC["timeline"][:2]


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            "models.m.mode=nocodes",
            "apis.diagnosis.model: ToyCodes cannot serve behind the medical-diagnosis api: its prediction has no "
            f"'codes' (it has 'patient', 'encounter', 'date') {MEDICAL_DOC}",
        ),
        (
            "models.m.mode=strcodes",
            "apis.diagnosis.model: ToyCodes cannot serve behind the medical-diagnosis api: its prediction's codes[0] "
            "is str 'snomed:43878008', not a map of 'code', 'display', 'probability', 'selected'",
        ),
        (
            "models.m.mode=float32",
            "apis.diagnosis.model: ToyCodes cannot serve behind the medical-diagnosis api: its prediction's "
            "codes[0]'s 'probability' is float32 0.5, not a number from 0 to 1",
        ),
        (
            "models.t.mode=noextras",
            "apis.treatment.model: ToyCodes cannot serve behind the medical-treatment api: its prediction has no "
            "'blocked' (it has 'patient', 'encounter', 'date', 'codes')",
        ),
        (
            "models.m.mode=nan",  # NaN, negative and 1e300 probabilities were served
            "apis.diagnosis.model: ToyCodes cannot serve behind the medical-diagnosis api: its prediction's "
            "codes[0]'s 'probability' is float nan, not a number from 0 to 1",
        ),
        (  # the allergy filter reads a drug's name: a null one let penicillin through to a patient allergic to it
            "models.t.mode=nodisplay",
            "apis.treatment.model: ToyCodes cannot serve behind the medical-treatment api: its prediction's "
            "codes[0]'s 'display' is NoneType None, not a string",
        ),
        (  # probed with an allergic patient alone, a drug nameless for the others passed, then failed them all
            "models.t.mode=nodisplay_unallergic",
            "apis.treatment.model: ToyCodes cannot serve behind the medical-treatment api: its prediction's "
            "codes[0]'s 'display' is NoneType None, not a string",
        ),
        (  # a model's own keys reached clients, past the route's schema, which names every key of a reply
            "models.m.mode=debug",
            "apis.diagnosis.model: ToyCodes cannot serve behind the medical-diagnosis api: its prediction has "
            "'debug', 'internal_path': keys the route's reply does not name (it names 'patient', 'encounter', "
            "'date', 'codes')",
        ),
        (
            "models.t.mode=itemdebug",
            "apis.treatment.model: ToyCodes cannot serve behind the medical-treatment api: its prediction's codes[0] "
            "has 'internal_rank': keys the route's reply does not name (it names 'code', 'display', 'probability', "
            "'selected', 'answers')",
        ),
    ],
)
def test_a_model_behind_the_medical_apis_answering_what_their_routes_cannot_send_is_refused(tmp_path, setting, said):
    """Each passed ``profile check`` and ``serve``'s start, then answered INTERNAL, or replies that
    broke the route's published schema (no ``codes``, codes as plain strings)."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0  # it starts no model to ask
    assert said in _refused(Daemon(tmp_path, "--set", setting, profile=profile.read_text(), env=env))


def test_a_medical_model_version_that_cannot_serve_is_not_swapped_in(tmp_path):
    """A hot swap asks the newer version about the probe before it serves, as ``serve``'s start does."""
    apis = MEDICAL_APIS + "[server]\nreload_interval = 0.1\n"
    profile, env = _profile(tmp_path, "toy-codes", apis)
    refused = "ToyCodes cannot serve behind the medical-treatment api: its prediction has no 'blocked'"
    daemon = Daemon(tmp_path, profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        newer = run_heirloom("train", str(profile), "t", "--set", "models.t.mode=noextras", env=env)
        assert newer.returncode == 0, newer.stderr
        daemon.wait_logged(refused)
        with daemon.client(timeout=10) as client:  # the version that cannot serve was never swapped in
            assert client.call("treatment.recommend", {"record": ALLERGIC})["version"] == "team/t@1"
    finally:
        assert daemon.terminate() == 0


def test_the_medical_apis_serve_another_model_inline_and_the_treatment_api_withholds_allergens(tmp_path):
    """A treatment model without an allergy filter recommended penicillin to a patient allergic
    to it; a model reading ``record.codes`` failed INTERNAL on every inline record."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    daemon = Daemon(tmp_path, profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            diagnosed = client.call("diagnosis.predict", {"record": ALLERGIC})
            assert [item["code"] for item in diagnosed["codes"]] == ["snomed:43878008"], diagnosed
            treated = client.call("treatment.recommend", {"record": ALLERGIC})
            penicillin = {"code": "rxnorm:834102", "display": "Penicillin V Potassium 500 MG Oral Tablet"}
            assert treated["codes"] == [] and treated["blocked"] == [{**penicillin, "allergies": [PENICILLIN]}]
            assert treated["unread_allergies"] == [] and treated["version"] == "team/t@1"
            misspelt = {"kind": "allergy", "display": "Allergy to penicilin", "date": "2020-01-01"}
            treated = client.call("treatment.recommend", {"record": {**ALLERGIC, "timeline": [*TOLERANT, misspelt]}})
            # withheld by the typo rule and listed unread as well: one allergy both applied and not understood
            assert treated["blocked"] == [{**penicillin, "allergies": [misspelt["display"]]}], treated
            assert treated["unread_allergies"] == []
            coded = {**ALLERGIC, "timeline": [*TOLERANT, {"kind": "allergy", "code": "rxnorm:723"}]}
            treated = client.call("treatment.recommend", {"record": coded})
            # an allergy the filter cannot read rules nothing out: the drug stays ranked, and is not selected
            assert [(item["code"], item["probability"], item["selected"]) for item in treated["codes"]] == [
                ("rxnorm:834102", 0.9, False)
            ]
            assert treated["unread_allergies"] == ["rxnorm:723"] and treated[FIELD] == WHY, treated
            tolerant = {**ALLERGIC, "timeline": TOLERANT}
            treated = client.call("treatment.recommend", {"record": tolerant})
            assert [item["code"] for item in treated["codes"]] == ["rxnorm:834102"] and treated["blocked"] == []
            assert treated["codes"][0]["selected"] and treated[FIELD] is None
            assert treated["codes"][0]["answers"] == [{"code": "snomed:43878008", "display": None}]
            routes = {route["name"]: route for route in client.call("_routes")["routes"]}
            assert routes["diagnosis.predict"]["description"].endswith(
                "or {'record': {...}, 'encounter': id} (default encounter: the last)."
            )
    finally:
        assert daemon.terminate() == 0


#: ALLERGIC with the sore throat recorded twice, and a sinusitis: two conditions, one of them twice.
UNWELL = {
    **ALLERGIC,
    "timeline": [
        *ALLERGIC["timeline"],
        {"kind": "condition", "code": "snomed:43878008", "date": "2021-03-04T10:05:00Z", "encounter": "e1"},
        {"kind": "condition", "code": "snomed:444814009", "date": "2021-03-04T10:05:00Z", "encounter": "e1"},
    ],
}


@pytest.mark.parametrize(
    ("drug", "why"),
    [
        ("", "its name is empty"),
        ("Pen V", "its name names no ingredient"),
        ("Zyvox 600 MG", "its name names no ingredient the filter knows ('zyvox')"),  # a brand the filter lacks
    ],
)
def test_a_drug_whose_name_the_filter_cannot_read_is_withheld_from_a_patient_with_allergies(tmp_path, drug, why):
    """A blank name, or one naming no ingredient, matched no allergy: it was recommended to a
    patient allergic to penicillin, though it may be any penicillin."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    daemon = Daemon(tmp_path, "--set", f'models.t.drug="{drug}"', profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            treated = client.call("treatment.recommend", {"record": ALLERGIC})
            unchecked = [f"(not checked against the allergies: {why})"]
            assert treated["codes"] == []
            assert treated["blocked"] == [{"code": "rxnorm:834102", "display": drug, "allergies": unchecked}]
            tolerant = {**ALLERGIC, "timeline": ALLERGIC["timeline"][:2]}  # no allergy: nothing to check it against
            assert [item["display"] for item in client.call("treatment.recommend", {"record": tolerant})["codes"]] == [
                drug
            ]
    finally:
        assert daemon.terminate() == 0


#: ALLERGIC's visit, with an allergy to a sulfonamide instead.
SULFA = {**ALLERGIC, "timeline": [*TOLERANT, {"kind": "allergy", "display": "Allergy to sulfamethoxazole"}]}


@pytest.mark.parametrize(
    ("drug", "penicillin"),
    [("Linezolid 600 MG Oral Tablet", False), ("Zyvox 600 MG", False), ("Hospamox 500 MG Oral Capsule", True)],
)
def test_a_formulary_file_lets_the_treatment_api_read_a_hospitals_own_drugs(tmp_path, drug, penicillin):
    """A drug whose ingredient the filter's tables lack was withheld from every patient with an allergy, and
    the docs had a hospital add its drugs to the tables in the installed package's code. The formulary file
    its profile names adds them, behind a model of any type: each is read to its ingredients, withheld for
    the allergies that rule those out (a brand it maps to amoxicillin, for an allergy to penicillin) and
    offered to the other patients with allergies."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    hospital = profile.read_text().replace('model = "t"\n', 'model = "t"\nformulary = "our-formulary.toml"\n')
    write(tmp_path / "hospital" / "our-formulary.toml", FORMULARY)
    answers = {}
    for folder, text in (("shipped", profile.read_text()), ("hospital", hospital)):
        daemon = Daemon(tmp_path / folder, "--set", f'models.t.drug="{drug}"', profile=text, env=env)
        try:
            daemon.wait_ready(timeout=60)
            with daemon.client(timeout=10) as client:
                answers[folder] = [client.call("treatment.recommend", {"record": r}) for r in (ALLERGIC, SULFA)]
        finally:
            assert daemon.terminate() == 0
    item = {"code": "rxnorm:834102", "display": drug}
    name = drug.split()[0].lower()
    unknown = f"(not checked against the allergies: its name names no ingredient the filter knows ({name!r}))"
    assert [(a["codes"], a["blocked"]) for a in answers["shipped"]] == [([], [{**item, "allergies": [unknown]}])] * 2
    allergic, sulfa = answers["hospital"]
    if penicillin:
        assert allergic["codes"] == [] and allergic["blocked"] == [{**item, "allergies": [PENICILLIN]}], allergic
    else:
        assert [code["display"] for code in allergic["codes"]] == [drug] and allergic["blocked"] == [], allergic
    assert [code["display"] for code in sulfa["codes"]] == [drug] and sulfa["blocked"] == [], sulfa
    assert all(a["unread_allergies"] == [] for a in (*answers["shipped"], allergic, sulfa))


@pytest.mark.parametrize(
    ("mode", "route", "said"),
    [
        (  # the count fails the batch (the daemon then asks for each request alone), as classify's does
            "short_later",
            "diagnosis.predict",
            "diagnosis.predict failed: RuntimeError: ToyCodes.predict returned 0 predictions for 1 inputs, not one",
        ),
        (  # codes in another order, or one twice, were sent as ranked (the probe has one condition)
            "unranked",
            "diagnosis.predict",
            "ToyCodes: its prediction's codes are not ranked: codes[1]'s probability 0.2 is above codes[0]'s 0.1",
        ),
        (
            "repeats",
            "diagnosis.predict",
            "ToyCodes: its prediction's codes[1] repeats codes[0]'s code 'snomed:43878008'",
        ),
        ("noextras_later", "treatment.recommend", "ToyCodes: its prediction has no 'blocked' (it has 'patient', "),
        (
            "other_later",
            "diagnosis.predict",
            "ToyCodes: its prediction is for patient 'someone-else', asked about 'p1'",
        ),
        (  # the request names no encounter: the answer's was not checked
            "elsewhere_later",
            "diagnosis.predict",
            "ToyCodes: its prediction is for encounter 'elsewhere', asked about 'e1'",
        ),
    ],
)
def test_an_answer_the_probe_never_saw_that_the_route_cannot_send_names_the_model(tmp_path, mode, route, said):
    """A count that differs from the batch's was zip()'s "argument 2 is shorter than argument 1";
    an answer without 'blocked' a bare KeyError; answers in another order gave every patient another
    patient's answer, unsaid. The check asks about one probe record: each passed it. A wrong answer
    fails its own request only (tests/test_medical.py)."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    model = "m" if route.startswith("diagnosis") else "t"
    daemon = Daemon(tmp_path, "--set", f"models.{model}.mode={mode}", profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client, pytest.raises(heirloom.RemoteError) as caught:
            client.call(route, {"record": UNWELL})
        assert caught.value.code == "INTERNAL"
        assert said in str(caught.value), str(caught.value)
    finally:
        assert daemon.terminate() == 0


def test_inline_records_the_answer_check_cannot_tell_apart_never_get_each_others_answers(tmp_path):
    """Records sent without an ``id`` are all "inline": a model answering a batch in another order gave
    12 of 20 concurrent clients another request's diagnosis, unsaid (the check compares patient and
    encounter only). Such records are asked of the model one per call."""
    profile, env = _profile(tmp_path, "toy-codes", MEDICAL_APIS)
    daemon = Daemon(tmp_path, "--set", "models.m.mode=reversed_later", profile=profile.read_text(), env=env)
    at = {"date": "2021-03-04T10:00:00Z"}
    records = [
        {"timeline": [{"kind": "encounter", "id": "e1", **at}, {"kind": "condition", "code": f"snomed:{n}", **at}]}
        for n in range(6)
    ]
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=20) as client:
            sent = [client.submit("diagnosis.predict", {"record": record}) for record in records]
            answered = [[item["code"] for item in future.result().body["codes"]] for future in sent]
        assert answered == [[f"snomed:{n}"] for n in range(6)]
    finally:
        assert daemon.terminate() == 0


SUPPORT_API = '[apis.help]\nuse = "support"\nintent = "m"\nfaq = "m"\n'


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        (
            "support_oos_in_scope",
            "apis.help.intent: ToyClassifier cannot serve behind the support api: its prediction "
            "says in_scope True with the label 'dunno'",
        ),
        (
            "support_nan",
            "apis.help.intent: ToyClassifier cannot serve behind the support api: its prediction's "
            "'confidence' is float nan, not a number from 0 to 1",
        ),
        (
            "support_unknown_id",
            "apis.help.faq: ToyClassifier cannot serve behind the support api: its prediction's "
            "answer id 'elsewhere/1' is none of its document_ids()",
        ),
    ],
)
def test_support_models_whose_answers_contradict_themselves_or_their_terms_are_refused_at_the_start(
    tmp_path, mode, said
):
    """ "out of scope" said in scope lost every handoff; NaN confidences reached clients and the
    handoff log; answers of no document could not be resolved with. Each passed the type checks."""
    profile, env = _profile(tmp_path, "toy-classifier", SUPPORT_API)
    assert said in _refused(Daemon(tmp_path, "--set", f"models.m.mode={mode}", profile=profile.read_text(), env=env))


def _support_client(tmp_path: Path, mode: str) -> contextlib.AbstractContextManager:
    """A client of a daemon serving the toy classifier in ``mode`` behind the support api."""
    profile, env = _profile(tmp_path, "toy-classifier", SUPPORT_API)
    return _client_in_mode(tmp_path, profile, env, mode)


@contextlib.contextmanager
def _client_in_mode(tmp: Path, profile: Path, env: dict[str, str], mode: str) -> Iterator[heirloom.Client]:
    """A client of a daemon serving ``profile`` (trained) with its model ``m`` in ``mode``."""
    daemon = Daemon(tmp, "--set", f"models.m.mode={mode}", profile=profile.read_text(), env=env)
    try:
        daemon.wait_ready(timeout=60)
        with daemon.client(timeout=10) as client:
            yield client
    finally:
        assert daemon.terminate() == 0


def test_a_support_answer_the_probe_never_saw_fails_that_request_naming_the_model_and_queues_nothing(tmp_path):
    with _support_client(tmp_path, "support_oos_in_scope_later") as client:
        with pytest.raises(heirloom.RemoteError) as caught:
            client.call("help.answer", {"text": "where?"})
        assert caught.value.code == "INTERNAL"
        assert "ToyClassifier: its prediction says in_scope True with the label 'dunno'" in str(caught.value)
        assert client.call("help.handoffs", {})["open"] == 0
        assert client.call("_health")["live"] is True


def test_support_answers_are_sent_best_first_with_only_the_keys_the_reply_names(tmp_path):
    """A key of the model's own inside each answer (a file path) reached every client."""
    with _support_client(tmp_path, "support_extras") as client:
        answers = client.call("help.answer", {"text": "where?"})["answers"]
    assert [answer["id"] for answer in answers] == ["t/2", "t/1"]
    assert all(set(answer) == {"id", "question", "answer", "score"} for answer in answers)


def test_a_classifier_answer_the_probe_never_saw_fails_its_request_naming_the_model(tmp_path):
    """A model right on the probe then sent None for a text and NaN probabilities to clients (and
    a monitor post failed with a TypeError naming nothing)."""
    apis = '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n'
    apis += '[apis.watch]\nuse = "label-monitor"\nmodel = "m"\nlabel = "a"\n'
    profile, env = _profile(tmp_path, "toy-classifier", apis)
    for mode, said in (
        (
            "none_later",
            "ToyClassifier: its prediction for a text is NoneType None, not a map of 'label', 'probabilities'",
        ),
        (
            "chances_later",
            "ToyClassifier: its prediction's probabilities must map its labels to numbers from 0 to 1, "
            "got 'a': float nan",
        ),
    ):
        daemon = Daemon(tmp_path / mode, "--set", f"models.m.mode={mode}", profile=profile.read_text(), env=env)
        try:
            daemon.wait_ready(timeout=60)
            with daemon.client(timeout=10) as client:
                for route, body in (
                    ("sentiment.predict", {"texts": ["x", "y"]}),
                    ("watch.post", {"items": [{"text": "x"}]}),
                ):
                    with pytest.raises(heirloom.RemoteError) as caught:
                        client.call(route, body)
                    assert caught.value.code == "INTERNAL" and said in str(caught.value), (route, str(caught.value))
                assert client.call("sentiment.labels")["labels"] == ["a", "b"]  # it keeps serving
        finally:
            assert daemon.terminate() == 0
        logged = daemon.log()  # the client alone was told, the operator nothing (checker h433 F5): once a minute
        assert logged.count("ToyClassifier (toy-classifier, plugin tests.toys) answered what its api cannot send:") == 1
        assert said.removeprefix("ToyClassifier: ") in logged, logged
