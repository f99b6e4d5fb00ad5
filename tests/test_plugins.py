"""Plugin discovery and isolation: registration hooks, failures, conflicts, selection, laziness."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest.mock
from pathlib import Path

import attrs
import pytest

import heirloom
from tests import toys
from tests.helpers import HEIRLOOM, REPO, pythonpath, quiet_api_plugin, run_heirloom, write

#: The plugin host as a fresh home meets it: these tests fill the catalog themselves (tests/conftest.py).
pytestmark = pytest.mark.cold_catalog


def _kernel(*plugins):
    return heirloom.Kernel(plugins=[toys, *plugins])


@pytest.mark.parametrize(
    ("hook", "kind", "name"),
    [
        ("heirloom_register_sources", "source", "toy-source"),
        ("heirloom_register_models", "model", "toy-model"),
        ("heirloom_register_apis", "api", "toy-api"),
    ],
)
def test_registration_hooks_fill_the_registry(hook, kind, name):
    kernel = _kernel()
    assert kernel.plugins.component_type(kind, name) is not None
    assert name in kernel.plugins.infos["tests.toys"].provides[kind]


def test_hook_heirloom_register_sources():
    assert _kernel().plugins.component_type("source", "toy-source") is toys.ToySource


def test_hook_heirloom_register_models():
    assert _kernel().plugins.component_type("model", "toy-model") is toys.ToyModel


def test_hook_heirloom_register_apis():
    assert _kernel().plugins.component_type("api", "toy-api") is toys.ToyApi


def test_hook_heirloom_register_resource_managers(tmp_path):
    @attrs.define
    class FixedResources(heirloom.Resources):
        slots: int = 1

        def prepare(self, name, component):
            pass

        def device_for(self, name):
            return "cpu"

        def admit(self):
            return True

        def release(self):
            pass

        def usage(self):
            return {"slots": self.slots}

    class Plugin:
        @heirloom.hookimpl
        def heirloom_register_resource_managers(self, register):
            register("fixed", FixedResources)

    path = write(tmp_path / "p.toml", '[resources]\nuse = "fixed"\nslots = 4\n[apis.echo]\nuse = "echo"\n')
    with _kernel(Plugin()).system(str(path)) as system:
        assert system.resources.usage() == {"slots": 4}


def test_hook_heirloom_register_profiles(tmp_path, monkeypatch):
    shipped = write(tmp_path / "pkg" / "shipped.toml", '[apis.echo]\nuse = "echo"\n[resources]\nthreads = 3\n')

    class Plugin:
        @heirloom.hookimpl
        def heirloom_register_profiles(self, register):
            register("shipped", shipped)

    monkeypatch.chdir(tmp_path)
    child = write(tmp_path / "project.toml", 'extends = ["shipped"]\n[resources]\nmax_in_flight = 2\n')
    profile = _kernel(Plugin()).resolve(str(child))
    assert profile.raw.data["resources"] == {"use": "local", "threads": 3, "max_in_flight": 2}
    assert profile.raw.provenance["resources.threads"] == "pkg/shipped.toml"


def test_failing_plugin_is_isolated_and_reported():
    class Exploding:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            raise RuntimeError("boom while registering")

    class Misspelt:
        @heirloom.hookimpl
        def heirloom_register_modles(self, register):
            pass

    kernel = _kernel(Exploding(), Misspelt())
    infos = kernel.plugins.infos
    assert infos["Exploding"].status == "failed" and "boom while registering" in infos["Exploding"].error
    assert infos["Misspelt"].status == "failed" and "heirloom_register_modles" in infos["Misspelt"].error
    assert infos["tests.toys"].status == "loaded"


def test_a_hook_function_without_the_marker_is_an_error_not_silence():
    """pluggy calls only functions marked @heirloom.hookimpl: an unmarked one (rightly named
    or one typo off) would register nothing and say nothing."""

    class Unmarked:
        def heirloom_register_models(self, register):
            register("never", toys.ToyModel)

    class UnmarkedTypo:
        def heirloom_register_modls(self, register):
            pass

    class MarkedTypo:
        @heirloom.hookimpl
        def heirloom_register_modls(self, register):
            pass

    class MarkedPrefixTypo:  # one letter off the prefix got pluggy's words, with no closest hook
        @heirloom.hookimpl
        def heirlom_register_sources(self, register):
            pass

    class MarkedWithoutPrefix:  # too far from the hook's name for a did-you-mean (checker h458 F2)
        @heirloom.hookimpl
        def register_apis(self, register):
            pass

    class WrongArguments:  # pluggy's three-line error broke profile check's one line per problem
        @heirloom.hookimpl
        def heirloom_register_apis(self, reg):
            pass

    plugins = Unmarked(), UnmarkedTypo(), MarkedTypo(), MarkedPrefixTypo(), MarkedWithoutPrefix(), WrongArguments()
    infos = _kernel(*plugins).plugins.infos
    said = infos["WrongArguments"].error
    assert "heirloom_register_apis(reg)" in said and "{'reg'} are declared in the hookimpl" in said and "\n" not in said
    assert "heirloom_register_models is not marked @heirloom.hookimpl" in infos["Unmarked"].error
    assert "did you mean 'heirloom_register_models'?" in infos["UnmarkedTypo"].error
    misspelt = "unknown hook 'heirloom_register_modls'; did you mean 'heirloom_register_models'?"
    assert infos["MarkedTypo"].error.startswith(misspelt)  # heirloom's own error: no "heirloom.core...: "
    said = "unknown hook 'heirlom_register_sources'; did you mean 'heirloom_register_sources'?"
    assert infos["MarkedPrefixTypo"].error.startswith(said)
    said = "unknown hook 'register_apis'; did you mean 'heirloom_register_apis'?"
    assert infos["MarkedWithoutPrefix"].error.startswith(said)
    assert {infos[name].status for name in ("Unmarked", "UnmarkedTypo", "MarkedTypo")} == {"failed"}


def test_a_hook_under_another_name_by_specname_and_a_mock_in_the_module_load():
    """pluggy's specname names the hook a function of another name implements; an object that
    answers every attribute (a MagicMock) is no marked function: both failed the load."""

    class Renamed:
        telemetry = unittest.mock.MagicMock()

        @heirloom.hookimpl(specname="heirloom_register_models")
        def register_my_models(self, register):
            register("renamed", toys.ToyModel)

    info = _kernel(Renamed()).plugins.infos["Renamed"]
    assert info.status == "loaded" and info.provides["model"] == ["renamed"], info.error


def test_register_rejects_a_class_that_is_not_a_component():
    class NotAComponent:
        pass

    class Plugin:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register("bad", NotAComponent)

    info = _kernel(Plugin()).plugins.infos["Plugin"]
    assert info.status == "failed" and "must be an attrs class subclassing heirloom.Model" in info.error


@pytest.mark.parametrize("name", ["café", "echo\n", "Echo"])
def test_register_rejects_a_type_name_beyond_ascii_lower_case_saying_so(name):
    """A type named "café" was refused with "use lower-case, digits ..." (é is lower-case); "echo\\n" passed."""

    class Plugin:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register(name, toys.ToyModel)

    info = _kernel(Plugin()).plugins.infos["Plugin"]
    assert info.status == "failed", info
    assert f"invalid model name {name!r}: use ASCII lower-case letters, digits, '-', '_', '.'" in info.error


def test_register_rejects_a_component_field_named_like_a_key_the_kernel_reads():
    """``inherit`` (or ``use``, ``enabled``, ``start_timeout``) in a component's table is the
    kernel's: a field of that name would silently never get the profile's value."""

    @attrs.define
    class Shadowing(heirloom.Model):
        inherit: str = "mine"

    class Plugin:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register("shadowing", Shadowing)

    info = _kernel(Plugin()).plugins.infos["Plugin"]
    assert info.status == "failed"
    assert "model 'shadowing': Shadowing has field(s) inherit, which the kernel reads itself" in info.error


ODD_FIELDS = """
import datetime
import enum
import pathlib
from typing import Any, Literal

import attrs

import heirloom
from tests.toys import ToySource


class Shape:
    pass


class Colour(enum.Enum):
    RED = "red"


@attrs.define
class Window:
    days: int = 7
    mode: Literal["mean", "max"] = "mean"


@attrs.define
class Odd(ToySource):
    scale: complex = 1j
    since: datetime.date = datetime.date(2020, 1, 1)
    shapes: list[Shape | None] = attrs.field(factory=list)


