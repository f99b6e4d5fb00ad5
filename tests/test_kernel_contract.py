"""Contracts of the kernel itself: hooks typed, documented and tested, no torch, stays small."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest

import heirloom
from heirloom.core import hookspecs
from tests.helpers import REPO

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("heirloom_"))
TEST_SOURCES = "\n".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
PLUGIN_DOCS = (REPO / "docs" / "PLUGINS.md").read_text()


def test_there_are_hooks():
    assert len(HOOKS) == 12


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert re.search(rf"^### {hook}\(", PLUGIN_DOCS, re.M), f"docs/PLUGINS.md lacks a '### {hook}(...)' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"def test_hook_{hook}(" in TEST_SOURCES, f"no test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_types_and_documents_each_argument(hook):
    spec = getattr(hookspecs, hook)
    for name, parameter in inspect.signature(spec).parameters.items():
        assert parameter.annotation not in ("Any", inspect.Parameter.empty), f"{hook}({name}) is untyped"
        assert f":param {name}:" in spec.__doc__, f"{hook} does not document {name}"


def test_each_public_function_the_plugin_docs_sign_has_that_signature():
    """PLUGINS.md gave ``heirloom.nests_deeper(value, max_depth) -> bool``, which returns the reason text or None: a
    plugin testing ``if nests_deeper(...) is False`` let every value through (checker h301 F9). Each documented
    ``heirloom.NAME(ARGS) -> TYPE`` names parameters the function has and its return type (without type arguments)."""
    signed = re.findall(r"`heirloom\.(\w+)\(([^`]*?)\) -> ([^`]+)`", PLUGIN_DOCS)
    assert len(signed) >= 10
    for name, arguments, returns in signed:
        signature = inspect.signature(getattr(heirloom, name))
        named = [argument.split(":")[0].split("=")[0].strip() for argument in arguments.split(",") if argument.strip()]
        assert set(named) <= set(signature.parameters), f"{name}({arguments}): the function has {signature}"
        documented, annotated = " ".join(returns.split()), str(signature.return_annotation)
        assert annotated == documented or annotated.startswith(f"{documented}["), f"{name} returns {annotated}"


def test_the_kernel_stays_small():
    """The design's budget: the core under 3,000 lines, no kernel module over 500."""
    sizes = {p.relative_to(REPO / "kernel"): len(p.read_text().splitlines()) for p in (REPO / "kernel").rglob("*.py")}
    core = sum(n for path, n in sizes.items() if path.parts[0] == "core")
    assert core <= 3000, f"kernel/core has {core} lines"
    assert {str(path): n for path, n in sizes.items() if n > 500} == {}


def test_starting_the_minimal_profile_does_not_import_torch():
    probe = (
        "import sys, heirloom\n"
        "with heirloom.Kernel().system('minimal') as system:\n"
        "    assert system.ready()\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_kernel_sources_never_import_heavy_ml_libraries():
    pattern = re.compile(r"^\s*(import|from)\s+(torch|numpy|sklearn|transformers)\b", re.M)
    offenders = [str(p) for p in (REPO / "kernel").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_heirloom_call_loads_neither_plugins_nor_profiles():
    """``heirloom call _ready`` is what a readiness probe runs every few seconds: it imports
    the client, not the plugin host, the profile machinery or the store (it cost 0.7 CPU
    seconds a call when ``import heirloom`` imported everything)."""
    probe = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "heirloom",
            "call",
            "_health",
            "--connect",
            "ipc:///nowhere/x",
            "--timeout",
            "0.05",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert probe.returncode == 1 and "DEADLINE_EXCEEDED" in probe.stderr
    imported = {line.split("|")[-1].strip() for line in probe.stderr.splitlines() if line.startswith("import time:")}
    assert "heirloom.wire.client" in imported
    assert not imported & {
        "heirloom.core.plugins",
        "heirloom.core.kernel",
        "heirloom.core.schema",
        "heirloom.store",
        "cattrs",
    }
