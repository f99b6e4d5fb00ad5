"""A plugin's malformed returns are that plugin's bug, said as such (checker 301): an api's ``check``, a pretrained
loader, a ``Report``'s text, a source's fingerprint, an api's ``feedback_log`` and a raising ``ready()`` each get an
error naming the component and its plugin, where they crashed in kernel code or were blamed on another plugin."""

from __future__ import annotations

import json
import re

import attrs
import numpy
import pytest

import heirloom
from heirloom.store.checks import store_problems
from heirloom.store.training import model_specs, train
from tests import toys
from tests.helpers import pythonpath, run_heirloom, write

TEAM = 'project = "team"\n[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
TOYS = {"HEIRLOOM_PLUGINS": "tests.toys"}


def team(tmp_path, apis: str = '[apis.t]\nuse = "toy-api"\nmodel = "m"\n') -> str:
    return str(write(tmp_path / "p.toml", TEAM + apis))


def test_a_ready_that_raises_is_a_retryable_unavailable_through_served_model():
    """F1: ``served_model`` called ``ready()`` unguarded: INTERNAL, blamed on the api (maybe another plugin's)
    calling it, where the docs say a raising ``ready()`` counts as not ready."""

    @attrs.define
    class Flaky(toys.ToyModel):
        def ready(self):
            raise RuntimeError("ready exploded")

    with pytest.raises(heirloom.RequestError) as caught:
        heirloom.served_model(heirloom.ModelHandle("m", Flaky(data="rows"), "team/m@1"))
    assert (caught.value.code, caught.value.retry_after_ms) == ("UNAVAILABLE", 5000)
    assert caught.value.message == "model 'm' serves nothing: its ready() raised RuntimeError: ready exploded"


@pytest.mark.parametrize(("odd", "returned"), [("str", "a str ('nope')"), ("letters", "a list (['ab'])")])
def test_an_api_check_returning_no_pairs_is_a_problem_naming_its_class(tmp_path, odd, returned):
    """F4: ``check`` returning "nope" crashed ``profile check`` with a traceback and stopped ``serve`` with
    'not enough values to unpack'; ["ab"] was read as the pair ("a", "b"), a problem at a key that does not exist."""
    path = team(tmp_path)
    assert run_heirloom("train", path, env=TOYS).returncode == 0  # check is asked of a stored version
    said = f"apis.t.use: ToyApi.check returned {returned}, not [(field, problem), ...] (a plugin bug?)"
    checked = run_heirloom("profile", "check", path, "--set", f"apis.t.odd_check={odd}", env=TOYS)
    assert (checked.returncode, checked.stderr.strip()) == (2, f"{path}: {said}")
    with pytest.raises(heirloom.LifecycleError, match=re.escape(f"cannot serve team/m@1: p.toml: {said}")):
        heirloom.Kernel(plugins=[toys]).system(path, [f"apis.t.odd_check={odd}"], serve_models=True).start()


def test_a_hot_swap_an_api_check_cannot_answer_is_refused_by_that_check_not_the_models_load(tmp_path):
    """F4: a ``check`` returning "nope" once a model was stored failed the swap as 'could not load team/m@1:
    ValueError: not enough values to unpack', blamed on the model's load."""
    path = team(tmp_path, '[apis.t]\nuse = "toy-api"\nmodel = "m"\nodd_check = "str"\n')
    with heirloom.Kernel(plugins=[toys]).system(path, serve_models=True) as system:
        assert run_heirloom("train", path, env=TOYS).returncode == 0
        assert system.serving.refresh() == {}
        refused = "did not swap to team/m@1, an api's check refused it: p.toml: apis.t.use: ToyApi.check returned a str"
        assert system.serving.status()["m"]["error"].startswith(refused)


@attrs.define
class ParentChecking(toys.ToyModel):
    """A model type with ``check_parent``, so ``profile check`` asks the pretrained loader for its metadata."""

    def check_parent(self, metadata):
        return []


class Pretrained:
    """A plugin shipping pretrained states: a loader returning a plain dict of weights, one that raises."""

    @heirloom.hookimpl
    def heirloom_register_pretrained(self, register):
        register("toy-dict", lambda: {"epochs": 7})
        register("toy-broken", lambda: {}["weights"])
        register("toy-numpy", lambda: heirloom.State({}, {"format": "toy", "scale": numpy.float32(1)}))

    @heirloom.hookimpl
    def heirloom_register_models(self, register):
        register("parent-checking", ParentChecking)


