"""Systems: dependency order, reverse teardown, failed starts, collected errors, timeouts."""

from __future__ import annotations

import gc
import json
import re
import signal
import threading
import weakref

import attrs
import pytest

import heirloom
from tests import toys
from tests.daemons import Daemon
from tests.helpers import pythonpath, run_heirloom, write

CHAIN = """
[sources.raw]
use = "toy-source"
[sources.clean]
use = "toy-source"
after = "raw"
[models.m]
use = "toy-model"
data = "clean"
{model_extra}
[apis.api]
use = "toy-api"
model = "m"
"""


@pytest.fixture(autouse=True)
def clear_events():
    toys.EVENTS.clear()


def profile(tmp_path, model_extra: str = "", extra: str = ""):
    return str(write(tmp_path / "p.toml", CHAIN.format(model_extra=model_extra) + extra))


def test_components_start_in_dependency_order_and_stop_in_reverse(tmp_path):
    kernel = heirloom.Kernel(plugins=[toys])
    with kernel.system(profile(tmp_path)) as system:
        assert system.ready()
        assert system.component("api").target is system.component("m")
        routes = system.apis()["api"].routes()
        assert routes[0].handler({"x": 1}) == {"x": 1}
    started = ["start raw", "start clean", "start m", "start api"]
    assert toys.EVENTS == [*started, "stop api", "stop m", "stop clean", "stop raw"]
    assert system.state == "stopped"


def test_failed_start_stops_what_already_started(tmp_path):
    kernel = heirloom.Kernel(plugins=[toys])
    system = kernel.system(profile(tmp_path, "fail_start = true"))
    with pytest.raises(heirloom.LifecycleError) as caught:
        system.start()
    said = "models.m (toy-model, plugin tests.toys) failed to start: RuntimeError: m refuses to start"  # whose, once
    assert str(caught.value) == said
    assert toys.EVENTS == ["start raw", "start clean", "stop clean", "stop raw"]
    assert system.state == "failed"


def test_a_ctrl_c_during_start_stops_what_already_started(tmp_path):
    """h417 F1: a KeyboardInterrupt while a system started (a notebook's Ctrl-C) left the components already
    started running, with no system returned to stop them: only an Exception stopped them."""
    kernel = heirloom.Kernel(plugins=[toys])
    system = kernel.system(profile(tmp_path, "start_seconds = 1.0"))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # an xdist worker ignores SIGINT
    try:
        main = threading.main_thread().ident
        threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()  # a real signal: the join wakes
        with pytest.raises(KeyboardInterrupt):
            system.start()
    finally:
        signal.signal(signal.SIGINT, before)
    assert toys.EVENTS[:4] == ["start raw", "start clean", "stop clean", "stop raw"], toys.EVENTS
    assert system.state == "failed"


def test_every_teardown_error_is_collected(tmp_path):
    extra = '[models.m2]\nuse = "toy-model"\ndata = "raw"\nfail_stop = true\n'
    kernel = heirloom.Kernel(plugins=[toys])
    system = kernel.system(profile(tmp_path, "fail_stop = true", extra)).start()
    with pytest.raises(heirloom.LifecycleError) as caught:
        system.stop()
    messages = [str(e) for e in caught.value.errors]
    said = "(toy-model, plugin tests.toys) failed to stop: RuntimeError: {} refuses to stop"  # its type, as at start
    assert sorted(messages) == [f"models.{m} {said.format(m)}" for m in ("m", "m2")]
    assert "stop raw" in toys.EVENTS and "stop api" in toys.EVENTS  # teardown went on


def test_start_timeout_names_the_component(tmp_path):
    kernel = heirloom.Kernel(plugins=[toys])
    path = profile(tmp_path, "start_seconds = 2.0\nstart_timeout = 0.2")
    said = r"start of models.m \(toy-model\) did not finish within 0.2s \(raise models.m.start_timeout or \[system\] st"
    with pytest.raises(heirloom.LifecycleError, match=said):  # the key to raise: "[system]" alone named none
        kernel.system(path).start()
    assert toys.EVENTS == ["start raw", "start clean", "stop clean", "stop raw"]


