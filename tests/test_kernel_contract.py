"""Contracts of the kernel itself: hooks documented and tested, no torch, stays small."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from heirloom import hookspecs
from tests.helpers import REPO

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("heirloom_"))
TEST_SOURCES = "\n".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
PLUGIN_DOCS = (REPO / "docs" / "PLUGINS.md").read_text()


def test_there_are_hooks():
    assert len(HOOKS) == 9


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert re.search(rf"^### {hook}\(", PLUGIN_DOCS, re.M), f"docs/PLUGINS.md lacks a '### {hook}(...)' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"def test_hook_{hook}(" in TEST_SOURCES, f"no test named test_hook_{hook}"


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
    offenders = [p.name for p in (REPO / "kernel").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