def test_a_pretrained_loader_returning_no_state_is_refused_naming_it_and_its_plugin(tmp_path):
    """F7: a loader's dict crashed ``train`` in the store ('dict' object has no attribute 'tensors'), blamed on the
    model's plugin; ``profile check`` said ok, for a raising loader too (it swallowed every exception)."""
    kernel = heirloom.Kernel(plugins=[toys, Pretrained()])
    returned = "pretrained:toy-dict (from plugin Pretrained): its loader returned a dict ({'epochs': 7}), not a "
    profile = kernel.resolve(team(tmp_path, 'inherit = "pretrained:toy-dict"\n'))
    with pytest.raises(heirloom.HeirloomError, match=re.escape(f"p.toml: models.m.inherit: {returned}heirloom.State")):
        train(kernel, profile, model_specs(profile, ())[0], kernel.store(profile), heirloom.NullProgress())
    assert kernel.store(profile).list() == []
    checking, checked = write(tmp_path / "q.toml", TEAM.replace('"toy-model"', '"parent-checking"')), []
    for name in ("toy-dict", "toy-broken", "toy-numpy"):
        resolved = kernel.resolve(str(checking), [f"models.m.inherit=pretrained:{name}"])
        checked += [str(problem) for problem in store_problems(kernel, resolved)[0]]
    raised = "pretrained:toy-broken (from plugin Pretrained) failed to load: KeyError: 'weights'"
    unstorable = "pretrained:toy-numpy (from plugin Pretrained): its state cannot be stored: state metadata must be "
    key = "--set: models.m.inherit"
    assert checked[:2] == [f"{key}: {returned}heirloom.State (a plugin bug?)", f"{key}: {raised}"]
    assert checked[2].startswith(f"{key}: {unstorable}JSON-serialisable: it holds a numpy float32"), checked  # v37 F6


WEIGHTS = """
import heirloom


@heirloom.hookimpl
def heirloom_register_pretrained(register):
    register("toy-start", lambda: heirloom.State({}, {"epochs": 7}))
    register("toy-dict", lambda: {"epochs": 7})
    register("toy-broken", lambda: {}["weights"])
"""


def test_profile_check_runs_the_pretrained_loader_of_a_model_type_without_check_parent(tmp_path):
    """Checker h301 F7: ``profile check`` ran a ``pretrained:NAME`` loader only for a model type with
    ``check_parent``, so a loader that raises or returns no State passed it under ``toy-model`` and only
    ``train`` said so; it is now the same problem at ``models.m.inherit`` as ``train``'s, naming the plugin."""
    write(tmp_path / "heirloom_weights.py", WEIGHTS)
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys,heirloom_weights"}
    path = team(tmp_path, 'inherit = "pretrained:toy-start"\n')
    assert run_heirloom("profile", "check", path, env=env).returncode == 0
    plugin = "(from plugin heirloom_weights)"
    for name, said in [
        ("toy-broken", f"{plugin} failed to load: KeyError: 'weights'"),
        ("toy-dict", f"{plugin}: its loader returned a dict ({{'epochs': 7}}), not a heirloom.State (a plugin bug?)"),
    ]:
        problem = f"--set: models.m.inherit: pretrained:{name} {said}"
        set_inherit = ("--set", f"models.m.inherit=pretrained:{name}")
        checked = run_heirloom("profile", "check", path, *set_inherit, env=env)
        assert checked.returncode == 2 and problem in checked.stderr.splitlines(), checked.stderr
        trained = run_heirloom("train", path, *set_inherit, env=env)
        assert trained.returncode == 2 and problem in trained.stderr, trained.stderr  # as profile check says it


def test_a_report_whose_text_is_no_text_is_refused_before_anything_is_stored(tmp_path):
    """F11: ``Report(metrics, None)`` was stored, then ``train`` crashed printing it ('training models.m failed',
    exit 1) for a version it had stored, and the profile's later models went untrained."""
    trained = run_heirloom("train", team(tmp_path, ""), "--set", "models.m.odd_report=textless", env=TOYS)
    said = "error: models.m (toy-model) on source 'rows': ToyModel.evaluate() returned Report(metric"
    assert trained.returncode == 1 and said in trained.stderr, trained.stderr
    assert trained.stderr.rstrip().endswith("text=None), not a heirloom.Report(metrics=a dict, text=a str)")
    assert "stored" not in trained.stdout and "Traceback" not in trained.stderr
    assert heirloom.Kernel(plugins=[toys]).store().list() == []