def _watch(tmp_path):
    """Run a system with a watching plugin and a broken one; return what the watcher saw."""
    seen = []

    class Watcher:
        @heirloom.hookimpl
        def heirloom_system_started(self, system):
            seen.append(("started", sorted(system.components())))

        @heirloom.hookimpl
        def heirloom_system_stopping(self, system):
            seen.append(("stopping", system.state))

    class Broken:
        @heirloom.hookimpl
        def heirloom_system_started(self, system):
            raise RuntimeError("observer bug")

    kernel = heirloom.Kernel(plugins=[toys, Watcher(), Broken()])
    with kernel.system(profile(tmp_path)):
        pass
    assert toys.EVENTS[-1] == "stop raw"  # the broken observer did not stop the system
    return seen


def test_hook_heirloom_system_started(tmp_path):
    assert _watch(tmp_path)[0] == ("started", ["api", "clean", "m", "raw", "resources"])


def test_hook_heirloom_system_stopping(tmp_path):
    assert _watch(tmp_path)[1] == ("stopping", "stopping")


def test_partial_system_starts_only_the_closure(tmp_path):
    kernel = heirloom.Kernel(plugins=[toys])
    with kernel.system(profile(tmp_path), only={("model", "m")}) as system:
        assert sorted(system.components()) == ["clean", "m", "raw", "resources"]
    with pytest.raises(heirloom.HeirloomError, match="the profile has no model 'nope'"):
        kernel.system(profile(tmp_path), only={("model", "nope")})


def test_hook_heirloom_register_pretrained(tmp_path):
    from heirloom.store.artifacts import ArtifactStore
    from heirloom.store.training import model_specs, train

    class Shipped:
        @heirloom.hookimpl
        def heirloom_register_pretrained(self, register):
            register("toy-start", lambda: heirloom.State({}, {"epochs": 7}))

    kernel = heirloom.Kernel(plugins=[toys, Shipped()])
    toml = '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "s"\ninherit = "pretrained:{}"\n'
    path = write(tmp_path / "p.toml", toml.format("toy-start"))
    profile = kernel.resolve(str(path))
    store = ArtifactStore(tmp_path / "store")
    first = train(kernel, profile, model_specs(profile, ())[0], store, heirloom.NullProgress())
    second = train(kernel, profile, model_specs(profile, ())[0], store, heirloom.NullProgress())
    assert first.artifact.parent == second.artifact.parent == "pretrained/toy-start@1"  # stored once
    assert store.load(first.artifact).metadata == {"epochs": 7}  # the model started from it
    assert [a.ref for a in store.lineage(first.artifact.ref)] == ["p/m@1", "pretrained/toy-start@1"]
    missing = kernel.resolve(str(write(tmp_path / "q.toml", toml.format("nothing"))))
    with pytest.raises(heirloom.HeirloomError, match=r"models\.m\.inherit: no plugin registers pretrained:nothing"):
        train(kernel, missing, model_specs(missing, ())[0], store, heirloom.NullProgress())