@attrs.define
class Fine(ToySource):
    colour: Colour = Colour.RED
    window: Window = attrs.field(factory=Window)
    limit: int | None = None
    folder: pathlib.Path = pathlib.Path(".")
    extra: dict[str, list[float]] = attrs.field(factory=dict)
    anything: Any = None
    cache: Shape | None = attrs.field(init=False, default=None)  # not the profile's


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("{name}", {cls})
"""


def test_a_field_type_no_profile_can_give_fails_the_plugins_load_naming_the_field_and_the_types_it_can(tmp_path):
    """``complex``, ``datetime.date`` or a class of the plugin's own loaded fine, and the first profile using the type
    was told, in cattrs' words, "StructureHandlerNotFoundError: Unsupported type" (a plugin bug?), even with no value
    set; the fields a profile can set (an enum, a nested attrs class, a path, Optional) load as before."""
    _install(tmp_path, "heirloom-fine", "heirloom_fine", ODD_FIELDS.format(name="fine", cls="Fine"))
    env = {"PYTHONPATH": pythonpath(tmp_path)}
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "fine"\nwindow = {days = 3}\ncolour = "red"\n')
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0
    _install(tmp_path, "heirloom-odd", "heirloom_odd", ODD_FIELDS.format(name="odd", cls="Odd"))
    write(profile, '[sources.s]\nuse = "odd"\n')
    result = run_heirloom("profile", "check", str(profile), env=env)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, said
    assert (
        "heirloom_odd (heirloom-odd 1.0): source 'odd': Odd has field(s) of a type no profile can give: "
        "scale (complex), since (datetime.date), shapes (list[heirloom_odd.Shape | None]: heirloom_odd.Shape) "
        "(str, int, float, bool, Any, pathlib.Path, Literal[...] of str/int/bool, an Enum (by its value)," in said
    )
    assert "StructureHandlerNotFoundError" not in said
    listed = {p["name"]: p for p in json.loads(run_heirloom("plugins", "--json", env=env).stdout)}
    assert listed["heirloom_odd"]["status"] == "failed" and "Odd has field(s)" in listed["heirloom_odd"]["error"]
    assert listed["heirloom_fine"]["status"] == "loaded"


def test_a_plugin_registering_one_name_twice_fails_to_load_saying_so():
    """Two registrations in one plugin were once reported as 'two plugins: X and X', with
    the advice to disable one of them."""

    class Stutter:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register("stutter", toys.ToyModel)
            register("stutter", toys.ToyModel)

    info = _kernel(Stutter()).plugins.infos["Stutter"]
    assert info.status == "failed" and "model 'stutter' is registered twice by this plugin" in info.error


@pytest.mark.parametrize("hook", ["heirloom_register_models", "heirloom_register_profiles"])
def test_a_registration_hook_that_returns_its_registrations_fails_to_load_saying_to_call_register(hook):
    """A hook returning ``{"name": cls}`` registered nothing and loaded fine: the profile then
    named an unknown type and asked whether the plugin was installed."""

    def returns(self, register):
        return {"returned": toys.ToyModel}

    Returner = type("Returner", (), {hook: heirloom.hookimpl(returns)})
    info = _kernel(Returner()).plugins.infos["Returner"]
    assert info.status == "failed"
    assert f"{hook} returned a value: call register(name, ...) for each instead" in info.error


def test_duplicate_component_name_is_an_error_naming_both(tmp_path):
    class Copycat:
        @heirloom.hookimpl
        def heirloom_register_models(self, register):
            register("toy-model", toys.ToyModel)

    kernel = _kernel(Copycat())
    path = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\n[models.m]\nuse = "toy-model"\ndata = "s"\n')
    with pytest.raises(heirloom.ProfileError, match=r"registered by two plugins: tests\.toys and Copycat"):
        kernel.resolve(str(path))
    assert kernel.plugins.conflicts() == {"model toy-model": ["tests.toys", "Copycat"]}


def _plugin_statuses(env):
    result = run_heirloom("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: (p["status"], p.get("error")) for p in json.loads(result.stdout)}


def test_the_plugins_table_shows_the_profiles_and_data_sets_a_plugin_ships():
    table = run_heirloom("plugins", env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "shipped-profiles" in line)
    assert "profiles: banking-intents" in row  # it showed "-", and the JSON alone said what it ships


def test_disable_and_load_plugin_lists():
    """What the variables leave out is listed as disabled, naming the variable (checker h317 F1: it was left out
    of ``heirloom plugins`` unsaid, where an operator looks for why a plugin's types are missing)."""
    everything = _plugin_statuses({})
    assert {"echo", "local-resources", "shipped-profiles"} <= set(everything)
    assert {status for status, _ in everything.values()} == {"loaded"}
    variable = "HEIRLOOM_DISABLE_PLUGINS=echo,shipped-profiles"
    disabled = _plugin_statuses(dict([variable.split("=")]))
    assert sorted(disabled) == sorted(everything)
    left_out = {name for name, (status, _) in disabled.items() if status == "disabled"}
    assert left_out == {"echo", "shipped-profiles"} and disabled["echo"] == ("disabled", f"left out by {variable}")
    only = _plugin_statuses({"HEIRLOOM_LOAD_PLUGINS": "echo,local-resources"})
    loaded = sorted(name for name, (status, _) in only.items() if status == "loaded")
    assert loaded == ["echo", "heirloom.commands", "heirloom.store", "local-resources"]  # the kernel's own stay
    assert only["shipped-profiles"] == ("disabled", "left out by HEIRLOOM_LOAD_PLUGINS=echo,local-resources")
    table = run_heirloom("plugins", env={"COLUMNS": "250", "HEIRLOOM_DISABLE_PLUGINS": "echo"})
    row = next(line for line in table.stdout.splitlines() if line.startswith("│ echo "))
    assert "disabled: left out by HEIRLOOM_DISABLE_PLUGINS=echo" in row, table.stdout


def test_a_command_of_a_plugin_left_out_names_the_plugin_and_the_variable():
    """Checker h356 F3: the command of a plugin HEIRLOOM_DISABLE_PLUGINS leaves out said ``no command 'ui'`` and listed
    every plugin that failed to load, though an earlier load recorded who provides it (its types and profiles named
    it)."""
    listed = run_heirloom("plugins", "--json")  # an earlier load: the catalog records the dashboard's command
    info = next(p for p in json.loads(listed.stdout) if p["name"] == "dashboard")
    result = run_heirloom("ui", env={"HEIRLOOM_DISABLE_PLUGINS": "dashboard"})
    named = f"dashboard ({info['distribution']} {info['version']})"
    said = f"error: command 'ui' comes from {named}, which HEIRLOOM_DISABLE_PLUGINS=dashboard leaves out\n"
    assert result.returncode == 2 and result.stderr == said, result.stderr


def test_the_kernels_commands_cannot_be_disabled():
    result = run_heirloom("--help", env={"HEIRLOOM_LOAD_PLUGINS": "echo", "HEIRLOOM_DISABLE_PLUGINS": "heirloom"})
    assert result.returncode == 0, result.stderr
    for command in ("serve", "train", "models", "profile", "plugins", "call", "keys", "data", "eval", "worker"):
        assert f"  {command} " in result.stdout, command
    listed = json.loads(run_heirloom("plugins", "--json", env={"HEIRLOOM_LOAD_PLUGINS": "echo"}).stdout)
    builtin = {p["name"]: p for p in listed if p["builtin"]}
    assert sorted(builtin) == ["heirloom.commands", "heirloom.store"]
    assert "serve" in builtin["heirloom.commands"]["commands"]


def test_a_selected_name_no_plugin_has_is_warned_of_by_every_command_naming_the_closest(tmp_path):
    """Checker h307 F3: ``HEIRLOOM_DISABLE_PLUGINS=txt`` (for ``text``) was ignored unsaid and the plugin stayed
    loaded. Every command now warns once, naming the variable and the closest name, before any plugin is imported,
    and goes on (a fleet's setting may name a plugin a host lacks); a module ``HEIRLOOM_PLUGINS`` names is a
    plugin's name too."""
    write(tmp_path / "heirloom_loud.py", "import sys\nsys.stderr.write('loud imported\\n')\n")
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "heirloom_loud", "HEIRLOOM_TRACE_PLUGINS": "1"}
    typos = [
        ("HEIRLOOM_DISABLE_PLUGINS", "txt,echo", "'txt'; did you mean 'text'?"),
        ("HEIRLOOM_LOAD_PLUGINS", "local_resources", "'local_resources'; did you mean 'local-resources'?"),
    ]
    for variable, value, named in typos:
        for command in (("models", "list"), ("profile", "check", "minimal"), ("--help",)):
            result = run_heirloom(*command, env={**env, variable: value})
            assert result.stderr.count("names no plugin") == 1, result.stderr
            assert f"warning: {variable} names no plugin {named}" in result.stderr, result.stderr
            said = result.stderr.split("names no plugin")[0]
            assert "loud imported" not in said and "heirloom trace: import" not in said, result.stderr
    listed = run_heirloom("plugins", "--json", env={**env, "HEIRLOOM_LOAD_PLUGINS": "heirloom_loud,heirloom"})
    assert listed.returncode == 0, listed.stderr
    assert "heirloom_loud" in {p["name"] for p in json.loads(listed.stdout)}