def test_a_fingerprint_that_is_no_text_is_refused_as_the_sources_bug_before_fitting(tmp_path):
    """F12: a source's ``fingerprint()`` of None was stored as the data's identity, and a later train crashed in the
    kernel, blamed on the model's plugin."""
    trained = run_heirloom("train", team(tmp_path, ""), "--set", "sources.rows.no_fingerprint=true", env=TOYS)
    said = "error: sources.rows (toy-source, plugin tests.toys): fingerprint() returned None, not a non-empty str"
    assert (trained.returncode, trained.stderr.strip().splitlines()[-1]) == (
        1,
        f"{said} (a plugin bug?): nothing was trained",
    )
    assert "reading the train split" not in trained.stderr  # refused before fitting read any record
    assert heirloom.Kernel(plugins=[toys]).store().list() == []


def test_a_feedback_record_is_any_record_with_a_label(tmp_path):
    """F8: ``add`` acknowledged a record without a ``text`` (an api whose inputs are weather readings), then every
    reader skipped it: ``trainable()`` was empty. One every reader would skip is refused at ``add``."""
    path = tmp_path / "feedback.jsonl"
    log = heirloom.FeedbackLog(path)
    ident = log.add({"temperature": 30.5, "humidity": 20.0, "label": "hot"})
    assert [(r["id"], r["temperature"], r["label"]) for r in heirloom.FeedbackLog.replay(path).trainable()] == [
        (ident, 30.5, "hot")
    ]
    with pytest.raises(ValueError, match=r"^not a feedback record: 'label' must be text; nothing was written$"):
        log.add({"temperature": 1.0})
    with pytest.raises(ValueError, match=r"^not a feedback record: 'text' is blank; nothing was written$"):
        log.add({"text": " ", "label": "hot"})
    with pytest.raises(ValueError, match=r"^not a feedback record: 'op' marks a tombstone or an acceptance"):
        log.add({"op": "remove", "label": "hot"})
    log.close()
    assert len(path.read_text().splitlines()) == 1


def test_every_feedback_command_names_an_api_whose_feedback_log_is_broken_and_reads_the_others(tmp_path):
    """F10: a ``feedback_log`` raising, or returning 42, stopped every ``heirloom feedback`` command with a
    traceback naming no api, for the profile's other apis too. F8: a record without a text is listed by its fields."""
    apis = '[apis.t]\nuse = "toy-api"\nmodel = "m"\nfeedback = "log"\n[apis.u]\nuse = "toy-api"\nmodel = "m"\n'
    path = team(tmp_path, apis + 'feedback = "raise"\n')
    log = heirloom.FeedbackLog(heirloom.log_path("feedback", "team", "t"))
    ident = log.add({"temperature": 30.5, "label": "hot"})
    log.close()
    broken = "error: apis.u (toy-api, plugin tests.toys): feedback_log() "
    raised, left = f"{broken}raised KeyError: 'feedback_dir'", "(a plugin bug?); its feedback is left out"
    listed = run_heirloom("feedback", "list", path, env={**TOYS, "COLUMNS": "200"})  # its text on one line
    assert (listed.returncode, listed.stderr.strip()) == (0, f"{raised} {left}")
    assert ident in listed.stdout and '{"temperature": 30.5}' in listed.stdout, listed.stdout
    exported = run_heirloom("feedback", "export", path, "--set", "apis.u.feedback=int", env=TOYS)
    assert exported.stderr.strip() == f"{broken}returned 42, not a path or None {left}"
    assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == [ident]
    asked = run_heirloom("feedback", "list", path, "u", env=TOYS)
    assert (asked.returncode, asked.stderr.strip()) == (1, f"{raised} {left}")
    alone = run_heirloom("feedback", "list", path, "--set", "apis.t.feedback=raise", env=TOYS)
    assert alone.returncode == 1 and "Traceback" not in alone.stderr
    assert alone.stderr.strip().endswith("error: no api of profile 'p' records feedback that can be read")


def test_the_text_feedback_source_trains_on_the_records_with_a_text(tmp_path):
    """F8: the generic log may hold another api's records; the text source, which learns from texts, leaves those
    without one out, saying so, rather than failing on them."""
    log = heirloom.FeedbackLog(heirloom.log_path("feedback", "shop", "sentiment"))
    log.add({"text": "the parcel came late", "label": "bad"})
    log.add({"temperature": 30.5, "label": "hot"})
    log.close()
    profile = write(tmp_path / "shop.toml", 'project = "shop"\n[sources.f]\nuse = "feedback"\napi = "sentiment"\n')
    shown = run_heirloom("data", "show", str(profile), "f", "--split", "train", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(r["text"], r["label"]) for r in map(json.loads, shown.stdout.splitlines())] == [
        ("the parcel came late", "bad")
    ]
    assert "sentiment.jsonl: 1 record(s) without a 'text' are left out: a text model learns from texts" in shown.stderr