def test_a_pretrained_loader_or_a_state_that_fails_names_the_model_and_the_plugin(tmp_path):
    """A plugin's pretrained loader that raises, or a ``state()`` the store refuses, is an
    error naming the model's table and the plugin, not a traceback or a bare complaint."""
    from heirloom.store.artifacts import ArtifactStore
    from heirloom.store.training import model_specs, train

    def broken() -> heirloom.State:
        raise RuntimeError("weights missing from the wheel")

    @attrs.define
    class NanModel(toys.ToyModel):
        def state(self):
            return heirloom.State({}, {"scale": float("nan")})

    @attrs.define
    class DictModel(toys.ToyModel):
        def state(self):  # the weights, but not in a heirloom.State: an AttributeError's traceback, before
            return {"weights": [1, 2]}

    class Shipper:
        @heirloom.hookimpl
        def heirloom_register_pretrained(self, register):
            register("toy-broken", broken)

        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register("nan-model", NanModel)
            register("dict-model", DictModel)

    kernel = heirloom.Kernel(plugins=[toys, Shipper()])
    store = ArtifactStore(tmp_path / "store")
    toml = '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "{}"\ndata = "s"\n{}'
    broken_parent = toml.format("toy-model", 'inherit = "pretrained:toy-broken"')
    inheriting = kernel.resolve(str(write(tmp_path / "p.toml", broken_parent)))
    said = "models.m.inherit: pretrained:toy-broken (from plugin Shipper) failed to load: RuntimeError: weights missing"
    with pytest.raises(heirloom.HeirloomError, match=re.escape(said)):
        train(kernel, inheriting, model_specs(inheriting, ())[0], store, heirloom.NullProgress())
    nan = kernel.resolve(str(write(tmp_path / "q.toml", toml.format("nan-model", ""))))
    said = "models.m (nan-model, from plugin Shipper): its state() cannot be stored: state metadata must be JSON-"
    with pytest.raises(heirloom.HeirloomError, match=re.escape(said)):
        train(kernel, nan, model_specs(nan, ())[0], store, heirloom.NullProgress())
    plain = kernel.resolve(str(write(tmp_path / "d.toml", toml.format("dict-model", ""))))
    said = "models.m (dict-model, from plugin Shipper): its state() cannot be stored: it returned {'weights': [1, 2]}"
    with pytest.raises(heirloom.HeirloomError, match=re.escape(f"{said}, a dict, not a heirloom.State")):
        train(kernel, plain, model_specs(plain, ())[0], store, heirloom.NullProgress())
    assert store.list() == []


def test_models_that_inherit_a_model_of_the_project_train_after_it(tmp_path):
    from heirloom.store.training import model_specs

    toml = (
        'project = "p"\n[sources.s]\nuse = "toy-source"\n'
        '[models.a]\nuse = "toy-model"\ndata = "s"\ninherit = "p/c@production"\n'
        '[models.b]\nuse = "toy-model"\ndata = "s"\n'
        '[models.c]\nuse = "toy-model"\ndata = "s"\ninherit = "p/b"\n'
    )
    profile = heirloom.Kernel(plugins=[toys]).resolve(str(write(tmp_path / "p.toml", toml)))
    assert [spec.name for spec in model_specs(profile, ())] == ["b", "c", "a"]
    assert [spec.name for spec in model_specs(profile, ("a", "c"))] == ["c", "a"]


def test_train_of_a_profile_without_models_says_there_is_nothing_to_train(tmp_path):
    """It printed nothing and exited 0, as if something had been trained."""
    trained = run_heirloom("train", "minimal", env={"HEIRLOOM_HOME": str(tmp_path)})
    assert trained.returncode == 0 and "profile 'minimal' has no models: nothing to train" in trained.stderr


def trained_team(tmp_path, heirloom_home) -> tuple[str, dict[str, str]]:
    """A profile serving a toy classifier behind ``classify``, its first version trained; the env to train it again."""
    path = write(
        tmp_path / "team.toml",
        'project = "team"\n[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-classifier"\ndata = "rows"\n'
        '[apis.sentiment]\nuse = "classify"\nmodel = "m"\n',
    )
    env = {"HEIRLOOM_HOME": str(heirloom_home), "HEIRLOOM_PLUGINS": "tests.toys"}
    assert run_heirloom("train", str(path), env=env).returncode == 0
    return str(path), env