def test_commands_are_found_after_another_process_filled_the_catalog():
    """A kernel used from Python (no CLI) writes the catalog without the commands' names;
    the command line must still find ``train`` (make demo does exactly this)."""
    probe = "import heirloom; kernel = heirloom.Kernel(); kernel.store(kernel.resolve('minimal'))"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)
    result = run_heirloom("train", "--help")
    assert result.returncode == 0, result.stderr
    assert "Fit MODELS of PROFILE" in result.stdout


def test_hooks_run_through_pluggy_in_tryfirst_order_with_wrappers(tmp_path):
    """tryfirst/trylast order the calls, a hook wrapper wraps each plugin's call, and one
    plugin's failure does not stop the others."""
    calls = []

    class Early:
        @heirloom.hookimpl(tryfirst=True)
        def heirloom_system_started(self, system):
            calls.append("early")

    class Late:
        @heirloom.hookimpl(trylast=True)
        def heirloom_system_started(self, system):
            calls.append("late")

    class Failing:
        @heirloom.hookimpl
        def heirloom_system_started(self, system):
            calls.append("failing")
            raise RuntimeError("observer bug")

    class Wrapper:
        @heirloom.hookimpl(wrapper=True)
        def heirloom_system_started(self, system):
            calls.append("wrap-in")
            try:
                return (yield)
            finally:
                calls.append("wrap-out")

    kernel = heirloom.Kernel(plugins=[toys, Late(), Failing(), Early(), Wrapper()])
    system = kernel.system("minimal").start()
    system.stop()
    assert calls == [
        "wrap-in", "early", "wrap-out",
        "wrap-in", "failing", "wrap-out",
        "wrap-in", "late", "wrap-out",
    ]  # fmt: skip