def test_every_swapped_out_version_is_freed_without_waiting_for_a_request_or_the_daemons_stop(tmp_path, heirloom_home):
    """The system kept the first version it served (its weights) until the daemon stopped, and the
    classify api the last version it had answered with until its next request."""
    path, env = trained_team(tmp_path, heirloom_home)
    with heirloom.Kernel(plugins=[toys]).system(path, serve_models=True) as system:
        api, swapped_out = system.component("sentiment", "api"), [weakref.ref(system.component("m", "model"))]
        for note in ("two", "three"):
            assert run_heirloom("train", path, "--set", f"models.m.note={note}", env=env).returncode == 0
            system.serving.refresh()
            assert (
                api.predict_batch([api.input(text="hello", texts=None)])[0].version
                == system.serving.handles["m"].version
            )
            swapped_out.append(weakref.ref(system.serving.handles["m"].model))
        assert run_heirloom("train", path, "--set", "models.m.note=four", env=env).returncode == 0
        assert system.serving.refresh() == {"m": "team/m@4"}
        system.serving.refresh()  # stops the version swapped out at the previous one
        gc.collect()
        assert [ref() is None for ref in swapped_out] == [True, True, True]


def test_a_version_a_hot_swap_refuses_is_stopped_not_kept_until_the_daemon_stops(tmp_path, heirloom_home):
    """Each refused swap started and loaded the new version, then kept it: five ``_reload`` calls of
    a refused 100 MB model held five copies until the daemon stopped."""
    path, env = trained_team(tmp_path, heirloom_home)
    with heirloom.Kernel(plugins=[toys]).system(path, serve_models=True) as system:
        refused = run_heirloom("train", path, "--set", "models.m.float32=true", env=env)  # the api refuses it
        assert refused.returncode == 0, refused.stderr
        toys.EVENTS.clear()
        for _ in range(3):
            assert system.serving.refresh() == {}
        assert system.serving.status()["m"]["version"] == "team/m@1"
        assert toys.EVENTS == ["start m", "stop m", "start m", "stop m", "start m"]  # the last: at the next refresh
        original = system.component("m")
        swapped = run_heirloom("train", path, "--set", "models.m.note=newer", env=env)  # one it can serve
        assert swapped.returncode == 0, swapped.stderr
        assert system.serving.refresh() == {"m": "team/m@3"}
        serving = system.serving.handles["m"].model
        toys.STOPPED_MODELS.clear()
        system.serving.refresh()  # stops the original, swapped out: the one serving takes its place in the system
        assert toys.STOPPED_MODELS == [id(original)]  # and never the equal-looking serving instance
        assert system.component("m", "model") is serving
    assert toys.EVENTS.count("stop m") == 5  # the daemon's stop: the refused one left, the one served
    assert sorted(toys.STOPPED_MODELS) == sorted([id(serving), id(original)])


def test_a_version_whose_load_hangs_is_given_up_at_the_start_timeout_and_later_swaps_go_on(tmp_path, heirloom_home):
    """Checker 269: a plugin's load() that hung on a hot swap froze the watcher, so every later promote of every model
    of the daemon was ignored, unsaid (start() was bounded by its start timeout, load() was not)."""
    path, env = trained_team(tmp_path, heirloom_home)
    kernel = heirloom.Kernel(plugins=[toys])
    with kernel.system(path, ["models.m.start_timeout=0.5"], serve_models=True) as system:
        assert run_heirloom("train", path, "--set", "models.m.note=hangs-in-load", env=env).returncode == 0
        assert system.serving.refresh() == {}
        said = "could not load team/m@2: load of models.m (toy-classifier) did not finish within 0.5s (raise models.m"
        assert system.serving.status()["m"]["error"].startswith(said)
        assert system.serving.status()["m"]["error"].endswith("; still serving team/m@1")
        assert run_heirloom("train", path, "--set", "models.m.note=loads", env=env).returncode == 0
        assert system.serving.refresh() == {"m": "team/m@3"}


#: A plugin whose only hook, ``heirloom_system_stopping``, raises: a notification's bug, in a plugin the profile
#: does not use.
STOPPING_BOOM = (
    'import heirloom\n\n@heirloom.hookimpl\ndef heirloom_system_stopping(system):\n    raise RuntimeError("boom")\n'
)


def _with_stopping_boom(tmp_path, plugins: str) -> dict[str, str]:
    """The environment of a command that loads ``plugins`` and the module ``stopping_boom``."""
    write(tmp_path / "mods" / "stopping_boom.py", STOPPING_BOOM)
    env = {"HEIRLOOM_PLUGINS": f"{plugins},stopping_boom", "PYTHONPATH": pythonpath(tmp_path / "mods")}
    return {"HEIRLOOM_HOME": str(tmp_path / "home"), **env}


def test_a_stopping_hook_that_raises_is_logged_and_fails_no_command(tmp_path):
    """train printed nothing and exited 1 with its version stored; eval --json printed nothing; serve exited 1 at
    SIGTERM: a notification hook's bug read as the command's failure."""
    env = _with_stopping_boom(tmp_path, "tests.toys")
    team = write(
        tmp_path / "team.toml", '[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "rows"\n'
    )
    blamed = "plugin stopping_boom: heirloom_system_stopping failed: RuntimeError: boom"
    trained = run_heirloom("train", str(team), env=env)
    assert trained.returncode == 0 and "stored team/m@1" in trained.stdout and blamed in trained.stderr, trained
    evaluated = run_heirloom("eval", str(team), "--json", env=env)
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["models"]["m"]["version"] == "team/m@1", evaluated
    assert "ERROR" in evaluated.stderr and blamed in evaluated.stderr
    daemon = Daemon(tmp_path, env=_with_stopping_boom(tmp_path, "tests.testing_api"))
    daemon.wait_ready()
    assert daemon.terminate() == 0, daemon.log()
    assert blamed in daemon.log()


def test_a_component_that_fails_to_stop_fails_train_and_eval_after_they_said_what_they_did(tmp_path):
    """The report and the ``stored`` line were lost, and the error did not say the version was stored."""
    env = {"HEIRLOOM_HOME": str(tmp_path / "home"), "HEIRLOOM_PLUGINS": "tests.toys"}
    text = 'project = "team"\n[sources.rows]\nuse = "toy-source"\n'
    text += '[models.m]\nuse = "toy-model"\ndata = "rows"\nfail_stop = true\n'
    team = write(tmp_path / "team.toml", text)
    trained = run_heirloom("train", str(team), env=env)
    assert trained.returncode == 1 and "stored team/m@1" in trained.stdout and "accuracy" in trained.stdout, trained
    last = " ".join(trained.stderr.split()).rpartition("error: ")[2]
    failed = "models.m (toy-model, plugin tests.toys) failed to stop: RuntimeError: m refuses to stop"
    assert last == f"the version team/m@1 was stored; then {failed}"
    again = run_heirloom("train", str(team), "--json", env=env)
    assert again.returncode == 1 and json.loads(again.stdout)["models"]["m"]["stored"] is False, again
    assert "error: nothing new was stored (team/m@1 is identical); then models.m (toy-model, plugin" in again.stderr
    evaluated = run_heirloom("eval", str(team), "--json", env=env)
    assert evaluated.returncode == 1 and json.loads(evaluated.stdout)["models"]["m"]["accuracy"] == 1.0, evaluated
    said = " ".join(evaluated.stderr.split())
    assert f"error: team/m@1 was evaluated on the test split; then {failed}" in said
    daemon = Daemon(tmp_path, profile=text, env=env)
    daemon.wait_ready()
    assert daemon.terminate() == 1 and failed in daemon.log()


def test_a_group_of_errors_is_described_by_each_of_its_errors():
    """v23 F5: a version swapped in while its formulary file was broken was refused, logged only as cattrs'
    ``ClassValidationError: While structuring TreatmentModel (1 sub-exception)``, naming no file or key."""
    import cattrs

    from heirloom.core.errors import described

    @attrs.define
    class Settings:
        formulary: str = attrs.field(validator=attrs.validators.matches_re(r"ok.*"))

    with pytest.raises(cattrs.ClassValidationError) as caught:
        cattrs.Converter(detailed_validation=True).structure({"formulary": "broken.toml"}, Settings)
    said = described(caught.value)
    assert said.startswith("ValueError: ") and "'formulary' must match regex 'ok.*'" in said, said