def test_trace_plugins_logs_each_hook_call_with_its_plugin_and_duration():
    result = run_heirloom("profile", "check", "minimal", env={"HEIRLOOM_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("heirloom trace: ")]
    register = re.compile(r"heirloom_register_apis -> echo \(heirloom [^)]+\) [0-9.]+ ms$")
    assert any(register.search(line) for line in lines), lines
    assert any(re.search(r"import heirloom_plugins\.echo .* [0-9.]+ ms$", line) for line in lines), lines
    quiet = run_heirloom("profile", "check", "minimal")
    assert "heirloom trace" not in quiet.stderr


def test_hook_heirloom_open_store(tmp_path):
    """The kernel's store plugin answers trylast; a plugin answering first replaces it."""
    elsewhere = heirloom.ArtifactStore(tmp_path / "elsewhere")

    class OtherStore:
        @heirloom.hookimpl(tryfirst=True)
        def heirloom_open_store(self, path):
            return elsewhere

    profile = heirloom.Kernel().resolve("minimal")
    assert heirloom.Kernel().store(profile).root == heirloom.ArtifactStore.default().root
    assert heirloom.Kernel(plugins=[OtherStore()]).store(profile) is elsewhere


def test_resolving_imports_only_the_plugins_the_profile_uses(tmp_path):
    probe = (
        "import sys, heirloom\n"
        "heirloom.Kernel().resolve('minimal')\n"
        "print(sorted(m for m in sys.modules if m.startswith('heirloom_plugins.')))\n"
    )

    def imported():
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
        return result.stdout.strip()

    imported()  # the first run in a fresh environment learns what each plugin provides
    assert imported() == "['heirloom_plugins.echo', 'heirloom_plugins.local_resources']"


NOISY_PLUGIN = """
print("hello from a plugin import")
"""
EXITING_PLUGIN = """
import sys
sys.exit("this plugin refuses to load")
"""


def test_a_plugin_printing_or_exiting_at_import_breaks_no_command(tmp_path):
    write(tmp_path / "noisy_plugin.py", NOISY_PLUGIN)
    write(tmp_path / "exiting_plugin.py", EXITING_PLUGIN)
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "noisy_plugin,exiting_plugin"}
    listed = run_heirloom("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    infos = {p["name"]: p for p in json.loads(listed.stdout)}  # stdout is JSON and nothing else
    assert "hello from a plugin import" in listed.stderr
    assert infos["exiting_plugin"]["status"] == "failed" and "refuses to load" in infos["exiting_plugin"]["error"]
    checked = run_heirloom("profile", "check", "minimal", env=env)
    assert checked.returncode == 0 and "ok" in checked.stdout, checked.stderr


def test_a_path_in_heirloom_plugins_is_said_to_be_no_module_name():
    """Was: "AttributeError: 'NoneType' object has no attribute 'group'" (EntryPoint.load's)."""
    listed = run_heirloom("plugins", "--json", env={"HEIRLOOM_PLUGINS": "/etc/passwd"})
    assert listed.returncode == 0, listed.stderr
    infos = {p["name"]: p for p in json.loads(listed.stdout)}
    said = "'/etc/passwd' is no Python module name (HEIRLOOM_PLUGINS lists those)"
    assert infos["/etc/passwd"]["status"] == "failed" and infos["/etc/passwd"]["error"] == said
    assert run_heirloom("profile", "check", "minimal", env={"HEIRLOOM_PLUGINS": "/etc/passwd"}).returncode == 0


FLAKY_PLUGIN = quiet_api_plugin(
    'if os.environ.get("FLAKY_PLUGIN_FAILS"):\n    raise RuntimeError("cannot reach the licence server")\n'
)


def test_a_type_from_a_plugin_that_loaded_before_but_fails_now_names_that_failure(tmp_path):
    """The catalog remembers what a plugin provided when it last loaded: a profile using
    it is told that plugin failed and why, not "unknown type 'quiet'; did you mean 'quiet'"."""
    write(tmp_path / "flaky_plugin.py", FLAKY_PLUGIN)
    profile = write(tmp_path / "p.toml", '[apis.q]\nuse = "quiet"\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "flaky_plugin"}
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0
    checked = run_heirloom("profile", "check", str(profile), env={**env, "FLAKY_PLUGIN_FAILS": "1"})
    assert checked.returncode == 2
    assert (
        "apis.q.use: api type 'quiet' comes from a plugin that failed to load this time: "
        "flaky_plugin: RuntimeError: cannot reach the licence server" in checked.stderr
    ), checked.stderr
    assert "did you mean" not in checked.stderr


def test_the_heirloom_kernel_fixture_imports_plugins_named_by_module(heirloom_kernel, tmp_path):
    """Plugin authors pass their module or its name; with entry_points=False nothing
    installed is registered, so a profile needs its resource manager passed too."""
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\n')
    kernel = heirloom_kernel("tests.toys", "heirloom_plugins.local_resources", entry_points=False)
    assert [spec.use for spec in kernel.resolve(str(profile)).components] == ["local", "toy-source"]
    with pytest.raises(ModuleNotFoundError, match="no_such_plugin"):
        heirloom_kernel("no_such_plugin")


def test_a_request_error_with_a_status_no_client_knows_is_refused_where_it_is_raised():
    with pytest.raises(ValueError, match="'NOT_A_CODE' is not an error status: use one of INVALID_ARGUMENT"):
        heirloom.RequestError("NOT_A_CODE", "no such status")
    with pytest.raises(ValueError, match="'OK' is not an error status"):
        heirloom.RequestError("OK", "an error that says all is well")


SHIPPER = """
import os
from pathlib import Path

import heirloom

if os.environ.get("SHIPPER_BROKEN"):
    raise RuntimeError("shipper is broken today")


@heirloom.hookimpl
def heirloom_register_profiles(register):
    if os.environ.get("SHIPPER_HOOK_BROKEN"):
        raise RuntimeError("the registry exploded")
    register("shipped", Path(__file__).with_name("shipped.toml"))
"""


def _shipper_site(tmp_path):
    """A folder holding heirloom-shipper 0.3.0 as pip installs it: it ships the profile ``shipped``."""
    site = tmp_path / "site"
    write(site / "heirloom_shipper.py", SHIPPER)
    write(site / "shipped.toml", '[apis.echo]\nuse = "echo"\n')
    info = site / "heirloom_shipper-0.3.0.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: heirloom-shipper\nVersion: 0.3.0\n")
    write(info / "entry_points.txt", "[heirloom]\nshipper = heirloom_shipper\n")
    return site


def test_a_profile_whose_plugin_fails_to_load_names_that_plugin(tmp_path):
    site = _shipper_site(tmp_path)
    user = write(tmp_path / "mine.toml", 'extends = ["shipped"]\n')
    env = {"PYTHONPATH": pythonpath(site)}  # the heirloom under test too
    assert run_heirloom("profile", "check", str(user), env=env).returncode == 0  # the catalog learns who ships it
    for _ in range(2):  # a failure does not make the catalog forget what the plugin ships
        broken = run_heirloom("profile", "check", str(user), env={**env, "SHIPPER_BROKEN": "1"})
        assert broken.returncode == 2
        said = " ".join(broken.stderr.split())
        assert "no profile named 'shipped'" in said
        assert "it comes from a plugin that failed to load: shipper (heirloom-shipper 0.3.0): RuntimeError" in said
        assert "shipper is broken today" in said
    raised = run_heirloom("profile", "check", str(user), env={**env, "SHIPPER_HOOK_BROKEN": "1"})
    line = SHIPPER.splitlines().index('        raise RuntimeError("the registry exploded")') + 1
    said = " ".join(raised.stderr.split())  # which hook raised: its line, as for an import error
    assert f"RuntimeError: the registry exploded (at {site / 'heirloom_shipper.py'}:{line})" in said, said
    typo = run_heirloom("profile", "check", "shiped", env=env)
    assert typo.returncode == 2 and "did you mean 'shipped'?" in typo.stderr
    fresh = {**env, "SHIPPER_BROKEN": "1", "HEIRLOOM_HOME": str(tmp_path / "fresh")}  # it never loaded here
    unknown = run_heirloom("profile", "check", "shipped", env=fresh)
    said = " ".join(unknown.stderr.split())
    assert "these plugins failed to load: shipper (heirloom-shipper 0.3.0): RuntimeError" in said
    left_out = run_heirloom("profile", "check", "shipped", env={**env, "HEIRLOOM_DISABLE_PLUGINS": "shipper"})
    said = " ".join(left_out.stderr.split())
    said_out = "it comes from shipper (heirloom-shipper 0.3.0), which HEIRLOOM_DISABLE_PLUGINS=shipper leaves out"
    assert f"shipped: no such profile file or profile name (searched: profiles and plugin profiles); {said_out}" in said


def test_a_profile_of_a_plugin_uninstalled_since_names_its_distribution(tmp_path):
    """A team's profile extending a plugin's profile, once the plugin was uninstalled, was told "did you mean
    'finance-sentiment'?" (checker h390 F1): the catalog remembers which distribution shipped it."""
    site = _shipper_site(tmp_path)
    user = write(tmp_path / "mine.toml", 'extends = ["shipped"]\n')
    env = {"PYTHONPATH": pythonpath(site)}
    assert run_heirloom("profile", "check", str(user), env=env).returncode == 0  # the catalog learns who ships it
    shutil.rmtree(site / "heirloom_shipper-0.3.0.dist-info")  # pip uninstall heirloom-shipper
    gone = run_heirloom("profile", "check", str(user), env=env)
    said = " ".join(gone.stderr.split())
    assert gone.returncode == 2 and "no profile named 'shipped'" in said, said
    assert "it comes from shipper (heirloom-shipper 0.3.0), which is not installed (install it)" in said


def test_plugins_json_names_the_conflicts_of_each_plugin(tmp_path):
    write(
        tmp_path / "heirloom_copycat.py",
        "import heirloom\nfrom tests.toys import ToyModel\n\n\n@heirloom.hookimpl\n"
        "def heirloom_register_models(register):\n    register('toy-model', ToyModel)\n",
    )
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys,heirloom_copycat"}
    result = run_heirloom("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    conflicts = {p["name"]: p["conflicts"] for p in json.loads(result.stdout)}
    assert conflicts["tests.toys"] == conflicts["heirloom_copycat"] == ["model toy-model"]
    assert conflicts["echo"] == []
    assert "conflict: model toy-model is registered by" in result.stderr


def test_a_profile_name_two_plugins_register_is_an_error_naming_both(tmp_path):
    """Which file ``minimal`` means must not depend on which plugin happened to load first,
    nor may a plugin register a profile file that is not there."""
    mine = write(tmp_path / "mine.toml", 'project = "mine"\n')
    write(
        tmp_path / "heirloom_shadow.py",
        "import heirloom\n\n\n@heirloom.hookimpl\n"
        f"def heirloom_register_profiles(register):\n    register('minimal', {str(mine)!r})\n",
    )
    write(
        tmp_path / "heirloom_ghost.py",
        "import heirloom\n\n\n@heirloom.hookimpl\n"
        "def heirloom_register_profiles(register):\n    register('ghost', '/nonexistent/ghost.toml')\n",
    )
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "heirloom_shadow,heirloom_ghost"}
    for _ in range(2):  # the first run fills the catalog, the second reads it
        shown = run_heirloom("profile", "show", "minimal", cwd=tmp_path, env=env)
        assert shown.returncode == 2 and "profile 'minimal': registered by " in shown.stderr, shown
        assert "; disable one (HEIRLOOM_DISABLE_PLUGINS)" in shown.stderr
        assert "heirloom_shadow" in shown.stderr
    listed = run_heirloom("plugins", "--json", cwd=tmp_path, env=env)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["heirloom_shadow"]["conflicts"] == ["profile minimal"]
    assert plugins["heirloom_ghost"]["status"] == "failed"
    assert "'ghost' (/nonexistent/ghost.toml)" in plugins["heirloom_ghost"]["error"]
    profiles = run_heirloom("profiles", "--json", cwd=tmp_path, env=env)
    clashing = {p["name"]: p["conflicts"] for p in json.loads(profiles.stdout)}["minimal"]
    assert len(clashing) == 2 and any("heirloom_shadow" in label for label in clashing), clashing
    table = run_heirloom("profiles", cwd=tmp_path, env={**env, "COLUMNS": "300"})
    assert "conflict: profile minimal is registered by" in table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("│ minimal "))  # it named one, arbitrarily
    assert "│ conflict: naming it is an error (HEIRLOOM_DISABLE_PLUGINS one) │" in row, table.stdout
    assert row.count("plugin ") == 2 and "plugin heirloom_shadow" in row and str(mine) not in row, row
    team = write(tmp_path / "team" / "base.toml", 'extends = ["minimal"]\n')  # the file whose extends meets it
    for command in ("check", "show"):
        extended = run_heirloom("profile", command, str(team), cwd=tmp_path, env=env)
        assert extended.returncode == 2, extended
        assert extended.stderr.startswith("team/base.toml: extends: profile 'minimal': registered by "), extended
    for command in (("profile", "check"), ("train",), ("serve",)):  # exit 1 from these: README says 2
        named = run_heirloom(*command, "minimal", cwd=tmp_path, env=env)
        assert named.returncode == 2 and "profile 'minimal': registered by " in named.stderr, (command, named)


def _model_plugin(tmp_path, module, classes, types):
    """Write the plugin module ``module``: ``classes`` (model types over tests.toys' ToyModel) and the hook
    registering ``types`` (name -> class); return a profile training a model of the first type, and the env."""
    registers = "".join(f"    register({name!r}, {cls})\n" for name, cls in types.items())
    hook = f"\n\n@heirloom.hookimpl\ndef heirloom_register_models(register):\n{registers}"
    write(tmp_path / f"{module}.py", f"import heirloom\nfrom tests.toys import ToyModel\n\n\n{classes}{hook}")
    model = f'[sources.rows]\nuse = "toy-source"\n[models.m]\nuse = "{next(iter(types))}"\ndata = "rows"\n'
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": f"tests.toys,{module}"}
    return write(tmp_path / "p.toml", model), env


def test_a_plugin_calling_sys_exit_in_fit_fails_train_rather_than_passing_for_a_stored_model(tmp_path):
    """``train && promote`` in a script must stop when nothing was trained. A plugin's bug
    (a KeyError in fit) is its traceback, then a last line naming the model and its type (the
    traceback ended in the plugin's file, naming no component)."""
    profile, env = _model_plugin(
        tmp_path,
        "heirloom_quitter",
        "class Quitter(ToyModel):\n    def fit(self, data, parent=None, progress=None):\n"
        "        import sys\n\n        sys.exit(0)\n\n\n"
        "class Buggy(ToyModel):\n    def fit(self, data, parent=None, progress=None):\n        raise KeyError('x')\n",
        {"quitter": "Quitter", "buggy": "Buggy"},
    )
    result = run_heirloom("train", str(profile), env=env)
    assert result.returncode == 1, result.stderr
    assert "plugin code called sys.exit(0)" in result.stderr
    swap = ("--set", "models.m.use=buggy", "--set", "models.m.data=rows")  # another type: a table of its own
    buggy = run_heirloom("train", str(profile), *swap, env=env)
    assert buggy.returncode == 1 and "Traceback" in buggy.stderr, buggy.stderr
    said = "error: training models.m (buggy, plugin heirloom_quitter) failed: KeyError: 'x' (the traceback above shows"
    assert buggy.stderr.strip().endswith(f"{said} where)"), buggy.stderr[-500:]  # whose code: checker 269
    listed = run_heirloom("models", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []


def test_a_ctrl_c_python_wraps_in_another_error_exits_130_not_as_the_plugins_bug(tmp_path):
    """Ctrl-C while a class body ran (the lazy ``import torch._dynamo`` of a first optimizer step) reached ``train``
    as Python's RuntimeError from ``__set_name__``, its cause the KeyboardInterrupt: a traceback blaming the plugin,
    exit 1, where Ctrl-C exits 130 (checker 305 F10). Here the plugin's fit makes such a class as it is interrupted."""
    profile, env = _model_plugin(
        tmp_path,
        "heirloom_wrapped",
        "class Interrupted:\n    def __set_name__(self, owner, name):\n        raise KeyboardInterrupt\n\n\n"
        "class Wrapped(ToyModel):\n    def fit(self, data, parent=None, progress=None):\n"
        "        type('Late', (), {'field': Interrupted()})\n",
        {"wrapped": "Wrapped"},
    )
    result = run_heirloom("train", str(profile), env=env)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().endswith(
        "interrupted: stopped at Ctrl-C; what was reported done is kept, nothing half-written is"
    )
    assert json.loads(run_heirloom("models", "list", "--json", env=env).stdout) == []


def test_sigterm_unwinds_train_as_ctrl_c_does_leaving_no_temp_file(tmp_path):
    """SIGTERM (``timeout``, ``docker stop``, a CI cancel) killed ``train`` silently mid-write, and each try left a
    blob's temp file in the store (checker h398 F1). It unwinds as Ctrl-C does: exit 143, saying what holds. Here
    the plugin's own thread sends it the moment the weights' temp file appears."""
    profile, env = _model_plugin(
        tmp_path,
        "heirloom_termed",
        "import os\nimport signal\nimport threading\nimport time\nfrom pathlib import Path\n\nimport numpy\n\n\n"
        "def _terminate_when_written(blobs):\n    while not list(blobs.glob('.*.tmp')):\n        time.sleep(0.0005)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n\n\n"
        "class Big(ToyModel):\n    def state(self):\n"
        "        blobs = Path(os.environ['HEIRLOOM_HOME']) / 'store' / 'blobs'\n"
        "        threading.Thread(target=_terminate_when_written, args=(blobs,), daemon=True).start()\n"
        "        return heirloom.State({'w': numpy.ones(1 << 26)}, {'epochs': 1})\n",
        {"big": "Big"},
    )
    env = {**env, "HEIRLOOM_HOME": str(home := tmp_path / "home"), "HEIRLOOM_PROFILE_PATH": str(tmp_path)}
    profile.rename(tmp_path / "worker.toml")  # a profile named like a daemon's command: it was taken for one (v23 F1)
    result = run_heirloom("train", "worker", env=env, timeout=120)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().endswith(
        "interrupted: stopped at SIGTERM; what was reported done is kept, nothing half-written is"
    )
    assert list((home / "store" / "blobs").glob(".*")) == []  # the half-written weights went with it
    assert json.loads(run_heirloom("models", "list", "--json", env=env).stdout) == []


COMMANDER = """
import os

import click
import heirloom

if os.environ.get("COMMANDER_BROKEN"):
    raise RuntimeError("commander is broken today")


@click.command("hello")
def hello():
    click.echo("hello from a plugin")


@click.command("train")
def train():
    click.echo("a plugin's own train")


@heirloom.hookimpl
def heirloom_register_commands(cli):
    cli.add_command(train)
    cli.add_command(hello)
"""


def test_ctrl_c_while_help_is_written_exits_130_as_in_a_command(tmp_path):
    """v24 F4: a stop while ``heirloom --help`` was written (click reads the command line and prints the help there,
    before any command runs) said "Aborted!", exit 1. Here a plugin's command is interrupted as its help is read."""
    write(
        tmp_path / "heirloom_halting.py",
        "import click\nimport heirloom\n\n\nclass Halting(click.Command):\n"
        "    def get_short_help_str(self, limit=45):\n        raise KeyboardInterrupt\n\n\n"
        "@heirloom.hookimpl\ndef heirloom_register_commands(cli):\n"
        "    cli.add_command(Halting('halt', callback=lambda: None))\n",
    )
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "heirloom_halting"}
    helped = run_heirloom("--help", env=env)
    assert helped.returncode == 130 and "Aborted!" not in helped.stderr, helped.stderr
    assert helped.stderr.strip().endswith(
        "interrupted: stopped at Ctrl-C; what was reported done is kept, nothing half-written is"
    ), helped.stderr


def test_a_plugins_commands_are_listed_every_time_and_a_failed_ones_named(tmp_path):
    """``plugins --json`` lists each plugin's commands on a fresh catalog too; a command under
    a built-in's name (never run) is a conflict; a command whose plugin fails to load says
    so, on every run, rather than "No such command"."""
    write(tmp_path / "heirloom_commander.py", COMMANDER)
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "heirloom_commander"}
    listed = run_heirloom("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    infos = {p["name"]: p for p in json.loads(listed.stdout)}
    assert infos["heirloom_commander"]["commands"] == ["hello"]
    assert infos["heirloom_commander"]["conflicts"] == ["command train (a built-in's)"]
    assert {"plugins", "profile", "serve", "train"} <= set(infos["heirloom.commands"]["commands"])
    assert "registers command 'train', a built-in's name: the built-in always runs" in " ".join(listed.stderr.split())
    assert run_heirloom("hello", env=env).stdout == "hello from a plugin\n"
    assert "Fit MODELS of PROFILE" in run_heirloom("train", "--help", env=env).stdout
    for _ in range(2):
        broken = run_heirloom("hello", env={**env, "COMMANDER_BROKEN": "1"})
        assert broken.returncode == 2
        said = " ".join(broken.stderr.split())
        assert "command 'hello' comes from a plugin that failed to load: heirloom_commander: RuntimeError" in said
        assert "commander is broken today" in said
    helped = run_heirloom("--help", env={**env, "COMMANDER_BROKEN": "1"})  # the other commands are still there
    assert helped.returncode == 0 and "  train " in helped.stdout, helped.stderr
    fresh = {**env, "COMMANDER_BROKEN": "1", "HEIRLOOM_HOME": str(tmp_path / "fresh")}  # it never loaded here
    for _ in range(2):  # the second time too, its failure remembered (checker v37 F2: click's bare "No such")
        unknown = run_heirloom("hello", env=fresh)
        assert unknown.returncode == 2
        assert "no command 'hello'; these plugins failed to load: heirloom_commander: RuntimeError" in unknown.stderr


def test_an_unknown_type_says_which_plugins_the_environment_left_out(tmp_path):
    """A profile without a ``[resources]`` table uses ``local``: with ``HEIRLOOM_LOAD_PLUGINS``
    naming other plugins, the error must say why a type every install has is unknown."""
    profile = write(tmp_path / "p.toml", '[apis.echo]\nuse = "echo"\n')
    result = run_heirloom("profile", "check", str(profile), env={"HEIRLOOM_LOAD_PLUGINS": "echo"})
    assert result.returncode == 2
    said = " ".join(result.stderr.split())
    assert "resources.use: unknown resources type 'local'" in said
    assert "HEIRLOOM_LOAD_PLUGINS=echo: plugins left out by it are not loaded" in said


def test_unknown_types_read_the_installed_plugins_once_not_once_per_problem(tmp_path, monkeypatch):
    """Checker 305 F2: each unknown type re-read every distribution's metadata for the plugins the environment
    left out, so 10,000 of them took 76 s; the entry points are read when the kernel lists them, and no more."""
    calls = []
    read = heirloom.selection.entry_points
    monkeypatch.setattr(heirloom.selection, "entry_points", lambda **kw: calls.append(kw) or read(**kw))
    monkeypatch.setenv("HEIRLOOM_DISABLE_PLUGINS", "heirloom-nosuch")  # errors then say what it leaves out
    kernel = heirloom.Kernel()
    listed = len(calls)
    profile = write(tmp_path / "p.toml", "".join(f'[apis.e{i}]\nuse = "ecko"\n' for i in range(30)))
    with pytest.raises(heirloom.ProfileError) as raised:
        kernel.resolve(str(profile))
    assert [p.message.startswith("unknown api type 'ecko'") for p in raised.value.problems] == [True] * 30
    assert len(calls) == listed


WORDY = """
import heirloom
from tests.toys import ToySource


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("wordy-texts", ToySource)
"""


def test_a_type_whose_installed_plugin_the_environment_leaves_out_names_it_and_blames_no_other(tmp_path):
    """The catalog knows who provides a type: a disabled plugin is named, not "install its package";
    a failed plugin is blamed for a missing type only when it could provide it (its contents unknown)."""
    _install(tmp_path, "heirloom-wordy", "heirloom_wordy", WORDY)
    _install(tmp_path, "heirloom-broken", "heirloom_broken", "raise RuntimeError('broken today')\n")
    write(tmp_path / "flaky_plugin.py", FLAKY_PLUGIN)
    profile = write(tmp_path / "p.toml", '[sources.texts]\nuse = "wordy-texts"\n[apis.q]\nuse = "quiet"\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "flaky_plugin"}
    assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0  # the catalog learns who provides

    disabled = {**env, "HEIRLOOM_DISABLE_PLUGINS": "heirloom-wordy"}
    left_out = run_heirloom("profile", "check", str(profile), env=disabled)
    said = " ".join(left_out.stderr.split())
    assert left_out.returncode == 2
    assert (
        "sources.texts.use: source type 'wordy-texts' comes from heirloom_wordy (heirloom-wordy 1.0), "
        "which HEIRLOOM_DISABLE_PLUGINS=heirloom-wordy leaves out" in said
    ), said
    assert "install its package" not in said and "broken" not in said

    typo = write(tmp_path / "typo.toml", '[sources.texts]\nuse = "nosuch-texts"\n')
    unknown = run_heirloom("profile", "check", str(typo), env={**env, "FLAKY_PLUGIN_FAILS": "1"})
    said = " ".join(unknown.stderr.split())
    assert "unknown source type 'nosuch-texts'" in said
    assert "these plugins failed to load: heirloom_broken (heirloom-broken 1.0): RuntimeError: broken today" in said
    assert "flaky_plugin" not in said  # it provides the api type 'quiet' only, as it did when it last loaded


CHATTY = """
import heirloom
from tests.toys import ToyModel, ToySource


class ChattySource(ToySource):
    def records(self, split=None):
        print("chatty source reading")
        yield from super().records(split)


class ChattyModel(ToyModel):
    def fit(self, data, parent=None, progress=None):
        print("chatty model fitting")
        super().fit(data, parent, progress)

    def evaluate(self, data):
        print("chatty model evaluating")
        return super().evaluate(data)


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("chatty-source", ChattySource)


@heirloom.hookimpl
def heirloom_register_models(register):
    register("talker", ChattyModel)
"""


def test_what_plugin_code_prints_under_json_goes_to_stderr_leaving_stdout_json(tmp_path):
    """A ``print()`` in a component must not corrupt the JSON a script reads from stdout."""
    write(tmp_path / "heirloom_chatty.py", CHATTY)
    profile = write(
        tmp_path / "chat.toml", '[sources.rows]\nuse = "chatty-source"\n[models.m]\nuse = "talker"\ndata = "rows"\n'
    )
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "heirloom_chatty"}
    for command in (["train"], ["eval"], ["data", "stats"], ["data", "show"]):
        result = run_heirloom(*command, str(profile), *(["rows"] if command[0] == "data" else []), "--json", env=env)
        assert result.returncode == 0, result.stderr
        documents = [result.stdout] if command[0] != "data" or command[1] == "stats" else result.stdout.splitlines()
        assert all(json.loads(document) for document in documents), result.stdout
        assert "chatty source reading" in result.stderr and "chatty" not in result.stdout, command
    assert "chatty model fitting" in run_heirloom("train", str(profile), env=env).stdout  # without --json: stdout


GREETER = """
import click
import heirloom


@click.command("hello")
def hello():
    click.echo("hello from {name}")


@heirloom.hookimpl
def heirloom_register_commands(cli):
    cli.add_command(hello)
"""


def _install(site, distribution, module, text):
    """``module`` as pip installs it into ``site``: the file, and the dist-info naming its entry point."""
    write(site / f"{module}.py", text)
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    write(info / "entry_points.txt", f"[heirloom]\n{module} = {module}\n")


def test_a_command_two_plugins_register_runs_neither_and_names_both(tmp_path):
    """Which of two ``hello`` commands ran depended on the order plugins were imported in."""
    _install(tmp_path, "heirloom-hi-a", "heirloom_hi_a", GREETER.format(name="a"))
    _install(tmp_path, "heirloom-hi-b", "heirloom_hi_b", GREETER.format(name="b"))
    env = {"PYTHONPATH": pythonpath(tmp_path)}
    both = "heirloom_hi_a (heirloom-hi-a 1.0) and heirloom_hi_b (heirloom-hi-b 1.0)"
    for _ in range(2):  # a fresh plugin catalog, then one that remembers who adds 'hello'
        result = run_heirloom("hello", "--help", env=env)
        assert result.returncode == 2 and "hello from" not in result.stdout, result.stdout
        assert f"command 'hello' is registered by two plugins: {both}; neither runs" in " ".join(result.stderr.split())
    listed = run_heirloom("plugins", "--json", env=env)
    conflicts = {p["name"]: p["conflicts"] for p in json.loads(listed.stdout)}
    assert conflicts["heirloom_hi_a"] == conflicts["heirloom_hi_b"] == ["command hello"]
    assert f"conflict: command hello is registered by {both}" in " ".join(listed.stderr.split())


QUIET = """
import os

import heirloom


@heirloom.hookimpl
def heirloom_register_commands(cli):
    if os.environ.get("QUIET_BROKEN"):
        raise RuntimeError("quiet's commands hook is broken")
"""


def test_a_commands_hook_that_adds_none_is_remembered_and_one_that_raises_is_the_plugins_error(tmp_path):
    """A hook adding no command read as "not asked yet": its plugin was imported on every plugin command. One that
    raised warned on every call, while ``plugins --json`` said the plugin loaded with no error."""
    _install(tmp_path, "heirloom-hi-a", "heirloom_hi_a", GREETER.format(name="a"))
    _install(tmp_path, "heirloom-quiet", "heirloom_quiet", QUIET)
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_TRACE_PLUGINS": "1"}
    imported = []
    for _ in range(2):  # a fresh catalog, then one that knows which plugin adds 'hello', and that quiet adds none
        result = run_heirloom("hello", env=env)
        assert result.returncode == 0 and result.stdout == "hello from a\n", result.stderr
        imported.append([line for line in result.stderr.splitlines() if "heirloom trace: import heirloom_" in line])
    assert any("heirloom_quiet" in line for line in imported[0]), imported
    assert [line.split()[3] for line in imported[1]] == ["heirloom_hi_a"], imported
    listed = run_heirloom("plugins", "--json", env={**env, "QUIET_BROKEN": "1"})
    assert listed.returncode == 0, listed.stderr
    quiet = next(p for p in json.loads(listed.stdout) if p["name"] == "heirloom_quiet")
    said = "heirloom_quiet (heirloom-quiet 1.0): heirloom_register_commands failed: RuntimeError: quiet's commands hook"
    assert quiet["status"] == "loaded" and said in quiet["error"], quiet
    table = run_heirloom("plugins", env={**env, "QUIET_BROKEN": "1", "COLUMNS": "400"})
    assert "loaded: plugin heirloom_quiet" in table.stdout, table.stdout


SHOUTER = """
import os

import click
import heirloom


@heirloom.hookimpl
def heirloom_register_commands(cli):
    if os.environ.get("SHOUT_BROKEN"):
        raise RuntimeError("shout's commands hook is broken")
    cli.add_command(click.Command("shout", callback=lambda: click.echo("HI")))
"""


def test_a_command_whose_hook_raised_this_time_says_why_it_is_missing(tmp_path):
    """It was click's bare ``No such command 'shout'`` after the warning (checker h390 F3)."""
    _install(tmp_path, "heirloom-shout", "heirloom_shout", SHOUTER)
    env = {"PYTHONPATH": pythonpath(tmp_path)}
    assert run_heirloom("shout", env=env).stdout == "HI\n"  # the catalog learns who adds 'shout'
    broken = run_heirloom("shout", env={**env, "SHOUT_BROKEN": "1"})
    said = "error: command 'shout' is missing: plugin heirloom_shout (heirloom-shout 1.0): heirloom_register_commands"
    assert broken.returncode == 2 and said in broken.stderr, broken.stderr
    assert "shout's commands hook is broken" in broken.stderr


MANAGER_PLUGIN = """
import attrs
import heirloom


@attrs.define
class {cls}(heirloom.Resources):
    def admit(self):
        return True

    def release(self):
        pass
{more}

@heirloom.hookimpl
def heirloom_register_resource_managers(register):
    register("{name}", {cls})
"""
WHOLE = """
    def prepare(self, name, component):
        pass

    def device_for(self, name):
        return "cpu"

    def usage(self):
        return {}

    def daemon_in_flight_limit(self):
        return "3"
"""


def test_a_component_class_missing_abstract_methods_fails_its_plugins_load_naming_them(tmp_path):
    """A Resources subclass with only admit/release loaded as "loaded"; profile check and serve then said
    ``resources: Can't instantiate abstract class Thin with abstract methods device_for, prepare, usage``,
    naming no plugin nor distribution (checker h341 F6)."""
    _install(tmp_path, "heirloom-thin", "heirloom_thin", MANAGER_PLUGIN.format(cls="Thin", name="thin", more=""))
    env = {"PYTHONPATH": pythonpath(tmp_path)}
    listed = {p["name"]: p for p in json.loads(run_heirloom("plugins", "--json", env=env).stdout)}
    said = "resources 'thin': Thin does not implement device_for(), prepare(), usage(), abstract in heirloom.Resources"
    assert listed["heirloom_thin"]["status"] == "failed" and said in listed["heirloom_thin"]["error"]
    profile = write(tmp_path / "thin.toml", '[resources]\nuse = "thin"\n[apis.echo]\nuse = "echo"\n')
    checked = run_heirloom("profile", "check", str(profile), env=env)
    told = " ".join(checked.stderr.split())
    assert checked.returncode == 2 and f"heirloom_thin (heirloom-thin 1.0): {said}" in told, told
    assert "Can't instantiate" not in told


def test_a_resource_managers_wrong_answer_names_its_plugin_distribution_and_version(tmp_path):
    """``error: resource manager heirloom_gate.Gate: daemon_in_flight_limit() returned '3'``: an operator with several
    managers installed could not tell which release to roll back, where its start and stop errors named the plugin,
    its distribution and version (checker h341 F8)."""
    _install(tmp_path, "heirloom-gate", "heirloom_gate", MANAGER_PLUGIN.format(cls="Gate", name="gate", more=WHOLE))
    profile = write(tmp_path / "gate.toml", '[resources]\nuse = "gate"\n[apis.echo]\nuse = "echo"\n')
    bind = f"ipc://{tmp_path}/d.sock"
    served = run_heirloom(
        "serve", str(profile), "--workers", "2", "--bind", bind, env={"PYTHONPATH": pythonpath(tmp_path)}
    )
    told = " ".join(served.stderr.split())
    named = "the resource manager resources (gate, plugin heirloom_gate (heirloom-gate 1.0))"
    assert served.returncode == 1 and f"{named}: daemon_in_flight_limit() returned '3'" in told, told


LISTENER = """
import os
import sys

import heirloom

if os.environ.get("DEAF"):
    raise RuntimeError("the listener cannot reach its audit log")


@heirloom.hookimpl
def heirloom_system_started(system):
    print("heard the start", file=sys.stderr)
"""


def test_a_listening_plugin_that_fails_to_load_is_said_at_each_system_start(tmp_path):
    """A plugin that only listens (heirloom_system_started) and failed to import was skipped without a word for every
    profile using none of its components: an audit plugin silently stopped auditing (checker h341 F11)."""
    _install(tmp_path, "heirloom-deaf", "heirloom_deaf", LISTENER)
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\nrows = 3\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys"}
    heard = run_heirloom("data", "show", str(profile), "s", "--limit", "1", env=env)
    assert heard.returncode == 0 and "heard the start" in heard.stderr, heard.stderr
    deaf = run_heirloom("data", "show", str(profile), "s", "--limit", "1", env={**env, "DEAF": "1"})
    said = " ".join(deaf.stderr.split())
    assert deaf.returncode == 0, said
    assert (
        "plugin heirloom_deaf (heirloom-deaf 1.0) failed to load: RuntimeError: the listener cannot reach its audit "
        f"log (at {tmp_path / 'heirloom_deaf.py'}:8); it hears no heirloom_system_started" in said
    )
    assert said.count("heirloom_deaf (heirloom-deaf 1.0) failed to load") == 1  # not again at the stop
    # one that never loaded, imported first by the store lookup (it may be a store plugin): said at each start still
    trains = write(tmp_path / "t.toml", f'{profile.read_text()}[models.m]\nuse = "toy-model"\ndata = "s"\n')
    never = {**env, "DEAF": "1", "HEIRLOOM_HOME": str(tmp_path / "never")}
    for _ in range(2):  # the second with its failure remembered: it was said nowhere (checker v37 F3)
        trained = run_heirloom("train", str(trains), env=never)
        said = " ".join(trained.stderr.split())
        assert trained.returncode == 0 and said.count("it hears no heirloom_system_started") == 1, said


NEVER_LOADS = """
import os

open(os.environ["IMPORTED"], "a").write("x")
raise RuntimeError("it never loads")
"""


def test_a_plugin_that_never_loaded_is_imported_again_only_where_it_may_be_needed(tmp_path):
    """Checker h446 F1: a plugin that failed to load and never loaded was imported again by every command (one
    importing torch first made each seconds slower, unsaid). The catalog remembers the failure under its
    fingerprint: ``profile check`` imports it no more; a system start (it may listen) and ``plugins`` do."""
    _install(tmp_path, "heirloom-gone", "heirloom_gone", NEVER_LOADS)
    imported = tmp_path / "imports"
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\nrows = 3\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys", "IMPORTED": str(imported)}
    for _ in range(2):
        assert run_heirloom("profile", "check", str(profile), env=env).returncode == 0
    assert imported.read_text() == "x"
    started = run_heirloom("data", "show", str(profile), "s", "--limit", "1", env=env)
    said = " ".join(started.stderr.split())
    assert "heirloom_gone (heirloom-gone 1.0) failed to load: RuntimeError: it never loads" in said, said
    listed = {info["name"]: info for info in json.loads(run_heirloom("plugins", "--json", env=env).stdout)}
    assert listed["heirloom_gone"]["status"] == "failed" and imported.read_text() == "xxx"


def test_a_profile_extending_one_not_read_says_its_tables_problems_may_follow_from_it(tmp_path):
    """Past the right first line (the shipping plugin failed to load), ``profile check`` checked the user's tables
    without the parent's and said ``sources.rows: no `use` (a new source needs one)`` and, against the default
    ``local`` manager's keys, ``resources.model_threads: unknown key; did you mean 'threads'?``: rename a correct key
    (checker h341 F7). Those two now say the parent not read may set the table's ``use``; other problems stay as
    they were (every problem at once, checker 277 F6)."""
    site = _shipper_site(tmp_path)
    mine = "[sources.rows]\nlimit = 3\n[resources]\nmodel_threads = 3\nmax_in_flight = -1\n"
    user = write(tmp_path / "mine.toml", f'extends = ["shipped"]\n{mine}')
    env = {"PYTHONPATH": pythonpath(site), "SHIPPER_BROKEN": "1"}
    checked = run_heirloom("profile", "check", str(user), env=env)
    said = checked.stderr.splitlines()
    assert checked.returncode == 2 and "failed to load: shipper (heirloom-shipper 0.3.0)" in said[0], said
    unread = "(or the profile `extends` names, not read, sets it)"
    assert f"{user}: sources.rows: no `use` (a new source needs one) {unread}" in said, said
    assert [line for line in said if line.startswith(f"{user}: resources.model_threads: unknown key")], said
    assert all(line.endswith(unread) for line in said if "model_threads" in line), said
    assert f"{user}: resources.max_in_flight: 'max_in_flight' must be >= 0, got -1" in said, said  # as it was


def test_a_project_name_typed_as_a_profile_name_names_the_profiles_it_begins():
    """h429 F5: ``heirloom eval finance`` (``make demo`` and ``models list`` print ``finance/sentiment@1``) said no
    such profile, with no did-you-mean."""
    checked = run_heirloom("profile", "check", "finance")
    said = "did you mean 'finance-sentiment' or 'finance-sentiment-encoder'?"
    assert checked.returncode == 2 and said in checked.stderr, checked.stderr


def test_disabling_a_component_of_a_profile_extends_names_but_did_not_read_says_so(tmp_path):
    """A typo in ``extends`` printed the right did-you-mean, then ``sources.intents.enabled: no such component``
    with no cause: the component was the unread profile's (checker h359 F5)."""
    user = write(tmp_path / "mine.toml", 'extends = ["minimall"]\n[sources.rows]\nenabled = false\n')
    checked = run_heirloom("profile", "check", str(user))
    said = checked.stderr.splitlines()
    assert checked.returncode == 2 and "did you mean 'minimal'?" in said[0], said
    unread = "(or the profile `extends` names, not read, sets it)"
    assert f"{user}: sources.rows.enabled: no such component (sources: none) {unread}" in said, said
    write(tmp_path / "base.toml", "[sources.rows]\nuse = 'rows'\nlimit = 600x\n")  # a parent of invalid TOML (h390)
    write(user, 'extends = ["base.toml"]\n[sources.rows]\nenabled = false\n[models.m]\nepochs = 2\n')
    checked = run_heirloom("profile", "check", str(user))
    said = checked.stderr.splitlines()
    assert checked.returncode == 2 and said[0].startswith(f"{tmp_path / 'base.toml'}: invalid TOML"), said
    assert f"{user}: sources.rows.enabled: no such component (sources: none) {unread}" in said, said
    assert f"{user}: models.m: no `use` (a new model needs one) {unread}" in said, said
    write(user, 'extends = ["base.toml"]\n[sources.rows2]\nuse = "rows"\n[sources.rows]\nlimit = 2\n')  # v20 F6
    said = run_heirloom("profile", "check", str(user)).stderr.splitlines()
    assert [line for line in said if "sources.rows: no component 'rows' to change" in line and unread in line], said


SHARED = """
import attrs
import heirloom
from tests.toys import ToySource


@attrs.define
class {cls}(ToySource):
    pass


@heirloom.hookimpl
def heirloom_register_sources(register):
    register("{type}", {cls})
"""


def _install_named(site, distribution, module, entry_point, text):
    """``module`` as pip installs it into ``site``, under the entry point ``entry_point``."""
    write(site / f"{module}.py", text)
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    write(info / "METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    write(info / "entry_points.txt", f"[heirloom]\n{entry_point} = {module}\n")


def test_a_second_entry_point_of_a_name_is_listed_as_failed_naming_both_distributions(tmp_path):
    """Two installed distributions with one entry-point name (heirloom-echo's scaffold named its ``echo``, the
    built-in's): the host kept the first and dropped the other without a word, absent from ``heirloom plugins``, its
    types 'unknown' (checker h354 F1)."""
    first, second, mine = tmp_path / "first", tmp_path / "second", tmp_path / "mine.toml"
    _install_named(first, "pkg-one", "pkg_one", "shared", SHARED.format(cls="One", type="one-texts"))
    _install_named(second, "pkg-two", "pkg_two", "shared", SHARED.format(cls="Two", type="two-texts"))
    _install_named(second, "heirloom-echo", "heirloom_echo", "echo", SHARED.format(cls="Echo", type="mine-texts"))
    env = {"PYTHONPATH": pythonpath(first, second)}  # pkg-one's is found first
    listed = run_heirloom("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [(p["name"], p["distribution"], p["status"], p.get("error", "")) for p in json.loads(listed.stdout)]
    shared = [row for row in rows if row[0] == "shared"]
    assert shared[0][:3] == ("shared", "pkg-one", "loaded") and shared[1][:3] == ("shared", "pkg-two", "failed")
    rename = "rename the entry point in [project.entry-points.heirloom] of pkg-two 1.0 and reinstall it"
    assert f"its entry point 'shared' has the name of pkg-one 1.0's, which is loaded instead: {rename}" in shared[1][3]
    echo = [row for row in rows if row[0] == "echo"]  # heirloom's own is kept, wherever the other is found
    assert [row[1:3] for row in echo] == [("heirloom", "loaded"), ("heirloom-echo", "failed")], echo
    assert "has the name of heirloom " in echo[1][3] and "of heirloom-echo 1.0 and reinstall" in echo[1][3]
    table = run_heirloom("plugins", env={**env, "COLUMNS": "400"})
    assert "failed: its entry point 'shared' has the name of pkg-one 1.0's" in table.stdout, table.stdout
    write(mine, '[sources.texts]\nuse = "two-texts"\n')
    needed = run_heirloom("profile", "check", str(mine), env=env)
    said = " ".join(needed.stderr.split())
    assert needed.returncode == 2 and "unknown source type 'two-texts'" in said, said
    assert "shared (pkg-two 1.0): its entry point 'shared' has the name of pkg-one 1.0's" in said, said
    assert rename in said


EXITER = """
import os
import sys

import heirloom

WHERE = os.environ.get("EXIT_IN", "")


@heirloom.hookimpl
def heirloom_register_apis(register):
    if WHERE == "apis":
        sys.exit(6)


@heirloom.hookimpl
def heirloom_register_commands(cli):
    print("a stray line from the commands hook")


@heirloom.hookimpl
def heirloom_system_started(system):
    if WHERE == "started":
        sys.exit(6)


@heirloom.hookimpl
def heirloom_system_stopping(system):
    if WHERE == "stopping":
        sys.exit(6)
"""


@pytest.mark.parametrize("where", ["apis", "started", "stopping"])
def test_a_plugin_hook_calling_sys_exit_is_its_failure_not_the_commands_exit(tmp_path, where):
    """PLUGINS.md: a hook's exception is reported against its plugin; started and stopping change neither the
    command's output nor its exit status. ``sys.exit(6)`` in a registration hook or a notification ended every
    command with 6, its --json output unprinted and no plugin named, even on profiles using none of its components
    (checker h433 F1, F3)."""
    _install(tmp_path, "heirloom-exiter", "heirloom_exiter", EXITER)
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\nrows = 3\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys", "EXIT_IN": where}
    result = run_heirloom("data", "stats", str(profile), "s", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == {"train": 3, "test": 3}
    hook = f"heirloom_system_{where}"
    said = " ".join(result.stderr.split())
    if where == "apis":  # a plugin this profile does not need failed to load: heirloom plugins says so
        listed = {p["name"]: p for p in json.loads(run_heirloom("plugins", "--json", env=env).stdout)}
        assert listed["heirloom_exiter"]["status"] == "failed", listed["heirloom_exiter"]
        assert listed["heirloom_exiter"]["error"].startswith("SystemExit: 6"), listed["heirloom_exiter"]
    else:
        assert f"plugin heirloom_exiter (heirloom-exiter 1.0): {hook} failed: SystemExit: 6" in said, said


def test_what_a_plugins_commands_hook_prints_leaves_plugins_json_valid(tmp_path):
    """README: every ``--json`` prints strict JSON. A print in ``heirloom_register_commands`` went to stdout, ahead
    of ``plugins --json``'s list (checker h433 F4); a print in any other hook went to stderr already."""
    _install(tmp_path, "heirloom-exiter", "heirloom_exiter", EXITER)
    result = run_heirloom("plugins", "--json", env={"PYTHONPATH": pythonpath(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "heirloom_exiter" in {plugin["name"] for plugin in json.loads(result.stdout)}
    assert "a stray line from the commands hook" in result.stderr


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler of its own for SIGTERM (``SigCgt`` in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.M)[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def test_sigterm_while_the_command_line_loads_says_so_and_exits_143(tmp_path):
    """README, exit codes: 143 and ``stopped at SIGTERM``. In a command's first 0.3 to 0.8 s (importing click, rich
    and the commands) SIGTERM killed it with no word (checker h431 F3). Sent the moment heirloom handles it."""
    process = subprocess.Popen([*HEIRLOOM, "profiles"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches_sigterm(process.pid):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143 and out == "", (out, err)
    assert err == "interrupted: stopped at SIGTERM before the command started\n"


LATE_STOP = """
import atexit
import os
import signal
import time

import heirloom


class StoppedInTeardown:
    def __del__(self):  # as the interpreter tears its modules down, where its default signal handling is back
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)


@heirloom.hookimpl
def heirloom_system_started(system):
    global HELD
    if os.environ.get("STOP_IN") == "teardown":
        HELD = StoppedInTeardown()
    else:
        atexit.register(os.kill, os.getpid(), signal.SIGTERM)  # a stop as Python shuts down, the command done
"""


@pytest.mark.parametrize("stop_in", ["atexit", "teardown"])
def test_sigterm_after_the_command_is_done_ends_it_with_the_commands_status_and_output(tmp_path, stop_in):
    """A SIGTERM after the command had printed its result and Python was shutting down printed a traceback
    (``Exception ignored in atexit callback ... Terminated``) and exited 0, or killed it silently (checker h431
    F1), in the interpreter's teardown too (v34 F1: 1.7 s of a train's exit). It ends the process with the
    command's own status, its output whole."""
    _install(tmp_path, "heirloom-late-stop", "heirloom_late_stop", LATE_STOP)
    profile = write(tmp_path / "p.toml", '[sources.s]\nuse = "toy-source"\nrows = 3\n')
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_PLUGINS": "tests.toys", "STOP_IN": stop_in}
    result = run_heirloom("data", "stats", str(profile), "s", "--json", env=env)
    assert result.returncode == 0 and json.loads(result.stdout)["records"] == {"train": 3, "test": 3}
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


STORE_OPENER = """
import os
import sys

import heirloom


@heirloom.hookimpl(tryfirst=True)
def heirloom_open_store(path, create):
    print("a stray line from the store hook")
    if os.environ.get("OPENER_EXITS"):
        sys.exit(6)
    return os.environ.get("OPENER_ANSWERS")  # unset: None, declined (the kernel's store answers)
"""


def test_a_store_hooks_sys_exit_fails_the_command_naming_its_plugin_and_its_print_goes_to_stderr(tmp_path):
    """``heirloom_open_store`` alone of the hooks had no isolation: a ``sys.exit(6)`` there ended ``models list
    --json`` with 6, no output and no plugin named, and its print went into the JSON (checker v34 F3)."""
    _install(tmp_path, "heirloom-opener", "heirloom_opener", STORE_OPENER)
    env = {"PYTHONPATH": pythonpath(tmp_path), "HEIRLOOM_HOME": str(tmp_path / "home")}
    declined = run_heirloom("models", "list", "--json", env=env)
    assert declined.returncode == 0 and json.loads(declined.stdout) == [], declined.stderr
    assert "a stray line from the store hook" in declined.stderr
    from heirloom.store.artifacts import ArtifactStore

    ArtifactStore(tmp_path / "home" / "store")  # a store there: the hook is asked once, not twice (checker v35 F3)
    listed = run_heirloom("models", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    assert listed.stderr.count("a stray line from the store hook") == 1, listed.stderr
    exited = run_heirloom("models", "list", "--json", env={**env, "OPENER_EXITS": "1"})
    said = " ".join(exited.stderr.split())
    assert exited.returncode == 2 and exited.stdout == "", said  # as for a plugin that failed to load
    assert "plugin heirloom_opener (heirloom-opener 1.0): heirloom_open_store failed: SystemExit: 6" in said, said
    answered = run_heirloom("models", "list", "--json", env={**env, "OPENER_ANSWERS": "a store?"})
    said = " ".join(answered.stderr.split())  # was a traceback, "'str' object has no attribute 'list'" (v35 F1)
    assert answered.returncode == 2 and answered.stdout == "" and "Traceback" not in said, said
    assert "no artifact store: heirloom_open_store answered str (is a store plugin broken?" in said, said
